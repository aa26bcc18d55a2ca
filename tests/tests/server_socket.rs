//! `opptak serve` as a real process on a real socket, with the local store
//! and with S3 (SeaweedFS): whole uploads to `ready`, idempotent finish,
//! abort, and a SIGKILL between finish and ready.

use std::time::Duration;

use nix::sys::signal::Signal;
use opptak_api::RecordingStatus;
use opptak_tests::{OpptakServe, SeaweedFs, sha256_hex, wav_of_len};

const PART: usize = 5 * 1024 * 1024;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// 1 part, exact multiples of the part size, and a short last part.
async fn uploads_reach_ready_with_the_sha256_sent(server: &OpptakServe) {
    let client = server.client();
    for len in [1000, PART, 2 * PART, 2 * PART + PART / 2] {
        let data = wav_of_len(len);
        let started = client.start(&format!("{len} bytes")).await.unwrap();
        assert_eq!(started.part_size_bytes as usize, PART);
        let parts = client.put_parts(&started, &data).await.unwrap();
        assert_eq!(parts.len(), len.div_ceil(PART));

        let listed = client.list_parts(&started).await.unwrap();
        let sizes: Vec<u64> = listed.parts.iter().map(|part| part.size_bytes).collect();
        let expected: Vec<u64> = data.chunks(PART).map(|chunk| chunk.len() as u64).collect();
        assert_eq!(sizes, expected, "listparts for {len} bytes");

        let finished = client.finish(&started, parts.clone()).await.unwrap();
        assert_eq!(finished.status, RecordingStatus::Processing);
        let again = client.finish(&started, parts).await.unwrap();
        assert_eq!(again.recording_id, finished.recording_id, "a repeated finish is harmless");

        let recording = client.wait_until_processed(&started.recording_id, READY_TIMEOUT).await.unwrap();
        assert_eq!(recording.status, RecordingStatus::Ready, "{len} bytes: {:?}", recording.error);
        assert_eq!(recording.sha256.as_deref(), Some(sha256_hex(&data).as_str()), "{len} bytes");
        assert_eq!(recording.size_bytes, Some(len as u64));
        let seconds = (len - 44) as f64 / 96_000.0;
        assert!((recording.duration_seconds.unwrap() - seconds).abs() < 1e-6, "duration from the WAV header");

        let media_url = recording.media_url.expect("a ready recording has a mediaUrl");
        let range =
            reqwest::Client::new().get(&media_url).header("Range", "bytes=0-43").send().await.unwrap();
        assert_eq!(range.status().as_u16(), 206);
        assert_eq!(&range.bytes().await.unwrap()[..], &data[..44], "the media URL serves the bytes sent");
    }

    let started = client.start("aborted").await.unwrap();
    let parts = client.put_parts(&started, &wav_of_len(1000)).await.unwrap();
    client.abort(&started).await.unwrap();
    client.abort(&started).await.expect("abort is idempotent");
    let err = client.finish(&started, parts).await.unwrap_err().to_string();
    assert!(err.contains("409"), "finish after abort: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_store_over_a_real_socket() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    uploads_reach_ready_with_the_sha256_sent(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_are_not_the_declared_media_fail_with_a_reason() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let client = server.client();
    let started = client.start("not a wav").await.unwrap();
    let parts = client.put_parts(&started, b"these bytes are no WAV file").await.unwrap();
    client.finish(&started, parts).await.unwrap();
    let recording = client.wait_until_processed(&started.recording_id, READY_TIMEOUT).await.unwrap();
    assert_eq!(recording.status, RecordingStatus::Failed);
    assert!(
        recording.error.as_deref().unwrap_or_default().contains("not a readable WAV"),
        "{:?}",
        recording.error
    );
    assert_eq!(recording.sha256, None, "only ready recordings have a sha256");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_over_seaweedfs() {
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start_on_seaweed(data_dir.path(), &seaweed, "lessons").unwrap();
    uploads_reach_ready_with_the_sha256_sent(&server).await;
}

fn job_state(data_dir: &std::path::Path, recording_id: &str) -> Option<String> {
    let db = rusqlite::Connection::open(data_dir.join("server.sqlite3")).ok()?;
    db.query_row("SELECT state FROM jobs WHERE recording_id = ?1", [recording_id], |row| row.get(0)).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_finish_and_ready_still_reaches_ready_after_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    // Large enough that verification (SHA-256 of every byte) outlasts the
    // moment between finish answering and the kill.
    let data = wav_of_len(24 * PART);
    for attempt in 1..=3 {
        let mut server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
        let client = server.client();
        let started = client.start("killed while processing").await.unwrap();
        let parts = client.put_parts(&started, &data).await.unwrap();
        client.finish(&started, parts).await.unwrap();
        server.process.signal(Signal::SIGKILL).unwrap();
        server.process.stop();
        let state = job_state(data_dir.path(), &started.recording_id);
        if state.as_deref() == Some("done") {
            eprintln!("attempt {attempt}: verification finished before the kill; trying again");
            continue;
        }
        assert!(matches!(state.as_deref(), Some("queued" | "running")), "job after kill: {state:?}");

        let server = OpptakServe::start(data_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
        let recording =
            server.client().wait_until_processed(&started.recording_id, READY_TIMEOUT).await.unwrap();
        assert_eq!(recording.status, RecordingStatus::Ready, "{:?}", recording.error);
        assert_eq!(recording.sha256.as_deref(), Some(sha256_hex(&data).as_str()));
        return;
    }
    panic!("verification always finished before SIGKILL; the test could not hit the window");
}
