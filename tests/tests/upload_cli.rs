//! `opptak upload`, `resume` and `recordings` as real processes against a
//! real `opptak serve` (local store, and S3 over SeaweedFS): byte-identical
//! uploads, a SIGKILL mid-upload resumed without resending more than the
//! parts in flight, an offline start, and clear refusals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_tests::{
    ChildGuard, OpptakServe, SeaweedFs, TEST_TOKEN, free_port, sha256_hex, wav_of_len, workspace_bin,
};
use serde_json::Value;

const PART: usize = 5 * 1024 * 1024;

fn opptak(data_dir: &Path) -> Command {
    let mut command = Command::new(workspace_bin("opptak"));
    command.arg("--data-dir").arg(data_dir).env_remove("OPPTAK_TOKEN");
    command
}

fn upload(data_dir: &Path, file: &Path, server: &str, extra: &[&str]) -> Output {
    opptak(data_dir)
        .arg("upload")
        .arg(file)
        .args(["--server", server, "--token", TEST_TOKEN, "--json"])
        .args(extra)
        .output()
        .expect("run opptak upload")
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("last line is not JSON: {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    })
}

/// Bytes the local-store server received in part PUTs, from its /metrics.
fn part_bytes_received(server: &OpptakServe) -> u64 {
    let body = reqwest::blocking_get(&format!("{}/metrics", server.url));
    body.lines()
        .find_map(|line| line.strip_prefix("opptak_received_bytes_total{kind=\"parts\"} "))
        .and_then(|value| value.trim().parse().ok())
        .expect("metrics name the part bytes received")
}

mod reqwest {
    /// A GET without an async runtime, for metrics.
    pub fn blocking_get(url: &str) -> String {
        let output = std::process::Command::new("curl").args(["-sf", url]).output().expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn sizes_reach_the_server_byte_identical(server: &OpptakServe, sizes: &[usize]) {
    let work = tempfile::tempdir().unwrap();
    for &len in sizes {
        let file = work.path().join(format!("lesson-{len}.wav"));
        let data = wav_of_len(len);
        std::fs::write(&file, &data).unwrap();
        let output = upload(&work.path().join("data"), &file, &server.url, &[]);
        assert!(output.status.success(), "{len} bytes: {}", String::from_utf8_lossy(&output.stderr));
        let done = last_json(&output);
        assert_eq!(done["status"], "ready");
        assert_eq!(done["sha256"], sha256_hex(&data), "{len} bytes");
    }
    let listed = opptak(&work.path().join("data")).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), sizes.len());
    assert!(
        listed.as_array().unwrap().iter().all(|recording| recording["status"] == "safe on server"),
        "{listed:#}"
    );
}

#[test]
fn files_of_every_shape_upload_to_the_local_store() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    sizes_reach_the_server_byte_identical(&server, &[46, PART, PART * 5 / 2, 100 * 1024 * 1024]);
}

#[test]
fn files_upload_to_s3_over_seaweedfs() {
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start_on_seaweed(data_dir.path(), &seaweed, "lessons").unwrap();
    sizes_reach_the_server_byte_identical(&server, &[46, PART, PART * 5 / 2]);
}

