//! Recording sessions: capture writes a WAV file (microphone) or a
//! fragmented MP4 (screen or camera with a microphone), the journal learns
//! each second how much of it is durable, and the upload engine sends every
//! whole part as soon as it is — for WAV, part 1, which holds the header,
//! last; an MP4 is only ever appended to, so its parts go in order.
//!
//! A recording whose process died is found at the next start by
//! [`Opptak::recover`]: a WAV header is rebuilt from the file's length, an
//! MP4 is cut after its last whole fragment, and it is uploaded like any
//! stopped recording.
//!
//! One lesson may span several recordings: after the computer slept,
//! [`RecordingSession::continue_after_sleep`] finishes the file (it uploads
//! like any stopped recording) and records on into a new one, "Lesson (2)".
//! Front ends follow the lesson, not the file: the session's progress and
//! events go on across it, and never say that the first file's recorder
//! stopped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opptak_capture::{
    AudioFormat, CaptureEvent, Progress, Recorder, RecorderConfig, RecorderState, VideoConfig, VideoFormat,
    VideoPreset, VideoRecorder, VideoSource, WavFile,
};
use opptak_journal::{Journal, LocalRecording, NewRecording, Problem, RecordingState};
use opptak_upload::{Source, SourceState, UploadConfig, UploadEvent, UploadHandle};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::uploads::journal_error;
use crate::{Destination, Error, Opptak, Result};

/// The folder of recordings inside the data directory.
pub const RECORDINGS_DIR: &str = "recordings";
/// The folder of capture locks inside the data directory.
const CAPTURE_LOCKS_DIR: &str = "locks";

/// How to record.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    /// The input's name; `None` for the default microphone.
    pub device: Option<String>,
    /// The name the teacher sees; by default "Recording <date time>".
    pub name: Option<String>,
    /// Limits and thresholds; `None` for [`RecorderConfig::new`]'s defaults.
    pub limits: Option<RecorderLimits>,
    /// The teacher chose to keep the recording on this computer: no upload
    /// starts, now or when uploads resume, until the teacher asks for one
    /// (see [`opptak_journal::Journal::set_keep_local`]).
    pub keep_local: bool,
    /// Audio bytes per file before the recording goes on in a new file
    /// (`<name>-2.wav`, …); `None` for the WAV limit of about 4 GiB
    /// ([`opptak_capture::MAX_DATA_BYTES`]).
    pub max_file_bytes: Option<u64>,
    /// Record the screen or a camera (with the microphone) into an MP4
    /// instead of the microphone alone into a WAV.
    pub video: Option<VideoOptions>,
}

/// What a screen or camera recording films, and how finely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOptions {
    /// The screen, a camera, or both.
    pub source: VideoSource,
    /// Picture size and frame rate.
    pub preset: VideoPreset,
}

/// Disk and silence limits of a recording (see [`RecorderConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct RecorderLimits {
    /// Free bytes needed to start.
    pub min_free_to_start: u64,
    /// Free bytes below which recording stops.
    pub min_free_while_recording: u64,
}

/// Something a front end shows while recording.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// From the microphone side: levels, warnings, pauses.
    Capture(CaptureEvent),
    /// From the upload of one of the recording's files.
    Upload {
        /// The file's journal id.
        local_id: i64,
        /// What happened.
        event: UploadEvent,
    },
    /// The computer slept during the lesson: the file recorded before is
    /// finished and uploads like any stopped recording, and the lesson goes
    /// on in a new file (see [`RecordingSession::continue_after_sleep`]).
    ContinuedAfterSleep {
        /// The journal id of the recording that ended at the sleep.
        previous: i64,
        /// The journal id of the recording that goes on.
        current: i64,
    },
}

/// A file of the recording as the journal has it, with its upload when
/// one runs.
#[derive(Debug)]
pub struct RecordedFile {
    /// The journal's row for it.
    pub recording: LocalRecording,
    /// Its upload, still running; `None` with no destination.
    pub upload: Option<UploadHandle>,
}

/// What [`RecordingSession::continue_after_sleep`] hands back.
#[derive(Debug)]
pub struct ContinuedRecording {
    /// The file (or files) recorded before the sleep, finished.
    pub previous: StoppedRecording,
    /// The session that goes on recording the lesson, or why it could not
    /// start again (the microphone did not come back); the lesson up to the
    /// sleep is saved either way.
    pub next: Result<RecordingSession>,
}

