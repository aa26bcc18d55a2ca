//! [`MetaStore`] over the server's own SQLite file ([`Db`]).
//!
//! One process owns the file (the data folder's lock), so sessions are
//! serialised by in-process locks ([`SessionLocks`]) and "now" is this
//! process's clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opptak_api::{ContentType, Recording};
use rusqlite::OptionalExtension;
use tokio::sync::OwnedMutexGuard;

use super::{
    Completion, CountedTable, JobClaim, JobResult, MetaStore, NewUpload, Session, SessionAccess,
    SessionGuard, VerificationInput, recording_status, timestamp,
};
use crate::Result;
use crate::db::{Db, now_unix};

/// Serialises the requests on one upload session within this process.
/// Finish completes the upload in storage and then records it; a listparts
/// or abort between the two would find the session open and storage
/// without its upload.
#[derive(Debug)]
pub struct SessionLocks([Arc<tokio::sync::Mutex<()>>; 64]);

impl Default for SessionLocks {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Arc::default()))
    }
}

impl SessionLocks {
    fn slot(&self, recording_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(recording_id);
        self.0[hash as usize % self.0.len()].clone()
    }

    /// Waits until no other request holds `recording_id`'s session.
    pub async fn lock(&self, recording_id: &str) -> OwnedMutexGuard<()> {
        self.slot(recording_id).lock_owned().await
    }

    /// Takes `recording_id`'s session only if nobody holds it.
    pub fn try_lock(&self, recording_id: &str) -> Option<OwnedMutexGuard<()>> {
        self.slot(recording_id).try_lock_owned().ok()
    }
}

/// The SQLite metadata store.
#[derive(Debug, Clone)]
pub struct SqliteMeta {
    db: Db,
    sessions: Arc<SessionLocks>,
    lock_timeout: Duration,
}

impl SqliteMeta {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        Ok(Self::new(Db::open(path)?))
    }

    /// Wraps an open database.
    pub fn new(db: Db) -> Self {
        Self { db, sessions: Arc::default(), lock_timeout: super::DEFAULT_SESSION_LOCK_TIMEOUT }
    }

    /// Waits at most `timeout` for a session another request holds (instead
    /// of [`DEFAULT_SESSION_LOCK_TIMEOUT`](super::DEFAULT_SESSION_LOCK_TIMEOUT)).
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

const SESSION_COLUMNS: &str =
    "s.recording_id, s.upload_id, s.object_key, s.store_upload_id, s.part_size, s.state,
     s.finished_parts, s.object_size, r.status, s.expires_at";

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let expires_at: i64 = row.get(9)?;
    Ok(Session {
        recording_id: row.get(0)?,
        upload_id: row.get(1)?,
        object_key: row.get(2)?,
        store_upload_id: row.get(3)?,
        part_size: row.get::<_, i64>(4)? as u64,
        state: row.get(5)?,
        finished_parts: row.get(6)?,
        object_size: row.get::<_, Option<i64>>(7)?.map(|size| size as u64),
        recording_status: row.get(8)?,
        expires_at,
        past_expiry: expires_at <= now_unix(),
    })
}

async fn load_session(db: &Db, user_id: Option<i64>, recording_id: &str) -> Result<Option<Session>> {
    let recording_id = recording_id.to_owned();
    db.call(move |conn| {
        conn.query_row(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
                 WHERE s.recording_id = ?1 AND (?2 IS NULL OR r.user_id = ?2)"
            ),
            rusqlite::params![recording_id, user_id],
            session_from_row,
        )
        .optional()
    })
    .await
}

/// A session held by this process's [`SessionLocks`].
#[derive(Debug)]
struct SqliteGuard {
    db: Db,
    session: Session,
    _lock: OwnedMutexGuard<()>,
}

#[async_trait]
impl SessionGuard for SqliteGuard {
    fn session(&self) -> &Session {
        &self.session
    }

    async fn reload(&mut self) -> Result<()> {
        if let Some(session) = load_session(&self.db, None, &self.session.recording_id).await? {
            self.session = session;
        }
        Ok(())
    }

