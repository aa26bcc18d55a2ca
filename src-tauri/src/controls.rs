//! Recording controls that work without the window: the tray menu, the
//! global shortcut and `opptak toggle` all end here, as plain functions over
//! the engine, and the app's [`Activity`] (idle, recording, paused,
//! uploading) that the tray, the sleep inhibitor and closing follow.
//!
//! The activity is read off the engine, never kept beside it: a recording
//! started or paused in the window and one started from the tray look the
//! same, because both are only what the engine's recorder and Library say.

use std::sync::Arc;

use opptak_core::app_engine::{RecorderState, RecordingChoice};
use opptak_core::{AppEngine, LibraryEntry, LibraryStatus};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::watch;

use crate::i18n::Language;
use crate::{AppState, CommandError};

/// The event the window hears whenever the [`Activity`] changes, so a
/// recording started from the tray or the shortcut shows up there too.
pub const ACTIVITY_EVENT: &str = "desktop-activity";

/// The event carrying a sentence the window shows in its status line
/// (a shortcut that failed, a tray that cannot be shown…).
pub const NOTICE_EVENT: &str = "desktop-notice";

/// Starts the desktop integration once the app runs: follows the engine,
/// builds the tray, keeps the computer awake while recording, registers the
/// shortcut, and, when this launch was `opptak toggle`, starts recording.
pub fn setup<R: Runtime>(app: &AppHandle<R>, launch_args: &[String]) {
    let desktop = app.state::<Desktop>();
    if let Ok(engine) = app.state::<AppState>().engine() {
        crate::settings::restore_language(&engine, &desktop);
        tauri::async_runtime::spawn(follow_engine(engine, desktop.activity.clone()));
    }
    let activity = desktop.activity.subscribe();
    let app_for_events = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut activity = activity;
        while activity.changed().await.is_ok() {
            let now = *activity.borrow_and_update();
            if let Err(err) = app_for_events.emit(ACTIVITY_EVENT, now) {
                tracing::debug!(error = %err, "the window missed an activity change");
            }
        }
    });
    tauri::async_runtime::spawn(crate::awake::follow(desktop.activity.subscribe(), desktop.awake.clone()));
    crate::tray::check_host(app);
    if let Err(err) = crate::tray::create(app, desktop.activity.subscribe(), desktop.language.subscribe()) {
        tracing::warn!(error = %err, "the tray icon could not be made; use the window");
    }
    crate::shortcut::register_saved(app);
    if crate::instance::asks_toggle(launch_args) {
        spawn(app, "opptak toggle at launch", |engine| async move { toggle(&engine).await.map(drop) });
    }
}

/// What the app is doing, as the tray shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, specta::Type)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Activity {
    /// Nothing records and nothing uploads.
    #[default]
    Idle,
    /// A lesson is being recorded (also while a lost microphone is awaited).
    Recording,
    /// The teacher paused the recording.
    Paused,
    /// Nothing records; recordings are being sent.
    Uploading {
        /// How much of what is being sent the servers have, 0–99.
        percent: u8,
    },
}

impl Activity {
    /// Whether a recording runs (paused or not).
    pub fn is_recording(self) -> bool {
        matches!(self, Self::Recording | Self::Paused)
    }
}

/// The activity, from the running recorder's state (`None`: nothing
/// records) and the Library's rows.
pub fn activity_of(recorder: Option<&RecorderState>, library: &[LibraryEntry]) -> Activity {
    match recorder {
        Some(RecorderState::Paused) => return Activity::Paused,
        // A lost microphone is still a lesson in progress: recording goes
        // on by itself when it is back.
        Some(RecorderState::Recording | RecorderState::DeviceLost) => return Activity::Recording,
        Some(RecorderState::Stopped) | None => {}
    }
    let (mut sent, mut total, mut any) = (0u64, 0u64, false);
    for entry in library {
        if let LibraryStatus::Uploading { sent_bytes, total_bytes, .. } = entry.status {
            any = true;
            sent = sent.saturating_add(sent_bytes);
            total = total.saturating_add(total_bytes);
        }
    }
    if !any {
        return Activity::Idle;
    }
    // 100 % only once the server has checked it: that is "safe", not uploading.
    let percent = sent.saturating_mul(100).checked_div(total).unwrap_or(0).min(99);
    Activity::Uploading { percent: u8::try_from(percent).unwrap_or(99) }
}

