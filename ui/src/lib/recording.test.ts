import { describe, expect, it } from "vitest";
import type { Microphone, RecordingStatus } from "../bindings";
import {
  applyEvent,
  sourceLabel,
  bytesPerHourFor,
  chooseMicrophone,
  chooseSource,
  unavailableReason,
  chooseVideoSize,
  mediaKind,
  recordingSource,
  defaultRecordingName,
  formatElapsed,
  freshView,
  isFinal,
  meterPercent,
  microphoneLabel,
  microphoneTestWords,
  spaceLeftWords,
  statusWords,
} from "./recording";
import { setLocale } from "./paraglide/runtime.js";
import * as m from "./paraglide/messages.js";

describe("recording names and times", () => {
  it("names a recording after the lesson's local date and time", () => {
    expect(defaultRecordingName(new Date(2026, 11, 5, 10, 15, 59))).toBe("Lesson 2026-12-05 10:15");
    expect(defaultRecordingName(new Date(2027, 0, 9, 8, 3))).toBe("Lesson 2027-01-09 08:03");
  });

  it("formats elapsed time like a clock", () => {
    expect(formatElapsed(0)).toBe("0:00");
    expect(formatElapsed(5)).toBe("0:05");
    expect(formatElapsed(754)).toBe("12:34");
    expect(formatElapsed(3723)).toBe("1:02:03");
    expect(formatElapsed(-3)).toBe("0:00");
    expect(formatElapsed(59.9)).toBe("0:59");
  });
});

describe("level meter", () => {
  it("maps -60..0 dBFS onto an empty to full bar", () => {
    expect(meterPercent(-Infinity)).toBe(0);
    expect(meterPercent(-80)).toBe(0);
    expect(meterPercent(-30)).toBe(50);
    expect(meterPercent(-6)).toBe(90);
    expect(meterPercent(3)).toBe(100);
    expect(meterPercent(Number.NaN)).toBe(0);
  });
});

describe("microphone picker", () => {
  const mics: Microphone[] = [
    { name: "Built-in", isDefault: true, channels: 1, sampleRate: 48_000 },
    { name: "USB headset", isDefault: false, channels: 2, sampleRate: 44_100 },
  ];

  it("keeps the teacher's last choice while it is plugged in", () => {
    expect(chooseMicrophone(mics, "USB headset")).toBe("USB headset");
  });

  it("falls back to the computer's default when the remembered one is gone", () => {
    expect(chooseMicrophone(mics, "Unplugged")).toBe("Built-in");
    expect(chooseMicrophone(mics, null)).toBe("Built-in");
    expect(chooseMicrophone([{ name: "Only", isDefault: false, channels: 2, sampleRate: 44_100 }], null)).toBe("Only");
    expect(chooseMicrophone([], null)).toBeNull();
  });

  it("marks the default", () => {
    expect(microphoneLabel(mics[0])).toBe("Built-in (computer's default)");
    expect(microphoneLabel(mics[1])).toBe("USB headset");
  });
});

describe("status words", () => {
  it("says where the recording is, step by step", () => {
    const steps: RecordingStatus[] = [
      { state: "saved" },
      { state: "uploading", percent: 43 },
      { state: "checking" },
      { state: "safe" },
    ];
    expect(steps.map(statusWords)).toEqual([
      "Saved on this computer",
      "Uploading 43 %",
      "Checking on the server",
      "Safe on server ✓",
    ]);
    expect(statusWords({ state: "waitingForNetwork" })).toBe(
      "Waiting for network — it will upload by itself",
    );
    expect(statusWords({ state: "failed", message: "The server refused the token. Check it in Settings." })).toBe(
      "The upload failed. The server refused the token. Check it in Settings.",
    );
  });

  it("knows which states are the end", () => {
    expect(isFinal({ state: "safe" })).toBe(true);
    expect(isFinal({ state: "failed", message: "x" })).toBe(true);
    expect(isFinal({ state: "onlyOnThisComputer", message: "x" })).toBe(true);
    expect(isFinal({ state: "checking" })).toBe(false);
    expect(isFinal({ state: "waitingForNetwork" })).toBe(false);
  });
});

