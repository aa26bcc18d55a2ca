// The Library screen's logic, kept out of the component so it can be
// tested: the order of recordings, sizes, times and rates in words, and
// what each state from the engine means for what the teacher sees and may do.

import type { LibraryEntry, LibraryStatus } from "../bindings";
import { explainProblem } from "./errors";
import { formatBytes as formatSize, formatDateTime, formatDuration, formatNumber } from "./format";
import * as m from "./paraglide/messages.js";

const two = (n: number) => String(n).padStart(2, "0");

/** Newest first; equal times by the newer id. */
export function newestFirst(entries: readonly LibraryEntry[]): LibraryEntry[] {
  return [...entries].sort((a, b) => b.createdAt - a.createdAt || b.id - a.id);
}

/** "850 B", "12 kB", "4.3 MB" ("4,3 MB" in nb/nn), in the window's language. */
export function formatBytes(bytes: number): string {
  return formatSize(bytes);
}

/** "2.1 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  return m.library_rate({ size: formatBytes(bytesPerSecond) });
}

/** "20 sec left", "1 min left", "1 hr 5 min left" ("1 t 5 min igjen" in nb). */
export function formatTimeLeft(seconds: number): string {
  return m.library_time_left({ time: formatDuration(seconds) });
}

/** A recording's length: "0:05", "45:10", "1:02:03"; "—" when unknown. */
export function formatLength(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  const whole = Math.max(0, Math.round(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  return hours > 0 ? `${hours}:${two(minutes)}:${two(rest)}` : `${minutes}:${two(rest)}`;
}

/** When it was made, in the window's language and the computer's time zone: "Dec 5, 2026, 10:15 AM", "5. des. 2026, 10:15". */
export function formatDate(unixSeconds: number): string {
  return formatDateTime(unixSeconds);
}

/** How much of an upload the server has, 0–99 (100 only once it is safe). */
export function uploadPercent(sentBytes: number, totalBytes: number): number {
  if (totalBytes <= 0) return 0;
  return Math.min(99, Math.max(0, Math.floor((sentBytes / totalBytes) * 100)));
}

/** Where the recording is, in the words the Library shows. */
export function libraryStatusWords(status: LibraryStatus): string {
  switch (status.state) {
    case "recording":
      return m.library_status_recording();
    case "onlyOnThisComputer":
      return m.library_status_only_here();
    case "waitingForNetwork":
      return m.status_waiting_for_network();
    case "uploading": {
      const percent = formatNumber(uploadPercent(status.sentBytes, status.totalBytes));
      const parts: string[] = [m.status_uploading({ percent })];
      if (status.bytesPerSecond !== null) parts.push(formatRate(status.bytesPerSecond));
      if (status.secondsLeft !== null) parts.push(formatTimeLeft(status.secondsLeft));
      return parts.join(" · ");
    }
    case "checking":
      return m.status_checking();
    case "safe":
      return m.status_safe();
    case "failed":
      return m.library_status_failed({ reason: explainProblem(status.code, status.message).sentence });
  }
}

/** The engine's own words on a failed upload, shown under the sentence; null when there is nothing more. */
export function failureDetail(status: LibraryStatus): string | null {
  return status.state === "failed" ? explainProblem(status.code, status.message).detail : null;
}

/** The progress bar's value (0–100), or null when no bar applies. */
export function progressValue(status: LibraryStatus): number | null {
  if (status.state === "uploading") return uploadPercent(status.sentBytes, status.totalBytes);
  return null;
}

/** A tone for the state: "ok", "busy", "waiting", "failed" or "local". */
export function statusTone(status: LibraryStatus): "ok" | "busy" | "waiting" | "failed" | "local" {
  switch (status.state) {
    case "safe":
      return "ok";
    case "uploading":
    case "checking":
    case "recording":
      return "busy";
    case "waitingForNetwork":
      return "waiting";
    case "failed":
      return "failed";
    case "onlyOnThisComputer":
      return "local";
  }
}

/** Whether Retry applies: only to a failed upload. */
export function canRetry(entry: LibraryEntry): boolean {
  return entry.status.state === "failed";
}

/** Whether there is a local file to delete, play or show in its folder. */
export function hasFile(entry: LibraryEntry): boolean {
  return entry.hasLocalFile && entry.status.state !== "recording";
}

/** Whether deleting the local file deletes the only copy. */
export function isOnlyCopy(entry: LibraryEntry): boolean {
  return entry.status.state !== "safe";
}

/** What the delete confirmation says. */
export function deleteQuestion(entry: LibraryEntry): { title: string; body: string; confirm: string } {
  if (isOnlyCopy(entry)) {
    return {
      title: m.library_delete_only_title({ name: entry.name }),
      body: m.library_delete_only_body(),
      confirm: m.library_delete_only_confirm(),
    };
  }
  return {
    title: m.library_delete_here_title({ name: entry.name }),
    body: m.library_delete_here_body(),
    confirm: m.library_delete_here_confirm(),
  };
}

/** Whether the app can play the file itself (audio now; video when it lands). */
export function isPlayable(entry: LibraryEntry): boolean {
  return hasFile(entry) && entry.contentType.startsWith("audio/");
}

/** The kinds of file "Upload a file…" offers. */
export function uploadFilters(): { name: string; extensions: string[] }[] {
  return [
    { name: m.library_upload_filter(), extensions: ["wav", "flac", "ogg", "oga", "opus", "mp4", "m4a", "m4v", "webm"] },
  ];
}

/** One summary line: "12 recordings · 9 safe on server". */
export function librarySummary(entries: readonly LibraryEntry[]): string {
  const count = entries.length;
  const safe = entries.filter((entry) => entry.status.state === "safe").length;
  return m.library_summary({ count, safe });
}
