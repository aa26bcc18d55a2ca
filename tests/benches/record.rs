//! Recording benchmarks over the virtual microphone (a PulseAudio null
//! sink), each against a baseline measured in the same run; the table goes
//! to `tests/BENCHMARKS.md`.
//!
//! Run with release binaries: `cargo build --release --bins && cargo bench -p opptak-tests --bench record`.
//! `OPPTAK_BENCH_LONG_SECONDS` shortens the long recording (default 600).
//!
//! All recorders run at once on the same source while a tone plays:
//! 1. CPU (% of one core) and peak RSS of `opptak record` over its first
//!    60 s at 48 kHz, uploading to `opptak serve` as it records, against
//!    `parec` writing the same source to a WAV file.
//! 2. stop→ready (SIGTERM to the final `ready` line) of a 1-minute and a
//!    long recording: it must not grow with the length.

use std::process::Command;
use std::time::{Duration, Instant};

use opptak_tests::bench::{CliRecorder, cpu_time, measured_line, peak_rss_mib, write_section};
use opptak_tests::{ChildGuard, OpptakServe, PulseAudio, TEST_TOKEN};

const CPU_WINDOW: Duration = Duration::from_secs(60);

fn main() {
    let long = Duration::from_secs(
        std::env::var("OPPTAK_BENCH_LONG_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(600),
    );
    let Some(mut pulse) = PulseAudio::start().unwrap() else {
        panic!("the recording benchmark needs PulseAudio: bash .ci/setup installs it")
    };
    pulse.keep_source_warm().unwrap();
    let scratch = tempfile::Builder::new().prefix("opptak-bench-record-").tempdir().unwrap();
    let server = OpptakServe::start(&scratch.path().join("server"), &[], &[]).unwrap();
    let _tone = pulse.play_tone_in_background(scratch.path(), long.as_secs() + 30).unwrap();

    let mut parec_command = Command::new("parec");
    parec_command
        .args(["-d", "vsink.monitor", "--file-format=wav", "--rate=48000", "--channels=1", "--format=s16le"])
        .arg(scratch.path().join("parec.wav"))
        .envs(pulse.env());
    let mut parec = ChildGuard::spawn("parec", &mut parec_command).unwrap();
    let (short, short_started) = CliRecorder::start(
        &scratch.path().join("short"),
        &pulse,
        &["--server", &server.url, "--token", TEST_TOKEN],
    );
    let (long_recorder, long_started) = CliRecorder::start(
        &scratch.path().join("long"),
        &pulse,
        &["--server", &server.url, "--token", TEST_TOKEN],
    );
    let parec_cpu_before = cpu_time(parec.pid());
    let short_cpu_before = cpu_time(short.child.pid());
    std::thread::sleep(CPU_WINDOW);
    let parec_cpu = cpu_time(parec.pid()) - parec_cpu_before;
    let short_cpu = cpu_time(short.child.pid()) - short_cpu_before;
    let (parec_rss, short_rss) = (peak_rss_mib(parec.pid()), peak_rss_mib(short.child.pid()));
    parec.stop();
    std::thread::sleep((short_started + CPU_WINDOW).saturating_duration_since(Instant::now()));
    let short_stop_to_ready = short.stop_to_ready();
    println!("1-minute recording: stop→ready {short_stop_to_ready:?}");
    std::thread::sleep((long_started + long).saturating_duration_since(Instant::now()));
    let long_stop_to_ready = long_recorder.stop_to_ready();
    println!("{long:?} recording: stop→ready {long_stop_to_ready:?}");

    let percent = |cpu: Duration| 100.0 * cpu.as_secs_f64() / CPU_WINDOW.as_secs_f64();
    let goal = |met: bool| if met { "met" } else { "**not met**" };
    let minutes = long.as_secs_f64() / 60.0;
    let section = format!(
        "## Recording (`--bench record`)\n\n{}\n\n\
         ### CPU and memory over 60 s at 48 kHz mono, on the same virtual microphone, at the same time\n\n\
         | | CPU, % of one core | peak RSS MiB |\n|---|---|---|\n\
         | `opptak record`, uploading to `opptak serve` as it records | {:.2} | {:.1} |\n\
         | baseline: `parec` writing the same source to a WAV file | {:.2} | {:.1} |\n\n\
         Goal ≤ 2 % of a core: {}.\n\n\
         ### stop→ready (SIGTERM until the server has the recording, SHA-256 checked)\n\n\
         | recording length | stop→ready s |\n|---|---|\n\
         | 1 min | {:.2} |\n| {minutes:.0} min | {:.2} |\n\n\
         Goal ≤ 3 s, not growing with length: {}.\n\n",
        measured_line(),
        percent(short_cpu),
        short_rss,
        percent(parec_cpu),
        parec_rss,
        goal(percent(short_cpu) <= 2.0),
        short_stop_to_ready.as_secs_f64(),
        long_stop_to_ready.as_secs_f64(),
        goal(long_stop_to_ready.as_secs_f64() <= 3.0 && short_stop_to_ready.as_secs_f64() <= 3.0),
    );
    println!("{section}");
    write_section("record", &section);
}
