// The Record screen's logic, kept out of the component so it can be tested:
// names, times, the level meter's scale, and what each update from the
// engine means for what the teacher sees.

import type {
  Microphone,
  RecordEvent,
  RecordingSource,
  RecordingStatus,
  SourceChoice,
  SourceKind,
  Unavailable,
  VideoSize,
  VideoSources,
} from "../bindings";
import { formatNumber } from "./format";
import * as m from "./paraglide/messages.js";

/** The quietest level the meter shows; anything below is an empty bar. */
export const METER_FLOOR_DBFS = -60;

const two = (n: number) => String(n).padStart(2, "0");

/**
 * "Lesson 2026-12-05 10:15" ("Undervisning …" in nb/nn), in the computer's
 * own time zone. The date stays ISO in every language: names sort by it.
 */
export function defaultRecordingName(now: Date): string {
  const date = `${now.getFullYear()}-${two(now.getMonth() + 1)}-${two(now.getDate())}`;
  return m.record_default_name({ date: `${date} ${two(now.getHours())}:${two(now.getMinutes())}` });
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
  return microphone.isDefault ? m.record_microphone_default({ name: microphone.name }) : microphone.name;
}

/** Where the recording is, in the words the screen shows. */
export function statusWords(status: RecordingStatus): string {
  switch (status.state) {
    case "recording":
      return m.status_recording();
    case "saved":
      return m.status_saved();
    case "uploading":
      return m.status_uploading({ percent: formatNumber(status.percent) });
    case "waitingForNetwork":
      return m.status_waiting_for_network();
    case "checking":
      return m.status_checking();
    case "safe":
      return m.status_safe();
    case "onlyOnThisComputer":
      // The engine's reason has no code to translate it by; it is kept as said.
      return m.status_only_on_this_computer({ message: status.message });
    case "failed":
      return m.status_upload_failed({ message: status.message });
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
    // The engine's English sentence is replaced by the window's language.
    case "silenceStarted":
      return { ...view, silenceWarning: m.record_silence_warning() };
    case "silenceEnded":
      return { ...view, silenceWarning: null };
    case "microphoneLost":
      return { ...view, microphoneLost: m.record_microphone_lost(), meter: 0 };
    case "microphoneBack":
      return { ...view, microphoneLost: null };
    case "status":
      return event.status.state === "recording"
        ? { ...view, status: event.status }
        : { ...view, status: event.status, meter: 0, silenceWarning: null, microphoneLost: null };
  }
}

/** Bytes 16-bit WAV audio fills per hour at `sampleRate` with `channels`. */
export function audioBytesPerHour(sampleRate: number, channels: number): number {
  return sampleRate * channels * 2 * 3600;
}

/**
 * What the chosen microphone's recording fills per hour. Before the list
 * has arrived, 48 kHz stereo: counting high only ever warns early.
 */
export function bytesPerHourFor(microphone: Microphone | undefined): number {
  if (microphone === undefined || microphone.sampleRate <= 0 || microphone.channels <= 0) {
    return audioBytesPerHour(48_000, 2);
  }
  return audioBytesPerHour(microphone.sampleRate, microphone.channels);
}

/** The free space line under the Record button: words and whether to warn. */
export type SpaceLeft = { words: string; low: boolean };

/** "About 12 hours of recording space left", or a warning under an hour. */
export function spaceLeftWords(freeBytes: number, bytesPerHour: number): SpaceLeft {
  const hours = bytesPerHour > 0 ? Math.max(0, freeBytes) / bytesPerHour : 0;
  if (hours < 1) {
    const minutes = Math.floor(hours * 60);
    return { words: m.record_space_low({ minutes }), low: true };
  }
  return { words: m.record_space_left({ hours: Math.floor(hours) }), low: false };
}

/** What "Test microphone" found, in the words the screen shows. */
export function microphoneTestWords(result: { microphone: string; heard: boolean }): string {
  return result.heard
    ? m.record_test_heard({ microphone: result.microphone })
    : m.record_test_silent({ microphone: result.microphone });
}

const SOURCE_LABELS: Readonly<Record<SourceKind, () => string>> = {
  microphone: m.source_microphone,
  screen: m.source_screen,
  camera: m.source_camera,
  screenAndCamera: m.source_screen_and_camera,
};

/** A choice's name, as the picker lists it. */
export function sourceLabel(kind: SourceKind): string {
  return SOURCE_LABELS[kind]();
}

const UNAVAILABLE: Record<Unavailable, () => string> = {
  videoMissing: m.source_unavailable_video_missing,
  wayland: m.source_unavailable_wayland,
  noScreen: m.source_unavailable_no_screen,
  noCamera: m.source_unavailable_no_camera,
};

/** Why `choice` cannot be recorded, in the window's language; null when it can. */
export function unavailableReason(choice: SourceChoice): string | null {
  if (choice.unavailable) return UNAVAILABLE[choice.unavailable]();
  return choice.reason;
}

/**
 * The choice to preselect: the one chosen last time if it can still be
 * recorded, else the microphone.
 */
export function chooseSource(choices: SourceChoice[], remembered: string | null): SourceKind {
  const last = choices.find((choice) => choice.kind === remembered);
  return last?.available ? last.kind : "microphone";
}

/** The size remembered, else 720p. */
export function chooseVideoSize(remembered: string | null): VideoSize {
  return remembered === "1080p" ? "1080p" : "720p";
}

/** What `startRecording` is asked to film for the choice `kind`: Opptak's own screen and the first camera. */
export function recordingSource(kind: SourceKind, sources: VideoSources): RecordingSource {
  const screen = (sources.screens.find((s) => s.isDefault) ?? sources.screens[0])?.display ?? null;
  const camera = sources.cameras[0]?.device ?? "";
  switch (kind) {
    case "microphone":
      return { kind: "microphone" };
    case "screen":
      return { kind: "screen", display: screen };
    case "camera":
      return { kind: "camera", device: camera };
    case "screenAndCamera":
      return { kind: "screenAndCamera", display: screen, camera };
  }
}

/** Which element plays a file of `contentType` in the app; `null` when the app cannot. */
export function mediaKind(contentType: string): "audio" | "video" | null {
  if (contentType.startsWith("audio/")) return "audio";
  if (contentType.startsWith("video/")) return "video";
  return null;
}
