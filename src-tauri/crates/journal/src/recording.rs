//! Recordings: the local files and how far each one got.
//!
//! Invariants:
//! - `durable_bytes` never exceeds what the recorder reported as fsynced,
//!   and only grows — except in [`Journal::mark_finished`], when crash
//!   repair cut the file shorter (fMP4 is cut at the last whole fragment).
//! - Once `finished`, `total_bytes` is set, `durable_bytes == total_bytes`,
//!   and neither changes again.
//! - The state moves one way (see [`RecordingState::can_become`]); `ready`
//!   is final and is reached only through [`Journal::mark_ready`], which
//!   requires the server's sha256 to equal the local one. So a recording
//!   may have its local file deleted only when
//!   [`LocalRecording::may_delete_local`] says so.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::session::{LIVE_SESSION, SessionState};
use crate::{Error, Journal, Problem, Result, now_unix};

/// Where a recording is in its life; serialised lowercase.
///
/// The happy path is `recording → stopped → uploading → finishing →
/// processing → ready`; a crash while recording goes `recording →
/// recovered`, which then uploads like `stopped`. `waiting` (no network)
/// sits beside uploading, finishing and processing; any state but `ready`
/// may become `failed`, and a retry takes `failed` back to `stopped`,
/// `uploading` or `waiting`. [`RecordingState::can_become`] is the exact table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Capture is writing the file (parts may already be uploading).
    Recording,
    /// Capture stopped normally; the file is finished.
    Stopped,
    /// The app died while recording; the file is being or was repaired.
    Recovered,
    /// Parts are being sent.
    Uploading,
    /// The destination is unreachable; the uploader retries.
    Waiting,
    /// Every part is sent; `finish` is being called.
    Finishing,
    /// The server accepted `finish` and is verifying the recording.
    Processing,
    /// The server has the recording and its sha256 equals the local file's.
    Ready,
    /// Something failed that retrying will not fix by itself; `error` says what.
    Failed,
}

impl RecordingState {
    /// Every state, in the order of the happy path.
    pub const ALL: [Self; 9] = [
        Self::Recording,
        Self::Stopped,
        Self::Recovered,
        Self::Uploading,
        Self::Waiting,
        Self::Finishing,
        Self::Processing,
        Self::Ready,
        Self::Failed,
    ];

    /// The lowercase name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Stopped => "stopped",
            Self::Recovered => "recovered",
            Self::Uploading => "uploading",
            Self::Waiting => "waiting",
            Self::Finishing => "finishing",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// Whether [`Journal::set_state`] may move a recording from `self` to
    /// `next`. Staying in the same state is allowed (it updates the error),
    /// except that `ready` is final. No state goes back to `recording`, and
    /// `ready` is reached only through [`Journal::mark_ready`].
    pub fn can_become(self, next: Self) -> bool {
        use RecordingState::*;
        match (self, next) {
            (Ready, _) | (_, Recording | Ready) => false,
            (from, to) if from == to => true,
            (_, Failed) => true,
            (Recording, to) => matches!(to, Stopped | Recovered),
            (Stopped | Recovered, to) => matches!(to, Uploading | Waiting | Finishing),
            (Uploading, to) => matches!(to, Waiting | Finishing),
            (Waiting, to) => matches!(to, Uploading | Finishing | Processing),
            (Finishing, to) => matches!(to, Uploading | Waiting | Processing),
            (Processing, to) => matches!(to, Uploading | Waiting),
            (Failed, to) => matches!(to, Stopped | Uploading | Waiting),
        }
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordingState {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| Error::Invalid(format!("{name:?} is not a recording state")))
    }
}

impl ToSql for RecordingState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for RecordingState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|err: Error| FromSqlError::Other(err.into()))
    }
}

/// What capture knows when it creates a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecording {
    /// The media file (stored as text; must be valid Unicode).
    pub path: PathBuf,
    /// The teacher-facing name.
    pub name: String,
    /// The MIME type, e.g. `audio/wav` or `video/mp4`.
    pub content_type: String,
    /// The recorder, e.g. `audio`, `screen`, `camera`.
    pub recorder_type: String,
    /// Whether the recording has video.
    pub is_video: bool,
    /// Whether the file is already complete (an import); it then starts
    /// `stopped` with every byte durable, else `recording` with none.
    pub finished: bool,
    /// The file's size; required exactly when `finished`.
    pub total_bytes: Option<u64>,
}

impl NewRecording {
    /// A recording that capture is about to start writing.
    pub fn growing(
        path: impl Into<PathBuf>,
        name: impl Into<String>,
        content_type: impl Into<String>,
        recorder_type: impl Into<String>,
        is_video: bool,
    ) -> Self {
        Self {
            path: path.into(),
            name: name.into(),
            content_type: content_type.into(),
            recorder_type: recorder_type.into(),
            is_video,
            finished: false,
            total_bytes: None,
        }
    }
}

/// A recording as the journal has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRecording {
    /// The local id.
    pub id: i64,
    /// The media file.
    pub path: PathBuf,
    /// The teacher-facing name.
    pub name: String,
    /// The MIME type.
    pub content_type: String,
    /// The recorder that made it.
    pub recorder_type: String,
    /// Whether it has video.
    pub is_video: bool,
    /// When it was journaled, in seconds since the Unix epoch.
    pub created_at: i64,
    /// Where it is in its life.
    pub state: RecordingState,
    /// How many bytes from the start of the file are fsynced.
    pub durable_bytes: u64,
    /// Whether the file will not grow any more.
    pub finished: bool,
    /// The file's final size, once finished.
    pub total_bytes: Option<u64>,
    /// The local file's sha256 (lowercase hex), once known.
    pub sha256: Option<String>,
    /// The sha256 the server reported when the recording became ready.
    pub server_sha256: Option<String>,
    /// Why it failed (or the last transient problem, e.g. while waiting).
    pub error: Option<String>,
    /// Where it is being uploaded, once chosen.
    pub destination_id: Option<i64>,
    /// Why it is in its state, when a reason was given (see
    /// [`Journal::set_state_because`]); `None` on the happy path.
    pub problem: Option<Problem>,
    /// How many automatic retries of a failure were started (reset when the
    /// teacher retries).
    pub retry_attempts: u32,
    /// The earliest time, in seconds since the Unix epoch, that the next
    /// automatic retry may start.
    pub next_retry_at: Option<i64>,
    /// Whether the teacher chose to keep it on this computer: nothing
    /// uploads it until the teacher asks (see [`Journal::set_keep_local`]).
    pub keep_local: bool,
}

