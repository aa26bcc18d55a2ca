use std::path::PathBuf;

use super::*;
use crate::DataDir;

/// `name` in `dir`: `seconds` of a 8 kHz mono 16-bit sawtooth.
fn wav(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let file = dir.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&file, spec).unwrap();
    for n in 0..8000 * seconds {
        writer.write_sample((n % 150) as i16 * 100).unwrap();
    }
    writer.finalize().unwrap();
    file
}

struct Setup {
    temp: tempfile::TempDir,
    opptak: Opptak,
    embedded: Arc<Destination>,
    library: Library,
}

async fn setup(policy: Option<crate::RetryPolicy>) -> Setup {
    let temp = tempfile::tempdir().unwrap();
    let mut opptak = Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap();
    if let Some(policy) = policy {
        opptak = opptak.with_retry_policy(policy);
    }
    let embedded = Arc::new(opptak.connect(&Target::Embedded).await.unwrap());
    let library = Library::new(opptak.clone(), Some(embedded.clone()), UploadConfig::default());
    Setup { temp, opptak, embedded, library }
}

/// Waits (at most 20 s) until the Library's entry `id` satisfies `done`.
async fn wait_for(
    library: &Library,
    id: i64,
    what: &str,
    done: impl Fn(Option<&LibraryEntry>) -> bool,
) -> Vec<LibraryEntry> {
    let mut watch = library.watch().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let entries = watch.borrow_and_update().clone();
        if done(entries.iter().find(|entry| entry.id == id)) {
            return entries;
        }
        assert!(
            tokio::time::timeout_at(deadline, watch.changed()).await.is_ok(),
            "not {what} within 20 s: {entries:#?}"
        );
    }
}

fn status(entries: &[LibraryEntry], id: i64) -> &LibraryStatus {
    &entries.iter().find(|entry| entry.id == id).unwrap().status
}

#[test]
fn the_rate_and_time_left_come_from_the_last_seconds_of_progress() {
    let start = Instant::now();
    let mut progress = Progress::default();
    progress.record(start, 0, 1000);
    assert_eq!(progress.rate(), None, "one report measures nothing");
    progress.record(start + Duration::from_secs(1), 100, 1000);
    assert_eq!(progress.rate(), Some(100.0));
    assert_eq!(progress.seconds_left(), Some(9));
    // Reports older than the window no longer count: the rate follows the link.
    progress.record(start + Duration::from_secs(10), 900, 1000);
    progress.record(start + Duration::from_secs(11), 950, 1000);
    assert_eq!(progress.rate(), Some(50.0));
    assert_eq!(progress.seconds_left(), Some(1));
}

