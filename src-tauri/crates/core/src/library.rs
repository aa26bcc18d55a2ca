//! The Library: every recording in the journal and where it is, with the
//! uploads that run for them.
//!
//! [`Library`] keeps a registry of running uploads keyed by the recording's
//! journal id: those [`Opptak::resume_all`] starts at launch, the uploads
//! of a recording that just stopped, retries and uploaded files. Each one is
//! followed to its end: its progress feeds the snapshot's rate and time
//! left, and a failure is journaled with [`Opptak::note_failure`]. A task
//! sleeps until [`Opptak::next_retry_due`] and starts the automatic retries
//! that fall due.
//!
//! The snapshot ([`LibraryEntry`] per recording, newest first) is published
//! on a `tokio::sync::watch`, so a late reader still gets the last state.
//! It is rebuilt from the journal, which is the truth (a recording made by
//! `opptak record` shows up too): at once after each operation, at most
//! every [`MIN_PUBLISH_INTERVAL`] while uploads report progress, and every
//! [`JOURNAL_RECHECK`] for changes made by other processes.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use opptak_api::ContentType;
use opptak_journal::{LocalRecording, Problem, RecordingState};
use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::AbortHandle;

use crate::uploads::{EMBEDDED_URL, journal_error};
use crate::uploads::{UploadConfig, UploadEvent, UploadHandle};
use crate::{Destination, Error, FailedWaits, Opptak, Result, Target};

/// The shortest time between two snapshots published because uploads moved
/// (at most four a second); operations publish at once.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(250);
/// How often the journal is read again for changes no upload reported
/// (another Opptak process, a file deleted by hand).
pub const JOURNAL_RECHECK: Duration = Duration::from_secs(2);
/// The window the upload rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How long the retry task waits before it looks again when retries are
/// due but none could start (e.g. their server is not running).
const RETRY_RECHECK: Duration = Duration::from_secs(60);
/// The API path of one recording, after the destination's base URL.
const RECORDING_PATH: &str = "RestApi/personal/mediarecorder/recordings";

/// Where a recording is, as the Library shows it. No prose but in `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum LibraryStatus {
    /// It is being recorded now.
    Recording,
    /// It is on this computer only, and nothing is uploading it.
    OnlyOnThisComputer,
    /// Its server cannot be reached; it uploads by itself when it can.
    WaitingForNetwork,
    /// Parts are being sent.
    #[serde(rename_all = "camelCase")]
    Uploading {
        /// Bytes the server has.
        sent_bytes: u64,
        /// Bytes to send in all.
        total_bytes: u64,
        /// The recent rate, once measured.
        bytes_per_second: Option<f64>,
        /// The time left at that rate.
        seconds_left: Option<u64>,
    },
    /// Everything is sent; the server is checking the file.
    Checking,
    /// The server holds it with the same SHA-256 as this computer.
    Safe,
    /// The upload failed.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// The [`Problem`], snake_case (`file_missing`, `offline`, …).
        code: String,
        /// What happened and what to do, in a teacher's words.
        message: String,
        /// Whether only the teacher can move it on (fix, then Retry).
        needs_teacher: bool,
    },
}

/// One recording as the Library lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct LibraryEntry {
    /// The journal id.
    pub id: i64,
    /// The name the teacher sees.
    pub name: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: i64,
    /// Its length, when the file says: a WAV's as it grows, a video's once
    /// it is finished.
    pub length_seconds: Option<f64>,
    /// The file's size.
    pub size_bytes: u64,
    /// Where it uploads, once chosen.
    pub destination: Option<String>,
    /// The media file.
    pub path: String,
    /// The MIME type (`audio/wav`, `video/mp4`).
    pub content_type: String,
    /// Whether the file is still on this computer.
    pub has_local_file: bool,
    /// The recording on its server (the API's `recordings/{id}` URL), once
    /// the server knows it.
    pub link: Option<String>,
    /// Where it is.
    pub status: LibraryStatus,
}

/// An upload's recent progress, for its rate and time left.
#[derive(Debug, Default)]
struct Progress {
    sent: u64,
    total: u64,
    samples: VecDeque<(Instant, u64)>,
}

