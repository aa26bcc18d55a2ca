//! The commands the UI can call. Each is thin: it asks `opptak-core` and maps
//! engine errors to [`CommandError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opptak_core::app_engine::{RecordingChoice, RecordingSource, VideoSize, VideoSources};
use opptak_core::data_move::{FolderChoice, MoveOutcome};
use opptak_core::doctor::DoctorReport;
use opptak_core::{AppEngine, Origin};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};

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
    /// Who chose the data folder: Settings may move it only when the
    /// teacher or the default did.
    pub data_dir_origin: Origin,
    /// How the move asked for before this start ended, if one was.
    pub last_move: Option<MoveOutcome>,
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
        data_dir_origin: state.data_dir.origin(),
        last_move: state.last_move.clone(),
        log_file: state.log_file.display().to_string(),
        destination: state.destination(),
    })
}

/// How long the answer has to reach the window before the app restarts.
const ANSWER_BEFORE_RESTART: Duration = Duration::from_millis(300);

/// Asks to move the data folder to `folder`, then restarts the app, which
/// moves it before it opens anything there (see `opptak_core::data_move`).
/// Refused while recording, and with the engine's reason when the folder
/// cannot be used; nothing is moved then.
#[tauri::command]
#[specta::specta]
pub async fn move_data_folder<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    folder: String,
) -> Result<(), CommandError> {
    if let Ok(engine) = &state.engine
        && engine.is_recording().await
    {
        return Err(CommandError::new(
            "still_recording",
            "A lesson is being recorded. Stop the recording, then move the data folder.",
        ));
    }
    let (data_dir, to) = (state.data_dir.clone(), PathBuf::from(folder.trim()));
    tauri::async_runtime::spawn_blocking(move || FolderChoice::of_this_user()?.ask_to_move(&data_dir, &to))
        .await
        .map_err(|err| stopped_unexpectedly("Moving the data folder", err))??;
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(ANSWER_BEFORE_RESTART).await;
        tracing::info!("restarting to move the data folder");
        app.restart();
    });
    Ok(())
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
    /// Channels it records (1 mono, 2 stereo).
    pub channels: u16,
    /// Samples per second it records.
    pub sample_rate: u32,
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
        .map(|input| Microphone {
            name: input.name,
            is_default: input.is_default,
            channels: input.channels,
            sample_rate: input.sample_rate,
        })
        .collect())
}

/// Room left for recordings.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSpace {
    /// Bytes free on the disk that holds the data folder.
    pub free_bytes: u64,
}

/// How much room is left for recordings on the data folder's disk.
#[tauri::command]
#[specta::specta]
pub async fn recording_space(state: State<'_, AppState>) -> Result<RecordingSpace, CommandError> {
    let engine = state.engine()?;
    let free_bytes = tauri::async_runtime::spawn_blocking(move || engine.free_space())
        .await
        .map_err(|err| stopped_unexpectedly("Measuring the free space", err))??;
    Ok(RecordingSpace { free_bytes })
}

/// The microphone's level during "Test microphone", about 20 a second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MicrophoneLevel {
    /// Peak over the last 50 ms, in dBFS.
    pub peak_dbfs: f32,
    /// RMS over the last 50 ms, in dBFS.
    pub rms_dbfs: f32,
}

/// What "Test microphone" heard.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MicrophoneTestResult {
    /// The microphone listened to.
    pub microphone: String,
    /// Whether any sound came in (else it is muted, off or unplugged).
    pub heard: bool,
    /// Where the window plays the few seconds heard from (a scratch file,
    /// not a recording).
    pub play_url: String,
}

