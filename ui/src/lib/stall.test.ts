import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { guardAgainstStalls, MOVING_S, STALLED_MS, type Playable } from "./stall";

/** A player that counts how often it was restarted. */
function player(): Playable & { restarts: number; currentTime: number; paused: boolean } {
  return {
    paused: false,
    ended: false,
    seeking: false,
    currentTime: 0.03,
    restarts: 0,
    pause() {
      this.paused = true;
    },
    play() {
      this.paused = false;
      this.restarts += 1;
      return Promise.resolve();
    },
  };
}

describe("the stall guard", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("pauses and plays again a player that stands still while playing", () => {
    const media = player();
    const stop = guardAgainstStalls(media, Date.now);
    vi.advanceTimersByTime(STALLED_MS - 1);
    expect(media.restarts).toBe(0);
    vi.advanceTimersByTime(STALLED_MS / 4);
    expect(media.restarts).toBe(1);
    expect(media.paused).toBe(false);
    stop();
  });

  it("leaves alone a player that moves, is paused, has ended or is seeking", () => {
    const moving = player();
    const paused = { ...player(), paused: true };
    const ended = { ...player(), ended: true };
    const seeking = { ...player(), seeking: true };
    const stops = [moving, paused, ended, seeking].map((media) => guardAgainstStalls(media, Date.now));
    for (let step = 0; step < 20; step++) {
      moving.currentTime += MOVING_S;
      vi.advanceTimersByTime(STALLED_MS / 4);
    }
    expect([moving, paused, ended, seeking].map((media) => media.restarts)).toEqual([0, 0, 0, 0]);
    stops.forEach((stop) => stop());
  });

  it("takes a jittering position for standing still", () => {
    const media = player();
    const stop = guardAgainstStalls(media, Date.now);
    for (let step = 0; step < 4; step++) {
      media.currentTime += MOVING_S / 10;
      vi.advanceTimersByTime(STALLED_MS / 4);
    }
    expect(media.restarts).toBe(1);
    stop();
  });

  it("stops watching when told", () => {
    const media = player();
    guardAgainstStalls(media, Date.now)();
    vi.advanceTimersByTime(STALLED_MS * 5);
    expect(media.restarts).toBe(0);
  });
});
