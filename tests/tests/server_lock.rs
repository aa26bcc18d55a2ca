//! One server per data folder, over real `opptak serve` processes: a second
//! one on the same folder exits naming the first; after the first is
//! SIGKILLed, the operating system has dropped its lock, so a new one
//! starts and re-queues the verification the dead one left running.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use opptak_api::RecordingStatus;
use opptak_tests::{ChildGuard, OpptakServe, TEST_TOKEN, wav_of_len, workspace_bin};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_is_refused_and_a_killed_servers_folder_is_taken_over() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("server");
    let mut first = OpptakServe::start(&dir, &[], &[]).unwrap();
    let client = first.client();
    let data = wav_of_len(96_044);
    let started = client.start("lesson").await.unwrap();
    let parts = client.put_parts(&started, &data).await.unwrap();
    client.finish(&started, parts).await.unwrap();
    let recording = client.wait_until_processed(&started.recording_id, READY_TIMEOUT).await.unwrap();
    assert_eq!(recording.status, RecordingStatus::Ready, "{:?}", recording.error);

    let log = temp.path().join("second.stderr");
    let mut second = ChildGuard::spawn(
        "second opptak serve",
        Command::new(workspace_bin("opptak"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .args(["--user", &format!("teacher:{TEST_TOKEN}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    )
    .unwrap();
    let status = second.wait_timeout(EXIT_TIMEOUT).unwrap();
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "a second server on the folder must not run: {message}");
    assert!(message.contains(&format!("process {}", first.process.pid())), "{message}");
    assert!(message.contains(&first.url), "{message}");
    first.process.ensure_running().expect("the first server is untouched");

    first.process.signal(Signal::SIGKILL).unwrap();
    first.process.wait_timeout(EXIT_TIMEOUT).unwrap();
    // What a kill in the middle of verifying leaves: the job running under
    // a lease that would keep any other worker off it for an hour.
    let db = rusqlite::Connection::open(dir.join("server.sqlite3")).unwrap();
    db.execute_batch(
        "UPDATE jobs SET state = 'running', lease_until = strftime('%s', 'now') + 3600;
         UPDATE recordings SET status = 'processing', sha256 = NULL, ready_at = NULL;",
    )
    .unwrap();
    drop(db);

    let third = OpptakServe::start(&dir, &[], &[]).expect("the lock died with the killed server");
    let running: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("server.json")).unwrap()).unwrap();
    assert_eq!(running["url"], third.url.as_str());
    assert_eq!(running["pid"], third.process.pid());
    let recording = third.client().wait_until_processed(&started.recording_id, READY_TIMEOUT).await.unwrap();
    assert_eq!(recording.status, RecordingStatus::Ready, "re-queued at start: {:?}", recording.error);
}
