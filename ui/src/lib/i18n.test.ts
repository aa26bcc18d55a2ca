import { describe, expect, it } from "vitest";
import {
  chooseLanguage,
  currentChoice,
  localeFor,
  localeForTag,
  onLanguageChange,
  startLanguage,
  type LanguageChoice,
  type LanguageStore,
} from "./i18n";
import { getLocale, locales } from "./paraglide/runtime.js";
import * as m from "./paraglide/messages.js";

/** A message as stored: plain text, or (for plurals) variants chosen by a number. */
type Variants = { declarations: string[]; selectors: string[]; match: Record<string, string> };
type Stored = string | Variants[];
type Catalogue = Record<string, Stored>;

const files = import.meta.glob<Catalogue>("../../messages/*.json", { eager: true, import: "default" });

function catalogue(locale: string): Catalogue {
  const file = files[`../../messages/${locale}.json`];
  if (file === undefined) throw new Error(`messages/${locale}.json is missing`);
  const messages = { ...file };
  delete messages["$schema"];
  return messages;
}

/** Every text a message can show: itself, or each of its variants. */
function texts(message: Stored | undefined): string[] {
  if (message === undefined) return [];
  if (typeof message === "string") return [message];
  return message.flatMap((variants) => Object.values(variants.match));
}

/** The {parameters} a message uses (in any variant, or as a plural's input), sorted and unique. */
function parameters(message: Stored | undefined): string[] {
  const names = new Set<string>();
  for (const text of texts(message)) for (const match of text.matchAll(/\{(\w+)\}/g)) names.add(match[1] ?? "");
  if (Array.isArray(message)) {
    for (const variants of message) {
      for (const declaration of variants.declarations) {
        const input = /^input (\w+)$/.exec(declaration);
        if (input) names.add(input[1] ?? "");
      }
    }
  }
  return [...names].sort();
}

/**
 * Messages that read the same in Norwegian as in English: a picture size,
 * a unit, a word Norwegian borrowed. Any other nb/nn text equal to the
 * English is English left untranslated.
 */
const SAME_IN_EVERY_LANGUAGE = new Set(["source_size_1080", "library_rate", "settings_add_token", "doctor_ok"]);

describe("the message catalogue", () => {
  const english = catalogue("en");

  it("has the three languages", () => {
    expect([...locales].sort()).toEqual(["en", "nb", "nn"]);
  });

  it("has well over a hundred messages (every screen, not only Record)", () => {
    expect(Object.keys(english).length).toBeGreaterThan(200);
  });

  it.each(["nb", "nn"])("%s has every English key, non-empty, with the same parameters", (locale) => {
    const translated = catalogue(locale);
    expect(Object.keys(translated).sort()).toEqual(Object.keys(english).sort());
    for (const [key, message] of Object.entries(english)) {
      const other = translated[key];
      expect(texts(other).length, `${locale}.${key}`).toBeGreaterThan(0);
      for (const text of texts(other)) expect(text.trim(), `${locale}.${key}`).not.toBe("");
      expect(parameters(other), `${locale}.${key}`).toEqual(parameters(message));
      expect(Array.isArray(other), `${locale}.${key} is a plural like the English`).toBe(Array.isArray(message));
    }
  });

  it.each(["nb", "nn"])("%s leaves nothing in English", (locale) => {
    const translated = catalogue(locale);
    const untranslated = Object.keys(english).filter(
      (key) => !SAME_IN_EVERY_LANGUAGE.has(key) && JSON.stringify(translated[key]) === JSON.stringify(english[key]),
    );
    expect(untranslated).toEqual([]);
  });

  it("has no empty English message", () => {
    for (const [key, message] of Object.entries(english)) {
      expect(texts(message).length, key).toBeGreaterThan(0);
      for (const text of texts(message)) expect(text.trim(), key).not.toBe("");
    }
  });

  it("keeps the English names and words the window tests find by", () => {
    const en = { locale: "en" } as const;
    expect(m.record_start({}, en)).toBe("Start recording");
    expect(m.record_pause({}, en)).toBe("Pause recording");
    expect(m.record_resume({}, en)).toBe("Resume recording");
    expect(m.record_stop({}, en)).toBe("Stop recording");
    expect(m.nav_record({}, en)).toBe("Record");
    expect(m.nav_settings({}, en)).toBe("Settings");
    expect(m.status_safe({}, en)).toBe("Safe on server ✓");
    expect(m.status_saved({}, en)).toBe("Saved on this computer");
    expect(m.status_checking({}, en)).toBe("Checking on the server");
    expect(m.status_uploading({ percent: "43" }, en)).toBe("Uploading 43 %");
    expect(m.status_waiting_for_network({}, en)).toBe("Waiting for network — it will upload by itself");
    expect(m.record_finishing({}, en)).toBe("Finishing the file…");
    expect(m.record_default_name({ date: "2026-12-05 10:15" }, en)).toBe("Lesson 2026-12-05 10:15");
    expect(m.record_space_left({ hours: 12 }, en)).toBe("About 12 hours of recording space left");
    expect(m.record_test_silent({ microphone: "USB" }, en)).toBe(
      "We heard nothing from USB. Check it is switched on and not muted, then try again.",
    );
    expect(m.check_token_refused({}, en)).toBe("The token was refused");
    expect(m.check_ok({}, en)).toBe("Connected");
    expect(m.library_delete_only_title({ name: "X" }, en)).toBe('Delete the only copy of "X"?');
    expect(m.library_delete_only_body({}, en)).toContain("only copy");
    expect(m.diagnostics_save({}, en)).toBe("Save diagnostics for IT…");
    expect(m.source_screen_and_camera({}, en)).toBe("Screen + camera");
  });

  it("writes bokmål and nynorsk apart", () => {
    expect(m.nav_settings({}, { locale: "nb" })).toBe("Innstillinger");
    expect(m.nav_settings({}, { locale: "nn" })).toBe("Innstillingar");
    expect(m.record_failed({}, { locale: "nb" })).toBe("Det gikk ikke.");
    expect(m.record_failed({}, { locale: "nn" })).toBe("Det gjekk ikkje.");
    expect(m.status_safe({}, { locale: "nb" })).toBe("Trygt lagret på serveren ✓");
    expect(m.status_safe({}, { locale: "nn" })).toBe("Trygt lagra på tenaren ✓");
    expect(m.settings_title({}, { locale: "nb" })).toBe("Innstillinger");
    expect(m.settings_title({}, { locale: "nn" })).toBe("Innstillingar");
  });

  it("counts with plurals in each language", () => {
    expect(m.record_space_left({ hours: 1 }, { locale: "en" })).toBe("About 1 hour of recording space left");
    expect(m.record_space_left({ hours: 1 }, { locale: "nb" })).toBe("Plass til omtrent 1 time med opptak");
    expect(m.record_space_left({ hours: 3 }, { locale: "nb" })).toBe("Plass til omtrent 3 timer med opptak");
    expect(m.record_space_left({ hours: 3 }, { locale: "nn" })).toBe("Plass til om lag 3 timar med opptak");
    expect(m.library_summary({ count: 1, safe: 0 }, { locale: "en" })).toBe("1 recording · 0 safe on server");
    expect(m.library_summary({ count: 2, safe: 1 }, { locale: "en" })).toBe("2 recordings · 1 safe on server");
    expect(m.doctor_warnings({ count: 2 }, { locale: "nb" })).toBe("2 advarsler");
    expect(m.doctor_warnings({ count: 2 }, { locale: "nn" })).toBe("2 åtvaringar");
  });
});

