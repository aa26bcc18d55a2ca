//! The Settings screen's commands: destinations (This computer and school
//! servers), the connection test, the default destination and the
//! upload-while-recording switch. Each asks `opptak-core`, which keeps the
//! choices in the data folder's settings file and tokens in the credential
//! store, so the `opptak` commands see the same choices.

use std::sync::Arc;

use opptak_core::destinations::{CONNECTION_TIMEOUT, DestinationKind, THIS_COMPUTER_ID};
use opptak_core::{AppEngine, ConnectionCheck, ConnectionOutcome, DestinationInfo, Opptak, SettingsView};
use serde::Serialize;
use tauri::State;

use opptak_core::app_engine::RecordingChoice;

use crate::controls::Desktop;
use crate::i18n::Language;
use crate::{AppState, CommandError};

/// A core error as the Settings screen branches on it.
fn settings_error(err: opptak_core::Error) -> CommandError {
    use opptak_core::Error as Engine;
    let code = match &err {
        Engine::InvalidUrl { .. } => "invalid_url",
        Engine::UnknownDestination(_) => "unknown_destination",
        Engine::Destination(_) => "invalid_destination",
        Engine::Settings { .. } => "settings_unusable",
        Engine::Credentials(_) => "credential_store",
        _ => return err.into(),
    };
    CommandError::new(code, err.to_string())
}

/// Runs a blocking settings call (a file, the credential store) off the
/// thread that serves the window.
async fn blocking<T: Send + 'static>(
    engine: &AppEngine,
    call: impl FnOnce(&Opptak) -> opptak_core::Result<T> + Send + 'static,
) -> Result<T, CommandError> {
    let opptak = engine.opptak().clone();
    tauri::async_runtime::spawn_blocking(move || call(&opptak))
        .await
        .map_err(|err| {
            CommandError::new(
                "internal",
                format!("Changing the settings stopped unexpectedly ({err}). Try again."),
            )
        })?
        .map_err(settings_error)
}

/// Everything the Settings screen shows about destinations and tokens.
#[tauri::command]
#[specta::specta]
pub async fn get_settings(state: State<'_, AppState>) -> Result<SettingsView, CommandError> {
    let engine = state.engine()?;
    blocking(&engine, Opptak::settings_view).await
}

/// This computer and every school server, the default marked.
#[tauri::command]
#[specta::specta]
pub async fn list_destinations(state: State<'_, AppState>) -> Result<Vec<DestinationInfo>, CommandError> {
    let engine = state.engine()?;
    blocking(&engine, Opptak::destinations).await
}

/// Adds a school server; its token goes to the credential store.
#[tauri::command]
#[specta::specta]
pub async fn add_destination(
    state: State<'_, AppState>,
    name: String,
    url: String,
    token: String,
) -> Result<DestinationInfo, CommandError> {
    let engine = state.engine()?;
    blocking(&engine, move |opptak| opptak.add_destination(&name, &url, &token)).await
}

/// Removes a school server; when it was the default, recordings go to This
/// computer again.
#[tauri::command]
#[specta::specta]
pub async fn remove_destination(state: State<'_, AppState>, id: String) -> Result<(), CommandError> {
    let engine = state.engine()?;
    let was_default = {
        let id = id.clone();
        blocking(&engine, move |opptak| {
            let default = opptak.destinations()?.into_iter().find(|destination| destination.is_default);
            opptak.remove_destination(&id)?;
            Ok(default.is_some_and(|destination| destination.id == id))
        })
        .await?
    };
    if was_default {
        engine.use_this_computer();
    }
    Ok(())
}

/// The destination new recordings go to, as the Record screen names it.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct DefaultDestination {
    /// The destination now the default.
    pub destination: DestinationInfo,
    /// Where recordings go, in words.
    pub label: String,
}

/// Makes `id` the default: the next recording goes there.
#[tauri::command]
#[specta::specta]
pub async fn set_default_destination(
    state: State<'_, AppState>,
    id: String,
) -> Result<DefaultDestination, CommandError> {
    let engine = state.engine()?;
    let destination = blocking(&engine, move |opptak| opptak.set_default_destination(&id)).await?;
    let label = use_destination(&engine, &destination).await?;
    Ok(DefaultDestination { destination, label })
}

