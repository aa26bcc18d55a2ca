//! The metadata seam: users, recordings, upload sessions and the
//! verification job queue, behind one trait, [`MetaStore`].
//!
//! Two implementations keep the same promises, checked by one conformance
//! suite (`conformance.rs`): [`SqliteMeta`], the server's own SQLite file
//! (the default: the desktop app and a single `opptak serve`), and, with the
//! `postgres` feature, `PostgresMeta`, which lets several server instances
//! share one database.
//!
//! Invariants every implementation keeps:
//!
//! - One upload session is changed by one request at a time: a
//!   [`SessionGuard`] excludes every other guard of the same session
//!   ([`SessionAccess::Exclusive`]) or every exclusive one
//!   ([`SessionAccess::Shared`]) until it is dropped or settled. Storage
//!   calls happen while it is held, so a listparts or abort never sees a
//!   session "open" whose upload a finish already completed in storage.
//! - The sweeper never waits for a session someone holds: it skips it
//!   ([`MetaStore::lock_expired_session`]), and the holder decides.
//! - A job claim adds one to `attempts`; that number fences every renewal
//!   and result of the claim, so a holder whose lease lapsed changes nothing.
//! - A request waits for a held session at most the store's lock timeout
//!   ([`DEFAULT_SESSION_LOCK_TIMEOUT`] unless set), then fails with
//!   [`Error::SessionBusy`](crate::Error::SessionBusy) rather than queueing
//!   behind a stuck holder.
//! - Times ("now", expiries, leases) come from one clock per store: the
//!   process clock for SQLite, the database's clock for PostgreSQL, so
//!   instances with skewed clocks agree.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use opptak_api::Recording;

use crate::Result;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresMeta;
pub use sqlite::{SessionLocks, SqliteMeta};

/// A new recording and its upload session, as `start` creates them.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// The recording's id.
    pub recording_id: String,
    /// The owner's user id.
    pub user_id: i64,
    /// The recording's name.
    pub name: String,
    /// What recorded it (e.g. `desktop-audio`).
    pub recorder_type: String,
    /// The media type, as sent.
    pub content_type: String,
    /// Whether it is video.
    pub is_video: bool,
    /// Whether the file uploader sent it.
    pub used_in_file_uploader: bool,
    /// The size the client announced, if any.
    pub expected_size: Option<u64>,
    /// The upload session's id.
    pub upload_id: String,
    /// Where the object goes in the media store.
    pub object_key: String,
    /// The media store's multipart upload id.
    pub store_upload_id: String,
    /// The size of every part but the last.
    pub part_size: u64,
    /// How long the session stays open, from the store's "now".
    pub ttl: Duration,
}

/// An upload session and its recording's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The recording's id.
    pub recording_id: String,
    /// The upload session's id.
    pub upload_id: String,
    /// Where the object goes in the media store.
    pub object_key: String,
    /// The media store's multipart upload id.
    pub store_upload_id: String,
    /// The size of every part but the last.
    pub part_size: u64,
    /// `open`, `completed`, `aborted` or `expired`.
    pub state: String,
    /// JSON `[[partNumber, etag], …]` once finish was accepted.
    pub finished_parts: Option<String>,
    /// The completed object's size.
    pub object_size: Option<u64>,
    /// The recording's status.
    pub recording_status: String,
    /// Unix seconds after which an open session takes no more requests.
    pub expires_at: i64,
    /// Whether `expires_at` had passed, by the store's clock, when loaded.
    pub past_expiry: bool,
}

/// How a [`SessionGuard`] holds its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAccess {
    /// Reads (parts, listparts): excludes exclusive holders only.
    Shared,
    /// Changes (finish, abort, expiry): excludes every other holder.
    Exclusive,
}