/// Publishes the engine's [`Activity`] on `activity` until the Library
/// stops (the app is closing).
pub async fn follow_engine(engine: Arc<AppEngine>, activity: watch::Sender<Activity>) {
    let mut library = match engine.library().watch().await {
        Ok(library) => library,
        Err(err) => {
            tracing::error!(error = %err, "the tray and the sleep inhibitor cannot follow the recordings");
            return;
        }
    };
    loop {
        let mut progress = engine.recorder_progress().await;
        let recorder = progress.as_mut().map(|progress| progress.borrow_and_update().state);
        let now = activity_of(recorder.as_ref(), &library.borrow_and_update());
        activity.send_if_modified(|shown| std::mem::replace(shown, now) != now);
        let recorder_changed = async {
            let alive = match progress.as_mut() {
                Some(progress) => progress.changed().await.is_ok(),
                None => false,
            };
            // A recorder that is gone has stopped: the Library says so next.
            if !alive {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = library.changed() => if changed.is_err() { return },
            () = recorder_changed => {}
        }
    }
}

/// What a toggle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum Toggled {
    /// A recording started: what the window last recorded, with the
    /// default microphone.
    Started,
    /// The recording stopped; it is saved and its upload goes on.
    Stopped,
}

/// Starts recording what the window last recorded (the microphone alone
/// until it recorded), with the microphone it last chose while that is
/// plugged in (else the default), named with the date and time.
pub async fn start(engine: &Arc<AppEngine>) -> Result<(), CommandError> {
    let reading = engine.clone();
    let choice = tauri::async_runtime::spawn_blocking(move || reading.opptak().recording_choice())
        .await
        .map_err(|err| {
            CommandError::new("internal", format!("Starting stopped unexpectedly ({err}). Try again."))
        })?
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "the saved choice could not be read; recording the microphone");
            RecordingChoice::default()
        });
    // Nobody listens to the feed here: the window follows the activity and
    // the Library, which the engine keeps without it.
    let started = engine.start_source(&choice.source, choice.size, choice.microphone.clone(), None).await;
    match started {
        // An unplugged microphone fails before anything is written.
        Err(opptak_core::Error::Capture(opptak_core::app_engine::CaptureError::UnknownDevice { name })) => {
            tracing::info!(microphone = %name, "the saved microphone is not plugged in; recording the default");
            engine.start_source(&choice.source, choice.size, None, None).await?;
        }
        started => {
            started?;
        }
    }
    Ok(())
}

/// Stops the recording; it is saved on this computer and uploads.
pub async fn stop(engine: &AppEngine) -> Result<(), CommandError> {
    engine.stop().await?;
    Ok(())
}

/// Starts a recording when none runs, else stops it.
pub async fn toggle(engine: &Arc<AppEngine>) -> Result<Toggled, CommandError> {
    if engine.is_recording().await {
        stop(engine).await.map(|()| Toggled::Stopped)
    } else {
        start(engine).await.map(|()| Toggled::Started)
    }
}

/// Pauses a running recording, or resumes a paused one.
pub async fn pause_or_resume(engine: &AppEngine) -> Result<(), CommandError> {
    let progress = engine.recorder_progress().await.ok_or(opptak_core::Error::NotRecording)?;
    let paused = progress.borrow().state == RecorderState::Paused;
    if paused {
        engine.resume().await?;
    } else {
        engine.pause().await?;
    }
    Ok(())
}

/// The app-wide state of the desktop integration.
#[derive(Debug)]
pub struct Desktop {
    /// What the app is doing; the tray, the sleep inhibitor and closing follow it.
    pub activity: watch::Sender<Activity>,
    /// Whether a tray host shows Opptak's tray icon; `None` until checked.
    pub tray_shown: std::sync::Mutex<Option<bool>>,
    /// The start/stop shortcut and whether it works.
    pub shortcut: std::sync::Mutex<crate::shortcut::ShortcutStatus>,
    /// The language the tray and notifications speak.
    pub language: watch::Sender<Language>,
    /// Whether the computer is kept awake; [`crate::awake::follow`] keeps it.
    pub awake: watch::Sender<crate::awake::Awake>,
}

impl Default for Desktop {
    fn default() -> Self {
        Self {
            activity: watch::channel(Activity::Idle).0,
            tray_shown: std::sync::Mutex::new(None),
            shortcut: std::sync::Mutex::new(crate::shortcut::ShortcutStatus::default()),
            language: watch::channel(Language::current(None)).0,
            awake: watch::channel(crate::awake::Awake::default()).0,
        }
    }
}

impl Desktop {
    /// What the app is doing now.
    pub fn activity(&self) -> Activity {
        *self.activity.borrow()
    }

    /// The language the tray and notifications speak now.
    pub fn language(&self) -> Language {
        *self.language.borrow()
    }

