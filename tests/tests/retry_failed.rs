//! No dead ends: a failed upload is retried by `opptak resume` when
//! retrying can fix it (up to a cap), and only by `opptak resume --failed`
//! when the teacher has to fix something first.
//!
//! Real processes throughout: `opptak serve` with its local store, `opptak
//! upload` and `opptak resume` on a client data directory. The server
//! "loses" parts it had acknowledged (as storage can in a crash) by having
//! their markers removed while the upload is held on a frozen link, so that
//! `finish` is refused; the teacher's kind of failure is a recording file
//! that was moved away.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_journal::{Journal, LocalRecording, Problem, RecordingState};
use opptak_tests::{
    BoundProxy, ChildGuard, OpptakServe, Shaping, ShapingProxy, TEST_TOKEN, free_port, sha256_hex,
    wav_of_len, workspace_bin,
};
use serde_json::Value;

const PART: usize = 5 * 1024 * 1024;
/// Fast enough for a short test, slow enough (about a second a part) that
/// the test sees a part journaled well before the last one is sent.
const LINK_BITS_PER_SECOND: u64 = 40_000_000;
/// Bounds every wait on a process or a condition.
const DEADLINE: Duration = Duration::from_secs(120);

fn opptak(data_dir: &Path) -> Command {
    let mut command = Command::new(workspace_bin("opptak"));
    command.arg("--data-dir").arg(data_dir).env_remove("OPPTAK_TOKEN").env("NO_COLOR", "1");
    command
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The last JSON line a command printed.
fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {}", text(output)))
}