/// Points the engine's next recording at `destination`; returns its label.
async fn use_destination(engine: &AppEngine, destination: &DestinationInfo) -> Result<String, CommandError> {
    if destination.kind == DestinationKind::ThisComputer {
        engine.use_this_computer();
        return Ok(engine.destination_label());
    }
    let id = destination.id.clone();
    let resolved = blocking(engine, move |opptak| opptak.destination_target(&id)).await?;
    let connected = engine.opptak().connect(&resolved.target).await.map_err(settings_error)?;
    let label = format!("{} ({})", resolved.name, connected.client.base_url());
    engine.set_destination(Some(Arc::new(connected)), label.clone());
    Ok(label)
}

/// Applies the saved default destination and upload-while-recording
/// switch to a freshly opened engine, as the app starts.
pub async fn apply_saved_choices(engine: &AppEngine) {
    let saved = blocking(engine, |opptak| {
        let default = opptak.destinations()?.into_iter().find(|destination| destination.is_default);
        Ok((default, opptak.upload_while_recording()?))
    })
    .await;
    match saved {
        Ok((default, upload_while_recording)) => {
            engine.set_upload_while_recording(upload_while_recording);
            if let Some(default) = default.filter(|default| default.kind == DestinationKind::SchoolServer) {
                match use_destination(engine, &default).await {
                    Ok(label) => tracing::info!(destination = %label, "recordings go to the saved default"),
                    Err(err) => tracing::error!(error = %err, "the saved default destination cannot be used"),
                }
            }
        }
        Err(err) => tracing::error!(error = %err, "the saved settings cannot be read"),
    }
}

/// What the Record screen is set to record (source, size, microphone), as
/// saved in the settings file for the tray and the shortcut.
#[tauri::command]
#[specta::specta]
pub async fn recording_choice(state: State<'_, AppState>) -> Result<RecordingChoice, CommandError> {
    let engine = state.engine()?;
    blocking(&engine, Opptak::recording_choice).await
}

/// Saves what the Record screen is set to record, so the tray and the
/// shortcut record the same and the window shows it at the next start.
#[tauri::command]
#[specta::specta]
pub async fn remember_recording_choice(
    state: State<'_, AppState>,
    choice: RecordingChoice,
) -> Result<(), CommandError> {
    let engine = state.engine()?;
    blocking(&engine, move |opptak| opptak.set_recording_choice(&choice)).await
}

/// The language the teacher chose in Settings; `null`: the computer's.
#[tauri::command]
#[specta::specta]
pub async fn language_choice(state: State<'_, AppState>) -> Result<Option<Language>, CommandError> {
    let engine = state.engine()?;
    let saved = blocking(&engine, Opptak::language).await?;
    Ok(saved.as_deref().and_then(Language::from_tag))
}

/// Makes `language` (`null`: the computer's) the app's: saved for the next
/// start, and spoken at once by the tray and notifications. Returns the
/// language now spoken.
#[tauri::command]
#[specta::specta]
pub async fn choose_language(
    state: State<'_, AppState>,
    desktop: State<'_, Desktop>,
    language: Option<Language>,
) -> Result<Language, CommandError> {
    let engine = state.engine()?;
    blocking(&engine, move |opptak| opptak.set_language(language.map(Language::tag))).await?;
    let speaking = Language::current(language);
    desktop.language.send_replace(speaking);
    Ok(speaking)
}

/// The argument the login session starts Opptak with.
pub const STARTED_AT_LOGIN: &str = "--started-at-login";

fn autostart_error(err: impl std::fmt::Display) -> CommandError {
    CommandError::new(
        "autostart",
        format!(
            "Opptak could not change whether it starts when you log in ({err}). Try again; if it keeps \
             failing, ask IT whether your account may add programs that start at login."
        ),
    )
}

/// Whether Opptak starts when the teacher logs in (off until turned on).
#[tauri::command]
#[specta::specta]
pub fn start_at_login<R: tauri::Runtime>(app: tauri::AppHandle<R>) -> Result<bool, CommandError> {
    use tauri_plugin_autostart::ManagerExt;
    app.autolaunch().is_enabled().map_err(autostart_error)
}

/// Turns starting at login on or off; returns whether it is on now.
#[tauri::command]
#[specta::specta]
pub fn set_start_at_login<R: tauri::Runtime>(
    app: tauri::AppHandle<R>,
    on: bool,
) -> Result<bool, CommandError> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    if on { launcher.enable() } else { launcher.disable() }.map_err(autostart_error)?;
    tracing::info!(on, "start at login changed");
    launcher.is_enabled().map_err(autostart_error)
}