/// What [`RecordingSession::stop`] hands back.
#[derive(Debug)]
pub struct StoppedRecording {
    /// Every file, in order (more than one only past the WAV size limit).
    pub files: Vec<RecordedFile>,
    /// Why the recorder stopped on its own, if it did (e.g. a full disk).
    pub reason: Option<String>,
}

/// One file being recorded and, when uploading, being uploaded.
struct Track {
    local_id: i64,
    journaled_len: u64,
    finished: bool,
    source: watch::Sender<SourceState>,
    upload: Option<UploadHandle>,
    /// The file's capture lock, held until the session ends: recovery in
    /// another process leaves a journaled file alone while it is held.
    _lock: Option<CaptureLock>,
}

/// The recorder behind a session: the microphone alone, or video.
#[derive(Debug)]
enum Capture {
    Audio(Recorder),
    Video(VideoRecorder),
}

impl Capture {
    fn progress(&self) -> watch::Receiver<Progress> {
        match self {
            Self::Audio(recorder) => recorder.progress(),
            Self::Video(recorder) => recorder.progress(),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<CaptureEvent> {
        match self {
            Self::Audio(recorder) => recorder.subscribe(),
            Self::Video(recorder) => recorder.subscribe(),
        }
    }

    fn pause(&self) {
        match self {
            Self::Audio(recorder) => recorder.pause(),
            Self::Video(recorder) => recorder.pause(),
        }
    }

    fn resume(&self) {
        match self {
            Self::Audio(recorder) => recorder.resume(),
            Self::Video(recorder) => recorder.resume(),
        }
    }

    fn stop(self) -> opptak_capture::Result<Vec<WavFile>> {
        match self {
            Self::Audio(recorder) => recorder.stop(),
            Self::Video(recorder) => recorder.stop(),
        }
    }
}

/// What kind of file a session writes, as the journal and uploader see it.
#[derive(Debug, Clone, Copy)]
struct FileKind {
    content_type: &'static str,
    recorder_type: &'static str,
    is_video: bool,
    extension: &'static str,
    /// WAV rewrites its header (in part 1) at every commit; MP4 is append-only.
    hold_first_part: bool,
}

const WAV_FILE: FileKind = FileKind {
    content_type: "audio/wav",
    recorder_type: "audio",
    is_video: false,
    extension: "wav",
    hold_first_part: true,
};
const MP4_FILE: FileKind = FileKind {
    content_type: "video/mp4",
    recorder_type: "video",
    is_video: true,
    extension: "mp4",
    hold_first_part: false,
};

/// A recording in progress. Call [`RecordingSession::stop`] to end it.
///
/// Dropping it instead stops the recorder and waits for its writer thread
/// on the dropping thread (a blocking wait: in async code, call `stop`);
/// the files are left as a crash leaves them, for [`Opptak::recover`].
pub struct RecordingSession {
    recorder: Capture,
    audio: AudioFormat,
    video: Option<VideoFormat>,
    events: broadcast::Sender<SessionEvent>,
    /// Passes this recorder's events on to `events`; stopped before the
    /// recorder when the lesson goes on in a new file, so nobody hears it stop.
    capture_events: JoinHandle<()>,
    /// The progress front ends follow: the recorder's, with the time
    /// recorded in the lesson's earlier files added, kept across files.
    shown_progress: Arc<watch::Sender<Progress>>,
    /// Copies the recorder's progress into `shown_progress`.
    progress_relay: JoinHandle<()>,
    /// Time recorded in the lesson's files before this session's.
    recorded_before: Duration,
    follower: JoinHandle<Result<Vec<Track>>>,
    first_local_id: i64,
    journal: Journal,
    lesson: Lesson,
    /// Which file of the lesson this session records, from 1.
    part: u32,
}

/// What every file of one lesson shares: how it records, where it goes,
/// and the lesson's name.
#[derive(Clone)]
struct Lesson {
    options: RecordOptions,
    uploader: Uploader,
    /// The recordings folder.
    dir: PathBuf,
    name: String,
}

/// The name of the `part`th file of a lesson named `lesson`: the first is
/// the lesson's own name, the next ones "Lesson (2)", "Lesson (3)", …
pub fn lesson_part_name(lesson: &str, part: u32) -> String {
    if part <= 1 { lesson.to_owned() } else { format!("{lesson} ({part})") }
}

impl std::fmt::Debug for RecordingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSession").field("local_id", &self.first_local_id).finish_non_exhaustive()
    }
}

