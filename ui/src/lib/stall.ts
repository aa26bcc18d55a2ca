// A guard for WebKitGTK's media player (2.50, which buffers a file on disk
// before it plays): it can stand still at the start, "playing", after it
// paused itself to buffer a file that is already here, waiting for a
// buffering report that never comes. A seek does not wake it; pausing and
// playing again does. Measured with the window's video test: without the
// guard 7 of 30 runs stood still at 0:00; with it, it stepped in 3 times in
// 18 runs, and each time the video played on.

/** The parts of a media element the guard reads and drives. */
export interface Playable {
  readonly paused: boolean;
  readonly ended: boolean;
  readonly seeking: boolean;
  readonly currentTime: number;
  pause(): void;
  play(): Promise<void>;
}

/** How long a player that should be moving may stand still. */
export const STALLED_MS = 2000;
/** Less than this in STALLED_MS is standing still: the position jitters. */
export const MOVING_S = 0.25;

/** Watches `media` until the returned function is called. */
export function guardAgainstStalls(media: Playable, now: () => number = () => performance.now()): () => void {
  let position = media.currentTime;
  let still = now();
  const watch = setInterval(() => {
    const moved = Math.abs(media.currentTime - position) >= MOVING_S;
    if (media.paused || media.ended || media.seeking || moved) {
      position = media.currentTime;
      still = now();
    } else if (now() - still >= STALLED_MS) {
      media.pause();
      void media.play().catch(() => {});
      still = now();
    }
  }, STALLED_MS / 4);
  return () => clearInterval(watch);
}
