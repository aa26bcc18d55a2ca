//! Opening the journal and running transactions on it.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write
//! lock before it reads, so a read-then-write never fails half-way with
//! `SQLITE_BUSY` when another process writes at the same time (the busy
//! timeout waits instead). Writes that must survive power loss (finish
//! sent, ready) commit with `synchronous=FULL`; everything else uses
//! `synchronous=NORMAL`, which in WAL mode may lose the last commits on
//! power loss but never corrupts the file — and every such write is
//! repeated by the engine after a restart (durable bytes are reported
//! again, parts found in storage are adopted again).

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::lock::{LOCKS_DIR, RecordingLock, lock_recording};
use crate::schema::migrations;
use crate::{Error, Result};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "journal.sqlite3";

/// How long a statement waits for another process's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises opening (and so migrating) across processes; see [`Journal::open`].
const OPEN_LOCK_FILE: &str = "journal-open.lock";
/// How long opening waits for another process that is opening the journal.
const OPEN_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const OPEN_LOCK_POLL: Duration = Duration::from_millis(20);

/// The client's journal. Clones share one connection; use it from blocking
/// threads (`spawn_blocking` in async code).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating and migrating) `journal.sqlite3` in `data_dir`,
    /// creating the directory if needed.
    pub fn open_in(data_dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(data_dir.as_ref().join(JOURNAL_FILE))
    }

    /// Opens (creating and migrating) the journal file at `path`.
    ///
    /// Other processes may have the same file open. Opening itself is
    /// serialised across processes with a lock file in `locks/` beside the
    /// journal, because two processes migrating a new file at once would
    /// both try to create the tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| Error::Open { path: path.clone(), reason };
        let locks = dir_of(&path).join(LOCKS_DIR);
        fs::create_dir_all(&locks).map_err(|err| open_err(err.to_string()))?;
        let opening = lock_for_opening(&locks.join(OPEN_LOCK_FILE)).map_err(open_err)?;
        owner_only(&path).map_err(|err| open_err(err.to_string()))?;
        let mut conn = Connection::open(&path).map_err(|err| open_err(err.to_string()))?;
        configure(&conn).map_err(|err| open_err(err.to_string()))?;
        migrations().to_latest(&mut conn).map_err(|err| open_err(err.to_string()))?;
        drop(opening);
        tracing::debug!(path = %path.display(), "journal opened");
        Ok(Self { inner: Arc::new(Inner { conn: Mutex::new(conn), path }) })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The directory that holds the journal (the data directory).
    pub fn dir(&self) -> &Path {
        dir_of(&self.inner.path)
    }

    /// Takes the upload lock of a recording in this journal's directory;
    /// see [`lock_recording`].
    pub fn lock_recording(&self, recording_id: i64) -> Result<RecordingLock> {
        lock_recording(self.dir(), recording_id)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the guard was held rolled its transaction back when
        // the transaction dropped, so the connection is still sound.
        self.inner.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a deferred transaction, so that its reads see one snapshot.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in an immediate transaction; an error rolls it back.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in an immediate transaction committed with
    /// `synchronous=FULL`, for state that must survive power loss.
    pub(crate) fn write_durably<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let result: Result<T> = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        let restored = conn.pragma_update(None, "synchronous", "NORMAL");
        let value = result?;
        restored?;
        Ok(value)
    }
}