    async fn complete(self: Box<Self>, completion: Completion) -> Result<bool> {
        let (upload_id, recording_id) = (self.session.upload_id.clone(), self.session.recording_id.clone());
        let now = now_unix();
        self.db
            .write_durably(move |tx| {
                let changed = tx.execute(
                    "UPDATE upload_sessions SET state = 'completed', finished_parts = ?2, object_size = ?3, object_etag = ?4
                     WHERE upload_id = ?1 AND state = 'open'",
                    rusqlite::params![
                        upload_id,
                        completion.finished_parts,
                        completion.object_size as i64,
                        completion.object_etag
                    ],
                )?;
                if changed == 1 {
                    tx.execute(
                        "UPDATE recordings SET status = 'processing', name = ?2, recorder_type = ?3, used_in_file_uploader = ?4
                         WHERE id = ?1",
                        rusqlite::params![
                            recording_id,
                            completion.name,
                            completion.recorder_type,
                            completion.used_in_file_uploader
                        ],
                    )?;
                    tx.execute(
                        "INSERT INTO jobs (recording_id, state, run_after) VALUES (?1, 'queued', ?2)",
                        rusqlite::params![recording_id, now],
                    )?;
                }
                Ok(changed == 1)
            })
            .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let (upload_id, recording_id) = (self.session.upload_id.clone(), self.session.recording_id.clone());
        self.db
            .write_durably(move |tx| {
                tx.execute(
                    "UPDATE upload_sessions SET state = 'aborted' WHERE upload_id = ?1 AND state = 'open'",
                    [&upload_id],
                )?;
                tx.execute(
                    "UPDATE recordings SET status = 'aborted' WHERE id = ?1 AND status = 'uploading'",
                    [&recording_id],
                )?;
                Ok(())
            })
            .await
    }

    async fn expire(self: Box<Self>) -> Result<()> {
        let (upload_id, recording_id) = (self.session.upload_id.clone(), self.session.recording_id.clone());
        self.db
            .write_durably(move |tx| {
                tx.execute(
                    "UPDATE upload_sessions SET state = 'expired' WHERE upload_id = ?1 AND state = 'open'",
                    [&upload_id],
                )?;
                tx.execute(
                    "UPDATE recordings SET status = 'expired', error = ?2 WHERE id = ?1 AND status = 'uploading'",
                    rusqlite::params![recording_id, super::EXPIRED_REASON],
                )?;
                Ok(())
            })
            .await
    }
}

const RECORDING_COLUMNS: &str = "id, name, status, content_type, is_video, size_bytes, duration_seconds, created_at, ready_at, error, sha256, \
     (SELECT object_key FROM upload_sessions WHERE recording_id = recordings.id)";

/// Recordings are listed once finished; before that they are uploads.
const FINISHED: &str = "status IN ('processing', 'ready', 'failed')";

fn recording_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Recording, String)> {
    let content_type: String = row.get(3)?;
    let status: String = row.get(2)?;
    Ok((
        Recording {
            recording_id: row.get(0)?,
            recording_name: row.get(1)?,
            status: recording_status(&status),
            content_type: content_type.parse().unwrap_or(ContentType::Wav),
            is_video_recording: row.get(4)?,
            size_bytes: row.get::<_, Option<i64>>(5)?.map(|size| size as u64),
            duration_seconds: row.get(6)?,
            created_at: timestamp(row.get(7)?),
            ready_at: row.get::<_, Option<i64>>(8)?.map(timestamp),
            error: row.get(9)?,
            media_url: None,
            sha256: row.get(10)?,
        },
        row.get(11)?,
    ))
}

