//! What the shell's tests share: a mock-runtime window to call commands
//! in, and a private PulseAudio virtual microphone for the tests that
//! record through the real engine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let state =
        AppState { data_dir: DataDir::at(data_dir), log_file: data_dir.join("logs/opptak.log"), engine };
    let app =
        crate::create_app(mock_builder(), state).build(mock_context(noop_assets())).expect("mock app builds");
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

/// Set in the copy of the test binary that runs with the virtual
/// microphone: the sound library reads `PULSE_SERVER` when it connects,
/// and this process's own environment cannot be changed safely.
const WITH_VIRTUAL_MICROPHONE: &str = "OPPTAK_TEST_VIRTUAL_MICROPHONE";

/// In the test process: starts a virtual microphone, runs the test named
/// `test` again in a copy of this binary that reaches it, asserts that run
/// passed and returns true (the caller returns). Also true, after saying
/// so, where PulseAudio is missing outside CI. In that copy: false, and the
/// caller records.
pub(crate) fn ran_in_a_child(test: &str) -> bool {
    if std::env::var_os(WITH_VIRTUAL_MICROPHONE).is_some() {
        return false;
    }
    let Some(microphone) = VirtualMicrophone::start() else { return true };
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(WITH_VIRTUAL_MICROPHONE, "1")
        .env("PULSE_SERVER", format!("unix:{}", microphone.socket().display()))
        .status()
        .unwrap();
    assert!(status.success(), "the run with the virtual microphone failed: {status}");
    true
}

/// A PulseAudio daemon whose default source is the monitor of a null
/// sink (as `opptak_tests::PulseAudio` starts it), killed by PID on drop.
struct VirtualMicrophone {
    daemon: Child,
    runtime_dir: tempfile::TempDir,
}

impl VirtualMicrophone {
    fn start() -> Option<Self> {
        let runtime_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(runtime_dir.path().join("pulse")).unwrap();
        let socket = runtime_dir.path().join("pulse/native");
        let script = runtime_dir.path().join("virtual-mic.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 load-module module-null-sink sink_name=vsink rate=48000 channels=1 format=s16le\n\
                 set-default-source vsink.monitor\n",
                socket.display()
            ),
        )
        .unwrap();
        let spawned = Command::new("pulseaudio")
            .args(["-n", "-F"])
            .arg(&script)
            .args(["--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes"])
            .env("XDG_RUNTIME_DIR", runtime_dir.path())
            .env("HOME", runtime_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let daemon = match spawned {
            Ok(daemon) => daemon,
            Err(err) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: PulseAudio is needed for a virtual microphone ({err})");
                return None;
            }
            Err(err) => panic!("PulseAudio is needed for a virtual microphone: {err}"),
        };
        let mut microphone = Self { daemon, runtime_dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(microphone.daemon.try_wait().unwrap().is_none(), "PulseAudio exited");
            assert!(Instant::now() < deadline, "PulseAudio did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(microphone)
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.path().join("pulse/native")
    }
}

impl Drop for VirtualMicrophone {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