/// Makes the journal file, and the `-wal` and `-shm` files beside it that
/// exist, readable and writable by this user only: the journal holds the
/// destinations' tokens. Creating the file first with mode 0600 is enough
/// for SQLite's own files, which it creates with the database file's mode;
/// a journal made by an older Opptak with wider permissions is narrowed.
#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match fs::metadata(file) {
            Ok(metadata) if metadata.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(file, fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Elsewhere the user's profile folder already keeps other users out.
#[cfg(not(unix))]
fn owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some network filesystems cannot share memory between processes;
        // the journal still works, but two processes will wait on each other more.
        tracing::warn!(%mode, "the journal could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Waits (up to [`OPEN_LOCK_TIMEOUT`]) for the exclusive open lock.
fn lock_for_opening(path: &Path) -> std::result::Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| format!("cannot create the lock file {}: {err}", path.display()))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < OPEN_LOCK_TIMEOUT => {
                std::thread::sleep(OPEN_LOCK_POLL);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "another Opptak process has been opening it for {} s",
                    OPEN_LOCK_TIMEOUT.as_secs()
                ));
            }
            Err(TryLockError::Error(err)) => {
                return Err(format!("cannot lock {}: {err}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::NewRecording;
    use crate::test_support::{Child, growing};

    #[test]
    fn open_sets_the_pragmas_and_reopens_with_data() {
        let temp = tempfile::tempdir().unwrap();
        let journal = Journal::open_in(temp.path().join("nested")).unwrap();
        assert_eq!(journal.path(), temp.path().join("nested").join(JOURNAL_FILE));
        let (mode, sync, fk, busy): (String, i64, i64, i64) = journal
            .read(|conn| {
                let get =
                    |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0));
                let mode = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
                Ok((mode, get("synchronous")?, get("foreign_keys")?, get("busy_timeout")?))
            })
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk, busy), ("wal", 1, 1, 5000));
        journal.add_recording(growing(temp.path().join("a.wav"))).unwrap();
        drop(journal);
        let journal = Journal::open_in(temp.path().join("nested")).unwrap();
        assert_eq!(journal.recordings().unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_and_its_wal_files_are_readable_by_this_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let mode = |name: &str| fs::metadata(temp.path().join(name)).unwrap().permissions().mode() & 0o777;
        let journal = Journal::open_in(temp.path()).unwrap();
        // A write makes SQLite create the -wal and -shm files.
        journal.add_recording(growing(temp.path().join("a.wav"))).unwrap();
        for name in [JOURNAL_FILE, "journal.sqlite3-wal", "journal.sqlite3-shm"] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
        drop(journal);

        // A journal an older version left readable by everyone is narrowed.
        for name in [JOURNAL_FILE, "journal.sqlite3-wal", "journal.sqlite3-shm"] {
            let path = temp.path().join(name);
            if path.exists() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let journal = Journal::open_in(temp.path()).unwrap();
        journal.add_recording(growing(temp.path().join("b.wav"))).unwrap();
        for name in [JOURNAL_FILE, "journal.sqlite3-wal", "journal.sqlite3-shm"] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
    }

    #[test]
    fn write_durably_commits_with_synchronous_full_and_restores_normal() {
        let temp = tempfile::tempdir().unwrap();
        let journal = Journal::open_in(temp.path()).unwrap();
        let inside = journal
            .write_durably(|tx| {
                tx.execute(
                    "INSERT INTO destinations (base_url, token, name) VALUES ('http://a', 't', 'a')",
                    [],
                )?;
                Ok(tx.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0))?)
            })
            .unwrap();
        assert_eq!(inside, 2, "FULL inside the durable transaction");
        let after: i64 =
            journal.read(|conn| Ok(conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?)).unwrap();
        assert_eq!(after, 1, "NORMAL again afterwards");
        // Committed: another connection sees it.
        let other = Journal::open_in(temp.path()).unwrap();
        assert_eq!(other.destinations().unwrap().len(), 1);

        // A failing durable write rolls back and still restores NORMAL.
        let err = journal
            .write_durably(|tx| {
                tx.execute(
                    "INSERT INTO destinations (base_url, token, name) VALUES ('http://b', 't', 'b')",
                    [],
                )?;
                Err::<(), _>(Error::Invalid("nope".into()))
            })
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        assert_eq!(other.destinations().unwrap().len(), 1);
        let after: i64 =
            journal.read(|conn| Ok(conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?)).unwrap();
        assert_eq!(after, 1);
    }

    #[test]
    fn two_connections_write_concurrently() {
        let temp = tempfile::tempdir().unwrap();
        let first = Journal::open_in(temp.path()).unwrap();
        let second = Journal::open_in(temp.path()).unwrap();
        let per_thread = 100;
        std::thread::scope(|scope| {
            for (name, journal) in [("a", &first), ("b", &second)] {
                let dir = temp.path();
                scope.spawn(move || {
                    for index in 0..per_thread {
                        let recording =
                            journal.add_recording(growing(dir.join(format!("{name}-{index}.wav")))).unwrap();
                        journal.set_durable_bytes(recording.id, 4096).unwrap();
                        journal.mark_finished(recording.id, 4096, None).unwrap();
                    }
                });
            }
        });
        let all = first.recordings().unwrap();
        assert_eq!(all.len(), 2 * per_thread);
        assert!(all.iter().all(|recording| recording.finished && recording.durable_bytes == 4096));
    }

    #[test]
    fn many_threads_can_create_a_new_journal_at_once() {
        let temp = tempfile::tempdir().unwrap();
        let threads = 6;
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            for index in 0..threads {
                let (barrier, dir) = (&barrier, temp.path());
                scope.spawn(move || {
                    barrier.wait();
                    let journal = Journal::open_in(dir).unwrap();
                    journal.add_recording(growing(dir.join(format!("{index}.wav")))).unwrap();
                });
            }
        });
        assert_eq!(Journal::open_in(temp.path()).unwrap().recordings().unwrap().len(), threads);
    }

    /// Run in a child process by [`two_processes_write_one_journal`].
    #[test]
    fn child_writes_recordings() {
        let Some(dir) = crate::test_support::child_role("write") else { return };
        let journal = Journal::open_in(&dir).unwrap();
        println!("{}", crate::test_support::READY);
        for index in 0..100 {
            let recording = journal.add_recording(growing(dir.join(format!("child-{index}.wav")))).unwrap();
            journal.set_durable_bytes(recording.id, 1).unwrap();
        }
    }

    #[test]
    fn two_processes_write_one_journal() {
        let temp = tempfile::tempdir().unwrap();
        let journal = Journal::open_in(temp.path()).unwrap();
        let mut child = Child::spawn("journal::tests::child_writes_recordings", "write", temp.path(), 0);
        child.wait_until_ready();
        for index in 0..100 {
            let recording = journal
                .add_recording(NewRecording {
                    name: format!("parent {index}"),
                    ..growing(temp.path().join(format!("parent-{index}.wav")))
                })
                .unwrap();
            journal.set_durable_bytes(recording.id, 1).unwrap();
        }
        child.wait_success();
        let all = journal.recordings().unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|recording| recording.durable_bytes == 1));
    }
}
