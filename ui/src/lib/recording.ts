// The Record screen's logic, kept out of the component so it can be tested:
// names, times, the level meter's scale, and what each update from the
// engine means for what the teacher sees.

import type { Microphone, RecordEvent, RecordingStatus } from "../bindings";

/** Where the chosen microphone is remembered between launches. */
export const MICROPHONE_KEY = "opptak.microphone";

/** The quietest level the meter shows; anything below is an empty bar. */
export const METER_FLOOR_DBFS = -60;

const two = (n: number) => String(n).padStart(2, "0");

/** "Lesson 2026-12-05 10:15", in the computer's own time zone. */
export function defaultRecordingName(now: Date): string {
  const date = `${now.getFullYear()}-${two(now.getMonth() + 1)}-${two(now.getDate())}`;
  return `Lesson ${date} ${two(now.getHours())}:${two(now.getMinutes())}`;
}

/** "0:05", "12:34", "1:02:03". */
export function formatElapsed(totalSeconds: number): string {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  return hours > 0 ? `${hours}:${two(minutes)}:${two(rest)}` : `${minutes}:${two(rest)}`;
}

/** How full the level meter is, 0–100, for a level in dBFS. */
export function meterPercent(dbfs: number): number {
  if (!Number.isFinite(dbfs) || dbfs <= METER_FLOOR_DBFS) return 0;
  if (dbfs >= 0) return 100;
  return Math.round(((dbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS) * 100);
}

/**
 * The microphone to preselect: the one chosen last time if it is still
 * there, else the system default, else the first one.
 */
export function chooseMicrophone(microphones: Microphone[], remembered: string | null): string | null {
  if (remembered !== null && microphones.some((m) => m.name === remembered)) return remembered;
  return (microphones.find((m) => m.isDefault) ?? microphones[0])?.name ?? null;
}

/** The microphone's name as the picker lists it. */
export function microphoneLabel(microphone: Microphone): string {
  return microphone.isDefault ? `${microphone.name} (computer's default)` : microphone.name;
}

/** Where the recording is, in the words the screen shows. */
export function statusWords(status: RecordingStatus): string {
  switch (status.state) {
    case "recording":
      return "Recording";
    case "saved":
      return "Saved on this computer";
    case "uploading":
      return `Uploading ${status.percent} %`;
    case "waitingForNetwork":
      return "Waiting for network — it will upload by itself";
    case "checking":
      return "Checking on the server";
    case "safe":
      return "Safe on server ✓";
    case "onlyOnThisComputer":
      return `Only on this computer. ${status.message}`;
    case "failed":
      return `The upload failed. ${status.message}`;
  }
}

/** Whether the status will not change any more without the teacher. */
export function isFinal(status: RecordingStatus): boolean {
  return status.state === "safe" || status.state === "failed" || status.state === "onlyOnThisComputer";
}

/** What the screen shows of a running or just-stopped recording. */
export type RecordingView = {
  elapsedSeconds: number;
  /** Level meter fill, 0–100. */
  meter: number;
  paused: boolean;
  silenceWarning: string | null;
  microphoneLost: string | null;
  status: RecordingStatus;
};

export function freshView(): RecordingView {
  return {
    elapsedSeconds: 0,
    meter: 0,
    paused: false,
    silenceWarning: null,
    microphoneLost: null,
    status: { state: "recording" },
  };
}

/** The view after one update from the engine. */
export function applyEvent(view: RecordingView, event: RecordEvent): RecordingView {
  switch (event.event) {
    case "level":
      return { ...view, meter: meterPercent(event.rmsDbfs) };
    case "elapsed":
      return { ...view, elapsedSeconds: event.seconds };
    case "paused":
      return { ...view, paused: true, meter: 0 };
    case "resumed":
      return { ...view, paused: false };
    case "silenceStarted":
      return { ...view, silenceWarning: event.message };
    case "silenceEnded":
      return { ...view, silenceWarning: null };
    case "microphoneLost":
      return { ...view, microphoneLost: event.message, meter: 0 };
    case "microphoneBack":
      return { ...view, microphoneLost: null };
    case "status":
      return event.status.state === "recording"
        ? { ...view, status: event.status }
        : { ...view, status: event.status, meter: 0, silenceWarning: null, microphoneLost: null };
  }
}