    /// Whether the tray icon can be seen, so hiding the window is safe.
    pub fn tray_shown(&self) -> bool {
        self.tray_shown.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).unwrap_or(false)
    }
}

/// Runs `action` over the engine off the caller's thread (a menu click or a
/// key press) and tells the window when it fails.
pub fn spawn<R, F, Fut>(app: &AppHandle<R>, what: &'static str, action: F)
where
    R: Runtime,
    F: FnOnce(Arc<AppEngine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), CommandError>> + Send,
{
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let outcome = match app.state::<AppState>().engine() {
            Ok(engine) => action(engine).await,
            Err(err) => Err(err),
        };
        if let Err(err) = outcome {
            tracing::warn!(action = what, code = %err.code, error = %err.message, "desktop control failed");
            notice(&app, &err);
        }
    });
}

/// Shows `problem` in the window's status line, in the teacher's language
/// (the window says its code's sentence).
pub fn notice<R: Runtime>(app: &AppHandle<R>, problem: &CommandError) {
    if let Err(err) = app.emit(NOTICE_EVENT, problem) {
        tracing::warn!(error = %err, "the window could not be told: {}", problem.message);
    }
}

/// Brings the main window to the front: shown, unminimised, focused.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    let Some(window) = app.get_webview_window("main") else {
        tracing::warn!("the main window is gone; nothing to show");
        return;
    };
    let shown = window.unminimize().and_then(|()| window.show()).and_then(|()| window.set_focus());
    if let Err(err) = shown {
        tracing::warn!(error = %err, "the window could not be brought to the front");
    }
}

/// What the window shows about the desktop integration.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct DesktopStatus {
    /// What the app is doing.
    pub activity: Activity,
    /// Whether the tray icon can be seen; when not, closing the window
    /// cannot keep recording in the tray.
    pub tray_shown: bool,
    /// The start/stop shortcut.
    pub shortcut: crate::shortcut::ShortcutStatus,
    /// Whether the computer is kept awake while recording, as the app
    /// itself records it.
    pub awake: crate::awake::Awake,
}

