//! Opptak's own updates, through Tauri's updater: looked for only where the
//! build or IT's machine preset names a source ([`opptak_core::updates`]),
//! installed only when the teacher asks and nothing is recording.

use opptak_core::updates::{UpdateSource, UpdatesOff};
use serde::Serialize;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_updater::{Update, UpdaterExt};

use crate::{AppState, CommandError};

/// How long a look for updates may take (a download has no limit: a slow
/// school network may need minutes for an installer).
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The updater plugin. Its key and endpoint come from [`UpdateSource`] at
/// each check, so the configuration file holds none.
pub fn plugin<R: Runtime>() -> tauri::plugin::TauriPlugin<R, tauri_plugin_updater::Config> {
    tauri_plugin_updater::Builder::new().build()
}

/// What a look for updates found.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum UpdateCheck {
    /// Updates are off on this computer, and why.
    Off {
        /// Why there is no look.
        why: UpdatesOff,
    },
    /// This is the newest version.
    UpToDate {
        /// The version running.
        version: String,
    },
    /// A newer version can be installed.
    Available {
        /// The newer version.
        version: String,
        /// What it changes, as the release says.
        notes: Option<String>,
    },
}

/// Looks for a newer Opptak where this computer's updates come from.
#[tauri::command]
#[specta::specta]
pub async fn check_for_update<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<UpdateCheck, CommandError> {
    Ok(match look(&app, &state.updates).await? {
        Found::Off(why) => UpdateCheck::Off { why },
        Found::Newest => UpdateCheck::UpToDate { version: app.package_info().version.to_string() },
        Found::Newer(update) => {
            UpdateCheck::Available { version: update.version.clone(), notes: update.body.clone() }
        }
    })
}

/// Downloads the newer version, checks its signature, installs it and
/// restarts Opptak. Refused while recording: the lesson comes first.
#[tauri::command]
#[specta::specta]
pub async fn install_update<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> Result<(), CommandError> {
    if let Ok(engine) = state.engine()
        && engine.is_recording().await
    {
        return Err(CommandError::new(
            "still_recording",
            "A lesson is being recorded. Stop the recording first, then install the update.",
        ));
    }
    // Looked for again: the teacher may press Install long after Settings
    // looked, and what installs is what the server offers now.
    let update = match look(&app, &state.updates).await? {
        Found::Newer(update) => update,
        Found::Off(why) => {
            let message = format!("Updates are off on this computer ({}).", off_words(&why));
            return Err(CommandError::new("updates_off", message));
        }
        Found::Newest => {
            let message = "This is already the newest Opptak; there is nothing to install.";
            return Err(CommandError::new("up_to_date", message));
        }
    };
    tracing::info!(from = %update.current_version, to = %update.version, "installing an update");
    update.download_and_install(|_, _| {}, || {}).await.map_err(|err| updater_error(&err))?;
    tracing::info!(version = %update.version, "update installed; restarting");
    app.restart()
}

/// What a look for updates found.
enum Found {
    Off(UpdatesOff),
    Newest,
    // Boxed: an update carries its whole release manifest.
    Newer(Box<Update>),
}

async fn look<R: Runtime>(app: &AppHandle<R>, source: &UpdateSource) -> Result<Found, CommandError> {
    let (endpoint, pubkey) = match source {
        UpdateSource::Off(why) => return Ok(Found::Off(why.clone())),
        UpdateSource::On { endpoint, pubkey } => (endpoint.clone(), pubkey.clone()),
    };
    let updater = app
        .updater_builder()
        .endpoints(vec![endpoint])
        .and_then(|builder| builder.pubkey(pubkey).timeout(CHECK_TIMEOUT).build())
        .map_err(|err| updater_error(&err))?;
    match updater.check().await.map_err(|err| updater_error(&err))? {
        Some(update) => Ok(Found::Newer(Box::new(update))),
        None => Ok(Found::Newest),
    }
}

fn off_words(why: &UpdatesOff) -> String {
    match why {
        UpdatesOff::NotConfigured => "no update source is set".into(),
        UpdatesOff::SwitchedOffByIt => "your school's IT switched them off".into(),
        UpdatesOff::InvalidPreset(detail) => format!("the machine preset's {detail}"),
    }
}

