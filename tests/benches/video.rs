//! Screen recording benchmark: CPU (% of one core) and peak RSS of
//! `opptak record --screen` at 1080p30 and 720p30 against `gst-launch-1.0`
//! running the same capture and encode pipeline in the same run, and MB per
//! minute of a slide-like screen; the table goes to `tests/BENCHMARKS.md`.
//!
//! Run: `cargo build --workspace --bins && cargo test -p opptak-tests --bench video`
//! (debug `opptak`; GStreamer itself is always optimised), or with
//! `--release` binaries and `cargo bench -p opptak-tests --bench video`.
//!
//! A private 1920×1080 Xvfb display shows a "slide" (an xmessage window)
//! that moves every 5 s, as a teacher's slides change; a PulseAudio virtual
//! microphone plays a tone. Each recorder runs alone for 20 s (CPU counted
//! over 15 s after its start-up), one after the other, so that they do not
//! share the two cores. Recordings go to a temporary folder that is deleted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_tests::bench::{cpu_time, measured_line, peak_rss_mib, write_section};
use opptak_tests::{ChildGuard, PulseAudio, require_program, workspace_bin};

const RECORD_SECONDS: u64 = 20;
const WARM_UP: Duration = Duration::from_secs(3);
const CPU_WINDOW: Duration = Duration::from_secs(15);

/// One recorder's numbers.
struct Run {
    cpu_percent: f64,
    rss_mib: f64,
    mb_per_minute: f64,
}

fn main() {
    for program in ["Xvfb", "gst-launch-1.0", "ffprobe", "xmessage", "xdotool", "sox"] {
        assert!(
            require_program(program, "for the video benchmark").is_some(),
            "bash .ci/setup installs {program}"
        );
    }
    let scratch = tempfile::Builder::new().prefix("opptak-bench-video-").tempdir().unwrap();
    let display = format!(":{}", 900 + std::process::id() % 90);
    let _xvfb = ChildGuard::spawn(
        "Xvfb",
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "1920x1080x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "Xvfb did not open {display}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _slides = Slides::start(&display);
    let mut pulse = PulseAudio::start().unwrap().expect("the video benchmark needs PulseAudio");
    pulse.keep_source_warm().unwrap();
    let _tone = pulse.play_tone_in_background(scratch.path(), 4 * RECORD_SECONDS + 60).unwrap();
    let mut env = pulse.env();
    env.push(("DISPLAY", display.clone()));

    let mut rows = Vec::new();
    for (preset, width, height, fps) in [("1080p30", 1920, 1080, 30), ("720p30", 1280, 720, 30)] {
        let dir = scratch.path().join(preset);
        let opptak = record_with_opptak(&dir, &env, preset);
        let launched =
            record_with_gst_launch(&dir.join("gst-launch.mp4"), &env, &display, width, height, fps);
        println!(
            "{preset}: opptak {:.1} % {:.0} MiB {:.1} MB/min; gst-launch {:.1} % {:.0} MiB {:.1} MB/min",
            opptak.cpu_percent,
            opptak.rss_mib,
            opptak.mb_per_minute,
            launched.cpu_percent,
            launched.rss_mib,
            launched.mb_per_minute
        );
        rows.push((preset, opptak, launched));
        std::fs::remove_dir_all(&dir).ok();
    }

    let mut section = format!(
        "## Screen recording (`cargo test -p opptak-tests --bench video`)\n\n{}\n\n\
         Each recorder alone for {RECORD_SECONDS} s on a 1920×1080 Xvfb screen whose one window (a \"slide\") \
         moves every 5 s, with the virtual microphone playing a tone; CPU over {} s after a {} s start-up, \
         in % of one core. `opptak record --screen --no-upload` writes fragmented MP4 through its built-in \
         `isofmp4mux` and fsyncs every second; the baseline is `gst-launch-1.0 -e` running the same \
         ximagesrc → x264enc / pulsesrc → avenc_aac pipeline into the system's `mp4mux` \
         (fragmented every 0.5 s; Debian's GStreamer has no `isofmp4mux`) and a filesink. Goal: at most \
         35 % of one core at 1080p30.\n\n\
         | Preset | opptak CPU | gst-launch CPU | opptak peak RSS | gst-launch peak RSS | opptak MB/min (slides) | gst-launch MB/min |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        measured_line(),
        CPU_WINDOW.as_secs(),
        WARM_UP.as_secs()
    );
    for (preset, opptak, launched) in &rows {
        section.push_str(&format!(
            "| {preset} | {:.1} % | {:.1} % | {:.0} MiB | {:.0} MiB | {:.1} | {:.1} |\n",
            opptak.cpu_percent,
            launched.cpu_percent,
            opptak.rss_mib,
            launched.rss_mib,
            opptak.mb_per_minute,
            launched.mb_per_minute
        ));
    }
    write_section("video", &section);
}

/// A window moved to a new place every 5 s until dropped (at most 5 minutes).
struct Slides {
    stop: Arc<AtomicBool>,
    mover: Option<std::thread::JoinHandle<()>>,
    _window: ChildGuard,
}

impl Slides {
    fn start(display: &str) -> Self {
        let window = ChildGuard::spawn(
            "xmessage",
            Command::new("xmessage")
                .args(["-geometry", "1200x700+100+100", "-title", "opptak-slide"])
                .arg("Photosynthesis: light + water + carbon dioxide -> glucose + oxygen")
                .env("DISPLAY", display)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, display) = (stop.clone(), display.to_owned());
        let mover = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut slide = 0u32;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                slide += 1;
                let (x, y) = (100 + (slide * 97) % 600, 50 + (slide * 61) % 300);
                let _ = Command::new("xdotool")
                    .args(["search", "--name", "opptak-slide", "windowmove", &x.to_string(), &y.to_string()])
                    .env("DISPLAY", &display)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                for _ in 0..50 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Self { stop, mover: Some(mover), _window: window }
    }
}

impl Drop for Slides {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mover) = self.mover.take() {
            let _ = mover.join();
        }
    }
}