describe("choosing the language", () => {
  it("maps Norwegian tags to bokmål or nynorsk and the rest to English", () => {
    expect(localeForTag("nb-NO")).toBe("nb");
    expect(localeForTag("no")).toBe("nb");
    expect(localeForTag("nn-NO")).toBe("nn");
    expect(localeForTag("NN_no.UTF-8")).toBe("nn");
    expect(localeForTag("en-US")).toBe("en");
    expect(localeForTag("sv-SE")).toBe("en");
    expect(localeForTag("")).toBe("en");
  });

  it("follows the computer for System default and the choice otherwise", () => {
    expect(localeFor("system", ["nn-NO", "en"])).toBe("nn");
    expect(localeFor("system", ["de-DE", "nb"])).toBe("en");
    expect(localeFor("system", [])).toBe("en");
    expect(localeFor("en", ["nb-NO"])).toBe("en");
    expect(localeFor("nn", ["en-US"])).toBe("nn");
  });

  it("starts in the saved choice and saves each new one", async () => {
    const saved: LanguageChoice[] = [];
    const store: LanguageStore = {
      load: async () => "nn",
      save: async (choice) => {
        saved.push(choice);
      },
    };
    expect(await startLanguage(store)).toBe("nn");
    expect(currentChoice()).toBe("nn");
    expect(m.record_start()).toBe("Start opptak");
    expect(chooseLanguage("en", store)).toBe("en");
    expect(chooseLanguage("system", store)).toBe("en");
    expect(currentChoice()).toBe("system");
    expect(saved).toEqual(["en", "system"]);
  });

  it("starts in the computer's language when the app cannot say", async () => {
    const store: LanguageStore = { load: async () => "system", save: async () => {} };
    // Vitest runs without a browser: no preferred languages, so English.
    expect(await startLanguage(store)).toBe("en");
    expect(currentChoice()).toBe("system");
  });

  it("switches the messages at once and tells whoever listens", () => {
    const heard: string[] = [];
    const stop = onLanguageChange((locale) => heard.push(locale));
    const store: LanguageStore = { load: async () => "system", save: async () => {} };
    expect(chooseLanguage("nn", store)).toBe("nn");
    expect(getLocale()).toBe("nn");
    expect(m.record_start()).toBe("Start opptak");
    expect(m.record_stop()).toBe("Stopp opptaket");
    chooseLanguage("en", store);
    expect(m.record_start()).toBe("Start recording");
    stop();
    chooseLanguage("nb", store);
    expect(heard).toEqual(["nn", "en"]);
    chooseLanguage("en", store);
  });
});
