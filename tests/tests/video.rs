//! `opptak record --screen` as a real process: an Xvfb display with a
//! window moving across it, a PulseAudio virtual microphone the test plays
//! a tone into, and a real `opptak serve` the recording is uploaded to.
//! ffprobe and ffmpeg check what was made.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_tests::{
    ChildGuard, OpptakServe, PulseAudio, TEST_TOKEN, Xvfb, require_program, seconds_of_tone, sha256_hex,
    workspace_bin, write_tone,
};
use serde_json::Value;

/// What a video test needs: a display with a moving window, a warm
/// virtual microphone, ffprobe and ffmpeg. `None` (skip) outside CI when a
/// program is missing.
struct Desk {
    xvfb: Xvfb,
    pulse: PulseAudio,
    _window: MovingWindow,
}

impl Desk {
    fn start() -> Option<Self> {
        require_program("ffprobe", "to check the recorded video")?;
        require_program("ffmpeg", "to decode the recorded audio")?;
        require_program("xmessage", "for a window on the virtual display")?;
        require_program("xdotool", "to move the window")?;
        let xvfb = Xvfb::start().unwrap()?;
        let mut pulse = PulseAudio::start().unwrap()?;
        pulse.keep_source_warm().unwrap();
        let window = MovingWindow::start(xvfb.display());
        Some(Self { xvfb, pulse, _window: window })
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.pulse.env();
        env.push(("DISPLAY", self.xvfb.display().to_owned()));
        env
    }
}

/// An xmessage window that xdotool moves across the display ten times a
/// second, so that every frame differs, until dropped (at most 2 minutes).
struct MovingWindow {
    stop: Arc<AtomicBool>,
    mover: Option<std::thread::JoinHandle<()>>,
    _window: ChildGuard,
}

impl MovingWindow {
    fn start(display: &str) -> Self {
        let window = ChildGuard::spawn(
            "xmessage",
            Command::new("xmessage")
                .args(["-geometry", "400x200+0+0", "-title", "opptak-moving", "Opptak records this window"])
                .env("DISPLAY", display)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, display) = (stop.clone(), display.to_owned());
        let mover = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut step = 0u32;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                step += 1;
                let (x, y) = ((step * 37) % 800, (step * 23) % 500);
                let _ = Command::new("xdotool")
                    .args(["search", "--name", "opptak-moving", "windowmove", &x.to_string(), &y.to_string()])
                    .env("DISPLAY", &display)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { stop, mover: Some(mover), _window: window }
    }
}

impl Drop for MovingWindow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mover) = self.mover.take() {
            let _ = mover.join();
        }
    }
}

