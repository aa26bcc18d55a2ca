//! [`MetaStore`] over PostgreSQL, so several `opptak serve` instances can
//! share one database.
//!
//! - A session is held by its row lock inside an open transaction:
//!   `SELECT … FOR NO KEY UPDATE` for finish, abort and expiry, `FOR SHARE`
//!   for parts and listparts. A lock not granted within
//!   the store's lock timeout ([`SESSION_LOCK_TIMEOUT`] unless
//!   [`PostgresMeta::with_lock_timeout`] set another) is
//!   [`Error::SessionBusy`], which the handlers answer with 503 and Retry-After. The sweep adds `SKIP LOCKED`, so it never waits.
//! - Jobs are claimed with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
//!   on any instance never take the same job.
//! - Every "now" is the database's clock (`now()`), never an instance's.
//! - Migrations (`migrations/*.sql`, embedded) run through sqlx's
//!   `Migrator`, which holds a PostgreSQL advisory lock while it migrates,
//!   so instances starting together do not race. (sqlx's `migrate!` macro
//!   builds the same `Migrator`; it needs sqlx's `macros` feature, which
//!   this crate does not take.)

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use opptak_api::{ContentType, Recording};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, SqlSafeStr, Transaction};

use super::{
    Completion, CountedTable, JobClaim, JobResult, MetaStore, NewUpload, Session, SessionAccess,
    SessionGuard, VerificationInput, recording_status, timestamp,
};
use crate::{Error, Result};

/// How long a request waits for another request's hold on the same
/// session before it answers 503 (the client retries), by default.
pub const SESSION_LOCK_TIMEOUT: Duration = super::DEFAULT_SESSION_LOCK_TIMEOUT;
/// Connections per instance: each request holding a session keeps one.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The database's clock, in the Unix seconds the tables keep.
const NOW: &str = "CAST(floor(extract(epoch FROM now())) AS BIGINT)";

/// The PostgreSQL metadata store: a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresMeta {
    pool: PgPool,
    lock_timeout: Duration,
}

fn migrator() -> Migrator {
    let initial = Migration::new(
        1,
        Cow::Borrowed("initial"),
        MigrationType::Simple,
        include_str!("../../migrations/0001_initial.sql").into_sql_str(),
        false,
    );
    let job_owner = Migration::new(
        2,
        Cow::Borrowed("job owner"),
        MigrationType::Simple,
        include_str!("../../migrations/0002_job_owner.sql").into_sql_str(),
        false,
    );
    Migrator { migrations: Cow::Owned(vec![initial, job_owner]), ..Migrator::DEFAULT }
}

fn db_err(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some("55P03")
    {
        return Error::SessionBusy;
    }
    Error::Database(err.to_string())
}

fn sql(text: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(text)
}

impl PostgresMeta {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|err| {
                Error::Database(format!(
                    "cannot reach the PostgreSQL database: {err}. Check the database address and that the database server runs."
                ))
            })?;
        migrator()
            .run(&pool)
            .await
            .map_err(|err| Error::Database(format!("cannot migrate the database: {err}")))?;
        Ok(Self { pool, lock_timeout: SESSION_LOCK_TIMEOUT })
    }

    /// Waits at most `timeout` for a session another request holds (instead
    /// of [`SESSION_LOCK_TIMEOUT`]).
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(sql(format!("SET LOCAL lock_timeout = '{}ms'", self.lock_timeout.as_millis().max(1))))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Ok(tx)
    }
}

fn session_query(filter: &str, lock: &str) -> String {
    format!(
        "SELECT s.recording_id, s.upload_id, s.object_key, s.store_upload_id, s.part_size, s.state,
                s.finished_parts, s.object_size, r.status, s.expires_at, s.expires_at <= {NOW}
         FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
         WHERE {filter} {lock}"
    )
}

fn session_from_row(row: &PgRow) -> sqlx::Result<Session> {
    Ok(Session {
        recording_id: row.try_get(0)?,
        upload_id: row.try_get(1)?,
        object_key: row.try_get(2)?,
        store_upload_id: row.try_get(3)?,
        part_size: row.try_get::<i64, _>(4)? as u64,
        state: row.try_get(5)?,
        finished_parts: row.try_get(6)?,
        object_size: row.try_get::<Option<i64>, _>(7)?.map(|size| size as u64),
        recording_status: row.try_get(8)?,
        expires_at: row.try_get(9)?,
        past_expiry: row.try_get(10)?,
    })
}

/// A session held by its row lock in `tx`.
struct PgGuard {
    tx: Transaction<'static, Postgres>,
    session: Session,
}

impl std::fmt::Debug for PgGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGuard").field("session", &self.session).finish_non_exhaustive()
    }
}

