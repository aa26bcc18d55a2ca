//! The crash matrix's named points, hit exactly: `opptak upload` runs through
//! a proxy that holds one chosen request at one point, is SIGKILLed there,
//! and `opptak resume` must bring the recording to `ready` with the local
//! SHA-256, sending again at most the parts that were in flight:
//!
//! - during a part PUT (half its body sent): that part goes again;
//! - after storage answered a part but before the journal recorded it: the
//!   part is adopted from storage, not sent again;
//! - during finish (the server finished; its answer was lost): nothing is
//!   sent again and the repeated finish is harmless;
//! - while the server processes the recording: resume waits for `ready`.
//!
//! Presigned part URLs point at the proxy too (`--public-url`), so part PUTs
//! pass through it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use md5::Digest as _;
use nix::sys::signal::Signal;
use opptak_api::ListPartsRequest;
use opptak_journal::{Journal, SessionState, UploadSession};
use opptak_tests::{
    BoundProxy, ChildGuard, Held, Hold, HoldPoint, HoldingProxy, OpptakServe, TEST_TOKEN, sha256_hex,
    wav_of_len, workspace_bin,
};
use serde_json::Value;

const PART: usize = 5 * 1024 * 1024;
/// Parts in flight during the killed upload; the bound on bytes sent twice.
const CONCURRENCY: usize = 2;
/// The part whose PUT is held.
const HELD_PART: u32 = 3;

fn opptak(data_dir: &Path) -> Command {
    let mut command = Command::new(workspace_bin("opptak"));
    command.arg("--data-dir").arg(data_dir).env_remove("OPPTAK_TOKEN");
    command
}

/// An upload killed at a held request, with everything needed to resume it.
struct Crash {
    server: OpptakServe,
    proxy: HoldingProxy,
    held: Held,
    /// How many requests the proxy had seen when the upload died.
    requests_before_resume: usize,
    work: tempfile::TempDir,
    data: Vec<u8>,
    _server_dir: tempfile::TempDir,
    /// Runs the proxy; dropped last.
    runtime: tokio::runtime::Runtime,
}

impl Crash {
    /// Uploads a 5-part file with `CONCURRENCY` parts in flight through a
    /// proxy holding `hold`, and SIGKILLs the upload when the hold is reached.
    fn at(hold: Hold) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let proxy = runtime.block_on(BoundProxy::bind()).unwrap();
        let proxy_url = proxy.url();
        let server_dir = tempfile::tempdir().unwrap();
        let server =
            OpptakServe::start(server_dir.path(), &["--part-size-mib", "5", "--public-url", &proxy_url], &[])
                .unwrap();
        let upstream = server.url.trim_start_matches("http://").parse().unwrap();
        let proxy = {
            let _entered = runtime.enter();
            proxy.run_holding(upstream, hold)
        };

