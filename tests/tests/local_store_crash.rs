//! Crash consistency of the local store: a real `opptak serve` is SIGKILLed
//! at one of the store's named crash points (`crash_point` in
//! `src-tauri/crates/server/src/store/local.rs`, switched on by
//! `OPPTAK_TEST_PAUSE_AT`), restarted on the same folder, and the upload is
//! carried on over HTTP until the recording is `ready` with the file's
//! SHA-256:
//!
//! - after a part's bytes are synced but before its marker: the part is
//!   not listed, and is sent again;
//! - after its marker is synced but before the 200: the part is listed with
//!   its MD5, and adopted;
//! - after completing moved `data` into `objects/` but before the upload
//!   folder was deleted: finishing again succeeds (it answered "storage
//!   holds none of these parts" for the 7 days the session lived).
//!
//! SIGKILL keeps what the page cache holds, so that the marker is synced
//! *before* the 200 is checked apart, by tracing the server's system calls
//! with strace.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::Digest as _;
use nix::sys::signal::Signal;
use opptak_api::{FinishPart, RecordingStatus, StartResponse};
use opptak_tests::{
    ApiClient, ChildGuard, OpptakServe, TEST_TOKEN, require_program, sha256_hex, wav_of_len, workspace_bin,
};

const PART: usize = 5 * 1024 * 1024;
const SERVE_ARGS: [&str; 2] = ["--part-size-mib", "5"];
/// How long a server may take to reach a crash point, or a recording to be verified.
const DEADLINE: Duration = Duration::from_secs(120);

const PART_WRITTEN: &str = "local_store_part_written";
const PART_RECORDED: &str = "local_store_part_recorded";
const AFTER_MOVE: &str = "local_store_after_move";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A 3-part recording: two whole parts and a short last one.
fn recording() -> Vec<u8> {
    wav_of_len(2 * PART + 4322)
}

fn chunk(data: &[u8], number: u32) -> Bytes {
    let start = (number as usize - 1) * PART;
    Bytes::copy_from_slice(&data[start..(start + PART).min(data.len())])
}

fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `opptak serve` on `data_dir` that stops at `point` (see the module docs).
fn serve_pausing_at(data_dir: &Path, pause_dir: &Path, point: &str) -> OpptakServe {
    let env = [
        ("OPPTAK_TEST_PAUSE_AT", point.to_owned()),
        ("OPPTAK_TEST_PAUSE_DIR", pause_dir.display().to_string()),
    ];
    OpptakServe::start(data_dir, &SERVE_ARGS, &env).unwrap()
}

