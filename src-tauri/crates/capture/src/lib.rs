//! Opptak's capture engine.
//!
//! For now it knows the computer's audio inputs: which microphones exist and
//! which one recording would use by default. Recording itself (cpal → WAV)
//! arrives with the recording issue and lives here too.
//!
//! ```no_run
//! match opptak_capture::default_input() {
//!     Ok(mic) => println!("would record from {} at {} Hz", mic.name, mic.sample_rate),
//!     Err(err) => eprintln!("{err}"),
//! }
//! ```
#![warn(missing_docs)]

mod devices;

pub use devices::{InputDevice, default_input, input_devices};

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
    /// The audio system could not be asked at all.
    #[error(
        "The sound system could not list audio inputs ({0}). Restart the computer's sound service and try again."
    )]
    Backend(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
