// Calling Rust commands without ever leaving the UI blank: every outcome,
// including a thrown exception, becomes a value the screen can show.

import type { CommandError, Result } from "../bindings";
import * as m from "./paraglide/messages.js";

export type LoadState<T> =
  | { kind: "loading" }
  | { kind: "ready"; data: T }
  | { kind: "failed"; error: CommandError };

export type Settled<T> = Exclude<LoadState<T>, { kind: "loading" }>;

/** Code used when the page runs outside the Opptak app (plain browser, preview). */
export const NOT_IN_APP = "not_in_app";
/** Code used when a command threw instead of answering with a CommandError. */
export const UNEXPECTED = "unexpected";

/** What a page outside the app says, in the window's language. */
export function notInAppMessage(): string {
  return m.error_not_in_app();
}

/** True when Tauri's IPC bridge is injected into this page. */
export function hasTauriBridge(scope: object = globalThis): boolean {
  return "__TAURI_INTERNALS__" in scope;
}

function isCommandError(value: unknown): value is CommandError {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { code?: unknown }).code === "string" &&
    typeof (value as { message?: unknown }).message === "string"
  );
}

/** Any rejected value or error payload, as a CommandError with a readable message. */
export function toCommandError(value: unknown, inApp: boolean = hasTauriBridge()): CommandError {
  if (isCommandError(value)) return { code: value.code, message: value.message };
  if (!inApp) return { code: NOT_IN_APP, message: notInAppMessage() };
  if (typeof value === "string" && value.trim() !== "") return { code: UNEXPECTED, message: value };
  if (value instanceof Error && value.message.trim() !== "") {
    return { code: UNEXPECTED, message: value.message };
  }
  if (typeof value === "object" && value !== null) {
    const message = (value as { message?: unknown }).message;
    if (typeof message === "string" && message.trim() !== "") return { code: UNEXPECTED, message };
  }
  return { code: UNEXPECTED, message: m.error_unexpected() };
}

/** Runs a generated command wrapper; never rejects. */
export async function runCommand<T>(
  call: () => Promise<Result<T, CommandError>>,
  inApp: () => boolean = () => hasTauriBridge(),
): Promise<Settled<T>> {
  try {
    const result = await call();
    if (result.status === "ok") return { kind: "ready", data: result.data };
    return { kind: "failed", error: toCommandError(result.error, inApp()) };
  } catch (thrown) {
    return { kind: "failed", error: toCommandError(thrown, inApp()) };
  }
}

/**
 * A reloadable command: `load()` reports "loading", then the outcome, to `set`.
 * When loads overlap (a second "Check again" before the first answered),
 * only the newest outcome is reported.
 */
export function createLoader<T>(
  call: () => Promise<Result<T, CommandError>>,
  set: (state: LoadState<T>) => void,
  inApp: () => boolean = () => hasTauriBridge(),
): () => Promise<void> {
  let latest = 0;
  return async () => {
    const ticket = ++latest;
    set({ kind: "loading" });
    const outcome = await runCommand(call, inApp);
    if (ticket === latest) set(outcome);
  };
}
