//! One capture lock for every file of a recording session: while `opptak
//! record` writes the file it rolled over to, another `opptak` process that
//! runs crash recovery (any command that opens the data directory) must
//! leave that file alone — not truncate it, not rewrite its header, not mark
//! it recovered.
//!
//! Real processes: `opptak record` on a PulseAudio null-sink microphone with
//! a tiny `--file-size-mb`, and `opptak recordings` beside it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_journal::{Journal, LocalRecording, RecordingState};
use opptak_tests::{ChildGuard, PulseAudio, workspace_bin};

/// Bounds every wait.
const DEADLINE: Duration = Duration::from_secs(60);
/// 0.1 MB: about a second of 48 kHz mono audio per file.
const FILE_SIZE_MB: &str = "0.1";

fn opptak(data_dir: &Path) -> Command {
    let mut command = Command::new(workspace_bin("opptak"));
    command.arg("--data-dir").arg(data_dir).env_remove("OPPTAK_TOKEN");
    command
}

/// Polls the journal every 20 ms until `found` picks something.
fn wait_for<T>(data_dir: &Path, what: &str, found: impl Fn(&[LocalRecording]) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        let recordings =
            Journal::open_in(data_dir).and_then(|journal| journal.recordings()).unwrap_or_default();
        if let Some(value) = found(&recordings) {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "{what} did not happen within {DEADLINE:?}: {recordings:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn recovery_in_another_process_leaves_a_rolled_over_file_that_is_being_recorded_alone() {
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut command = opptak(&data);
    command
        .args(["record", "--no-upload", "--json", "--file-size-mb", FILE_SIZE_MB])
        .envs(pulse.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut record = ChildGuard::spawn("opptak record", &mut command).unwrap();

    // The recording rolled over: its second file is journaled and growing.
    let second = wait_for(&data, "a rolled-over file being recorded", |recordings| {
        recordings
            .iter()
            .find(|recording| {
                recording.state == RecordingState::Recording
                    && recording.durable_bytes > 0
                    && recording.path.file_stem().is_some_and(|stem| stem.to_string_lossy().ends_with("-2"))
            })
            .cloned()
    });
    let journaled_before = second.durable_bytes;

    // Another process opens the data directory, which recovers dead recordings.
    let listed = opptak(&data).args(["recordings", "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let journal = Journal::open_in(&data).unwrap();
    let after = journal.recording(second.id).unwrap().unwrap();
    assert_eq!(after.state, RecordingState::Recording, "recovery took a live file: {after:#?}");
    assert!(!after.finished, "recovery finished a live file: {after:#?}");

    // The recorder goes on writing it, and the journal keeps up.
    wait_for(&data, "the second file growing", |recordings| {
        recordings
            .iter()
            .any(|recording| recording.id == second.id && recording.durable_bytes > journaled_before)
            .then_some(())
    });
    record.ensure_running().expect("the recorder is still recording");
    record.signal(Signal::SIGTERM).unwrap();
    let status = record.wait_timeout(DEADLINE).unwrap();
    assert!(status.success(), "opptak record ended with {status}");

    // Every file is finished, valid, and exactly as long as the journal says.
    let recordings = journal.recordings().unwrap();
    assert!(recordings.len() >= 2, "{recordings:#?}");
    for recording in &recordings {
        assert_eq!(recording.state, RecordingState::Stopped, "{recording:#?}");
        let len = std::fs::metadata(&recording.path).unwrap().len();
        assert_eq!(Some(len), recording.total_bytes, "{recording:#?}");
        let reader = hound::WavReader::open(&recording.path).unwrap();
        assert_eq!(u64::from(reader.duration()) * 2 + 44, len, "{}", recording.path.display());
    }
}
