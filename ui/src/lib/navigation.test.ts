import { describe, expect, it } from "vitest";
import {
  DEFAULT_SCREEN,
  SCREENS,
  hashForScreen,
  isScreenId,
  screenFromHash,
  screenLabel,
  windowTitle,
} from "./navigation";
import { setLocale } from "./paraglide/runtime.js";

describe("navigation", () => {
  it("offers Record, Library and Settings in that order", () => {
    expect(SCREENS.map((s) => s.id)).toEqual(["record", "library", "settings"]);
    expect(SCREENS.map((s) => s.label)).toEqual(["Record", "Library", "Settings"]);
  });

  it("opens on Record", () => {
    expect(DEFAULT_SCREEN).toBe("record");
    expect(screenFromHash("")).toBe("record");
    expect(screenFromHash("#")).toBe("record");
    expect(screenFromHash("#/")).toBe("record");
  });

  it("reads the screen from the location hash", () => {
    expect(screenFromHash("#/settings")).toBe("settings");
    expect(screenFromHash("#library")).toBe("library");
    expect(screenFromHash("#/Settings")).toBe("settings");
  });

  it("falls back to Record for hashes it does not know", () => {
    expect(screenFromHash("#/upload")).toBe("record");
    expect(screenFromHash("#/settings/extra")).toBe("record");
    expect(screenFromHash("#/constructor")).toBe("record");
  });

  it("round-trips every screen through its hash", () => {
    for (const screen of SCREENS) {
      expect(screenFromHash(hashForScreen(screen.id))).toBe(screen.id);
    }
  });

  it("recognises only known screen ids", () => {
    expect(isScreenId("library")).toBe(true);
    expect(isScreenId("Library")).toBe(false);
    expect(isScreenId(undefined)).toBe(false);
    expect(isScreenId(3)).toBe(false);
  });

  it("names the window after the screen", () => {
    expect(screenLabel("library")).toBe("Library");
    expect(windowTitle("settings")).toBe("Settings · Opptak");
  });
});

describe("in another language", () => {
  it("names the screens and titles the window in the window's language", () => {
    setLocale("nn", { reload: false });
    try {
      expect(SCREENS.map((s) => s.label)).toEqual(["Opptak", "Bibliotek", "Innstillingar"]);
      expect(windowTitle("settings")).toBe("Innstillingar · Opptak");
      setLocale("nb", { reload: false });
      expect(windowTitle("settings")).toBe("Innstillinger · Opptak");
    } finally {
      setLocale("en", { reload: false });
    }
  });
});