/// Speaks the language saved in Settings from the start (the tray is built
/// right after). Reads a small file on the calling thread.
pub fn restore_language(engine: &AppEngine, desktop: &Desktop) {
    match engine.opptak().language() {
        Ok(saved) => {
            if let Some(language) = saved.as_deref().and_then(Language::from_tag) {
                desktop.language.send_replace(language);
            }
        }
        Err(err) => tracing::warn!(error = %err, "the saved language cannot be read; using the computer's"),
    }
}

/// Tests a destination: a saved one by `id`, or a new one by `url` and
/// `token` before it is added. The answer says what the server said.
#[tauri::command]
#[specta::specta]
pub async fn test_connection(
    state: State<'_, AppState>,
    id: Option<String>,
    url: Option<String>,
    token: Option<String>,
) -> Result<ConnectionCheck, CommandError> {
    let engine = state.engine()?;
    let (url, token) = match (id, url, token) {
        (Some(id), _, _) if id == THIS_COMPUTER_ID => return Ok(this_computer_check(&engine)),
        (Some(id), _, _) => {
            let resolved = blocking(&engine, move |opptak| opptak.destination_target(&id)).await?;
            match resolved.target {
                opptak_core::Target::Remote { url, token } => (url, token),
                opptak_core::Target::Embedded => return Ok(this_computer_check(&engine)),
            }
        }
        (None, Some(url), Some(token)) => {
            opptak_core::destinations::normalise_url(&url).map_err(settings_error)?;
            (url, token)
        }
        _ => {
            return Err(CommandError::new(
                "invalid_destination",
                "Fill in the server's address and token, then press Test connection.",
            ));
        }
    };
    Ok(opptak_core::check_connection(&url, &token, CONNECTION_TIMEOUT).await)
}

/// The server inside the app answers when it runs.
fn this_computer_check(engine: &AppEngine) -> ConnectionCheck {
    match engine.this_computer() {
        Some(destination) => ConnectionCheck {
            outcome: ConnectionOutcome::Ok,
            status: None,
            message: format!(
                "Opptak's own server on this computer is running at {}.",
                destination.client.base_url()
            ),
        },
        None => ConnectionCheck {
            outcome: ConnectionOutcome::Unreachable,
            status: None,
            message: format!(
                "{}. Restart Opptak; if it stays so, run the computer check below.",
                engine.destination_label()
            ),
        },
    }
}

