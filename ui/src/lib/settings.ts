// The Settings screen's logic: checking a new school server before it is
// sent, and saying what a connection test found in a teacher's words.

import type {
  ConnectionCheck,
  ConnectionOutcome,
  CredentialStore,
  DestinationInfo,
} from "../bindings";

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
  if (needName && name === "") errors.name = "Give the server a name, for example “School”.";
  else if ([...name].length > MAX_NAME_CHARS)
    errors.name = `Use at most ${MAX_NAME_CHARS} characters.`;
  const url = form.url.trim();
  if (url === "") errors.url = "Paste the address your school gave for Opptak.";
  else if (!/^https?:\/\/[^\s/?#]+/i.test(url))
    errors.url = "The address must start with https:// (or http://), for example https://opptak.school.example.";
  const token = form.token.trim();
  if (token === "") errors.token = "Paste the token from your school's Opptak or LMS page.";
  else if (/\s/.test(token)) errors.token = "The token has spaces in it. Copy it again.";
  return errors;
}

/** Whether the form has no problems. */
export function isComplete(errors: FieldErrors): boolean {
  return Object.keys(errors).length === 0;
}

export type Tone = "ok" | "warning" | "error";

const HEADLINES: Readonly<Record<ConnectionOutcome, { tone: Tone; headline: string }>> = {
  ok: { tone: "ok", headline: "Connected" },
  tokenRefused: { tone: "error", headline: "The token was refused" },
  notUploadApi: { tone: "error", headline: "This is not an Opptak upload address" },
  unreachable: { tone: "warning", headline: "The server cannot be reached" },
  tlsProblem: { tone: "error", headline: "The secure connection failed" },
  serverError: { tone: "warning", headline: "The server has a problem" },
};

/** The headline and tone of a connection test's answer; the message says the rest. */
export function describeCheck(check: ConnectionCheck): { tone: Tone; headline: string; detail: string } {
  const known = HEADLINES[check.outcome] ?? { tone: "error" as Tone, headline: "Unexpected answer" };
  return { ...known, detail: check.message };
}

/** Where tokens are kept, in a few words for the label beside the details. */
export function credentialStoreLabel(store: CredentialStore): string {
  return store === "system" ? "The computer's password store" : "A private file in the data folder";
}

/** The line under a destination's name. */
export function destinationDetail(destination: DestinationInfo): string {
  return destination.kind === "thisComputer"
    ? "Opptak's own server on this computer. Works with no network."
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