impl LocalRecording {
    /// The bytes an upload has to cover: the final size when finished, else
    /// what is durable so far.
    pub fn upload_size(&self) -> u64 {
        self.total_bytes.filter(|_| self.finished).unwrap_or(self.durable_bytes)
    }

    /// Whether its failure may be retried without the teacher: it failed
    /// with a problem that does not need them (none counts as
    /// [`Problem::Unknown`]). Says nothing about the retry cap or time.
    pub fn retries_by_itself(&self) -> bool {
        self.state == RecordingState::Failed && !self.problem.unwrap_or(Problem::Unknown).needs_teacher()
    }

    /// Whether the local file may be deleted: the recording is `ready` and
    /// the server's sha256 equals the local one.
    pub fn may_delete_local(&self) -> bool {
        self.state == RecordingState::Ready
            && self.sha256.is_some()
            && self.sha256.as_deref() == self.server_sha256.as_deref()
    }
}

pub(crate) const RECORDING_COLUMNS: &str = "id, path, name, content_type, recorder_type, is_video, created_at, \
     state, durable_bytes, finished, total_bytes, sha256, server_sha256, error, destination_id, \
     problem, retry_attempts, next_retry_at, keep_local";

fn from_row(row: &Row<'_>) -> rusqlite::Result<LocalRecording> {
    Ok(LocalRecording {
        id: row.get(0)?,
        path: PathBuf::from(row.get::<_, String>(1)?),
        name: row.get(2)?,
        content_type: row.get(3)?,
        recorder_type: row.get(4)?,
        is_video: row.get(5)?,
        created_at: row.get(6)?,
        state: row.get(7)?,
        durable_bytes: row.get(8)?,
        finished: row.get(9)?,
        total_bytes: row.get(10)?,
        sha256: row.get(11)?,
        server_sha256: row.get(12)?,
        error: row.get(13)?,
        destination_id: row.get(14)?,
        problem: row.get(15)?,
        retry_attempts: row.get(16)?,
        next_retry_at: row.get(17)?,
        keep_local: row.get(18)?,
    })
}

pub(crate) fn load(conn: &rusqlite::Connection, id: i64) -> Result<Option<LocalRecording>> {
    let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub(crate) fn load_existing(conn: &rusqlite::Connection, id: i64) -> Result<LocalRecording> {
    load(conn, id)?.ok_or(Error::UnknownRecording(id))
}

fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<LocalRecording>> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map(params, from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::NonUnicodePath(path.to_path_buf()))
}

/// Lowercase hex of `bytes` bytes, or an error naming `what`.
pub(crate) fn normalise_hex(value: &str, bytes: usize, what: &str) -> Result<String> {
    if value.len() == bytes * 2 && value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(format!("{what} {value:?} is not {} hex digits", bytes * 2)))
    }
}

fn sha256_hex(value: &str) -> Result<String> {
    normalise_hex(value, 32, "the sha256")
}

impl Journal {
    /// Journals a new recording; it starts `recording` (or `stopped` when
    /// already finished).
    pub fn add_recording(&self, new: NewRecording) -> Result<LocalRecording> {
        let path = path_text(&new.path)?;
        if new.finished != new.total_bytes.is_some() {
            return Err(Error::Invalid(
                "total_bytes must be given exactly when the recording is finished".into(),
            ));
        }
        let (state, durable) = match new.total_bytes {
            Some(total) => (RecordingState::Stopped, total),
            None => (RecordingState::Recording, 0),
        };
        self.write(|tx| {
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM recordings WHERE path = ?1", [path], |row| row.get(0))
                .optional()?;
            if let Some(recording_id) = existing {
                return Err(Error::AlreadyJournaled { path: new.path.clone(), recording_id });
            }
            let sql = format!(
                "INSERT INTO recordings (path, name, content_type, recorder_type, is_video, created_at,
                     state, durable_bytes, finished, total_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 RETURNING {RECORDING_COLUMNS}"
            );
            let recording = tx.query_row(
                &sql,
                params![
                    path,
                    new.name,
                    new.content_type,
                    new.recorder_type,
                    new.is_video,
                    now_unix(),
                    state,
                    durable,
                    new.finished,
                    new.total_bytes
                ],
                from_row,
            )?;
            tracing::info!(recording_id = recording.id, path, "recording journaled");
            Ok(recording)
        })
    }

    /// The recording with this id.
    pub fn recording(&self, id: i64) -> Result<Option<LocalRecording>> {
        self.read(|conn| load(conn, id))
    }

    /// Every recording, newest first.
    pub fn recordings(&self) -> Result<Vec<LocalRecording>> {
        self.read(|conn| {
            query(
                conn,
                &format!("SELECT {RECORDING_COLUMNS} FROM recordings ORDER BY created_at DESC, id DESC"),
                [],
            )
        })
    }

    /// The recording whose file is `path` (compared as stored, not canonicalised).
    pub fn recording_by_path(&self, path: &Path) -> Result<Option<LocalRecording>> {
        let path = path_text(path)?;
        self.read(|conn| {
            let sql = format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE path = ?1");
            Ok(conn.query_row(&sql, [path], from_row).optional()?)
        })
    }