/// What a successful finish records.
#[derive(Debug, Clone)]
pub struct Completion {
    /// JSON `[[partNumber, etag], …]`, sorted.
    pub finished_parts: String,
    /// The completed object's size.
    pub object_size: u64,
    /// The completed object's ETag.
    pub object_etag: Option<String>,
    /// The recording's final name.
    pub name: String,
    /// What recorded it.
    pub recorder_type: String,
    /// Whether the file uploader sent it.
    pub used_in_file_uploader: bool,
}

/// One upload session held against other requests on it (see the module's
/// invariants). Dropping it without settling releases the session and
/// changes nothing.
#[async_trait]
pub trait SessionGuard: Send + Debug {
    /// The session as loaded when it was taken (or last reloaded).
    fn session(&self) -> &Session;

    /// Reads the session again, still holding it.
    async fn reload(&mut self) -> Result<()>;

    /// Records a finish: the session `completed`, the recording
    /// `processing` and its verification job queued, in one durable
    /// transaction. False (and nothing changed) when the session was no
    /// longer open.
    async fn complete(self: Box<Self>, completion: Completion) -> Result<bool>;

    /// Marks an open session and its uploading recording `aborted`.
    async fn abort(self: Box<Self>) -> Result<()>;

    /// Marks an open session `expired`, and its recording too while it is
    /// still `uploading`.
    async fn expire(self: Box<Self>) -> Result<()>;
}

/// Which table a state count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountedTable {
    /// Verification jobs, by state.
    Jobs,
    /// Recordings, by status.
    Recordings,
    /// Upload sessions, by state.
    UploadSessions,
}

impl CountedTable {
    /// The metric name it is exported as.
    pub fn metric(self) -> &'static str {
        match self {
            Self::Jobs => "jobs",
            Self::Recordings => "recordings",
            Self::UploadSessions => "upload_sessions",
        }
    }
}

/// A verification job this worker holds; `attempts` is its fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobClaim {
    /// The recording the job verifies.
    pub recording_id: String,
    /// Claims so far, this one included.
    pub attempts: i64,
    /// The server instance that claimed it (its `--instance-id`), kept in
    /// the job's `owner` column so an operator sees who holds what.
    pub owner: String,
    /// What the previous claim ended with, if it said.
    pub last_error: Option<String>,
}

/// What a verification needs to know about a finished upload.
#[derive(Debug, Clone)]
pub struct VerificationInput {
    /// Where the object is.
    pub object_key: String,
    /// The media type the client named.
    pub content_type: String,
    /// The size the completed upload reported.
    pub object_size: Option<u64>,
    /// JSON `[[partNumber, etag], …]` as finish accepted them.
    pub finished_parts: Option<String>,
}

/// How a verification ended.
#[derive(Debug, Clone)]
pub enum JobResult {
    /// The media is good: the recording becomes `ready`.
    Ready {
        /// The object's size.
        size: u64,
        /// The media's duration in seconds.
        duration: f64,
        /// The object's SHA-256, hex.
        sha256: String,
    },
    /// The media is not what it claims: the recording fails with the reason.
    Failed(String),
    /// Try again after `delay` (storage trouble).
    Retry {
        /// Why this attempt did not finish.
        reason: String,
        /// How long to wait before the next claim.
        delay: Duration,
    },
}

/// Users, recordings, upload sessions and verification jobs.
#[async_trait]
pub trait MetaStore: Send + Sync + Debug {
    /// Answers when the database does.
    async fn ping(&self) -> Result<()>;

    /// Makes the users exactly `users` (name, SHA-256 of the token): new
    /// ones added, changed tokens replaced; users no longer listed keep
    /// their recordings but can no longer sign in.
    async fn sync_users(&self, users: Vec<(String, Vec<u8>)>) -> Result<()>;

    /// The user whose token digest is `digest`: (id, name, stored digest).
    async fn user_by_token_digest(&self, digest: Vec<u8>) -> Result<Option<(i64, String, Vec<u8>)>>;