impl Progress {
    fn record(&mut self, at: Instant, sent: u64, total: u64) {
        self.sent = sent;
        self.total = total;
        self.samples.push_back((at, sent));
        while self.samples.len() > 2
            && self.samples.front().is_some_and(|(first, _)| at.duration_since(*first) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes a second over the window, once two reports are far enough apart.
    fn rate(&self) -> Option<f64> {
        let ((first_at, first), (last_at, last)) = (self.samples.front()?, self.samples.back()?);
        let seconds = last_at.duration_since(*first_at).as_secs_f64();
        (seconds >= 0.2 && last > first).then(|| (last - first) as f64 / seconds)
    }

    fn seconds_left(&self) -> Option<u64> {
        let rate = self.rate()?;
        Some((self.total.saturating_sub(self.sent) as f64 / rate).ceil() as u64)
    }
}

struct Running {
    generation: u64,
    abort: AbortHandle,
    progress: Progress,
}

struct Shared {
    opptak: Opptak,
    /// The server inside the app, when it runs: recordings for "This
    /// computer" upload there.
    embedded: Option<Arc<Destination>>,
    config: UploadConfig,
    running: StdMutex<HashMap<i64, Running>>,
    generations: std::sync::atomic::AtomicU64,
    lengths: StdMutex<HashMap<i64, f64>>,
    snapshot: watch::Sender<Vec<LibraryEntry>>,
    /// One publisher at a time, so an older snapshot never follows a newer one.
    publishing: Mutex<()>,
    moved: Notify,
    failure_noted: Notify,
}

/// The recordings, their running uploads and the snapshot of both.
///
/// Its background tasks (the publisher and the retry task) start with the
/// first call made on a tokio runtime and stop when it is dropped; uploads
/// already running go on to their end.
pub struct Library {
    shared: Arc<Shared>,
    tasks: OnceLock<Vec<AbortHandle>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("running", &self.running_ids()).finish_non_exhaustive()
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        for task in self.tasks.get().into_iter().flatten() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Library {
    /// A Library over `opptak`'s journal; recordings for "This computer" go
    /// to `embedded` (none: they stay here), uploads run with `config`.
    pub fn new(opptak: Opptak, embedded: Option<Arc<Destination>>, config: UploadConfig) -> Self {
        let shared = Arc::new(Shared {
            opptak,
            embedded,
            config,
            running: StdMutex::new(HashMap::new()),
            generations: std::sync::atomic::AtomicU64::new(0),
            lengths: StdMutex::new(HashMap::new()),
            snapshot: watch::channel(Vec::new()).0,
            publishing: Mutex::new(()),
            moved: Notify::new(),
            failure_noted: Notify::new(),
        });
        Self { shared, tasks: OnceLock::new() }
    }

    /// Starts the publisher and the retry task, once, when on a runtime.
    fn ensure_started(&self) {
        if self.tasks.get().is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let _ = self.tasks.get_or_init(|| {
            let publisher = tokio::spawn(publish_loop(self.shared.clone()));
            let retries = tokio::spawn(retry_loop(self.shared.clone()));
            vec![publisher.abort_handle(), retries.abort_handle()]
        });
    }

    /// The ids of the recordings whose upload runs now.
    pub fn running_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = lock(&self.shared.running).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Follows `upload` of recording `id` to its end (replacing and stopping
    /// an older upload of the same recording).
    pub fn register(&self, id: i64, upload: UploadHandle) {
        self.ensure_started();
        self.shared.register(id, upload);
    }

    /// Asks for a new snapshot soon (within [`MIN_PUBLISH_INTERVAL`]), e.g.
    /// after a recording started.
    pub fn changed(&self) {
        self.ensure_started();
        self.shared.moved.notify_one();
    }

    /// Reads the journal and publishes the snapshot now; returns it.
    pub async fn refresh(&self) -> Result<Vec<LibraryEntry>> {
        self.ensure_started();
        self.shared.publish().await
    }

    /// The snapshot stream; its current value is fresh from the journal.
    pub async fn watch(&self) -> Result<watch::Receiver<Vec<LibraryEntry>>> {
        self.refresh().await?;
        Ok(self.shared.snapshot.subscribe())
    }

    async fn existing(&self, id: i64) -> Result<LocalRecording> {
        self.shared
            .opptak
            .blocking(move |journal| journal.recording(id))
            .await?
            .ok_or(Error::UnknownRecording(id))
    }

    /// Gives recording `id` the name `name` (trimmed; blank is refused).
    pub async fn rename(&self, id: i64, name: &str) -> Result<()> {
        self.existing(id).await?;
        let name = name.trim().to_owned();
        if name.is_empty() {
            return Err(Error::BlankName);
        }
        self.shared.opptak.blocking(move |journal| journal.rename_recording(id, &name)).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Deletes the local file of recording `id`. When the server holds it
    /// with the same SHA-256 (it is safe), the file goes at once and the
    /// recording stays listed as safe on the server. Otherwise the file is
    /// the only copy: it goes only when `confirmed_only_copy`, with its
    /// upload stopped and the recording removed from the list (else
    /// [`Error::OnlyCopy`]).
    pub async fn delete_local_copy(&self, id: i64, confirmed_only_copy: bool) -> Result<()> {
        let recording = self.existing(id).await?;
        if recording.state == RecordingState::Recording {
            return Err(Error::StillRecording { name: recording.name });
        }
        let safe = recording.may_delete_local();
        if !safe && !confirmed_only_copy {
            return Err(Error::OnlyCopy { name: recording.name });
        }
        if !safe && let Some(running) = lock(&self.shared.running).remove(&id) {
            running.abort.abort();
        }
        let name = recording.name.clone();
        let known_length = lock(&self.shared.lengths).get(&id).copied();
        let (length, removed) = tokio::task::spawn_blocking(move || {
            // Read while the file is still there: the Library keeps saying
            // how long the lesson is once only the server holds it.
            let length = known_length.or_else(|| media_seconds(&recording));
            let removed = match std::fs::remove_file(&recording.path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            };
            (length, removed)
        })
        .await
        .map_err(|err| Error::Journal(err.to_string()))?;
        removed.map_err(|source| Error::Delete { name, source })?;
        if !safe {
            self.shared.opptak.blocking(move |journal| journal.forget_recording(id)).await?;
        } else if let Some(seconds) = length {
            self.shared.opptak.blocking(move |journal| journal.set_length_seconds(id, seconds)).await?;
        }
        tracing::info!(recording_id = id, safe, "local copy deleted");
        self.refresh().await?;
        Ok(())
    }

    /// The teacher's Retry of failed recording `id`: its upload starts
    /// again, from what the server already has ([`Error::NotRetryable`]
    /// when it did not fail).
    pub async fn retry(&self, id: i64) -> Result<()> {
        let recording = self.existing(id).await?;
        if recording.state != RecordingState::Failed {
            return Err(Error::NotRetryable { name: recording.name });
        }
        let recording = self.shared.opptak.retry(id).await?;
        self.ensure_started();
        let started = self.shared.start_upload(recording).await;
        self.refresh().await?;
        started
    }

    /// Adds `path` to the journal (named after the file) and uploads it to
    /// `destination`, as `opptak upload` does. Returns its journal id.
    pub async fn upload_file(&self, path: &Path, destination: &Destination) -> Result<i64> {
        uploadable(path)?;
        let name =
            path.file_stem().map_or_else(|| "Recording".into(), |stem| stem.to_string_lossy().into_owned());
        let recording = self.shared.opptak.add_file(path, &name, None).await?;
        let id = recording.id;
        let busy = lock(&self.shared.running).contains_key(&id);
        if !busy && matches!(recording.state, RecordingState::Stopped | RecordingState::Recovered) {
            self.register(id, self.shared.opptak.upload(&recording, destination, self.shared.config.clone()));
        }
        self.refresh().await?;
        Ok(id)
    }

    /// The recording's link on its server, when the server knows it.
    pub async fn link(&self, id: i64) -> Result<Option<String>> {
        self.existing(id).await?;
        let embedded_url = self.shared.embedded_url();
        self.shared.opptak.blocking(move |journal| link_of(journal, id, embedded_url.as_deref())).await
    }
}

impl Shared {
    fn embedded_url(&self) -> Option<String> {
        self.embedded.as_ref().map(|destination| destination.client.base_url().to_owned())
    }

    fn register(self: &Arc<Self>, id: i64, upload: UploadHandle) {
        let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut events = upload.subscribe();
        let replaced = lock(&self.running)
            .insert(id, Running { generation, abort: upload.abort_handle(), progress: Progress::default() });
        if let Some(older) = replaced {
            older.abort.abort();
        }
        self.moved.notify_one();
        let shared = self.clone();
        tokio::spawn(async move {
            let joined = upload.join();
            tokio::pin!(joined);
            let ended = loop {
                tokio::select! {
                    ended = &mut joined => break ended,
                    event = events.recv() => match event {
                        Ok(UploadEvent::PartSent { sent_bytes, total_bytes, .. }) => {
                            if let Some(running) = lock(&shared.running).get_mut(&id) {
                                running.progress.record(Instant::now(), sent_bytes, total_bytes);
                            }
                            shared.moved.notify_one();
                        }
                        Ok(_) => shared.moved.notify_one(),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break (&mut joined).await,
                    },
                }
            };
            if let Err(err) = &ended {
                match shared.opptak.note_failure(id, err).await {
                    Ok(problem) => tracing::info!(recording_id = id, %problem, error = %err, "upload ended"),
                    Err(journal) => {
                        tracing::error!(recording_id = id, error = %journal, "could not journal a failure");
                    }
                }
                shared.failure_noted.notify_one();
            }
            {
                let mut running = lock(&shared.running);
                if running.get(&id).is_some_and(|running| running.generation == generation) {
                    running.remove(&id);
                }
            }
            if let Err(err) = shared.publish().await {
                tracing::error!(error = %err, "could not publish the Library");
            }
        });
    }

    /// Starts the upload of `recording` to where it goes, and follows it.
    async fn start_upload(self: &Arc<Self>, recording: LocalRecording) -> Result<()> {
        let destination = match self.opptak.target_for(&recording)? {
            Target::Embedded => self.embedded.clone().ok_or_else(|| {
                Error::Embedded("it is not running, so the recording waits on this computer".into())
            })?,
            remote => Arc::new(self.opptak.connect(&remote).await?),
        };
        let upload = self.opptak.upload(&recording, &destination, self.config.clone());
        self.register(recording.id, upload);
        Ok(())
    }

    async fn publish(&self) -> Result<Vec<LibraryEntry>> {
        let _one_at_a_time = self.publishing.lock().await;
        let live: HashMap<i64, Live> = lock(&self.running)
            .iter()
            .map(|(id, running)| {
                let progress = &running.progress;
                (
                    *id,
                    Live {
                        sent: progress.sent,
                        rate: progress.rate(),
                        seconds_left: progress.seconds_left(),
                    },
                )
            })
            .collect();
        let opptak = self.opptak.clone();
        let embedded_url = self.embedded_url();
        let known = lock(&self.lengths).clone();
        let (entries, lengths) = tokio::task::spawn_blocking(move || {
            build_snapshot(&opptak, &live, embedded_url.as_deref(), known)
        })
        .await
        .map_err(|err| Error::Journal(err.to_string()))??;
        *lock(&self.lengths) = lengths;
        self.snapshot.send_if_modified(|current| {
            let changed = *current != entries;
            if changed {
                current.clone_from(&entries);
            }
            changed
        });
        Ok(entries)
    }
}

/// What a running upload adds to the journal's view.
#[derive(Debug, Clone, Copy)]
struct Live {
    sent: u64,
    rate: Option<f64>,
    seconds_left: Option<u64>,
}

async fn publish_loop(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.moved.notified() => {}
            () = tokio::time::sleep(JOURNAL_RECHECK) => {}
        }
        if let Err(err) = shared.publish().await {
            tracing::error!(error = %err, "could not publish the Library");
        }
        tokio::time::sleep(MIN_PUBLISH_INTERVAL).await;
    }
}

async fn retry_loop(shared: Arc<Shared>) {
    loop {
        let due = shared.opptak.next_retry_due().await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "could not read when retries are due");
            None
        });
        let Some(due) = due else {
            // Another Opptak process may journal a failure too: look again now and then.
            tokio::select! {
                () = tokio::time::sleep(RETRY_RECHECK) => {}
                () = shared.failure_noted.notified() => {}
            }
            continue;
        };
        // The journal counts whole seconds: a second more is never early.
        let wait = u64::try_from(due.saturating_sub(crate::uploads::now_unix()) + 1).unwrap_or(0);
        if wait > 1 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(wait)) => {}
                () = shared.failure_noted.notified() => continue,
            }
        }
        let begun = shared.opptak.begin_due_retries(shared.embedded.is_some()).await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "could not begin retries");
            Vec::new()
        });
        if begun.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(RETRY_RECHECK) => {}
                () = shared.failure_noted.notified() => {}
            }
            continue;
        }
        for id in begun {
            let recording = match shared.opptak.blocking(move |journal| journal.recording(id)).await {
                Ok(Some(recording)) => recording,
                Ok(None) => continue,
                Err(err) => {
                    tracing::error!(recording_id = id, error = %err, "could not read a retried recording");
                    continue;
                }
            };
            tracing::info!(recording_id = id, "retrying by itself");
            if let Err(err) = shared.start_upload(recording).await {
                tracing::warn!(recording_id = id, error = %err, "a retry could not start");
            }
        }
        if let Err(err) = shared.publish().await {
            tracing::error!(error = %err, "could not publish the Library");
        }
    }
}