    /// Every recording that still has upload work: not `ready` or `failed`,
    /// not kept on this computer by the teacher, and either finished or
    /// already given a destination. Oldest first,
    /// the order to upload them in. Take [`Journal::lock_recording`] before
    /// working on one: another process may be on it.
    pub fn unfinished_uploads(&self) -> Result<Vec<LocalRecording>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {RECORDING_COLUMNS} FROM recordings
                 WHERE state NOT IN ('ready', 'failed') AND keep_local = 0
                     AND (destination_id IS NOT NULL OR finished = 1)
                 ORDER BY created_at, id"
            );
            query(conn, &sql, [])
        })
    }

    /// Records that the first `durable_bytes` bytes of the file are fsynced.
    /// Call it only after the fsync returned. Reporting fewer bytes than
    /// before is refused ([`Error::DurableBytesBackwards`]); the same number
    /// again is a no-op. A finished file does not grow.
    pub fn set_durable_bytes(&self, id: i64, durable_bytes: u64) -> Result<()> {
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            if durable_bytes < recording.durable_bytes {
                return Err(Error::DurableBytesBackwards {
                    recording_id: id,
                    journaled: recording.durable_bytes,
                    reported: durable_bytes,
                });
            }
            if durable_bytes == recording.durable_bytes {
                return Ok(());
            }
            if recording.finished {
                return Err(Error::WrongState {
                    recording_id: id,
                    state: recording.state,
                    action: "add durable bytes",
                    hint: "the file is finished and does not grow any more",
                });
            }
            tx.execute("UPDATE recordings SET durable_bytes = ?2 WHERE id = ?1", params![id, durable_bytes])?;
            Ok(())
        })
    }

    /// Records that the file is complete and fsynced at `total_bytes` (with
    /// its sha256 when known); `durable_bytes` becomes `total_bytes`. A
    /// recording still in `recording` becomes `stopped`; other states stay
    /// (a crash repair sets `recovered` first, then finishes the file).
    ///
    /// Repair may have cut the file below the bytes already reported
    /// durable. Parts of the live session that reach past the new end no
    /// longer describe the file; they are forgotten in the same transaction
    /// and their numbers returned, to be sent again.
    ///
    /// Repeating the call with the same size is a no-op that may add the
    /// sha256; a different size, or a different sha256, is refused.
    pub fn mark_finished(&self, id: i64, total_bytes: u64, sha256: Option<&str>) -> Result<Vec<u32>> {
        let sha256 = sha256.map(sha256_hex).transpose()?;
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            if recording.finished {
                if recording.total_bytes != Some(total_bytes) {
                    return Err(Error::Invalid(format!(
                        "recording {id} was already finished at {} bytes, not {total_bytes}",
                        recording.total_bytes.unwrap_or_default()
                    )));
                }
                if let (Some(old), Some(new)) = (&recording.sha256, &sha256)
                    && old != new
                {
                    return Err(Error::Invalid(format!(
                        "recording {id} already has sha256 {old}, not {new}; the file changed after it was finished"
                    )));
                }
                tx.execute("UPDATE recordings SET sha256 = coalesce(sha256, ?2) WHERE id = ?1", params![id, sha256])?;
                return Ok(Vec::new());
            }
            let forgotten = forget_parts_past(tx, id, total_bytes)?;
            let state =
                if recording.state == RecordingState::Recording { RecordingState::Stopped } else { recording.state };
            tx.execute(
                "UPDATE recordings SET finished = 1, total_bytes = ?2, durable_bytes = ?2, sha256 = ?3, state = ?4
                 WHERE id = ?1",
                params![id, total_bytes, sha256, state],
            )?;
            if !forgotten.is_empty() {
                tracing::warn!(recording_id = id, ?forgotten, "the repaired file is shorter; parts will be sent again");
            }
            Ok(forgotten)
        })
    }

    /// Moves a recording to `state` (see [`RecordingState::can_become`]),
    /// recording `error` (required for `failed`; cleared when `None`) and
    /// clearing its [`Problem`]. `ready` is refused: use [`Journal::mark_ready`].
    pub fn set_state(&self, id: i64, state: RecordingState, error: Option<&str>) -> Result<()> {
        self.set_state_because(id, state, None, error)
    }

    /// Moves a recording to `state` (see [`RecordingState::can_become`])
    /// because of `problem`, with `detail` for people (the `error` column).
    /// Both are replaced, and cleared when `None`. `failed` needs a problem
    /// or a detail. `ready` is refused: use [`Journal::mark_ready`].
    pub fn set_state_because(
        &self,
        id: i64,
        state: RecordingState,
        problem: Option<Problem>,
        detail: Option<&str>,
    ) -> Result<()> {
        let detail = detail.filter(|detail| !detail.trim().is_empty());
        if state == RecordingState::Failed && problem.is_none() && detail.is_none() {
            return Err(Error::Invalid("a failed recording needs a reason".into()));
        }
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            if !recording.state.can_become(state) {
                let hint = match (recording.state, state) {
                    (_, RecordingState::Ready) => "use mark_ready, which checks the server's sha256",
                    (RecordingState::Ready, _) => "a ready recording is final",
                    (_, RecordingState::Recording) => "a recording that stopped cannot record again",
                    _ => "this skips a step of the upload",
                };
                return Err(Error::InvalidTransition {
                    recording_id: id,
                    from: recording.state,
                    to: state,
                    hint,
                });
            }
            tx.execute(
                "UPDATE recordings SET state = ?2, problem = ?3, error = ?4 WHERE id = ?1",
                params![id, state, problem, detail],
            )?;
            tracing::info!(
                recording_id = id,
                from = %recording.state,
                to = %state,
                problem = problem.map(Problem::as_str),
                error = detail,
                "recording state"
            );
            Ok(())
        })
    }

    /// Keeps a recording on this computer (`true`: nothing uploads it until
    /// the teacher asks; [`Journal::unfinished_uploads`] leaves it out), or
    /// lets it upload (`false`, when the teacher asks for the upload).
    pub fn set_keep_local(&self, id: i64, keep_local: bool) -> Result<()> {
        self.write(|tx| {
            load_existing(tx, id)?;
            tx.execute("UPDATE recordings SET keep_local = ?2 WHERE id = ?1", params![id, keep_local])?;
            Ok(())
        })
    }

    /// Keeps recording `id`'s length, in seconds, for when its file is gone
    /// (see [`Journal::kept_lengths`]).
    pub fn set_length_seconds(&self, id: i64, seconds: f64) -> Result<()> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(Error::Invalid(format!("a recording cannot last {seconds} seconds")));
        }
        self.write(|tx| {
            load_existing(tx, id)?;
            tx.execute("UPDATE recordings SET length_seconds = ?2 WHERE id = ?1", params![id, seconds])?;
            Ok(())
        })
    }

    /// The lengths kept by [`Journal::set_length_seconds`], by recording id.
    pub fn kept_lengths(&self) -> Result<std::collections::HashMap<i64, f64>> {
        self.read(|conn| {
            let mut statement =
                conn.prepare("SELECT id, length_seconds FROM recordings WHERE length_seconds IS NOT NULL")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Failed recordings that an automatic retry may take up: their problem
    /// does not need the teacher (see [`Problem::needs_teacher`]; a failure
    /// journaled without one counts as [`Problem::Unknown`]), they are not
    /// kept on this computer, and fewer than `max_attempts` retries were
    /// started. Oldest first. Whether one is due yet is
    /// [`LocalRecording::next_retry_at`]; [`Journal::begin_automatic_retry`]
    /// checks both again in its transaction.
    pub fn retryable_failures(&self, max_attempts: u32) -> Result<Vec<LocalRecording>> {
        let failed = self.read(|conn| {
            let sql = format!(
                "SELECT {RECORDING_COLUMNS} FROM recordings
                 WHERE state = 'failed' AND keep_local = 0 AND retry_attempts < ?1
                 ORDER BY created_at, id"
            );
            query(conn, &sql, [max_attempts])
        })?;
        Ok(failed.into_iter().filter(LocalRecording::retries_by_itself).collect())
    }

    /// Starts an automatic retry of a failed recording, if it may have one
    /// now: it is `failed` with a problem that does not need the teacher,
    /// fewer than `max_attempts` retries were started, and its
    /// `next_retry_at` has passed (or was never set). It then becomes
    /// `stopped` (the upload picks it up from there), its retry count grows
    /// by one and the next retry may start no earlier than `next_retry_at`.
    /// Returns whether it did. One transaction, so two processes never
    /// start the same retry.
    pub fn begin_automatic_retry(&self, id: i64, max_attempts: u32, next_retry_at: i64) -> Result<bool> {
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            let due = recording.next_retry_at.is_none_or(|at| at <= now_unix());
            if recording.state != RecordingState::Failed
                || !recording.retries_by_itself()
                || recording.keep_local
                || recording.retry_attempts >= max_attempts
                || !due
            {
                return Ok(false);
            }
            tx.execute(
                "UPDATE recordings SET state = 'stopped', retry_attempts = retry_attempts + 1,
                     next_retry_at = ?2, problem = NULL, error = NULL
                 WHERE id = ?1",
                params![id, next_retry_at],
            )?;
            tracing::info!(
                recording_id = id,
                attempt = recording.retry_attempts + 1,
                max_attempts,
                problem = recording.problem.map(Problem::as_str),
                "retrying a failed upload"
            );
            Ok(true)
        })
    }

    /// Sets the earliest time (seconds since the Unix epoch) of the next
    /// automatic retry of a recording.
    pub fn set_next_retry_at(&self, id: i64, next_retry_at: i64) -> Result<()> {
        self.write(|tx| {
            load_existing(tx, id)?;
            tx.execute("UPDATE recordings SET next_retry_at = ?2 WHERE id = ?1", params![id, next_retry_at])?;
            Ok(())
        })
    }

    /// The teacher asked to retry a failed recording, whatever its problem:
    /// it becomes `stopped`, its automatic retries start again from none,
    /// and it is no longer kept on this computer. Returns `false`, changing
    /// nothing, when it is not `failed`.
    pub fn retry_by_teacher(&self, id: i64) -> Result<bool> {
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            if recording.state != RecordingState::Failed {
                return Ok(false);
            }
            tx.execute(
                "UPDATE recordings SET state = 'stopped', retry_attempts = 0, next_retry_at = NULL,
                     problem = NULL, error = NULL, keep_local = 0
                 WHERE id = ?1",
                [id],
            )?;
            tracing::info!(
                recording_id = id,
                problem = recording.problem.map(Problem::as_str),
                "teacher retries"
            );
            Ok(true)
        })
    }

    /// Gives a recording the name the teacher sees (trimmed; a blank name
    /// is refused). The file keeps its name on disk.
    pub fn rename_recording(&self, id: i64, name: &str) -> Result<()> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Invalid("a recording needs a name".into()));
        }
        self.write(|tx| {
            load_existing(tx, id)?;
            tx.execute("UPDATE recordings SET name = ?2 WHERE id = ?1", params![id, name])?;
            tracing::info!(recording_id = id, name, "recording renamed");
            Ok(())
        })
    }

    /// Forgets a recording whose file the teacher deleted although it was
    /// the only copy: its row, upload sessions and parts go in one
    /// transaction, so nothing tries to upload a file that is gone. A
    /// recording still being recorded is refused. Returns what was forgotten.
    pub fn forget_recording(&self, id: i64) -> Result<LocalRecording> {
        self.write(|tx| {
            let recording = load_existing(tx, id)?;
            if recording.state == RecordingState::Recording {
                return Err(Error::WrongState {
                    recording_id: id,
                    state: recording.state,
                    action: "forget it",
                    hint: "it is still being recorded; stop it first",
                });
            }
            tx.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
            tracing::info!(recording_id = id, state = %recording.state, "recording forgotten");
            Ok(recording)
        })
    }

    /// Points every recording whose file lies under `from` at the same place
    /// under `to`, in one transaction, after the data folder moved there.
    /// Files elsewhere (uploaded from another folder) keep their path.
    /// Returns how many were moved.
    pub fn move_recordings(&self, from: &Path, to: &Path) -> Result<usize> {
        self.write(|tx| {
            let mut moved = 0;
            for recording in query(tx, &format!("SELECT {RECORDING_COLUMNS} FROM recordings"), [])? {
                let Ok(inside) = recording.path.strip_prefix(from) else { continue };
                let moved_path = to.join(inside);
                let path = path_text(&moved_path)?;
                tx.execute("UPDATE recordings SET path = ?2 WHERE id = ?1", params![recording.id, path])?;
                moved += 1;
            }
            tracing::info!(moved, from = %from.display(), to = %to.display(), "recordings moved with the data folder");
            Ok(moved)
        })
    }

    /// Chooses (or clears) where a recording will be uploaded.
    pub fn set_destination(&self, id: i64, destination_id: Option<i64>) -> Result<()> {
        self.write(|tx| {
            load_existing(tx, id)?;
            if let Some(destination) = destination_id {
                crate::destination::ensure_exists(tx, destination)?;
            }
            tx.execute(
                "UPDATE recordings SET destination_id = ?2 WHERE id = ?1",
                params![id, destination_id],
            )?;
            Ok(())
        })
    }

    /// Records, durably (`synchronous=FULL`), that the server has the
    /// recording: state `ready`, the server's sha256, and the live upload
    /// session `completed`. The file must be finished with its sha256
    /// journaled, and `server_sha256` must equal it
    /// ([`Error::ChecksumMismatch`] otherwise) — so `ready` always means the
    /// local copy may be deleted. Repeating it is a no-op.
    pub fn mark_ready(&self, id: i64, server_sha256: &str) -> Result<()> {
        let server_sha256 = sha256_hex(server_sha256)?;
        self.write_durably(|tx| {
            let recording = load_existing(tx, id)?;
            let wrong_state = |hint| Error::WrongState {
                recording_id: id,
                state: recording.state,
                action: "mark it ready",
                hint,
            };
            if recording.state == RecordingState::Recording || !recording.finished {
                return Err(wrong_state("the file is not finished yet"));
            }
            let Some(local) = recording.sha256.as_deref() else {
                return Err(wrong_state("its sha256 is not journaled; pass it to mark_finished first"));
            };
            if local != server_sha256 {
                return Err(Error::ChecksumMismatch {
                    recording_id: id,
                    local: local.to_owned(),
                    server: server_sha256,
                });
            }
            tx.execute(
                "UPDATE recordings SET state = 'ready', server_sha256 = ?2, error = NULL, problem = NULL WHERE id = ?1",
                params![id, server_sha256],
            )?;
            tx.execute(
                &format!(
                    "UPDATE upload_sessions SET state = ?2, last_error = NULL WHERE recording_id = ?1 AND {LIVE_SESSION}"
                ),
                params![id, SessionState::Completed],
            )?;
            tracing::info!(recording_id = id, "recording safe on server");
            Ok(())
        })
    }
}

