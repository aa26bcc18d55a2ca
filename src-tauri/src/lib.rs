//! Opptak's desktop app: a thin Tauri shell over `opptak-core`.
//!
//! [`create_app`] wires commands and state into any Tauri runtime, so the
//! real app ([`run`]) and the mock-runtime tests build the same app.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use opptak_core::data_move::{FolderChoice, InUse, MoveOutcome};
use opptak_core::logging::{self, LogFormat};
use opptak_core::updates::{UpdateSource, UpdatesOff};
use opptak_core::{AppEngine, DataDir};
use tauri::Runtime;

pub mod awake;
pub mod closing;
pub mod commands;
pub mod controls;
pub mod diagnostics;
mod error;
pub mod events;
pub mod i18n;
pub mod instance;
pub mod library;
pub mod notify;
pub mod settings;
pub mod shortcut;
// logind tells of a suspend; elsewhere a sleep is not noticed yet.
#[cfg(target_os = "linux")]
pub mod sleep;
#[cfg(test)]
mod test_support;
pub mod tray;
pub mod updates;

pub use error::CommandError;

/// What every command can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Opptak's data directory.
    pub data_dir: DataDir,
    /// The log file written now.
    pub log_file: PathBuf,
    /// The engine: the journal, the server inside the app and the one
    /// recording; or, when the journal cannot open, what to tell the teacher.
    pub engine: Result<Arc<AppEngine>, CommandError>,
    /// How the data folder move asked for before this start ended, if one was.
    pub last_move: Option<MoveOutcome>,
    /// Keeps a move of the data folder waiting until this app has ended.
    pub in_use: Option<Arc<InUse>>,
    /// Where Opptak's own updates come from, or why it does not look.
    pub updates: UpdateSource,
}

impl AppState {
    /// The state of an app on `data_dir` with no move behind it.
    pub fn new(data_dir: DataDir, log_file: PathBuf, engine: Result<Arc<AppEngine>, CommandError>) -> Self {
        Self {
            data_dir,
            log_file,
            engine,
            last_move: None,
            in_use: None,
            updates: UpdateSource::Off(UpdatesOff::NotConfigured),
        }
    }
}

/// The commands and their TypeScript bindings, from one list.
pub fn bindings<R: Runtime>() -> tauri_specta::Builder<R> {
    tauri_specta::Builder::<R>::new().commands(tauri_specta::collect_commands![
        commands::app_info,
        commands::move_data_folder::<tauri::Wry>,
        commands::doctor,
        commands::list_microphones,
        commands::list_video_sources,
        commands::start_recording,
        commands::pause_recording,
        commands::resume_recording,
        commands::stop_recording,
        commands::recording_space,
        commands::test_microphone,
        library::list_recordings,
        library::watch_library,
        library::rename_recording,
        library::delete_local_copy,
        library::retry_recording,
        library::upload_file,
        library::recording_link,
        library::reveal_recording,
        library::play_recording,
        settings::get_settings,
        settings::list_destinations,
        settings::add_destination,
        settings::remove_destination,
        settings::set_default_destination,
        settings::test_connection,
        settings::set_upload_while_recording,
        settings::recording_choice,
        settings::remember_recording_choice,
        settings::language_choice,
        settings::choose_language,
        settings::start_at_login::<tauri::Wry>,
        settings::set_start_at_login::<tauri::Wry>,
        diagnostics::save_diagnostics,
        controls::desktop_status,
        shortcut::set_record_shortcut::<tauri::Wry>,
        closing::close_window::<tauri::Wry>,
        updates::check_for_update::<tauri::Wry>,
        updates::install_update::<tauri::Wry>
    ])
}

/// Writes the UI's TypeScript bindings to `path`.
pub fn export_bindings(path: &std::path::Path) -> Result<(), String> {
    bindings::<tauri::Wry>()
        .export(
            specta_typescript::Typescript::default()
                .header("/* eslint-disable */\n// @ts-nocheck")
                // Journal ids and byte counts stay far below 2^53.
                .bigint(specta_typescript::BigIntExportBehavior::Number),
            path,
        )
        .map_err(|err| err.to_string())
}

/// Adds Opptak's state and commands to `builder`.
pub fn create_app<R: Runtime>(builder: tauri::Builder<R>, state: AppState) -> tauri::Builder<R> {
    let bindings = bindings::<R>();
    builder.manage(state).manage(controls::Desktop::default()).invoke_handler(bindings.invoke_handler())
}