        let work = tempfile::tempdir().unwrap();
        let data = wav_of_len(4 * PART + 4322);
        let file = work.path().join("lesson.wav");
        std::fs::write(&file, &data).unwrap();
        let log = std::fs::File::create(work.path().join("upload.log")).unwrap();
        let mut command = opptak(&work.path().join("data"));
        command
            .arg("upload")
            .arg(&file)
            .args(["--server", &proxy_url, "--token", TEST_TOKEN, "--json"])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let mut upload = ChildGuard::spawn("opptak upload", &mut command).unwrap();
        let held = proxy.wait_held(Duration::from_secs(30)).unwrap_or_else(|err| {
            panic!("{err}; the upload said:\n{}", read_to_string(&work.path().join("upload.log")))
        });
        upload.ensure_running().expect("the upload is still waiting for the held request");
        upload.signal(Signal::SIGKILL).unwrap();
        upload.stop();
        // Anything the dead client had already written reaches the proxy now.
        std::thread::sleep(Duration::from_millis(100));
        let requests_before_resume = proxy.requests().len();
        Self { server, proxy, held, requests_before_resume, work, data, _server_dir: server_dir, runtime }
    }

    fn client_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    /// The journal's session and the part numbers it records as sent.
    fn journal(&self) -> (UploadSession, Vec<u32>) {
        let journal = Journal::open_in(self.client_dir()).unwrap();
        let recording = journal.recordings().unwrap().into_iter().next().expect("the upload was journaled");
        let session = journal.current_session(recording.id).unwrap().expect("a session was opened");
        let parts = journal.parts(session.id).unwrap().into_iter().map(|part| part.number).collect();
        (session, parts)
    }

    /// The server's answer, asked directly (not through the proxy).
    fn server_client(&self) -> opptak_upload::ApiClient {
        opptak_upload::ApiClient::new(&self.server.url, TEST_TOKEN)
    }

    /// Part numbers and ETags storage lists for `session`.
    fn stored_parts(&self, session: &UploadSession) -> Vec<(u32, String)> {
        let request = ListPartsRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
        };
        let listed = self.runtime.block_on(self.server_client().list_parts(&request)).unwrap();
        listed
            .parts
            .into_iter()
            .map(|part| (part.part_number, part.etag.trim_matches('"').to_owned()))
            .collect()
    }

    /// The server's status of the session's recording.
    fn server_status(&self, session: &UploadSession) -> String {
        let client = self.server_client();
        let recording = self.runtime.block_on(client.recording(&session.server_recording_id)).unwrap();
        recording.status.as_str().to_owned()
    }

    /// Part bytes the server received in all, from its /metrics.
    fn part_bytes_received(&self) -> u64 {
        let url = format!("{}/metrics", self.server.url);
        let body = self.runtime.block_on(async { reqwest::get(&url).await?.text().await }).unwrap();
        body.lines()
            .find_map(|line| line.strip_prefix("opptak_received_bytes_total{kind=\"parts\"} "))
            .and_then(|value| value.trim().parse().ok())
            .expect("metrics name the part bytes received")
    }

    /// Runs `opptak resume` and checks the recording is safe on the server
    /// with the local SHA-256. Returns the part numbers PUT during resume and
    /// the bytes sent twice.
    fn resume(&self, point: &str) -> Resumed {
        let started = Instant::now();
        let resumed = opptak(&self.client_dir()).args(["resume", "--json"]).output().unwrap();
        let took = started.elapsed();
        assert!(
            resumed.status.success(),
            "{point}: resume failed: {}\n{}",
            String::from_utf8_lossy(&resumed.stderr),
            String::from_utf8_lossy(&resumed.stdout)
        );
        let stdout = String::from_utf8_lossy(&resumed.stdout);
        let last: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        let sha256 = sha256_hex(&self.data);
        assert_eq!(last["status"], "ready", "{point}: {stdout}");
        assert_eq!(last["sha256"], sha256, "{point}");

        let (session, _) = self.journal();
        let client = self.server_client();
        let on_server = self.runtime.block_on(client.recording(&session.server_recording_id)).unwrap();
        assert_eq!(on_server.sha256.as_deref(), Some(sha256.as_str()), "{point}: the server's own SHA-256");
        let listed = opptak(&self.client_dir()).args(["recordings", "--json"]).output().unwrap();
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(listed[0]["status"], "safe on server", "{point}: {listed:#}");

        let parts_put = self.proxy.requests()[self.requests_before_resume..]
            .iter()
            .filter_map(|line| line.strip_prefix("PUT ").and_then(part_number))
            .collect();
        let resent = self.part_bytes_received() - self.data.len() as u64;
        eprintln!("{point}: {resent} bytes sent again; resume took {took:?}");
        Resumed { parts_put, resent }
    }

    /// The local bytes' MD5 of part `number`.
    fn local_md5(&self, number: u32) -> String {
        let start = (number as usize - 1) * PART;
        let end = (start + PART).min(self.data.len());
        hex(&md5::Md5::digest(&self.data[start..end]))
    }
}

struct Resumed {
    /// Part numbers PUT during resume, in order.
    parts_put: Vec<u32>,
    /// Bytes storage received beyond the file's length, over both runs.
    resent: u64,
}

