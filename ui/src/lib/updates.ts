// What Settings says about Opptak's own updates, in the teacher's language.

import type { UpdateCheck } from "../bindings";
import * as m from "./paraglide/messages.js";

/** One sentence for what a look for updates found. */
export function updateSentence(check: UpdateCheck): string {
  switch (check.state) {
    case "upToDate":
      return m.updates_up_to_date({ version: check.version });
    case "available":
      return m.updates_available({ version: check.version });
    case "off":
      switch (check.why.reason) {
        case "notConfigured":
          return m.updates_off_not_configured();
        case "switchedOffByIt":
          return m.updates_off_by_it();
        case "invalidPreset":
          return m.updates_off_invalid();
      }
  }
}
