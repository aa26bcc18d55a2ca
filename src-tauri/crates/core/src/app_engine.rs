//! The engine as the desktop app owns it: one [`Opptak`], the destination
//! recordings go to (the server inside the app, "This computer"), and at
//! most one recording at a time.
//!
//! After a recording stops, its [`RecordingStatus`] follows it from "saved
//! on this computer" to "safe on server" on a `watch` channel, so a window
//! that looks late still sees the last state, never a stale one. The
//! status is read off the [`Library`], which follows every running upload
//! (those resumed at launch, the stopped recording's, retries and
//! uploaded files) and holds what each recording's row says.

use std::sync::Arc;

use opptak_upload::UploadConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast, watch};

use crate::library::{Library, LibraryEntry, LibraryStatus};
pub use opptak_capture::RecorderState;
pub use opptak_capture::{CaptureEvent, Error as CaptureError, InputDevice, Progress};

use crate::recording::VideoOptions;
use crate::{
    DataDir, Destination, Error, Opptak, RecordOptions, RecordingSession, Result, SessionEvent, Target,
};

/// How long "Test microphone" listens.
pub const MICROPHONE_TEST_LENGTH: std::time::Duration = std::time::Duration::from_secs(3);

/// Free space a microphone test needs: its few seconds and some margin.
const MICROPHONE_TEST_MIN_FREE: u64 = 20_000_000;

/// What a microphone test heard.
#[derive(Debug, Clone, PartialEq)]
pub struct MicrophoneTest {
    /// The microphone's name, as the computer gives it.
    pub microphone: String,
    /// Whether anything louder than the engine's silence threshold came in.
    pub heard: bool,
    /// The loudest peak, in dBFS (−∞ for digital silence).
    pub loudest_dbfs: f32,
    /// The WAV file holding what was heard, to play back.
    pub file: std::path::PathBuf,
}

/// What a recording films besides the microphone, which is always recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RecordingSource {
    /// Sound alone, into a WAV file.
    #[default]
    Microphone,
    /// The screen, into an MP4 video.
    Screen {
        /// The display (`:0`), as [`VideoSources::screens`] lists it;
        /// `None` for the one Opptak itself shows on.
        display: Option<String>,
    },
    /// A camera, into an MP4 video.
    Camera {
        /// The camera's device, as [`VideoSources::cameras`] lists it.
        device: String,
    },
    /// The screen with the camera's picture in its lower right corner.
    ScreenAndCamera {
        /// The display; `None` for the one Opptak itself shows on.
        display: Option<String>,
        /// The camera's device.
        camera: String,
    },
}

impl RecordingSource {
    /// What the recorder films at `size`; `None` for sound alone.
    pub fn video_options(&self, size: VideoSize) -> Option<VideoOptions> {
        let source = match self.clone() {
            Self::Microphone => return None,
            Self::Screen { display } => opptak_capture::VideoSource::Screen { display },
            Self::Camera { device } => opptak_capture::VideoSource::Camera { device },
            Self::ScreenAndCamera { display, camera } => {
                opptak_capture::VideoSource::ScreenWithCamera { display, camera }
            }
        };
        Some(VideoOptions { source, preset: size.preset() })
    }

    /// Which of the four choices this is.
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Microphone => SourceKind::Microphone,
            Self::Screen { .. } => SourceKind::Screen,
            Self::Camera { .. } => SourceKind::Camera,
            Self::ScreenAndCamera { .. } => SourceKind::ScreenAndCamera,
        }
    }
}

/// What to record and at which size: the Record screen's choice, which the
/// tray and the shortcut start too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RecordingChoice {
    /// The microphone alone, or a screen or camera with it.
    pub source: RecordingSource,
    /// The picture size of a video.
    pub size: VideoSize,
    /// The microphone by name; `None`: the computer's default.
    #[serde(default)]
    pub microphone: Option<String>,
}

/// The picture size of a screen or camera recording, at 30 frames a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum VideoSize {
    /// 1280×720: sharp enough for slides, half the CPU and bytes of 1080p.
    #[default]
    #[serde(rename = "720p")]
    Hd720,
    /// 1920×1080.
    #[serde(rename = "1080p")]
    Hd1080,
}

impl VideoSize {
    /// The capture preset it records with.
    pub fn preset(self) -> opptak_capture::VideoPreset {
        match self {
            Self::Hd720 => opptak_capture::VideoPreset::P720At30,
            Self::Hd1080 => opptak_capture::VideoPreset::P1080At30,
        }
    }
}

/// The four things a teacher can choose to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    /// Sound alone.
    Microphone,
    /// The screen with sound.
    Screen,
    /// A camera with sound.
    Camera,
    /// The screen with the camera in a corner, with sound.
    ScreenAndCamera,
}

/// One of the four choices, and whether this computer can record it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct SourceChoice {
    /// Which choice.
    pub kind: SourceKind,
    /// Whether it can be recorded now.
    pub available: bool,
    /// Why it cannot, and what to do, in a teacher's words; `None` when available.
    pub reason: Option<String>,
    /// The same as a code a window can put in the teacher's language.
    pub unavailable: Option<Unavailable>,
}

/// Why a screen or camera choice cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum Unavailable {
    /// GStreamer, or a part of it, is missing.
    VideoMissing,
    /// A Wayland desktop, whose screen the X11 capture cannot film.
    Wayland,
    /// No screen Opptak can film.
    NoScreen,
    /// No camera is connected.
    NoCamera,
}

