//! Settings' "Save diagnostics for IT": one zip with the version, the
//! computer check and the last log lines, tokens taken out (`opptak-core`
//! writes it; `opptak doctor --bundle` writes the same file).

use opptak_core::diagnostics::DiagnosticsFile;
use tauri::State;

use crate::{AppState, CommandError};

/// Writes the diagnostics zip where the teacher chose to save it.
#[tauri::command]
#[specta::specta]
pub async fn save_diagnostics(
    state: State<'_, AppState>,
    path: String,
) -> Result<DiagnosticsFile, CommandError> {
    let engine = state.engine()?;
    let opptak = engine.opptak().clone();
    tauri::async_runtime::spawn_blocking(move || opptak.write_diagnostics(std::path::Path::new(&path)))
        .await
        .map_err(|err| {
            CommandError::new(
                "internal",
                format!("Saving the diagnostics stopped unexpectedly ({err}). Try again."),
            )
        })?
        .map_err(|err| CommandError::new("diagnostics_unwritable", err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opptak_core::{AppEngine, DataDir, Opptak, TokenStore};
    use serde_json::json;

    use crate::test_support::{call, mock_window};

    #[test]
    fn the_diagnostics_zip_is_saved_without_the_school_token_and_a_bad_place_says_what_to_do() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path().join("data"));
        let tokens = TokenStore::new(data_dir.path().join("tokens.json"), true);
        let opptak = Opptak::open_with_tokens(&data_dir, tokens).unwrap();
        let token = "the-school-token-42";
        opptak.add_destination("School", "https://opptak.school.example", token).unwrap();
        std::fs::create_dir_all(data_dir.logs()).unwrap();
        std::fs::write(data_dir.logs().join("opptak.2026-12-05.log"), format!("INFO sent {token}\n"))
            .unwrap();
        let engine = Arc::new(AppEngine::with_destination(opptak, None, "This computer (test)".into()));
        let (_app, window) = mock_window(data_dir.path(), Ok(engine));

        let out = temp.path().join("opptak-diagnostics.zip");
        let saved = call(&window, "save_diagnostics", json!({"path": out.display().to_string()})).unwrap();
        assert_eq!(
            (saved["logLines"].as_u64(), saved["removedSecrets"].as_u64()),
            (Some(1), Some(1)),
            "{saved}"
        );
        // What the zip holds, and that the token is not in it, is opptak-core's test.
        assert!(std::fs::read(&out).unwrap().starts_with(b"PK"));

        let missing = temp.path().join("no-such-folder/opptak-diagnostics.zip");
        let err =
            call(&window, "save_diagnostics", json!({"path": missing.display().to_string()})).unwrap_err();
        assert_eq!(err["code"], "diagnostics_unwritable", "{err}");
        assert!(err["message"].as_str().unwrap().contains("Choose another folder"), "{err}");
    }
}