    /// Creates a recording (`uploading`) and its open session, durably;
    /// returns the session's expiry (Unix seconds).
    async fn create_upload(&self, upload: NewUpload) -> Result<i64>;

    /// Takes `user_id`'s session for `recording_id`, waiting for other
    /// holders as `access` requires; `None` when there is no such session
    /// (or it is another user's).
    async fn lock_session(
        &self,
        user_id: i64,
        recording_id: &str,
        access: SessionAccess,
    ) -> Result<Option<Box<dyn SessionGuard>>>;

    /// The recording ids of open sessions past their expiry.
    async fn expired_sessions(&self) -> Result<Vec<String>>;

    /// Takes `recording_id`'s session exclusively if it is still open and
    /// past its expiry and nobody holds it; `None` otherwise, without waiting.
    async fn lock_expired_session(&self, recording_id: &str) -> Result<Option<Box<dyn SessionGuard>>>;

    /// `user_id`'s finished recordings (processing, ready, failed), newest
    /// first, without media URLs.
    async fn list_recordings(&self, user_id: i64) -> Result<Vec<Recording>>;

    /// One of `user_id`'s finished recordings and its object key.
    async fn recording(&self, user_id: i64, recording_id: &str) -> Result<Option<(Recording, String)>>;

    /// How many jobs, recordings and sessions are in each state.
    async fn state_counts(&self) -> Result<Vec<(CountedTable, String, i64)>>;

    /// Claims the most overdue job (queued and due, or running with a lapsed
    /// lease) for the instance `owner`, leasing it for `lease`.
    async fn claim_job(&self, lease: Duration, owner: &str) -> Result<Option<JobClaim>>;

    /// Extends `claim`'s lease; false when the job is no longer its.
    async fn renew_job(&self, claim: &JobClaim, lease: Duration) -> Result<bool>;

    /// What verifying `recording_id` needs.
    async fn verification_input(&self, recording_id: &str) -> Result<VerificationInput>;

    /// Writes `result` if `claim` still holds the job (durably); false, and
    /// nothing changed, for a stale claim.
    async fn settle_job(&self, claim: &JobClaim, result: JobResult) -> Result<bool>;

    /// At start: queues again the jobs a previous process of this server
    /// left running, when this store knows no other process can hold them
    /// (SQLite, behind the data folder's lock). A shared store leaves them
    /// to their leases and returns 0.
    async fn requeue_interrupted(&self) -> Result<usize>;

    /// The connection pool's size and idle connections, when the store has
    /// a pool (PostgreSQL).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// The SQLite database behind this store, if that is what it is (tests
    /// and tools that read the file).
    fn sqlite(&self) -> Option<&crate::db::Db> {
        None
    }
}

/// A connection pool's state, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (in use and idle).
    pub size: u32,
    /// Connections open and not in use.
    pub idle: u32,
}

/// How long a request waits for another request's hold on the same upload
/// session before it gives up with [`Error::SessionBusy`](crate::Error::SessionBusy)
/// (answered 503 with Retry-After; the client tries again). Longer than any
/// finish takes, so it only fires when something is stuck.
pub const DEFAULT_SESSION_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses the JSON `[[partNumber, etag], …]` a finish recorded.
pub fn parse_finished_parts(json: Option<&str>) -> Vec<(u32, String)> {
    json.and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
}

/// Unix seconds as an API timestamp ("now" if out of range).
pub(crate) fn timestamp(unix: i64) -> opptak_api::Timestamp {
    opptak_api::Timestamp::from_unix_timestamp(unix).unwrap_or_else(opptak_api::Timestamp::now)
}

/// A recording status as stored, as the API's enum.
pub(crate) fn recording_status(status: &str) -> opptak_api::RecordingStatus {
    status.parse().unwrap_or(opptak_api::RecordingStatus::Processing)
}

/// The reason an expired recording carries.
pub(crate) const EXPIRED_REASON: &str = "The upload was not finished before it expired; start it again.";
