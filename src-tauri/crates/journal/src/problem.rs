//! Why a recording is where it is, as data: the UI and the retry policy
//! branch on a [`Problem`], never on the words of an error message.
//!
//! A problem is stored beside the recording's state (column `problem`,
//! snake_case text) by [`Journal::set_state_because`] and cleared by every
//! state change that gives none. The free-text `error` column keeps the
//! detail for people.
//!
//! Problems split in two: those that need the teacher
//! ([`Problem::needs_teacher`]: the file changed or is gone, the server
//! refused the token, the server says it is not a valid recording) and
//! those that retrying can fix by itself (the network, the server, storage,
//! a recorder that died while its upload was growing).

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::Journal;
use crate::{Error, Result};

/// A machine-readable reason for a recording's state; serialised snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The destination cannot be reached at all.
    Offline,
    /// A connection was open but no bytes moved for too long.
    Stalled,
    /// The server answered that it is overloaded or unavailable (429, 5xx).
    ServerBusy,
    /// The server kept losing the upload session, and restarting it was capped.
    SessionRestarts,
    /// The local file is not what was recorded any more (its size or
    /// checksum changed).
    FileChanged,
    /// The local file is gone or cannot be read.
    FileMissing,
    /// The server refused the sign-in token.
    TokenRefused,
    /// The server says the file is not a valid recording.
    Rejected,
    /// `finish` was refused because parts the server had acknowledged are
    /// missing (storage lost them, e.g. in a server crash).
    PartsMissing,
    /// The server's storage failed.
    Storage,
    /// The recorder failed while its upload was growing.
    RecorderError,
    /// Anything else.
    Unknown,
}

impl Problem {
    /// Every problem.
    pub const ALL: [Self; 12] = [
        Self::Offline,
        Self::Stalled,
        Self::ServerBusy,
        Self::SessionRestarts,
        Self::FileChanged,
        Self::FileMissing,
        Self::TokenRefused,
        Self::Rejected,
        Self::PartsMissing,
        Self::Storage,
        Self::RecorderError,
        Self::Unknown,
    ];

    /// The snake_case name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Stalled => "stalled",
            Self::ServerBusy => "server_busy",
            Self::SessionRestarts => "session_restarts",
            Self::FileChanged => "file_changed",
            Self::FileMissing => "file_missing",
            Self::TokenRefused => "token_refused",
            Self::Rejected => "rejected",
            Self::PartsMissing => "parts_missing",
            Self::Storage => "storage",
            Self::RecorderError => "recorder_error",
            Self::Unknown => "unknown",
        }
    }

    /// Whether only the teacher can fix it (restore the file, sign in
    /// again, pick another file): retrying on its own would fail the same
    /// way, so it is retried only when the teacher asks. Every other
    /// problem is retried automatically, with backoff and a cap.
    pub fn needs_teacher(self) -> bool {
        matches!(self, Self::FileChanged | Self::FileMissing | Self::TokenRefused | Self::Rejected)
    }

    /// A short description in a teacher's words, used when no detail was
    /// journaled.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Offline => "the server cannot be reached",
            Self::Stalled => "the connection stalled",
            Self::ServerBusy => "the server is busy",
            Self::SessionRestarts => "the server kept losing the upload",
            Self::FileChanged => "the recording's file changed after it was recorded",
            Self::FileMissing => "the recording's file is missing",
            Self::TokenRefused => "the server refused the sign-in",
            Self::Rejected => "the server says this is not a valid recording",
            Self::PartsMissing => "the server lost parts of the upload",
            Self::Storage => "the server's storage failed",
            Self::RecorderError => "the recorder stopped with an error",
            Self::Unknown => "something unexpected went wrong",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Problem {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|problem| problem.as_str() == name)
            .ok_or_else(|| Error::Invalid(format!("{name:?} is not a recording problem")))
    }
}

impl ToSql for Problem {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for Problem {
    /// A name this version does not know (written by a newer Opptak) reads
    /// as [`Problem::Unknown`] rather than making the row unreadable.
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Ok(name.parse().unwrap_or_else(|_| {
            tracing::warn!(name, "the journal holds a problem this version does not know");
            Self::Unknown
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_serialise_snake_case_and_parse_back() {
        for problem in Problem::ALL {
            let json = serde_json::to_string(&problem).unwrap();
            assert_eq!(json, format!("\"{}\"", problem.as_str()));
            assert_eq!(problem.as_str().parse::<Problem>().unwrap(), problem);
            assert!(!problem.describe().is_empty());
        }
        assert_eq!(serde_json::to_string(&Problem::ServerBusy).unwrap(), "\"server_busy\"");
        assert!("ServerBusy".parse::<Problem>().is_err());
    }

    #[test]
    fn only_what_the_teacher_must_fix_needs_the_teacher() {
        let needs: Vec<Problem> =
            Problem::ALL.into_iter().filter(|problem| problem.needs_teacher()).collect();
        assert_eq!(
            needs,
            [Problem::FileChanged, Problem::FileMissing, Problem::TokenRefused, Problem::Rejected]
        );
    }
}
