import { describe, expect, it } from "vitest";
import { ERROR_SENTENCES, PROBLEM_SENTENCES, explainError, explainProblem } from "./errors";
import { NOT_IN_APP, UNEXPECTED } from "./commands";
import { setLocale } from "./paraglide/runtime.js";

// The Rust sources that send codes to the window, read as text: a code
// added there without a sentence here fails this test.
const appSources = import.meta.glob<string>("../../../src-tauri/src/*.rs", {
  eager: true,
  query: "?raw",
  import: "default",
});
const problemSource = import.meta.glob<string>("../../../src-tauri/crates/journal/src/problem.rs", {
  eager: true,
  query: "?raw",
  import: "default",
});

/** The codes `CommandError::new("…")` and the `… => "code"` tables in error.rs, library.rs and settings.rs send. */
function codesSentByTheApp(): Set<string> {
  const codes = new Set<string>();
  for (const [path, text] of Object.entries(appSources)) {
    if (path.endsWith("/i18n.rs") || path.endsWith("/test_support.rs")) continue;
    // Only the code before the test module: tests name codes they expect, not new ones.
    const source = text.split(/#\[cfg\(test\)\]\s*mod \w*tests\b/)[0] ?? "";
    for (const match of source.matchAll(/CommandError::new\(\s*"([a-z_]+)"/g)) codes.add(match[1] ?? "");
    for (const match of source.matchAll(/Self::new\(\s*"([a-z_]+)"/g)) codes.add(match[1] ?? "");
    for (const match of source.matchAll(/=>\s*"([a-z]+_[a-z_]+|engine|logging)",/g)) codes.add(match[1] ?? "");
  }
  return codes;
}

describe("a sentence for every error code", () => {
  it("finds the Rust sources it checks", () => {
    expect(Object.keys(appSources).length).toBeGreaterThan(5);
    expect(Object.keys(problemSource)).toHaveLength(1);
    const codes = codesSentByTheApp();
    // A few codes known to exist, so a broken scan cannot pass by finding none.
    for (const known of ["data_dir_unusable", "unknown_device", "only_copy", "invalid_url", "no_tray", "internal", "second_launch"]) {
      expect(codes.has(known), known).toBe(true);
    }
  });

  it("has a sentence for every code the app's commands send, and the window's own", () => {
    const missing = [...codesSentByTheApp(), NOT_IN_APP, UNEXPECTED, "cannot_play"].filter(
      (code) => !(code in ERROR_SENTENCES),
    );
    expect(missing).toEqual([]);
  });

  it("has a sentence for every problem the journal stores", () => {
    const source = Object.values(problemSource)[0] ?? "";
    const asStr = source.slice(source.indexOf("fn as_str"), source.indexOf("fn needs_teacher"));
    const problems = [...asStr.matchAll(/=>\s*"([a-z_]+)"/g)].map((match) => match[1] ?? "");
    expect(problems.length).toBe(12);
    expect(problems.filter((problem) => !(problem in PROBLEM_SENTENCES))).toEqual([]);
  });

  it.each(["en", "nb", "nn"] as const)("says each one, non-empty and distinct, in %s", (locale) => {
    setLocale(locale, { reload: false });
    try {
      for (const table of [ERROR_SENTENCES, PROBLEM_SENTENCES]) {
        const said = Object.values(table).map((sentence) => sentence());
        for (const sentence of said) expect(sentence.trim()).not.toBe("");
        expect(new Set(said).size).toBe(said.length);
      }
    } finally {
      setLocale("en", { reload: false });
    }
  });
});

describe("explaining an error", () => {
  const refused = { code: "invalid_url", message: "\"school\" is not a web address (relative URL without a base)." };

  it("says the sentence in the window's language and keeps the engine's words as the detail", () => {
    setLocale("nb", { reload: false });
    try {
      expect(explainError(refused)).toEqual({
        sentence: "Adressen er ikke en nettadresse. Den må begynne med https://, slik skolen skrev den.",
        detail: refused.message,
      });
      setLocale("nn", { reload: false });
      expect(explainError(refused).sentence).toBe(
        "Adressa er ikkje ei nettadresse. Ho må byrje med https://, slik skulen skreiv ho.",
      );
    } finally {
      setLocale("en", { reload: false });
    }
    expect(explainError(refused).sentence).toBe("The address is not a web address. It must start with https://, as your school wrote it.");
  });

  it("shows the engine's words alone for a code it does not know", () => {
    expect(explainError({ code: "brand_new", message: "Something new happened." })).toEqual({
      sentence: "Something new happened.",
      detail: null,
    });
    expect(explainError({ code: "brand_new", message: "  " }).sentence).toBe(
      "Something unexpected went wrong. Try again; if it keeps happening, save diagnostics for IT in Settings.",
    );
  });

  it("does not repeat itself when the detail says the same", () => {
    const own = ERROR_SENTENCES.not_in_app?.() ?? "";
    expect(explainError({ code: "not_in_app", message: own })).toEqual({ sentence: own, detail: null });
    expect(explainProblem("offline", "")).toEqual({
      sentence: "The server cannot be reached. It uploads by itself when the network is back.",
      detail: null,
    });
  });
});