/// The tray, the shortcut and what the app is doing, for Settings and the
/// close dialog.
#[tauri::command]
#[specta::specta]
pub fn desktop_status(desktop: tauri::State<'_, Desktop>) -> DesktopStatus {
    DesktopStatus {
        activity: desktop.activity(),
        tray_shown: desktop.tray_shown(),
        shortcut: desktop.shortcut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
        awake: desktop.awake.borrow().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tray::{self, MenuAction};
    use opptak_core::DataDir;
    use std::time::{Duration, Instant};
    use tauri_plugin_global_shortcut::{ShortcutEvent, ShortcutState};

    /// Waits (bounded) until the activity is `wanted`.
    fn wait_for(
        activity: &mut watch::Receiver<Activity>,
        wanted: fn(Activity) -> bool,
        what: &str,
    ) -> Activity {
        let reached = tauri::async_runtime::block_on(async {
            let waited =
                tokio::time::timeout(Duration::from_secs(15), activity.wait_for(|now| wanted(*now))).await;
            waited.ok().map(|reached| *reached.expect("the follower runs"))
        });
        reached.unwrap_or_else(|| panic!("not {what}: {:?}", *activity.borrow()))
    }

    /// The tray menu, the shortcut and a second launch with `--toggle`
    /// drive one real recording (virtual microphone, the server inside the
    /// app on 127.0.0.1) from start through pause and resume to safe on the
    /// server, and the activity the tray shows follows each step.
    #[test]
    fn tray_shortcut_and_toggle_drive_a_real_recording_to_safe_on_the_server() {
        if crate::test_support::ran_in_a_child(
            "controls::tests::tray_shortcut_and_toggle_drive_a_real_recording_to_safe_on_the_server",
        ) {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let engine =
            Arc::new(tauri::async_runtime::block_on(AppEngine::open(&DataDir::at(temp.path()))).unwrap());
        let state =
            AppState::new(DataDir::at(temp.path()), temp.path().join("logs/opptak.log"), Ok(engine.clone()));
        let app = crate::create_app(tauri::test::mock_builder(), state)
            .build(tauri::test::mock_context(tauri::test::noop_assets()))
            .expect("mock app builds");
        let desktop = app.state::<Desktop>();
        tauri::async_runtime::spawn(follow_engine(engine.clone(), desktop.activity.clone()));
        let mut activity = desktop.activity.subscribe();
        assert_eq!(*activity.borrow(), Activity::Idle);

        // The shortcut starts a recording of the default microphone when
        // the one the window chose last is unplugged.
        let unplugged =
            RecordingChoice { microphone: Some("Headset that was unplugged".into()), ..Default::default() };
        engine.opptak().set_recording_choice(&unplugged).unwrap();
        crate::shortcut::on_shortcut(
            app.handle(),
            &crate::shortcut::parse(crate::shortcut::DEFAULT_SHORTCUT).unwrap(),
            ShortcutEvent { id: 0, state: ShortcutState::Pressed },
        );
        wait_for(&mut activity, |now| now == Activity::Recording, "recording");
        // A key's release does nothing.
        crate::shortcut::on_shortcut(
            app.handle(),
            &crate::shortcut::parse(crate::shortcut::DEFAULT_SHORTCUT).unwrap(),
            ShortcutEvent { id: 0, state: ShortcutState::Released },
        );
        tray::on_menu(app.handle(), MenuAction::PauseOrResume);
        wait_for(&mut activity, |now| now == Activity::Paused, "paused");
        assert!(tauri::async_runtime::block_on(engine.is_recording()), "the release did not stop it");
        tray::on_menu(app.handle(), MenuAction::PauseOrResume);
        wait_for(&mut activity, |now| now == Activity::Recording, "resumed");

        // Something to record: a second of sound, read off the recorder.
        let mut progress = tauri::async_runtime::block_on(engine.recorder_progress()).expect("recording");
        tauri::async_runtime::block_on(async {
            let recorded = progress.wait_for(|progress| progress.recorded >= Duration::from_secs(1));
            tokio::time::timeout(Duration::from_secs(15), recorded)
                .await
                .expect("a second recorded")
                .unwrap();
        });

        // `opptak toggle` arrives as a second launch's arguments: it stops.
        crate::instance::on_second_launch(app.handle(), &["opptak-desktop".into(), "--toggle".into()]);
        wait_for(&mut activity, |now| !now.is_recording(), "stopped");
        let journal = opptak_journal::Journal::open_in(temp.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let recordings = journal.recordings().unwrap();
            assert_eq!(recordings.len(), 1, "one recording");
            if recordings[0].state == opptak_journal::RecordingState::Ready {
                assert_eq!(recordings[0].sha256, recordings[0].server_sha256);
                break;
            }
            assert!(Instant::now() < deadline, "not safe on the server: {:?}", recordings[0]);
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for(&mut activity, |now| now == Activity::Idle, "idle once safe");

        // The tray's Start/Stop starts the next one, and stops it.
        tray::on_menu(app.handle(), MenuAction::StartOrStop);
        wait_for(&mut activity, |now| now == Activity::Recording, "recording from the tray");
        tray::on_menu(app.handle(), MenuAction::StartOrStop);
        wait_for(&mut activity, |now| !now.is_recording(), "stopped from the tray");
        assert_eq!(journal.recordings().unwrap().len(), 2);
    }

    fn entry(id: i64, status: LibraryStatus) -> LibraryEntry {
        LibraryEntry {
            id,
            name: format!("lesson {id}"),
            created_at: 0,
            length_seconds: None,
            size_bytes: 100,
            destination: None,
            path: format!("/r/{id}.wav"),
            content_type: "audio/wav".into(),
            has_local_file: true,
            link: None,
            status,
        }
    }

    fn uploading(sent: u64, total: u64) -> LibraryStatus {
        LibraryStatus::Uploading {
            sent_bytes: sent,
            total_bytes: total,
            bytes_per_second: None,
            seconds_left: None,
        }
    }

    #[test]
    fn the_tray_reads_the_recorder_first_then_the_uploads() {
        let library =
            vec![entry(1, uploading(30, 100)), entry(2, uploading(13, 100)), entry(3, LibraryStatus::Safe)];
        assert_eq!(activity_of(Some(&RecorderState::Recording), &library), Activity::Recording);
        assert_eq!(activity_of(Some(&RecorderState::DeviceLost), &[]), Activity::Recording);
        assert_eq!(activity_of(Some(&RecorderState::Paused), &library), Activity::Paused);
        // Two uploads together: 43 of 200 bytes.
        assert_eq!(activity_of(None, &library), Activity::Uploading { percent: 21 });
        assert_eq!(
            activity_of(Some(&RecorderState::Stopped), &[entry(1, uploading(100, 100))]),
            Activity::Uploading { percent: 99 }
        );
        assert_eq!(activity_of(None, &[entry(1, uploading(0, 0))]), Activity::Uploading { percent: 0 });
        assert_eq!(activity_of(None, &[entry(3, LibraryStatus::Safe)]), Activity::Idle);
        assert!(Activity::Paused.is_recording() && !Activity::Uploading { percent: 5 }.is_recording());
    }
}