fn part_number(path: &str) -> Option<u32> {
    let (_, after) = path.split_once("/parts/")?;
    after.split(['?', ' ']).next()?.parse().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn read_to_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn held_part(at: HoldPoint) -> Hold {
    Hold { method: "PUT", path: format!("/parts/{HELD_PART}?"), nth: 1, at }
}

fn answered_ok(held: &Held) -> bool {
    held.answer.starts_with(b"HTTP/1.1 200")
}

const IN_FLIGHT_BYTES: u64 = (CONCURRENCY * PART) as u64;

#[test]
fn killed_mid_part_put_resume_sends_that_part_again() {
    let crash = Crash::at(held_part(HoldPoint::MidBody));
    let (session, journaled) = crash.journal();
    assert!(!journaled.contains(&HELD_PART), "part {HELD_PART} never finished, yet it is journaled");
    let stored = crash.stored_parts(&session);
    assert!(
        stored.iter().all(|(number, _)| *number != HELD_PART),
        "storage lists part {HELD_PART}, whose body was cut in half: {stored:?}"
    );

    let resumed = crash.resume("mid part PUT");
    assert!(
        resumed.parts_put.contains(&HELD_PART),
        "part {HELD_PART} was not sent again: {:?}",
        resumed.parts_put
    );
    assert!(
        resumed.resent <= IN_FLIGHT_BYTES,
        "{} bytes sent again; at most {CONCURRENCY} parts were in flight",
        resumed.resent
    );
}

#[test]
fn killed_after_storage_answered_a_part_resume_adopts_it() {
    let crash = Crash::at(held_part(HoldPoint::Answered));
    assert!(
        answered_ok(&crash.held),
        "storage refused the held part: {}",
        String::from_utf8_lossy(&crash.held.answer)
    );
    let (session, journaled) = crash.journal();
    assert!(
        !journaled.contains(&HELD_PART),
        "the journal records part {HELD_PART}, whose answer never reached the client"
    );
    let stored = crash.stored_parts(&session);
    assert!(
        stored.contains(&(HELD_PART, crash.local_md5(HELD_PART))),
        "storage should hold part {HELD_PART} with the local bytes' MD5: {stored:?}"
    );

    let resumed = crash.resume("after storage answered");
    assert!(
        !resumed.parts_put.contains(&HELD_PART),
        "part {HELD_PART} was in storage but sent again instead of adopted: {:?}",
        resumed.parts_put
    );
    assert!(
        resumed.resent <= IN_FLIGHT_BYTES - PART as u64,
        "{} bytes sent again; only the other part in flight may be",
        resumed.resent
    );
}

#[test]
fn killed_during_finish_resume_sends_no_part_again() {
    let hold =
        Hold { method: "POST", path: "/native/upload/finish/".into(), nth: 1, at: HoldPoint::Answered };
    let crash = Crash::at(hold);
    assert!(
        answered_ok(&crash.held),
        "the server refused finish: {}",
        String::from_utf8_lossy(&crash.held.answer)
    );
    let (session, journaled) = crash.journal();
    assert_eq!(session.state, SessionState::Open, "the client never learned that finish was accepted");
    assert_eq!(journaled, [1, 2, 3, 4, 5], "every part was journaled before finish");
    let status = crash.server_status(&session);
    assert!(status == "processing" || status == "ready", "the server finished the upload: {status}");

    let resumed = crash.resume("during finish");
    assert_eq!(resumed.parts_put, [] as [u32; 0], "no part may be sent again after finish");
    assert_eq!(resumed.resent, 0);
}

#[test]
fn killed_while_the_server_processes_resume_waits_for_ready() {
    let hold = Hold { method: "GET", path: "/recordings/".into(), nth: 1, at: HoldPoint::Answered };
    let crash = Crash::at(hold);
    let answer = String::from_utf8_lossy(&crash.held.answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(r#""status":"processing""#),
        "the first poll after finish should find the server still checking: {answer}"
    );
    let (session, _) = crash.journal();
    assert_eq!(session.state, SessionState::FinishSent);
    let listed = opptak(&crash.client_dir()).args(["recordings", "--json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["status"], "processing", "{listed:#}");

    let resumed = crash.resume("while processing");
    assert_eq!(resumed.parts_put, [] as [u32; 0], "no part may be sent again after finish");
    assert_eq!(resumed.resent, 0);
}