/// Turns uploading while recording on (the default) or off (upload from Stop on).
#[tauri::command]
#[specta::specta]
pub async fn set_upload_while_recording(state: State<'_, AppState>, on: bool) -> Result<(), CommandError> {
    let engine = state.engine()?;
    blocking(&engine, move |opptak| opptak.set_upload_while_recording(on)).await?;
    engine.set_upload_while_recording(on);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opptak_core::DataDir;
    use serde_json::{Value, json};
    use tauri::test::MockRuntime;

    struct MockApp {
        _app: tauri::App<MockRuntime>,
        webview: tauri::WebviewWindow<MockRuntime>,
    }

    impl MockApp {
        fn new(data_dir: &std::path::Path, engine: Result<Arc<AppEngine>, CommandError>) -> Self {
            let (app, webview) = crate::test_support::mock_window(data_dir, engine);
            Self { _app: app, webview }
        }

        /// An app whose engine runs the server inside the app on 127.0.0.1.
        fn with_embedded_server(data_dir: &std::path::Path) -> (Self, Arc<AppEngine>) {
            let engine =
                Arc::new(tauri::async_runtime::block_on(AppEngine::open(&DataDir::at(data_dir))).unwrap());
            (Self::new(data_dir, Ok(engine.clone())), engine)
        }

        fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
            crate::test_support::call(&self.webview, cmd, args)
        }

        fn code_of(&self, cmd: &str, args: Value) -> String {
            let err = self.call(cmd, args).expect_err("the command fails");
            let message = err["message"].as_str().unwrap();
            assert!(message.ends_with('.') && !message.contains("--"), "{err}");
            err["code"].as_str().unwrap().to_owned()
        }
    }

    #[test]
    fn a_school_server_is_added_tested_made_default_and_removed() {
        let temp = tempfile::tempdir().unwrap();
        let (app, engine) = MockApp::with_embedded_server(temp.path());
        // The server inside the app stands in for a school server: a real
        // Opptak upload API on 127.0.0.1 with a real token.
        let url = engine.this_computer().unwrap().client.base_url().to_owned();
        let token = std::fs::read_to_string(temp.path().join("server/embedded.token")).unwrap();

        let listed = app.call("list_destinations", json!({})).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(
            (listed[0]["id"].as_str(), listed[0]["isDefault"].as_bool()),
            (Some("this-computer"), Some(true))
        );

        let wrong = app.call("test_connection", json!({"url": url, "token": "wrong-token"})).unwrap();
        assert_eq!(wrong["outcome"], "tokenRefused", "{wrong}");
        let right = app.call("test_connection", json!({"url": url, "token": token})).unwrap();
        assert_eq!(right["outcome"], "ok", "{right}");

        let added =
            app.call("add_destination", json!({"name": "School", "url": url, "token": token})).unwrap();
        assert_eq!((added["name"].as_str(), added["kind"].as_str()), (Some("School"), Some("schoolServer")));
        let id = added["id"].as_str().unwrap().to_owned();
        let saved = app.call("test_connection", json!({"id": id})).unwrap();
        assert_eq!(saved["outcome"], "ok", "{saved}");
        let this_computer = app.call("test_connection", json!({"id": "this-computer"})).unwrap();
        assert_eq!(this_computer["outcome"], "ok", "{this_computer}");

        let chosen = app.call("set_default_destination", json!({"id": id})).unwrap();
        assert_eq!(chosen["destination"]["isDefault"], true);
        assert_eq!(chosen["label"], format!("School ({url})"));
        assert_eq!(engine.destination_label(), format!("School ({url})"), "the next recording goes there");
        let settings = app.call("get_settings", json!({})).unwrap();
        assert_eq!(settings["defaultDestination"], id);
        assert_eq!(settings["uploadWhileRecording"], true);
        assert_eq!(settings["dataDir"], temp.path().display().to_string());
        assert!(settings["credentialStoreDescription"].as_str().unwrap().starts_with("T"), "{settings}");
        assert!(!settings.to_string().contains(token.trim()));

        assert_eq!(app.call("set_upload_while_recording", json!({"on": false})).unwrap(), Value::Null);
        assert!(!engine.upload_while_recording());
        assert_eq!(app.call("get_settings", json!({})).unwrap()["uploadWhileRecording"], false);

        // A new engine on the same folder (the app started again) takes up the choices.
        let reopened = Opptak::open(&DataDir::at(temp.path())).unwrap();
        let again = AppEngine::with_destination(reopened, engine.this_computer(), "This computer".into());
        tauri::async_runtime::block_on(apply_saved_choices(&again));
        assert_eq!(again.destination_label(), format!("School ({url})"));
        assert!(!again.upload_while_recording());

        assert_eq!(app.call("remove_destination", json!({"id": id})).unwrap(), Value::Null);
        assert!(
            engine.destination_label().starts_with("This computer (http://127.0.0.1:"),
            "back to This computer"
        );
        let listed = app.call("list_destinations", json!({})).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["isDefault"], true);
    }

    /// The language chosen in Settings is saved for the next start and
    /// spoken at once by what the tray and notifications read.
    #[test]
    fn the_chosen_language_is_saved_and_spoken_by_the_tray_at_once() {
        use tauri::Manager;
        let temp = tempfile::tempdir().unwrap();
        let (app, engine) = MockApp::with_embedded_server(temp.path());
        let desktop = || app._app.state::<Desktop>();
        assert_eq!(app.call("language_choice", json!({})).unwrap(), Value::Null, "the computer's at first");

        assert_eq!(app.call("choose_language", json!({"language": "nn"})).unwrap(), "nn");
        assert_eq!(desktop().language(), Language::Nynorsk);
        assert_eq!(app.call("language_choice", json!({})).unwrap(), "nn");
        let saved = std::fs::read_to_string(temp.path().join("settings.json")).unwrap();
        assert!(saved.contains("\"language\": \"nn\""), "{saved}");

        // The next start speaks it before the tray is built.
        let next_start = Desktop::default();
        restore_language(&engine, &next_start);
        assert_eq!(next_start.language(), Language::Nynorsk);

        let computer = Language::current(None);
        assert_eq!(app.call("choose_language", json!({"language": null})).unwrap(), computer.tag());
        assert_eq!(desktop().language(), computer);
        assert_eq!(app.call("language_choice", json!({})).unwrap(), Value::Null);
        assert!(app.call("choose_language", json!({"language": "de"})).is_err(), "only en, nb and nn");
    }

    /// What the Record screen is set to record is saved for the tray and
    /// the shortcut, microphone included.
    #[test]
    fn the_recording_choice_is_remembered_with_its_microphone() {
        let temp = tempfile::tempdir().unwrap();
        let (app, _engine) = MockApp::with_embedded_server(temp.path());
        let first = app.call("recording_choice", json!({})).unwrap();
        assert_eq!(first, json!({"source": {"kind": "microphone"}, "size": "720p", "microphone": null}));
        let choice = json!({"source": {"kind": "screen", "display": ":5"}, "size": "1080p", "microphone": "USB headset"});
        assert_eq!(app.call("remember_recording_choice", json!({"choice": choice})).unwrap(), Value::Null);
        assert_eq!(app.call("recording_choice", json!({})).unwrap(), choice);
    }

    #[test]
    fn settings_commands_fail_with_codes_the_screen_branches_on() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open_with_tokens(
            &DataDir::at(temp.path()),
            opptak_core::TokenStore::new(temp.path().join("tokens.json"), true),
        )
        .unwrap();
        let engine = Arc::new(AppEngine::with_destination(opptak, None, "This computer (test)".into()));
        let app = MockApp::new(temp.path(), Ok(engine));
        let add = |name: &str, url: &str, token: &str| json!({"name": name, "url": url, "token": token});
        assert_eq!(app.code_of("add_destination", add("School", "school.example", "t")), "invalid_url");
        assert_eq!(
            app.code_of("add_destination", add(" ", "https://school.example", "t")),
            "invalid_destination"
        );
        assert_eq!(
            app.code_of("add_destination", add("School", "https://school.example", "")),
            "invalid_destination"
        );
        app.call("add_destination", add("School", "https://school.example", "t")).unwrap();
        assert_eq!(
            app.code_of("add_destination", add("Again", "https://school.example", "t")),
            "invalid_destination"
        );
        assert_eq!(app.code_of("remove_destination", json!({"id": "school-gone"})), "unknown_destination");
        assert_eq!(app.code_of("remove_destination", json!({"id": "this-computer"})), "invalid_destination");
        assert_eq!(
            app.code_of("set_default_destination", json!({"id": "school-gone"})),
            "unknown_destination"
        );
        assert_eq!(app.code_of("test_connection", json!({"id": "school-gone"})), "unknown_destination");
        assert_eq!(
            app.code_of("test_connection", json!({"url": "https://school.example"})),
            "invalid_destination"
        );
        assert_eq!(app.code_of("test_connection", json!({"url": "nope", "token": "t"})), "invalid_url");
        // Nothing answers on a port just closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let closed =
            app.call("test_connection", json!({"url": format!("http://127.0.0.1:{port}"), "token": "t"}));
        assert_eq!(closed.unwrap()["outcome"], "unreachable");
        let nowhere = app.call("test_connection", json!({"id": "this-computer"})).unwrap();
        assert_eq!(nowhere["outcome"], "unreachable", "no server runs inside this app");

        std::fs::write(temp.path().join("settings.json"), b"{broken").unwrap();
        for (cmd, args) in [
            ("get_settings", json!({})),
            ("list_destinations", json!({})),
            ("set_upload_while_recording", json!({"on": true})),
        ] {
            assert_eq!(app.code_of(cmd, args), "settings_unusable", "{cmd}");
        }
    }

    #[test]
    fn settings_commands_say_why_when_the_data_folder_cannot_be_used() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join("file"), b"x").unwrap();
        let blocked = temp.path().join("file/data");
        let engine = Opptak::open(&DataDir::at(&blocked))
            .map(|opptak| Arc::new(AppEngine::with_destination(opptak, None, String::new())))
            .map_err(CommandError::from);
        let app = MockApp::new(&blocked, engine);
        for cmd in ["get_settings", "list_destinations", "set_default_destination", "add_destination"] {
            let args = json!({"id": "x", "name": "n", "url": "https://x.example", "token": "t"});
            // The engine's own words (they name the CLI's flag) are error.rs's to reword.
            let err = app.call(cmd, args).expect_err("the data folder cannot be used");
            assert_eq!(err["code"], "data_dir_unusable", "{cmd}");
        }
    }
}