/// Waits until `server` says it is at `point`, then SIGKILLs it there.
fn kill_at(server: &mut OpptakServe, pause_dir: &Path, point: &str) {
    let reached = pause_dir.join(format!("{point}.reached"));
    let pid = server.process.pid().to_string();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let said = std::fs::read_to_string(&reached).unwrap_or_default();
        if said.trim() == pid {
            break;
        }
        server.process.ensure_running().expect("the server runs until it reaches its crash point");
        assert!(Instant::now() < deadline, "the server did not reach {point} within {DEADLINE:?} ({said:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.process.signal(Signal::SIGKILL).unwrap();
    server.process.wait_timeout(Duration::from_secs(10)).unwrap();
}

/// Finishes with `parts` and checks the recording becomes `ready` with
/// the SHA-256 of `data`.
fn finish_and_expect_ready(
    runtime: &tokio::runtime::Runtime,
    client: &ApiClient,
    started: &StartResponse,
    parts: Vec<FinishPart>,
    data: &[u8],
) {
    let finished = runtime.block_on(client.finish(started, parts)).expect("finish after the restart");
    assert_eq!(finished.recording_id, started.recording_id);
    let recording = runtime.block_on(client.wait_until_processed(&started.recording_id, DEADLINE)).unwrap();
    assert_eq!(recording.status, RecordingStatus::Ready, "{recording:?}");
    assert_eq!(recording.sha256.as_deref(), Some(sha256_hex(data).as_str()), "the server's SHA-256");
}

/// Kills the server while part 1 is at `point`, restarts it, and returns
/// what `listparts` says then, with all that is needed to carry on.
struct KilledDuringPart1 {
    runtime: tokio::runtime::Runtime,
    data_dir: tempfile::TempDir,
    _pause_dir: tempfile::TempDir,
    server: OpptakServe,
    started: StartResponse,
    data: Vec<u8>,
    listed: Vec<(u32, String, u64)>,
}

impl KilledDuringPart1 {
    fn at(point: &str) -> Self {
        let runtime = runtime();
        let data_dir = tempfile::tempdir().unwrap();
        let pause_dir = tempfile::tempdir().unwrap();
        let data = recording();
        let mut server = serve_pausing_at(data_dir.path(), pause_dir.path(), point);
        let client = server.client();
        let started = runtime.block_on(client.start("Fractions, lesson 3")).unwrap();
        let put = runtime.spawn({
            let (client, started, bytes) = (client.clone(), started.clone(), chunk(&data, 1));
            async move { client.put_part(&started, 1, bytes).await }
        });
        kill_at(&mut server, pause_dir.path(), point);
        let answer = runtime.block_on(put).unwrap();
        assert!(answer.is_err(), "part 1 was answered although the server died first: {answer:?}");

        let server = OpptakServe::start(data_dir.path(), &SERVE_ARGS, &[]).unwrap();
        let listed =
            runtime.block_on(server.client().list_parts(&started)).expect("listparts after the restart");
        let listed = listed
            .parts
            .into_iter()
            .map(|part| (part.part_number, part.etag.trim_matches('"').to_owned(), part.size_bytes))
            .collect();
        Self { runtime, data_dir, _pause_dir: pause_dir, server, started, data, listed }
    }

    /// PUTs parts `numbers` to the restarted server.
    fn put(&self, numbers: &[u32]) -> Vec<FinishPart> {
        let client = self.server.client();
        numbers
            .iter()
            .map(|&number| {
                self.runtime.block_on(client.put_part(&self.started, number, chunk(&self.data, number)))
            })
            .collect::<anyhow::Result<_>>()
            .unwrap()
    }
}

#[test]
fn killed_after_a_parts_bytes_were_written_the_part_is_sent_again_and_the_recording_is_ready() {
    let crash = KilledDuringPart1::at(PART_WRITTEN);
    assert_eq!(crash.listed, [], "a part without its marker must not be listed");
    let parts = crash.put(&[1, 2, 3]);
    finish_and_expect_ready(&crash.runtime, &crash.server.client(), &crash.started, parts, &crash.data);
    drop(crash.data_dir);
}

#[test]
fn killed_after_a_parts_marker_was_synced_the_part_is_adopted_and_the_recording_is_ready() {
    let crash = KilledDuringPart1::at(PART_RECORDED);
    let part1 = md5_hex(&chunk(&crash.data, 1));
    assert_eq!(crash.listed, [(1, part1.clone(), PART as u64)], "part 1 is stored whole, with its MD5");
    let mut parts = vec![FinishPart { part_number: 1, etag: part1 }];
    parts.extend(crash.put(&[2, 3]));
    finish_and_expect_ready(&crash.runtime, &crash.server.client(), &crash.started, parts, &crash.data);
    drop(crash.data_dir);
}

#[test]
fn killed_after_completing_moved_the_object_finishing_again_makes_the_recording_ready() {
    let runtime = runtime();
    let data_dir = tempfile::tempdir().unwrap();
    let pause_dir = tempfile::tempdir().unwrap();
    let data = recording();
    let mut server = serve_pausing_at(data_dir.path(), pause_dir.path(), AFTER_MOVE);
    let client = server.client();
    let started = runtime.block_on(client.start("Fractions, lesson 3")).unwrap();
    let parts = runtime.block_on(client.put_parts(&started, &data)).unwrap();
    assert_eq!(parts.len(), 3);
    let finish = runtime.spawn({
        let (client, started, parts) = (client.clone(), started.clone(), parts.clone());
        async move { client.finish(&started, parts).await }
    });
    kill_at(&mut server, pause_dir.path(), AFTER_MOVE);
    let answer = runtime.block_on(finish).unwrap();
    assert!(answer.is_err(), "finish was answered although the server died first: {answer:?}");

    // The state the crash left: the object in place, its upload folder too.
    let media = data_dir.path().join("media");
    let object = media.join("objects").join(&started.object_key);
    assert_eq!(
        std::fs::metadata(&object).map(|m| m.len()).ok(),
        Some(data.len() as u64),
        "the object was moved"
    );
    let folders: Vec<_> =
        std::fs::read_dir(media.join("uploads")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert!(folders[0].join("meta.json").exists() && !folders[0].join("data").exists(), "{folders:?}");

    let server = OpptakServe::start(data_dir.path(), &SERVE_ARGS, &[]).unwrap();
    finish_and_expect_ready(&runtime, &server.client(), &started, parts, &data);
    let left: Vec<_> = std::fs::read_dir(media.join("uploads")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, [] as [std::path::PathBuf; 0], "the upload folder is deleted once completed");
    assert_eq!(std::fs::read(&object).unwrap(), data);
}

/// Under strace: the 200 of a part PUT is written to its socket only after
/// the part's bytes (`fdatasync` of `data`), its marker (`fsync` of the
/// temporary marker, renamed to `parts/1`) and the marker's directory entry
/// (`fsync` of `parts/`) were synced.
#[test]
fn a_part_is_answered_only_after_its_bytes_and_marker_are_synced() {
    let Some(strace) = require_program("strace", "to see the order of the server's syncs and answers") else {
        return;
    };
    let runtime = runtime();
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("strace.log");
    let mut command = Command::new(strace);
    command
        .args(["-f", "-qq", "-yy", "-s", "200", "-o"])
        .arg(&log)
        .args(["-e", "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendto,sendmsg"])
        .arg(workspace_bin("opptak"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .args(["--user", &format!("teacher:{TEST_TOKEN}")])
        .args(SERVE_ARGS)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut traced = ChildGuard::spawn("strace opptak serve", &mut command).unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(traced.take_stdout().unwrap()), &mut first)
        .unwrap();
    let url = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{first:?}")).to_owned();
    let client = ApiClient::new(&url, TEST_TOKEN);
    let started = runtime.block_on(client.start("Fractions, lesson 3")).unwrap();
    let data = Bytes::from(wav_of_len(4322));
    let etag = runtime.block_on(client.put_part(&started, 1, data.clone())).unwrap().etag;
    assert_eq!(etag.trim_matches('"'), md5_hex(&data));

    // The server is strace's child: stopped by its own id, strace then exits.
    let server = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", traced.pid())).unwrap();
    let server: i32 = server.split_whitespace().next().expect("strace runs the server").parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server), Signal::SIGKILL).unwrap();
    traced.wait_timeout(Duration::from_secs(30)).unwrap();

    let trace = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let md5 = md5_hex(&data);
    let answer = lines
        .iter()
        .position(|line| line.contains("HTTP/1.1 200") && line.contains(&md5))
        .unwrap_or_else(|| panic!("no 200 with ETag {md5} in the trace:\n{trace}"));
    let before = &lines[..answer];
    let find = |wanted: &dyn Fn(&str) -> bool| before.iter().position(|line| wanted(line));
    let in_upload = |line: &str| line.contains("/media/uploads/");
    let data_synced = find(&|line| in_upload(line) && line.contains("fdatasync(") && line.contains("/data>"));
    let marker_synced =
        find(&|line| in_upload(line) && line.contains("fsync(") && line.contains("/parts/1.tmp-"));
    let renamed = find(&|line| in_upload(line) && line.contains("rename") && line.contains("/parts/1\""));
    let folder_synced = find(&|line| in_upload(line) && line.contains("fsync(") && line.contains("/parts>"));
    let recent = lines[answer.saturating_sub(40)..=answer].join("\n");
    assert!(data_synced.is_some(), "the part's bytes were not synced before its 200:\n{recent}");
    match (marker_synced, renamed, folder_synced) {
        (Some(synced), Some(renamed), Some(folder)) if synced < renamed && renamed < folder => {}
        found => panic!(
            "before the 200, the marker must be synced, renamed into place and its folder synced, in that order; \
             found (synced, renamed, folder synced) at {found:?}:\n{recent}"
        ),
    }
}
