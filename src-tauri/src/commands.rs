//! The commands the UI can call. Each is thin: it asks `opptak-core` and maps
//! engine errors to [`CommandError`].

use opptak_core::doctor::DoctorReport;
use serde::Serialize;
use tauri::State;

use crate::{AppState, CommandError};

/// What the Settings screen shows about this installation.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// The app's version, as in its package.
    pub version: String,
    /// Where recordings, the journal and logs live.
    pub data_dir: String,
    /// The log file written now.
    pub log_file: String,
    /// Where recordings go, in words.
    pub destination: String,
}

/// The app's version and where it keeps its data.
#[tauri::command]
#[specta::specta]
pub fn app_info(state: State<'_, AppState>) -> Result<AppInfo, CommandError> {
    Ok(AppInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: state.data_dir.path().display().to_string(),
        log_file: state.log_file.display().to_string(),
        destination: state.destination.clone(),
    })
}

/// Runs the doctor's checks on this computer.
#[tauri::command]
#[specta::specta]
pub async fn doctor(state: State<'_, AppState>) -> Result<DoctorReport, CommandError> {
    let data_dir = state.data_dir.clone();
    // The checks touch the disk and the sound system: keep them off the
    // thread that serves the window.
    tauri::async_runtime::spawn_blocking(move || opptak_core::doctor::run(&data_dir)).await.map_err(|err| {
        CommandError::new("internal", format!("The computer check stopped unexpectedly ({err}). Try again."))
    })
}
