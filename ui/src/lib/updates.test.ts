import { describe, expect, it } from "vitest";
import { updateSentence } from "./updates";

describe("what Settings says about updates", () => {
  it("names the version that is running or that can be installed", () => {
    expect(updateSentence({ state: "upToDate", version: "0.1.0" })).toContain("0.1.0");
    expect(updateSentence({ state: "available", version: "0.2.0", notes: null })).toContain("0.2.0");
  });

  it("says why updates are off, differently for each reason", () => {
    const said = [
      updateSentence({ state: "off", why: { reason: "notConfigured" } }),
      updateSentence({ state: "off", why: { reason: "switchedOffByIt" } }),
      updateSentence({ state: "off", why: { reason: "invalidPreset", detail: "[updates] unknown field `enable`" } }),
    ];
    for (const sentence of said) expect(sentence).toMatch(/^Updates are off: .*\.$/);
    expect(new Set(said).size).toBe(3);
    expect(said[1]).toContain("IT");
  });
});