/// A screen a recording can film.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct ScreenChoice {
    /// The display, e.g. `:0`; pass it in [`RecordingSource::Screen`].
    pub display: String,
    /// Whether Opptak itself shows on it.
    pub is_default: bool,
}

/// A camera a recording can film.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct CameraChoice {
    /// The device, e.g. `/dev/video0`; pass it in [`RecordingSource::Camera`].
    pub device: String,
    /// What the camera calls itself.
    pub name: String,
}

/// What the Record screen offers: the four choices with whether each can
/// be recorded, and the screens and cameras found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct VideoSources {
    /// Microphone, Screen, Camera, Screen and camera, in that order.
    pub choices: Vec<SourceChoice>,
    /// The screens, Opptak's own first.
    pub screens: Vec<ScreenChoice>,
    /// The cameras.
    pub cameras: Vec<CameraChoice>,
}

/// What the computer offers for video, as [`source_choices`] weighs it.
#[derive(Debug, Clone, Default)]
pub struct VideoSupport {
    /// Why video cannot be recorded at all (GStreamer or a part of it is
    /// missing, or this build has none); `None` when it can.
    pub missing: Option<String>,
    /// Whether the desktop is a Wayland session, whose screen the X11
    /// capture cannot film.
    pub wayland: bool,
    /// How many screens were found.
    pub screens: usize,
    /// How many cameras were found.
    pub cameras: usize,
}

/// The four choices and why any of them cannot be recorded.
pub fn source_choices(support: &VideoSupport) -> Vec<SourceChoice> {
    let missing = support.missing.as_ref().map(|missing| {
        format!(
            "Screen and camera recording needs GStreamer, which is not complete on this computer ({missing}). \
             Ask IT to install it; recording sound alone still works."
        )
    });
    let missing = missing.map(|reason| (Unavailable::VideoMissing, reason));
    let screen = missing.clone().or_else(|| {
        if support.wayland {
            Some((
                Unavailable::Wayland,
                "Opptak cannot film the screen of a Wayland desktop yet. Log out, choose an Xorg (X11) \
                 session on the login screen, and try again."
                    .to_owned(),
            ))
        } else if support.screens == 0 {
            Some((
                Unavailable::NoScreen,
                "No screen was found to record: Opptak is not running on a desktop it can film. \
                 Open Opptak from your desktop and try again."
                    .to_owned(),
            ))
        } else {
            None
        }
    });
    let camera = missing.or_else(|| {
        (support.cameras == 0).then(|| {
            (
                Unavailable::NoCamera,
                "No camera is connected. Plug one in and open this screen again.".to_owned(),
            )
        })
    });
    let both = screen.clone().or_else(|| camera.clone());
    let choice = |kind, why: Option<(Unavailable, String)>| {
        let (unavailable, reason) = why.unzip();
        SourceChoice { kind, available: reason.is_none(), reason, unavailable }
    };
    vec![
        choice(SourceKind::Microphone, None),
        choice(SourceKind::Screen, screen),
        choice(SourceKind::Camera, camera),
        choice(SourceKind::ScreenAndCamera, both),
    ]
}

/// Where a recording is, in the order a teacher sees it pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum RecordingStatus {
    /// The microphone is being recorded.
    Recording,
    /// The file is finished and safe on this computer; its upload has not
    /// moved since.
    Saved,
    /// Parts are being sent.
    Uploading {
        /// How much of the file the server has, 0–99.
        percent: u8,
    },
    /// The server cannot be reached; the upload goes on by itself when it can.
    WaitingForNetwork,
    /// Everything is sent; the server is checking the file.
    Checking,
    /// The server holds the recording with the same SHA-256 as this computer.
    Safe,
    /// The recording stays on this computer only: there is nowhere to send it.
    OnlyOnThisComputer {
        /// Why, and what to do.
        message: String,
    },
    /// The upload stopped for good.
    Failed {
        /// What happened and what to do.
        message: String,
    },
}

impl RecordingStatus {
    /// Whether nothing more will change without the teacher.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Safe | Self::Failed { .. } | Self::OnlyOnThisComputer { .. })
    }
}

/// What a front end follows while a recording runs and after it stops.
#[derive(Debug)]
pub struct RecordingFeed {
    /// The journal id of the recording.
    pub local_id: i64,
    /// Levels, warnings, pauses and upload events.
    pub events: broadcast::Receiver<SessionEvent>,
    /// Recorded time and durable lengths.
    pub progress: watch::Receiver<Progress>,
    /// Where the recording is; [`RecordingStatus::Recording`] until stopped.
    pub status: watch::Receiver<RecordingStatus>,
}

struct Current {
    session: RecordingSession,
    status: watch::Sender<RecordingStatus>,
    /// The files of the lesson finished before this session's (it went on
    /// in a new file after the computer slept), which its status follows too.
    earlier_files: Vec<i64>,
}

/// The one owner of the engine in the desktop app.
pub struct AppEngine {
    opptak: Opptak,
    destination: Option<Arc<Destination>>,
    destination_label: String,
    current: Mutex<Option<Current>>,
    /// Every recording and the uploads running for them.
    library: Library,
    /// The destination chosen in Settings and its label, for recordings
    /// started from now on; `None`: `destination` and `destination_label`.
    chosen: std::sync::RwLock<Option<(Option<Arc<Destination>>, String)>>,
    /// Whether a recording uploads while it records (else from Stop on).
    upload_while_recording: std::sync::atomic::AtomicBool,
    /// Where the running recording goes after Stop, when it does not
    /// upload while recording.
    upload_after_stop: std::sync::Mutex<Option<Arc<Destination>>>,
    /// Held while "Test microphone" listens.
    microphone_test: Mutex<()>,
    /// Plays recordings in the window; started when first asked for.
    playback: tokio::sync::OnceCell<crate::playback::Playback>,
}

