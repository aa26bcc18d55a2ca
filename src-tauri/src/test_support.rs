//! What the shell's tests share: a mock-runtime window to call commands
//! in, and (from opptak-core) a private PulseAudio virtual microphone for
//! the tests that record through the real engine.

use std::path::Path;
use std::sync::Arc;

use opptak_core::{AppEngine, DataDir};
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;

use crate::{AppState, CommandError};

/// The app with Opptak's commands on `data_dir` and `engine`, and its window.
pub(crate) fn mock_window(
    data_dir: &Path,
    engine: Result<Arc<AppEngine>, CommandError>,
) -> (tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>) {
    mock_window_with(AppState::new(DataDir::at(data_dir), data_dir.join("logs/opptak.log"), engine))
}

/// The app with Opptak's commands and `state`, and its window; the updater
/// plugin is there too, configured as `tauri.conf.json` configures it.
pub(crate) fn mock_window_with(
    state: AppState,
) -> (tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>) {
    let mut context = mock_context(noop_assets());
    context.config_mut().plugins.0.insert("updater".into(), serde_json::json!({ "pubkey": "" }));
    let app = crate::create_app(mock_builder().plugin(crate::updates::plugin()), state)
        .build(context)
        .expect("mock app builds");
    let webview =
        tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().expect("mock window");
    (app, webview)
}

/// Calls command `cmd` with `args` as the UI would: its answer, or its error.
pub(crate) fn call(
    webview: &tauri::WebviewWindow<MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    get_ipc_response(
        webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().unwrap())
}

/// In the test process: starts a virtual microphone, runs the test named
/// `test` again in a copy of this binary that reaches it, and returns true
/// (the caller returns); in that copy, false, and the caller records.
pub(crate) use opptak_core::test_support::ran_in_a_child;
