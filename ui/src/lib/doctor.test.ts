import { describe, expect, it } from "vitest";
import type { CheckStatus, DoctorCheck, DoctorReport } from "../bindings";
import { adviceFor, checkDetail, checkTitle, countStatuses, statusLabel, summariseReport } from "./doctor";
import { setLocale } from "./paraglide/runtime.js";

function check(id: string, status: CheckStatus, advice: string | null = null): DoctorCheck {
  return { id, title: `Check ${id}`, status, detail: `detail of ${id}`, advice, finding: { code: "videoReady" } };
}

function report(statuses: CheckStatus[], ok = statuses.every((s) => s === "ok")): DoctorReport {
  return { ok, checks: statuses.map((s, i) => check(`c${i}`, s)) };
}

describe("statusLabel", () => {
  it("gives every status a word", () => {
    expect(statusLabel("ok")).toBe("OK");
    expect(statusLabel("warning")).toBe("Warning");
    expect(statusLabel("error")).toBe("Error");
  });
});

describe("countStatuses", () => {
  it("counts each status", () => {
    expect(countStatuses(report(["ok", "error", "ok", "warning", "error"]).checks)).toEqual({
      ok: 2,
      warning: 1,
      error: 2,
    });
  });
});

describe("summariseReport", () => {
  it("says all is well when every check passed", () => {
    const s = summariseReport(report(["ok", "ok", "ok"]));
    expect(s.tone).toBe("ok");
    expect(s.headline).toBe("All is well");
    expect(s.detail).toBe("All 3 checks passed.");
  });

  it("handles a single passing check and an empty report", () => {
    expect(summariseReport(report(["ok"])).detail).toBe("The only check passed.");
    const empty = summariseReport(report([]));
    expect(empty.headline).toBe("All is well");
    expect(empty.detail).toBe("There was nothing to check.");
  });

  it("counts one warning as one thing needing attention", () => {
    const s = summariseReport(report(["ok", "warning"]));
    expect(s.tone).toBe("warning");
    expect(s.headline).toBe("1 thing needs attention");
    expect(s.detail).toBe("1 warning out of 2 checks.");
  });

  it("adds warnings and errors, and takes the worst tone", () => {
    const s = summariseReport(report(["warning", "ok", "error"]));
    expect(s.tone).toBe("error");
    expect(s.headline).toBe("2 things need attention");
    expect(s.detail).toBe("1 error and 1 warning out of 3 checks.");
  });

  it("uses plurals for several errors", () => {
    const s = summariseReport(report(["error", "error", "warning", "warning", "warning"]));
    expect(s.headline).toBe("5 things need attention");
    expect(s.detail).toBe("2 errors and 3 warnings out of 5 checks.");
  });

  it("does not claim all is well when the report says it is not", () => {
    const s = summariseReport(report(["ok", "ok"], false));
    expect(s.tone).toBe("warning");
    expect(s.headline).toBe("Something needs attention");
  });

  it("trusts the checks over a report flag that says ok", () => {
    const s = summariseReport(report(["error"], true));
    expect(s.tone).toBe("error");
    expect(s.headline).toBe("1 thing needs attention");
  });
});

describe("adviceFor", () => {
  it("shows advice only when there is some", () => {
    expect(adviceFor(check("a", "warning", "Plug in a microphone."))).toBe("Plug in a microphone.");
    expect(adviceFor(check("b", "warning", "  "))).toBeNull();
    expect(adviceFor(check("c", "ok", null))).toBeNull();
  });
});

describe("each finding in the teacher's language", () => {
  const space = (status: CheckStatus, freeBytes: number): DoctorCheck => ({
    id: "disk-space",
    title: "Free disk space",
    status,
    detail: "English",
    advice: "English advice",
    finding: { code: "space", freeBytes, hours: 3, neededBytes: 500_000_000 },
  });

  it("says the title, the facts and what to do in nynorsk", () => {
    setLocale("nn", { reload: false });
    try {
      const low = space("error", 200_000_000);
      expect(checkTitle(low)).toBe("Ledig diskplass");
      // Intl joins number and unit with a no-break space.
      expect(checkDetail(low).replace(/\s/g, " ")).toBe("200 MB ledig, omtrent 3 timar med lyd frå mikrofonen.");
      expect(adviceFor(low)?.replace(/\s/g, " ")).toContain("minst 500 MB ledig");
      expect(adviceFor(space("warning", 2_000_000_000))).toBe("Det er lite plass att. Frigjer plass før du tek opp lange undervisningstimar.");
      expect(adviceFor(space("ok", 90_000_000_000))).toBeNull();
      const missing: DoctorCheck = {
        ...check("webview", "error"),
        finding: { code: "webviewMissing", library: "libwebkit2gtk-4.1.so.0" },
      };
      expect(checkDetail(missing)).toBe("libwebkit2gtk-4.1.so.0 er ikkje installert.");
      expect(adviceFor(missing)).toContain("Be IT installere WebKitGTK 4.1");
    } finally {
      setLocale("en", { reload: false });
    }
  });

  it("keeps the engine's title for a check the window does not know", () => {
    expect(checkTitle(check("future-check", "ok"))).toBe("Check future-check");
  });
});

describe("the summary in Norwegian", () => {
  it("counts with each language's plurals", () => {
    setLocale("nb", { reload: false });
    try {
      const nb = summariseReport(report(["warning", "ok", "error", "warning"]));
      expect(nb.headline).toBe("3 ting trenger tilsyn");
      expect(nb.detail).toBe("1 feil og 2 advarsler av 4 sjekker.");
      expect(statusLabel("warning")).toBe("Advarsel");
      setLocale("nn", { reload: false });
      const nn = summariseReport(report(["warning", "ok"]));
      expect(nn.headline).toBe("1 ting treng tilsyn");
      expect(nn.detail).toBe("1 åtvaring av 2 sjekkar.");
      expect(summariseReport(report(["ok", "ok", "ok"])).detail).toBe("Alle dei 3 sjekkane gjekk bra.");
    } finally {
      setLocale("en", { reload: false });
    }
  });
});