/// Polls `condition` every 20 ms until it holds or [`DEADLINE`] passes.
fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "{what} did not happen within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server behind a shaping proxy (part URLs too), and a 4-part recording.
struct Setup {
    server: OpptakServe,
    proxy: ShapingProxy,
    proxy_url: String,
    work: tempfile::TempDir,
    file: PathBuf,
    data: Vec<u8>,
    _server_dir: tempfile::TempDir,
    /// Runs the proxy; dropped last.
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn new() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let bound = runtime.block_on(BoundProxy::bind()).unwrap();
        let proxy_url = bound.url();
        let server_dir = tempfile::tempdir().unwrap();
        let server =
            OpptakServe::start(server_dir.path(), &["--part-size-mib", "5", "--public-url", &proxy_url], &[])
                .unwrap();
        let upstream = server.url.trim_start_matches("http://").parse().unwrap();
        let proxy = {
            let _entered = runtime.enter();
            bound.run_shaping(
                upstream,
                Shaping { bits_per_second: LINK_BITS_PER_SECOND, ..Shaping::default() },
            )
        };
        let work = tempfile::tempdir().unwrap();
        let data = wav_of_len(3 * PART + 4322);
        let file = work.path().join("lesson.wav");
        std::fs::write(&file, &data).unwrap();
        Self { server, proxy, proxy_url, work, file, data, _server_dir: server_dir, _runtime: runtime }
    }

    fn client_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn recording(&self) -> LocalRecording {
        let journal = Journal::open_in(self.client_dir()).unwrap();
        journal.recordings().unwrap().into_iter().next().expect("the upload was journaled")
    }

    fn requests(&self) -> usize {
        self.proxy.counts.requests.lock().unwrap().len()
    }

    /// Part PUTs the proxy has passed on so far.
    fn part_puts(&self) -> usize {
        let requests = self.proxy.counts.requests.lock().unwrap();
        requests.iter().filter(|line| line.starts_with("PUT /storage/")).count()
    }

    /// Runs `opptak <args>` on the client; once it is sending parts and the
    /// journal has a part as sent, freezes the link, removes the parts
    /// journaled so far from the server's storage, and lets the upload go on
    /// to its refused finish.
    fn run_losing_parts(&self, args: &[&str]) -> Output {
        let puts_before = self.part_puts();
        let mut command = opptak(&self.client_dir());
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = command.spawn().unwrap();
        let lost: Vec<u32> = wait_for("a part PUT with a part journaled as sent", || {
            // A PUT of this run means it has reconciled with the server.
            if self.part_puts() == puts_before {
                return None;
            }
            let journal = Journal::open_in(self.client_dir()).ok()?;
            let recording = journal.recordings().ok()?.into_iter().next()?;
            let session = journal.current_session(recording.id).ok()??;
            let sent: Vec<u32> = journal.parts(session.id).ok()?.iter().map(|part| part.number).collect();
            (!sent.is_empty()).then_some(sent)
        });
        self.proxy.set_bits_per_second(0);
        let removed = self.remove_stored_parts(&lost);
        self.proxy.set_bits_per_second(LINK_BITS_PER_SECOND);
        assert!(removed > 0, "no stored part of {lost:?} was found to remove");
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "the finish should have been refused: {}", text(&output));
        output
    }

    /// Removes the markers of parts `numbers` of every open upload in the
    /// server's local store, as a crash that lost them would.
    fn remove_stored_parts(&self, numbers: &[u32]) -> usize {
        let uploads = self.server.data_dir.join("media").join("uploads");
        let mut removed = 0;
        for upload in std::fs::read_dir(&uploads).unwrap() {
            let parts = upload.unwrap().path().join("parts");
            for number in numbers {
                if std::fs::remove_file(parts.join(number.to_string())).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn assert_failed_for_retry(&self) -> LocalRecording {
        let recording = self.recording();
        assert_eq!(recording.state, RecordingState::Failed, "{recording:?}");
        let problem = recording.problem.expect("the failure's problem is journaled");
        assert!(!problem.needs_teacher(), "{problem:?} would wait for the teacher");
        assert!(recording.retries_by_itself());
        recording
    }

    fn assert_ready(&self, output: &Output) {
        assert!(output.status.success(), "{}", text(output));
        let last = last_json(output);
        assert_eq!(last["status"], "ready", "{}", text(output));
        assert_eq!(last["sha256"], sha256_hex(&self.data));
        let recording = self.recording();
        assert_eq!(recording.state, RecordingState::Ready);
        assert_eq!(recording.server_sha256.as_deref(), Some(sha256_hex(&self.data).as_str()));
    }

    fn upload_args(&self) -> Vec<String> {
        let file = self.file.display().to_string();
        ["upload", &file, "--server", &self.proxy_url, "--token", TEST_TOKEN, "--json", "--concurrency", "1"]
            .map(str::to_owned)
            .to_vec()
    }
}

#[test]
fn a_finish_refused_because_the_server_lost_parts_is_retried_by_resume_and_becomes_ready() {
    let setup = Setup::new();
    let args = setup.upload_args();
    let failed = setup.run_losing_parts(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(last_json(&failed)["status"], "failed", "{}", text(&failed));
    let recording = setup.assert_failed_for_retry();
    assert_eq!(recording.retry_attempts, 0);
    let listed = opptak(&setup.client_dir()).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed[0]["status"].as_str().unwrap().starts_with("failed: "), "{listed:#}");

    // Before this change, resume skipped every failed recording.
    let resumed = opptak(&setup.client_dir()).args(["resume", "--json"]).output().unwrap();
    setup.assert_ready(&resumed);
    assert_eq!(setup.recording().retry_attempts, 1, "the retry was counted");
}

#[test]
fn automatic_retries_stop_at_the_cap_and_the_teacher_can_retry_after_it() {
    let setup = Setup::new();
    let args = setup.upload_args();
    setup.run_losing_parts(&args.iter().map(String::as_str).collect::<Vec<_>>());
    setup.assert_failed_for_retry();

    // The one automatic retry allowed fails the same way.
    let retried = setup.run_losing_parts(&["resume", "--json", "--max-retries", "1"]);
    let recording = setup.assert_failed_for_retry();
    assert_eq!(recording.retry_attempts, 1, "{}", text(&retried));

    // The cap holds: nothing is sent, and the teacher is told how to retry.
    let requests = setup.requests();
    let capped =
        opptak(&setup.client_dir()).args(["resume", "--json", "--max-retries", "1"]).output().unwrap();
    assert!(capped.status.success(), "{}", text(&capped));
    let said = last_json(&capped);
    assert_eq!(said["status"], "failed", "{}", text(&capped));
    assert_eq!(said["waitsFor"]["kind"], "retriesUsedUp", "{}", text(&capped));
    assert_eq!(setup.requests(), requests, "a capped recording was sent again");
    let recording = setup.recording();
    assert_eq!((recording.state, recording.retry_attempts), (RecordingState::Failed, 1));
    let capped_words = opptak(&setup.client_dir()).args(["resume", "--max-retries", "1"]).output().unwrap();
    let words = String::from_utf8_lossy(&capped_words.stderr);
    assert!(words.contains("`opptak resume --failed` tries again"), "{}", text(&capped_words));

    let teacher = opptak(&setup.client_dir()).args(["resume", "--failed", "--json"]).output().unwrap();
    setup.assert_ready(&teacher);
    assert_eq!(setup.recording().retry_attempts, 0, "the teacher's retry starts the count again");
}

#[test]
fn a_failure_that_needs_the_teacher_waits_for_resume_failed() {
    let setup = Setup::new();
    // The upload starts while its server is down, and dies waiting.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let file = setup.file.display().to_string();
    let mut command = opptak(&setup.client_dir());
    command
        .args(["upload", &file, "--server", &url, "--token", TEST_TOKEN, "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut upload = ChildGuard::spawn("opptak upload", &mut command).unwrap();
    wait_for("the upload waiting for its server", || {
        let journal = Journal::open_in(setup.client_dir()).ok()?;
        let recording = journal.recordings().ok()?.into_iter().next()?;
        (recording.state == RecordingState::Waiting).then_some(())
    });
    upload.signal(Signal::SIGKILL).unwrap();
    upload.stop();
    let server_dir = tempfile::tempdir().unwrap();
    let _server =
        OpptakServe::start_at(server_dir.path(), &format!("127.0.0.1:{port}"), &["--part-size-mib", "5"])
            .unwrap();

    // The teacher moved the file away: the upload cannot go on.
    let moved = setup.work.path().join("moved.wav");
    std::fs::rename(&setup.file, &moved).unwrap();
    let failed = opptak(&setup.client_dir()).args(["resume", "--json"]).output().unwrap();
    assert!(!failed.status.success(), "{}", text(&failed));
    let recording = setup.recording();
    assert_eq!(recording.state, RecordingState::Failed, "{}", text(&failed));
    assert_eq!(recording.problem, Some(Problem::FileMissing), "{}", text(&failed));
    assert_eq!(last_json(&failed)["waitsFor"]["kind"], "teacher", "{}", text(&failed));

    // Resume does not retry it, even once the file is back…
    for file_back in [false, true] {
        if file_back {
            std::fs::rename(&moved, &setup.file).unwrap();
        }
        let skipped = opptak(&setup.client_dir()).args(["resume", "--json"]).output().unwrap();
        assert!(skipped.status.success(), "{}", text(&skipped));
        assert_eq!(last_json(&skipped)["waitsFor"]["kind"], "teacher", "{}", text(&skipped));
        let recording = setup.recording();
        assert_eq!((recording.state, recording.retry_attempts), (RecordingState::Failed, 0));
    }
    let words = opptak(&setup.client_dir()).arg("resume").output().unwrap();
    let words = String::from_utf8_lossy(&words.stderr);
    assert!(words.contains("Retrying does not help until that is fixed"), "{words}");
    assert!(words.contains("`opptak resume --failed`"), "{words}");

    // …but the teacher's retry does.
    let retried = opptak(&setup.client_dir()).args(["resume", "--failed", "--json"]).output().unwrap();
    setup.assert_ready(&retried);
}
