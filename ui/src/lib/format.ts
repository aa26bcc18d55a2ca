// Dates, durations, sizes and numbers in the window's language, with the
// browser's `Intl`. Units (kB, MB) and the clock's "1:02:03" read the same
// in all three languages; the digits, decimal commas and dates do not.

import { getLocale, type Locale } from "./paraglide/runtime.js";

/**
 * The tag `Intl` is asked for: the locale itself when `Intl` knows it.
 * Some engines ship without nynorsk data; nynorsk then borrows bokmål's
 * numbers and dates, which are written the same way, rather than falling
 * to the engine's default (often American English).
 */
export function intlLocale(
  locale: Locale = getLocale(),
  supported: (tag: string) => boolean = (tag) =>
    Intl.NumberFormat.supportedLocalesOf([tag]).length > 0 && Intl.DateTimeFormat.supportedLocalesOf([tag]).length > 0,
): string {
  if (locale === "nn" && !supported("nn")) return "nb";
  return locale;
}

/** A whole or decimal number: "1 234" in nb/nn, "1,234" in English. */
export function formatNumber(value: number, locale: Locale = getLocale(), fractionDigits = 0): string {
  return new Intl.NumberFormat(intlLocale(locale), {
    minimumFractionDigits: fractionDigits,
    maximumFractionDigits: fractionDigits,
  }).format(value);
}

const SIZE_UNITS = ["kilobyte", "megabyte", "gigabyte", "terabyte"] as const;

/** "850 B", "12 kB", "4.3 MB" ("4,3 MB" in nb/nn): decimal units, as file managers show them. */
export function formatBytes(bytes: number, locale: Locale = getLocale()): string {
  if (!Number.isFinite(bytes) || bytes < 1000) {
    // Intl's "byte" unit reads "850 byte" in English; every file manager says "B".
    return `${formatNumber(Math.max(0, Math.round(bytes || 0)), locale)} B`;
  }
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < SIZE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  // Rounded first so that 9.96 MB shows as "10 MB", not "10.0 MB".
  const digits = Math.round(value * 10) / 10 < 10 ? 1 : 0;
  return new Intl.NumberFormat(intlLocale(locale), {
    style: "unit",
    unit: SIZE_UNITS[unit],
    unitDisplay: "short",
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}

function unit(value: number, name: "hour" | "minute" | "second", locale: Locale): string {
  return new Intl.NumberFormat(intlLocale(locale), { style: "unit", unit: name, unitDisplay: "short" }).format(value);
}

/** A stretch of time: "20 sec", "1 min", "1 hr 5 min" ("1 t 5 min" in nb). */
export function formatDuration(seconds: number, locale: Locale = getLocale()): string {
  const total = Math.max(0, Math.ceil(Number.isFinite(seconds) ? seconds : 0));
  if (total < 60) return unit(total, "second", locale);
  const minutes = Math.round(total / 60);
  if (minutes < 60) return unit(minutes, "minute", locale);
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? unit(hours, "hour", locale) : `${unit(hours, "hour", locale)} ${unit(rest, "minute", locale)}`;
}

/** A moment, date and time of day, in the computer's time zone: "5. des. 2026, 10:15" in nb. */
export function formatDateTime(unixSeconds: number, locale: Locale = getLocale()): string {
  return new Intl.DateTimeFormat(intlLocale(locale), { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(unixSeconds * 1000),
  );
}