/// Listens to `device` (`null`: the system default) for a few seconds
/// without recording, sending its level on `on_level`.
#[tauri::command]
#[specta::specta]
pub async fn test_microphone(
    state: State<'_, AppState>,
    device: Option<String>,
    on_level: Channel<MicrophoneLevel>,
) -> Result<MicrophoneTestResult, CommandError> {
    let engine = state.engine()?;
    let file = opptak_core::playback::microphone_test_file(engine.opptak().data_dir().path());
    let device = device.filter(|device| !device.is_empty());
    let heard = engine
        .test_microphone(device, &file, |event| {
            if let opptak_core::app_engine::CaptureEvent::Level { peak_dbfs, rms_dbfs } = *event {
                // A closed window only stops the meter; the test finishes.
                let _ = on_level.send(MicrophoneLevel { peak_dbfs, rms_dbfs });
            }
        })
        .await?;
    let play_url = engine.playback().await?.microphone_test_url();
    Ok(MicrophoneTestResult { microphone: heard.microphone, heard: heard.heard, play_url })
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

/// The screens and cameras this computer offers, and which of Microphone,
/// Screen, Camera and Screen + camera can be recorded, with why not.
#[tauri::command]
#[specta::specta]
pub async fn list_video_sources() -> Result<VideoSources, CommandError> {
    // GStreamer's first start reads its plugin registry from disk.
    tauri::async_runtime::spawn_blocking(AppEngine::video_sources)
        .await
        .map_err(|err| stopped_unexpectedly("Looking for screens and cameras", err))
}

/// Starts recording `source` (`null`: the microphone alone) with the
/// microphone `device` (`null`: the system default), a video at `size`
/// (`null`: 720p), as `name` (blank: a name with the date and time).
/// Levels, elapsed time, warnings and, after Stop, where the recording is
/// arrive on `on_event` until it is safe on the server or has failed.
#[tauri::command]
#[specta::specta]
pub async fn start_recording(
    state: State<'_, AppState>,
    device: Option<String>,
    name: String,
    on_event: Channel<RecordEvent>,
    source: Option<RecordingSource>,
    size: Option<VideoSize>,
) -> Result<RecordingStarted, CommandError> {
    let engine = state.engine()?;
    let name = Some(name.trim().to_owned()).filter(|name| !name.is_empty());
    let device = device.filter(|device| !device.is_empty());
    let choice = RecordingChoice {
        source: source.unwrap_or_default(),
        size: size.unwrap_or_default(),
        microphone: device,
    };
    let feed =
        engine.start_source(&choice.source, choice.size, choice.microphone.clone(), name.clone()).await?;
    // The tray and the shortcut record what the window last recorded.
    let saving = engine.clone();
    tauri::async_runtime::spawn_blocking(move || {
        if let Err(err) = saving.opptak().set_recording_choice(&choice) {
            tracing::warn!(error = %err, "the tray and the shortcut keep their previous choice");
        }
    });
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

#[cfg(test)]
mod engine_words_tests {
    //! The engine is shared with the `opptak` command line; what it says must
    //! still fit a teacher in the window, who types no commands or flags.

    use std::path::PathBuf;

    use opptak_core::Error as Engine;
    use opptak_core::app_engine::CaptureError as Capture;

    use crate::CommandError;

    fn assert_names_no_command(message: &str) {
        assert!(!message.contains("--"), "names a command-line flag: {message}");
        assert!(!message.contains("opptak "), "names an opptak command: {message}");
        assert!(!message.contains('`'), "quotes a command: {message}");
    }

    fn io_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    }

    fn capture_errors() -> Vec<Capture> {
        vec![
            Capture::NoMicrophone { reason: "no default input".into() },
            Capture::UnknownDevice { name: "USB Mic".into() },
            Capture::Backend("pulse is down".into()),
            Capture::DiskFull { path: PathBuf::from("/data"), free: 1, needed: 2 },
            Capture::Write { path: PathBuf::from("/data/a.wav"), source: io_error() },
            Capture::VideoUnavailable { missing: "GStreamer".into() },
            Capture::NoDisplay { display: ":0".into(), reason: "no display".into() },
            Capture::NoCamera { camera: "cam".into(), reason: "busy".into() },
            Capture::Video("pipeline".into()),
            Capture::Unrepairable { path: PathBuf::from("/data/a.wav"), reason: "short".into() },
        ]
    }

    fn engine_errors() -> Vec<Engine> {
        let mut errors = vec![
            Engine::NoHomeDirectory,
            Engine::DataDirUnusable { path: PathBuf::from("/data"), source: io_error() },
            Engine::DataDirFixed { path: PathBuf::from("/data"), by: "how Opptak was started".into() },
            Engine::MoveRefused { to: PathBuf::from("/media/usb"), reason: "it already holds files".into() },
            Engine::Journal("disk I/O error".into()),
            Engine::File { path: PathBuf::from("/home/t/gone.wav"), reason: "no such file".into() },
            Engine::UnknownKind { path: PathBuf::from("/home/t/lesson.xyz") },
            Engine::Embedded("port in use".into()),
            Engine::Recording("the writer stopped".into()),
            Engine::AlreadyRecording,
            Engine::NotRecording,
            Engine::UnknownRecording(7),
            Engine::BlankName,
            Engine::StillRecording { name: "Lesson".into() },
            Engine::OnlyCopy { name: "Lesson".into() },
            Engine::NotRetryable { name: "Lesson".into() },
            Engine::Delete { name: "Lesson".into(), source: io_error() },
            Engine::InvalidUrl { url: "ftp://x".into(), reason: "not http".into() },
            Engine::UnknownDestination("3".into()),
            Engine::Destination("The default destination cannot be removed.".into()),
            Engine::Settings { path: PathBuf::from("/data/settings.json"), reason: "bad JSON".into() },
            Engine::Credentials("no password store".into()),
            Engine::Logging { path: PathBuf::from("/data/logs"), reason: "read-only".into() },
        ];
        errors.extend(capture_errors().into_iter().map(Engine::Capture));
        errors
    }

    /// Upload failures reach the Library as the failed recording's reason.
    fn upload_errors() -> Vec<opptak_upload::Error> {
        use opptak_upload::Error as Upload;
        vec![
            Upload::Journal(opptak_journal::Error::Open {
                path: PathBuf::from("/data/j.db"),
                reason: "locked".into(),
            }),
            Upload::UnknownRecording(7),
            Upload::AlreadyUploaded,
            Upload::Unauthorized("401 Unauthorized".into()),
            Upload::Refused("413 too large".into()),
            Upload::FileChanged { path: "/data/a.wav".into(), part: 2 },
            Upload::SourceAbandoned,
            Upload::ServerRejected("not audio".into()),
            Upload::ChecksumMismatch { local: "aa".into(), server: "bb".into() },
            Upload::SessionsKeepEnding { times: 3, reason: "expired".into() },
            Upload::StorageNotFound { answer: "404 from s3".into(), times: 3 },
            Upload::StillChecking { recording_id: "r1".into(), waited: std::time::Duration::from_secs(600) },
            Upload::Read { path: "/data/a.wav".into(), source: io_error() },
        ]
    }

    #[test]
    fn every_engine_error_the_app_shows_names_no_command_line() {
        let errors = engine_errors();
        for err in errors {
            let shown = CommandError::from(err);
            assert!(!shown.code.is_empty());
            assert_names_no_command(&shown.message);
        }
    }

    #[test]
    fn every_upload_failure_the_library_shows_names_no_command_line() {
        for err in upload_errors() {
            assert_names_no_command(&err.to_string());
        }
    }

    #[test]
    fn a_journal_that_cannot_open_names_no_command_line() {
        let err = opptak_journal::Error::Open { path: PathBuf::from("/data/j.db"), reason: "locked".into() };
        assert_names_no_command(&err.to_string());
    }
}

#[cfg(test)]
mod record_screen_tests {
    use std::sync::Arc;

    use opptak_core::{AppEngine, DataDir};
    use serde_json::json;
    use tauri::test::MockRuntime;

    use crate::CommandError;
    use crate::test_support::{call, mock_window};

    fn window(data_dir: &std::path::Path) -> (tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>) {
        let engine = opptak_core::Opptak::open(&DataDir::at(data_dir))
            .map(|opptak| Arc::new(AppEngine::with_destination(opptak, None, "nowhere (test)".into())))
            .map_err(CommandError::from);
        mock_window(data_dir, engine)
    }

    #[test]
    fn recording_space_is_the_free_space_of_the_data_folders_disk() {
        let temp = tempfile::tempdir().unwrap();
        let (_app, webview) = window(temp.path());
        // `df` measures it independently of the engine.
        let df = || {
            let out = std::process::Command::new("df")
                .args(["-B1", "--output=avail"])
                .arg(temp.path())
                .output()
                .expect("df runs");
            String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
        };
        let before = df();
        let space = call(&webview, "recording_space", json!({})).unwrap();
        let after = df();
        let free = space["freeBytes"].as_u64().unwrap();
        // Other programs write meanwhile: the answer lies between two measurements.
        let (low, high) = (before.min(after), before.max(after));
        assert!(free + 64 * 1024 * 1024 >= low && free <= high + 64 * 1024 * 1024, "{free} vs {low}..{high}");
    }

    #[test]
    fn recording_space_says_why_when_the_data_folder_cannot_be_used() {
        let temp = tempfile::tempdir().unwrap();
        let blocker = temp.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let (_app, webview) = window(&blocker.join("data"));
        let err = call(&webview, "recording_space", json!({})).unwrap_err();
        assert_eq!(err["code"], "data_dir_unusable", "{err}");
    }

    /// An Xvfb display of this test's own, stopped by PID on drop.
    struct VirtualDisplay(std::process::Child, String);

    impl VirtualDisplay {
        /// `None` (the test skips, after saying so) where Xvfb is missing outside CI.
        fn start() -> Option<Self> {
            use std::io::Read;
            let spawned = std::process::Command::new("Xvfb")
                .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn();
            let mut xvfb = match spawned {
                Ok(xvfb) => xvfb,
                Err(err) if std::env::var_os("CI").is_none() => {
                    eprintln!("skipped: Xvfb is needed for a screen to record ({err})");
                    return None;
                }
                Err(err) => panic!("Xvfb is needed for a screen to record: {err}"),
            };
            // Xvfb writes its display number once it accepts connections.
            let mut number = String::new();
            let mut stdout = xvfb.stdout.take().unwrap();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                number.push(byte[0] as char);
            }
            assert!(!number.is_empty(), "Xvfb did not start");
            Some(Self(xvfb, format!(":{}", number.trim())))
        }
    }

    impl Drop for VirtualDisplay {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_screen_recording_started_from_the_window_is_a_video_safe_on_the_server() {
        if crate::test_support::ran_in_a_child(
            "commands::record_screen_tests::a_screen_recording_started_from_the_window_is_a_video_safe_on_the_server",
        ) {
            return;
        }
        let Some(display) = VirtualDisplay::start() else { return };
        let temp = tempfile::tempdir().unwrap();
        let engine =
            Arc::new(tauri::async_runtime::block_on(AppEngine::open(&DataDir::at(temp.path()))).unwrap());
        let (_app, webview) = mock_window(temp.path(), Ok(engine.clone()));

        let sources = call(&webview, "list_video_sources", json!({})).unwrap();
        let screen = sources["choices"].as_array().unwrap().iter().find(|c| c["kind"] == "screen").unwrap();
        assert_eq!(screen["available"], true, "{sources}");
        assert!(
            sources["screens"].as_array().unwrap().iter().any(|s| s["display"] == display.1.as_str()),
            "the test's display is listed: {sources}"
        );

        let microphones = call(&webview, "list_microphones", json!({})).unwrap();
        let default = microphones[0]["name"].clone();
        let args = json!({
            "device": default,
            "name": "Screen lesson",
            "onEvent": "__CHANNEL__:7",
            "source": {"kind": "screen", "display": display.1},
            "size": "720p",
        });
        let started = call(&webview, "start_recording", args).unwrap();
        assert_eq!(started["name"], "Screen lesson");
        let journal = opptak_journal::Journal::open_in(temp.path()).unwrap();
        // Recorded until the first fragments are durable on disk.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let recording = journal.recordings().unwrap().into_iter().next().unwrap();
            if recording.durable_bytes > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "nothing durable: {recording:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(call(&webview, "pause_recording", json!({})).unwrap(), serde_json::Value::Null);
        assert_eq!(call(&webview, "resume_recording", json!({})).unwrap(), serde_json::Value::Null);
        assert_eq!(call(&webview, "stop_recording", json!({})).unwrap(), serde_json::Value::Null);

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let recordings = journal.recordings().unwrap();
            assert_eq!(recordings.len(), 1);
            let recording = &recordings[0];
            assert!(recording.content_type == "video/mp4" && recording.is_video, "{recording:?}");
            assert!(recording.path.extension().is_some_and(|ext| ext == "mp4"), "{recording:?}");
            if recording.state == opptak_journal::RecordingState::Ready {
                assert_eq!(recording.sha256, recording.server_sha256);
                let listed = call(&webview, "list_recordings", json!({})).unwrap();
                let length = listed[0]["lengthSeconds"].as_f64();
                assert!(length.is_some_and(|seconds| seconds > 0.0), "the video's length: {listed}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not safe on the server: {recording:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }

        // The tray and the shortcut now film the screen too.
        tauri::async_runtime::block_on(crate::controls::start(&engine)).unwrap();
        let recordings = journal.recordings().unwrap();
        assert!(recordings.len() == 2 && recordings.iter().all(|r| r.is_video), "{recordings:?}");
        tauri::async_runtime::block_on(engine.stop()).unwrap();
    }

    #[test]
    fn testing_a_microphone_that_is_not_there_is_a_typed_error_and_no_recording() {
        let temp = tempfile::tempdir().unwrap();
        let (_app, webview) = window(temp.path());
        let channel = format!("__CHANNEL__:{}", 7);
        let err = call(&webview, "test_microphone", json!({"device": "No Such Mic", "onLevel": channel}))
            .unwrap_err();
        // With a sound system the name is unknown; without one there is no microphone at all.
        let code = err["code"].as_str().unwrap();
        assert!(["unknown_device", "no_microphone", "sound_system"].contains(&code), "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(!message.contains("--") && !message.contains("opptak "), "{message}");
        let listed = call(&webview, "list_recordings", json!({})).unwrap();
        assert_eq!(listed, json!([]), "a microphone test is not a recording");
    }
}