/// A running `opptak record --json --screen …` and its stdout lines.
struct RecordProcess {
    child: ChildGuard,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl RecordProcess {
    fn spawn(data_dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Self {
        let mut command = Command::new(workspace_bin("opptak"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["record", "--json"])
            .args(args)
            .env_remove("OPPTAK_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = ChildGuard::spawn("opptak record", &mut command).unwrap();
        let stdout = child.take_stdout().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    fn event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.seen.iter().find(|line| line["event"] == name) {
                return found.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {name} event within {timeout:?}"),
            }
        }
    }

    /// Waits for the exit; the last line printed.
    fn finish(&mut self, timeout: Duration) -> Value {
        let status = self.child.wait_timeout(timeout).unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let last = self.seen.last().cloned().expect("opptak record printed nothing");
        assert!(status.success(), "{status}: {last}");
        last
    }
}

/// `ffprobe` of a file: (streams as (codec type, codec name), format duration).
fn ffprobe(path: &Path) -> (Vec<(String, String)>, f64) {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let probe: Value = serde_json::from_slice(&output.stdout).unwrap();
    let streams = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stream| {
            (
                stream["codec_type"].as_str().unwrap().to_owned(),
                stream["codec_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let duration = probe["format"]["duration"].as_str().and_then(|text| text.parse().ok()).unwrap_or(0.0);
    (streams, duration)
}

/// Decodes every frame of the file (an error in any fails) and writes its
/// audio as a 48 kHz mono WAV.
fn decode_audio(path: &Path, wav: &Path) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-map", "0:a", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", "-y"])
        .arg(wav)
        .args(["-map", "0:v", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ffmpeg {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn h264_and_aac() -> Vec<(String, String)> {
    vec![("video".into(), "h264".into()), ("audio".into(), "aac".into())]
}

fn server_recording(server: &OpptakServe, recording_id: &str) -> opptak_api::Recording {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(server.client().recording(recording_id)).unwrap()
}

#[test]
fn ten_seconds_of_screen_and_a_tone_arrive_on_the_server_as_h264_and_aac() {
    let Some(desk) = Desk::start() else { return };
    let temp = tempfile::tempdir().unwrap();
    let clip = temp.path().join("tone.wav");
    write_tone(&clip, 4.0);
    let server = OpptakServe::start(&temp.path().join("server"), &[], &[]).unwrap();

    let mut record = RecordProcess::spawn(
        &temp.path().join("data"),
        &desk.env(),
        &["--screen", "--seconds", "10", "--server", &server.url, "--token", TEST_TOKEN],
    );
    let started = record.event("recording", Duration::from_secs(20));
    assert_eq!(started["video"]["width"], 1280, "{started}");
    assert_eq!(started["video"]["fps"], 30, "{started}");
    std::thread::sleep(Duration::from_secs(2));
    desk.pulse.play(&clip).unwrap();
    let last = record.finish(Duration::from_secs(60));
    assert_eq!(last["status"], "ready", "{last}");

    let path = PathBuf::from(last["path"].as_str().unwrap());
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("mp4"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(last["sha256"], sha256_hex(&bytes));
    let on_server = server_recording(&server, last["recordingId"].as_str().unwrap());
    assert_eq!(on_server.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    assert_eq!((on_server.content_type.as_str(), on_server.is_video_recording), ("video/mp4", true));

    let (streams, duration) = ffprobe(&path);
    assert_eq!(streams, h264_and_aac());
    assert!((duration - 10.0).abs() <= 0.5, "ffprobe says {duration} s for --seconds 10");
    let server_seconds = on_server.duration_seconds.expect("the server measured the duration");
    assert!((server_seconds - duration).abs() < 0.1, "server {server_seconds} s, ffprobe {duration} s");

    let wav = temp.path().join("audio.wav");
    decode_audio(&path, &wav);
    let tone = seconds_of_tone(&wav);
    assert!((3.5..=4.1).contains(&tone), "{tone} s of the 4 s tone in the recorded audio");
    let levels = record.seen.iter().filter(|line| line["event"] == "level").count();
    assert!((180..=215).contains(&levels), "{levels} level events in 10 s (20 a second)");
}

#[test]
fn a_screen_recording_killed_at_12_seconds_is_cut_to_whole_fragments_and_uploaded_at_the_next_start() {
    let Some(desk) = Desk::start() else { return };
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = OpptakServe::start(&temp.path().join("server"), &[], &[]).unwrap();
    let mut record = RecordProcess::spawn(
        &data,
        &desk.env(),
        &["--screen", "--seconds", "20", "--server", &server.url, "--token", TEST_TOKEN],
    );
    record.event("recording", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(12));
    record.child.signal(Signal::SIGKILL).unwrap();
    record.child.wait_timeout(Duration::from_secs(10)).unwrap();
    let recordings = data.join("recordings");
    let files: Vec<PathBuf> =
        std::fs::read_dir(&recordings).unwrap().map(|entry| entry.unwrap().path()).collect();
    let [path] = &files[..] else { panic!("one recording expected: {files:?}") };
    let killed_len = std::fs::metadata(path).unwrap().len();

    let resume = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(&data)
        .args(["resume", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resume.stdout);
    assert!(resume.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&resume.stderr));
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "ready", "{stdout}");

    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() as u64 <= killed_len, "recovery only cuts");
    assert_eq!(last["sha256"], sha256_hex(&bytes));
    let on_server = server_recording(&server, last["recordingId"].as_str().unwrap());
    assert_eq!(on_server.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    let (streams, duration) = ffprobe(path);
    assert_eq!(streams, h264_and_aac());
    assert!((11.0..=12.6).contains(&duration), "{duration} s kept of 12 s recorded before the kill");
    let wav = temp.path().join("audio.wav");
    decode_audio(path, &wav);
}

/// Runs `opptak record` to its end; (exit code, stderr).
fn record_fails(data_dir: &Path, env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(workspace_bin("opptak"));
    command.arg("--data-dir").arg(data_dir).args(["record", "--no-upload", "--seconds", "2"]).args(args);
    command.env_remove("DISPLAY").env_remove("XDG_SESSION_TYPE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn no_display_or_no_camera_is_said_plainly_and_leaves_no_file_and_no_journal_row() {
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let env = pulse.env();

    let (code, stderr) = record_fails(&data, &env, &["--screen"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot be recorded: this session has no graphical desktop"), "{stderr}");
    let (code, stderr) = record_fails(&data, &env, &["--screen", "--display", ":4999"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("The screen :4999 cannot be recorded: no desktop is running on it")
            && stderr.contains("pick another screen"),
        "{stderr}"
    );
    // A Wayland session's DISPLAY is XWayland's, where X11 capture films black.
    let wayland =
        [env.clone(), vec![("XDG_SESSION_TYPE", "wayland".into()), ("DISPLAY", ":0".into())]].concat();
    let (code, stderr) = record_fails(&data, &wayland, &["--screen"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("The screen of a Wayland desktop cannot be recorded yet")
            && stderr.contains("choose an Xorg (X11) session"),
        "{stderr}"
    );
    let (code, stderr) = record_fails(&data, &env, &["--camera", "/dev/video-opptak-none"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("The camera /dev/video-opptak-none cannot be used: it is not connected")
            && stderr.contains("plugged in"),
        "{stderr}"
    );

    let left: Vec<PathBuf> = std::fs::read_dir(data.join("recordings"))
        .map(|dir| dir.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "half-made files: {left:?}");
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(&data)
        .args(["recordings", "--json"])
        .output()
        .unwrap();
    let journaled: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(journaled.as_array().map(Vec::len), Some(0), "{journaled}");
}

/// `opptak recordings --json`.
fn journaled(data_dir: &Path) -> Value {
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["recordings", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_journaled_durable_prefix_plays_while_recording_and_paused_time_is_left_out() {
    use std::io::Write;
    let Some(desk) = Desk::start() else { return };
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut record = RecordProcess::spawn(&data, &desk.env(), &["--screen", "--seconds", "9", "--no-upload"]);
    let mut enter = record.child.take_stdin().unwrap();
    record.event("recording", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));

    // What the journal calls durable is a playable MP4 on its own: it ends
    // after a whole fragment, so every part sent while recording stays valid.
    let rows = journaled(&data);
    let durable = rows[0]["bytes"].as_u64().unwrap();
    let path = PathBuf::from(rows[0]["path"].as_str().unwrap());
    assert!(durable > 0, "nothing durable after 3 s: {rows}");
    let prefix = temp.path().join("prefix.mp4");
    std::fs::write(&prefix, &std::fs::read(&path).unwrap()[..durable as usize]).unwrap();
    let (streams, seconds) = ffprobe(&prefix);
    assert_eq!(streams, h264_and_aac());
    assert!((1.0..=3.5).contains(&seconds), "{seconds} s durable after 3 s");
    decode_audio(&prefix, &temp.path().join("prefix.wav"));

    enter.write_all(b"\n").unwrap();
    record.event("paused", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    enter.write_all(b"\n").unwrap();
    record.event("resumed", Duration::from_secs(5));
    let last = record.finish(Duration::from_secs(60));
    assert_eq!(last["status"], "onThisComputer", "{last}");
    let (streams, duration) = ffprobe(&path);
    assert_eq!(streams, h264_and_aac());
    assert!((duration - 6.0).abs() <= 0.5, "{duration} s recorded of 9 s with a 3 s pause");
    let reported = last["seconds"].as_f64().unwrap();
    assert!((reported - duration).abs() <= 0.2, "opptak says {reported} s, ffprobe {duration} s");
    decode_audio(&path, &temp.path().join("audio.wav"));
}

#[test]
fn a_busy_screen_is_uploaded_part_by_part_while_it_records() {
    let Some(desk) = Desk::start() else { return };
    require_program("ffplay", "to fill the screen with moving noise").unwrap_or_else(|| panic!("no ffplay"));
    // Noise compresses worst: the encoder's bitrate cap (6 Mbit/s) fills a
    // 5 MiB part in about 7 s.
    let _noise = ChildGuard::spawn(
        "ffplay",
        Command::new("ffplay")
            .args([
                "-v",
                "error",
                "-an",
                "-f",
                "lavfi",
                "-i",
                "nullsrc=s=640x400:r=30,geq=random(1)*255:128:128",
            ])
            .args(["-x", "1280", "-y", "800"])
            .env("DISPLAY", desk.xvfb.display())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let temp = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(&temp.path().join("server"), &["--part-size-mib", "5"], &[]).unwrap();
    let mut record = RecordProcess::spawn(
        &temp.path().join("data"),
        &desk.env(),
        &["--screen", "--seconds", "12", "--server", &server.url, "--token", TEST_TOKEN],
    );
    record.event("recording", Duration::from_secs(20));
    // The recording stops 12 s after it started; part 1 must come before.
    let stops_at = Instant::now() + Duration::from_secs(12);
    let part_one = loop {
        let left = stops_at.saturating_duration_since(Instant::now());
        match record.lines.recv_timeout(left) {
            Ok(line) if line["event"] == "partSent" && line["partNumber"] == 1 => break Some(line),
            Ok(line) => record.seen.push(line),
            Err(_) => break None,
        }
    };
    assert!(part_one.is_some(), "part 1 was not sent while recording");
    let last = record.finish(Duration::from_secs(90));
    assert_eq!(last["status"], "ready", "{last}");
    assert!(last["bytes"].as_u64().unwrap() > 5 * 1024 * 1024, "{last}");

    let path = PathBuf::from(last["path"].as_str().unwrap());
    assert_eq!(last["sha256"], sha256_hex(&std::fs::read(&path).unwrap()));
    let (streams, duration) = ffprobe(&path);
    assert_eq!(streams, h264_and_aac());
    assert!((duration - 12.0).abs() <= 0.5, "{duration} s for --seconds 12");
}

#[test]
fn the_doctor_finds_gstreamer_and_every_part_a_video_recording_uses() {
    require_program("gst-inspect-1.0", "to see that GStreamer is installed")
        .unwrap_or_else(|| panic!("no GStreamer"));
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(temp.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let video = report["checks"].as_array().unwrap().iter().find(|check| check["id"] == "video").cloned();
    let video = video.unwrap_or_else(|| panic!("no video check: {report}"));
    assert_eq!(video["status"], "ok", "{video}");
    assert!(video["detail"].as_str().unwrap().contains("GStreamer"), "{video}");
}
