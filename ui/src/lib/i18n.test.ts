import { describe, expect, it } from "vitest";
import { LANGUAGE_KEY, chooseLanguage, localeFor, localeForTag, onLanguageChange, savedChoice } from "./i18n";
import { getLocale, locales } from "./paraglide/runtime.js";
import * as m from "./paraglide/messages.js";

type Catalogue = Record<string, string>;

const files = import.meta.glob<Catalogue>("../../messages/*.json", { eager: true, import: "default" });

function catalogue(locale: string): Catalogue {
  const file = files[`../../messages/${locale}.json`];
  if (file === undefined) throw new Error(`messages/${locale}.json is missing`);
  const messages = { ...file };
  delete messages["$schema"];
  return messages;
}

/** The {parameters} a message uses, sorted. */
function parameters(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((match) => match[1] ?? "").sort();
}

describe("the message catalogue", () => {
  const english = catalogue("en");

  it("has the three languages", () => {
    expect([...locales].sort()).toEqual(["en", "nb", "nn"]);
  });

  it.each(["nb", "nn"])("%s has every English key, non-empty, with the same parameters", (locale) => {
    const translated = catalogue(locale);
    expect(Object.keys(translated).sort()).toEqual(Object.keys(english).sort());
    for (const [key, text] of Object.entries(english)) {
      const other = translated[key] ?? "";
      expect(other.trim(), `${locale}.${key}`).not.toBe("");
      expect(parameters(other), `${locale}.${key}`).toEqual(parameters(text));
    }
  });

  it("has no empty English message", () => {
    for (const [key, text] of Object.entries(english)) expect(text.trim(), key).not.toBe("");
  });

  it("keeps the English names the window tests find controls by", () => {
    expect(m.record_start({}, { locale: "en" })).toBe("Start recording");
    expect(m.record_pause({}, { locale: "en" })).toBe("Pause recording");
    expect(m.record_resume({}, { locale: "en" })).toBe("Resume recording");
    expect(m.record_stop({}, { locale: "en" })).toBe("Stop recording");
  });

  it("writes bokmål and nynorsk apart", () => {
    expect(m.nav_settings({}, { locale: "nb" })).toBe("Innstillinger");
    expect(m.nav_settings({}, { locale: "nn" })).toBe("Innstillingar");
    expect(m.record_failed({}, { locale: "nb" })).toBe("Det gikk ikke.");
    expect(m.record_failed({}, { locale: "nn" })).toBe("Det gjekk ikkje.");
  });
});

describe("choosing the language", () => {
  it("maps Norwegian tags to bokmål or nynorsk and the rest to English", () => {
    expect(localeForTag("nb-NO")).toBe("nb");
    expect(localeForTag("no")).toBe("nb");
    expect(localeForTag("nn-NO")).toBe("nn");
    expect(localeForTag("NN_no.UTF-8")).toBe("nn");
    expect(localeForTag("en-US")).toBe("en");
    expect(localeForTag("sv-SE")).toBe("en");
    expect(localeForTag("")).toBe("en");
  });

  it("follows the computer for System default and the choice otherwise", () => {
    expect(localeFor("system", ["nn-NO", "en"])).toBe("nn");
    expect(localeFor("system", ["de-DE", "nb"])).toBe("en");
    expect(localeFor("system", [])).toBe("en");
    expect(localeFor("en", ["nb-NO"])).toBe("en");
    expect(localeFor("nn", ["en-US"])).toBe("nn");
  });

  it("reads a saved choice and ignores anything else", () => {
    const store = (value: string | null) => ({ getItem: (key: string) => (key === LANGUAGE_KEY ? value : null) });
    expect(savedChoice(store("nn"))).toBe("nn");
    expect(savedChoice(store("system"))).toBe("system");
    expect(savedChoice(store("de"))).toBe("system");
    expect(savedChoice(store(null))).toBe("system");
    expect(savedChoice(undefined)).toBe("system");
    const broken = { getItem: (): string | null => { throw new Error("denied"); } };
    expect(savedChoice(broken)).toBe("system");
  });

  it("switches the messages at once and tells whoever listens", () => {
    const heard: string[] = [];
    const stop = onLanguageChange((locale) => heard.push(locale));
    expect(chooseLanguage("nn")).toBe("nn");
    expect(getLocale()).toBe("nn");
    expect(m.record_start()).toBe("Start opptak");
    expect(m.record_stop()).toBe("Stopp opptaket");
    chooseLanguage("en");
    expect(m.record_start()).toBe("Start recording");
    stop();
    chooseLanguage("nb");
    expect(heard).toEqual(["nn", "en"]);
    chooseLanguage("en");
  });
});
