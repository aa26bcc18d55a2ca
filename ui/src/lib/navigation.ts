// Which screen the window shows. Plain TypeScript so it can be unit tested;
// App.svelte only wires it to the DOM.

import * as m from "./paraglide/messages.js";

export type ScreenId = "record" | "library" | "settings";

export type ScreenInfo = {
  readonly id: ScreenId;
  readonly label: string;
};

/** The navigation, in the order it is shown; each label is read in the window's language. */
export const SCREENS: readonly ScreenInfo[] = [
  {
    id: "record",
    get label() {
      return m.nav_record();
    },
  },
  {
    id: "library",
    get label() {
      return m.nav_library();
    },
  },
  {
    id: "settings",
    get label() {
      return m.nav_settings();
    },
  },
];

/** The screen a fresh window opens on. */
export const DEFAULT_SCREEN: ScreenId = "record";

const APP_NAME = "Opptak";

export function isScreenId(value: unknown): value is ScreenId {
  return typeof value === "string" && SCREENS.some((s) => s.id === value);
}

/**
 * The screen named by a location hash ("#/settings", "#settings"), or the
 * default screen when the hash is empty or names nothing we know.
 */
export function screenFromHash(hash: string): ScreenId {
  const name = hash.replace(/^#\/?/, "").trim().toLowerCase();
  return isScreenId(name) ? name : DEFAULT_SCREEN;
}

/** The location hash that reopens `id` after a reload. */
export function hashForScreen(id: ScreenId): string {
  return `#/${id}`;
}

export function screenLabel(id: ScreenId): string {
  const screen = SCREENS.find((s) => s.id === id);
  if (!screen) throw new Error(`unknown screen: ${String(id)}`);
  return screen.label;
}

/** The window title while `id` is shown, e.g. "Settings · Opptak". */
export function windowTitle(id: ScreenId): string {
  return `${screenLabel(id)} · ${APP_NAME}`;
}