describe("updates from the engine", () => {
  it("moves the meter, the clock and the warnings", () => {
    let view = freshView();
    view = applyEvent(view, { event: "level", peakDbfs: -3, rmsDbfs: -12 });
    expect(view.meter).toBe(80);
    view = applyEvent(view, { event: "elapsed", seconds: 65 });
    expect(view.elapsedSeconds).toBe(65);
    view = applyEvent(view, { event: "paused" });
    expect([view.paused, view.meter]).toEqual([true, 0]);
    view = applyEvent(view, { event: "resumed" });
    expect(view.paused).toBe(false);
    view = applyEvent(view, { event: "silenceStarted", message: "Nothing heard for 30 s." });
    expect(view.silenceWarning).toBe(m.record_silence_warning());
    view = applyEvent(view, { event: "silenceEnded" });
    expect(view.silenceWarning).toBeNull();
    view = applyEvent(view, { event: "microphoneLost", message: "lost" });
    expect(view.microphoneLost).toBe(m.record_microphone_lost());
    view = applyEvent(view, { event: "microphoneBack" });
    expect(view.microphoneLost).toBeNull();
  });

  it("clears the live parts once the recording is stopped", () => {
    let view = applyEvent(freshView(), { event: "level", peakDbfs: 0, rmsDbfs: 0 });
    view = applyEvent(view, { event: "silenceStarted", message: "quiet" });
    view = applyEvent(view, { event: "status", status: { state: "saved" } });
    expect(view).toMatchObject({ meter: 0, silenceWarning: null, status: { state: "saved" } });
  });
});

describe("recording space and the microphone test", () => {
  const mic = (sampleRate: number, channels: number): Microphone => ({
    name: "USB Mic",
    isDefault: true,
    sampleRate,
    channels,
  });

  it("counts the chosen microphone's WAV bytes per hour", () => {
    expect(bytesPerHourFor(mic(48_000, 1))).toBe(345_600_000);
    expect(bytesPerHourFor(mic(44_100, 2))).toBe(635_040_000);
    expect(bytesPerHourFor(undefined)).toBe(691_200_000);
  });

  it("says the free space in whole hours of recording", () => {
    expect(spaceLeftWords(345_600_000 * 12.9, 345_600_000)).toEqual({
      words: "About 12 hours of recording space left",
      low: false,
    });
    expect(spaceLeftWords(345_600_000, 345_600_000).words).toBe("About 1 hour of recording space left");
  });

  it("warns under one hour and says what to do", () => {
    const left = spaceLeftWords(345_600_000 / 4, 345_600_000);
    expect(left.low).toBe(true);
    expect(left.words).toMatch(/^Only about 15 minutes of recording space left\. Delete recordings/);
    expect(spaceLeftWords(0, 345_600_000).words).toMatch(/^Only about 0 minutes/);
  });

  it("tells a muted microphone apart from one that works", () => {
    expect(microphoneTestWords({ microphone: "USB Mic", heard: false })).toBe(
      "We heard nothing from USB Mic. Check it is switched on and not muted, then try again.",
    );
    expect(microphoneTestWords({ microphone: "USB Mic", heard: true })).toMatch(/^We heard sound from USB Mic\./);
  });
});

