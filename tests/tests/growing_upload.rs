//! The engine follows a file while it is written (as a recording is): full
//! parts go as soon as they are durable, part 1 (a WAV header, patched at
//! stop) goes last, and the time from stop to the server accepting
//! `finish` does not grow with the recording's length. (From there to
//! `ready` the server hashes the whole object, which does grow; the
//! release-build benchmark measures it.)

use std::io::Write;
use std::time::{Duration, Instant};

use opptak_journal::{Journal, NewRecording};
use opptak_tests::{OpptakServe, TEST_TOKEN, sha256_hex, wav_of_len};
use opptak_upload::{ApiClient, Source, SourceState, UploadConfig, UploadEvent, UploadHandle};

const PART: usize = 5 * 1024 * 1024;
/// Bytes appended per tick, and the tick: 20 MiB/s, a steady writer.
const CHUNK: usize = 1024 * 1024;
const TICK: Duration = Duration::from_millis(50);

/// Writes `len` bytes at a steady rate while uploading them; returns the
/// seconds from the writer's stop to finish accepted and to `ready`, and
/// how many parts had reached storage before the stop.
async fn stop_to_finished(server: &OpptakServe, len: usize) -> (f64, f64, usize) {
    let work = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(work.path()).unwrap();
    let path = work.path().join("growing.wav");
    let data = wav_of_len(len);
    // A recorder hashes as it writes; here the hash is ready before stop.
    let sha256 = sha256_hex(&data);
    let mut file = std::fs::File::create(&path).unwrap();
    let recording = journal
        .add_recording(NewRecording::growing(&path, "growing", "audio/wav", "desktop-audio", false))
        .unwrap();
    let destination = journal.upsert_destination(&server.url, TEST_TOKEN, "test server").unwrap();
    let (state, watch) = tokio::sync::watch::channel(SourceState::default());
    let source = Source::growing(&path, watch, true);
    let upload = UploadHandle::start(
        journal.clone(),
        recording.id,
        destination,
        source,
        ApiClient::new(&server.url, TEST_TOKEN),
        UploadConfig::default(),
    );
    let mut events = upload.subscribe();
    let parts_sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = parts_sent.clone();
    let (accepted, finish_accepted) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let mut accepted = Some(accepted);
        while let Ok(event) = events.recv().await {
            match event {
                UploadEvent::PartSent { .. } => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                UploadEvent::Processing => {
                    if let Some(accepted) = accepted.take() {
                        let _ = accepted.send(Instant::now());
                    }
                }
                _ => {}
            }
        }
    });

    // The writer: append, fsync, journal the durable length, tell the engine.
    let mut written = 0;
    while written < len {
        let end = (written + CHUNK).min(len);
        file.write_all(&data[written..end]).unwrap();
        file.sync_data().unwrap();
        written = end;
        journal.set_durable_bytes(recording.id, written as u64).unwrap();
        state.send_replace(SourceState { durable_len: written as u64, finished: false });
        tokio::time::sleep(TICK).await;
    }
    let sent_before_stop = parts_sent.load(std::sync::atomic::Ordering::SeqCst);
    let stopped = Instant::now();
    journal.mark_finished(recording.id, len as u64, Some(&sha256)).unwrap();
    state.send_replace(SourceState { durable_len: len as u64, finished: true });
    let uploaded = upload.join().await.expect("the growing upload reaches ready");
    let to_ready = stopped.elapsed().as_secs_f64();
    let to_finished = (finish_accepted.await.expect("finish was accepted") - stopped).as_secs_f64();
    watcher.abort();
    assert_eq!(uploaded.sha256, sha256);
    (to_finished, to_ready, sent_before_stop)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_growing_recording_uploads_while_written_and_stop_to_finish_does_not_grow() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(server_dir.path(), &["--part-size-mib", "5"], &[]).unwrap();
    let (short, short_ready, short_sent) = stop_to_finished(&server, 4 * PART + 1000).await;
    let (long, long_ready, long_sent) = stop_to_finished(&server, 16 * PART + 1000).await;
    eprintln!(
        "stop→finish accepted: {short:.2} s for 4 parts ({short_sent} sent before stop), {long:.2} s for 16 parts \
         ({long_sent} before stop); stop→ready {short_ready:.2} s and {long_ready:.2} s (debug server)"
    );
    assert!(long_sent >= 12, "parts go while the file grows: only {long_sent} of 16 before stop");
    assert!(long < short + 1.0, "stop→finish grew with length: {short:.2} s vs {long:.2} s");
}