/// Opens the engine and starts Opptak's own server in this process ("This
/// computer"), the default destination, so recordings upload with no
/// network and no LMS. When it cannot open, the app still opens and says why.
fn open_engine(data_dir: &DataDir) -> Result<Arc<AppEngine>, CommandError> {
    match tauri::async_runtime::block_on(AppEngine::open(data_dir)) {
        Ok(engine) => {
            tauri::async_runtime::block_on(settings::apply_saved_choices(&engine));
            tracing::info!(destination = %engine.destination_label(), "engine ready");
            Ok(Arc::new(engine))
        }
        Err(err) => {
            tracing::error!(error = %err, "engine failed to open");
            Err(err.into())
        }
    }
}

/// How long a start waits for the app that asked to move the data folder
/// (and restarted into this one) to end.
const MOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Carries out a data folder move asked for in Settings, once the app that
/// asked it (restarting into this one) has let go of its single-instance
/// name and the folder.
fn move_data_folder_if_asked(identifier: &str) -> Option<MoveOutcome> {
    let choice = FolderChoice::of_this_user().ok()?;
    choice.pending_move()?;
    let deadline = std::time::Instant::now() + MOVE_WAIT;
    while instance::another_is_running(identifier) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    choice.finish_pending_move(MOVE_WAIT)
}

