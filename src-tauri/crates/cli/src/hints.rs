//! What to type next, added to an engine error where the CLI prints it.
//!
//! The engine's messages are shared with the desktop app, so they name no
//! flags or commands; a terminal user is better served by the exact one.

use opptak_core::DATA_DIR_ENV;

/// The command-line hint for the first error in `err`'s chain that has one.
pub fn command_line_hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(hint_for)
}

fn hint_for(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(err) = cause.downcast_ref::<opptak_core::Error>() {
        return core_hint(err);
    }
    if let Some(err) = cause.downcast_ref::<opptak_upload::Error>() {
        return upload_hint(err);
    }
    if let Some(err) = cause.downcast_ref::<opptak_capture::Error>() {
        return capture_hint(err);
    }
    if let Some(opptak_journal::Error::Open { .. }) = cause.downcast_ref::<opptak_journal::Error>() {
        return Some(data_dir_hint());
    }
    None
}

/// How to choose the data folder from the command line.
pub fn data_dir_hint() -> String {
    format!("Choose the data folder with --data-dir or {DATA_DIR_ENV}.")
}

fn core_hint(err: &opptak_core::Error) -> Option<String> {
    use opptak_core::Error as Engine;
    match err {
        Engine::NoHomeDirectory | Engine::DataDirUnusable { .. } => Some(data_dir_hint()),
        Engine::Embedded(_) => Some("Run `opptak doctor` to see what is wrong.".into()),
        Engine::Recording(_) => Some("`opptak recordings` lists what was kept.".into()),
        Engine::UnknownKind { .. } => {
            Some("Pass --content-type (audio/wav, audio/flac, audio/ogg, video/mp4, video/webm) if the file's name does not say it.".into())
        }
        Engine::Credentials(_) => Some("Add the server again with --url and --token.".into()),
        Engine::Capture(inner) => capture_hint(inner),
        _ => None,
    }
}

fn upload_hint(err: &opptak_upload::Error) -> Option<String> {
    use opptak_upload::Error as Upload;
    match err {
        Upload::UnknownRecording(_) => Some("Run `opptak recordings` to see what is there.".into()),
        Upload::Unauthorized(_) => Some("Give the token with --token.".into()),
        Upload::Refused(_) | Upload::SourceAbandoned => {
            Some("Run `opptak resume` to repair and upload it.".into())
        }
        _ => None,
    }
}

fn capture_hint(err: &opptak_capture::Error) -> Option<String> {
    match err {
        opptak_capture::Error::UnknownDevice { .. } => Some("Run `opptak devices` to see the names.".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_folder_error_gets_the_flag_and_the_variable() {
        let err = anyhow::Error::new(opptak_core::Error::NoHomeDirectory);
        let hint = command_line_hint(&err).unwrap();
        assert!(hint.contains("--data-dir") && hint.contains(DATA_DIR_ENV), "{hint}");
    }

    #[test]
    fn an_unknown_microphone_points_at_opptak_devices_even_when_wrapped() {
        let capture = opptak_capture::Error::UnknownDevice { name: "USB Mic".into() };
        let err = anyhow::Error::new(opptak_core::Error::Capture(capture)).context("recording");
        assert!(command_line_hint(&err).unwrap().contains("opptak devices"));
    }

    #[test]
    fn a_refused_token_points_at_the_token_flag() {
        let err = anyhow::Error::new(opptak_upload::Error::Unauthorized("401".into()));
        assert!(command_line_hint(&err).unwrap().contains("--token"));
    }

    #[test]
    fn errors_without_a_command_line_remedy_get_no_hint() {
        let err = anyhow::Error::new(opptak_core::Error::AlreadyRecording);
        assert_eq!(command_line_hint(&err), None);
    }
}
