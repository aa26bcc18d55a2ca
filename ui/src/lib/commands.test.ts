import { describe, expect, it } from "vitest";
import type { CommandError, Result } from "../bindings";
import {
  NOT_IN_APP,
  notInAppMessage,
  UNEXPECTED,
  createLoader,
  hasTauriBridge,
  runCommand,
  toCommandError,
  type LoadState,
} from "./commands";
import { setLocale } from "./paraglide/runtime.js";

const inApp = () => true;
const outsideApp = () => false;

function ok<T>(data: T): Promise<Result<T, CommandError>> {
  return Promise.resolve({ status: "ok", data });
}

function err(error: CommandError): Promise<Result<never, CommandError>> {
  return Promise.resolve({ status: "error", error });
}

describe("hasTauriBridge", () => {
  it("looks for the injected Tauri internals", () => {
    expect(hasTauriBridge({})).toBe(false);
    expect(hasTauriBridge({ __TAURI_INTERNALS__: {} })).toBe(true);
  });
});

describe("toCommandError", () => {
  it("keeps a CommandError from Rust as it is", () => {
    const e = { code: "io", message: "Disk full", extra: 1 };
    expect(toCommandError(e, true)).toEqual({ code: "io", message: "Disk full" });
    expect(toCommandError(e, false)).toEqual({ code: "io", message: "Disk full" });
  });

  it("explains that the page is outside the app", () => {
    const thrown = new TypeError("Cannot read properties of undefined (reading 'invoke')");
    expect(toCommandError(thrown, false)).toEqual({ code: NOT_IN_APP, message: notInAppMessage() });
  });

  it("passes on the message of strings and errors inside the app", () => {
    expect(toCommandError("Command doctor not found", true)).toEqual({
      code: UNEXPECTED,
      message: "Command doctor not found",
    });
    expect(toCommandError(new Error("boom"), true)).toEqual({ code: UNEXPECTED, message: "boom" });
    expect(toCommandError({ message: "half an error" }, true)).toEqual({
      code: UNEXPECTED,
      message: "half an error",
    });
  });

  it("never returns an empty message", () => {
    for (const value of [undefined, null, "", new Error(""), {}, 42]) {
      expect(toCommandError(value, true).message).not.toBe("");
    }
  });
});

describe("runCommand", () => {
  it("returns the data of a successful command", async () => {
    expect(await runCommand(() => ok({ version: "0.1.0" }), inApp)).toEqual({
      kind: "ready",
      data: { version: "0.1.0" },
    });
  });

  it("returns the error of a failed command", async () => {
    expect(await runCommand(() => err({ code: "io", message: "No disk" }), inApp)).toEqual({
      kind: "failed",
      error: { code: "io", message: "No disk" },
    });
  });

  it("turns a thrown exception into a failure instead of rejecting", async () => {
    const call = () => Promise.reject(new TypeError("window.__TAURI_INTERNALS__ is undefined"));
    expect(await runCommand(call, outsideApp)).toEqual({
      kind: "failed",
      error: { code: NOT_IN_APP, message: notInAppMessage() },
    });
  });

  it("also catches a wrapper that throws synchronously", async () => {
    const call = (): Promise<Result<number, CommandError>> => {
      throw new Error("sync");
    };
    expect(await runCommand(call, inApp)).toEqual({
      kind: "failed",
      error: { code: UNEXPECTED, message: "sync" },
    });
  });
});

describe("createLoader", () => {
  it("reports loading, then the outcome", async () => {
    const states: LoadState<number>[] = [];
    const load = createLoader(() => ok(7), (s) => states.push(s), inApp);
    await load();
    expect(states).toEqual([{ kind: "loading" }, { kind: "ready", data: 7 }]);
  });

  it("reloads after a failure", async () => {
    let calls = 0;
    const states: LoadState<string>[] = [];
    const load = createLoader(
      () => (++calls === 1 ? err({ code: "busy", message: "Try later" }) : ok("fine")),
      (s) => states.push(s),
      inApp,
    );
    await load();
    await load();
    expect(states).toEqual([
      { kind: "loading" },
      { kind: "failed", error: { code: "busy", message: "Try later" } },
      { kind: "loading" },
      { kind: "ready", data: "fine" },
    ]);
  });

  it("ignores an older answer that arrives after a newer one", async () => {
    const resolvers: Array<(r: Result<string, CommandError>) => void> = [];
    const call = () => new Promise<Result<string, CommandError>>((resolve) => resolvers.push(resolve));
    const states: LoadState<string>[] = [];
    const load = createLoader(call, (s) => states.push(s), inApp);

    const first = load();
    const second = load();
    resolvers[1]!({ status: "ok", data: "new" });
    await second;
    resolvers[0]!({ status: "ok", data: "old" });
    await first;

    expect(states).toEqual([{ kind: "loading" }, { kind: "loading" }, { kind: "ready", data: "new" }]);
  });
});

describe("outside the app, in Norwegian", () => {
  it("says so in the window's language", () => {
    setLocale("nn", { reload: false });
    try {
      expect(toCommandError(new Error("x"), false).message).toContain("utanfor Opptak-appen");
    } finally {
      setLocale("en", { reload: false });
    }
  });
});