impl RecordingSession {
    /// The journal id of the recording (of its first file).
    pub fn local_id(&self) -> i64 {
        self.first_local_id
    }

    /// The input and its format (of a video recording: its microphone's).
    pub fn format(&self) -> &AudioFormat {
        &self.audio
    }

    /// What a video recording films; `None` for a microphone recording.
    pub fn video_format(&self) -> Option<&VideoFormat> {
        self.video.as_ref()
    }

    /// The recorder's state and durable lengths. Followed across
    /// [`RecordingSession::continue_after_sleep`]: the state stays
    /// recording and the time recorded counts the whole lesson.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.shown_progress.subscribe()
    }

    /// Levels, warnings and upload events.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// Pauses; paused time is not recorded.
    pub fn pause(&self) {
        self.recorder.pause();
    }

    /// Continues after a pause.
    pub fn resume(&self) {
        self.recorder.resume();
    }

    /// Stops recording, finishes the files (header, fsync, SHA-256 in the
    /// journal) and hands back their uploads, which go on: the last part
    /// and finish are still to come. Await them, or drop them and let
    /// `resume` finish the job later.
    pub async fn stop(self) -> Result<StoppedRecording> {
        let Self {
            recorder,
            follower,
            journal,
            first_local_id,
            shown_progress,
            progress_relay,
            recorded_before,
            ..
        } = self;
        let progress = recorder.progress();
        let stopped = finish_files(recorder, follower, &journal, first_local_id).await;
        progress_relay.abort();
        shown_progress.send_replace(with_time_before(progress.borrow().clone(), recorded_before));
        stopped
    }

    /// After the computer slept during the lesson: finishes this file as
    /// [`RecordingSession::stop`] does (it uploads like any stopped
    /// recording) and at once goes on recording the same lesson, with the
    /// same input, video and destination, in a new file named like the
    /// first with its number ("Lesson (2)"). A paused recording goes on
    /// paused.
    ///
    /// Front ends following [`RecordingSession::progress`] and
    /// [`RecordingSession::subscribe`] keep following the new file: they
    /// hear [`SessionEvent::ContinuedAfterSleep`], never the old recorder
    /// stopping. Fails only when finishing the old file fails; when the
    /// new one cannot start, [`ContinuedRecording::next`] says why and the
    /// progress shows the lesson stopped.
    pub async fn continue_after_sleep(self) -> Result<ContinuedRecording> {
        let Self {
            recorder,
            follower,
            journal,
            first_local_id,
            shown_progress,
            progress_relay,
            capture_events,
            recorded_before,
            events,
            lesson,
            part,
            ..
        } = self;
        // The lesson goes on: nobody may hear this recorder stop.
        capture_events.abort();
        progress_relay.abort();
        let progress = recorder.progress();
        let paused = progress.borrow().state == RecorderState::Paused;
        let finished = finish_files(recorder, follower, &journal, first_local_id).await;
        let ended = with_time_before(progress.borrow().clone(), recorded_before);
        let previous = match finished {
            Ok(previous) => previous,
            Err(err) => {
                shown_progress.send_replace(ended);
                return Err(err);
            }
        };
        let recorded = ended.recorded;
        let next = start_part(lesson, part + 1, recorded, Some(shown_progress.clone()), events.clone()).await;
        match &next {
            Ok(session) => {
                if paused {
                    session.pause();
                }
                tracing::info!(
                    previous = first_local_id,
                    current = session.first_local_id,
                    "the lesson goes on in a new file after the computer slept"
                );
                let _ = events.send(SessionEvent::ContinuedAfterSleep {
                    previous: first_local_id,
                    current: session.first_local_id,
                });
            }
            Err(err) => {
                tracing::error!(recording = first_local_id, error = %err, "the lesson could not go on after the computer slept");
                shown_progress.send_replace(ended);
            }
        }
        Ok(ContinuedRecording { previous, next })
    }
}

/// `progress` of one file, counting the time recorded in the lesson's
/// files before it.
fn with_time_before(mut progress: Progress, before: Duration) -> Progress {
    progress.recorded += before;
    progress
}

