//! Opptak's upload engine: a client of the native upload API and the part
//! scheduler that takes a local recording — finished, or still growing —
//! to `ready` on a server, with the SHA-256 checked on both sides.
//!
//! Everything it learns is written to the journal (`opptak-journal`)
//! before it is relied on, so any process can resume an upload after a
//! crash, a closed lid or a lost network, and send again at most the parts
//! that were in flight.
//!
//! ```no_run
//! # async fn demo(journal: opptak_journal::Journal, id: i64, destination: i64, len: u64) -> opptak_upload::Result<()> {
//! use opptak_upload::{ApiClient, Source, UploadConfig, UploadHandle};
//! let client = ApiClient::new("http://127.0.0.1:8080", "teacher-token");
//! let source = Source::complete(std::path::Path::new("lesson.wav"), len);
//! let upload = UploadHandle::start(journal, id, destination, source, client, UploadConfig::default());
//! let mut events = upload.subscribe();
//! tokio::spawn(async move { while let Ok(event) = events.recv().await { println!("{event:?}") } });
//! let done = upload.join().await?;
//! println!("safe on server: {}", done.sha256);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod backoff;
mod body;
mod client;
mod engine;
mod lanes;
mod source;

pub use backoff::Backoff;
pub use client::{API_TIMEOUT, ApiClient, CONNECT_TIMEOUT, CallError, STALL_TIMEOUT};
pub use engine::{
    MAX_SESSION_RESTARTS, READY_DEADLINE, UploadConfig, UploadEvent, UploadHandle, Uploaded, sha256_file,
};
pub use source::{Source, SourceState};

/// Why an upload stopped. Each message says what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal failed or refused a change.
    #[error(transparent)]
    Journal(#[from] opptak_journal::Error),
    /// The journal has no such recording.
    #[error(
        "There is no recording {0} in this data folder. Look at the list of recordings to see what is there."
    )]
    UnknownRecording(i64),
    /// The recording is already safe on the server.
    #[error("This recording is already safe on the server; there is nothing to upload.")]
    AlreadyUploaded,
    /// The token was not accepted.
    #[error(
        "The server did not accept the token ({0}). Check the token you were given, or ask your administrator for a new one."
    )]
    Unauthorized(String),
    /// The server refused a request for good.
    #[error("The server refused the upload: {0}. The recording stays on this computer; retry it later.")]
    Refused(String),
    /// The local file no longer holds the bytes already sent.
    #[error(
        "{path} changed after part {part} was uploaded, so the server would get a mix of old and new bytes. Nothing more was sent; upload the file again as a new recording."
    )]
    FileChanged {
        /// The file.
        path: String,
        /// The first part whose bytes differ.
        part: u32,
    },
    /// The writer of a growing file went away without finishing it.
    #[error(
        "The recording stopped growing without being finished. Opptak repairs and uploads it the next time it starts."
    )]
    SourceAbandoned,
    /// The server could not process what it received; the reason is the server's.
    #[error(
        "The server could not process the recording: {}. The file stays on this computer: if it plays in a media player, upload it again; if not, it is damaged or not the kind of file its name says.",
        .0.trim_end_matches('.')
    )]
    ServerRejected(String),
    /// The server holds other bytes than the local file.
    #[error(
        "The server's copy differs from this computer's (SHA-256 {server} vs {local}). The local file is kept; upload it again."
    )]
    ChecksumMismatch {
        /// The local file's SHA-256.
        local: String,
        /// The server's SHA-256.
        server: String,
    },
    /// The server kept ending the upload session.
    #[error(
        "The server ended the upload {times} times in a row (last: {reason}), so Opptak stopped asking for new ones. The recording stays on this computer. Check the server address, or ask your IT administrator whether the server keeps its uploads."
    )]
    SessionsKeepEnding {
        /// Sessions ended in this run.
        times: u32,
        /// The server's last reason.
        reason: String,
    },
    /// The part URLs the server hands out do not reach its storage.
    #[error(
        "The server accepted the upload, but the address it gives for the recording's data does not reach its storage ({answer}, {times} times). The recording stays on this computer. Check the server address, or ask your IT administrator to check the server's public address and that it passes on the /storage/ path."
    )]
    StorageNotFound {
        /// What storage answered, naming its host.
        answer: String,
        /// How many times.
        times: u32,
    },
    /// The server did not finish checking the recording in time. Not a
    /// failure: the recording stays `processing`.
    #[error(
        "Every part is on the server, but it was still checking the recording after {} minutes. The recording stays on this computer and the check is asked about again when uploads resume.",
        .waited.as_secs().div_ceil(60)
    )]
    StillChecking {
        /// The server's recording id.
        recording_id: String,
        /// How long the upload waited.
        waited: std::time::Duration,
    },
    /// The local file could not be read.
    #[error("Cannot read {path}: {source}. Check that the file exists and is readable.")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A bug or a runtime failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The journal's machine-readable reason for an upload that ended with
    /// this error: whether it needs the teacher or may be retried by itself.
    pub fn problem(&self) -> opptak_journal::Problem {
        use opptak_journal::Problem;
        match self {
            Self::Unauthorized(_) => Problem::TokenRefused,
            Self::FileChanged { .. } => Problem::FileChanged,
            Self::Read { .. } | Self::UnknownRecording(_) => Problem::FileMissing,
            Self::ServerRejected(_) => Problem::Rejected,
            // A new session, or part URLs that reach storage, may come
            // once the server (or its IT) is fixed.
            Self::SessionsKeepEnding { .. } | Self::StorageNotFound { .. } => Problem::SessionRestarts,
            Self::SourceAbandoned => Problem::RecorderError,
            // The server holds other bytes than were sent: a new upload can fix it.
            Self::ChecksumMismatch { .. } => Problem::Storage,
            Self::StillChecking { .. } => Problem::ServerBusy,
            Self::Journal(_) | Self::AlreadyUploaded | Self::Refused(_) | Self::Internal(_) => {
                Problem::Unknown
            }
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_rejected_recording_says_why_and_what_to_do_in_one_line() {
        let message = Error::ServerRejected(
            "The file is not a readable WAV recording (Failed to read enough bytes.).".into(),
        )
        .to_string();
        assert_eq!(
            message,
            "The server could not process the recording: The file is not a readable WAV recording (Failed to read enough bytes.). \
             The file stays on this computer: if it plays in a media player, upload it again; if not, it is damaged or not the kind of file its name says."
        );
        assert!(!message.contains('\n'));
    }
}