/// The Library from the journal, with what running uploads add; also the
/// lengths now known, to read each finished file's header only once.
fn build_snapshot(
    opptak: &Opptak,
    live: &HashMap<i64, Live>,
    embedded_url: Option<&str>,
    mut lengths: HashMap<i64, f64>,
) -> Result<(Vec<LibraryEntry>, HashMap<i64, f64>)> {
    let journal = opptak.journal();
    let recordings = journal.recordings().map_err(journal_error)?;
    let kept_lengths = journal.kept_lengths().map_err(journal_error)?;
    let destinations: HashMap<i64, String> = journal
        .destinations()
        .map_err(journal_error)?
        .into_iter()
        .map(|destination| (destination.id, destination.name))
        .collect();
    let mut entries = Vec::with_capacity(recordings.len());
    let mut still_listed = HashMap::with_capacity(recordings.len());
    for recording in recordings {
        let has_local_file = recording.path.is_file();
        let length_seconds = match lengths.get(&recording.id) {
            Some(known) => Some(*known),
            None if has_local_file => media_seconds(&recording),
            None => kept_lengths.get(&recording.id).copied(),
        };
        if let Some(length) = length_seconds.filter(|_| recording.finished) {
            still_listed.insert(recording.id, length);
        }
        let status = status_of(opptak, &recording, live.get(&recording.id))?;
        entries.push(LibraryEntry {
            id: recording.id,
            name: recording.name.clone(),
            created_at: recording.created_at,
            length_seconds,
            size_bytes: recording.upload_size(),
            destination: recording.destination_id.and_then(|id| destinations.get(&id).cloned()),
            path: recording.path.display().to_string(),
            content_type: recording.content_type.clone(),
            has_local_file,
            link: link_of(journal, recording.id, embedded_url).map_err(journal_error)?,
            status,
        });
    }
    lengths.retain(|id, _| still_listed.contains_key(id));
    lengths.extend(still_listed);
    Ok((entries, lengths))
}

