//! Upload sessions and their parts.
//!
//! Invariants:
//! - A recording has at most one *live* session (not `aborted` or
//!   `expired`); [`Journal::open_session`] expires the older one in the
//!   same transaction, and a unique index makes a second one impossible.
//! - **A part row exists only after storage returned its ETag**, and that
//!   ETag is the MD5 of the bytes sent. So the only way to add a part is
//!   [`Journal::record_part_sent`], which checks the ETag against the MD5,
//!   that the part lies within the durable bytes, and that it sits where
//!   the session's fixed part size puts it (part *n* starts at
//!   `(n - 1) * part_size`; only the last part of a finished file is
//!   shorter). A re-sent part replaces its row.
//! - A session is marked `finish_sent` only when parts `1..=N` cover the
//!   finished file exactly ([`Journal::finish_parts`]), durably.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::recording::{self, RecordingState};
use crate::{Error, Journal, Result, now_unix};

/// SQL condition for a live session (at most one per recording).
pub(crate) const LIVE_SESSION: &str = "state NOT IN ('aborted', 'expired')";

/// The most parts the upload API allows in one session.
const API_MAX_PARTS: u32 = 10_000;

/// Where an upload session is; serialised snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Parts are being sent.
    Open,
    /// The server accepted `finish` (a repeated finish is harmless).
    FinishSent,
    /// The server completed the upload and the recording is ready.
    Completed,
    /// The session was aborted.
    Aborted,
    /// The session lapsed on the server, or a newer session replaced it.
    Expired,
}

impl SessionState {
    /// Every state.
    pub const ALL: [Self; 5] = [Self::Open, Self::FinishSent, Self::Completed, Self::Aborted, Self::Expired];

    /// The snake_case name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::FinishSent => "finish_sent",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
        }
    }

    /// Whether the session still counts for its recording (not aborted or expired).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Aborted | Self::Expired)
    }

    /// Whether [`Journal::set_session_state`] may move a session from `self`
    /// to `next`. `completed`, `aborted` and `expired` are final;
    /// `finish_sent` is reached only through [`Journal::mark_finish_sent`];
    /// `finish_sent` may go back to `open` when the server refused the
    /// finish (say, a part was missing) and parts must be sent again.
    pub fn can_become(self, next: Self) -> bool {
        use SessionState::*;
        match (self, next) {
            (from, to) if from == to => true,
            (_, FinishSent) | (Completed | Aborted | Expired, _) => false,
            (Open | FinishSent, _) => true,
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionState {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| Error::Invalid(format!("{name:?} is not an upload session state")))
    }
}

impl ToSql for SessionState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for SessionState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|err: Error| FromSqlError::Other(err.into()))
    }
}

/// The server's answer to `start`, as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// Where the session is.
    pub destination_id: i64,
    /// The server's recording id.
    pub server_recording_id: String,
    /// The multipart upload id.
    pub upload_id: String,
    /// The storage key the server chose.
    pub object_key: String,
    /// The size of every part but the last.
    pub part_size_bytes: u64,
    /// At most this many parts (the API allows 10 000).
    pub max_parts: u32,
    /// When the server gives up on the session, in seconds since the Unix epoch.
    pub expires_at: i64,
}

/// An upload session as the journal has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// The local id.
    pub id: i64,
    /// The local recording.
    pub recording_id: i64,
    /// Where the session is.
    pub destination_id: i64,
    /// The server's recording id.
    pub server_recording_id: String,
    /// The multipart upload id.
    pub upload_id: String,
    /// The storage key.
    pub object_key: String,
    /// The size of every part but the last.
    pub part_size_bytes: u64,
    /// At most this many parts.
    pub max_parts: u32,
    /// When the server gives up on the session, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// Where the session is.
    pub state: SessionState,
    /// The last problem seen with it.
    pub last_error: Option<String>,
    /// When it was opened, in seconds since the Unix epoch.
    pub created_at: i64,
}

impl UploadSession {
    /// Whether the server has given up on it by `now` (seconds since the epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// The offset of part `number` (1-based).
    pub fn part_offset(&self, number: u32) -> u64 {
        u64::from(number.saturating_sub(1)).saturating_mul(self.part_size_bytes)
    }
}

