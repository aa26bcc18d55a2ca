//! The server's SQLite file: users, recordings, upload sessions and the
//! verification job queue.
//!
//! Migrations are a const list, never reordered; pragmas are set on open,
//! outside migrations. Writes that must survive power loss (finish, a
//! recording's final state) go through [`Db::write_durably`], which commits
//! with `synchronous=FULL`.
//!
//! The file holds every user's token digest, so it is created readable by
//! this user only (0600 on Unix); SQLite gives its `-wal` and `-shm` files
//! the database file's permissions.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::{Error, Result};

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_sha256 BLOB NOT NULL UNIQUE
    ) STRICT;
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        name TEXT NOT NULL,
        recorder_type TEXT NOT NULL,
        content_type TEXT NOT NULL,
        is_video INTEGER NOT NULL,
        used_in_file_uploader INTEGER NOT NULL,
        expected_size INTEGER,
        -- uploading | processing | ready | failed | aborted | expired
        status TEXT NOT NULL,
        size_bytes INTEGER,
        duration_seconds REAL,
        sha256 TEXT,
        error TEXT,
        created_at INTEGER NOT NULL,
        ready_at INTEGER
    ) STRICT;
    CREATE INDEX recordings_by_user ON recordings(user_id, created_at DESC, id);
    CREATE TABLE upload_sessions (
        upload_id TEXT PRIMARY KEY,
        recording_id TEXT NOT NULL UNIQUE REFERENCES recordings(id),
        object_key TEXT NOT NULL,
        store_upload_id TEXT NOT NULL,
        part_size INTEGER NOT NULL,
        -- open | completed | aborted | expired
        state TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        -- JSON [[partNumber, etag], ...] sorted, once finish was accepted
        finished_parts TEXT,
        object_size INTEGER,
        object_etag TEXT
    ) STRICT;
    CREATE INDEX open_sessions_by_expiry ON upload_sessions(expires_at) WHERE state = 'open';
    CREATE TABLE jobs (
        recording_id TEXT PRIMARY KEY REFERENCES recordings(id),
        -- queued | running | done
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        run_after INTEGER NOT NULL,
        lease_until INTEGER,
        last_error TEXT
    ) STRICT;
    CREATE INDEX due_jobs ON jobs(state, run_after);",
    ),
    // The server instance that last claimed each job (as in PostgreSQL's
    // 0002_job_owner.sql).
    M::up("ALTER TABLE jobs ADD COLUMN owner TEXT;"),
];

/// The migrations, in order.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// The server's database: one connection, used from blocking threads.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Db {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        restrict_to_owner(path).map_err(|err| {
            Error::Database(format!("cannot make {} private to this user: {err}", path.display()))
        })?;
        let mut conn = Connection::open(path).map_err(|err| Error::Database(err.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err)?;
        migrations().to_latest(&mut conn).map_err(|err| Error::Database(err.to_string()))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|err| Error::Database(format!("database task failed: {err}")))?
        .map_err(db_err)
    }

    /// Runs `f` in a transaction committed with `synchronous=FULL`, for state
    /// that must survive power loss.
    pub async fn write_durably<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.call(move |conn| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let result = (|| {
                let tx = conn.transaction()?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            result
        })
        .await
    }
}

/// Creates `path` if missing, and (on Unix) makes it readable and writable
/// by its owner only, also when an older version created it wider.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    drop(file);
    Ok(())
}

fn db_err(err: rusqlite::Error) -> Error {
    Error::Database(err.to_string())
}

/// Seconds since the Unix epoch, as stored in the database.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_wal_are_private_to_this_user() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("server.sqlite3");
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let db = Db::open(&path).unwrap();
        db.write_durably(|tx| tx.execute("INSERT INTO users (name, token_sha256) VALUES ('a', x'00')", []))
            .await
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&temp.path().join("server.sqlite3-wal")), 0o600);
        drop(db);
        // A file an older version left readable by everyone is tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Db::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[tokio::test]
    async fn open_twice_keeps_data_and_uses_wal() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("server.sqlite3");
        let db = Db::open(&path).unwrap();
        db.write_durably(|tx| tx.execute("INSERT INTO users (name, token_sha256) VALUES ('a', x'00')", []))
            .await
            .unwrap();
        drop(db);
        let db = Db::open(&path).unwrap();
        let (count, mode): (i64, String) = db
            .call(|conn| {
                let count = conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
                let mode = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
                Ok((count, mode))
            })
            .await
            .unwrap();
        assert_eq!((count, mode.as_str()), (1, "wal"));
    }
}
