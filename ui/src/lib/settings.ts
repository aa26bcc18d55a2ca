// The Settings screen's logic: checking a new school server before it is
// sent, and saying what a connection test found in a teacher's words.

import type {
  Origin,
  ConnectionCheck,
  ConnectionOutcome,
  CredentialStore,
  DestinationInfo,
} from "../bindings";
import * as m from "./paraglide/messages.js";

export type NewDestination = { name: string; url: string; token: string };

export type FieldErrors = Partial<Record<keyof NewDestination, string>>;

/** The longest name the engine accepts (destinations.rs MAX_NAME_CHARS). */
export const MAX_NAME_CHARS = 80;

/**
 * What is wrong with the add form before anything is sent; the engine checks
 * again and has the last word. An empty object means it can be sent.
 */
export function checkNewDestination(form: NewDestination, needName = true): FieldErrors {
  const errors: FieldErrors = {};
  const name = form.name.trim();
  if (needName && name === "") errors.name = m.form_name_missing();
  else if ([...name].length > MAX_NAME_CHARS) errors.name = m.form_name_too_long({ max: MAX_NAME_CHARS });
  const url = form.url.trim();
  if (url === "") errors.url = m.form_url_missing();
  else if (!/^https?:\/\/[^\s/?#]+/i.test(url)) errors.url = m.form_url_invalid();
  const token = form.token.trim();
  if (token === "") errors.token = m.form_token_missing();
  else if (/\s/.test(token)) errors.token = m.form_token_spaces();
  return errors;
}

/** Whether the form has no problems. */
export function isComplete(errors: FieldErrors): boolean {
  return Object.keys(errors).length === 0;
}

export type Tone = "ok" | "warning" | "error";

const HEADLINES: Readonly<Record<ConnectionOutcome, { tone: Tone; headline: () => string }>> = {
  ok: { tone: "ok", headline: m.check_ok },
  tokenRefused: { tone: "error", headline: m.check_token_refused },
  notUploadApi: { tone: "error", headline: m.check_not_upload_api },
  unreachable: { tone: "warning", headline: m.check_unreachable },
  tlsProblem: { tone: "error", headline: m.check_tls_problem },
  serverError: { tone: "warning", headline: m.check_server_error },
};

/** The headline and tone of a connection test's answer; the message says the rest. */
export function describeCheck(check: ConnectionCheck): { tone: Tone; headline: string; detail: string } {
  const known = HEADLINES[check.outcome] ?? { tone: "error" as Tone, headline: m.check_unexpected };
  return { tone: known.tone, headline: known.headline(), detail: check.message };
}

/** Where tokens are kept, in a few words for the label beside the details. */
export function credentialStoreLabel(store: CredentialStore): string {
  return store === "system" ? m.settings_store_system() : m.settings_store_file();
}

/** The engine's English name for the server inside the app. */
const THIS_COMPUTER = "This computer";

/**
 * A destination's name, or a label the engine wrote ("This computer
 * (http://127.0.0.1:…)"), in the window's language.
 */
export function destinationWords(label: string): string {
  return label === THIS_COMPUTER || label.startsWith(`${THIS_COMPUTER} (`)
    ? m.destination_this_computer() + label.slice(THIS_COMPUTER.length)
    : label;
}

/** The name Settings lists a destination by. */
export function destinationName(destination: DestinationInfo): string {
  return destination.kind === "thisComputer" ? m.destination_this_computer() : destination.name;
}

/** The line under a destination's name. */
export function destinationDetail(destination: DestinationInfo): string {
  return destination.kind === "thisComputer"
    ? m.settings_this_computer_detail()
    : (destination.url ?? "");
}

/** The default destination, or This computer when none is marked. */
export function defaultOf(destinations: readonly DestinationInfo[]): DestinationInfo | undefined {
  return destinations.find((d) => d.isDefault) ?? destinations.find((d) => d.kind === "thisComputer");
}

/** The list after `id` was made the default: exactly one is marked. */
export function withDefault(destinations: readonly DestinationInfo[], id: string): DestinationInfo[] {
  return destinations.map((d) => ({ ...d, isDefault: d.id === id }));
}

/** Whether a destination may be removed (This computer always stays). */
export function canRemove(destination: DestinationInfo): boolean {
  return destination.kind === "schoolServer";
}

/**
 * Whether Settings may move the data folder: only one the teacher chose or
 * the default; one set by OPPTAK_DATA_DIR or a start option stays where it is.
 */
export function canMoveDataFolder(origin: Origin): boolean {
  return origin === "chosen" || origin === "default";
}