#[async_trait]
impl SessionGuard for PgGuard {
    fn session(&self) -> &Session {
        &self.session
    }

    async fn reload(&mut self) -> Result<()> {
        let row = sqlx::query(sql(session_query("s.recording_id = $1", "")))
            .bind(&self.session.recording_id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db_err)?;
        if let Some(row) = row {
            self.session = session_from_row(&row).map_err(db_err)?;
        }
        Ok(())
    }

    async fn complete(self: Box<Self>, completion: Completion) -> Result<bool> {
        let Self { mut tx, session } = *self;
        let changed = sqlx::query(
            "UPDATE upload_sessions SET state = 'completed', finished_parts = $2, object_size = $3, object_etag = $4
             WHERE upload_id = $1 AND state = 'open'",
        )
        .bind(&session.upload_id)
        .bind(&completion.finished_parts)
        .bind(completion.object_size as i64)
        .bind(&completion.object_etag)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if changed == 1 {
            sqlx::query(
                "UPDATE recordings SET status = 'processing', name = $2, recorder_type = $3, used_in_file_uploader = $4
                 WHERE id = $1",
            )
            .bind(&session.recording_id)
            .bind(&completion.name)
            .bind(&completion.recorder_type)
            .bind(completion.used_in_file_uploader)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(sql(format!(
                "INSERT INTO jobs (recording_id, state, run_after) VALUES ($1, 'queued', {NOW})"
            )))
            .bind(&session.recording_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(changed == 1)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let Self { mut tx, session } = *self;
        sqlx::query("UPDATE upload_sessions SET state = 'aborted' WHERE upload_id = $1 AND state = 'open'")
            .bind(&session.upload_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("UPDATE recordings SET status = 'aborted' WHERE id = $1 AND status = 'uploading'")
            .bind(&session.recording_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn expire(self: Box<Self>) -> Result<()> {
        let Self { mut tx, session } = *self;
        sqlx::query("UPDATE upload_sessions SET state = 'expired' WHERE upload_id = $1 AND state = 'open'")
            .bind(&session.upload_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE recordings SET status = 'expired', error = $2 WHERE id = $1 AND status = 'uploading'",
        )
        .bind(&session.recording_id)
        .bind(super::EXPIRED_REASON)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

const RECORDING_COLUMNS: &str = "id, name, status, content_type, is_video, size_bytes, duration_seconds, created_at, ready_at, error, sha256, \
     (SELECT object_key FROM upload_sessions WHERE recording_id = recordings.id)";

/// Recordings are listed once finished; before that they are uploads.
const FINISHED: &str = "status IN ('processing', 'ready', 'failed')";

fn recording_from_row(row: &PgRow) -> sqlx::Result<(Recording, String)> {
    let content_type: String = row.try_get(3)?;
    let status: String = row.try_get(2)?;
    Ok((
        Recording {
            recording_id: row.try_get(0)?,
            recording_name: row.try_get(1)?,
            status: recording_status(&status),
            content_type: content_type.parse().unwrap_or(ContentType::Wav),
            is_video_recording: row.try_get(4)?,
            size_bytes: row.try_get::<Option<i64>, _>(5)?.map(|size| size as u64),
            duration_seconds: row.try_get(6)?,
            created_at: timestamp(row.try_get(7)?),
            ready_at: row.try_get::<Option<i64>, _>(8)?.map(timestamp),
            error: row.try_get(9)?,
            media_url: None,
            sha256: row.try_get(10)?,
        },
        row.try_get(11)?,
    ))
}

fn seconds(duration: Duration) -> i64 {
    duration.as_secs_f64().ceil() as i64
}

fn claim_from_row(row: &PgRow) -> sqlx::Result<JobClaim> {
    Ok(JobClaim {
        recording_id: row.try_get(0)?,
        attempts: row.try_get(1)?,
        last_error: row.try_get(2)?,
        owner: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
    })
}

#[async_trait]
impl MetaStore for PostgresMeta {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(db_err)
    }

    async fn sync_users(&self, users: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Unguessable and unique: a digest of randomness nobody holds the input of.
        sqlx::query(
            "UPDATE users SET token_sha256 = sha256(convert_to(random()::text || clock_timestamp()::text || id::text, 'UTF8'))",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for (name, digest) in &users {
            sqlx::query(
                "INSERT INTO users (name, token_sha256) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256",
            )
            .bind(name)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn user_by_token_digest(&self, digest: Vec<u8>) -> Result<Option<(i64, String, Vec<u8>)>> {
        let row = sqlx::query("SELECT id, name, token_sha256 FROM users WHERE token_sha256 = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).transpose().map_err(db_err)
    }

    async fn create_upload(&self, upload: NewUpload) -> Result<i64> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let created_at: i64 = sqlx::query(sql(format!(
            "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
             used_in_file_uploader, expected_size, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'uploading', {NOW}) RETURNING created_at"
        )))
        .bind(&upload.recording_id)
        .bind(upload.user_id)
        .bind(&upload.name)
        .bind(&upload.recorder_type)
        .bind(&upload.content_type)
        .bind(upload.is_video)
        .bind(upload.used_in_file_uploader)
        .bind(upload.expected_size.map(|size| size as i64))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)?;
        let expires_at = created_at + upload.ttl.as_secs() as i64;
        sqlx::query(
            "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size, state, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'open', $6)",
        )
        .bind(&upload.upload_id)
        .bind(&upload.recording_id)
        .bind(&upload.object_key)
        .bind(&upload.store_upload_id)
        .bind(upload.part_size as i64)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(expires_at)
    }

    async fn lock_session(
        &self,
        user_id: i64,
        recording_id: &str,
        access: SessionAccess,
    ) -> Result<Option<Box<dyn SessionGuard>>> {
        let lock = match access {
            SessionAccess::Shared => "FOR SHARE OF s",
            SessionAccess::Exclusive => "FOR NO KEY UPDATE OF s",
        };
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql(session_query("s.recording_id = $1 AND r.user_id = $2", lock)))
            .bind(recording_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let session = session_from_row(&row).map_err(db_err)?;
        Ok(Some(Box::new(PgGuard { tx, session })))
    }

    async fn expired_sessions(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(sql(format!(
            "SELECT recording_id FROM upload_sessions WHERE state = 'open' AND expires_at <= {NOW}"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| row.try_get(0)).collect::<sqlx::Result<_>>().map_err(db_err)
    }

    async fn lock_expired_session(&self, recording_id: &str) -> Result<Option<Box<dyn SessionGuard>>> {
        let mut tx = self.begin().await?;
        let filter = format!("s.recording_id = $1 AND s.state = 'open' AND s.expires_at <= {NOW}");
        let row = sqlx::query(sql(session_query(&filter, "FOR NO KEY UPDATE OF s SKIP LOCKED")))
            .bind(recording_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let session = session_from_row(&row).map_err(db_err)?;
        Ok(Some(Box::new(PgGuard { tx, session })))
    }

    async fn list_recordings(&self, user_id: i64) -> Result<Vec<Recording>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE user_id = $1 AND {FINISHED}
             ORDER BY created_at DESC, seq DESC"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| recording_from_row(row).map(|(recording, _)| recording))
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    async fn recording(&self, user_id: i64, recording_id: &str) -> Result<Option<(Recording, String)>> {
        let row = sqlx::query(sql(format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = $1 AND user_id = $2 AND {FINISHED}"
        )))
        .bind(recording_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(recording_from_row).transpose().map_err(db_err)
    }

    async fn state_counts(&self) -> Result<Vec<(CountedTable, String, i64)>> {
        let rows = sqlx::query(
            "SELECT 'jobs', state, count(*) FROM jobs GROUP BY state
             UNION ALL SELECT 'recordings', status, count(*) FROM recordings GROUP BY status
             UNION ALL SELECT 'upload_sessions', state, count(*) FROM upload_sessions GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let table: String = row.try_get(0)?;
                let table = match table.as_str() {
                    "jobs" => CountedTable::Jobs,
                    "recordings" => CountedTable::Recordings,
                    _ => CountedTable::UploadSessions,
                };
                Ok((table, row.try_get(1)?, row.try_get(2)?))
            })
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    async fn claim_job(&self, lease: Duration, owner: &str) -> Result<Option<JobClaim>> {
        // SKIP LOCKED: a job another claimer is taking right now is not
        // waited for; the next one due is taken instead.
        let row = sqlx::query(sql(format!(
            "UPDATE jobs SET state = 'running', lease_until = {NOW} + $1, attempts = attempts + 1, owner = $2
             WHERE recording_id = (
                 SELECT recording_id FROM jobs
                 WHERE (state = 'queued' AND run_after <= {NOW}) OR (state = 'running' AND lease_until < {NOW})
                 ORDER BY run_after LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING recording_id, attempts, last_error, owner"
        )))
        .bind(seconds(lease).max(1))
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(claim_from_row).transpose().map_err(db_err)
    }

    async fn renew_job(&self, claim: &JobClaim, lease: Duration) -> Result<bool> {
        let changed = sqlx::query(sql(format!(
            "UPDATE jobs SET lease_until = {NOW} + $3
             WHERE recording_id = $1 AND attempts = $2 AND state = 'running'"
        )))
        .bind(&claim.recording_id)
        .bind(claim.attempts)
        .bind(seconds(lease).max(1))
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn verification_input(&self, recording_id: &str) -> Result<VerificationInput> {
        let row = sqlx::query(
            "SELECT s.object_key, r.content_type, s.object_size, s.finished_parts
             FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
             WHERE s.recording_id = $1",
        )
        .bind(recording_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        (|| {
            Ok(VerificationInput {
                object_key: row.try_get(0)?,
                content_type: row.try_get(1)?,
                object_size: row.try_get::<Option<i64>, _>(2)?.map(|size| size as u64),
                finished_parts: row.try_get(3)?,
            })
        })()
        .map_err(db_err)
    }

    async fn settle_job(&self, claim: &JobClaim, result: JobResult) -> Result<bool> {
        const FENCE: &str = "recording_id = $1 AND attempts = $2 AND state = 'running'";
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let held = match &result {
            JobResult::Ready { size, duration, sha256 } => {
                let held = sqlx::query(sql(format!(
                    "UPDATE jobs SET state = 'done', lease_until = NULL WHERE {FENCE}"
                )))
                .bind(&claim.recording_id)
                .bind(claim.attempts)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                if held == 1 {
                    sqlx::query(sql(format!(
                        "UPDATE recordings SET status = 'ready', size_bytes = $2, duration_seconds = $3,
                         sha256 = $4, ready_at = {NOW}, error = NULL WHERE id = $1"
                    )))
                    .bind(&claim.recording_id)
                    .bind(*size as i64)
                    .bind(*duration)
                    .bind(sha256)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
                held
            }
            JobResult::Failed(reason) => {
                let held = sqlx::query(sql(format!(
                    "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = $3 WHERE {FENCE}"
                )))
                .bind(&claim.recording_id)
                .bind(claim.attempts)
                .bind(reason)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
                if held == 1 {
                    sqlx::query("UPDATE recordings SET status = 'failed', error = $2 WHERE id = $1")
                        .bind(&claim.recording_id)
                        .bind(reason)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
                held
            }
            JobResult::Retry { reason, delay } => sqlx::query(sql(format!(
                "UPDATE jobs SET state = 'queued', lease_until = NULL, run_after = {NOW} + $3, last_error = $4
                 WHERE {FENCE}"
            )))
            .bind(&claim.recording_id)
            .bind(claim.attempts)
            .bind(seconds(*delay))
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected(),
        };
        tx.commit().await.map_err(db_err)?;
        Ok(held == 1)
    }

    fn pool_stats(&self) -> Option<super::PoolStats> {
        Some(super::PoolStats { size: self.pool.size(), idle: self.pool.num_idle() as u32 })
    }

    async fn requeue_interrupted(&self) -> Result<usize> {
        // Other instances may be running these jobs right now; a lapsed
        // lease is what hands a dead instance's job to another.
        Ok(0)
    }
}

/// The advisory lock key every instance on one database takes: shared by
/// instances whose media is in a shared store (S3), exclusive by one whose
/// media is in its own folder ("opptak" in ASCII).
const INSTANCES_LOCK: i64 = 0x6f70_7074_616b;

/// This instance's membership of the database, held by a dedicated
/// connection's session-level advisory lock. PostgreSQL drops the lock when
/// the connection ends, however the process ends (a killed process's socket
/// is closed by its kernel).
pub struct InstanceLock {
    _connection: sqlx::PgConnection,
}

impl std::fmt::Debug for InstanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLock").finish_non_exhaustive()
    }
}

impl PostgresMeta {
    /// Joins the instances serving this database. `alone` (media in this
    /// instance's own folder, which other instances cannot read) takes the
    /// lock exclusively and fails while any other instance runs; otherwise
    /// it is shared, and fails only while an instance that must be alone runs.
    pub async fn join_instances(&self, alone: bool) -> Result<InstanceLock> {
        let mut connection = self.pool.acquire().await.map_err(db_err)?.detach();
        let query =
            if alone { "SELECT pg_try_advisory_lock($1)" } else { "SELECT pg_try_advisory_lock_shared($1)" };
        let joined: bool = sqlx::query(query)
            .bind(INSTANCES_LOCK)
            .fetch_one(&mut connection)
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)?;
        if joined {
            return Ok(InstanceLock { _connection: connection });
        }
        Err(Error::DatabaseShared(if alone {
            "Another Opptak server already uses this database. With media kept in a local folder only one server may: \
             stop the other server, or keep media in S3 (--store s3) on every server."
                .into()
        } else {
            "An Opptak server that keeps media in a local folder already uses this database, and it must be the only one. \
             Stop it, or move it to S3 storage (--store s3), then start this server again."
                .into()
        }))
    }
}