/// Forgets parts of the recording's live session that end past `end`.
fn forget_parts_past(tx: &Transaction<'_>, recording_id: i64, end: u64) -> Result<Vec<u32>> {
    let sql = format!(
        "DELETE FROM parts WHERE byte_offset + size_bytes > ?2 AND session_id IN
             (SELECT id FROM upload_sessions WHERE recording_id = ?1 AND {LIVE_SESSION})
         RETURNING part_number"
    );
    let mut statement = tx.prepare(&sql)?;
    let mut numbers = statement
        .query_map(params![recording_id, end], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<u32>>>()?;
    numbers.sort_unstable();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{growing, journal, new_session, part};

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn moving_the_data_folder_moves_only_the_recordings_inside_it() {
        let (temp, journal) = journal();
        let (old, new) = (temp.path().join("old"), temp.path().join("new"));
        let inside = journal.add_recording(growing(old.join("recordings/a.wav"))).unwrap().id;
        // A sibling whose name merely starts like the folder is not inside it.
        let beside = journal.add_recording(growing(temp.path().join("old-b.wav"))).unwrap().id;
        assert_eq!(journal.move_recordings(&old, &new).unwrap(), 1);
        assert_eq!(journal.recording(inside).unwrap().unwrap().path, new.join("recordings/a.wav"));
        assert_eq!(journal.recording(beside).unwrap().unwrap().path, temp.path().join("old-b.wav"));
        assert_eq!(journal.move_recordings(&old, &new).unwrap(), 0, "a second run finds nothing to move");
    }

    #[test]
    fn a_recording_keeps_its_length_for_when_its_file_is_gone() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        let other = journal.add_recording(growing(temp.path().join("b.wav"))).unwrap().id;
        assert!(journal.kept_lengths().unwrap().is_empty());
        journal.set_length_seconds(id, 2712.5).unwrap();
        let kept = journal.kept_lengths().unwrap();
        assert_eq!((kept.get(&id), kept.get(&other)), (Some(&2712.5), None));
        assert!(matches!(journal.set_length_seconds(id, -1.0), Err(Error::Invalid(_))));
        assert!(matches!(journal.set_length_seconds(999, 1.0), Err(Error::UnknownRecording(999))));
    }

    #[test]
    fn a_recording_is_renamed_and_forgotten_with_its_sessions() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        assert!(journal.forget_recording(id).is_err(), "still recording");
        journal.mark_finished(id, 10, None).unwrap();
        journal.rename_recording(id, "  Maths 7B  ").unwrap();
        assert_eq!(journal.recording(id).unwrap().unwrap().name, "Maths 7B");
        assert!(journal.rename_recording(id, "   ").is_err(), "a blank name");
        assert!(matches!(journal.rename_recording(999, "x"), Err(Error::UnknownRecording(999))));
        let destination = journal.upsert_destination("http://school", "token", "School").unwrap();
        let session = journal.open_session(id, new_session(destination, 10)).unwrap();
        journal.record_part_sent(session.id, part(1, 10, 10)).unwrap();
        assert_eq!(journal.forget_recording(id).unwrap().name, "Maths 7B");
        assert_eq!(journal.recording(id).unwrap(), None);
        assert_eq!(journal.session(session.id).unwrap(), None, "its sessions went with it");
        assert!(matches!(journal.forget_recording(id), Err(Error::UnknownRecording(_))));
    }

    #[test]
    fn states_serialise_lowercase_and_parse_back() {
        for state in RecordingState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(state.as_str().parse::<RecordingState>().unwrap(), state);
            assert_eq!(serde_json::from_str::<RecordingState>(&json).unwrap(), state);
        }
        assert_eq!(serde_json::to_string(&RecordingState::Processing).unwrap(), "\"processing\"");
        assert!("Ready".parse::<RecordingState>().is_err());
    }

    #[test]
    fn a_recording_round_trips() {
        let (temp, journal) = journal();
        let new = NewRecording {
            path: temp.path().join("Lesson 1 — æøå.mp4"),
            name: "Lesson 1".into(),
            content_type: "video/mp4".into(),
            recorder_type: "screen".into(),
            is_video: true,
            finished: false,
            total_bytes: None,
        };
        let before = now_unix();
        let added = journal.add_recording(new.clone()).unwrap();
        assert_eq!(
            (
                &added.path,
                added.name.as_str(),
                added.content_type.as_str(),
                added.recorder_type.as_str(),
                added.is_video
            ),
            (&new.path, "Lesson 1", "video/mp4", "screen", true)
        );
        assert!(added.created_at >= before && added.created_at <= now_unix());
        assert_eq!(added.state, RecordingState::Recording);
        assert_eq!((added.durable_bytes, added.finished, added.total_bytes), (0, false, None));
        assert_eq!(
            (&added.sha256, &added.server_sha256, &added.error, added.destination_id),
            (&None, &None, &None, None)
        );
        assert_eq!(journal.recording(added.id).unwrap(), Some(added.clone()));
        assert_eq!(journal.recording_by_path(&new.path).unwrap(), Some(added.clone()));
        assert_eq!(journal.recording_by_path(&temp.path().join("other.mp4")).unwrap(), None);
        assert_eq!(journal.recording(added.id + 1).unwrap(), None);

        // Every column survives a reopen.
        let destination = journal.upsert_destination("http://127.0.0.1:1", "t", "This computer").unwrap();
        journal.set_destination(added.id, Some(destination)).unwrap();
        journal.set_durable_bytes(added.id, 100).unwrap();
        journal.mark_finished(added.id, 120, Some(&SHA.to_uppercase())).unwrap();
        journal.set_state(added.id, RecordingState::Waiting, Some("connection refused")).unwrap();
        let reopened = Journal::open(journal.path()).unwrap();
        let read = reopened.recording(added.id).unwrap().unwrap();
        assert_eq!(
            read,
            LocalRecording {
                state: RecordingState::Waiting,
                durable_bytes: 120,
                finished: true,
                total_bytes: Some(120),
                sha256: Some(SHA.into()),
                error: Some("connection refused".into()),
                destination_id: Some(destination),
                ..added
            }
        );
    }

    #[test]
    fn recordings_are_listed_newest_first_and_paths_are_unique() {
        let (temp, journal) = journal();
        let first = journal.add_recording(growing(temp.path().join("1.wav"))).unwrap();
        let second = journal.add_recording(growing(temp.path().join("2.wav"))).unwrap();
        // Same second: the id breaks the tie.
        journal.read(|conn| Ok(conn.execute("UPDATE recordings SET created_at = 10", [])?)).unwrap();
        let third = journal.add_recording(growing(temp.path().join("3.wav"))).unwrap();
        let ids: Vec<i64> = journal.recordings().unwrap().into_iter().map(|recording| recording.id).collect();
        assert_eq!(ids, [third.id, second.id, first.id]);

        let err = journal.add_recording(growing(temp.path().join("2.wav"))).unwrap_err();
        assert!(
            matches!(err, Error::AlreadyJournaled { recording_id, .. } if recording_id == second.id),
            "{err}"
        );
    }

    #[test]
    fn add_recording_checks_finished_against_total_bytes() {
        let (temp, journal) = journal();
        let finished_without_size = NewRecording { finished: true, ..growing(temp.path().join("a.wav")) };
        assert!(matches!(journal.add_recording(finished_without_size), Err(Error::Invalid(_))));
        let size_while_growing = NewRecording { total_bytes: Some(3), ..growing(temp.path().join("a.wav")) };
        assert!(matches!(journal.add_recording(size_while_growing), Err(Error::Invalid(_))));
        let imported =
            NewRecording { finished: true, total_bytes: Some(7), ..growing(temp.path().join("a.wav")) };
        let imported = journal.add_recording(imported).unwrap();
        assert_eq!(
            (imported.state, imported.durable_bytes, imported.total_bytes),
            (RecordingState::Stopped, 7, Some(7))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_unicode_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let (_temp, journal) = journal();
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff.wav"));
        assert!(matches!(journal.add_recording(growing(path)), Err(Error::NonUnicodePath(_))));
    }

    #[test]
    fn durable_bytes_only_grow() {
        let (temp, journal) = journal();
        let recording = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap();
        journal.set_durable_bytes(recording.id, 10).unwrap();
        journal.set_durable_bytes(recording.id, 10).unwrap();
        journal.set_durable_bytes(recording.id, 25).unwrap();
        let err = journal.set_durable_bytes(recording.id, 24).unwrap_err();
        assert!(matches!(err, Error::DurableBytesBackwards { journaled: 25, reported: 24, .. }), "{err}");
        assert_eq!(journal.recording(recording.id).unwrap().unwrap().durable_bytes, 25);
        assert!(matches!(journal.set_durable_bytes(999, 1), Err(Error::UnknownRecording(999))));

        journal.mark_finished(recording.id, 30, None).unwrap();
        assert!(matches!(journal.set_durable_bytes(recording.id, 31), Err(Error::WrongState { .. })));
        journal.set_durable_bytes(recording.id, 30).unwrap();
    }

    #[test]
    fn mark_finished_stops_the_recording_and_is_repeatable() {
        let (temp, journal) = journal();
        let recording = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap();
        journal.set_durable_bytes(recording.id, 40).unwrap();
        assert_eq!(journal.mark_finished(recording.id, 44, None).unwrap(), Vec::<u32>::new());
        let read = journal.recording(recording.id).unwrap().unwrap();
        assert_eq!(
            (read.state, read.finished, read.total_bytes, read.durable_bytes, read.sha256),
            (RecordingState::Stopped, true, Some(44), 44, None)
        );
        journal.mark_finished(recording.id, 44, Some(SHA)).unwrap();
        assert_eq!(journal.recording(recording.id).unwrap().unwrap().sha256.as_deref(), Some(SHA));
        assert!(journal.mark_finished(recording.id, 45, None).is_err());
        assert!(journal.mark_finished(recording.id, 44, Some(&"0".repeat(64))).is_err());
        assert!(journal.mark_finished(recording.id, 44, Some("not hex")).is_err());
    }

    #[test]
    fn a_repair_that_cuts_the_file_forgets_parts_past_the_end() {
        let (temp, journal) = journal();
        let recording = journal.add_recording(growing(temp.path().join("a.mp4"))).unwrap();
        journal.set_state(recording.id, RecordingState::Recovered, None).unwrap();
        journal.set_durable_bytes(recording.id, 35).unwrap();
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(recording.id, new_session(destination, 10)).unwrap();
        for number in 1..=3 {
            journal.record_part_sent(session.id, part(number, 10, 10)).unwrap();
        }
        // The last whole fragment ends at 25: part 3 (20..30) is gone.
        assert_eq!(journal.mark_finished(recording.id, 25, None).unwrap(), vec![3]);
        let read = journal.recording(recording.id).unwrap().unwrap();
        assert_eq!(
            (read.state, read.durable_bytes, read.total_bytes),
            (RecordingState::Recovered, 25, Some(25))
        );
        let numbers: Vec<u32> = journal.parts(session.id).unwrap().iter().map(|part| part.number).collect();
        assert_eq!(numbers, [1, 2]);
    }

    #[test]
    fn state_changes_follow_the_state_machine() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        let state = |journal: &Journal| journal.recording(id).unwrap().unwrap().state;
        assert!(matches!(
            journal.set_state(id, RecordingState::Uploading, None),
            Err(Error::InvalidTransition {
                from: RecordingState::Recording,
                to: RecordingState::Uploading,
                ..
            })
        ));
        journal.set_state(id, RecordingState::Stopped, None).unwrap();
        assert!(journal.set_state(id, RecordingState::Recording, None).is_err());
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        journal.set_state(id, RecordingState::Waiting, Some("no network")).unwrap();
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        assert_eq!(journal.recording(id).unwrap().unwrap().error, None, "cleared");
        assert!(matches!(
            journal.set_state(id, RecordingState::Ready, None),
            Err(Error::InvalidTransition { .. })
        ));
        assert!(matches!(journal.set_state(id, RecordingState::Failed, None), Err(Error::Invalid(_))));
        assert!(matches!(journal.set_state(id, RecordingState::Failed, Some("  ")), Err(Error::Invalid(_))));
        journal.set_state(id, RecordingState::Failed, Some("the server refused the file")).unwrap();
        assert_eq!(state(&journal), RecordingState::Failed);
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        assert!(matches!(
            journal.set_state(404, RecordingState::Stopped, None),
            Err(Error::UnknownRecording(404))
        ));

        // Ready is final.
        for from in RecordingState::ALL {
            assert!(!from.can_become(RecordingState::Recording));
            assert!(!RecordingState::Ready.can_become(from));
            assert!(!from.can_become(RecordingState::Ready));
            assert_eq!(from.can_become(RecordingState::Failed), from != RecordingState::Ready);
        }
    }

    #[test]
    fn mark_ready_needs_a_finished_file_with_an_equal_sha256() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        assert!(matches!(journal.mark_ready(id, SHA), Err(Error::WrongState { .. })));
        journal.set_durable_bytes(id, 10).unwrap();
        journal.mark_finished(id, 10, None).unwrap();
        assert!(matches!(journal.mark_ready(id, SHA), Err(Error::WrongState { .. })), "no local sha256");
        journal.mark_finished(id, 10, Some(SHA)).unwrap();
        let other = "cd".repeat(32);
        assert!(matches!(journal.mark_ready(id, &other), Err(Error::ChecksumMismatch { .. })));
        assert!(!journal.recording(id).unwrap().unwrap().may_delete_local());

        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(id, new_session(destination, 10)).unwrap();
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        journal.record_part_sent(session.id, part(1, 10, 10)).unwrap();
        journal.mark_finish_sent(session.id).unwrap();

        journal.mark_ready(id, &SHA.to_uppercase()).unwrap();
        // Durable: a fresh connection sees it.
        let other_connection = Journal::open(journal.path()).unwrap();
        let read = other_connection.recording(id).unwrap().unwrap();
        assert_eq!((read.state, read.server_sha256.as_deref()), (RecordingState::Ready, Some(SHA)));
        assert!(read.may_delete_local());
        assert_eq!(other_connection.session(session.id).unwrap().unwrap().state, SessionState::Completed);
        journal.mark_ready(id, SHA).unwrap();
        assert!(journal.set_state(id, RecordingState::Failed, Some("late")).is_err());
    }

    #[test]
    fn unfinished_uploads_are_the_ones_with_work_left() {
        let (temp, journal) = journal();
        let add = |name: &str| journal.add_recording(growing(temp.path().join(name))).unwrap().id;
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let growing_only = add("growing.wav");
        let growing_with_destination = add("growing-dest.wav");
        journal.set_destination(growing_with_destination, Some(destination)).unwrap();
        let stopped = add("stopped.wav");
        journal.mark_finished(stopped, 0, None).unwrap();
        let failed = add("failed.wav");
        journal.mark_finished(failed, 0, None).unwrap();
        journal.set_state(failed, RecordingState::Failed, Some("broken")).unwrap();
        let ready = add("ready.wav");
        journal.set_durable_bytes(ready, 1).unwrap();
        journal.mark_finished(ready, 1, Some(SHA)).unwrap();
        journal.mark_ready(ready, SHA).unwrap();

        let ids: Vec<i64> =
            journal.unfinished_uploads().unwrap().into_iter().map(|recording| recording.id).collect();
        assert_eq!(ids, [growing_with_destination, stopped]);
        assert!(!ids.contains(&growing_only));
        assert!(matches!(
            journal.set_destination(growing_only, Some(999)),
            Err(Error::UnknownDestination(999))
        ));
    }

    #[test]
    fn a_recording_kept_on_this_computer_is_not_an_unfinished_upload() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("local.wav"))).unwrap().id;
        journal.mark_finished(id, 0, None).unwrap();
        assert!(!journal.recording(id).unwrap().unwrap().keep_local);
        journal.set_keep_local(id, true).unwrap();
        assert!(journal.recording(id).unwrap().unwrap().keep_local);
        assert!(journal.unfinished_uploads().unwrap().is_empty());
        journal.set_keep_local(id, false).unwrap();
        let ids: Vec<i64> =
            journal.unfinished_uploads().unwrap().iter().map(|recording| recording.id).collect();
        assert_eq!(ids, [id]);
        assert!(matches!(journal.set_keep_local(999, true), Err(Error::UnknownRecording(999))));
    }

    #[test]
    fn a_state_change_carries_its_problem_and_the_next_one_clears_it() {
        let (temp, journal) = journal();
        let id = journal.add_recording(growing(temp.path().join("a.wav"))).unwrap().id;
        journal.mark_finished(id, 0, None).unwrap();
        journal
            .set_state_because(id, RecordingState::Waiting, Some(Problem::Stalled), Some("no bytes for 30 s"))
            .unwrap();
        let read = journal.recording(id).unwrap().unwrap();
        assert_eq!((read.state, read.problem), (RecordingState::Waiting, Some(Problem::Stalled)));
        assert_eq!(read.error.as_deref(), Some("no bytes for 30 s"));
        // It survives a reopen, as every column does.
        let reopened = Journal::open(journal.path()).unwrap();
        assert_eq!(reopened.recording(id).unwrap().unwrap().problem, Some(Problem::Stalled));

        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        let read = journal.recording(id).unwrap().unwrap();
        assert_eq!((read.problem, read.error), (None, None));

        // A failure needs a problem or a detail; either will do.
        let err = journal.set_state_because(id, RecordingState::Failed, None, Some("  ")).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        journal.set_state_because(id, RecordingState::Failed, Some(Problem::PartsMissing), None).unwrap();
        let read = journal.recording(id).unwrap().unwrap();
        assert_eq!(
            (read.state, read.problem, read.error),
            (RecordingState::Failed, Some(Problem::PartsMissing), None)
        );

        // A name written by a newer Opptak reads as unknown, not as an error.
        journal
            .read(|conn| {
                Ok(conn.execute("UPDATE recordings SET problem = 'from_the_future' WHERE id = ?1", [id])?)
            })
            .unwrap();
        assert_eq!(journal.recording(id).unwrap().unwrap().problem, Some(Problem::Unknown));
    }

    fn failed_because(journal: &Journal, dir: &Path, name: &str, problem: Option<Problem>) -> i64 {
        let id = journal.add_recording(growing(dir.join(name))).unwrap().id;
        journal.mark_finished(id, 0, None).unwrap();
        journal.set_state_because(id, RecordingState::Failed, problem, Some("it went wrong")).unwrap();
        id
    }

    #[test]
    fn automatic_retries_skip_what_needs_the_teacher_and_stop_at_the_cap() {
        let (temp, journal) = journal();
        let retryable = failed_because(&journal, temp.path(), "parts.wav", Some(Problem::PartsMissing));
        let unexplained = failed_because(&journal, temp.path(), "unknown.wav", None);
        let changed = failed_because(&journal, temp.path(), "changed.wav", Some(Problem::FileChanged));
        let kept = failed_because(&journal, temp.path(), "kept.wav", Some(Problem::Storage));
        journal.set_keep_local(kept, true).unwrap();
        let ids = |cap| -> Vec<i64> {
            journal.retryable_failures(cap).unwrap().iter().map(|recording| recording.id).collect()
        };
        assert_eq!(ids(2), [retryable, unexplained]);
        assert!(!journal.begin_automatic_retry(changed, 2, 0).unwrap(), "needs the teacher");
        assert!(!journal.begin_automatic_retry(kept, 2, 0).unwrap(), "kept on this computer");

        // The first retry is due at once; the next one not before the time given.
        let later = now_unix() + 3600;
        assert!(journal.begin_automatic_retry(retryable, 2, later).unwrap());
        let read = journal.recording(retryable).unwrap().unwrap();
        assert_eq!(
            (read.state, read.retry_attempts, read.next_retry_at),
            (RecordingState::Stopped, 1, Some(later))
        );
        assert_eq!((read.problem, read.error), (None, None));
        assert!(!journal.begin_automatic_retry(retryable, 2, later).unwrap(), "not failed any more");
        journal
            .set_state_because(retryable, RecordingState::Failed, Some(Problem::PartsMissing), None)
            .unwrap();
        assert!(!journal.begin_automatic_retry(retryable, 2, later).unwrap(), "not due yet");
        // A restart does not reset the count or the time: they are in the file.
        let reopened = Journal::open(journal.path()).unwrap();
        let read = reopened.recording(retryable).unwrap().unwrap();
        assert_eq!((read.retry_attempts, read.next_retry_at), (1, Some(later)));
        reopened
            .read(|conn| {
                Ok(conn.execute("UPDATE recordings SET next_retry_at = 0 WHERE id = ?1", [retryable])?)
            })
            .unwrap();
        assert!(journal.begin_automatic_retry(retryable, 2, 0).unwrap());
        journal
            .set_state_because(retryable, RecordingState::Failed, Some(Problem::PartsMissing), None)
            .unwrap();
        // The cap holds.
        assert!(!journal.begin_automatic_retry(retryable, 2, 0).unwrap());
        assert_eq!(ids(2), [unexplained]);
        assert_eq!(ids(3), [retryable, unexplained]);

        // The teacher may retry anything that failed, and starts the count again.
        assert!(journal.retry_by_teacher(changed).unwrap());
        assert!(journal.retry_by_teacher(retryable).unwrap());
        assert!(journal.retry_by_teacher(kept).unwrap());
        for id in [changed, retryable, kept] {
            let read = journal.recording(id).unwrap().unwrap();
            assert_eq!(
                (read.state, read.retry_attempts, read.next_retry_at, read.problem, read.keep_local),
                (RecordingState::Stopped, 0, None, None, false)
            );
        }
        assert!(!journal.retry_by_teacher(changed).unwrap(), "only a failed recording is retried");
        assert!(matches!(journal.retry_by_teacher(999), Err(Error::UnknownRecording(999))));
    }
}
