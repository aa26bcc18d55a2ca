//! Opptak's desktop app: a thin Tauri shell over `opptak-core`.
//!
//! [`create_app`] wires commands and state into any Tauri runtime, so the
//! real app ([`run`]) and the mock-runtime tests build the same app.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use opptak_core::logging::{self, LogFormat};
use opptak_core::uploads::UploadConfig;
use opptak_core::{DataDir, Destination, Opptak, Target};
use tauri::Runtime;

pub mod commands;
mod error;

pub use error::CommandError;

/// What every command can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Opptak's data directory.
    pub data_dir: DataDir,
    /// The log file written now.
    pub log_file: PathBuf,
    /// Where recordings go, in words ("This computer (http://127.0.0.1:…)").
    pub destination: String,
    /// The embedded server, kept running while the app is open.
    pub embedded: Option<Arc<Destination>>,
}

/// The commands and their TypeScript bindings, from one list.
pub fn bindings<R: Runtime>() -> tauri_specta::Builder<R> {
    tauri_specta::Builder::<R>::new()
        .commands(tauri_specta::collect_commands![commands::app_info, commands::doctor])
}

/// Writes the UI's TypeScript bindings to `path`.
pub fn export_bindings(path: &std::path::Path) -> Result<(), String> {
    bindings::<tauri::Wry>()
        .export(specta_typescript::Typescript::default().header("/* eslint-disable */\n// @ts-nocheck"), path)
        .map_err(|err| err.to_string())
}

/// Adds Opptak's state and commands to `builder`.
pub fn create_app<R: Runtime>(builder: tauri::Builder<R>, state: AppState) -> tauri::Builder<R> {
    let bindings = bindings::<R>();
    builder.manage(state).invoke_handler(bindings.invoke_handler())
}

/// Starts Opptak's own server in this process ("This computer"), the
/// default destination, so recordings upload with no network and no LMS.
/// When it cannot start, the app still opens and says why in Settings.
fn start_embedded_destination(data_dir: &DataDir) -> (String, Option<Arc<Destination>>) {
    let started = tauri::async_runtime::block_on(async {
        let opptak = Opptak::open(data_dir)?;
        let destination = opptak.connect(&Target::Embedded).await?;
        // Uploads a crash, a closed lid or a lost network interrupted go on
        // in the background; their state is in the journal.
        match opptak.resume_all(Some(&destination), UploadConfig::default()).await {
            Ok(running) => tracing::info!(uploads = running.len(), "resumed unfinished uploads"),
            Err(err) => tracing::error!(error = %err, "could not resume unfinished uploads"),
        }
        Ok::<_, opptak_core::Error>(destination)
    });
    match started {
        Ok(destination) => {
            let label =
                format!("{} ({})", opptak_core::uploads::EMBEDDED_NAME, destination.client.base_url());
            tracing::info!(destination = %label, "embedded destination ready");
            (label, Some(Arc::new(destination)))
        }
        Err(err) => {
            tracing::error!(error = %err, "embedded destination failed");
            (format!("{} is not available: {err}", opptak_core::uploads::EMBEDDED_NAME), None)
        }
    }
}

/// Starts the desktop app and returns when its last window closes.
pub fn run() -> ExitCode {
    let data_dir = match DataDir::resolve(None) {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("Opptak cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The app still opens when logging cannot start, so Settings can show
    // the doctor's findings about the data directory.
    let log = logging::init(&data_dir, LogFormat::Text);
    let log_file = match &log {
        Ok(guard) => guard.file().to_path_buf(),
        Err(err) => {
            eprintln!("{err}");
            data_dir.logs()
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %data_dir.path().display(), "Opptak desktop starting");
    let (destination, embedded) = start_embedded_destination(&data_dir);
    let state = AppState { data_dir, log_file, destination, embedded };
    match create_app(tauri::Builder::default(), state).run(tauri::generate_context!()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "desktop app failed");
            eprintln!(
                "Opptak could not open its window ({err}). Run `opptak doctor` to see what is missing."
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
    use tauri::webview::InvokeRequest;

    fn invoke(cmd: &str, data_dir: &std::path::Path) -> Result<serde_json::Value, serde_json::Value> {
        let state = AppState {
            data_dir: DataDir::at(data_dir),
            log_file: data_dir.join("logs/opptak.log"),
            destination: "This computer (test)".into(),
            embedded: None,
        };
        let app =
            create_app(mock_builder(), state).build(mock_context(noop_assets())).expect("mock app builds");
        let webview =
            tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().expect("mock window");
        get_ipc_response(
            &webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::default(),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<serde_json::Value>().unwrap())
    }

    #[test]
    fn app_info_reports_version_and_data_dir() {
        let temp = tempfile::tempdir().unwrap();
        let info = invoke("app_info", temp.path()).unwrap();
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(info["dataDir"], temp.path().display().to_string());
    }

    #[test]
    fn doctor_finds_a_blocked_data_dir() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("file"), b"x").unwrap();
        let report = invoke("doctor", &temp.path().join("file/data")).unwrap();
        assert_eq!(report["ok"], false);
        let data_dir =
            report["checks"].as_array().unwrap().iter().find(|check| check["id"] == "data-dir").unwrap();
        assert_eq!(data_dir["status"], "error");
    }

    /// Fails when the committed TypeScript bindings differ from what the Rust
    /// commands generate; `UPDATE_BINDINGS=1 cargo test -p opptak-desktop`
    /// rewrites them.
    #[test]
    fn typescript_bindings_are_fresh() {
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts");
        let temp = tempfile::tempdir().unwrap();
        let generated = temp.path().join("bindings.ts");
        export_bindings(&generated).unwrap();
        let generated = std::fs::read_to_string(generated).unwrap();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(&committed, &generated).unwrap();
        }
        let current = std::fs::read_to_string(&committed).unwrap_or_default();
        assert!(
            current == generated,
            "ui/src/bindings.ts is stale: run `UPDATE_BINDINGS=1 cargo test -p opptak-desktop typescript_bindings_are_fresh` and commit it"
        );
    }
}