/// The updater's error in a teacher's words, with a code to branch on.
fn updater_error(err: &tauri_plugin_updater::Error) -> CommandError {
    use tauri_plugin_updater::Error as Updater;
    tracing::warn!(error = %err, "update failed");
    match err {
        Updater::Reqwest(_) | Updater::Network(_) | Updater::ReleaseNotFound => CommandError::new(
            "update_unreachable",
            "The update server could not be reached. Check the network and try again later; Opptak keeps working as it is.",
        ),
        Updater::Minisign(_) | Updater::Base64(_) | Updater::SignatureUtf8(_) => CommandError::new(
            "update_not_verified",
            "The update's signature does not match Opptak's key, so it was not installed. Tell your school's IT; Opptak keeps working as it is.",
        ),
        _ => CommandError::new(
            "update_failed",
            format!(
                "The update could not be installed ({err}). Opptak keeps working as it is; try again later or ask IT."
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use axum::Router;
    use axum::routing::get;
    use base64::Engine as _;
    use serde_json::{Value, json};

    use super::*;
    use crate::test_support::{call, mock_window_with};
    use tauri::Manager;
    use tauri::test::MockRuntime;

    const PAYLOAD: &[u8] = b"the new Opptak, as the release workflow signed it";

    /// A minisign key pair and the two strings Tauri's updater reads: the
    /// public key and a signature of [`PAYLOAD`], each base64 of the text
    /// `tauri signer` writes.
    fn signed_payload() -> (String, String) {
        let keys = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let signature =
            minisign::sign(Some(&keys.pk), &keys.sk, Cursor::new(PAYLOAD), Some("opptak"), None).unwrap();
        let base64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
        (base64(keys.pk.to_box().unwrap().to_string()), base64(signature.to_string()))
    }

    /// An update server on 127.0.0.1: `/good/latest.json` offers `version`
    /// with the payload as signed, `/tampered/latest.json` with other bytes
    /// under the same signature.
    fn update_server(version: &str, signature: &str) -> String {
        let listener = tauri::async_runtime::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let manifest = |payload: &str| {
            json!({
                "version": version,
                "notes": "Shorter uploads after Stop.",
                "pub_date": "2026-12-01T10:00:00Z",
                "platforms": { "linux-x86_64": { "url": format!("{base}/{payload}"), "signature": signature } },
            })
            .to_string()
        };
        let (good, tampered) = (manifest("good.bin"), manifest("tampered.bin"));
        let router = Router::new()
            .route("/good/latest.json", get(move || async move { good }))
            .route("/tampered/latest.json", get(move || async move { tampered }))
            .route("/good.bin", get(|| async { PAYLOAD }))
            .route("/tampered.bin", get(|| async { &b"something else, under the release's signature"[..] }));
        tauri::async_runtime::spawn(async move { axum::serve(listener, router).await });
        base
    }

    type MockApp = (tempfile::TempDir, tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>);

    /// The app with no engine, whose updates come from `updates`.
    fn app_with(updates: UpdateSource) -> MockApp {
        let temp = tempfile::tempdir().unwrap();
        let no_engine = Err(CommandError::new("engine", "no engine in this test"));
        let state = AppState {
            updates,
            ..AppState::new(opptak_core::DataDir::at(temp.path()), temp.path().join("opptak.log"), no_engine)
        };
        let (app, webview) = mock_window_with(state);
        (temp, app, webview)
    }

    fn app_looking_at(endpoint: &str, pubkey: &str) -> MockApp {
        app_with(UpdateSource::On { endpoint: endpoint.parse().unwrap(), pubkey: pubkey.into() })
    }

    #[test]
    fn with_no_update_source_nothing_is_asked_and_install_says_updates_are_off() {
        let (_temp, _app, webview) = app_with(UpdateSource::Off(UpdatesOff::NotConfigured));
        let check = call(&webview, "check_for_update", json!({})).unwrap();
        assert_eq!(check, json!({ "state": "off", "why": { "reason": "notConfigured" } }));
        let err = call(&webview, "install_update", json!({})).unwrap_err();
        assert_eq!(err["code"], "updates_off", "{err}");
    }

    #[test]
    fn a_newer_release_is_found_and_downloads_only_with_the_releases_signature() {
        let (pubkey, signature) = signed_payload();
        let base = update_server("99.0.0", &signature);
        let (_temp, app, webview) = app_looking_at(&format!("{base}/good/latest.json"), &pubkey);
        let check = call(&webview, "check_for_update", json!({})).unwrap();
        assert_eq!(
            check,
            json!({ "state": "available", "version": "99.0.0", "notes": "Shorter uploads after Stop." })
        );

        // The payload as signed passes the updater's check of its signature.
        let source = app.state::<AppState>().updates.clone();
        let Found::Newer(update) = tauri::async_runtime::block_on(look(app.handle(), &source)).unwrap()
        else {
            panic!("the release is newer")
        };
        let bytes = tauri::async_runtime::block_on(update.download(|_, _| {}, || {})).unwrap();
        assert_eq!(bytes, PAYLOAD);

        // Other bytes under the same signature are refused before anything installs.
        let (_temp, _app, webview) = app_looking_at(&format!("{base}/tampered/latest.json"), &pubkey);
        let err = call(&webview, "install_update", json!({})).unwrap_err();
        assert_eq!(err["code"], "update_not_verified", "{err}");
    }

    #[test]
    fn the_running_version_is_up_to_date() {
        let (pubkey, signature) = signed_payload();
        let running = tauri::test::mock_context::<MockRuntime, _>(tauri::test::noop_assets())
            .package_info()
            .version
            .to_string();
        let base = update_server(&running, &signature);
        let (_temp, _app, webview) = app_looking_at(&format!("{base}/good/latest.json"), &pubkey);
        let check = call(&webview, "check_for_update", json!({})).unwrap();
        assert_eq!(check, json!({ "state": "upToDate", "version": running }));
        let err = call(&webview, "install_update", json!({})).unwrap_err();
        assert_eq!(err["code"], "up_to_date", "{err}");
    }

    #[test]
    fn an_update_server_that_does_not_answer_is_named_unreachable() {
        let (pubkey, _) = signed_payload();
        // Bound and dropped at once: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (_temp, _app, webview) = app_looking_at(&format!("http://127.0.0.1:{port}/latest.json"), &pubkey);
        let err: Value = call(&webview, "check_for_update", json!({})).unwrap_err();
        assert_eq!(err["code"], "update_unreachable", "{err}");
        assert!(err["message"].as_str().unwrap().contains("keeps working"), "{err}");
    }
}
