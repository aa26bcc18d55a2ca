//! What the benchmarks in `tests/benches/` share: their section of
//! `tests/BENCHMARKS.md`, statistics, and a process's CPU time and memory.

use std::time::Duration;

use crate::repo_root;

/// Replaces the section between `<!-- bench:NAME:begin -->` and
/// `<!-- bench:NAME:end -->` in `tests/BENCHMARKS.md` (appending it when
/// missing), keeping the other benchmarks' sections.
pub fn write_section(name: &str, section: &str) {
    let path = repo_root().join("tests/BENCHMARKS.md");
    let (begin, end) = (format!("<!-- bench:{name}:begin -->"), format!("<!-- bench:{name}:end -->"));
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo bench -p opptak-tests`; each table compares with a baseline measured in the same run.\n\n".into()
    });
    let block = format!("{begin}\n{section}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(start), Some(stop)) => format!("{}{block}{}", &old[..start], &old[stop + end.len()..]),
        _ => format!("{old}\n{block}\n"),
    };
    std::fs::write(&path, new).expect("write tests/BENCHMARKS.md");
}

/// The date and time now, UTC, to the minute.
pub fn now_utc() -> String {
    let output = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    output.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned()).unwrap_or_default()
}

/// How many cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

/// The heading line every section starts with: when, and on how many cores.
pub fn measured_line() -> String {
    format!("Measured {} on {} cores, release build.", now_utc(), cores())
}

/// The median (the upper one for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn proc_status_kib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0.0)
}

/// Resident set size of `pid` now, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:") / 1024.0
}

/// The largest resident set size `pid` has had, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmHWM:") / 1024.0
}

/// User + system CPU time `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    // utime and stime: fields 14 and 15 of stat(5).
    stat_ticks(&pid.to_string(), 11..13)
}

/// User + system CPU time of the children this process has waited for.
pub fn children_cpu_time() -> Duration {
    // cutime and cstime: fields 16 and 17 of stat(5).
    stat_ticks("self", 13..15)
}

/// The sum of the clock-tick fields `range` of `/proc/PROC/stat`, counted
/// from 0 after the command name (which may hold spaces).
fn stat_ticks(proc: &str, range: std::ops::Range<usize>) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{proc}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(range).unwrap_or_default().iter().filter_map(|f| f.parse::<u64>().ok()).sum();
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}
