//! The one error type the UI receives from any command.

use serde::Serialize;

/// What a failed command tells the UI: a stable `code` to branch on and a
/// `message` that says what happened and what to do, ready to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// Stable, snake_case identifier of the kind of failure.
    pub code: String,
    /// A sentence for the teacher: what happened and what to do next.
    pub message: String,
}

impl CommandError {
    /// A failure of kind `code` with a message for the user.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

impl From<opptak_core::Error> for CommandError {
    fn from(err: opptak_core::Error) -> Self {
        use opptak_core::Error as Engine;
        use opptak_core::app_engine::CaptureError as Capture;
        let code = match &err {
            Engine::NoHomeDirectory => "no_home_directory",
            Engine::DataDirUnusable { .. } => "data_dir_unusable",
            Engine::DataDirFixed { .. } => "data_dir_fixed",
            Engine::MoveRefused { .. } => "move_refused",
            Engine::Logging { .. } => "logging",
            Engine::AlreadyRecording => "already_recording",
            Engine::NotRecording => "not_recording",
            // The engine's own words point at `opptak devices`, a command a
            // teacher in the app never types.
            Engine::Capture(Capture::UnknownDevice { name }) => {
                return Self::new(
                    "unknown_device",
                    format!(
                        "The microphone \"{name}\" is not connected any more. Choose another microphone in the list and try again."
                    ),
                );
            }
            Engine::Capture(Capture::NoMicrophone { .. }) => "no_microphone",
            Engine::Capture(Capture::DiskFull { .. }) => "disk_full",
            Engine::Capture(Capture::Backend(_)) => "sound_system",
            Engine::Capture(_) | Engine::Recording(_) => "recording_failed",
            _ => "engine",
        };
        Self::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_code_and_message() {
        let err = CommandError::new("data_dir_unusable", "The data directory cannot be used.");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"code": "data_dir_unusable", "message": "The data directory cannot be used."})
        );
    }

    #[test]
    fn engine_errors_keep_their_advice() {
        let err: CommandError = opptak_core::Error::NoHomeDirectory.into();
        assert_eq!(err.code, "no_home_directory");
        assert!(err.message.contains("Choose a data folder"));
    }
}
