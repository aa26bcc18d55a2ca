//! Opptak's engine as the desktop app and the `opptak` CLI share it.
//!
//! Front ends call this crate and never reach past it: they resolve the
//! [`DataDir`], start [`logging`], and ask the [`doctor`] whether this computer
//! can record and upload. They record through [`Opptak::record`] and
//! upload through [`Opptak::upload`]; both leave everything they learn in
//! the journal, so [`Opptak::open`] can repair and resume after a crash.
//!
//! ```no_run
//! let data_dir = opptak_core::DataDir::resolve(None)?;
//! let report = opptak_core::doctor::run(&data_dir);
//! for check in &report.checks {
//!     println!("{:?} {}: {}", check.status, check.title, check.detail);
//! }
//! # Ok::<(), opptak_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod app_engine;
mod data_dir;
pub mod data_move;
pub mod destinations;
pub mod diagnostics;
pub mod doctor;
pub mod library;
pub mod logging;
pub mod playback;
pub mod recording;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod updates;
pub mod uploads;

pub use app_engine::{AppEngine, RecordingFeed, RecordingStatus};
pub use data_dir::{DATA_DIR_ENV, DataDir, Origin};
pub use destinations::{
    ConnectionCheck, ConnectionOutcome, CredentialStore, DestinationInfo, SettingsView, TokenStore,
    check_connection,
};
pub use library::{Library, LibraryEntry, LibraryStatus};
/// What a recorder reports while it records: levels, silence, pauses.
pub use opptak_capture::{CHECK_VIDEO_ARG, CaptureEvent, answer_video_check, check_video_in};
/// Why a recording is in its state, as the journal has it.
pub use opptak_journal::Problem;
pub use recording::{RecordOptions, RecordedFile, RecordingSession, SessionEvent, StoppedRecording};
pub use uploads::{Destination, FailedWaits, Opptak, RetryPolicy, Target};

/// Everything that can go wrong in the engine's shared parts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No data directory was given and the OS offers no home for one.
    #[error(
        "Could not find a place for Opptak's data: this user has no home folder. \
         Choose a data folder Opptak can write to."
    )]
    NoHomeDirectory,
    /// The data directory cannot be created or written.
    #[error(
        "The data folder {path} cannot be used ({source}). Choose another data folder, or ask your IT administrator to let you write to this one."
    )]
    DataDirUnusable {
        /// The directory that was tried.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The data folder was set by a flag or [`DATA_DIR_ENV`], so Settings
    /// cannot move it.
    #[error(
        "The data folder {path} is set by {by}, so it cannot be moved from Settings. Ask whoever set it up to change it there."
    )]
    DataDirFixed {
        /// The data folder.
        path: std::path::PathBuf,
        /// What set it.
        by: String,
    },
    /// The data folder cannot move where asked; nothing was moved.
    #[error("The data folder cannot move to {to}: {reason}. Nothing was moved.")]
    MoveRefused {
        /// Where it was to go.
        to: std::path::PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The journal failed.
    #[error(
        "The upload journal failed: {0}. Check that the data folder is writable and the disk is not full."
    )]
    Journal(String),
    /// A file given to upload cannot be used.
    #[error("Cannot upload {path}: {reason}. Choose a recording file.")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file given to upload is not a kind of recording Opptak knows.
    #[error(
        "Cannot upload {path}: Opptak uploads WAV, FLAC, Ogg, MP4 and WebM recordings, and its name says none of these. Rename it or convert it to one of those."
    )]
    UnknownKind {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The embedded server could not start.
    #[error(
        "Opptak's own server on this computer could not start: {0}. Close Opptak and open it again; if this happens again, look at the computer check for what is wrong."
    )]
    Embedded(String),
    /// The server that plays recordings in the window could not start.
    #[error(
        "Recordings cannot be played in the app right now ({0}). Open the recording's folder to play it in another program."
    )]
    Playback(String),
    /// The microphone or the recording file failed.
    #[error(transparent)]
    Capture(#[from] opptak_capture::Error),
    /// A recording could not be started, followed or stopped.
    #[error("The recording failed: {0}. What was recorded so far is kept and listed with your recordings.")]
    Recording(String),
    /// A recording was started while another one runs.
    #[error("A recording is already running. Stop it before you start another one.")]
    AlreadyRecording,
    /// Pause, resume or stop was asked with no recording running.
    #[error("Nothing is being recorded right now. Start a recording first.")]
    NotRecording,
    /// No recording has this id (it was deleted, or the list is out of date).
    #[error("This recording is not in Opptak's list any more. Look at the Library again.")]
    UnknownRecording(i64),
    /// A recording was given a blank name.
    #[error("A recording needs a name. Type one and try again.")]
    BlankName,
    /// The local copy of a recording still being recorded was to be deleted.
    #[error("\"{name}\" is still being recorded. Stop the recording first.")]
    StillRecording {
        /// The recording's name.
        name: String,
    },
    /// The local copy is the only one: the server does not hold the recording.
    #[error(
        "\"{name}\" is only on this computer: it is not safe on the server yet. Deleting it deletes the only copy."
    )]
    OnlyCopy {
        /// The recording's name.
        name: String,
    },
    /// Retry was asked for a recording whose upload did not fail.
    #[error("\"{name}\" has not failed, so there is nothing to retry. Its upload goes on by itself.")]
    NotRetryable {
        /// The recording's name.
        name: String,
    },
    /// The local file could not be deleted.
    #[error(
        "Could not delete the file of \"{name}\" ({source}). Check that it is not open in another program and try again."
    )]
    Delete {
        /// The recording's name.
        name: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A web address given for a destination cannot be used.
    #[error(
        "The address \"{url}\" cannot be used: {reason}. Copy the address your school gave for Opptak, for example https://opptak.school.example."
    )]
    InvalidUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No destination has this id (it was removed meanwhile).
    #[error("That destination is not in the list any more ({0}). Reopen Settings to see the current list.")]
    UnknownDestination(String),
    /// A destination cannot be added, removed or changed as asked; the
    /// message says why and what to do.
    #[error("{0}")]
    Destination(String),
    /// The settings file cannot be read or written.
    #[error("Opptak's settings in {path} cannot be used: {reason}.")]
    Settings {
        /// The settings file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A token cannot be kept or read.
    #[error("A school server's token could not be kept or read: {0}.")]
    Credentials(String),
    /// The diagnostics file could not be written.
    #[error(
        "The diagnostics file {path} could not be written ({reason}). Choose another folder and try again."
    )]
    Diagnostics {
        /// Where it was to go.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The log file could not be set up.
    #[error("Could not start logging to {path} ({reason}). Check that the data folder is writable.")]
    Logging {
        /// The log directory that was tried.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
