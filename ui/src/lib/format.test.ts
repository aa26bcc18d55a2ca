import { describe, expect, it } from "vitest";
import { formatBytes, formatDateTime, formatDuration, formatNumber, intlLocale } from "./format";

// 5 December 2026, 10:15, in the computer's own time zone.
const lessonStart = new Date(2026, 11, 5, 10, 15, 30).getTime() / 1000;

describe("the Intl locale", () => {
  it("is the window's locale when Intl knows it", () => {
    const knowsAll = () => true;
    expect(intlLocale("en", knowsAll)).toBe("en");
    expect(intlLocale("nb", knowsAll)).toBe("nb");
    expect(intlLocale("nn", knowsAll)).toBe("nn");
  });

  it("borrows bokmål's numbers and dates when Intl has no nynorsk", () => {
    const noNynorsk = (tag: string) => tag !== "nn";
    expect(intlLocale("nn", noNynorsk)).toBe("nb");
    expect(intlLocale("nb", noNynorsk)).toBe("nb");
    expect(intlLocale("en", noNynorsk)).toBe("en");
  });

  it("asks this Intl by default (Node ships nynorsk, so nynorsk is kept)", () => {
    const nodeHasNynorsk = Intl.NumberFormat.supportedLocalesOf(["nn"]).length > 0;
    expect(intlLocale("nn")).toBe(nodeHasNynorsk ? "nn" : "nb");
  });
});

describe("sizes", () => {
  it("uses decimal units and each language's decimal mark", () => {
    expect(formatBytes(850, "en")).toBe("850 B");
    expect(formatBytes(12_345, "en")).toBe("12 kB");
    expect(formatBytes(4_321_000, "en")).toBe("4.3 MB");
    expect(formatBytes(4_321_000, "nb")).toBe("4,3 MB");
    expect(formatBytes(4_321_000, "nn")).toBe("4,3 MB");
    expect(formatBytes(1_200_000_000, "nb")).toBe("1,2 GB");
    expect(formatBytes(259_200_044, "nn")).toBe("259 MB");
    expect(formatBytes(9_960_000, "en")).toBe("10 MB");
    expect(formatBytes(Number.NaN, "nb")).toBe("0 B");
    expect(formatBytes(-5, "en")).toBe("0 B");
  });

  it("groups big numbers the way each language does", () => {
    expect(formatNumber(1234, "en")).toBe("1,234");
    // Norwegian groups thousands with a (no-break) space.
    expect(formatNumber(1234, "nb").replace(/\s/u, " ")).toBe("1 234");
    expect(formatNumber(1234, "nn").replace(/\s/u, " ")).toBe("1 234");
  });
});

describe("durations", () => {
  it("says seconds, minutes and hours in each language", () => {
    expect(formatDuration(19.2, "en")).toBe("20 sec");
    expect(formatDuration(65, "en")).toBe("1 min");
    expect(formatDuration(3600, "en")).toBe("1 hr");
    expect(formatDuration(3900, "en")).toBe("1 hr 5 min");
    expect(formatDuration(20, "nb")).toBe("20 sek");
    expect(formatDuration(3900, "nb")).toBe("1 t 5 min");
    expect(formatDuration(3900, "nn")).toBe("1 t 5 min");
    expect(formatDuration(-3, "en")).toBe("0 sec");
  });
});

describe("dates", () => {
  it("writes the day and time as each language does", () => {
    expect(formatDateTime(lessonStart, "en")).toBe("Dec 5, 2026, 10:15 AM");
    expect(formatDateTime(lessonStart, "nb")).toBe("5. des. 2026, 10:15");
    expect(formatDateTime(lessonStart, "nn")).toBe("5. des. 2026, 10:15");
  });
});
