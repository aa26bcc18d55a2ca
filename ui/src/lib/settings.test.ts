import { describe, expect, it } from "vitest";
import type { ConnectionCheck, ConnectionOutcome, DestinationInfo } from "../bindings";
import {
  MAX_NAME_CHARS,
  canMoveDataFolder,
  canRemove,
  checkNewDestination,
  credentialStoreLabel,
  defaultOf,
  describeCheck,
  destinationDetail,
  destinationName,
  destinationWords,
  isComplete,
  withDefault,
} from "./settings";
import { setLocale } from "./paraglide/runtime.js";

const thisComputer: DestinationInfo = {
  id: "this-computer",
  name: "This computer",
  url: null,
  kind: "thisComputer",
  isDefault: true,
};
const school: DestinationInfo = {
  id: "school-1",
  name: "School",
  url: "https://school.example",
  kind: "schoolServer",
  isDefault: false,
};

describe("checkNewDestination", () => {
  it("accepts a complete form", () => {
    const errors = checkNewDestination({ name: " School ", url: "https://school.example/", token: "abc" });
    expect(errors).toEqual({});
    expect(isComplete(errors)).toBe(true);
  });

  it("names each missing or wrong field", () => {
    const errors = checkNewDestination({ name: " ", url: "school.example", token: "a b" });
    expect(Object.keys(errors).sort()).toEqual(["name", "token", "url"]);
    expect(errors.url).toContain("https://");
    expect(isComplete(errors)).toBe(false);
    expect(checkNewDestination({ name: "x", url: "", token: "" })).toMatchObject({
      url: expect.stringContaining("address"),
      token: expect.stringContaining("token"),
    });
  });

  it("refuses a name the engine would refuse, and may skip the name for a test", () => {
    const long = "x".repeat(MAX_NAME_CHARS + 1);
    expect(checkNewDestination({ name: long, url: "http://a", token: "t" }).name).toBeDefined();
    expect(checkNewDestination({ name: "", url: "http://127.0.0.1:8080", token: "t" }, false)).toEqual({});
    expect(checkNewDestination({ name: "", url: "ftp://a", token: "t" }, false).url).toBeDefined();
  });
});

describe("describeCheck", () => {
  const outcomes: ConnectionOutcome[] = [
    "ok",
    "tokenRefused",
    "notUploadApi",
    "unreachable",
    "tlsProblem",
    "serverError",
  ];

  it("gives every outcome its own headline and keeps the engine's message", () => {
    const headlines = outcomes.map((outcome) => {
      const check: ConnectionCheck = { outcome, status: null, message: `said ${outcome}` };
      const described = describeCheck(check);
      expect(described.detail).toBe(`said ${outcome}`);
      return described.headline;
    });
    expect(new Set(headlines).size).toBe(outcomes.length);
  });

  it("marks only a working connection as ok", () => {
    expect(describeCheck({ outcome: "ok", status: 200, message: "" }).tone).toBe("ok");
    expect(describeCheck({ outcome: "tokenRefused", status: 401, message: "" })).toMatchObject({
      tone: "error",
      headline: "The token was refused",
    });
    expect(describeCheck({ outcome: "unreachable", status: null, message: "" }).tone).toBe("warning");
  });
});

describe("destinations", () => {
  it("describes each kind", () => {
    expect(destinationDetail(thisComputer)).toContain("this computer");
    expect(destinationDetail(school)).toBe("https://school.example");
    expect(canRemove(thisComputer)).toBe(false);
    expect(canRemove(school)).toBe(true);
  });

  it("keeps exactly one default", () => {
    const list = withDefault([thisComputer, school], "school-1");
    expect(list.filter((d) => d.isDefault).map((d) => d.id)).toEqual(["school-1"]);
    expect(defaultOf(list)?.id).toBe("school-1");
    expect(defaultOf([{ ...thisComputer, isDefault: false }, school])?.id).toBe("this-computer");
  });

  it("says where tokens are kept", () => {
    expect(credentialStoreLabel("system")).toContain("password store");
    expect(credentialStoreLabel("file")).toContain("private file");
  });
});

describe("Settings in Norwegian", () => {
  it("says the form's problems and the connection's headline in bokmål and nynorsk", () => {
    setLocale("nb", { reload: false });
    try {
      expect(checkNewDestination({ name: "", url: "", token: "a b" })).toEqual({
        name: "Gi serveren et navn, for eksempel «Skole».",
        url: "Lim inn adressen skolen ga deg for Opptak.",
        token: "Tokenet har mellomrom i seg. Kopier det på nytt.",
      });
      expect(describeCheck({ outcome: "unreachable", status: null, message: "x" }).headline).toBe("Serveren kan ikke nås");
      setLocale("nn", { reload: false });
      expect(describeCheck({ outcome: "unreachable", status: null, message: "x" })).toEqual({
        tone: "warning",
        headline: "Tenaren kan ikkje nåast",
        detail: "x",
      });
      expect(checkNewDestination({ name: "x".repeat(MAX_NAME_CHARS + 1), url: "https://a", token: "t" }).name).toBe(
        `Bruk høgst ${MAX_NAME_CHARS} teikn.`,
      );
      expect(credentialStoreLabel("system")).toBe("Passordlageret på datamaskina");
    } finally {
      setLocale("en", { reload: false });
    }
  });
});

describe("the server inside the app, in the window's language", () => {
  it("names This computer in nynorsk and keeps its address and school names", () => {
    setLocale("nn", { reload: false });
    expect(destinationWords("This computer (http://127.0.0.1:4040)")).toBe("Denne datamaskina (http://127.0.0.1:4040)");
    expect(destinationWords("This computer")).toBe("Denne datamaskina");
    expect(destinationWords("Skulen (https://skule.example)")).toBe("Skulen (https://skule.example)");
    expect(destinationName({ ...thisComputer, name: "This computer" })).toBe("Denne datamaskina");
    setLocale("en", { reload: false });
    expect(destinationWords("This computer (http://127.0.0.1:4040)")).toBe("This computer (http://127.0.0.1:4040)");
  });
});

describe("canMoveDataFolder", () => {
  it("moves a folder the teacher or the default chose, not one set at start", () => {
    expect(canMoveDataFolder("default")).toBe(true);
    expect(canMoveDataFolder("chosen")).toBe(true);
    expect(canMoveDataFolder("env")).toBe(false);
    expect(canMoveDataFolder("flag")).toBe(false);
  });
});