/// Copies every change of `from` into `to`, counting `before`, until the
/// recorder is gone.
fn relay_progress(
    mut from: watch::Receiver<Progress>,
    to: Arc<watch::Sender<Progress>>,
    before: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            to.send_replace(with_time_before(from.borrow_and_update().clone(), before));
            if from.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Stops `recorder`, waits for `follower` to finish its files in the
/// journal and hands them back with their uploads.
async fn finish_files(
    recorder: Capture,
    follower: JoinHandle<Result<Vec<Track>>>,
    journal: &Journal,
    first_local_id: i64,
) -> Result<StoppedRecording> {
    let progress = recorder.progress();
    let stopped = tokio::task::spawn_blocking(move || recorder.stop())
        .await
        .map_err(|err| Error::Recording(format!("the recorder stopped badly: {err}")))?;
    let mut reason = progress.borrow().stop_reason.clone();
    let tracks =
        follower.await.map_err(|err| Error::Recording(format!("the recording's follower failed: {err}")))?;
    if let Err(err) = stopped {
        // The file holds what was recorded up to the failure; keep it
        // and say so rather than losing the lesson.
        tracing::error!(recording = first_local_id, "recording ended with an error: {err}");
        reason.get_or_insert(err.to_string());
    }
    let tracks = tracks?;
    let mut files = Vec::with_capacity(tracks.len());
    for track in tracks {
        let id = track.local_id;
        let recording = blocking(journal, move |journal| journal.recording(id))
            .await?
            .ok_or_else(|| Error::Journal(format!("recording {id} vanished from the journal")))?;
        files.push(RecordedFile { recording, upload: track.upload });
    }
    Ok(StoppedRecording { files, reason })
}

/// Runs a journal call on a blocking thread.
async fn blocking<T: Send + 'static>(
    journal: &Journal,
    f: impl FnOnce(&Journal) -> opptak_journal::Result<T> + Send + 'static,
) -> Result<T> {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || f(&journal))
        .await
        .map_err(|err| Error::Journal(err.to_string()))?
        .map_err(journal_error)
}

/// An exclusive OS lock that says "a live process is recording this file";
/// the kernel drops it when the process dies, however it dies.
#[derive(Debug)]
struct CaptureLock {
    _file: File,
}

impl CaptureLock {
    fn path(data_dir: &Path, recording: &Path) -> PathBuf {
        let name = recording.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        data_dir.join(CAPTURE_LOCKS_DIR).join(format!("capture-{name}.lock"))
    }

    /// `Ok(None)` when another process holds it.
    fn try_take(data_dir: &Path, recording: &Path) -> Result<Option<Self>> {
        use std::io::Write;
        let path = Self::path(data_dir, recording);
        let unusable =
            |err: std::io::Error| Error::Recording(format!("cannot use the lock {}: {err}", path.display()));
        std::fs::create_dir_all(path.parent().unwrap_or(data_dir)).map_err(unusable)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(unusable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(err)) => return Err(unusable(err)),
        }
        // For a person looking at the folder: which process records.
        file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(unusable)?;
        Ok(Some(Self { _file: file }))
    }
}

/// A file name for a new recording that does not exist yet.
fn new_recording_path(dir: &Path, extension: &str) -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    (1..)
        .map(|n| {
            if n == 1 {
                dir.join(format!("{stamp}.{extension}"))
            } else {
                dir.join(format!("{stamp}-{n}.{extension}"))
            }
        })
        .find(|path| !path.exists())
        .expect("some name is free")
}

fn default_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "Recording {:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

