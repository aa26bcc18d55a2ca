//! A 256 MiB upload through a proxy that faults 20 % of connections
//! (resets, stalls, requests cut short, 503 with Retry-After) completes,
//! and the server holds exactly the bytes sent.

use std::sync::atomic::Ordering;

use opptak_journal::Journal;
use opptak_tests::{BoundProxy, OpptakServe, TEST_TOKEN, sha256_hex, wav_of_len};
use opptak_upload::{ApiClient, Backoff, Source, UploadConfig, UploadHandle};

#[tokio::test(flavor = "multi_thread")]
async fn a_256_mib_upload_survives_20_percent_faulty_connections() {
    let proxy = BoundProxy::bind().await.unwrap();
    let proxy_url = proxy.url();
    let server_dir = tempfile::tempdir().unwrap();
    // Presigned part URLs point at the proxy too, so part PUTs meet faults.
    let server =
        OpptakServe::start(server_dir.path(), &["--part-size-mib", "5", "--public-url", &proxy_url], &[])
            .unwrap();
    let upstream = server.url.trim_start_matches("http://").parse().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("fault seed: {seed}");
    let proxy = proxy.run(upstream, 0.20, seed);

    let work = tempfile::tempdir().unwrap();
    let data = wav_of_len(256 * 1024 * 1024);
    let path = work.path().join("big.wav");
    std::fs::write(&path, &data).unwrap();
    let sha256 = sha256_hex(&data);
    let journal = Journal::open_in(work.path()).unwrap();
    let recording = journal
        .add_recording(opptak_journal::NewRecording::growing(
            &path,
            "big",
            "audio/wav",
            "desktop-audio",
            false,
        ))
        .unwrap();
    journal.mark_finished(recording.id, data.len() as u64, Some(&sha256)).unwrap();
    let destination = journal.upsert_destination(&proxy_url, TEST_TOKEN, "through the proxy").unwrap();
    // Short waits so the test's retries stay within seconds.
    let config = UploadConfig {
        backoff: Backoff {
            initial: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(2),
            factor: 2,
        },
        ..UploadConfig::default()
    };
    let upload = UploadHandle::start(
        journal,
        recording.id,
        destination,
        Source::complete(&path, data.len() as u64),
        ApiClient::new(&proxy_url, TEST_TOKEN),
        config,
    );
    let done = tokio::time::timeout(std::time::Duration::from_secs(600), upload.join())
        .await
        .expect("the upload ends within 10 minutes")
        .expect("the upload completes despite the faults");
    assert_eq!(done.sha256, sha256, "the server holds exactly the bytes sent");

    let counts = &proxy.counts;
    let faults = counts.resets.load(Ordering::Relaxed)
        + counts.stalls.load(Ordering::Relaxed)
        + counts.truncations.load(Ordering::Relaxed)
        + counts.unavailable.load(Ordering::Relaxed);
    eprintln!("proxy: {counts:?}");
    assert!(faults >= 5, "the proxy must actually fault connections: {counts:?}");
}
