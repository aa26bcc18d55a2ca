// Turning the doctor's report into words a teacher can act on.

import type { CheckStatus, DoctorCheck, DoctorReport } from "../bindings";
import * as m from "./paraglide/messages.js";

const STATUS_LABELS: Readonly<Record<CheckStatus, () => string>> = {
  ok: m.doctor_ok,
  warning: m.doctor_warning,
  error: m.doctor_error,
};

/** The word shown next to a check's icon (never colour alone). */
export function statusLabel(status: CheckStatus): string {
  return STATUS_LABELS[status]();
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

function joinAnd(parts: string[]): string {
  if (parts.length <= 1) return parts.join("");
  return m.doctor_and({ first: parts.slice(0, -1).join(", "), last: parts[parts.length - 1] ?? "" });
}

export function summariseReport(report: DoctorReport): ReportSummary {
  const counts = countStatuses(report.checks);
  const total = report.checks.length;
  const attention = counts.warning + counts.error;

  if (attention === 0 && report.ok) {
    return {
      tone: "ok",
      headline: m.doctor_all_well(),
      detail:
        total === 0
          ? m.doctor_nothing_checked()
          : total === 1
            ? m.doctor_only_check_passed()
            : m.doctor_all_passed({ total }),
      counts,
    };
  }

  if (attention === 0) {
    // The report says "not ok" without naming a check; don't pretend otherwise.
    return {
      tone: "warning",
      headline: m.doctor_something_needs_attention(),
      detail: m.doctor_unnamed_problem(),
      counts,
    };
  }

  const parts: string[] = [];
  if (counts.error > 0) parts.push(m.doctor_errors({ count: counts.error }));
  if (counts.warning > 0) parts.push(m.doctor_warnings({ count: counts.warning }));

  return {
    tone: counts.error > 0 ? "error" : "warning",
    headline: m.doctor_attention({ count: attention }),
    detail: m.doctor_out_of({ problems: joinAnd(parts), checks: m.doctor_checks({ count: total }) }),
    counts,
  };
}

/** Advice worth showing: present and not just whitespace. */
export function adviceFor(check: DoctorCheck): string | null {
  const advice = check.advice?.trim();
  return advice ? advice : null;
}
