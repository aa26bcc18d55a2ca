// The Library screen's logic, kept out of the component so it can be
// tested: the order of recordings, sizes, times and rates in words, and
// what each state from the engine means for what the teacher sees and may do.

import type { LibraryEntry, LibraryStatus } from "../bindings";

const two = (n: number) => String(n).padStart(2, "0");

/** Newest first; equal times by the newer id. */
export function newestFirst(entries: readonly LibraryEntry[]): LibraryEntry[] {
  return [...entries].sort((a, b) => b.createdAt - a.createdAt || b.id - a.id);
}

/** "850 B", "12 kB", "4.3 MB", "1.2 GB" (decimal units, as file managers show them). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1000) return `${Math.max(0, Math.round(bytes || 0))} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const shown = value < 10 ? value.toFixed(1) : String(Math.round(value));
  return `${shown} ${units[unit]}`;
}

/** "2.1 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** "20 s left", "1 min left", "1 h 5 min left". */
export function formatTimeLeft(seconds: number): string {
  const total = Math.max(0, Math.ceil(seconds));
  if (total < 60) return `${total} s left`;
  const minutes = Math.round(total / 60);
  if (minutes < 60) return `${minutes} min left`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `${hours} h left` : `${hours} h ${rest} min left`;
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

/** "2026-12-05 10:15", in the computer's own time zone. */
export function formatDate(unixSeconds: number): string {
  const date = new Date(unixSeconds * 1000);
  const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
  return `${day} ${two(date.getHours())}:${two(date.getMinutes())}`;
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
      return "Recording now";
    case "onlyOnThisComputer":
      return "Only on this computer";
    case "waitingForNetwork":
      return "Waiting for network — it will upload by itself";
    case "uploading": {
      const parts = [`Uploading ${uploadPercent(status.sentBytes, status.totalBytes)} %`];
      if (status.bytesPerSecond !== null) parts.push(formatRate(status.bytesPerSecond));
      if (status.secondsLeft !== null) parts.push(formatTimeLeft(status.secondsLeft));
      return parts.join(" · ");
    }
    case "checking":
      return "Checking on the server";
    case "safe":
      return "Safe on server ✓";
    case "failed":
      return `Failed: ${status.message}`;
  }
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
      title: `Delete the only copy of "${entry.name}"?`,
      body: "This recording is not safe on the server yet: the file on this computer is the only copy. If you delete it, the recording is gone for good.",
      confirm: "Delete the only copy",
    };
  }
  return {
    title: `Delete "${entry.name}" from this computer?`,
    body: "It is safe on the server, which keeps its copy. Only the file on this computer is deleted.",
    confirm: "Delete from this computer",
  };
}

/** Whether the app can play the file itself (audio now; video when it lands). */
export function isPlayable(entry: LibraryEntry): boolean {
  return hasFile(entry) && entry.contentType.startsWith("audio/");
}

/** The kinds of file "Upload a file…" offers. */
export const UPLOAD_FILTERS = [
  { name: "Recordings", extensions: ["wav", "flac", "ogg", "oga", "opus", "mp4", "m4a", "m4v", "webm"] },
];

/** One summary line: "12 recordings · 9 safe on server". */
export function librarySummary(entries: readonly LibraryEntry[]): string {
  const count = entries.length;
  const safe = entries.filter((entry) => entry.status.state === "safe").length;
  const noun = count === 1 ? "recording" : "recordings";
  return `${count} ${noun} · ${safe} safe on server`;
}

/**
 * A URL the <audio> element can play for the recording at `assetUrl` (its
 * asset-protocol URL, from `convertFileSrc`). WebKitGTK's media player
 * cannot read Tauri's `asset:` scheme itself (it fails with "source not
 * supported" while `fetch` reads the same URL), so the file is read with
 * `fetch` and played from a blob URL; revoke it when playing stops.
 */
export async function playableUrl(
  assetUrl: string,
  read: (url: string) => Promise<Response> = (url) => fetch(url),
  toUrl: (blob: Blob) => string = (blob) => URL.createObjectURL(blob),
): Promise<string> {
  let response: Response;
  try {
    response = await read(assetUrl);
  } catch {
    throw new Error("Opptak could not open the recording's file. Open its folder to check that it is still there.");
  }
  if (response.status === 404) {
    throw new Error("The recording's file is not on this computer any more. Open its folder to look for it.");
  }
  if (!response.ok) {
    throw new Error(
      "Opptak can only play recordings in its own recordings folder. Open the folder to play this file in another program.",
    );
  }
  return toUrl(await response.blob());
}