/// Starts the desktop app and returns when its last window closes.
pub fn run() -> ExitCode {
    let context = tauri::generate_context!();
    // Before anything opens a file in the data folder.
    let last_move = move_data_folder_if_asked(&context.config().identifier);
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
    match &last_move {
        Some(MoveOutcome::Moved { from, .. }) => {
            tracing::info!(from = %from.display(), "the data folder was moved here");
        }
        Some(MoveOutcome::Failed { to, reason, .. }) => {
            tracing::error!(to = %to.display(), reason, "the data folder was not moved");
        }
        None => {}
    }
    // A second launch only hands its arguments to the first and exits (in
    // the single-instance plugin): it must not open the engine on its way.
    let engine = if instance::another_is_running(&context.config().identifier) {
        Err(CommandError::new(
            "second_launch",
            "Opptak is already open; this launch only passes its request on.",
        ))
    } else {
        open_engine(&data_dir)
    };
    let in_use = InUse::hold(&data_dir).map(Arc::new);
    let updates = opptak_core::updates::update_source(
        &opptak_core::destinations::machine_preset_path(),
        opptak_core::updates::BuiltIn::of_this_build(),
    );
    let state = AppState { last_move, in_use, updates, ..AppState::new(data_dir, log_file, engine) };
    library::use_the_file_manager();
    // The Record screen asks which sources can be recorded as it opens; a
    // short-lived copy of this program answers, so GStreamer's registry
    // stays out of the app until it records video.
    if let Ok(this_program) = std::env::current_exe() {
        opptak_core::check_video_in(this_program);
    }
    let launch_args: Vec<String> = std::env::args().skip(1).collect();
    let builder = tauri::Builder::default()
        .plugin(instance::plugin())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_window_state::Builder::default().build())
        // Off until the teacher turns it on in Settings.
        .plugin(tauri_plugin_autostart::Builder::new().arg(settings::STARTED_AT_LOGIN).build())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_global_shortcut::Builder::new().with_handler(shortcut::on_shortcut).build())
        .plugin(updates::plugin())
        .on_window_event(closing::on_window_event)
        .setup(move |app| {
            use tauri::Manager;
            controls::setup(app.handle(), &launch_args);
            if let Ok(engine) = app.state::<AppState>().engine() {
                #[cfg(target_os = "linux")]
                sleep::setup(app.handle(), engine.clone());
                notify::setup(app.handle(), engine);
            }
            Ok(())
        });
    match create_app(builder, state).run(context) {
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
    use crate::test_support::{call, mock_window};

    fn invoke(cmd: &str, data_dir: &std::path::Path) -> Result<serde_json::Value, serde_json::Value> {
        invoke_with(cmd, data_dir, serde_json::json!({}))
    }

    /// Calls `cmd` with `args` on an app whose engine uploads nowhere (no
    /// server is started: the window test records to a real one).
    fn invoke_with(
        cmd: &str,
        data_dir: &std::path::Path,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let engine = opptak_core::Opptak::open(&DataDir::at(data_dir))
            .map(|opptak| Arc::new(AppEngine::with_destination(opptak, None, "This computer (test)".into())))
            .map_err(CommandError::from);
        let (_app, webview) = mock_window(data_dir, engine);
        call(&webview, cmd, args)
    }

    #[test]
    fn app_info_reports_version_and_data_dir() {
        let temp = tempfile::tempdir().unwrap();
        let info = invoke("app_info", temp.path()).unwrap();
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(info["dataDir"], temp.path().display().to_string());
    }

    #[test]
    fn a_data_folder_given_at_start_is_not_moved_from_settings() {
        let temp = tempfile::tempdir().unwrap();
        let to = temp.path().join("elsewhere");
        let err = invoke_with("move_data_folder", temp.path(), serde_json::json!({ "folder": to }))
            .expect_err("the folder was given at start");
        assert_eq!(err["code"], "data_dir_fixed", "{err}");
        assert!(!to.exists(), "nothing was made or moved");
    }

    fn code_of(outcome: Result<serde_json::Value, serde_json::Value>) -> String {
        let err = outcome.expect_err("the command fails");
        assert!(err["message"].as_str().is_some_and(|message| message.ends_with('.')), "{err}");
        err["code"].as_str().unwrap().to_owned()
    }

    #[test]
    fn pause_resume_and_stop_with_nothing_recording_say_not_recording() {
        let temp = tempfile::tempdir().unwrap();
        for cmd in ["pause_recording", "resume_recording", "stop_recording"] {
            assert_eq!(code_of(invoke(cmd, temp.path())), "not_recording", "{cmd}");
        }
    }

    #[test]
    fn starting_with_a_microphone_that_is_gone_says_unknown_device_in_a_teachers_words() {
        let temp = tempfile::tempdir().unwrap();
        let args = serde_json::json!({
            "device": "Headset that was unplugged",
            "name": "Lesson 2026-12-05 10:15",
            "onEvent": "__CHANNEL__:7",
        });
        let err = invoke_with("start_recording", temp.path(), args).expect_err("no such microphone");
        assert_eq!(err["code"], "unknown_device", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("Headset that was unplugged") && !message.contains("opptak "), "{message}");
        // Nothing was recorded and nothing is left running.
        assert_eq!(code_of(invoke("stop_recording", temp.path())), "not_recording");
        let files = std::fs::read_dir(temp.path().join("recordings")).map(|dir| dir.count()).unwrap_or(0);
        assert_eq!(files, 0);
    }

    #[test]
    fn recording_commands_say_why_when_the_data_folder_cannot_be_used() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("file"), b"x").unwrap();
        let blocked = temp.path().join("file/data");
        let args = serde_json::json!({"device": null, "name": "", "onEvent": "__CHANNEL__:7"});
        let code = code_of(invoke_with("start_recording", &blocked, args));
        assert_eq!(code, "data_dir_unusable");
        assert_eq!(code_of(invoke("pause_recording", &blocked)), "data_dir_unusable");
        let info = invoke("app_info", &blocked).unwrap();
        assert!(info["destination"].as_str().unwrap().contains("cannot be used"), "{info}");
    }

    #[test]
    fn recording_commands_drive_a_real_recording_to_safe_on_the_server() {
        if crate::test_support::ran_in_a_child(
            "tests::recording_commands_drive_a_real_recording_to_safe_on_the_server",
        ) {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let engine = tauri::async_runtime::block_on(AppEngine::open(&DataDir::at(temp.path()))).unwrap();
        let (_app, webview) = mock_window(temp.path(), Ok(Arc::new(engine)));

        let microphones = call(&webview, "list_microphones", serde_json::json!({})).unwrap();
        let microphones = microphones.as_array().unwrap();
        assert_eq!(microphones[0]["isDefault"], true, "the default first: {microphones:?}");
        let default = microphones[0]["name"].as_str().unwrap();

        let args =
            serde_json::json!({"device": default, "name": "  Lesson 7B  ", "onEvent": "__CHANNEL__:7"});
        let started = call(&webview, "start_recording", args.clone()).unwrap();
        assert_eq!(started["name"], "Lesson 7B");
        assert!(started["destination"].as_str().unwrap().starts_with("This computer (http://127.0.0.1:"));
        let again = call(&webview, "start_recording", args).expect_err("one recording at a time");
        assert_eq!(again["code"], "already_recording");
        for cmd in ["pause_recording", "resume_recording"] {
            assert_eq!(call(&webview, cmd, serde_json::json!({})).unwrap(), serde_json::Value::Null, "{cmd}");
        }
        std::thread::sleep(std::time::Duration::from_millis(1500)); // something to record
        assert_eq!(call(&webview, "stop_recording", serde_json::json!({})).unwrap(), serde_json::Value::Null);
        assert_eq!(code_of(call(&webview, "stop_recording", serde_json::json!({}))), "not_recording");

        let journal = opptak_journal_of(temp.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let recordings = journal.recordings().unwrap();
            assert_eq!(recordings.len(), 1);
            if recordings[0].state == opptak_journal::RecordingState::Ready {
                assert_eq!(recordings[0].name, "Lesson 7B");
                assert_eq!(recordings[0].sha256, recordings[0].server_sha256);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not safe on the server: {:?}", recordings[0]);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn opptak_journal_of(data_dir: &std::path::Path) -> opptak_journal::Journal {
        opptak_journal::Journal::open_in(data_dir).unwrap()
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
