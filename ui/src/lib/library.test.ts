import { describe, expect, it } from "vitest";
import type { LibraryEntry, LibraryStatus } from "../bindings";
import { setLocale } from "./paraglide/runtime.js";
import {
  canRetry,
  deleteQuestion,
  failureDetail,
  formatBytes,
  formatDate,
  formatLength,
  formatRate,
  formatTimeLeft,
  hasFile,
  isOnlyCopy,
  isPlayable,
  librarySummary,
  libraryStatusWords,
  newestFirst,
  progressValue,
  statusTone,
  uploadPercent,
} from "./library";

function entry(id: number, status: LibraryStatus, more: Partial<LibraryEntry> = {}): LibraryEntry {
  return {
    id,
    name: `Lesson ${id}`,
    createdAt: 1_764_930_000 + id,
    lengthSeconds: 2700,
    sizeBytes: 259_200_044,
    destination: "This computer",
    path: `/data/recordings/${id}.wav`,
    contentType: "audio/wav",
    hasLocalFile: true,
    link: null,
    status,
    ...more,
  };
}

const uploading = (sentBytes: number, totalBytes: number, bytesPerSecond: number | null, secondsLeft: number | null) =>
  ({ state: "uploading", sentBytes, totalBytes, bytesPerSecond, secondsLeft }) as LibraryStatus;

describe("sizes, rates and times in words", () => {
  it("shows sizes in decimal units, as file managers do", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(850)).toBe("850 B");
    expect(formatBytes(12_345)).toBe("12 kB");
    expect(formatBytes(4_321_000)).toBe("4.3 MB");
    expect(formatBytes(259_200_044)).toBe("259 MB");
    expect(formatBytes(1_200_000_000)).toBe("1.2 GB");
    expect(formatBytes(Number.NaN)).toBe("0 B");
    expect(formatRate(2_100_000)).toBe("2.1 MB/s");
  });

  it("says the time left in seconds, minutes or hours", () => {
    expect(formatTimeLeft(0)).toBe("0 sec left");
    expect(formatTimeLeft(19.2)).toBe("20 sec left");
    expect(formatTimeLeft(65)).toBe("1 min left");
    expect(formatTimeLeft(3600)).toBe("1 hr left");
    expect(formatTimeLeft(3900)).toBe("1 hr 5 min left");
  });

  it("shows a length like a clock, and a dash when unknown", () => {
    expect(formatLength(5)).toBe("0:05");
    expect(formatLength(2710)).toBe("45:10");
    expect(formatLength(3723)).toBe("1:02:03");
    expect(formatLength(null)).toBe("—");
  });

  it("shows the date in the computer's own time zone", () => {
    const local = new Date(2026, 11, 5, 10, 15, 30);
    expect(formatDate(local.getTime() / 1000)).toBe("Dec 5, 2026, 10:15 AM");
  });

  it("speaks the window's language", () => {
    setLocale("nb", { reload: false });
    try {
      expect(formatTimeLeft(3900)).toBe("1 t 5 min igjen");
      expect(formatRate(2_100_000)).toBe("2,1 MB/s");
      expect(formatDate(new Date(2026, 11, 5, 10, 15).getTime() / 1000)).toBe("5. des. 2026, 10:15");
      expect(libraryStatusWords(uploading(43, 100, 2_100_000, 65))).toBe("Laster opp 43 % · 2,1 MB/s · 1 min igjen");
      expect(libraryStatusWords({ state: "safe" })).toBe("Trygt lagret på serveren ✓");
      setLocale("nn", { reload: false });
      expect(formatTimeLeft(65)).toBe("1 min att");
      expect(libraryStatusWords({ state: "recording" })).toBe("Tek opp no");
    } finally {
      setLocale("en", { reload: false });
    }
  });
});