fn status_of(opptak: &Opptak, recording: &LocalRecording, live: Option<&Live>) -> Result<LibraryStatus> {
    use RecordingState as State;
    Ok(match recording.state {
        State::Recording => LibraryStatus::Recording,
        State::Ready => LibraryStatus::Safe,
        State::Waiting => LibraryStatus::WaitingForNetwork,
        State::Finishing | State::Processing => LibraryStatus::Checking,
        State::Failed => failed(opptak, recording),
        State::Stopped | State::Recovered if live.is_none() => LibraryStatus::OnlyOnThisComputer,
        State::Stopped | State::Recovered | State::Uploading => {
            let journal = opptak.journal();
            let journaled = match journal.current_session(recording.id).map_err(journal_error)? {
                Some(session) => journal.sent_bytes(session.id).map_err(journal_error)?,
                None => 0,
            };
            let total_bytes = recording.upload_size();
            LibraryStatus::Uploading {
                sent_bytes: live.map_or(0, |live| live.sent).max(journaled).min(total_bytes),
                total_bytes,
                bytes_per_second: live.and_then(|live| live.rate),
                seconds_left: live.and_then(|live| live.seconds_left),
            }
        }
    })
}

/// A failed recording in a teacher's words: what happened, and whether
/// Opptak tries again by itself or what the teacher can do.
fn failed(opptak: &Opptak, recording: &LocalRecording) -> LibraryStatus {
    let problem = recording.problem.unwrap_or(Problem::Unknown);
    let waits = opptak.failed_waits_for(recording);
    let what = problem.describe();
    let what = what[..1].to_uppercase() + &what[1..];
    let todo = match problem {
        Problem::FileMissing => "Put the file back where it was, then press Retry.",
        Problem::FileChanged => "Press Retry to send the file as it is now.",
        Problem::TokenRefused => "Check this destination's sign-in in Settings, then press Retry.",
        Problem::Rejected => "Check that the file is a recording, then press Retry.",
        _ if matches!(waits, Some(FailedWaits::RetryAt(_))) => {
            "Opptak tries again by itself; press Retry to try now."
        }
        _ => "Opptak stopped trying by itself; press Retry to try again.",
    };
    LibraryStatus::Failed {
        code: problem.as_str().to_owned(),
        message: format!("{what}. {todo}"),
        needs_teacher: !matches!(waits, Some(FailedWaits::RetryAt(_))),
    }
}