/// A part that storage accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartRecord {
    /// The part number, from 1.
    pub number: u32,
    /// Where the part starts in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub size: u64,
    /// The MD5 of its bytes, hex (stored lowercase).
    pub md5_hex: String,
    /// The ETag storage returned, as returned (quotes included); sent back in `finish`.
    pub etag: String,
}

impl PartRecord {
    /// The offset just past the part.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }
}

const SESSION_COLUMNS: &str = "id, recording_id, destination_id, server_recording_id, upload_id, object_key, \
     part_size_bytes, max_parts, expires_at, state, last_error, created_at";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        id: row.get(0)?,
        recording_id: row.get(1)?,
        destination_id: row.get(2)?,
        server_recording_id: row.get(3)?,
        upload_id: row.get(4)?,
        object_key: row.get(5)?,
        part_size_bytes: row.get(6)?,
        max_parts: row.get(7)?,
        expires_at: row.get(8)?,
        state: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
    })
}

fn part_from_row(row: &Row<'_>) -> rusqlite::Result<PartRecord> {
    Ok(PartRecord {
        number: row.get(0)?,
        offset: row.get(1)?,
        size: row.get(2)?,
        md5_hex: row.get(3)?,
        etag: row.get(4)?,
    })
}

fn load_session(conn: &rusqlite::Connection, id: i64) -> Result<Option<UploadSession>> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], session_from_row).optional()?)
}

fn load_existing_session(conn: &rusqlite::Connection, id: i64) -> Result<UploadSession> {
    load_session(conn, id)?.ok_or(Error::UnknownSession(id))
}