describe("the state in words", () => {
  it("says why an upload failed by its code, keeping the engine's words beneath", () => {
    const refused: LibraryStatus = {
      state: "failed",
      code: "token_refused",
      message: "The server refused the token (401). Check the token in Settings.",
      needsTeacher: true,
    };
    expect(libraryStatusWords(refused)).toBe(
      "Failed: The server refused the sign-in token. Check the token in Settings, then press Retry.",
    );
    expect(failureDetail(refused)).toBe("The server refused the token (401). Check the token in Settings.");
    setLocale("nn", { reload: false });
    try {
      expect(libraryStatusWords(refused)).toBe(
        "Gjekk ikkje: Tenaren avviste tokenet. Sjekk tokenet under Innstillingar, og trykk Prøv igjen.",
      );
      expect(failureDetail(refused)).toContain("(401)");
    } finally {
      setLocale("en", { reload: false });
    }
    const unknown: LibraryStatus = { state: "failed", code: "something_new", message: "Words.", needsTeacher: false };
    expect(libraryStatusWords(unknown)).toBe("Failed: Words.");
    expect(failureDetail(unknown)).toBeNull();
    expect(failureDetail({ state: "safe" })).toBeNull();
  });

  it("says each state as the teacher reads it", () => {
    expect(libraryStatusWords({ state: "onlyOnThisComputer" })).toBe("Only on this computer");
    expect(libraryStatusWords({ state: "waitingForNetwork" })).toBe(
      "Waiting for network — it will upload by itself",
    );
    expect(libraryStatusWords(uploading(43, 100, 2_100_000, 65))).toBe("Uploading 43 % · 2.1 MB/s · 1 min left");
    expect(libraryStatusWords(uploading(10, 100, null, null))).toBe("Uploading 10 %");
    expect(libraryStatusWords({ state: "checking" })).toBe("Checking on the server");
    expect(libraryStatusWords({ state: "safe" })).toBe("Safe on server ✓");
    expect(libraryStatusWords({ state: "recording" })).toBe("Recording now");
    const failed: LibraryStatus = {
      state: "failed",
      code: "file_missing",
      message: "The recording's file is missing. Put the file back where it was, then press Retry.",
      needsTeacher: true,
    };
    expect(libraryStatusWords(failed)).toBe(
      "Failed: The recording's file is missing. Put the file back where it was, then press Retry.",
    );
    expect(failureDetail(failed)).toBeNull();
    expect(statusTone(failed)).toBe("failed");
    expect(statusTone({ state: "safe" })).toBe("ok");
  });

  it("draws a progress bar only while uploading, never 100 % before it is safe", () => {
    expect(progressValue(uploading(43, 100, null, null))).toBe(43);
    expect(progressValue(uploading(100, 100, null, null))).toBe(99);
    expect(uploadPercent(5, 0)).toBe(0);
    expect(progressValue({ state: "checking" })).toBeNull();
    expect(progressValue({ state: "safe" })).toBeNull();
  });
});

describe("what the teacher may do with a recording", () => {
  const failed: LibraryStatus = { state: "failed", code: "offline", message: "x", needsTeacher: false };

  it("offers Retry only for a failed upload", () => {
    expect(canRetry(entry(1, failed))).toBe(true);
    expect(canRetry(entry(1, { state: "safe" }))).toBe(false);
    expect(canRetry(entry(1, { state: "waitingForNetwork" }))).toBe(false);
  });

  it("asks before deleting, and names the only copy as such", () => {
    const local = deleteQuestion(entry(3, { state: "onlyOnThisComputer" }));
    expect(local.title).toBe('Delete the only copy of "Lesson 3"?');
    expect(local.body).toContain("only copy");
    expect(local.confirm).toBe("Delete the only copy");
    expect(isOnlyCopy(entry(3, { state: "waitingForNetwork" }))).toBe(true);
    const safe = deleteQuestion(entry(4, { state: "safe" }));
    expect(safe.body).not.toContain("only copy");
    expect(isOnlyCopy(entry(4, { state: "safe" }))).toBe(false);
  });

  it("plays and shows the folder only of a file that is here", () => {
    expect(isPlayable(entry(1, { state: "safe" }))).toBe(true);
    expect(isPlayable(entry(1, { state: "safe" }, { hasLocalFile: false }))).toBe(false);
    expect(isPlayable(entry(1, { state: "safe" }, { contentType: "video/mp4" }))).toBe(false);
    expect(hasFile(entry(1, { state: "recording" }))).toBe(false);
  });
});

describe("the list", () => {
  it("puts the newest first", () => {
    const list = [entry(1, { state: "safe" }), entry(3, { state: "safe" }), entry(2, { state: "safe" })];
    expect(newestFirst(list).map((e) => e.id)).toEqual([3, 2, 1]);
    const sameTime = [entry(5, { state: "safe" }, { createdAt: 9 }), entry(6, { state: "safe" }, { createdAt: 9 })];
    expect(newestFirst(sameTime).map((e) => e.id)).toEqual([6, 5]);
    expect(list.map((e) => e.id)).toEqual([1, 3, 2]);
  });

  it("sums up how many are safe", () => {
    expect(librarySummary([entry(1, { state: "safe" }), entry(2, { state: "checking" })])).toBe(
      "2 recordings · 1 safe on server",
    );
    expect(librarySummary([entry(1, { state: "safe" })])).toBe("1 recording · 1 safe on server");
  });
});