impl std::fmt::Debug for AppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEngine").field("destination", &self.destination_label).finish_non_exhaustive()
    }
}

impl AppEngine {
    /// Opens the journal in `data_dir`, starts the server inside the app
    /// and resumes the uploads a crash or a lost network interrupted.
    /// When the server cannot start, recordings stay on this computer and
    /// [`AppEngine::destination_label`] says why.
    pub async fn open(data_dir: &DataDir) -> Result<Self> {
        let opptak = Opptak::open(data_dir)?;
        let (destination, label) = match opptak.connect(&Target::Embedded).await {
            Ok(destination) => {
                let label = format!("{} ({})", crate::uploads::EMBEDDED_NAME, destination.client.base_url());
                (Some(Arc::new(destination)), label)
            }
            Err(err) => {
                tracing::error!(error = %err, "embedded destination failed");
                (None, format!("{} is not available: {err}", crate::uploads::EMBEDDED_NAME))
            }
        };
        let engine = Self::with_destination(opptak, destination, label);
        match engine.opptak.resume_all(engine.destination.as_deref(), UploadConfig::default()).await {
            Ok(running) => {
                tracing::info!(uploads = running.len(), "resumed unfinished uploads");
                for (recording, upload) in running {
                    engine.library.register(recording.id, upload);
                }
            }
            Err(err) => tracing::error!(error = %err, "could not resume unfinished uploads"),
        }
        Ok(engine)
    }

    /// An engine over `opptak` that uploads to `destination` (none: every
    /// recording stays on this computer), described to the teacher as `label`.
    pub fn with_destination(opptak: Opptak, destination: Option<Arc<Destination>>, label: String) -> Self {
        let library = Library::new(opptak.clone(), destination.clone(), UploadConfig::default());
        Self {
            opptak,
            destination,
            destination_label: label,
            current: Mutex::new(None),
            library,
            chosen: std::sync::RwLock::new(None),
            upload_while_recording: std::sync::atomic::AtomicBool::new(true),
            upload_after_stop: std::sync::Mutex::new(None),
            microphone_test: Mutex::new(()),
            playback: tokio::sync::OnceCell::new(),
        }
    }

    /// Makes recordings started from now on go to `destination` (none: they
    /// stay on this computer), described to the teacher as `label`. A
    /// running recording goes on to where it started.
    pub fn set_destination(&self, destination: Option<Arc<Destination>>, label: String) {
        *self.chosen.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((destination, label));
    }

    /// Makes recordings started from now on go to the server inside the
    /// app again (the destination the engine opened with).
    pub fn use_this_computer(&self) {
        *self.chosen.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// The server inside the app, when it runs.
    pub fn this_computer(&self) -> Option<Arc<Destination>> {
        self.destination.clone()
    }

    /// Where the next recording goes, and its label.
    pub fn next_destination(&self) -> (Option<Arc<Destination>>, String) {
        match &*self.chosen.read().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            Some((destination, label)) => (destination.clone(), label.clone()),
            None => (self.destination.clone(), self.destination_label.clone()),
        }
    }

