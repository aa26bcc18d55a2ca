//! `opptak record` as a real process, recording a real (virtual, clocked)
//! microphone: a PulseAudio null sink that the test plays clips into with
//! `paplay`, uploading to a real `opptak serve` while it records.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_tests::{
    ChildGuard, OpptakServe, PulseAudio, TEST_TOKEN, require_program, sha256_hex, tone_share, workspace_bin,
};
use serde_json::Value;

const RATE: u32 = 48_000;

/// A running `opptak record --json` and the lines it printed, with when.
struct RecordProcess {
    child: ChildGuard,
    lines: mpsc::Receiver<(Instant, Value)>,
    seen: Vec<(Instant, Value)>,
}

impl RecordProcess {
    fn spawn(data_dir: &Path, pulse: &PulseAudio, args: &[&str]) -> Self {
        Self::spawn_with_env(data_dir, &pulse.env(), args)
    }

    fn spawn_with_env(data_dir: &Path, env: &[(&str, String)], args: &[&str]) -> Self {
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
                if send.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The first line (seen before or arriving within `timeout`) that `wanted` accepts.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        if let Some(found) = self.seen.iter().find(|(_, line)| wanted(line)) {
            return found.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line.1) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {timeout:?}; saw {:?}", self.events()),
            }
        }
    }

    fn event(&mut self, name: &str, timeout: Duration) -> (Instant, Value) {
        self.wait_for(name, timeout, |line| line["event"] == name)
    }

    /// Waits for the process to exit and returns its status and final line.
    fn finish(&mut self, timeout: Duration) -> (ExitStatus, Instant, Value) {
        let status = self.child.wait_timeout(timeout).unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let (at, last) = self.seen.last().cloned().unwrap_or_else(|| panic!("opptak record printed nothing"));
        (status, at, last)
    }

    /// Event names seen so far, without the 20-a-second levels.
    fn events(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, line)| line["event"] != "level")
            .map(|(_, line)| line.get("event").unwrap_or(line).to_string())
            .collect()
    }
}

/// `opptak resume --json` to its end; its last line, which must say ready.
fn resume_to_ready(data_dir: &Path) -> Value {
    let resume = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["resume", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resume.stdout);
    assert!(resume.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&resume.stderr));
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "ready", "{stdout}");
    last
}

