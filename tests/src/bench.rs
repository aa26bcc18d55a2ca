//! What the benchmarks in `tests/benches/` share: their section of
//! `tests/BENCHMARKS.md`, statistics, and a process's CPU time and memory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{ChildGuard, PulseAudio, repo_root, workspace_bin, workspace_bin_dir};

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

/// The heading line every section starts with: when, on how many cores,
/// and which build (`cargo bench`: release; `cargo test --bench`: debug).
pub fn measured_line() -> String {
    let build = workspace_bin_dir().file_name().map(|name| name.to_string_lossy().into_owned());
    format!("Measured {} on {} cores, {} build.", now_utc(), cores(), build.as_deref().unwrap_or("unknown"))
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

/// Proportional set size of `pid` now, in MiB: its share of the pages it
/// maps, so the sizes of a process tree add up without counting shared
/// libraries twice.
pub fn pss_mib(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kib: f64 = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// How much of `pid`'s own program code (its executable's code mapping, not
/// the libraries') is resident now, in MiB.
pub fn program_code_mib(pid: u32) -> f64 {
    let program = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_code = false;
    let mut kib = 0.0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A mapping's header: "start-end perms offset dev inode path".
        if fields.first().is_some_and(|range| range.contains('-')) && fields.len() >= 5 {
            in_code = fields[1].contains('x') && fields.get(5).is_some_and(|path| Path::new(path) == program);
        } else if in_code && fields.first() == Some(&"Rss:") {
            kib += fields.get(1).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    kib / 1024.0
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

/// `opptak record --json` over the virtual microphone, with its output lines.
pub struct CliRecorder {
    /// The recording process.
    pub child: ChildGuard,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl CliRecorder {
    /// Starts recording into `data_dir` with `args` after `record --json`
    /// (e.g. `--server URL --token T`; none: the embedded server), and
    /// returns when the recording runs, with the time it began.
    pub fn start(data_dir: &Path, pulse: &PulseAudio, args: &[&str]) -> (Self, Instant) {
        let mut command = Command::new(workspace_bin("opptak"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["record", "--json"])
            .args(args)
            .envs(pulse.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = ChildGuard::spawn("opptak record", &mut command).unwrap();
        let stdout = child.take_stdout().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
                if value["event"] == "level" {
                    continue;
                }
                if send.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        let recorder = Self { child, lines };
        let started = recorder.until(Duration::from_secs(15), |line| line["event"] == "recording");
        (recorder, started)
    }

    /// Waits for the first output line that is `wanted`, and returns when it came.
    pub fn until(&self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("opptak record answered in time");
            if wanted(&line) {
                return at;
            }
        }
    }

    /// SIGTERM, then the time until the final line says `ready`.
    pub fn stop_to_ready(&self) -> Duration {
        let stopped = Instant::now();
        self.child.signal(Signal::SIGTERM).unwrap();
        let ready = self.until(Duration::from_secs(60), |line| line.get("status").is_some());
        ready.duration_since(stopped)
    }
}