/// CPU % of one core of `pid` over the window, and its peak RSS.
fn measure(pid: u32) -> (f64, f64) {
    let before = cpu_time(pid);
    std::thread::sleep(CPU_WINDOW);
    let used = cpu_time(pid) - before;
    (100.0 * used.as_secs_f64() / CPU_WINDOW.as_secs_f64(), peak_rss_mib(pid))
}

/// MB per minute of recording, by ffprobe's duration.
fn mb_per_minute(path: &Path) -> f64 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or_else(|_| {
        panic!("ffprobe cannot read {}: {}", path.display(), String::from_utf8_lossy(&output.stderr))
    });
    let bytes = std::fs::metadata(path).unwrap().len() as f64;
    bytes / 1e6 / seconds * 60.0
}

fn record_with_opptak(data_dir: &Path, env: &[(&str, String)], preset: &str) -> Run {
    let mut command = Command::new(workspace_bin("opptak"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["record", "--json", "--no-upload", "--screen", "--preset", preset])
        .args(["--seconds", &RECORD_SECONDS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = ChildGuard::spawn("opptak record", &mut command).unwrap();
    let mut lines = BufReader::new(child.take_stdout().unwrap()).lines().map_while(Result::ok);
    let started = lines.by_ref().find(|line| line.contains("\"event\":\"recording\""));
    assert!(started.is_some(), "opptak record did not start");
    let reader = std::thread::spawn(move || lines.last());
    std::thread::sleep(WARM_UP);
    let (cpu_percent, rss_mib) = measure(child.pid());
    let status = child.wait_timeout(Duration::from_secs(RECORD_SECONDS + 60)).unwrap();
    let last = reader.join().unwrap().unwrap_or_default();
    assert!(status.success(), "opptak record: {status} {last}");
    let result: serde_json::Value = serde_json::from_str(&last).unwrap();
    let path = result["path"].as_str().expect("the recording's path");
    Run { cpu_percent, rss_mib, mb_per_minute: mb_per_minute(Path::new(path)) }
}

/// The pipeline `opptak_capture::VideoRecorder` builds (see its
/// `describe`), with the system's fragmenting mp4mux and a filesink in
/// place of isofmp4mux and the appsink.
fn record_with_gst_launch(
    path: &Path,
    env: &[(&str, String)],
    display: &str,
    width: u32,
    height: u32,
    fps: u32,
) -> Run {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let pipeline = format!(
        "ximagesrc display-name={display} use-damage=false show-pointer=true \
         ! queue leaky=downstream max-size-buffers=4 max-size-bytes=0 max-size-time=0 \
         ! videorate ! videoconvert ! videoscale add-borders=true \
         ! video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1,framerate={fps}/1 \
         ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 \
         ! x264enc tune=zerolatency speed-preset=ultrafast pass=qual quantizer=23 bitrate=6000 key-int-max={keys} \
         ! h264parse ! queue ! mux. \
         pulsesrc ! queue max-size-time=3000000000 ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1 \
         ! audioconvert ! avenc_aac bitrate=96000 ! aacparse ! queue ! mux. \
         mp4mux name=mux fragment-duration=500 ! filesink location={location}",
        keys = fps * 2,
        location = path.display()
    );
    let mut command = Command::new("gst-launch-1.0");
    command.arg("-e").args(pipeline.split_whitespace()).stdout(Stdio::null()).stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = ChildGuard::spawn("gst-launch-1.0", &mut command).unwrap();
    let started = Instant::now();
    std::thread::sleep(WARM_UP);
    let (cpu_percent, rss_mib) = measure(child.pid());
    std::thread::sleep(Duration::from_secs(RECORD_SECONDS).saturating_sub(started.elapsed()));
    // -e: SIGINT sends end-of-stream, so the file is finished.
    child.signal(Signal::SIGINT).unwrap();
    let status = child.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "gst-launch-1.0: {status}");
    Run { cpu_percent, rss_mib, mb_per_minute: mb_per_minute(path) }
}
