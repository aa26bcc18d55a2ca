//! The journal's schema: a const list of migrations, never reordered and
//! never edited once released — a change is a new migration at the end.
//!
//! Pragmas (WAL, `synchronous`, `foreign_keys`, `busy_timeout`) are not
//! part of migrations: they are set on every open, in [`crate::Journal::open`].
//!
//! The tables enforce what SQL can: state names, non-negative sizes, at
//! most one live (not aborted or expired) upload session per recording,
//! and a part primary key of (session, part number).

use rusqlite_migration::{M, Migrations};

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE destinations (
        id INTEGER PRIMARY KEY,
        base_url TEXT NOT NULL,
        token TEXT NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (base_url, token)
    ) STRICT;
    CREATE TABLE recordings (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        recorder_type TEXT NOT NULL,
        is_video INTEGER NOT NULL CHECK (is_video IN (0, 1)),
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('recording', 'stopped', 'recovered', 'uploading',
            'waiting', 'finishing', 'processing', 'ready', 'failed')),
        -- Bytes of the file known to be fsynced; never more than the recorder reported.
        durable_bytes INTEGER NOT NULL DEFAULT 0 CHECK (durable_bytes >= 0),
        -- 1 once the file will not grow any more; total_bytes is set then.
        finished INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1)),
        total_bytes INTEGER CHECK (total_bytes >= 0),
        sha256 TEXT,
        server_sha256 TEXT,
        error TEXT,
        destination_id INTEGER REFERENCES destinations(id),
        CHECK (finished = 0 OR total_bytes IS NOT NULL)
    ) STRICT;
    CREATE INDEX recordings_newest_first ON recordings(created_at DESC, id DESC);
    CREATE TABLE upload_sessions (
        id INTEGER PRIMARY KEY,
        recording_id INTEGER NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
        destination_id INTEGER NOT NULL REFERENCES destinations(id),
        server_recording_id TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        object_key TEXT NOT NULL,
        part_size_bytes INTEGER NOT NULL CHECK (part_size_bytes > 0),
        max_parts INTEGER NOT NULL CHECK (max_parts > 0),
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'finish_sent', 'completed', 'aborted', 'expired')),
        last_error TEXT,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX one_live_session_per_recording ON upload_sessions(recording_id)
        WHERE state NOT IN ('aborted', 'expired');
    -- A row exists only after storage returned the part's ETag.
    CREATE TABLE parts (
        session_id INTEGER NOT NULL REFERENCES upload_sessions(id) ON DELETE CASCADE,
        part_number INTEGER NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
        byte_offset INTEGER NOT NULL CHECK (byte_offset >= 0),
        size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),
        md5 TEXT NOT NULL,
        etag TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (session_id, part_number)
    ) STRICT, WITHOUT ROWID;",
    ),
    // Why a recording is in its state (a `Problem` name, no CHECK so that a
    // newer Opptak may add names), the automatic retries of a failed
    // recording and the earliest time of the next one, and the teacher's
    // choice to keep a recording on this computer until asked to upload it.
    M::up(
        "ALTER TABLE recordings ADD COLUMN problem TEXT;
    ALTER TABLE recordings ADD COLUMN retry_attempts INTEGER NOT NULL DEFAULT 0 CHECK (retry_attempts >= 0);
    ALTER TABLE recordings ADD COLUMN next_retry_at INTEGER;
    ALTER TABLE recordings ADD COLUMN keep_local INTEGER NOT NULL DEFAULT 0 CHECK (keep_local IN (0, 1));",
    ),
    // A recording's length in seconds, kept when its local file is deleted:
    // the Library still says how long a lesson safe on the server is.
    M::up("ALTER TABLE recordings ADD COLUMN length_seconds REAL CHECK (length_seconds >= 0);"),
];

/// The migrations, in order.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn schema_refuses_a_second_live_session() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrations().to_latest(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO destinations (id, base_url, token, name) VALUES (1, 'http://x', 't', 'x');
             INSERT INTO recordings (id, path, name, content_type, recorder_type, is_video, created_at, state)
                 VALUES (1, '/a.wav', 'a', 'audio/wav', 'audio', 0, 0, 'stopped');",
        )
        .unwrap();
        let insert = "INSERT INTO upload_sessions (recording_id, destination_id, server_recording_id,
            upload_id, object_key, part_size_bytes, max_parts, expires_at, state, created_at)
            VALUES (1, 1, 'r', 'u', 'k', 5, 10, 0, ?1, 0)";
        conn.execute(insert, ["expired"]).unwrap();
        conn.execute(insert, ["open"]).unwrap();
        assert!(conn.execute(insert, ["open"]).is_err(), "two live sessions for one recording");
        assert!(conn.execute(insert, ["bogus"]).is_err(), "an unknown session state");
    }
}
