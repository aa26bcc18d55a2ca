//! Opptak's capture engine: the computer's audio inputs, and recording one
//! of them into WAV files that survive a crash; with the `video` feature,
//! the screen or a camera with a microphone into fragmented MP4 files that
//! survive a crash too ([`VideoRecorder`]).
//!
//! A [`Recorder`] writes 16-bit PCM through hound and fsyncs header and
//! samples every second, publishing how many bytes are durable so that an
//! uploader can send them while the lesson goes on. A file whose recorder
//! died is made whole again by [`repair_wav`]; an MP4 one is cut after its
//! last whole fragment by [`repair_fmp4`].
//!
//! ```no_run
//! use opptak_capture::{Recorder, RecorderConfig};
//! let recorder = Recorder::start(RecorderConfig::new("lesson.wav"))?;
//! std::thread::sleep(std::time::Duration::from_secs(5));
//! let files = recorder.stop()?;
//! println!("recorded {} bytes", files[0].durable_len);
//! # Ok::<(), opptak_capture::Error>(())
//! ```
#![warn(missing_docs)]

mod devices;
mod fmp4;
mod level;
mod recorder;
mod video;
mod wav;

pub use devices::{InputDevice, default_input, input_devices};
pub use fmp4::{RepairedMp4, repair_fmp4};
pub use level::{FLOOR_DBFS, Level};
pub use recorder::{AudioFormat, CaptureEvent, Progress, Recorder, RecorderConfig, RecorderState, WavFile};
pub use video::{
    CHECK_VIDEO_ARG, Camera, Screen, VIDEO_AUDIO_CHANNELS, VIDEO_AUDIO_RATE, VideoConfig, VideoFormat,
    VideoPreset, VideoRecorder, VideoSource, answer_video_check, cameras, check_video_in, default_display,
    screens, video_unavailable, wayland_session,
};
pub use wav::{MAX_DATA_BYTES, RepairedWav, repair_wav};

/// What a user can do when no microphone is found.
pub const NO_MICROPHONE_ADVICE: &str = "Plug in a microphone or headset, or check that the sound \
     system (PulseAudio or PipeWire) is running, then try again.";

/// Everything that can go wrong in capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The audio system offers no usable input device.
    #[error("No microphone found ({reason}). {NO_MICROPHONE_ADVICE}")]
    NoMicrophone {
        /// What the audio system said, for the log and for support.
        reason: String,
    },
    /// The input the user named does not exist.
    #[error("There is no microphone called {name:?}. Choose one of the microphones this computer lists.")]
    UnknownDevice {
        /// The name asked for.
        name: String,
    },
    /// The audio system could not be asked at all.
    #[error(
        "The sound system could not list audio inputs ({0}). Restart the computer's sound service and try again."
    )]
    Backend(String),
    /// Too little free disk space to record safely.
    #[error(
        "Only {} MB is free on the disk holding {path}; recording needs at least {} MB. Free some space and try again.",
        free / 1_000_000, needed / 1_000_000
    )]
    DiskFull {
        /// The folder the recording goes to.
        path: std::path::PathBuf,
        /// Bytes free.
        free: u64,
        /// Bytes required.
        needed: u64,
    },
    /// A recording file could not be written.
    #[error("Cannot write {path}: {source}. Check that the disk is not full and the folder is writable.")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Screen or camera recording cannot work here: GStreamer or a part of
    /// it is missing, or this build has no video.
    #[error(
        "Screen and camera recording is not available on this computer: {missing}. Recording sound alone still works."
    )]
    VideoUnavailable {
        /// What is missing and what to install.
        missing: String,
    },
    /// The desktop is a Wayland session: the X11 capture would film a
    /// black picture, and the portal capture is not built yet.
    #[error(
        "The screen of a Wayland desktop cannot be recorded yet (it would come out black). Log out, choose an Xorg (X11) session on the login screen and try again; recording sound alone works now."
    )]
    WaylandScreen,
    /// The screen cannot be recorded.
    #[error(
        "The screen {display} cannot be recorded: {reason}. Record from the desktop you are logged in to, or pick another screen."
    )]
    NoDisplay {
        /// The display asked for.
        display: String,
        /// Why it cannot be opened.
        reason: String,
    },
    /// The camera cannot be recorded.
    #[error(
        "The camera {camera} cannot be used: {reason}. Check that it is plugged in and that no other program is using it, or pick another camera."
    )]
    NoCamera {
        /// The camera asked for.
        camera: String,
        /// Why it cannot be opened.
        reason: String,
    },
    /// The video recorder failed in a way not covered above.
    #[error("The video recording failed: {0}. Try again; if it keeps failing, restart the computer.")]
    Video(String),
    /// A damaged recording could not be repaired.
    #[error("{path} cannot be repaired: {reason}. The file was left as it is.")]
    Unrepairable {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
