//! Helpers for the unit tests, including child processes: a test re-runs
//! this test binary (`std::env::current_exe()`) with the libtest arguments
//! `<test path> --exact --nocapture` and an environment variable that gives
//! one otherwise empty `#[test]` a role. That works the same under
//! `cargo test` and `cargo nextest`, which both run libtest binaries.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::{Journal, NewRecording, NewSession, PartRecord};

const ROLE_ENV: &str = "OPPTAK_JOURNAL_TEST_CHILD_ROLE";
const DIR_ENV: &str = "OPPTAK_JOURNAL_TEST_CHILD_DIR";
/// The recording id a child works on.
pub(crate) const ID_ENV: &str = "OPPTAK_JOURNAL_TEST_CHILD_ID";
/// The line a child prints once it holds what the parent waits for.
pub(crate) const READY: &str = "OPPTAK-JOURNAL-CHILD-READY";
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn journal() -> (tempfile::TempDir, Journal) {
    let temp = tempfile::tempdir().unwrap();
    let journal = Journal::open_in(temp.path()).unwrap();
    (temp, journal)
}

pub(crate) fn growing(path: impl Into<PathBuf>) -> NewRecording {
    NewRecording::growing(path, "Lesson", "audio/wav", "audio", false)
}

pub(crate) fn new_session(destination_id: i64, part_size_bytes: u64) -> NewSession {
    NewSession {
        destination_id,
        server_recording_id: "rec-1".into(),
        upload_id: "upload-1".into(),
        object_key: "media/rec-1.wav".into(),
        part_size_bytes,
        max_parts: 10_000,
        expires_at: 1_900_000_000,
    }
}

/// A stand-in MD5 (32 hex digits) for `label`; the journal only compares them.
pub(crate) fn md5_of(label: &str) -> String {
    let hash = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        (salt, label).hash(&mut hasher);
        hasher.finish()
    };
    format!("{:016x}{:016x}", hash(1), hash(2))
}

/// Part `number` of `size` bytes in a session of `part_size`-byte parts,
/// with a quoted ETag equal to its MD5, as S3 answers.
pub(crate) fn part(number: u32, part_size: u64, size: u64) -> PartRecord {
    let md5 = md5_of(&number.to_string());
    PartRecord {
        number,
        offset: u64::from(number.saturating_sub(1)) * part_size,
        size,
        etag: format!("\"{md5}\""),
        md5_hex: md5,
    }
}

/// The directory to work in when this process is a child with `role`.
pub(crate) fn child_role(role: &str) -> Option<PathBuf> {
    (std::env::var(ROLE_ENV).ok()? == role).then(|| PathBuf::from(std::env::var_os(DIR_ENV).unwrap()))
}

/// This test binary, re-run to play one role; killed when dropped.
pub(crate) struct Child {
    process: std::process::Child,
    lines: Receiver<String>,
    test: &'static str,
}

impl Child {
    pub(crate) fn spawn(test: &'static str, role: &str, dir: &Path, id: i64) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(DIR_ENV, dir)
            .env(ID_ENV, id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        // Drained to the end so the child never blocks on (or dies of) a full or closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { process, lines, test }
    }

    pub(crate) fn wait_until_ready(&mut self) {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(CHILD_TIMEOUT) {
                Ok(line) if line.contains(READY) => return,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} did not get ready; it printed {seen:?}", self.test)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.process.wait().unwrap();
                    panic!("{} exited ({status}) before getting ready; it printed {seen:?}", self.test)
                }
            }
        }
    }

    pub(crate) fn wait_success(&mut self) {
        let status = self.process.wait().unwrap();
        // The reader thread ends at end of file, once the child exited.
        let printed: Vec<String> = self.lines.iter().collect();
        assert!(status.success(), "{} failed ({status}); it printed {printed:?}", self.test);
        assert!(
            printed.iter().any(|line| line.contains("1 passed")),
            "{} did not run: {printed:?}",
            self.test
        );
    }

    /// Kills the child without letting it clean up (SIGKILL on Unix).
    pub(crate) fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}
