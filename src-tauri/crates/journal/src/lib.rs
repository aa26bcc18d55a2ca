//! Opptak's client journal: one SQLite file in the data directory
//! (`journal.sqlite3`) that is the single source of truth for what exists
//! locally and what the server already has.
//!
//! It holds four tables:
//!
//! - **recordings** ([`LocalRecording`]): the file, its [`RecordingState`],
//!   how many of its bytes are fsynced (`durable_bytes`), whether it is
//!   finished, its sha256 and the server's;
//! - **destinations** ([`Destination`]): where recordings go ("This
//!   computer", "School server");
//! - **upload sessions** ([`UploadSession`]): the server's `start` answer
//!   (recording id, upload id, object key, part size, expiry) and how far
//!   the session got;
//! - **parts** ([`PartRecord`]): one row per part that storage accepted.
//!
//! Every change is one SQLite transaction, so any process can carry on
//! after a crash. [`lock_recording`] gives one process at a time the right
//! to upload a recording, with an OS file lock that dies with the process.
//!
//! The API is synchronous: the async upload engine calls it from
//! `spawn_blocking`. [`Journal`] is `Clone + Send + Sync`; clones share one
//! connection, and two processes may open the same file at once (WAL and a
//! busy timeout).
//!
//! # Example
//!
//! ```
//! use opptak_journal::{Journal, NewRecording, NewSession, PartRecord, RecordingState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data_dir = tempfile::tempdir()?;
//! let journal = Journal::open_in(data_dir.path())?;
//!
//! // Capture starts a file and reports what it has fsynced.
//! let recording = journal.add_recording(NewRecording::growing(
//!     data_dir.path().join("lesson.wav"),
//!     "Lesson 3",
//!     "audio/wav",
//!     "audio",
//!     false,
//! ))?;
//! journal.set_durable_bytes(recording.id, 12 * 1024 * 1024)?;
//!
//! // The uploader takes the recording, starts a session and sends a part.
//! let _lock = journal.lock_recording(recording.id)?;
//! let destination = journal.upsert_destination("http://127.0.0.1:8080", "secret", "This computer")?;
//! let session = journal.open_session(
//!     recording.id,
//!     NewSession {
//!         destination_id: destination,
//!         server_recording_id: "r-1".into(),
//!         upload_id: "u-1".into(),
//!         object_key: "media/r-1".into(),
//!         part_size_bytes: 5 * 1024 * 1024,
//!         max_parts: 10_000,
//!         expires_at: 1_900_000_000,
//!     },
//! )?;
//! // Only once storage answered with the part's ETag (a WAV file sends part 1,
//! // whose header is patched on Stop, last):
//! let md5 = "0123456789abcdef0123456789abcdef";
//! journal.record_part_sent(
//!     session.id,
//!     PartRecord { number: 2, offset: 5 * 1024 * 1024, size: 5 * 1024 * 1024, md5_hex: md5.into(), etag: format!("\"{md5}\"") },
//! )?;
//! assert_eq!(journal.sent_bytes(session.id)?, 5 * 1024 * 1024);
//! assert_eq!(journal.recording(recording.id)?.unwrap().state, RecordingState::Recording);
//! assert_eq!(journal.status_line(recording.id)?, "recording");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod destination;
mod journal;
mod lock;
mod problem;
mod recording;
mod schema;
mod session;
mod status;
#[cfg(test)]
mod test_support;

use std::path::PathBuf;

pub use destination::Destination;
pub use journal::{JOURNAL_FILE, Journal};
pub use lock::{LOCKS_DIR, RecordingLock, lock_recording};
pub use problem::Problem;
pub use recording::{LocalRecording, NewRecording, RecordingState};
pub use schema::migrations;
pub use session::{NewSession, PartRecord, SessionState, UploadSession};
pub use status::status_line;