fn seconds(duration: Duration) -> i64 {
    duration.as_secs_f64().ceil() as i64
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn ping(&self) -> Result<()> {
        self.db.call(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))).await.map(drop)
    }

    async fn sync_users(&self, users: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.db
            .write_durably(move |tx| {
                tx.execute("UPDATE users SET token_sha256 = randomblob(32)", [])?;
                for (name, digest) in &users {
                    tx.execute(
                        "INSERT INTO users (name, token_sha256) VALUES (?1, ?2)
                         ON CONFLICT(name) DO UPDATE SET token_sha256 = excluded.token_sha256",
                        rusqlite::params![name, digest],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn user_by_token_digest(&self, digest: Vec<u8>) -> Result<Option<(i64, String, Vec<u8>)>> {
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT id, name, token_sha256 FROM users WHERE token_sha256 = ?1",
                    [digest],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
            })
            .await
    }

    async fn create_upload(&self, upload: NewUpload) -> Result<i64> {
        let now = now_unix();
        let expires_at = now + upload.ttl.as_secs() as i64;
        self.db
            .write_durably(move |tx| {
                tx.execute(
                    "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
                     used_in_file_uploader, expected_size, status, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'uploading', ?9)",
                    rusqlite::params![
                        upload.recording_id,
                        upload.user_id,
                        upload.name,
                        upload.recorder_type,
                        upload.content_type,
                        upload.is_video,
                        upload.used_in_file_uploader,
                        upload.expected_size.map(|size| size as i64),
                        now
                    ],
                )?;
                tx.execute(
                    "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size, state, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6)",
                    rusqlite::params![
                        upload.upload_id,
                        upload.recording_id,
                        upload.object_key,
                        upload.store_upload_id,
                        upload.part_size as i64,
                        expires_at
                    ],
                )?;
                Ok(expires_at)
            })
            .await
    }

    async fn lock_session(
        &self,
        user_id: i64,
        recording_id: &str,
        // One process: a plain mutex serves readers and writers alike.
        _access: SessionAccess,
    ) -> Result<Option<Box<dyn SessionGuard>>> {
        let lock = tokio::time::timeout(self.lock_timeout, self.sessions.lock(recording_id))
            .await
            .map_err(|_| crate::Error::SessionBusy)?;
        let Some(session) = load_session(&self.db, Some(user_id), recording_id).await? else {
            return Ok(None);
        };
        Ok(Some(Box::new(SqliteGuard { db: self.db.clone(), session, _lock: lock })))
    }

    async fn expired_sessions(&self) -> Result<Vec<String>> {
        let now = now_unix();
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT recording_id FROM upload_sessions WHERE state = 'open' AND expires_at <= ?1",
                )?;
                statement.query_map([now], |row| row.get(0))?.collect()
            })
            .await
    }

    async fn lock_expired_session(&self, recording_id: &str) -> Result<Option<Box<dyn SessionGuard>>> {
        let Some(lock) = self.sessions.try_lock(recording_id) else { return Ok(None) };
        let Some(session) = load_session(&self.db, None, recording_id).await? else { return Ok(None) };
        if session.state != "open" || !session.past_expiry {
            return Ok(None);
        }
        Ok(Some(Box::new(SqliteGuard { db: self.db.clone(), session, _lock: lock })))
    }

    async fn list_recordings(&self, user_id: i64) -> Result<Vec<Recording>> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare(&format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings WHERE user_id = ?1 AND {FINISHED}
                     ORDER BY created_at DESC, rowid DESC"
                ))?;
                statement
                    .query_map([user_id], |row| recording_from_row(row).map(|(recording, _)| recording))?
                    .collect()
            })
            .await
    }

    async fn recording(&self, user_id: i64, recording_id: &str) -> Result<Option<(Recording, String)>> {
        let recording_id = recording_id.to_owned();
        self.db
            .call(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ?1 AND user_id = ?2 AND {FINISHED}"
                    ),
                    rusqlite::params![recording_id, user_id],
                    recording_from_row,
                )
                .optional()
            })
            .await
    }

    async fn state_counts(&self) -> Result<Vec<(CountedTable, String, i64)>> {
        let rows: Vec<(String, String, i64)> = self
            .db
            .call(|conn| {
                let mut statement = conn.prepare(
                    "SELECT 'jobs', state, count(*) FROM jobs GROUP BY state
                     UNION ALL SELECT 'recordings', status, count(*) FROM recordings GROUP BY status
                     UNION ALL SELECT 'upload_sessions', state, count(*) FROM upload_sessions GROUP BY state",
                )?;
                statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(table, state, count)| {
                let table = match table.as_str() {
                    "jobs" => CountedTable::Jobs,
                    "recordings" => CountedTable::Recordings,
                    _ => CountedTable::UploadSessions,
                };
                (table, state, count)
            })
            .collect())
    }

    async fn claim_job(&self, lease: Duration, owner: &str) -> Result<Option<JobClaim>> {
        let now = now_unix();
        let owner = owner.to_owned();
        let lease_until = now + seconds(lease).max(1);
        self.db
            .write_durably(move |tx| {
                tx.query_row(
                    "UPDATE jobs SET state = 'running', lease_until = ?2, attempts = attempts + 1, owner = ?3
                     WHERE recording_id = (
                         SELECT recording_id FROM jobs
                         WHERE (state = 'queued' AND run_after <= ?1) OR (state = 'running' AND lease_until < ?1)
                         ORDER BY run_after LIMIT 1)
                     RETURNING recording_id, attempts, last_error, owner",
                    rusqlite::params![now, lease_until, owner],
                    |row| {
                        Ok(JobClaim {
                            recording_id: row.get(0)?,
                            attempts: row.get(1)?,
                            last_error: row.get(2)?,
                            owner: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        })
                    },
                )
                .optional()
            })
            .await
    }

    async fn renew_job(&self, claim: &JobClaim, lease: Duration) -> Result<bool> {
        let (id, attempts) = (claim.recording_id.clone(), claim.attempts);
        let lease_until = now_unix() + seconds(lease).max(1);
        let changed = self
            .db
            .call(move |conn| {
                conn.execute(
                    "UPDATE jobs SET lease_until = ?3
                     WHERE recording_id = ?1 AND attempts = ?2 AND state = 'running'",
                    rusqlite::params![id, attempts, lease_until],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn verification_input(&self, recording_id: &str) -> Result<VerificationInput> {
        let id = recording_id.to_owned();
        self.db
            .call(move |conn| {
                conn.query_row(
                    "SELECT s.object_key, r.content_type, s.object_size, s.finished_parts
                     FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
                     WHERE s.recording_id = ?1",
                    [id],
                    |row| {
                        Ok(VerificationInput {
                            object_key: row.get(0)?,
                            content_type: row.get(1)?,
                            object_size: row.get::<_, Option<i64>>(2)?.map(|size| size as u64),
                            finished_parts: row.get(3)?,
                        })
                    },
                )
            })
            .await
    }

    async fn settle_job(&self, claim: &JobClaim, result: JobResult) -> Result<bool> {
        let (id, attempts) = (claim.recording_id.clone(), claim.attempts);
        let now = now_unix();
        const FENCE: &str = "recording_id = ?1 AND attempts = ?2 AND state = 'running'";
        self.db
            .write_durably(move |tx| {
                let held = match &result {
                    JobResult::Ready { size, duration, sha256 } => {
                        let held = tx.execute(
                            &format!("UPDATE jobs SET state = 'done', lease_until = NULL WHERE {FENCE}"),
                            rusqlite::params![id, attempts],
                        )?;
                        if held == 1 {
                            tx.execute(
                                "UPDATE recordings SET status = 'ready', size_bytes = ?2, duration_seconds = ?3,
                                 sha256 = ?4, ready_at = ?5, error = NULL WHERE id = ?1",
                                rusqlite::params![id, *size as i64, duration, sha256, now],
                            )?;
                        }
                        held
                    }
                    JobResult::Failed(reason) => {
                        let held = tx.execute(
                            &format!(
                                "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = ?3 WHERE {FENCE}"
                            ),
                            rusqlite::params![id, attempts, reason],
                        )?;
                        if held == 1 {
                            tx.execute(
                                "UPDATE recordings SET status = 'failed', error = ?2 WHERE id = ?1",
                                rusqlite::params![id, reason],
                            )?;
                        }
                        held
                    }
                    JobResult::Retry { reason, delay } => tx.execute(
                        &format!(
                            "UPDATE jobs SET state = 'queued', lease_until = NULL, run_after = ?3, last_error = ?4
                             WHERE {FENCE}"
                        ),
                        rusqlite::params![id, attempts, now + seconds(*delay), reason],
                    )?,
                };
                Ok(held == 1)
            })
            .await
    }

    async fn requeue_interrupted(&self) -> Result<usize> {
        self.db
            .write_durably(|tx| {
                tx.execute("UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'running'", [])
            })
            .await
    }

    fn sqlite(&self) -> Option<&Db> {
        Some(&self.db)
    }
}