/// Refuses a file whose kind Opptak cannot upload, in a teacher's words.
pub(crate) fn uploadable(path: &Path) -> Result<()> {
    if crate::uploads::content_type_of(path).is_some() {
        return Ok(());
    }
    Err(Error::UnknownKind { path: path.to_path_buf() })
}

/// The API's URL of the recording on its server, when a session gave it a
/// server id. The embedded server's URL changes with each launch: its
/// link is the running one's, and there is none while it is not running.
fn link_of(
    journal: &opptak_journal::Journal,
    id: i64,
    embedded_url: Option<&str>,
) -> opptak_journal::Result<Option<String>> {
    let Some(session) = journal.current_session(id)? else { return Ok(None) };
    let Some(destination) = journal.destination(session.destination_id)? else { return Ok(None) };
    let base = if destination.base_url == EMBEDDED_URL {
        match embedded_url {
            Some(url) => url.to_owned(),
            None => return Ok(None),
        }
    } else {
        destination.base_url
    };
    Ok(Some(format!("{}/{RECORDING_PATH}/{}/v1", base.trim_end_matches('/'), session.server_recording_id)))
}

/// The recording's length from its file. A WAV's comes from its header and
/// size, so it grows while recording; any other kind is measured from its
/// boxes or frames once finished, since a growing video would be walked
/// again for every snapshot.
fn media_seconds(recording: &LocalRecording) -> Option<f64> {
    match recording.content_type.parse().ok()? {
        ContentType::Wav => wav_seconds(&recording.path),
        other if recording.finished => opptak_server::probe_duration(&recording.path, other).ok(),
        _ => None,
    }
}

/// The length of a WAV file: its audio bytes (to the end of the file, so a
/// growing or repaired file counts what it holds) over the format's byte rate.
fn wav_seconds(path: &Path) -> Option<f64> {
    let mut header = Vec::with_capacity(4096);
    std::fs::File::open(path).ok()?.take(64 * 1024).read_to_end(&mut header).ok()?;
    let file_len = std::fs::metadata(path).ok()?.len();
    if header.len() < 12 || &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |at: usize| header.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= header.len() {
        let size = u32_at(at + 4)? as usize;
        match &header[at..at + 4] {
            b"fmt " => byte_rate = u32_at(at + 16),
            b"data" => {
                let rate = f64::from(byte_rate.filter(|rate| *rate > 0)?);
                return Some(file_len.saturating_sub(at as u64 + 8) as f64 / rate);
            }
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    None
}

#[cfg(test)]
mod tests;
