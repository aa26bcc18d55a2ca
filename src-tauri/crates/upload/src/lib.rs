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
pub use client::{ApiClient, CallError};
pub use engine::{UploadConfig, UploadEvent, UploadHandle, Uploaded, sha256_file};
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
        "There is no recording {0} in this data directory. Run `opptak recordings` to see what is there."
    )]
    UnknownRecording(i64),
    /// The recording is already safe on the server.
    #[error("This recording is already safe on the server; there is nothing to upload.")]
    AlreadyUploaded,
    /// The token was not accepted.
    #[error(
        "The server did not accept the token ({0}). Check --token, or ask your administrator for a new one."
    )]
    Unauthorized(String),
    /// The server refused a request for good.
    #[error(
        "The server refused the upload: {0}. The recording stays on this computer; `opptak resume` tries again."
    )]
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
        "The recording stopped growing without being finished. Run `opptak resume` to repair and upload it."
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
