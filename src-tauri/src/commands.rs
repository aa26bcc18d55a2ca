//! The commands the UI can call. Each is thin: it asks `opptak-core` and maps
//! engine errors to [`CommandError`].

use std::sync::Arc;

use opptak_core::AppEngine;
use opptak_core::doctor::DoctorReport;
use serde::Serialize;
use tauri::State;
use tauri::ipc::Channel;

use crate::events::{self, RecordEvent};
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
        destination: state.destination(),
    })
}

/// Runs the doctor's checks on this computer.
#[tauri::command]
#[specta::specta]
pub async fn doctor(state: State<'_, AppState>) -> Result<DoctorReport, CommandError> {
    let data_dir = state.data_dir.clone();
    // The checks touch the disk and the sound system: keep them off the
    // thread that serves the window.
    tauri::async_runtime::spawn_blocking(move || opptak_core::doctor::run(&data_dir))
        .await
        .map_err(|err| stopped_unexpectedly("The computer check", err))
}

fn stopped_unexpectedly(what: &str, err: impl std::fmt::Display) -> CommandError {
    CommandError::new("internal", format!("{what} stopped unexpectedly ({err}). Try again."))
}

/// A microphone the teacher can choose.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Microphone {
    /// The name the computer gives it; pass it to `start_recording`.
    pub name: String,
    /// Whether the computer uses it when none is chosen.
    pub is_default: bool,
}

/// The microphones this computer offers, the system default first.
#[tauri::command]
#[specta::specta]
pub async fn list_microphones() -> Result<Vec<Microphone>, CommandError> {
    let inputs = tauri::async_runtime::spawn_blocking(AppEngine::microphones)
        .await
        .map_err(|err| stopped_unexpectedly("Looking for microphones", err))??;
    Ok(inputs
        .into_iter()
        .map(|input| Microphone { name: input.name, is_default: input.is_default })
        .collect())
}

/// What the Record screen shows once recording has started.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RecordingStarted {
    /// The recording's name, as it will be listed.
    pub name: String,
    /// Where it uploads to, in words.
    pub destination: String,
}

/// Starts recording `device` (`null`: the system default) as `name`
/// (blank: a name with the date and time). Levels, elapsed time, warnings
/// and, after Stop, where the recording is arrive on `on_event` until it is
/// safe on the server or has failed.
#[tauri::command]
#[specta::specta]
pub async fn start_recording(
    state: State<'_, AppState>,
    device: Option<String>,
    name: String,
    on_event: Channel<RecordEvent>,
) -> Result<RecordingStarted, CommandError> {
    let engine = state.engine()?;
    let name = Some(name.trim().to_owned()).filter(|name| !name.is_empty());
    let feed = engine.start(device.filter(|device| !device.is_empty()), name.clone()).await?;
    let listed_as = engine
        .opptak()
        .journal()
        .recording(feed.local_id)
        .ok()
        .flatten()
        .map(|recording| recording.name)
        .or(name)
        .unwrap_or_default();
    tauri::async_runtime::spawn(events::forward(feed, on_event));
    Ok(RecordingStarted { name: listed_as, destination: engine.destination_label().to_owned() })
}

/// Pauses the recording; paused time is not recorded.
#[tauri::command]
#[specta::specta]
pub async fn pause_recording(state: State<'_, AppState>) -> Result<(), CommandError> {
    Ok(state.engine()?.pause().await?)
}

/// Continues the recording after a pause.
#[tauri::command]
#[specta::specta]
pub async fn resume_recording(state: State<'_, AppState>) -> Result<(), CommandError> {
    Ok(state.engine()?.resume().await?)
}

/// Stops the recording and finishes its file; its upload goes on, and
/// where it is arrives on the channel `start_recording` was given.
#[tauri::command]
#[specta::specta]
pub async fn stop_recording(state: State<'_, AppState>) -> Result<(), CommandError> {
    state.engine()?.stop().await?;
    Ok(())
}

impl AppState {
    /// The engine, or why it could not open.
    pub fn engine(&self) -> Result<Arc<AppEngine>, CommandError> {
        self.engine.clone()
    }

    /// Where recordings go, in words, or why they cannot go anywhere.
    pub fn destination(&self) -> String {
        match &self.engine {
            Ok(engine) => engine.destination_label().to_owned(),
            Err(err) => err.message.clone(),
        }
    }
}