/// Everything the journal can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal file cannot be opened, created or migrated.
    #[error(
        "cannot open the upload journal at {path}: {reason}. Check that the data folder is writable and has free space, or choose another data folder."
    )]
    Open {
        /// The journal file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// SQLite failed while reading or writing.
    #[error("the upload journal failed: {0}. If this repeats, check free disk space and restart Opptak.")]
    Database(String),
    /// No recording has this id.
    #[error("recording {0} is not in the upload journal; refresh the list of recordings.")]
    UnknownRecording(i64),
    /// No upload session has this id.
    #[error("upload session {0} is not in the upload journal; start the upload again.")]
    UnknownSession(i64),
    /// No destination has this id.
    #[error("destination {0} is not in the upload journal; add the destination again.")]
    UnknownDestination(i64),
    /// Another recording already uses this file.
    #[error("{path} is already journaled as recording {recording_id}; record to a new file name.")]
    AlreadyJournaled {
        /// The file.
        path: PathBuf,
        /// The recording that has it.
        recording_id: i64,
    },
    /// The path cannot be stored as text.
    #[error(
        "the path {0} is not valid Unicode, so the journal cannot store it; choose a data folder whose path is plain text."
    )]
    NonUnicodePath(PathBuf),
    /// A caller reported fewer durable bytes than it reported before.
    #[error(
        "recording {recording_id} cannot go back to {reported} durable bytes: {journaled} were already reported as fsynced. This is a bug in the recorder; the journal keeps {journaled}."
    )]
    DurableBytesBackwards {
        /// The recording.
        recording_id: i64,
        /// What the journal has.
        journaled: u64,
        /// What the caller reported.
        reported: u64,
    },
    /// A recording state change that the state machine does not allow.
    #[error("recording {recording_id} cannot go from {from} to {to}; {hint}")]
    InvalidTransition {
        /// The recording.
        recording_id: i64,
        /// Its current state.
        from: RecordingState,
        /// The state asked for.
        to: RecordingState,
        /// What to do instead.
        hint: &'static str,
    },
    /// An upload session state change that is not allowed.
    #[error("upload session {session_id} cannot go from {from} to {to}; {hint}")]
    InvalidSessionTransition {
        /// The session.
        session_id: i64,
        /// Its current state.
        from: SessionState,
        /// The state asked for.
        to: SessionState,
        /// What to do instead.
        hint: &'static str,
    },
    /// An operation that the recording's state or contents do not allow.
    #[error("recording {recording_id} is {state}, so the journal cannot {action}; {hint}")]
    WrongState {
        /// The recording.
        recording_id: i64,
        /// Its current state.
        state: RecordingState,
        /// What was asked.
        action: &'static str,
        /// Why not, and what to do instead.
        hint: &'static str,
    },
    /// A part was reported for a session that no longer takes parts.
    #[error(
        "upload session {session_id} is {state}, so part {number} cannot be recorded in it; resume the upload, which opens a new session."
    )]
    SessionNotOpen {
        /// The session.
        session_id: i64,
        /// Its state.
        state: SessionState,
        /// The part.
        number: u32,
    },
    /// A part that does not fit the session or the file.
    #[error("part {number} of upload session {session_id} cannot be recorded: {reason}")]
    InvalidPart {
        /// The session.
        session_id: i64,
        /// The part.
        number: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// Storage answered with an ETag that is not the MD5 of the bytes sent.
    #[error(
        "storage answered part {number} of upload session {session_id} with ETag {etag}, not the MD5 {md5_hex} of the bytes sent; the part was not journaled and must be sent again."
    )]
    EtagMismatch {
        /// The session.
        session_id: i64,
        /// The part.
        number: u32,
        /// What storage answered.
        etag: String,
        /// The MD5 of the local bytes.
        md5_hex: String,
    },
    /// The parts sent so far do not cover the finished file exactly.
    #[error("upload session {session_id} cannot be finished yet: {reason}; send the missing parts first.")]
    Incomplete {
        /// The session.
        session_id: i64,
        /// What is missing.
        reason: String,
    },
    /// The server's sha256 differs from the local file's.
    #[error(
        "the server's copy of recording {recording_id} has sha256 {server}, but the local file has {local}; the local file is kept. Upload the recording again."
    )]
    ChecksumMismatch {
        /// The recording.
        recording_id: i64,
        /// The local sha256.
        local: String,
        /// The server's sha256.
        server: String,
    },
    /// An argument that can never be valid (a bug in the caller).
    #[error("the upload journal refused a request: {0}")]
    Invalid(String),
    /// Another process holds the recording's upload lock.
    #[error(
        "recording {recording_id} is being uploaded by another Opptak process; let it finish, or close the other Opptak window or command and try again."
    )]
    Busy {
        /// The recording.
        recording_id: i64,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot use the lock file {path}: {source}. Check that the data folder is writable.")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Self::Database(err.to_string())
    }
}

/// Seconds since the Unix epoch, as stored in the journal.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}