    /// Whether recordings started from now on upload while recording
    /// (`true`, the default) or only from Stop on.
    pub fn set_upload_while_recording(&self, on: bool) {
        self.upload_while_recording.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`AppEngine::set_upload_while_recording`].
    pub fn upload_while_recording(&self) -> bool {
        self.upload_while_recording.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every recording, where it is, and the uploads running for them.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Uploads the file at `path` to where the next recording goes (the
    /// teacher's default destination), as `opptak upload` does; returns its
    /// journal id.
    pub async fn upload_file(&self, path: &std::path::Path) -> Result<i64> {
        crate::library::uploadable(path)?;
        let (destination, label) = self.next_destination();
        let destination = destination.ok_or_else(|| {
            Error::Destination(format!(
                "The file cannot be uploaded now: recordings go to {}. Choose where recordings go in Settings and try again.",
                label.trim_end_matches('.')
            ))
        })?;
        self.library.upload_file(path, &destination).await
    }

    /// The engine.
    pub fn opptak(&self) -> &Opptak {
        &self.opptak
    }

    /// Where the next recording goes, in words ("This computer (http://127.0.0.1:…)").
    pub fn destination_label(&self) -> String {
        self.next_destination().1
    }

    /// The microphones this computer offers, the system default first and
    /// marked. Asks the sound system: call it off the async threads.
    pub fn microphones() -> Result<Vec<InputDevice>> {
        Ok(opptak_capture::input_devices()?)
    }

    /// The screens and cameras this computer offers, and which of the four
    /// choices (microphone, screen, camera, both) can be recorded, with why
    /// not. Asks GStreamer and the system: call it off the async threads.
    pub fn video_sources() -> VideoSources {
        let screens: Vec<ScreenChoice> = opptak_capture::screens()
            .into_iter()
            .map(|screen| ScreenChoice { display: screen.display, is_default: screen.is_default })
            .collect();
        let cameras: Vec<CameraChoice> = opptak_capture::cameras()
            .into_iter()
            .map(|camera| CameraChoice { device: camera.device, name: camera.name })
            .collect();
        let support = VideoSupport {
            missing: opptak_capture::video_unavailable(),
            wayland: opptak_capture::wayland_session(),
            screens: screens.len(),
            cameras: cameras.len(),
        };
        VideoSources { choices: source_choices(&support), screens, cameras }
    }

    /// Starts recording `device` (`None`: the system default) as `name`,
    /// uploading while recording. Fails with [`Error::AlreadyRecording`]
    /// while another recording runs.
    pub async fn start(&self, device: Option<String>, name: Option<String>) -> Result<RecordingFeed> {
        self.start_source(&RecordingSource::Microphone, VideoSize::default(), device, name).await
    }

    /// Starts recording `source` (with the microphone `device`, `None`: the
    /// system default; a video at `size`) as `name`, uploading while
    /// recording. Fails with [`Error::AlreadyRecording`] while another
    /// recording runs, and — leaving nothing behind — when the screen or
    /// camera cannot be filmed.
    pub async fn start_source(
        &self,
        source: &RecordingSource,
        size: VideoSize,
        device: Option<String>,
        name: Option<String>,
    ) -> Result<RecordingFeed> {
        let mut current = self.current.lock().await;
        if current.is_some() {
            return Err(Error::AlreadyRecording);
        }
        let video = source.video_options(size);
        let device = match (&video, device) {
            (Some(_), Some(device)) => video_microphone(device).await,
            (_, device) => device,
        };
        let options = RecordOptions { device, name, video, ..RecordOptions::default() };
        let (destination, _) = self.next_destination();
        let uploading_now = self.upload_while_recording();
        let session = self.opptak.record(options, destination.as_deref().filter(|_| uploading_now)).await?;
        if let Some(destination) = destination.filter(|_| !uploading_now) {
            // Journaled at once, so a crash resumes it to the same place.
            let (id, destination_id) = (session.local_id(), destination.id);
            self.opptak.blocking(move |journal| journal.set_destination(id, Some(destination_id))).await?;
            *self.upload_after_stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(destination);
        }
        let (status, status_rx) = watch::channel(RecordingStatus::Recording);
        let feed = RecordingFeed {
            local_id: session.local_id(),
            events: session.subscribe(),
            progress: session.progress(),
            status: status_rx,
        };
        *current = Some(Current { session, status, earlier_files: Vec::new() });
        self.library.changed();
        Ok(feed)
    }

    /// The server the window plays recordings from, started on first use.
    pub async fn playback(&self) -> Result<&crate::playback::Playback> {
        self.playback.get_or_try_init(|| crate::playback::Playback::start(self.opptak.clone())).await
    }

    /// Bytes free on the disk that holds the data folder: what recordings
    /// can still fill.
    pub fn free_space(&self) -> Result<u64> {
        let path = self.opptak.data_dir().path();
        fs4::available_space(path).map_err(|source| Error::DataDirUnusable { path: path.to_owned(), source })
    }

    /// Listens to `device` (`None`: the system default) for
    /// [`MICROPHONE_TEST_LENGTH`] into `file`, a scratch WAV outside the
    /// journal (replaced if it exists), calling `on_level` with each event
    /// as the microphone reports it. Refused while a recording runs, whose
    /// own meter already shows the microphone.
    pub async fn test_microphone(
        &self,
        device: Option<String>,
        file: &std::path::Path,
        mut on_level: impl FnMut(&CaptureEvent) + Send,
    ) -> Result<MicrophoneTest> {
        // One test at a time: they share the scratch file.
        let _testing = self.microphone_test.lock().await;
        if self.is_recording().await {
            return Err(Error::AlreadyRecording);
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| Error::DataDirUnusable { path: dir.to_owned(), source })?;
        }
        match std::fs::remove_file(file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::DataDirUnusable { path: file.to_owned(), source: err });
            }
            _ => {}
        }
        let mut config = opptak_capture::RecorderConfig::new(file);
        config.device = device;
        // A few seconds of sound need little room; a nearly full disk still
        // lets the teacher check the microphone.
        config.min_free_to_start = MICROPHONE_TEST_MIN_FREE;
        config.min_free_while_recording = MICROPHONE_TEST_MIN_FREE / 2;
        let silence_below = config.silence_threshold_dbfs;
        let recorder =
            tokio::task::spawn_blocking(move || opptak_capture::Recorder::start(config)).await.map_err(
                |err| Error::Recording(format!("the microphone test stopped unexpectedly ({err})")),
            )??;
        let microphone = recorder.format().device.clone();
        let mut events = recorder.subscribe();
        let mut loudest = f32::NEG_INFINITY;
        let until = tokio::time::Instant::now() + MICROPHONE_TEST_LENGTH;
        loop {
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Ok(event)) => {
                    if let CaptureEvent::Level { peak_dbfs, .. } = event {
                        loudest = loudest.max(peak_dbfs);
                    }
                    let stopped = matches!(event, CaptureEvent::Stopped { .. });
                    on_level(&event);
                    if stopped {
                        break;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let files = tokio::task::spawn_blocking(move || recorder.stop())
            .await
            .map_err(|err| Error::Recording(format!("the microphone test stopped unexpectedly ({err})")))??;
        let recorded = files.first().map(|wav| wav.path.clone()).unwrap_or_else(|| file.to_owned());
        Ok(MicrophoneTest {
            microphone,
            heard: loudest > silence_below,
            loudest_dbfs: loudest,
            file: recorded,
        })
    }

    /// Whether a recording runs now.
    pub async fn is_recording(&self) -> bool {
        self.current.lock().await.is_some()
    }

    /// The running recording's state and lengths (recording, paused…),
    /// followed live; `None` while nothing records. Lets the tray and the
    /// sleep inhibitor follow a pause made in any window.
    pub async fn recorder_progress(&self) -> Option<watch::Receiver<Progress>> {
        self.current.lock().await.as_ref().map(|current| current.session.progress())
    }

    /// The running recording's events (silence, pauses, a lost
    /// microphone…) from now on, whoever started it; `None` while nothing
    /// records. Lets notifications follow a recording started from the tray.
    pub async fn recorder_events(&self) -> Option<broadcast::Receiver<SessionEvent>> {
        self.current.lock().await.as_ref().map(|current| current.session.subscribe())
    }

    /// Pauses the recording; paused time is not recorded.
    pub async fn pause(&self) -> Result<()> {
        self.current.lock().await.as_ref().ok_or(Error::NotRecording)?.session.pause();
        Ok(())
    }

    /// Continues the recording after a pause.
    pub async fn resume(&self) -> Result<()> {
        self.current.lock().await.as_ref().ok_or(Error::NotRecording)?.session.resume();
        Ok(())
    }

    /// Stops the recording and finishes its files; their uploads go on, and
    /// the feed's status follows them until the recording is safe on the
    /// server or has failed. Returns the recording's journal id.
    pub async fn stop(&self) -> Result<i64> {
        // Taken out first: stopping waits for the files to be finished, and
        // pause or a second stop meanwhile must not find it.
        let Current { session, status, earlier_files } =
            self.current.lock().await.take().ok_or(Error::NotRecording)?;
        let local_id = session.local_id();
        let stopped = match session.stop().await {
            Ok(stopped) => stopped,
            Err(err) => {
                status.send_replace(RecordingStatus::Failed { message: err.to_string() });
                return Err(err);
            }
        };
        status.send_replace(RecordingStatus::Saved);
        let after_stop =
            self.upload_after_stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let mut files = earlier_files;
        files.extend(self.upload_stopped(stopped.files, after_stop.as_ref()).await);
        self.follow_stopped(files, status).await;
        Ok(local_id)
    }

    /// The computer slept during the running lesson (its microphone or
    /// camera may have gone with it): finishes the file recorded so far,
    /// which uploads like any stopped recording, and at once goes on
    /// recording the same lesson with the same input, video and
    /// destination in a new recording named like the first with its number
    /// ("Lesson (2)"). The running recording stays the one
    /// [`AppEngine::pause`] and [`AppEngine::stop`] act on, its feed and
    /// [`AppEngine::recorder_progress`] go on, and its status becomes safe
    /// once every file of the lesson is. Returns the new recording's
    /// journal id; when it cannot start, the lesson up to the sleep is
    /// saved and uploads, and the error says why.
    pub async fn continue_after_sleep(&self) -> Result<i64> {
        // Held throughout: Stop or Pause meanwhile waits for the new file.
        let mut current = self.current.lock().await;
        let Current { session, status, mut earlier_files } = current.take().ok_or(Error::NotRecording)?;
        let continued = match session.continue_after_sleep().await {
            Ok(continued) => continued,
            Err(err) => {
                drop(current);
                status.send_replace(RecordingStatus::Failed { message: err.to_string() });
                return Err(err);
            }
        };
        let after_stop =
            self.upload_after_stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        earlier_files.extend(self.upload_stopped(continued.previous.files, after_stop.as_ref()).await);
        match continued.next {
            Ok(session) => {
                let id = session.local_id();
                if let Some(destination) = after_stop {
                    // Journaled at once, so a crash resumes it to the same place.
                    let destination_id = destination.id;
                    self.opptak
                        .blocking(move |journal| journal.set_destination(id, Some(destination_id)))
                        .await?;
                }
                *current = Some(Current { session, status, earlier_files });
                drop(current);
                self.library.changed();
                Ok(id)
            }
            Err(err) => {
                drop(current);
                self.upload_after_stop.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
                status.send_replace(RecordingStatus::Saved);
                self.follow_stopped(earlier_files, status).await;
                Err(err)
            }
        }
    }

    /// Hands the uploads of a stopped recording's `files` to the Library,
    /// starting them to `after_stop` when they did not upload while
    /// recording; returns the files' journal ids.
    async fn upload_stopped(
        &self,
        stopped: Vec<crate::RecordedFile>,
        after_stop: Option<&Arc<Destination>>,
    ) -> Vec<i64> {
        let mut files = Vec::with_capacity(stopped.len());
        for file in stopped {
            files.push(file.recording.id);
            if let Some(upload) = file.upload {
                self.library.register(file.recording.id, upload);
            } else if let Some(destination) = after_stop {
                // Upload while recording was off: it starts now.
                let id = file.recording.id;
                let destination_id = destination.id;
                let finished = self
                    .opptak
                    .blocking(move |journal| {
                        journal.set_destination(id, Some(destination_id))?;
                        journal.recording(id)
                    })
                    .await;
                match finished {
                    Ok(Some(recording)) => {
                        let upload = self.opptak.upload(&recording, destination, UploadConfig::default());
                        self.library.register(id, upload);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(recording = id, error = %err, "could not start the upload after Stop");
                    }
                }
            }
        }
        files
    }

    /// Publishes on `status` where the stopped lesson made of `files` is,
    /// until it is safe on the server or has failed.
    async fn follow_stopped(&self, files: Vec<i64>, status: watch::Sender<RecordingStatus>) {
        let nowhere = if self.destination.is_none() {
            format!(
                "{}. The recording is kept on this computer; restart Opptak to upload it.",
                self.destination_label
            )
        } else {
            "The recording is kept on this computer and was not sent anywhere.".to_owned()
        };
        match self.library.watch().await {
            Ok(library) => drop(tokio::spawn(follow_in_library(library, files, status, nowhere))),
            // The recording is saved; only following its upload failed.
            Err(err) => drop(status.send_replace(RecordingStatus::Failed { message: err.to_string() })),
        }
    }
}

/// The microphone a video records from, given the one the teacher chose.
/// The list names inputs as the sound library sees them, while video
/// records through the sound server: the computer's default input is
/// `None` there, so the usual choice always works.
async fn video_microphone(chosen: String) -> Option<String> {
    let default = tokio::task::spawn_blocking(opptak_capture::default_input).await;
    match default {
        Ok(Ok(default)) if default.name == chosen => None,
        _ => Some(chosen),
    }
}

/// Where a recording made of `files` is, from the Library's snapshot;
/// `None` while the snapshot does not know yet that it stopped.
fn status_in_library(entries: &[LibraryEntry], files: &[i64], nowhere: &str) -> Option<RecordingStatus> {
    for id in files {
        let Some(entry) = entries.iter().find(|entry| entry.id == *id) else {
            return Some(RecordingStatus::Failed {
                message:
                    "The recording is no longer in Opptak's list. Look for its file in the recordings folder."
                        .to_owned(),
            });
        };
        return Some(match &entry.status {
            LibraryStatus::Safe => continue,
            LibraryStatus::Recording => return None,
            LibraryStatus::OnlyOnThisComputer => {
                RecordingStatus::OnlyOnThisComputer { message: nowhere.to_owned() }
            }
            LibraryStatus::WaitingForNetwork => RecordingStatus::WaitingForNetwork,
            LibraryStatus::Uploading { sent_bytes, total_bytes, .. } => {
                let percent = sent_bytes.saturating_mul(100).checked_div(*total_bytes).unwrap_or(0).min(99);
                RecordingStatus::Uploading { percent: percent as u8 }
            }
            LibraryStatus::Checking => RecordingStatus::Checking,
            LibraryStatus::Failed { message, .. } => RecordingStatus::Failed { message: message.clone() },
        });
    }
    Some(RecordingStatus::Safe)
}

/// Publishes where the stopped recording is until nothing more changes
/// without the teacher.
async fn follow_in_library(
    mut library: watch::Receiver<Vec<LibraryEntry>>,
    files: Vec<i64>,
    status: watch::Sender<RecordingStatus>,
    nowhere: String,
) {
    loop {
        let now = status_in_library(&library.borrow_and_update(), &files, &nowhere);
        if let Some(now) = now {
            let done = now.is_final();
            status.send_if_modified(|shown| {
                let changed = *shown != now;
                *shown = now;
                changed
            });
            if done {
                return;
            }
        }
        if library.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_record_screen_reads_the_library_as_a_teacher_sees_it() {
        let uploading = |sent| LibraryStatus::Uploading {
            sent_bytes: sent,
            total_bytes: 100,
            bytes_per_second: None,
            seconds_left: None,
        };
        let of = |statuses: Vec<LibraryStatus>| {
            let entries: Vec<LibraryEntry> =
                statuses.into_iter().enumerate().map(|(n, status)| entry(n as i64 + 1, status)).collect();
            let ids: Vec<i64> = entries.iter().map(|entry| entry.id).collect();
            status_in_library(&entries, &ids, "nowhere to go")
        };
        assert_eq!(of(vec![uploading(43)]), Some(RecordingStatus::Uploading { percent: 43 }));
        assert_eq!(
            of(vec![uploading(100)]),
            Some(RecordingStatus::Uploading { percent: 99 }),
            "safe only when checked"
        );
        assert_eq!(of(vec![LibraryStatus::Checking]), Some(RecordingStatus::Checking));
        assert_eq!(of(vec![LibraryStatus::WaitingForNetwork]), Some(RecordingStatus::WaitingForNetwork));
        assert_eq!(of(vec![LibraryStatus::Recording]), None, "the Library has not seen the stop yet");
        assert_eq!(
            of(vec![LibraryStatus::OnlyOnThisComputer]),
            Some(RecordingStatus::OnlyOnThisComputer { message: "nowhere to go".into() })
        );
        // A recording of several files is safe when every file is, and shows the first that is not.
        assert_eq!(of(vec![LibraryStatus::Safe, LibraryStatus::Safe]), Some(RecordingStatus::Safe));
        assert_eq!(
            of(vec![LibraryStatus::Safe, uploading(10)]),
            Some(RecordingStatus::Uploading { percent: 10 })
        );
        let failed = LibraryStatus::Failed {
            code: "offline".into(),
            message: "Try later.".into(),
            needs_teacher: false,
        };
        assert_eq!(of(vec![failed]), Some(RecordingStatus::Failed { message: "Try later.".into() }));
        assert!(matches!(status_in_library(&[], &[7], ""), Some(RecordingStatus::Failed { .. })));
        assert!(RecordingStatus::Safe.is_final() && !RecordingStatus::Checking.is_final());
    }

    #[test]
    fn each_choice_says_why_it_cannot_be_recorded() {
        let reason = |choices: &[SourceChoice], kind| {
            let choice = choices.iter().find(|choice| choice.kind == kind).unwrap();
            assert_eq!(choice.available, choice.reason.is_none(), "{choice:?}");
            assert_eq!(choice.reason.is_some(), choice.unavailable.is_some(), "{choice:?}");
            choice.reason.clone()
        };
        let code = |choices: &[SourceChoice], kind| {
            choices.iter().find(|choice| choice.kind == kind).and_then(|choice| choice.unavailable)
        };
        let everything = VideoSupport { missing: None, wayland: false, screens: 1, cameras: 1 };
        let choices = source_choices(&everything);
        let kinds: Vec<SourceKind> = choices.iter().map(|choice| choice.kind).collect();
        assert_eq!(
            kinds,
            [SourceKind::Microphone, SourceKind::Screen, SourceKind::Camera, SourceKind::ScreenAndCamera]
        );
        assert!(choices.iter().all(|choice| choice.available), "{choices:?}");

        let no_camera = source_choices(&VideoSupport { cameras: 0, ..everything.clone() });
        assert_eq!(reason(&no_camera, SourceKind::Screen), None);
        let why = reason(&no_camera, SourceKind::Camera).unwrap();
        assert!(why.starts_with("No camera is connected."), "{why}");
        assert_eq!(reason(&no_camera, SourceKind::ScreenAndCamera), Some(why));
        assert_eq!(code(&no_camera, SourceKind::ScreenAndCamera), Some(Unavailable::NoCamera));

        let no_gstreamer =
            VideoSupport { missing: Some("GStreamer lacks x264enc".into()), ..everything.clone() };
        let choices = source_choices(&no_gstreamer);
        assert_eq!(reason(&choices, SourceKind::Microphone), None, "sound alone still records");
        for kind in [SourceKind::Screen, SourceKind::Camera, SourceKind::ScreenAndCamera] {
            let why = reason(&choices, kind).unwrap();
            assert!(why.contains("GStreamer lacks x264enc") && why.contains("Ask IT"), "{why}");
        }

        let wayland = source_choices(&VideoSupport { wayland: true, ..everything.clone() });
        assert!(reason(&wayland, SourceKind::Screen).unwrap().contains("Wayland"));
        assert_eq!(code(&wayland, SourceKind::Screen), Some(Unavailable::Wayland));
        assert_eq!(code(&choices, SourceKind::Camera), Some(Unavailable::VideoMissing));
        assert_eq!(reason(&wayland, SourceKind::Camera), None);
        let no_screen = source_choices(&VideoSupport { screens: 0, ..everything });
        assert!(reason(&no_screen, SourceKind::Screen).unwrap().starts_with("No screen"));
        assert_eq!(code(&no_screen, SourceKind::Screen), Some(Unavailable::NoScreen));
        for choices in [&wayland, &no_screen] {
            for choice in choices.iter() {
                let words = choice.reason.clone().unwrap_or_default();
                assert!(!words.contains("--") && !words.contains('`'), "no command line: {words}");
            }
        }
    }

    #[test]
    fn a_source_is_the_video_the_recorder_films() {
        use opptak_capture::{VideoPreset, VideoSource};
        assert_eq!(RecordingSource::Microphone.video_options(VideoSize::Hd1080), None);
        let screen = RecordingSource::Screen { display: Some(":5".into()) };
        assert_eq!(
            screen.video_options(VideoSize::Hd1080),
            Some(VideoOptions {
                source: VideoSource::Screen { display: Some(":5".into()) },
                preset: VideoPreset::P1080At30
            })
        );
        let both = RecordingSource::ScreenAndCamera { display: None, camera: "/dev/video0".into() };
        assert_eq!(
            both.video_options(VideoSize::Hd720).map(|video| video.source),
            Some(VideoSource::ScreenWithCamera { display: None, camera: "/dev/video0".into() })
        );
        // The UI sends what serde reads.
        let sent: RecordingSource =
            serde_json::from_value(serde_json::json!({"kind": "camera", "device": "/dev/video2"})).unwrap();
        assert_eq!(sent, RecordingSource::Camera { device: "/dev/video2".into() });
        let size: VideoSize = serde_json::from_value(serde_json::json!("1080p")).unwrap();
        assert_eq!(size, VideoSize::Hd1080);
    }

    #[test]
    fn a_third_file_of_a_lesson_is_named_with_its_number() {
        let lesson = "Lesson 2026-12-06 10:15";
        let names: Vec<String> =
            (1..=3).map(|part| crate::recording::lesson_part_name(lesson, part)).collect();
        assert_eq!(names, [lesson, "Lesson 2026-12-06 10:15 (2)", "Lesson 2026-12-06 10:15 (3)"]);
    }

    /// Waits (bounded) until the progress the front ends follow satisfies `wanted`.
    async fn progress_until(progress: &mut watch::Receiver<Progress>, wanted: impl FnMut(&Progress) -> bool) {
        let reached =
            tokio::time::timeout(std::time::Duration::from_secs(20), progress.wait_for(wanted)).await;
        assert!(reached.is_ok_and(|reached| reached.is_ok()), "progress stuck at {:?}", *progress.borrow());
    }

    /// A real recording of the virtual microphone to the server inside the
    /// app, continued after a (pretended) sleep while paused, then stopped:
    /// two recordings, "X" and "X (2)", each a whole WAV file with sound in
    /// it, both ready on the server; the feed follows the lesson throughout.
    #[test]
    fn after_a_sleep_the_lesson_goes_on_in_a_second_recording_and_both_are_safe_on_the_server() {
        if crate::test_support::ran_in_a_child(
            "app_engine::tests::after_a_sleep_the_lesson_goes_on_in_a_second_recording_and_both_are_safe_on_the_server",
        ) {
            return;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            use std::time::Duration;
            let temp = tempfile::tempdir().unwrap();
            let engine = Box::pin(AppEngine::open(&DataDir::at(temp.path()))).await.unwrap();
            assert!(matches!(engine.continue_after_sleep().await, Err(Error::NotRecording)));
            let lesson = "Lesson 2026-12-06 10:15";
            let feed = engine.start(None, Some(lesson.into())).await.unwrap();
            let RecordingFeed { local_id: first, mut events, mut progress, mut status } = feed;
            progress_until(&mut progress, |now| now.recorded >= Duration::from_secs(1)).await;
            // Asleep while paused: the lesson goes on paused.
            engine.pause().await.unwrap();
            progress_until(&mut progress, |now| now.state == RecorderState::Paused).await;

            let second = engine.continue_after_sleep().await.unwrap();
            assert_ne!(second, first);
            let mut heard = Vec::new();
            while let Ok(event) = events.try_recv() {
                heard.push(event);
            }
            assert!(
                heard.iter().any(|event| matches!(
                    event,
                    SessionEvent::ContinuedAfterSleep { previous, current }
                        if *previous == first && *current == second
                )),
                "the feed was told: {heard:?}"
            );
            assert!(
                !heard
                    .iter()
                    .any(|event| matches!(event, SessionEvent::Capture(CaptureEvent::Stopped { .. }))),
                "nobody hears the first file's recorder stop: {heard:?}"
            );
            let recorded_before = progress.borrow().recorded;
            assert!(recorded_before >= Duration::from_secs(1), "the lesson's time counts on");
            assert!(engine.is_recording().await);
            assert_eq!(*status.borrow_and_update(), RecordingStatus::Recording);
            progress_until(&mut progress, |now| now.state == RecorderState::Paused).await;
            engine.resume().await.unwrap();
            progress_until(&mut progress, |now| {
                now.state == RecorderState::Recording
                    && now.recorded >= recorded_before + Duration::from_secs(1)
            })
            .await;
            // The engine's own view, as the tray and the sleep inhibitor read it.
            let followed = engine.recorder_progress().await.unwrap();
            assert_eq!(followed.borrow().state, RecorderState::Recording);

            engine.stop().await.unwrap();
            assert!(matches!(engine.stop().await, Err(Error::NotRecording)), "Stop stopped the second file");
            let safe =
                tokio::time::timeout(Duration::from_secs(30), status.wait_for(|now| now.is_final())).await;
            let safe = safe.expect("the lesson reaches a final state").unwrap().clone();
            assert_eq!(safe, RecordingStatus::Safe);

            let journal = engine.opptak().journal();
            let mut recordings = journal.recordings().unwrap();
            recordings.sort_by_key(|recording| recording.id);
            let names: Vec<&str> = recordings.iter().map(|recording| recording.name.as_str()).collect();
            assert_eq!(names, [lesson, "Lesson 2026-12-06 10:15 (2)"]);
            assert_eq!(recordings.iter().map(|recording| recording.id).collect::<Vec<_>>(), [first, second]);
            let server = engine.this_computer().unwrap();
            for recording in &recordings {
                assert_eq!(recording.state, opptak_journal::RecordingState::Ready, "{recording:?}");
                assert!(recording.sha256.is_some() && recording.sha256 == recording.server_sha256);
                let reader = hound::WavReader::open(&recording.path).unwrap();
                assert!(reader.duration() > 0, "{} holds sound", recording.name);
                let data_bytes = u64::from(reader.len()) * u64::from(reader.spec().bits_per_sample / 8);
                let file_bytes = std::fs::metadata(&recording.path).unwrap().len();
                assert!(
                    file_bytes > data_bytes && file_bytes - data_bytes <= 80,
                    "the header covers the file"
                );
                assert_eq!(recording.total_bytes, Some(file_bytes));
                let session = journal.sessions(recording.id).unwrap().pop().expect("uploaded");
                let on_server = server.client.recording(&session.server_recording_id).await.unwrap();
                assert_eq!(on_server.status, opptak_api::RecordingStatus::Ready);
                assert_eq!(on_server.recording_name, recording.name);
                assert_eq!(on_server.size_bytes, recording.total_bytes);
            }
        });
    }

    #[tokio::test]
    async fn pause_resume_and_stop_with_nothing_recording_are_typed_errors() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open(&DataDir::at(temp.path())).unwrap();
        let engine = AppEngine::with_destination(opptak, None, "nowhere".into());
        assert!(matches!(engine.pause().await, Err(Error::NotRecording)));
        assert!(matches!(engine.resume().await, Err(Error::NotRecording)));
        assert!(matches!(engine.stop().await, Err(Error::NotRecording)));
        assert!(!engine.is_recording().await);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_engine_registers_the_uploads_it_resumes_at_launch_and_follows_them_to_safe() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path().join("data"));
        let file = temp.path().join("left.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&file, spec).unwrap();
        for n in 0..8000 {
            writer.write_sample((n % 90) as i16).unwrap();
        }
        writer.finalize().unwrap();
        // Left unfinished by an earlier run: journaled, never uploaded.
        let id = Opptak::open(&data_dir).unwrap().add_file(&file, "left", None).await.unwrap().id;

        let engine = Box::pin(AppEngine::open(&data_dir)).await.unwrap();
        let mut library = engine.library().watch().await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let status =
                library.borrow_and_update().iter().find(|entry| entry.id == id).map(|e| e.status.clone());
            if status == Some(LibraryStatus::Safe) {
                break;
            }
            assert!(
                tokio::time::timeout_at(deadline, library.changed()).await.is_ok(),
                "not safe: {status:?}"
            );
        }
        let journaled = engine.opptak().journal().recording(id).unwrap().unwrap();
        assert_eq!(journaled.state, opptak_journal::RecordingState::Ready);
        assert!(engine.library().running_ids().is_empty());
        // Uploading a file goes through the same registry.
        let again = temp.path().join("again.wav");
        std::fs::copy(&file, &again).unwrap();
        let uploaded = engine.upload_file(&again).await.unwrap();
        assert_ne!(uploaded, id);
    }
}
