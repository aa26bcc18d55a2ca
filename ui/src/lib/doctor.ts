// Turning the doctor's report into words a teacher can act on.

import type { CheckStatus, DoctorCheck, DoctorReport } from "../bindings";
import { formatBytes, formatNumber } from "./format";
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

const TITLES: Readonly<Record<string, () => string>> = {
  "data-dir": m.doctor_title_data_dir,
  "disk-space": m.doctor_title_disk_space,
  microphone: m.doctor_title_microphone,
  video: m.doctor_title_video,
  display: m.doctor_title_display,
  webview: m.doctor_title_webview,
};

/** What was checked, in the window's language (the engine's English for a check it added later). */
export function checkTitle(check: DoctorCheck): string {
  return TITLES[check.id]?.() ?? check.title;
}

/** What the check found, in the window's language. */
export function checkDetail(check: DoctorCheck): string {
  const finding = check.finding;
  switch (finding.code) {
    case "dataDirWritable":
      return m.doctor_data_dir_writable({ path: finding.path });
    case "dataDirNotWritable":
      return m.doctor_data_dir_not_writable({ path: finding.path });
    case "spaceUnknown":
      return m.doctor_space_unknown({ path: finding.path });
    case "space":
      return m.doctor_space({ free: formatBytes(finding.freeBytes), hours: formatNumber(finding.hours) });
    case "microphone":
      return m.doctor_microphone({
        name: finding.name,
        rate: formatNumber(finding.sampleRate),
        channels: finding.channels,
        others: finding.others,
      });
    case "noMicrophone":
      return m.doctor_no_microphone({ reason: finding.reason });
    case "videoReady":
      return m.doctor_video_ready();
    case "videoMissing":
      return m.doctor_video_missing({ missing: finding.missing });
    case "displayReachable":
      return m.doctor_display_reachable({ display: finding.display });
    case "noDisplay":
      return m.doctor_no_display();
    case "displayUnreachable":
      return m.doctor_display_unreachable({ variable: finding.variable });
    case "webviewFound":
      return m.doctor_webview_found({ path: finding.path });
    case "webviewMissing":
      return m.doctor_webview_missing({ library: finding.library });
  }
}

/** What to do about a check that did not pass, in the window's language; null when nothing. */
export function adviceFor(check: DoctorCheck): string | null {
  if (check.status === "ok") return null;
  const finding = check.finding;
  switch (finding.code) {
    case "dataDirNotWritable":
      return m.doctor_data_dir_advice({ reason: finding.reason });
    case "spaceUnknown":
      return m.doctor_space_unknown_advice();
    case "space":
      return check.status === "error"
        ? m.doctor_space_too_little({ needed: formatBytes(finding.neededBytes) })
        : m.doctor_space_low();
    case "noMicrophone":
      return m.doctor_no_microphone_advice();
    case "videoMissing":
      return m.doctor_video_missing_advice();
    case "noDisplay":
    case "displayUnreachable":
      return m.doctor_display_advice();
    case "webviewMissing":
      return m.doctor_webview_advice();
    default:
      return check.advice?.trim() || null;
  }
}
