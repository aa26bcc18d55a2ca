// What went wrong, in the teacher's language. The engine's errors carry a
// stable `code` and an English `message`; the window shows a sentence for
// the code in the chosen language and keeps the engine's words as a detail
// for IT. A code the window does not know falls back to the engine's words.

import type { CommandError } from "../bindings";
import * as m from "./paraglide/messages.js";

type Sentence = () => string;

/**
 * Every `CommandError.code` the app's commands send (src-tauri/src: error.rs,
 * library.rs, settings.rs, shortcut.rs, closing.rs, diagnostics.rs, lib.rs,
 * commands.rs, updates.rs) and the two the window makes itself (commands.ts, and
 * "cannot_play" when a file cannot be played).
 */
export const ERROR_SENTENCES: Readonly<Record<string, Sentence>> = {
  not_in_app: m.error_not_in_app,
  unexpected: m.error_unexpected,
  engine: m.error_engine,
  internal: m.error_internal,
  cannot_play: m.error_cannot_play,
  no_home_directory: m.error_no_home_directory,
  data_dir_unusable: m.error_data_dir_unusable,
  data_dir_fixed: m.error_data_dir_fixed,
  move_refused: m.error_move_refused,
  logging: m.error_logging,
  already_recording: m.error_already_recording,
  not_recording: m.error_not_recording,
  unknown_device: m.error_unknown_device,
  no_microphone: m.error_no_microphone,
  disk_full: m.error_disk_full,
  sound_system: m.error_sound_system,
  recording_failed: m.error_recording_failed,
  invalid_shortcut: m.error_invalid_shortcut,
  autostart: m.error_autostart,
  continue_after_sleep_failed: m.error_continue_after_sleep_failed,
  second_launch: m.error_second_launch,
  no_local_file: m.error_no_local_file,
  open_folder_failed: m.error_open_folder_failed,
  no_tray: m.error_no_tray,
  window: m.error_window,
  invalid_destination: m.error_invalid_destination,
  invalid_url: m.error_invalid_url,
  unknown_destination: m.error_unknown_destination,
  settings_unusable: m.error_settings_unusable,
  credential_store: m.error_credential_store,
  diagnostics_unwritable: m.error_diagnostics_unwritable,
  unknown_recording: m.error_unknown_recording,
  only_copy: m.error_only_copy,
  not_retryable: m.error_not_retryable,
  still_recording: m.error_still_recording,
  blank_name: m.error_blank_name,
  delete_failed: m.error_delete_failed,
  not_a_recording_file: m.error_not_a_recording_file,
  updates_off: m.error_updates_off,
  up_to_date: m.error_up_to_date,
  update_unreachable: m.error_update_unreachable,
  update_not_verified: m.error_update_not_verified,
  update_failed: m.error_update_failed,
};

/**
 * Why an upload failed, for each `problem` the journal stores
 * (crates/journal/src/problem.rs `Problem::ALL`): the Library's
 * `LibraryStatus` "failed" carries it as `code`.
 */
export const PROBLEM_SENTENCES: Readonly<Record<string, Sentence>> = {
  offline: m.problem_offline,
  stalled: m.problem_stalled,
  server_busy: m.problem_server_busy,
  session_restarts: m.problem_session_restarts,
  file_changed: m.problem_file_changed,
  file_missing: m.problem_file_missing,
  token_refused: m.problem_token_refused,
  rejected: m.problem_rejected,
  parts_missing: m.problem_parts_missing,
  storage: m.problem_storage,
  recorder_error: m.problem_recorder_error,
  unknown: m.problem_unknown,
};

/** What the teacher reads first, and the engine's own words beneath it. */
export type Explained = {
  /** In the window's language: what happened and what to do. */
  sentence: string;
  /** The engine's English message, or null when it says nothing more. */
  detail: string | null;
};

function explain(table: Readonly<Record<string, Sentence>>, code: string, message: string): Explained {
  const words = message.trim();
  const sentence = Object.prototype.hasOwnProperty.call(table, code) ? table[code] : undefined;
  if (sentence === undefined) return { sentence: words === "" ? m.error_unexpected() : words, detail: null };
  const said = sentence();
  return { sentence: said, detail: words === "" || words === said ? null : words };
}

/** A failed command, in the teacher's language. */
export function explainError(error: CommandError): Explained {
  return explain(ERROR_SENTENCES, error.code, error.message);
}

/** Why an upload failed, in the teacher's language. */
export function explainProblem(code: string, message: string): Explained {
  return explain(PROBLEM_SENTENCES, code, message);
}
