//! One uploader per recording, across processes.
//!
//! The desktop app and the `opptak` command may run at once and both find
//! the same unfinished upload in the journal. Before working on a
//! recording, a process takes [`lock_recording`]: an exclusive OS file lock
//! (`flock(2)` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]) on `locks/<id>.lock` in the data
//! directory. The lock is held while the [`RecordingLock`] lives and the
//! operating system drops it when the process dies, however it dies — so a
//! crash never leaves a recording locked.
//!
//! Lock files are never deleted: removing one while another process is
//! about to lock it would let two processes hold "the" lock on two
//! different files.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The directory of lock files inside the data directory.
pub const LOCKS_DIR: &str = "locks";

/// The right to upload one recording, held until dropped.
#[derive(Debug)]
#[must_use = "the lock is released as soon as it is dropped"]
pub struct RecordingLock {
    recording_id: i64,
    path: PathBuf,
    _file: File,
}

impl RecordingLock {
    /// The locked recording.
    pub fn recording_id(&self) -> i64 {
        self.recording_id
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the upload lock of recording `recording_id`, using
/// `data_dir/locks/<id>.lock`. Never waits: if another process (or another
/// lock in this one) holds it, the answer is [`Error::Busy`].
pub fn lock_recording(data_dir: &Path, recording_id: i64) -> Result<RecordingLock> {
    let dir = data_dir.join(LOCKS_DIR);
    fs::create_dir_all(&dir).map_err(|source| Error::Lock { path: dir.clone(), source })?;
    let path = dir.join(format!("{recording_id}.lock"));
    let lock_err = |source| Error::Lock { path: path.clone(), source };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(Error::Busy { recording_id }),
        Err(TryLockError::Error(source)) => return Err(lock_err(source)),
    }
    // For a person looking at a stuck upload: which process holds it.
    file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(lock_err)?;
    tracing::debug!(recording_id, "recording locked");
    Ok(RecordingLock { recording_id, path, _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Child, child_role};

    #[test]
    fn a_second_lock_is_busy_until_the_first_is_dropped() {
        let temp = tempfile::tempdir().unwrap();
        let lock = lock_recording(temp.path(), 7).unwrap();
        assert_eq!(lock.recording_id(), 7);
        assert_eq!(lock.path(), temp.path().join("locks").join("7.lock"));
        let err = lock_recording(temp.path(), 7).unwrap_err();
        assert!(matches!(err, Error::Busy { recording_id: 7 }), "{err}");
        let other = lock_recording(temp.path(), 8).unwrap();
        drop(lock);
        let again = lock_recording(temp.path(), 7).unwrap();
        assert_eq!(fs::read_to_string(again.path()).unwrap().trim(), std::process::id().to_string());
        drop((again, other));
    }

    #[test]
    fn busy_says_another_opptak_process_is_uploading() {
        let message = Error::Busy { recording_id: 3 }.to_string();
        assert!(message.contains("recording 3"), "{message}");
        assert!(message.contains("another Opptak process"), "{message}");
        assert!(message.contains("uploaded"), "{message}");
    }

    #[test]
    fn an_unusable_lock_directory_is_an_error_not_busy() {
        let temp = tempfile::tempdir().unwrap();
        fs::write(temp.path().join(LOCKS_DIR), b"a file, not a directory").unwrap();
        assert!(matches!(lock_recording(temp.path(), 1), Err(Error::Lock { .. })));
    }

    /// Run in a child process by [`a_lock_held_by_another_process_is_busy_until_it_dies`].
    #[test]
    fn child_holds_a_lock() {
        let Some(dir) = child_role("lock") else { return };
        let id: i64 = std::env::var(crate::test_support::ID_ENV).unwrap().parse().unwrap();
        let _lock = lock_recording(&dir, id).unwrap();
        println!("{}", crate::test_support::READY);
        // The parent kills us; this only bounds a child whose parent died.
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_lock_held_by_another_process_is_busy_until_it_dies() {
        let temp = tempfile::tempdir().unwrap();
        let mut child = Child::spawn("lock::tests::child_holds_a_lock", "lock", temp.path(), 42);
        child.wait_until_ready();
        let err = lock_recording(temp.path(), 42).unwrap_err();
        assert!(matches!(err, Error::Busy { recording_id: 42 }), "{err}");
        assert!(err.to_string().contains("another Opptak process"));
        // Other recordings are free.
        drop(lock_recording(temp.path(), 43).unwrap());
        // SIGKILL: no destructor runs, the OS releases the lock.
        child.kill();
        let lock = lock_recording(temp.path(), 42).unwrap();
        assert_eq!(lock.recording_id(), 42);
    }
}