#[test]
fn a_wav_files_length_comes_from_its_header_and_size() {
    let temp = tempfile::tempdir().unwrap();
    let three = wav(temp.path(), "three.wav", 3);
    assert_eq!(wav_seconds(&three), Some(3.0));
    std::fs::write(temp.path().join("not.wav"), b"not a wav file at all").unwrap();
    assert_eq!(wav_seconds(&temp.path().join("not.wav")), None);
    assert_eq!(wav_seconds(&temp.path().join("missing.wav")), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_file_is_listed_uploading_then_safe_with_its_link_on_the_server() {
    let Setup { temp, opptak, embedded, library } = setup(None).await;
    let file = wav(temp.path(), "Lesson 3.wav", 2);
    let id = library.upload_file(&file, &embedded).await.unwrap();

    let entries =
        wait_for(&library, id, "safe", |entry| entry.is_some_and(|e| e.status == LibraryStatus::Safe)).await;
    let entry = entries.iter().find(|entry| entry.id == id).unwrap();
    assert_eq!(entry.name, "Lesson 3");
    assert_eq!(entry.length_seconds, Some(2.0));
    assert_eq!(entry.size_bytes, std::fs::metadata(&file).unwrap().len());
    assert_eq!(entry.destination.as_deref(), Some(crate::uploads::EMBEDDED_NAME));
    assert!(entry.has_local_file);
    assert!(library.running_ids().is_empty(), "the registry lets go of a finished upload");

    // The link is the server's own URL of the recording, and the server says it is ready there.
    let link = library.link(id).await.unwrap().expect("a safe recording has a link");
    assert_eq!(entry.link.as_deref(), Some(link.as_str()));
    let prefix = format!("{}/{RECORDING_PATH}/", embedded.client.base_url());
    let server_id = link.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix("/v1")).unwrap();
    let on_server = embedded.client.recording(server_id).await.unwrap();
    assert_eq!(serde_json::to_value(&on_server).unwrap()["status"], "ready", "{link}");

    // Uploading the same file again changes nothing.
    assert_eq!(library.upload_file(&file, &embedded).await.unwrap(), id);
    assert!(library.running_ids().is_empty());
    let not_media = temp.path().join("notes.txt");
    std::fs::write(&not_media, b"notes").unwrap();
    let refused = library.upload_file(&not_media, &embedded).await.unwrap_err();
    assert!(matches!(refused, Error::UnknownKind { .. }) && !refused.to_string().contains("--"), "{refused}");
    drop(opptak);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_safe_copy_is_deleted_at_once_and_the_only_copy_only_when_confirmed() {
    let Setup { temp, opptak, embedded, library } = setup(None).await;
    let safe_file = wav(temp.path(), "safe.wav", 1);
    let safe = library.upload_file(&safe_file, &embedded).await.unwrap();
    wait_for(&library, safe, "safe", |entry| entry.is_some_and(|e| e.status == LibraryStatus::Safe)).await;

    library.delete_local_copy(safe, false).await.unwrap();
    assert!(!safe_file.exists(), "deleted at once");
    let entries = library.refresh().await.unwrap();
    let entry = entries.iter().find(|entry| entry.id == safe).unwrap();
    assert_eq!(
        (&entry.status, entry.has_local_file),
        (&LibraryStatus::Safe, false),
        "still listed, safe on the server"
    );
    assert_eq!(entry.length_seconds, Some(1.0), "its length is remembered");

    // Kept on this computer: nothing uploads it, so the file is the only copy.
    let kept_file = wav(temp.path(), "kept.wav", 1);
    let kept = opptak.add_file(&kept_file, "kept", None).await.unwrap().id;
    opptak.journal().set_keep_local(kept, true).unwrap();
    let entries = library.refresh().await.unwrap();
    assert_eq!(status(&entries, kept), &LibraryStatus::OnlyOnThisComputer);
    let refused = library.delete_local_copy(kept, false).await.unwrap_err();
    assert!(matches!(&refused, Error::OnlyCopy { name } if name == "kept"), "{refused}");
    assert!(refused.to_string().contains("only copy"), "{refused}");
    assert!(kept_file.exists(), "not deleted without the teacher's confirmation");
    library.delete_local_copy(kept, true).await.unwrap();
    assert!(!kept_file.exists());
    assert!(library.refresh().await.unwrap().iter().all(|entry| entry.id != kept), "gone from the list");
    assert!(opptak.journal().recording(kept).unwrap().is_none());
    assert!(matches!(library.delete_local_copy(kept, true).await, Err(Error::UnknownRecording(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_and_retry_say_what_is_wrong_with_a_typed_error() {
    let Setup { temp, opptak, library, .. } = setup(None).await;
    let file = wav(temp.path(), "a.wav", 1);
    let id = opptak.add_file(&file, "a", None).await.unwrap().id;
    opptak.journal().set_keep_local(id, true).unwrap();
    library.rename(id, "  Physics 9C ").await.unwrap();
    assert_eq!(library.refresh().await.unwrap()[0].name, "Physics 9C");
    assert!(matches!(library.rename(id, "  ").await, Err(Error::BlankName)));
    assert!(matches!(library.rename(id + 1, "x").await, Err(Error::UnknownRecording(_))));
    assert!(matches!(library.retry(id).await, Err(Error::NotRetryable { .. })), "it did not fail");
    assert!(matches!(library.retry(id + 1).await, Err(Error::UnknownRecording(_))));
    assert_eq!(library.link(id).await.unwrap(), None, "the server does not know it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_is_journaled_with_its_problem_and_the_teachers_retry_takes_it_to_safe() {
    let Setup { temp, opptak, embedded, library } = setup(None).await;
    let file = wav(temp.path(), "moved.wav", 1);
    let recording = opptak.add_file(&file, "moved", None).await.unwrap();
    let aside = temp.path().join("aside.wav");
    std::fs::rename(&file, &aside).unwrap();
    library.register(recording.id, opptak.upload(&recording, &embedded, UploadConfig::default()));

    let failed = |entry: Option<&LibraryEntry>| {
        entry.is_some_and(|e| matches!(e.status, LibraryStatus::Failed { .. }))
    };
    let entries = wait_for(&library, recording.id, "failed", failed).await;
    let LibraryStatus::Failed { code, message, needs_teacher } = status(&entries, recording.id) else {
        unreachable!()
    };
    assert_eq!((code.as_str(), *needs_teacher), ("file_missing", true));
    assert!(message.contains("Put the file back") && !message.contains("opptak "), "{message}");
    assert_eq!(
        opptak.journal().recording(recording.id).unwrap().unwrap().problem,
        Some(Problem::FileMissing)
    );

    std::fs::rename(&aside, &file).unwrap();
    library.retry(recording.id).await.unwrap();
    wait_for(&library, recording.id, "safe", |entry| entry.is_some_and(|e| e.status == LibraryStatus::Safe))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_that_retries_by_itself_is_retried_when_due_with_no_call() {
    let Setup { temp, opptak, library, .. } = setup(None).await;
    let file = wav(temp.path(), "offline.wav", 1);
    let id = opptak.add_file(&file, "offline", None).await.unwrap().id;
    let journal = opptak.journal();
    journal.set_state_because(id, RecordingState::Failed, Some(Problem::Offline), Some("refused")).unwrap();
    journal.set_next_retry_at(id, crate::uploads::now_unix() + 2).unwrap();

    let entries = library.refresh().await.unwrap();
    let LibraryStatus::Failed { code, needs_teacher, message } = status(&entries, id) else {
        panic!("{entries:?}")
    };
    assert_eq!((code.as_str(), *needs_teacher), ("offline", false));
    assert!(message.contains("tries again by itself"), "{message}");
    let started = Instant::now();
    wait_for(&library, id, "safe", |entry| entry.is_some_and(|e| e.status == LibraryStatus::Safe)).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "not before it was due");
    assert_eq!(journal.recording(id).unwrap().unwrap().retry_attempts, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_published_at_most_four_times_a_second() {
    let temp = tempfile::tempdir().unwrap();
    let opptak = Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap();
    let file = wav(temp.path(), "a.wav", 1);
    let id = opptak.add_file(&file, "a", None).await.unwrap().id;
    let library = Library::new(opptak.clone(), None, UploadConfig::default());
    let mut watch = library.watch().await.unwrap();
    watch.borrow_and_update();
    let counting = tokio::spawn(async move {
        let mut changes = 0;
        while tokio::time::timeout(Duration::from_millis(600), watch.changed()).await.is_ok_and(|r| r.is_ok())
        {
            changes += 1;
        }
        changes
    });
    // 200 changes reported over two seconds, each one visible in the journal.
    let started = Instant::now();
    for n in 0..200 {
        opptak.journal().rename_recording(id, &format!("take {n}")).unwrap();
        library.changed();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let changes = counting.await.unwrap();
    let most = (seconds / MIN_PUBLISH_INTERVAL.as_secs_f64()).ceil() as u32 + 2;
    assert!((2..=most).contains(&changes), "{changes} snapshots in {seconds:.1} s (at most {most})");
    assert_eq!(library.refresh().await.unwrap()[0].name, "take 199", "the last state is published");
}

#[test]
fn statuses_serialise_as_the_ui_bindings_say() {
    let uploading = LibraryStatus::Uploading {
        sent_bytes: 43,
        total_bytes: 100,
        bytes_per_second: Some(2.5),
        seconds_left: Some(23),
    };
    assert_eq!(
        serde_json::to_value(&uploading).unwrap(),
        serde_json::json!({"state": "uploading", "sentBytes": 43, "totalBytes": 100, "bytesPerSecond": 2.5, "secondsLeft": 23})
    );
    let failed = LibraryStatus::Failed { code: "offline".into(), message: "m".into(), needs_teacher: false };
    assert_eq!(
        serde_json::to_value(&failed).unwrap(),
        serde_json::json!({"state": "failed", "code": "offline", "message": "m", "needsTeacher": false})
    );
    assert_eq!(
        serde_json::to_value(LibraryStatus::OnlyOnThisComputer).unwrap(),
        serde_json::json!({"state": "onlyOnThisComputer"})
    );
}

/// Another process renaming a recording in the journal, and a file
/// deleted by hand, reach the Library's stream with no call.
#[tokio::test(flavor = "multi_thread")]
async fn changes_made_outside_this_process_reach_the_library_by_themselves() {
    let Setup { temp, opptak, library, .. } = setup(None).await;
    let file = wav(temp.path(), "lesson.wav", 1);
    let id = opptak.add_file(&file, "lesson", None).await.unwrap().id;
    opptak.journal().set_keep_local(id, true).unwrap();
    // One subscription: `watch` itself reads the journal, so each wait
    // below must come from the Library's own loop.
    let mut stream = library.watch().await.unwrap();
    let mut wait_until = async |what: &str, done: &dyn Fn(&LibraryEntry) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if stream.borrow_and_update().iter().any(|entry| entry.id == id && done(entry)) {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, stream.changed()).await.is_ok(),
                "not {what} within 10 s"
            );
        }
    };
    wait_until("listed", &|_| true).await;

    // `opptak` in a terminal: its own connection to the same journal file.
    let other_process = opptak_journal::Journal::open(opptak.journal().path()).unwrap();
    other_process.rename_recording(id, "Renamed elsewhere").unwrap();
    wait_until("renamed", &|entry| entry.name == "Renamed elsewhere").await;

    std::fs::remove_file(&file).unwrap();
    wait_until("without its file", &|entry| !entry.has_local_file).await;
}
