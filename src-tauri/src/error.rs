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
        let code = match &err {
            opptak_core::Error::NoHomeDirectory => "no_home_directory",
            opptak_core::Error::DataDirUnusable { .. } => "data_dir_unusable",
            opptak_core::Error::Logging { .. } => "logging",
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
        assert!(err.message.contains("--data-dir"));
    }
}