/// `opptak recordings --json`.
fn recordings(data_dir: &Path) -> Value {
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["recordings", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

fn virtual_microphone() -> Option<PulseAudio> {
    let mut pulse = PulseAudio::start().unwrap()?;
    pulse.keep_source_warm().unwrap();
    Some(pulse)
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &sample in samples {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
}

fn tone(path: &Path, seconds: f64) {
    let samples: Vec<i16> = (0..(seconds * f64::from(RATE)) as usize)
        .map(|n| ((n as f64 * 2.0 * std::f64::consts::PI * 1000.0 / f64::from(RATE)).sin() * 16_000.0) as i16)
        .collect();
    write_wav(path, &samples);
}

/// A spoken clip at the microphone's rate, so that PulseAudio passes its
/// samples through unchanged.
fn speech(dir: &Path) -> Option<PathBuf> {
    require_program("espeak-ng", "for a spoken test clip")?;
    require_program("sox", "to resample the spoken clip")?;
    let raw = dir.join("speech-raw.wav");
    let clip = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg("Good morning class, today we record a lesson.")
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    Some(clip)
}

fn samples_of(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|err| panic!("{} is not a valid WAV: {err}", path.display()));
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (reader.spec(), samples)
}

/// 10 ms windows that hold a 1 kHz tone, as (first, last, count).
fn tone_windows(samples: &[i16]) -> (usize, usize, usize) {
    let window = (RATE / 100) as usize;
    let hits: Vec<usize> = samples
        .chunks_exact(window)
        .enumerate()
        .filter(|(_, chunk)| tone_share(chunk, 1000.0, RATE) > 0.9)
        .map(|(n, _)| n)
        .collect();
    let first = hits.first().copied().unwrap_or(0) * window;
    let last = hits.last().map_or(0, |n| (n + 1) * window);
    (first, last, hits.len())
}

/// Where `clip` appears in `recording` with every sample within ±1 LSB.
fn find_clip(recording: &[i16], clip: &[i16]) -> Option<usize> {
    let anchor = clip.iter().position(|sample| sample.abs() > 1000)?;
    (anchor..recording.len().saturating_sub(clip.len() - anchor)).map(|at| at - anchor).find(|&offset| {
        recording[offset..offset + clip.len()]
            .iter()
            .zip(clip)
            .all(|(got, want)| (i32::from(*got) - i32::from(*want)).abs() <= 1)
    })
}

fn server_recording(server: &OpptakServe, recording_id: &str) -> opptak_api::Recording {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(server.client().recording(recording_id)).unwrap()
}

#[test]
fn six_seconds_of_tone_and_speech_arrive_on_the_server_sample_exact() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let Some(speech) = speech(temp.path()) else { return };
    let tone_clip = temp.path().join("tone.wav");
    tone(&tone_clip, 1.0);
    let server = OpptakServe::start(&temp.path().join("server"), &[], &[]).unwrap();

    let mut record = RecordProcess::spawn(
        &temp.path().join("data"),
        &pulse,
        &["--seconds", "6", "--server", &server.url, "--token", TEST_TOKEN],
    );
    let (started, first) = record.event("recording", Duration::from_secs(10));
    assert_eq!(
        (first["sampleRate"].as_u64(), first["channels"].as_u64()),
        (Some(48_000), Some(1)),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let tone_played_at = started.elapsed();
    pulse.play(&tone_clip).unwrap();
    pulse.play(&speech).unwrap();
    let (status, _, last) = record.finish(Duration::from_secs(30));
    assert!(status.success(), "{status}: {last}");
    assert_eq!(last["status"], "ready", "{last}");

    let path = PathBuf::from(last["path"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(last["sha256"], sha256_hex(&bytes));
    let on_server = server_recording(&server, last["recordingId"].as_str().unwrap());
    assert_eq!(on_server.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    let server_seconds = on_server.duration_seconds.expect("the server measured the duration");

    let (spec, samples) = samples_of(&path);
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (RATE, 1, 16));
    let seconds = samples.len() as f64 / f64::from(RATE);
    assert!((seconds - 6.0).abs() <= 0.1, "recorded {seconds} s for --seconds 6");
    assert!((server_seconds - seconds).abs() < 0.001, "the server says {server_seconds} s");

    let (tone_start, tone_end, tone_hits) = tone_windows(&samples);
    assert!((95..=101).contains(&tone_hits), "1 kHz found in {tone_hits} of 100 10-ms windows");
    let tone_offset = tone_start as f64 / f64::from(RATE);
    assert!(
        (tone_offset - tone_played_at.as_secs_f64()).abs() < 0.5,
        "the tone is at {tone_offset:.3} s, played {:.3} s after the recording started",
        tone_played_at.as_secs_f64()
    );
    let (_, clip) = samples_of(&speech);
    let offset = find_clip(&samples, &clip).expect("the spoken clip is in the recording, ±1 LSB");
    let gap = offset as f64 / f64::from(RATE) - tone_end as f64 / f64::from(RATE);
    assert!((0.0..0.5).contains(&gap), "the speech starts {gap:.3} s after the tone ends");

    let levels = record.seen.iter().filter(|(_, line)| line["event"] == "level").count();
    assert!((110..=125).contains(&levels), "{levels} level events in 6 s (20 a second)");
}

#[test]
fn a_recording_killed_mid_lesson_is_repaired_and_uploaded_by_resume() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let tone_clip = temp.path().join("tone.wav");
    tone(&tone_clip, 8.0);
    let server = OpptakServe::start(&temp.path().join("server"), &[], &[]).unwrap();
    let data = temp.path().join("data");

    let mut record = RecordProcess::spawn(&data, &pulse, &["--server", &server.url, "--token", TEST_TOKEN]);
    let (started, _) = record.event("recording", Duration::from_secs(10));
    let player = {
        let env = pulse.env();
        let clip = tone_clip.clone();
        std::thread::spawn(move || Command::new("paplay").args(["-d", "vsink"]).arg(clip).envs(env).status())
    };
    std::thread::sleep(Duration::from_secs(4).saturating_sub(started.elapsed()));
    record.child.signal(Signal::SIGKILL).unwrap();
    let _ = record.child.wait_timeout(Duration::from_secs(5)).unwrap();
    let listed = recordings(&data);
    assert_eq!(listed[0]["state"], "recovered", "the next start repairs it: {listed}");

    let last = resume_to_ready(&data);

    let path = PathBuf::from(listed[0]["path"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(last["sha256"], sha256_hex(&bytes));
    let (_, samples) = samples_of(&path);
    let (_, _, tone_hits) = tone_windows(&samples);
    assert!(tone_hits >= 300, "the repaired file holds {} s of the tone", tone_hits as f64 / 100.0);
    let _ = player.join();
}

#[test]
fn silence_raises_a_warning_and_a_lost_microphone_pauses_leaving_a_valid_file() {
    let Some(mut pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let mut record = RecordProcess::spawn(&temp.path().join("data"), &pulse, &["--no-upload"]);
    let (started, _) = record.event("recording", Duration::from_secs(10));
    let (warned, warning) = record.event("silenceStarted", Duration::from_secs(16));
    let after = warned.duration_since(started).as_secs_f64();
    assert!((9.5..13.0).contains(&after), "silence warned after {after:.1} s");
    assert!(warning["message"].as_str().unwrap().contains("muted"), "{warning}");

    pulse.stop_daemon();
    let (_, lost) = record.event("deviceLost", Duration::from_secs(10));
    let message = lost["message"].as_str().unwrap();
    assert!(message.contains("microphone went away") && message.contains("paused"), "{message}");
    record.child.signal(Signal::SIGTERM).unwrap();
    let (status, _, last) = record.finish(Duration::from_secs(15));
    assert!(status.success(), "{status}: {last}");
    assert_eq!(last["status"], "onThisComputer", "{last}");
    let (_, samples) = samples_of(Path::new(last["path"].as_str().unwrap()));
    let seconds = samples.len() as f64 / f64::from(RATE);
    assert!(seconds >= 10.0, "the file holds {seconds:.1} s");
}

#[test]
fn a_long_recording_uploads_while_recording_and_is_ready_within_3_s_of_stop() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(&temp.path().join("server"), &["--part-size-mib", "5"], &[]).unwrap();
    let mut record = RecordProcess::spawn(
        &temp.path().join("data"),
        &pulse,
        &["--server", &server.url, "--token", TEST_TOKEN],
    );
    let (started, _) = record.event("recording", Duration::from_secs(10));
    let stop_at = started + Duration::from_secs(150);
    let (part_two_at, _) = record.wait_for("part 2 sent", Duration::from_secs(150), |line| {
        line["event"] == "partSent" && line["partNumber"] == 2
    });
    assert!(part_two_at < stop_at, "part 2 reached the server before stop");
    std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
    let stopped = Instant::now();
    record.child.signal(Signal::SIGTERM).unwrap();
    let (status, ready_at, last) = record.finish(Duration::from_secs(30));
    assert!(status.success(), "{status}: {last}");
    assert_eq!(last["status"], "ready", "{last}");
    let stop_to_ready = ready_at.duration_since(stopped);
    eprintln!(
        "stop→ready {stop_to_ready:?}, part 2 sent {:?} after start",
        part_two_at.duration_since(started)
    );
    assert!(stop_to_ready < Duration::from_secs(3), "stop→ready took {stop_to_ready:?}");
    let path = PathBuf::from(last["path"].as_str().unwrap());
    assert_eq!(last["sha256"], sha256_hex(&std::fs::read(&path).unwrap()));
    let seconds = last["seconds"].as_f64().unwrap();
    assert!((seconds - 150.0).abs() < 0.5, "recorded {seconds} s");
}

/// Runs `opptak record` to its end with `env`, returning exit code, stdout and stderr.
fn record_once(data_dir: &Path, env: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["record", "--no-upload"])
        .args(args)
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn without_a_microphone_or_disk_space_nothing_is_recorded_and_the_user_is_told_why() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let no_sound_server =
        [("PULSE_SERVER", format!("unix:{}", temp.path().join("no-such-socket").display()))];
    let (code, _, stderr) = record_once(&data, &no_sound_server, &["--seconds", "2"]);
    assert_eq!(code, Some(1), "{stderr}");
    // libasound prints its own complaints first; Opptak's is one line, the last.
    let ours: Vec<&str> = stderr.lines().filter(|line| line.starts_with("opptak:")).collect();
    assert_eq!(ours.len(), 1, "one line from opptak: {stderr}");
    assert_eq!(stderr.trim().lines().last(), Some(ours[0]));
    assert!(stderr.contains("No microphone found") && stderr.contains("Plug in a microphone"), "{stderr}");
    assert!(files_in(&data.join("recordings")).is_empty(), "no half-made file");

    let Some(pulse) = virtual_microphone() else { return };
    let (code, _, stderr) =
        record_once(&data, &pulse.env(), &["--seconds", "2", "--min-free-mb", "100000000000"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("MB is free on the disk") && stderr.contains("Free some space"), "{stderr}");
    assert!(files_in(&data.join("recordings")).is_empty(), "no half-made file");
    assert_eq!(recordings(&data), serde_json::json!([]));

    // Free space "falls below" the limit at the first check while recording.
    let (code, stdout, stderr) = record_once(
        &data,
        &pulse.env(),
        &["--seconds", "30", "--json", "--min-free-mb", "0", "--stop-below-mb", "100000000000"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "onThisComputer", "{last}");
    assert!(last["stopReason"].as_str().unwrap().contains("disk is nearly full"), "{last}");
    let seconds = last["seconds"].as_f64().unwrap();
    assert!((0.5..3.0).contains(&seconds), "stopped after {seconds} s");
    let (_, samples) = samples_of(Path::new(last["path"].as_str().unwrap()));
    assert_eq!(samples.len() as f64 / f64::from(RATE), seconds);
}

#[test]
fn paused_time_is_not_recorded() {
    use std::io::Write;
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let mut record =
        RecordProcess::spawn(&temp.path().join("data"), &pulse, &["--no-upload", "--seconds", "6"]);
    let mut stdin = record.child.take_stdin().unwrap();
    record.event("recording", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    stdin.write_all(b"\n").unwrap();
    let (paused_at, _) = record.event("paused", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    stdin.write_all(b"\n").unwrap();
    let (resumed_at, _) = record.event("resumed", Duration::from_secs(5));
    let (status, _, last) = record.finish(Duration::from_secs(20));
    assert!(status.success(), "{status}: {last}");
    let paused = resumed_at.duration_since(paused_at).as_secs_f64();
    let seconds = last["seconds"].as_f64().unwrap();
    assert!((seconds - (6.0 - paused)).abs() < 0.15, "{seconds} s recorded in 6 s with {paused:.2} s paused");
}

#[test]
fn offline_the_recording_is_kept_and_resume_uploads_it_once_the_server_answers() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let port = opptak_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut record =
        RecordProcess::spawn(&data, &pulse, &["--seconds", "3", "--server", &url, "--token", TEST_TOKEN]);
    let (_, waiting) = record.event("waitingForNetwork", Duration::from_secs(10));
    assert!(waiting["reason"].as_str().unwrap().contains(&url), "{waiting}");
    let (status, _, last) = record.finish(Duration::from_secs(30));
    assert!(status.success(), "kept for later is not a failure: {status} {last}");
    assert_eq!(last["status"], "waitingForNetwork", "{last}");
    let path = PathBuf::from(last["path"].as_str().unwrap());
    let (_, samples) = samples_of(&path);
    assert!((samples.len() as f64 / f64::from(RATE) - 3.0).abs() < 0.1);

    let _server =
        OpptakServe::start_at(&temp.path().join("server"), &format!("127.0.0.1:{port}"), &[]).unwrap();
    let done = resume_to_ready(&data);
    assert_eq!(done["sha256"], sha256_hex(&std::fs::read(&path).unwrap()));
}

#[test]
fn devices_lists_the_microphones_with_the_default_first() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(temp.path())
        .args(["devices", "--json"])
        .envs(pulse.env())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let devices: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(devices[0]["isDefault"], true, "{devices}");
    assert_eq!(
        (devices[0]["sampleRate"].as_u64(), devices[0]["channels"].as_u64()),
        (Some(48_000), Some(1)),
        "{devices}"
    );
    assert!(devices[0]["sampleRates"].as_array().unwrap().contains(&serde_json::json!(44_100)), "{devices}");
    let name = devices[0]["name"].as_str().unwrap();

    // The name it lists is the name `record --device` takes; an unknown one is refused.
    let (code, stdout, stderr) =
        record_once(temp.path(), &pulse.env(), &["--seconds", "1", "--json", "--device", name]);
    assert_eq!(code, Some(0), "{stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "onThisComputer", "{last}");
    let (code, _, stderr) =
        record_once(temp.path(), &pulse.env(), &["--seconds", "1", "--device", "No Such Mic"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("There is no microphone called \"No Such Mic\"") && stderr.contains("opptak devices"),
        "{stderr}"
    );
}

/// Runs `pactl` against the test's PulseAudio daemon.
fn pactl(pulse: &PulseAudio, args: &[&str]) {
    let output = Command::new("pactl").args(args).envs(pulse.env()).output().unwrap();
    assert!(output.status.success(), "pactl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_four_channel_microphone_array_is_recorded_and_uploaded_with_an_equal_sha256() {
    let Some(pulse) = virtual_microphone() else { return };
    require_program("pactl", "to add a four-channel virtual microphone").unwrap();
    // Above two channels hound writes a 68-byte header; the durable length
    // once counted 44, and the upload ended in a checksum mismatch.
    pactl(
        &pulse,
        &[
            "load-module",
            "module-null-sink",
            "sink_name=array4",
            "rate=48000",
            "channels=4",
            "format=s16le",
            "norewinds=1",
        ],
    );
    pactl(&pulse, &["set-default-source", "array4.monitor"]);
    let temp = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(&temp.path().join("server"), &[], &[]).unwrap();
    let mut record = RecordProcess::spawn(
        &temp.path().join("data"),
        &pulse,
        &["--seconds", "3", "--server", &server.url, "--token", TEST_TOKEN],
    );
    let (_, first) = record.event("recording", Duration::from_secs(10));
    assert_eq!(first["channels"].as_u64(), Some(4), "{first}");
    let (status, _, last) = record.finish(Duration::from_secs(30));
    assert!(status.success(), "{status}: {last}");
    assert_eq!(last["status"], "ready", "{last}");

    let path = PathBuf::from(last["path"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(last["sha256"], sha256_hex(&bytes));
    let on_server = server_recording(&server, last["recordingId"].as_str().unwrap());
    assert_eq!(on_server.sha256.as_deref(), Some(sha256_hex(&bytes).as_str()));
    let (spec, samples) = samples_of(&path);
    assert_eq!((spec.channels, spec.bits_per_sample), (4, 16));
    let seconds = samples.len() as f64 / 4.0 / f64::from(RATE);
    assert!((seconds - 3.0).abs() <= 0.1, "recorded {seconds} s for --seconds 3");
}

#[test]
fn a_recording_kept_on_this_computer_is_not_uploaded_until_the_teacher_asks() {
    let Some(pulse) = virtual_microphone() else { return };
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut record = RecordProcess::spawn(&data, &pulse, &["--no-upload", "--seconds", "1"]);
    let (status, _, last) = record.finish(Duration::from_secs(20));
    assert!(status.success(), "{status}: {last}");
    assert_eq!(last["status"], "onThisComputer", "{last}");
    let path = PathBuf::from(last["path"].as_str().unwrap());

    // The next start (resume, as the app's start does) leaves it alone.
    let resume = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(&data)
        .args(["resume", "--json"])
        .output()
        .unwrap();
    assert!(resume.status.success(), "{}", String::from_utf8_lossy(&resume.stderr));
    assert!(resume.stdout.is_empty(), "nothing was resumed: {}", String::from_utf8_lossy(&resume.stdout));
    let listed = recordings(&data);
    assert_eq!(listed[0]["state"], "stopped", "{listed}");
    assert_eq!(listed[0]["status"], "only on this computer", "{listed}");
    assert_eq!(listed[0]["keptOnThisComputer"], true, "{listed}");
    assert!(!data.join("server").exists(), "This computer's server was never started: nothing was uploaded");

    // The teacher's upload takes it to the server.
    let upload = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(&data)
        .arg("upload")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&upload.stdout);
    assert!(upload.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&upload.stderr));
    let done: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(done["status"], "ready", "{stdout}");
    assert_eq!(done["sha256"], sha256_hex(&std::fs::read(&path).unwrap()));
    let listed = recordings(&data);
    assert_eq!(
        (listed.as_array().unwrap().len(), &listed[0]["state"]),
        (1, &Value::from("ready")),
        "{listed}"
    );
}