#[test]
fn sigkill_during_parts_then_resume_sends_at_most_the_parts_in_flight_again() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(server_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = wav_of_len(40 * PART + 1234);
    let file = work.path().join("long-lesson.wav");
    std::fs::write(&file, &data).unwrap();
    let client_dir = work.path().join("data");

    let concurrency = 2;
    let mut command = opptak(&client_dir);
    command
        .arg("upload")
        .arg(&file)
        .args([
            "--server",
            &server.url,
            "--token",
            TEST_TOKEN,
            "--json",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn("opptak upload", &mut command).unwrap();
    let stdout = child.take_stdout().unwrap();
    let mut parts_seen = 0;
    for line in BufReader::new(stdout).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "partSent" {
            parts_seen += 1;
            if parts_seen == 12 {
                child.signal(Signal::SIGKILL).unwrap();
                break;
            }
        }
    }
    child.stop();
    assert_eq!(parts_seen, 12, "the upload was killed mid-way");
    let before_resume = part_bytes_received(&server);

    let resumed = opptak(&client_dir).args(["resume", "--json"]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let done = last_json(&resumed);
    assert_eq!(done["status"], "ready");
    assert_eq!(done["sha256"], sha256_hex(&data));

    let total = part_bytes_received(&server);
    let resent = total - data.len() as u64;
    assert!(
        resent <= (concurrency * PART) as u64,
        "{resent} bytes were sent twice; at most {concurrency} parts in flight may be ({} before resume, {total} in all)",
        before_resume
    );
}

#[test]
fn an_upload_started_offline_waits_and_completes_when_the_server_appears() {
    let work = tempfile::tempdir().unwrap();
    let data = wav_of_len(2 * PART + 10);
    let file = work.path().join("offline.wav");
    std::fs::write(&file, &data).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = opptak(&work.path().join("data"));
    command
        .arg("upload")
        .arg(&file)
        .args(["--server", &url, "--token", TEST_TOKEN, "--json"])
        .stdout(Stdio::piped());
    let mut child = ChildGuard::spawn("opptak upload", &mut command).unwrap();
    let mut lines = BufReader::new(child.take_stdout().unwrap()).lines();
    let waiting: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(waiting["event"], "waitingForNetwork", "{waiting}");
    assert!(waiting["reason"].as_str().unwrap().contains(&url));

    let server_dir = tempfile::tempdir().unwrap();
    let _server =
        OpptakServe::start_at(server_dir.path(), &format!("127.0.0.1:{port}"), &["--part-size-mib", "5"])
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    for line in lines {
        last = serde_json::from_str(&line.unwrap()).unwrap();
        assert!(Instant::now() < deadline, "no end within 60 s");
    }
    assert_eq!(last["status"], "ready", "{last}");
    assert_eq!(last["sha256"], sha256_hex(&data));
    child.stop();
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_is_recorded_as_sent() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let client_dir = work.path().join("data");
    let empty = work.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let cases: [(&Path, &str); 3] = [
        (&work.path().join("missing.wav"), "No such file"),
        (&empty, "it is empty"),
        (work.path(), "it is a folder"),
    ];
    for (path, expected) in cases {
        let output = upload(&client_dir, path, &server.url, &[]);
        assert_eq!(output.status.code(), Some(1), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected) && stderr.lines().count() == 1, "{}: {stderr}", path.display());
    }

    let file = work.path().join("lesson.wav");
    std::fs::write(&file, wav_of_len(1000)).unwrap();
    let output = opptak(&client_dir)
        .arg("upload")
        .arg(&file)
        .args(["--server", &server.url, "--token", "not-the-token", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not accept the token"), "{stderr}");
    let listed = opptak(&client_dir).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed.as_array().unwrap().iter().all(|recording| recording["status"] != "safe on server"),
        "{listed:#}"
    );
    assert_eq!(part_bytes_received(&server), 0, "no part was sent");
}

/// A pseudo-random number in `range` from the clock; the seed is printed so
/// a failing run can be read back.
fn random_in(state: &mut u64, range: std::ops::Range<u64>) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    range.start + *state % (range.end - range.start)
}

#[test]
fn ten_sigkills_at_random_moments_lose_nothing_and_resend_little() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(server_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Long enough that a kill at a random moment below finds it running: a
    // debug build uploads ~120 MiB a second here, so an uninterrupted upload
    // takes several times the longest pause below.
    let data = wav_of_len(48 * PART + 778);
    let file = work.path().join("lesson.wav");
    std::fs::write(&file, &data).unwrap();
    let client_dir = work.path().join("data");
    // OPPTAK_KILL_SEED replays a failed run's schedule.
    let mut seed =
        std::env::var("OPPTAK_KILL_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
    eprintln!("kill schedule seed: {seed} (OPPTAK_KILL_SEED replays it)");
    let concurrency = 4;

    // Until the journal holds the recording (a kill may land before), the
    // user's next step is `upload` again; after, it is `resume`.
    let journaled = || {
        let listed = opptak(&client_dir).args(["recordings", "--json"]).output().unwrap();
        assert!(listed.status.success(), "the journal is unreadable after a kill");
        !serde_json::from_slice::<Value>(&listed.stdout).unwrap().as_array().unwrap().is_empty()
    };
    let next_step = || {
        let mut command = opptak(&client_dir);
        if journaled() {
            command.arg("resume");
        } else {
            command.arg("upload").arg(&file).args(["--server", &server.url, "--token", TEST_TOKEN]);
        }
        command.arg("--json");
        command
    };

    const KILLS: usize = 10;
    let mut kills = 0;
    for round in 0..KILLS {
        let mut command = next_step();
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = ChildGuard::spawn("opptak", &mut command).unwrap();
        if round % 2 == 0 {
            // Any moment: start-up, reconciling, sending, finishing.
            std::thread::sleep(Duration::from_millis(random_in(&mut seed, 50..600)));
        } else {
            // While parts are in flight: right after the n-th part landed.
            let wanted = random_in(&mut seed, 1..4);
            let mut seen = 0;
            for line in BufReader::new(child.take_stdout().unwrap()).lines() {
                let event: Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
                if event["event"] == "partSent" {
                    seen += 1;
                }
                if seen == wanted || event["event"] == "finishing" {
                    break;
                }
            }
        }
        if child.ensure_running().is_ok() {
            child.signal(Signal::SIGKILL).unwrap();
            kills += 1;
        }
        child.stop();
    }
    // Bounded: an upload that can never complete must fail here, not hang.
    let log = work.path().join("last-resume.log");
    let mut command = next_step();
    command.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    let status = ChildGuard::spawn("opptak", &mut command).unwrap().wait_timeout(Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(status, Ok(status) if status.success()), "the last resume: {status:?}\n{stderr}");
    let listed = opptak(&client_dir).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["status"], "safe on server", "{listed:#}");
    assert_eq!(listed[0]["sha256"], sha256_hex(&data));

    let resent = part_bytes_received(&server) - data.len() as u64;
    eprintln!("{kills} kills; {resent} bytes sent twice");
    assert!(kills >= 3, "the schedule must hit the upload while it runs ({kills} kills)");
    assert!(
        resent <= (kills * concurrency * PART) as u64,
        "{resent} bytes resent after {kills} kills; at most {concurrency} parts in flight each time may be"
    );
}

#[test]
fn a_one_byte_wav_fails_with_the_servers_reason_and_what_to_do() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let client_dir = work.path().join("data");
    let file = work.path().join("one-byte.wav");
    std::fs::write(&file, b"R").unwrap();

    let output = upload(&client_dir, &file, &server.url, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for words in
        ["The server could not process the recording", "not a readable WAV recording", "media player"]
    {
        assert!(stderr.contains(words), "the message lacks {words:?}: {stderr}");
    }
    let done = last_json(&output);
    assert_eq!(done["status"], "failed", "{done}");

    let listed = opptak(&client_dir).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["state"], "failed", "{listed:#}");
    let status = listed[0]["status"].as_str().unwrap();
    assert!(status.starts_with("failed: ") && status.contains("not a readable WAV recording"), "{listed:#}");
    assert_eq!(part_bytes_received(&server), 1, "the one byte reached the server");
}