describe("what to record", () => {
  const sources = (cameras: number): import("../bindings").VideoSources => ({
    choices: [
      { kind: "microphone", available: true, reason: null, unavailable: null },
      { kind: "screen", available: true, reason: null, unavailable: null },
      {
        kind: "camera",
        available: cameras > 0,
        reason: cameras > 0 ? null : "No camera is connected. Plug one in and open this screen again.",
        unavailable: cameras > 0 ? null : "noCamera",
      },
      {
        kind: "screenAndCamera",
        available: cameras > 0,
        reason: cameras > 0 ? null : "No camera is connected.",
        unavailable: cameras > 0 ? null : "noCamera",
      },
    ],
    screens: [
      { display: ":1", isDefault: false },
      { display: ":0", isDefault: true },
    ],
    cameras: cameras > 0 ? [{ device: "/dev/video0", name: "USB Camera" }] : [],
  });

  it("preselects the last choice only while it can still be recorded", () => {
    expect(chooseSource(sources(1).choices, "camera")).toBe("camera");
    expect(chooseSource(sources(0).choices, "camera")).toBe("microphone");
    expect(chooseSource(sources(1).choices, null)).toBe("microphone");
    expect(chooseSource(sources(1).choices, "nonsense")).toBe("microphone");
  });

  it("says why a choice cannot be recorded in the window's language", () => {
    const camera = sources(0).choices[2]!;
    expect(unavailableReason(sources(1).choices[2]!)).toBeNull();
    expect(unavailableReason(camera)).toBe(camera.reason);
    setLocale("nn", { reload: false });
    try {
      expect(unavailableReason(camera)).toBe("Ikkje noko kamera er kopla til. Kopla til eitt og opne denne sida på nytt.");
      expect(unavailableReason({ ...camera, unavailable: "wayland" })).toContain("Wayland-skrivebord");
      // A reason this window has no words for is shown as the engine said it.
      expect(unavailableReason({ ...camera, unavailable: null, reason: "Something new." })).toBe("Something new.");
    } finally {
      setLocale("en", { reload: false });
    }
  });

  it("remembers the video size, 720p by default", () => {
    expect(chooseVideoSize("1080p")).toBe("1080p");
    expect(chooseVideoSize(null)).toBe("720p");
    expect(chooseVideoSize("4k")).toBe("720p");
  });

  it("films Opptak's own screen and the first camera", () => {
    expect(recordingSource("microphone", sources(1))).toEqual({ kind: "microphone" });
    expect(recordingSource("screen", sources(1))).toEqual({ kind: "screen", display: ":0" });
    expect(recordingSource("camera", sources(1))).toEqual({ kind: "camera", device: "/dev/video0" });
    expect(recordingSource("screenAndCamera", sources(1))).toEqual({
      kind: "screenAndCamera",
      display: ":0",
      camera: "/dev/video0",
    });
  });

  it("names the four choices and plays audio and video in the app", () => {
    expect(sourceLabel("screenAndCamera")).toBe("Screen + camera");
    expect(mediaKind("audio/wav")).toBe("audio");
    expect(mediaKind("video/mp4")).toBe("video");
    expect(mediaKind("application/pdf")).toBeNull();
  });
});

describe("the Record screen's words in Norwegian", () => {
  it("says each state, the space left and the test result in bokmål and nynorsk", () => {
    setLocale("nb", { reload: false });
    try {
      expect(statusWords({ state: "safe" })).toBe("Trygt lagret på serveren ✓");
      expect(statusWords({ state: "uploading", percent: 43 })).toBe("Laster opp 43 %");
      expect(statusWords({ state: "waitingForNetwork" })).toBe("Venter på nettverk — opptaket lastes opp av seg selv");
      expect(spaceLeftWords(300, 100).words).toBe("Plass til omtrent 3 timer med opptak");
      expect(spaceLeftWords(100, 100).words).toBe("Plass til omtrent 1 time med opptak");
      expect(microphoneTestWords({ microphone: "USB", heard: false })).toContain("ikke dempet");
      expect(defaultRecordingName(new Date(2026, 11, 5, 10, 15))).toBe("Undervisning 2026-12-05 10:15");
      expect(sourceLabel("screenAndCamera")).toBe("Skjerm + kamera");
      setLocale("nn", { reload: false });
      expect(statusWords({ state: "safe" })).toBe("Trygt lagra på tenaren ✓");
      expect(statusWords({ state: "recording" })).toBe("Tek opp");
      expect(spaceLeftWords(50, 100)).toMatchObject({ low: true });
      expect(spaceLeftWords(50, 100).words).toContain("Berre plass til om lag 30 minutt");
      expect(microphoneTestWords({ microphone: "USB", heard: false })).toContain("ikkje dempa");
      expect(microphoneLabel({ name: "Innebygd", isDefault: true, channels: 2, sampleRate: 48_000 })).toBe(
        "Innebygd (standard på datamaskina)",
      );
    } finally {
      setLocale("en", { reload: false });
    }
  });
});
