// Turning the doctor's report into words a teacher can act on.

import type { CheckStatus, DoctorCheck, DoctorReport } from "../bindings";

export const STATUS_LABELS: Readonly<Record<CheckStatus, string>> = {
  ok: "OK",
  warning: "Warning",
  error: "Error",
};

/** The word shown next to a check's icon (never colour alone). */
export function statusLabel(status: CheckStatus): string {
  return STATUS_LABELS[status];
}

export type StatusCounts = Record<CheckStatus, number>;

export function countStatuses(checks: readonly DoctorCheck[]): StatusCounts {
  const counts: StatusCounts = { ok: 0, warning: 0, error: 0 };
  for (const check of checks) counts[check.status] += 1;
  return counts;
}

export type ReportSummary = {
  /** The worst status in the report; picks the headline's icon. */
  tone: CheckStatus;
  /** e.g. "All is well", "1 thing needs attention", "2 things need attention". */
  headline: string;
  /** One sentence with the numbers behind the headline. */
  detail: string;
  counts: StatusCounts;
};

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function joinAnd(parts: string[]): string {
  if (parts.length <= 1) return parts.join("");
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}

export function summariseReport(report: DoctorReport): ReportSummary {
  const counts = countStatuses(report.checks);
  const total = report.checks.length;
  const attention = counts.warning + counts.error;

  if (attention === 0 && report.ok) {
    return {
      tone: "ok",
      headline: "All is well",
      detail:
        total === 0
          ? "There was nothing to check."
          : total === 1
            ? "The only check passed."
            : `All ${total} checks passed.`,
      counts,
    };
  }

  if (attention === 0) {
    // The report says "not ok" without naming a check; don't pretend otherwise.
    return {
      tone: "warning",
      headline: "Something needs attention",
      detail: "Opptak found a problem but could not say which check it was.",
      counts,
    };
  }

  const parts: string[] = [];
  if (counts.error > 0) parts.push(plural(counts.error, "error", "errors"));
  if (counts.warning > 0) parts.push(plural(counts.warning, "warning", "warnings"));

  return {
    tone: counts.error > 0 ? "error" : "warning",
    headline: `${plural(attention, "thing needs", "things need")} attention`,
    detail: `${joinAnd(parts)} out of ${plural(total, "check", "checks")}.`,
    counts,
  };
}

/** Advice worth showing: present and not just whitespace. */
export function adviceFor(check: DoctorCheck): string | null {
  const advice = check.advice?.trim();
  return advice ? advice : null;
}