/// Passes every event from `from` on to `to`, wrapped, until `from` closes.
fn forward<T: Clone + Send + 'static>(
    mut from: broadcast::Receiver<T>,
    to: broadcast::Sender<SessionEvent>,
    wrap: impl Fn(T) -> SessionEvent + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match from.recv().await {
                Ok(event) => {
                    let _ = to.send(wrap(event));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// What the follower needs to start the upload of a file.
#[derive(Clone)]
struct Uploader {
    data_dir: PathBuf,
    journal: Journal,
    destination: Option<(i64, opptak_upload::ApiClient)>,
    config: UploadConfig,
    events: broadcast::Sender<SessionEvent>,
    keep_local: bool,
    kind: FileKind,
}

impl Uploader {
    /// Journals `path` as a growing recording and, with a destination,
    /// starts uploading it while it grows. A file the recorder rolled over
    /// to comes without `lock`: its capture lock is taken here, before it
    /// is journaled, so no other process ever finds it journaled, growing
    /// and unlocked — and "recovers" it.
    fn track(&self, path: &Path, name: &str, lock: Option<CaptureLock>) -> Result<Track> {
        let lock = match lock {
            Some(lock) => lock,
            None => CaptureLock::try_take(&self.data_dir, path)?.ok_or_else(|| {
                Error::Recording(format!("{} is being recorded by another process", path.display()))
            })?,
        };
        let recording = self
            .journal
            .add_recording(NewRecording::growing(
                path,
                name,
                self.kind.content_type,
                self.kind.recorder_type,
                self.kind.is_video,
            ))
            .map_err(journal_error)?;
        if self.keep_local {
            self.journal.set_keep_local(recording.id, true).map_err(journal_error)?;
        }
        let (source, state) = watch::channel(SourceState::default());
        let upload = self.destination.as_ref().map(|(destination_id, client)| {
            self.journal.set_destination(recording.id, Some(*destination_id)).ok();
            let upload = UploadHandle::start(
                self.journal.clone(),
                recording.id,
                *destination_id,
                Source::growing(path, state, self.kind.hold_first_part),
                client.clone(),
                self.config.clone(),
            );
            let local_id = recording.id;
            // Detached: it ends when the upload's events close.
            drop(forward(upload.subscribe(), self.events.clone(), move |event| SessionEvent::Upload {
                local_id,
                event,
            }));
            upload
        });
        Ok(Track {
            local_id: recording.id,
            journaled_len: 0,
            finished: false,
            source,
            upload,
            _lock: Some(lock),
        })
    }
}

/// Mirrors the recorder's progress into the journal and the uploads'
/// sources until every file is finished.
async fn follow(
    mut progress: watch::Receiver<Progress>,
    mut tracks: Vec<Track>,
    uploader: Uploader,
    name: String,
) -> Result<Vec<Track>> {
    loop {
        let snapshot = progress.borrow_and_update().clone();
        for (index, file) in snapshot.files.iter().enumerate() {
            if index >= tracks.len() {
                let part_name = format!("{name} (part {})", index + 1);
                let track = {
                    let (uploader, path) = (uploader.clone(), file.path.clone());
                    tokio::task::spawn_blocking(move || uploader.track(&path, &part_name, None))
                        .await
                        .map_err(|err| Error::Journal(err.to_string()))??
                };
                tracks.push(track);
            }
            let track = &mut tracks[index];
            let id = track.local_id;
            if file.finished && !track.finished {
                let (len, path) = (file.durable_len, file.path.clone());
                // The header changed at stop, so the whole file is read once more.
                let sha256 = opptak_upload::sha256_file(&path)
                    .await
                    .map_err(|err| Error::Recording(err.to_string()))?;
                blocking(&uploader.journal, move |journal| journal.mark_finished(id, len, Some(&sha256)))
                    .await?;
                track.finished = true;
                track.journaled_len = len;
                track.source.send_replace(SourceState { durable_len: len, finished: true });
            } else if !file.finished && file.durable_len > track.journaled_len {
                let len = file.durable_len;
                blocking(&uploader.journal, move |journal| journal.set_durable_bytes(id, len)).await?;
                track.journaled_len = len;
                track.source.send_replace(SourceState { durable_len: len, finished: false });
            }
        }
        let done = snapshot.state == RecorderState::Stopped && tracks.iter().all(|track| track.finished);
        if done || progress.changed().await.is_err() {
            return Ok(tracks);
        }
    }
}

/// Starts the microphone or video recorder `options` ask for, writing `path`.
async fn start_capture(
    options: &RecordOptions,
    path: &Path,
) -> Result<(Capture, AudioFormat, Option<VideoFormat>)> {
    let started = match &options.video {
        Some(video) => {
            let mut config = VideoConfig::new(path, video.source.clone());
            config.microphone = options.device.clone();
            config.preset = video.preset;
            if let Some(limits) = options.limits {
                config.min_free_to_start = limits.min_free_to_start;
                config.min_free_while_recording = limits.min_free_while_recording;
            }
            tokio::task::spawn_blocking(move || {
                VideoRecorder::start(config).map(|recorder| {
                    let format = recorder.format().clone();
                    let audio = AudioFormat {
                        device: format.microphone.clone(),
                        sample_rate: opptak_capture::VIDEO_AUDIO_RATE,
                        channels: opptak_capture::VIDEO_AUDIO_CHANNELS,
                    };
                    (Capture::Video(recorder), audio, Some(format))
                })
            })
            .await
        }
        None => {
            let mut config = RecorderConfig::new(path);
            config.device = options.device.clone();
            if let Some(max) = options.max_file_bytes {
                config.max_data_bytes = max.clamp(1, opptak_capture::MAX_DATA_BYTES);
            }
            if let Some(limits) = options.limits {
                config.min_free_to_start = limits.min_free_to_start;
                config.min_free_while_recording = limits.min_free_while_recording;
            }
            tokio::task::spawn_blocking(move || {
                Recorder::start(config).map(|recorder| {
                    let audio = recorder.format().clone();
                    (Capture::Audio(recorder), audio, None)
                })
            })
            .await
        }
    };
    started.map_err(|err| Error::Recording(err.to_string()))?.map_err(Error::Capture)
}

/// Starts recording file number `part` of `lesson`, `recorded_before`
/// into it, showing its progress on `shown` (a new channel for the first
/// file). Fails — leaving nothing behind — when the recorder cannot start.
async fn start_part(
    lesson: Lesson,
    part: u32,
    recorded_before: Duration,
    shown: Option<Arc<watch::Sender<Progress>>>,
    events: broadcast::Sender<SessionEvent>,
) -> Result<RecordingSession> {
    let uploader = lesson.uploader.clone();
    let path = new_recording_path(&lesson.dir, uploader.kind.extension);
    let lock = CaptureLock::try_take(&uploader.data_dir, &path)?.ok_or_else(|| {
        Error::Recording(format!("{} is being recorded by another process", path.display()))
    })?;
    let (recorder, audio, video) = start_capture(&lesson.options, &path).await?;
    let capture_events = forward(recorder.subscribe(), events.clone(), SessionEvent::Capture);
    let name = lesson_part_name(&lesson.name, part);
    let first = {
        let (uploader, path, name) = (uploader.clone(), path.clone(), name.clone());
        tokio::task::spawn_blocking(move || uploader.track(&path, &name, Some(lock)))
            .await
            .map_err(|err| Error::Journal(err.to_string()))?
    };
    let first = match first {
        Ok(track) => track,
        Err(err) => {
            // Nothing was journaled: the file is not a recording anyone
            // will find. Dropping the recorder joins its thread.
            capture_events.abort();
            let _ = tokio::task::spawn_blocking(move || drop(recorder)).await;
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
    };
    let first_local_id = first.local_id;
    tracing::info!(recording = first_local_id, part, path = %path.display(), "recording");
    let shown_progress = shown.unwrap_or_else(|| {
        Arc::new(watch::channel(with_time_before(recorder.progress().borrow().clone(), recorded_before)).0)
    });
    let progress_relay = relay_progress(recorder.progress(), shown_progress.clone(), recorded_before);
    let journal = uploader.journal.clone();
    let follower = tokio::spawn(follow(recorder.progress(), vec![first], uploader, name));
    Ok(RecordingSession {
        recorder,
        audio,
        video,
        events,
        capture_events,
        shown_progress,
        progress_relay,
        recorded_before,
        follower,
        first_local_id,
        journal,
        lesson,
        part,
    })
}

impl Opptak {
    /// Starts recording from the microphone (or, with
    /// [`RecordOptions::video`], the screen or a camera with the microphone)
    /// into `<data dir>/recordings`, uploading to `destination` while
    /// recording when one is given. Fails — leaving nothing behind — when
    /// there is no microphone, screen or camera, video recording is not
    /// available, or there is too little disk space.
    pub async fn record(
        &self,
        options: RecordOptions,
        destination: Option<&Destination>,
    ) -> Result<RecordingSession> {
        let dir = self.data_dir().path().join(RECORDINGS_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|source| Error::DataDirUnusable { path: dir.clone(), source })?;
        let kind = if options.video.is_some() { MP4_FILE } else { WAV_FILE };
        let (events, _) = broadcast::channel(1024);
        let uploader = Uploader {
            data_dir: self.data_dir().path().to_path_buf(),
            journal: self.journal().clone(),
            destination: destination
                .filter(|_| !options.keep_local)
                .map(|destination| (destination.id, destination.client.clone())),
            config: UploadConfig::default(),
            events: events.clone(),
            keep_local: options.keep_local,
            kind,
        };
        let name = options.name.clone().unwrap_or_else(default_name);
        let lesson = Lesson { options, uploader, dir, name };
        start_part(lesson, 1, Duration::ZERO, None, events).await
    }

    /// Repairs every recording whose recorder died (state `recording`, no
    /// live process holding its capture lock): rebuilds the WAV header from
    /// the file's length, marks it `recovered` and finished, so that
    /// `resume` uploads it. A recording whose upload failed while it was
    /// still being recorded is repaired and finished too, and stays
    /// `failed` for the retries to take up. Returns the recordings it repaired.
    pub fn recover(&self) -> Result<Vec<LocalRecording>> {
        let journal = self.journal();
        let mut repaired = Vec::new();
        for recording in journal.recordings().map_err(journal_error)? {
            let failed_while_recording = recording.state == RecordingState::Failed
                && !recording.finished
                && recording.problem != Some(Problem::FileMissing);
            if recording.state != RecordingState::Recording && !failed_while_recording {
                continue;
            }
            let Some(_lock) = CaptureLock::try_take(self.data_dir().path(), &recording.path)? else {
                continue;
            };
            let id = recording.id;
            match repair(&recording.path, &recording.content_type) {
                Ok((len, sha256)) => {
                    if !failed_while_recording {
                        journal.set_state(id, RecordingState::Recovered, None).map_err(journal_error)?;
                    }
                    journal.mark_finished(id, len, Some(&sha256)).map_err(journal_error)?;
                    tracing::warn!(recording = id, bytes = len, "recovered a recording whose recorder died");
                }
                Err(reason) => {
                    let message = format!(
                        "the recording was interrupted and {reason}; it cannot be uploaded. The file, if any, was left as it is."
                    );
                    journal
                        .set_state_because(
                            id,
                            RecordingState::Failed,
                            Some(Problem::FileMissing),
                            Some(&message),
                        )
                        .map_err(journal_error)?;
                    tracing::error!(recording = id, "{message}");
                }
            }
            repaired.push(journal.recording(id).map_err(journal_error)?.unwrap_or(recording));
        }
        Ok(repaired)
    }
}

/// Makes a dead recorder's file whole (a WAV's header rebuilt, an MP4 cut
/// after its last whole fragment) and returns its length and SHA-256.
fn repair(path: &Path, content_type: &str) -> std::result::Result<(u64, String), String> {
    use sha2::Digest;
    if !path.exists() {
        return Err(format!("its file {} is gone", path.display()));
    }
    let len = if content_type == MP4_FILE.content_type {
        let repaired = opptak_capture::repair_fmp4(path).map_err(|err| err.to_string())?;
        if repaired.removed > 0 {
            tracing::info!(path = %path.display(), removed = repaired.removed, "cut an unfinished video fragment");
        }
        repaired.len
    } else {
        opptak_capture::repair_wav(path).map_err(|err| err.to_string())?.len
    };
    let mut hasher = sha2::Sha256::new();
    let mut file = File::open(path).map_err(|err| format!("its file cannot be read ({err})"))?;
    std::io::copy(&mut file, &mut hasher).map_err(|err| format!("its file cannot be read ({err})"))?;
    Ok((len, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;

    /// A WAV file as a killed recorder leaves it: samples on disk, the
    /// header's sizes still zero.
    fn killed_recording(path: &Path, frames: usize) {
        let mut bytes = Vec::new();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(std::io::Cursor::new(&mut bytes), spec).unwrap();
        for n in 0..frames {
            writer.write_sample(n as i16).unwrap();
        }
        writer.finalize().unwrap();
        bytes[4..8].fill(0);
        bytes[40..44].fill(0);
        std::fs::write(path, bytes).unwrap();
    }

    fn journaled(opptak: &Opptak, path: &Path) -> i64 {
        let new = NewRecording::growing(path, "lesson", "audio/wav", "audio", false);
        opptak.journal().add_recording(new).unwrap().id
    }

    #[test]
    fn opening_repairs_a_dead_recording_fails_a_lost_one_and_leaves_a_live_one_alone() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path());
        let opptak = Opptak::open(&data_dir).unwrap();
        let dead = temp.path().join("dead.wav");
        killed_recording(&dead, 4000);
        let dead_id = journaled(&opptak, &dead);
        let lost_id = journaled(&opptak, &temp.path().join("lost.wav"));
        let live = temp.path().join("live.wav");
        killed_recording(&live, 10);
        let live_id = journaled(&opptak, &live);
        let _live_lock = CaptureLock::try_take(temp.path(), &live).unwrap().unwrap();

        let reopened = Opptak::open(&data_dir).unwrap();
        let recording = |id| reopened.journal().recording(id).unwrap().unwrap();
        let dead = recording(dead_id);
        assert_eq!(
            (dead.state, dead.finished, dead.total_bytes),
            (RecordingState::Recovered, true, Some(44 + 8000))
        );
        assert_eq!(hound::WavReader::open(&dead.path).unwrap().duration(), 4000);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&dead.path).unwrap()));
        assert_eq!(dead.sha256.as_deref(), Some(sha256.as_str()));
        let lost = recording(lost_id);
        assert_eq!(lost.state, RecordingState::Failed);
        assert!(lost.error.unwrap().contains("is gone"));
        assert_eq!(
            recording(live_id).state,
            RecordingState::Recording,
            "a live recorder's file is not touched"
        );
        // Recovered recordings are what resume uploads.
        let unfinished: Vec<i64> =
            reopened.unfinished().unwrap().iter().map(|recording| recording.id).collect();
        assert_eq!(unfinished, [dead_id]);
    }

    fn mp4_box(kind: &[u8; 4], payload_len: usize) -> Vec<u8> {
        let mut bytes = ((8 + payload_len) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.resize(8 + payload_len, 7);
        bytes
    }

    #[test]
    fn opening_cuts_a_dead_video_recording_after_its_last_whole_fragment() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path());
        let opptak = Opptak::open(&data_dir).unwrap();
        let path = temp.path().join("dead.mp4");
        let whole = [
            mp4_box(b"ftyp", 16),
            mp4_box(b"moov", 200),
            mp4_box(b"moof", 50),
            mp4_box(b"mdat", 3000),
            mp4_box(b"moof", 50),
            mp4_box(b"mdat", 2000),
        ]
        .concat();
        // Killed while writing the third fragment's samples.
        let crashed = [whole.clone(), mp4_box(b"moof", 50), mp4_box(b"mdat", 4000)[..1500].to_vec()].concat();
        std::fs::write(&path, &crashed).unwrap();
        let new = NewRecording::growing(&path, "lesson", "video/mp4", "video", true);
        let id = opptak.journal().add_recording(new).unwrap().id;

        let reopened = Opptak::open(&data_dir).unwrap();
        let recording = reopened.journal().recording(id).unwrap().unwrap();
        assert_eq!(
            (recording.state, recording.finished, recording.total_bytes),
            (RecordingState::Recovered, true, Some(whole.len() as u64))
        );
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&whole));
        assert_eq!(recording.sha256.as_deref(), Some(sha256.as_str()));
    }

    #[test]
    fn a_capture_lock_is_exclusive_until_dropped() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("a.wav");
        let lock = CaptureLock::try_take(temp.path(), &file).unwrap().expect("free");
        assert!(CaptureLock::try_take(temp.path(), &file).unwrap().is_none());
        let pid = std::fs::read_to_string(CaptureLock::path(temp.path(), &file)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(lock);
        assert!(CaptureLock::try_take(temp.path(), &file).unwrap().is_some());
    }

    #[test]
    fn a_recording_whose_upload_failed_while_recording_is_finished_and_stays_failed_for_the_retries() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path());
        let opptak = Opptak::open(&data_dir).unwrap();
        let path = temp.path().join("failed.wav");
        killed_recording(&path, 1000);
        let id = journaled(&opptak, &path);
        opptak
            .journal()
            .set_state_because(id, RecordingState::Failed, Some(Problem::Storage), Some("storage failed"))
            .unwrap();

        let reopened = Opptak::open(&data_dir).unwrap();
        let recording = reopened.journal().recording(id).unwrap().unwrap();
        assert_eq!(
            (recording.state, recording.finished, recording.total_bytes, recording.problem),
            (RecordingState::Failed, true, Some(44 + 2000), Some(Problem::Storage))
        );
        assert!(recording.retries_by_itself());
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 1000);
    }
}