fn load_parts(conn: &rusqlite::Connection, session_id: i64) -> Result<Vec<PartRecord>> {
    let mut statement = conn.prepare(
        "SELECT part_number, byte_offset, size_bytes, md5, etag FROM parts WHERE session_id = ?1 ORDER BY part_number",
    )?;
    let rows = statement.query_map([session_id], part_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Checks that `parts` (sorted) are exactly parts `1..=N` of a file of
/// `total` bytes cut into `session.part_size_bytes` pieces.
fn check_coverage(session: &UploadSession, parts: &[PartRecord], total: Option<u64>) -> Result<(), String> {
    let Some(total) = total else {
        return Err("the recording is still growing".into());
    };
    if total == 0 {
        return Err("the recording is empty".into());
    }
    let needed = total.div_ceil(session.part_size_bytes);
    if needed > u64::from(session.max_parts) {
        return Err(format!("the file needs {needed} parts but the session allows {}", session.max_parts));
    }
    let have: BTreeSet<u64> = parts.iter().map(|part| u64::from(part.number)).collect();
    let missing: Vec<u64> = (1..=needed).filter(|number| !have.contains(number)).collect();
    if !missing.is_empty() {
        return Err(format!("{} of {needed} parts are not sent ({})", missing.len(), list(&missing)));
    }
    let extra: Vec<u64> = have.range(needed + 1..).copied().collect();
    if !extra.is_empty() {
        return Err(format!("parts {} lie past the end of the file", list(&extra)));
    }
    for part in parts {
        let offset = session.part_offset(part.number);
        let size = session.part_size_bytes.min(total - offset);
        if (part.offset, part.size) != (offset, size) {
            return Err(format!(
                "part {} covers bytes {}..{}, not {offset}..{}",
                part.number,
                part.offset,
                part.end(),
                offset + size
            ));
        }
    }
    Ok(())
}

fn list(numbers: &[u64]) -> String {
    const SHOWN: usize = 10;
    let mut text = numbers.iter().take(SHOWN).map(u64::to_string).collect::<Vec<_>>().join(", ");
    if numbers.len() > SHOWN {
        text.push_str(", ...");
    }
    text
}

impl Journal {
    /// Journals a session the server started for a recording, and makes
    /// its destination the recording's. Any older live session of the
    /// recording becomes `expired` in the same transaction, so
    /// [`Journal::current_session`] is always the newest.
    pub fn open_session(&self, recording_id: i64, new: NewSession) -> Result<UploadSession> {
        if new.part_size_bytes == 0 || !(1..=API_MAX_PARTS).contains(&new.max_parts) {
            return Err(Error::Invalid(format!(
                "a session needs a part size above 0 and 1 to {API_MAX_PARTS} parts, not {} bytes and {} parts",
                new.part_size_bytes, new.max_parts
            )));
        }
        if new.upload_id.is_empty() || new.server_recording_id.is_empty() {
            return Err(Error::Invalid("a session needs the server's recording id and upload id".into()));
        }
        self.write(|tx| {
            let recording = recording::load_existing(tx, recording_id)?;
            if recording.state == RecordingState::Ready {
                return Err(Error::WrongState {
                    recording_id,
                    state: recording.state,
                    action: "open an upload session",
                    hint: "it is already safe on the server",
                });
            }
            crate::destination::ensure_exists(tx, new.destination_id)?;
            let expired = tx.execute(
                &format!(
                    "UPDATE upload_sessions SET state = 'expired' WHERE recording_id = ?1 AND {LIVE_SESSION}"
                ),
                [recording_id],
            )?;
            let sql = format!(
                "INSERT INTO upload_sessions (recording_id, destination_id, server_recording_id, upload_id,
                     object_key, part_size_bytes, max_parts, expires_at, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9)
                 RETURNING {SESSION_COLUMNS}"
            );
            let session = tx.query_row(
                &sql,
                params![
                    recording_id,
                    new.destination_id,
                    new.server_recording_id,
                    new.upload_id,
                    new.object_key,
                    new.part_size_bytes,
                    new.max_parts,
                    new.expires_at,
                    now_unix()
                ],
                session_from_row,
            )?;
            tx.execute(
                "UPDATE recordings SET destination_id = ?2 WHERE id = ?1",
                params![recording_id, new.destination_id],
            )?;
            tracing::info!(recording_id, session_id = session.id, expired, "upload session opened");
            Ok(session)
        })
    }

    /// The recording's live session (not aborted or expired), if any.
    /// It may have lapsed on the server: check [`UploadSession::is_expired_at`].
    pub fn current_session(&self, recording_id: i64) -> Result<Option<UploadSession>> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE recording_id = ?1 AND {LIVE_SESSION}"
            );
            Ok(conn.query_row(&sql, [recording_id], session_from_row).optional()?)
        })
    }

    /// The session with this id.
    pub fn session(&self, session_id: i64) -> Result<Option<UploadSession>> {
        self.read(|conn| load_session(conn, session_id))
    }

    /// Every session of a recording, oldest first.
    pub fn sessions(&self, recording_id: i64) -> Result<Vec<UploadSession>> {
        self.read(|conn| {
            let sql =
                format!("SELECT {SESSION_COLUMNS} FROM upload_sessions WHERE recording_id = ?1 ORDER BY id");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map([recording_id], session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Moves a session to `state` (see [`SessionState::can_become`]) and
    /// records `last_error` (cleared when `None`).
    pub fn set_session_state(
        &self,
        session_id: i64,
        state: SessionState,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| {
            let session = load_existing_session(tx, session_id)?;
            if !session.state.can_become(state) {
                let hint = if state == SessionState::FinishSent {
                    "use mark_finish_sent, which checks the parts"
                } else {
                    "the session is over; resuming opens a new one"
                };
                return Err(Error::InvalidSessionTransition { session_id, from: session.state, to: state, hint });
            }
            tx.execute(
                "UPDATE upload_sessions SET state = ?2, last_error = ?3 WHERE id = ?1",
                params![session_id, state, last_error],
            )?;
            tracing::info!(session_id, from = %session.state, to = %state, last_error, "upload session state");
            Ok(())
        })
    }

    /// The parts to send in `finish`: parts `1..=N`, sorted, once they
    /// cover the finished file exactly; [`Error::Incomplete`] says what is
    /// missing otherwise.
    pub fn finish_parts(&self, session_id: i64) -> Result<Vec<PartRecord>> {
        self.read(|conn| {
            let session = load_existing_session(conn, session_id)?;
            let recording = recording::load_existing(conn, session.recording_id)?;
            let parts = load_parts(conn, session_id)?;
            check_coverage(&session, &parts, recording.total_bytes.filter(|_| recording.finished))
                .map_err(|reason| Error::Incomplete { session_id, reason })?;
            Ok(parts)
        })
    }

    /// Records, durably (`synchronous=FULL`), that the server accepted
    /// `finish`: the session becomes `finish_sent` and its recording
    /// `processing`, in one transaction. Refused ([`Error::Incomplete`])
    /// unless the parts cover the finished file exactly. Repeating it is
    /// harmless.
    pub fn mark_finish_sent(&self, session_id: i64) -> Result<()> {
        self.write_durably(|tx| {
            let session = load_existing_session(tx, session_id)?;
            if !matches!(session.state, SessionState::Open | SessionState::FinishSent) {
                return Err(Error::InvalidSessionTransition {
                    session_id,
                    from: session.state,
                    to: SessionState::FinishSent,
                    hint: "the session is over; resuming opens a new one",
                });
            }
            let recording = recording::load_existing(tx, session.recording_id)?;
            let hint = match recording.state {
                RecordingState::Recording => Some("the file is still being recorded"),
                RecordingState::Ready => Some("it is already safe on the server"),
                RecordingState::Failed => Some("a retry moves it back to uploading first"),
                _ => None,
            };
            if let Some(hint) = hint {
                return Err(Error::WrongState {
                    recording_id: recording.id,
                    state: recording.state,
                    action: "record that finish was sent",
                    hint,
                });
            }
            let parts = load_parts(tx, session_id)?;
            check_coverage(&session, &parts, recording.total_bytes.filter(|_| recording.finished))
                .map_err(|reason| Error::Incomplete { session_id, reason })?;
            tx.execute(
                "UPDATE upload_sessions SET state = 'finish_sent', last_error = NULL WHERE id = ?1",
                [session_id],
            )?;
            tx.execute(
                "UPDATE recordings SET state = 'processing', error = NULL WHERE id = ?1",
                [recording.id],
            )?;
            tracing::info!(recording_id = recording.id, session_id, parts = parts.len(), "finish sent");
            Ok(())
        })
    }

    /// Records a part that storage accepted: call it only once storage
    /// returned the part's ETag. Replaces an earlier row for the same part.
    /// Refused when the ETag is not the MD5 ([`Error::EtagMismatch`]), the
    /// part does not fit the session or the durable bytes
    /// ([`Error::InvalidPart`]), or the session is not `open`.
    pub fn record_part_sent(&self, session_id: i64, part: PartRecord) -> Result<()> {
        let number = part.number;
        let invalid = |reason: String| Error::InvalidPart { session_id, number, reason };
        let md5 =
            recording::normalise_hex(&part.md5_hex, 16, "the MD5").map_err(|err| invalid(err.to_string()))?;
        let etag_digest = part.etag.trim().trim_matches('"');
        if !etag_digest.eq_ignore_ascii_case(&md5) {
            return Err(Error::EtagMismatch { session_id, number, etag: part.etag, md5_hex: md5 });
        }
        self.write(|tx| {
            let session = load_existing_session(tx, session_id)?;
            if session.state != SessionState::Open {
                return Err(Error::SessionNotOpen { session_id, state: session.state, number });
            }
            let max_parts = session.max_parts.min(API_MAX_PARTS);
            if !(1..=max_parts).contains(&number) {
                return Err(invalid(format!("part numbers run from 1 to {max_parts}")));
            }
            let offset = session.part_offset(number);
            if part.offset != offset {
                return Err(invalid(format!(
                    "it starts at byte {}, but with {}-byte parts it starts at byte {offset}",
                    part.offset, session.part_size_bytes
                )));
            }
            if part.size == 0 || part.size > session.part_size_bytes {
                return Err(invalid(format!(
                    "its size {} is not between 1 and the part size {}",
                    part.size, session.part_size_bytes
                )));
            }
            let recording = recording::load_existing(tx, session.recording_id)?;
            let end = part.end();
            if end > recording.durable_bytes {
                return Err(invalid(format!(
                    "it ends at byte {end}, past the {} bytes journaled as durable",
                    recording.durable_bytes
                )));
            }
            let is_last = recording.finished && recording.total_bytes == Some(end);
            if part.size < session.part_size_bytes && !is_last {
                return Err(invalid(
                    "only the last part of a finished file may be shorter than the part size".into(),
                ));
            }
            tx.execute(
                "INSERT INTO parts (session_id, part_number, byte_offset, size_bytes, md5, etag, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (session_id, part_number) DO UPDATE SET
                     byte_offset = excluded.byte_offset, size_bytes = excluded.size_bytes,
                     md5 = excluded.md5, etag = excluded.etag, sent_at = excluded.sent_at",
                params![session_id, number, part.offset, part.size, md5, part.etag, now_unix()],
            )?;
            tracing::debug!(session_id, number, size = part.size, "part sent");
            Ok(())
        })
    }

    /// The session's sent parts, sorted by number.
    pub fn parts(&self, session_id: i64) -> Result<Vec<PartRecord>> {
        self.read(|conn| load_parts(conn, session_id))
    }

    /// Forgets a part (resume found it missing in storage, or with another
    /// MD5); returns whether it was journaled.
    pub fn forget_part(&self, session_id: i64, number: u32) -> Result<bool> {
        self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM parts WHERE session_id = ?1 AND part_number = ?2",
                params![session_id, number],
            )?;
            if deleted > 0 {
                tracing::info!(session_id, number, "part forgotten; it will be sent again");
            }
            Ok(deleted > 0)
        })
    }

    /// The bytes of the session's sent parts.
    pub fn sent_bytes(&self, session_id: i64) -> Result<u64> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT coalesce(sum(size_bytes), 0) FROM parts WHERE session_id = ?1",
                [session_id],
                |row| row.get(0),
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{growing, journal, md5_of, new_session, part};

    fn recording_with_bytes(journal: &Journal, dir: &std::path::Path, durable: u64) -> i64 {
        let id = journal.add_recording(growing(dir.join(format!("{durable}.wav")))).unwrap().id;
        journal.set_durable_bytes(id, durable).unwrap();
        id
    }

    #[test]
    fn session_states_serialise_snake_case() {
        for state in SessionState::ALL {
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{}\"", state.as_str()));
            assert_eq!(state.as_str().parse::<SessionState>().unwrap(), state);
        }
        assert_eq!(SessionState::FinishSent.as_str(), "finish_sent");
    }

    #[test]
    fn a_session_round_trips() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 0);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let new = new_session(destination, 5 * 1024 * 1024);
        let before = now_unix();
        let session = journal.open_session(recording, new.clone()).unwrap();
        assert_eq!(
            session,
            UploadSession {
                id: session.id,
                recording_id: recording,
                destination_id: destination,
                server_recording_id: new.server_recording_id,
                upload_id: new.upload_id,
                object_key: new.object_key,
                part_size_bytes: new.part_size_bytes,
                max_parts: new.max_parts,
                expires_at: new.expires_at,
                state: SessionState::Open,
                last_error: None,
                created_at: session.created_at,
            }
        );
        assert!(session.created_at >= before);
        assert_eq!(journal.session(session.id).unwrap(), Some(session.clone()));
        assert_eq!(journal.current_session(recording).unwrap(), Some(session.clone()));
        assert_eq!(journal.recording(recording).unwrap().unwrap().destination_id, Some(destination));
        assert!(session.is_expired_at(new.expires_at) && !session.is_expired_at(new.expires_at - 1));

        journal.set_session_state(session.id, SessionState::Open, Some("timed out")).unwrap();
        let reopened = Journal::open(journal.path()).unwrap();
        assert_eq!(reopened.session(session.id).unwrap().unwrap().last_error.as_deref(), Some("timed out"));
        assert_eq!(reopened.session(session.id + 1).unwrap(), None);
    }

    #[test]
    fn opening_a_new_session_expires_the_old_one() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 0);
        let other_recording = recording_with_bytes(&journal, temp.path(), 1);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let first = journal.open_session(recording, new_session(destination, 10)).unwrap();
        let unrelated = journal.open_session(other_recording, new_session(destination, 10)).unwrap();
        let second = journal
            .open_session(recording, NewSession { upload_id: "u-2".into(), ..new_session(destination, 10) })
            .unwrap();

        assert_eq!(journal.session(first.id).unwrap().unwrap().state, SessionState::Expired);
        assert_eq!(journal.current_session(recording).unwrap().unwrap().id, second.id);
        assert_eq!(
            journal.session(unrelated.id).unwrap().unwrap().state,
            SessionState::Open,
            "other recordings untouched"
        );
        let states: Vec<SessionState> =
            journal.sessions(recording).unwrap().iter().map(|s| s.state).collect();
        assert_eq!(states, [SessionState::Expired, SessionState::Open]);

        // An aborted session stays aborted; the expired one stays expired.
        journal.set_session_state(second.id, SessionState::Aborted, Some("teacher cancelled")).unwrap();
        assert_eq!(journal.current_session(recording).unwrap(), None);
        let third = journal.open_session(recording, new_session(destination, 10)).unwrap();
        let states: Vec<SessionState> =
            journal.sessions(recording).unwrap().iter().map(|s| s.state).collect();
        assert_eq!(states, [SessionState::Expired, SessionState::Aborted, SessionState::Open]);
        assert_eq!(journal.current_session(recording).unwrap().unwrap().id, third.id);

        assert!(matches!(
            journal.open_session(recording, new_session(999, 10)),
            Err(Error::UnknownDestination(999))
        ));
        assert!(matches!(
            journal.open_session(999, new_session(destination, 10)),
            Err(Error::UnknownRecording(999))
        ));
        assert!(matches!(
            journal.open_session(recording, new_session(destination, 0)),
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            journal.current_session(recording).unwrap().unwrap().id,
            third.id,
            "failed opens changed nothing"
        );
    }

    #[test]
    fn session_states_only_move_forward() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 0);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(recording, new_session(destination, 10)).unwrap();
        assert!(matches!(
            journal.set_session_state(session.id, SessionState::FinishSent, None),
            Err(Error::InvalidSessionTransition { .. })
        ));
        journal.set_session_state(session.id, SessionState::Expired, Some("lapsed")).unwrap();
        for next in [SessionState::Open, SessionState::Completed, SessionState::Aborted] {
            assert!(journal.set_session_state(session.id, next, None).is_err(), "expired -> {next}");
        }
        assert!(matches!(
            journal.set_session_state(999, SessionState::Open, None),
            Err(Error::UnknownSession(999))
        ));
        assert!(SessionState::FinishSent.can_become(SessionState::Open));
        assert!(!SessionState::Completed.can_become(SessionState::Open));
    }

    #[test]
    fn a_resent_part_replaces_its_row() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 30);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(recording, new_session(destination, 10)).unwrap();
        journal.record_part_sent(session.id, part(2, 10, 10)).unwrap();
        journal.record_part_sent(session.id, part(1, 10, 10)).unwrap();
        assert_eq!(journal.parts(session.id).unwrap(), [part(1, 10, 10), part(2, 10, 10)]);
        assert_eq!(journal.sent_bytes(session.id).unwrap(), 20);

        let md5 = md5_of("other bytes");
        let resent =
            PartRecord { md5_hex: md5.to_uppercase(), etag: format!("\"{md5}\""), ..part(2, 10, 10) };
        journal.record_part_sent(session.id, resent).unwrap();
        let parts = journal.parts(session.id).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[1].md5_hex.as_str(), parts[1].etag.clone()), (md5.as_str(), format!("\"{md5}\"")));
        assert_eq!(journal.sent_bytes(session.id).unwrap(), 20);

        assert!(journal.forget_part(session.id, 2).unwrap());
        assert!(!journal.forget_part(session.id, 2).unwrap());
        assert_eq!(journal.parts(session.id).unwrap(), [part(1, 10, 10)]);
        assert_eq!(journal.sent_bytes(session.id).unwrap(), 10);
        assert_eq!(journal.sent_bytes(999).unwrap(), 0);
    }

    #[test]
    fn a_part_must_match_its_etag_the_session_and_the_durable_bytes() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 25);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal
            .open_session(recording, NewSession { max_parts: 5, ..new_session(destination, 10) })
            .unwrap();
        let refused = |part: PartRecord| journal.record_part_sent(session.id, part).unwrap_err();

        let wrong_etag = PartRecord { etag: format!("\"{}\"", md5_of("else")), ..part(1, 10, 10) };
        assert!(matches!(refused(wrong_etag), Error::EtagMismatch { number: 1, .. }));
        let not_hex = PartRecord { md5_hex: "xyz".into(), etag: "xyz".into(), ..part(1, 10, 10) };
        assert!(matches!(refused(not_hex), Error::InvalidPart { .. }));
        assert!(matches!(refused(part(0, 10, 10)), Error::InvalidPart { .. }));
        assert!(matches!(refused(part(6, 10, 10)), Error::InvalidPart { .. }), "past max_parts");
        assert!(matches!(refused(PartRecord { offset: 5, ..part(1, 10, 10) }), Error::InvalidPart { .. }));
        assert!(matches!(refused(part(1, 10, 11)), Error::InvalidPart { .. }), "bigger than the part size");
        let err = refused(part(3, 10, 10));
        assert!(matches!(&err, Error::InvalidPart { reason, .. } if reason.contains("durable")), "{err}");
        assert!(matches!(refused(part(2, 10, 5)), Error::InvalidPart { .. }), "short part of a growing file");
        assert!(journal.parts(session.id).unwrap().is_empty(), "nothing refused was journaled");

        // Once finished at 25 bytes, part 3 may be 5 bytes long — and only that.
        journal.mark_finished(recording, 25, None).unwrap();
        assert!(matches!(refused(part(3, 10, 4)), Error::InvalidPart { .. }));
        journal.record_part_sent(session.id, part(3, 10, 5)).unwrap();
        // ETags compare without quotes and case.
        let md5 = md5_of("1");
        journal
            .record_part_sent(session.id, PartRecord { etag: md5.to_uppercase(), ..part(1, 10, 10) })
            .unwrap();

        journal.set_session_state(session.id, SessionState::Aborted, None).unwrap();
        assert!(matches!(
            refused(part(2, 10, 10)),
            Error::SessionNotOpen { state: SessionState::Aborted, .. }
        ));
        assert!(matches!(journal.record_part_sent(999, part(1, 10, 10)), Err(Error::UnknownSession(999))));
    }

    #[test]
    fn finish_needs_parts_that_cover_the_file_exactly() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 25);
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(recording, new_session(destination, 10)).unwrap();
        journal.record_part_sent(session.id, part(2, 10, 10)).unwrap();
        let err = journal.finish_parts(session.id).unwrap_err();
        assert!(matches!(&err, Error::Incomplete { reason, .. } if reason.contains("growing")), "{err}");

        journal.mark_finished(recording, 25, None).unwrap();
        journal.set_state(recording, RecordingState::Uploading, None).unwrap();
        let err = journal.finish_parts(session.id).unwrap_err();
        assert!(
            matches!(&err, Error::Incomplete { reason, .. } if reason.contains("2 of 3 parts") && reason.contains("1, 3")),
            "{err}"
        );
        assert!(matches!(journal.mark_finish_sent(session.id), Err(Error::Incomplete { .. })));
        assert_eq!(journal.session(session.id).unwrap().unwrap().state, SessionState::Open);

        journal.record_part_sent(session.id, part(1, 10, 10)).unwrap();
        journal.record_part_sent(session.id, part(3, 10, 5)).unwrap();
        assert_eq!(
            journal.finish_parts(session.id).unwrap(),
            [part(1, 10, 10), part(2, 10, 10), part(3, 10, 5)]
        );
        journal.set_state(recording, RecordingState::Finishing, None).unwrap();
        journal.mark_finish_sent(session.id).unwrap();
        journal.mark_finish_sent(session.id).unwrap();
        // Durable and visible to another connection.
        let other = Journal::open(journal.path()).unwrap();
        assert_eq!(other.session(session.id).unwrap().unwrap().state, SessionState::FinishSent);
        assert_eq!(other.recording(recording).unwrap().unwrap().state, RecordingState::Processing);
        // No more parts once finish was sent...
        assert!(matches!(
            journal.record_part_sent(session.id, part(1, 10, 10)),
            Err(Error::SessionNotOpen { state: SessionState::FinishSent, .. })
        ));
        // ...unless the server refused it and the session is open again.
        journal
            .set_session_state(session.id, SessionState::Open, Some("part 2 is missing in storage"))
            .unwrap();
        journal.record_part_sent(session.id, part(2, 10, 10)).unwrap();
    }

    #[test]
    fn finish_is_refused_for_a_failed_recording() {
        let (temp, journal) = journal();
        let recording = recording_with_bytes(&journal, temp.path(), 5);
        journal.mark_finished(recording, 5, None).unwrap();
        let destination = journal.upsert_destination("http://x", "t", "x").unwrap();
        let session = journal.open_session(recording, new_session(destination, 10)).unwrap();
        journal.record_part_sent(session.id, part(1, 10, 5)).unwrap();
        journal.set_state(recording, RecordingState::Failed, Some("quota")).unwrap();
        assert!(matches!(journal.mark_finish_sent(session.id), Err(Error::WrongState { .. })));
    }
}
