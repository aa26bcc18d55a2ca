//! Helpers for Opptak's end-to-end tests: the binaries under test, free
//! ports, and real services (Xvfb, PulseAudio, tauri-driver) that each test
//! starts for itself and stops by PID when the guard drops.
//!
//! A test that needs a program the machine lacks skips with a message on a
//! developer's machine, but fails under `CI=true`: a skipped end-to-end test
//! must never pass silently in CI.

pub mod bench;
pub mod desktop;
mod postgres;
mod process;
mod proxy;
mod seaweed;
mod serve;
mod services;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use postgres::Postgres;
pub use process::{ChildGuard, apps_among, descendants, program_of};
pub use proxy::{
    BoundProxy, EtagRewrite, FaultCounts, FaultProxy, Held, Hold, HoldPoint, HoldingProxy, Shaping,
    ShapingCounts, ShapingProxy,
};
pub use seaweed::SeaweedFs;
pub use serve::{ApiClient, OpptakServe, TEST_TOKEN, sha256_hex, wav_of_len};
pub use services::{PulseAudio, TauriDriver, Xvfb};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Where end-to-end tests save screenshots (`tests/screenshots/`).
pub fn screenshots_dir() -> PathBuf {
    let dir = repo_root().join("tests/screenshots");
    std::fs::create_dir_all(&dir).expect("create tests/screenshots");
    dir
}

/// The target folder of the running test's profile (`target/debug` or
/// `target/release`), where the workspace's binaries are built.
pub fn workspace_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_path_buf()
}

/// A binary of this workspace, from the same target folder as the running
/// test. `cargo build --workspace --bins` (as `.ci/run` does) must have
/// built it; the message says so when it has not.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = workspace_bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests (bash .ci/run does)",
        path.display()
    );
    path
}

/// The Goertzel filter's power at `frequency` Hz in a window of samples
/// taken at `rate` Hz, relative to the window's total power: near 1 for a
/// pure tone at that frequency, near 0 for silence or other sounds.
pub fn tone_share(window: &[i16], frequency: f64, rate: u32) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / f64::from(rate)).cos();
    let (mut previous, mut before) = (0.0, 0.0);
    for &sample in window {
        let current = f64::from(sample) + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    let energy: f64 = window.iter().map(|&sample| f64::from(sample).powi(2)).sum();
    if energy == 0.0 { 0.0 } else { 2.0 * power / (energy * window.len() as f64) }
}

/// A 1 kHz tone at 48 kHz, the virtual microphone's rate.
pub fn write_tone(path: &Path, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..(seconds * 48_000.0) as usize {
        let sample = (n as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0).sin() * 16_000.0;
        writer.write_sample(sample as i16).unwrap();
    }
    writer.finalize().unwrap();
}

/// Seconds of a 1 kHz tone in the first channel of a WAV file.
pub fn seconds_of_tone(path: &Path) -> f64 {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let first_channel: Vec<i16> =
        reader.samples::<i16>().map(Result::unwrap).step_by(usize::from(spec.channels)).collect();
    let window = (spec.sample_rate / 100) as usize;
    let hits = first_channel
        .chunks_exact(window)
        .filter(|chunk| tone_share(chunk, 1000.0, spec.sample_rate) > 0.9)
        .count();
    hits as f64 / 100.0
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and not handed out
/// before by this process.
///
/// It is taken below Linux's ephemeral range (32768–60999). A port bound
/// to 0 and let go comes from that range, where the kernel may give it to
/// any outgoing connection before the server meant for it listens: CI saw
/// WebKitWebDriver fail with "Unable to listen" on such a port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_768);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-32767 on 127.0.0.1 after 1000 tries")
}

/// Whether this run is CI, where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// Finds `program` on PATH. When it is missing: under CI, panics; elsewhere
/// returns `None` after saying which test is skipped and why.
pub fn require_program(program: &str, why: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let message =
            format!("`{program}` is not installed; it is needed {why}. `bash .ci/run` installs it.");
        assert!(!in_ci(), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    found
}
