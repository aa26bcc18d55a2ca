//! Uploads as both front ends run them: where to (the embedded server or a
//! configured one), what (a file, added to the journal), resuming every
//! unfinished upload, and retrying failed ones.
//!
//! # Failed uploads
//!
//! The upload engine journals a failure with its [`Problem`]
//! ([`opptak_upload::Error::problem`], the one place that says what an
//! upload error means). A failure whose problem needs the teacher (the file
//! changed or is gone, the token was refused, the server says it is not a
//! valid recording) waits for the teacher's [`Opptak::retry`]; any other is
//! retried by [`Opptak::begin_due_retries`] (which `resume` and
//! [`Opptak::resume_all`] call) under a [`RetryPolicy`]: the first retry at
//! the next resume, then with growing pauses, at most
//! [`RetryPolicy::max_attempts`] times. The count and the time of the next
//! retry are in the journal, so a restart does not reset them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opptak_journal::{Journal, LocalRecording, NewRecording, Problem, RecordingState};
use opptak_server::{Limits, Server, ServerHandle, UserToken};
use opptak_upload::{ApiClient, Source};
/// The upload engine's types a front end needs to run and watch uploads.
pub use opptak_upload::{UploadConfig, UploadEvent, UploadHandle, Uploaded};

use crate::destinations::{TokenStore, is_token_reference, token_reference};
use crate::{DataDir, Error, Result};

/// The journal's name for the in-process server: its URL changes every run
/// (a free port), so sessions refer to it by this instead.
pub const EMBEDDED_URL: &str = "embedded:";
/// What the user sees for the embedded destination.
pub const EMBEDDED_NAME: &str = "This computer";

/// Where recordings go. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// Opptak's own server, in this process, with data under `<data dir>/server`.
    Embedded,
    /// A school's server or an LMS.
    Remote {
        /// Its base URL.
        url: String,
        /// The user's bearer token.
        token: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Remote { url, .. } => {
                f.debug_struct("Remote").field("url", url).field("token", &"<redacted>").finish()
            }
        }
    }
}

/// A destination ready to take uploads. Holding it keeps the embedded
/// server running; drop it (or call [`Destination::shutdown`]) when done.
#[derive(Debug)]
pub struct Destination {
    /// The journal's id for it.
    pub id: i64,
    /// A client signed in to it.
    pub client: ApiClient,
    server: Option<ServerHandle>,
}

impl Destination {
    /// Stops the embedded server, if this destination runs one.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}

/// When failed uploads are retried without the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Automatic retries of one recording before it waits for the teacher.
    /// Default [`RetryPolicy::DEFAULT_MAX_ATTEMPTS`] (5).
    pub max_attempts: u32,
    /// The pause after the first automatic retry failed; it doubles after
    /// each further one. Default [`RetryPolicy::DEFAULT_FIRST_PAUSE`] (1 minute).
    pub first_pause: Duration,
    /// The longest pause. Default [`RetryPolicy::DEFAULT_MAX_PAUSE`] (1 hour).
    pub max_pause: Duration,
}

impl RetryPolicy {
    /// The default of [`RetryPolicy::max_attempts`].
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    /// The default of [`RetryPolicy::first_pause`].
    pub const DEFAULT_FIRST_PAUSE: Duration = Duration::from_secs(60);
    /// The default of [`RetryPolicy::max_pause`].
    pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(60 * 60);

    /// How long after a failure the next automatic retry may start, when
    /// `attempts` retries were started before it: none after the first
    /// failure (the next resume tries again), then `first_pause`, doubling
    /// up to `max_pause`.
    pub fn pause_after(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let doublings = attempts.saturating_sub(1).min(20);
        self.first_pause.saturating_mul(1 << doublings).min(self.max_pause)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            first_pause: Self::DEFAULT_FIRST_PAUSE,
            max_pause: Self::DEFAULT_MAX_PAUSE,
        }
    }
}

/// What a failed recording waits for, as a front end tells the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedWaits {
    /// Only the teacher can fix it; then [`Opptak::retry`].
    Teacher,
    /// The automatic retries are used up; [`Opptak::retry`] tries again.
    RetriesUsedUp,
    /// It is retried automatically at (seconds since the Unix epoch) or after this time.
    RetryAt(i64),
}

/// Opptak's state on this computer: the data directory, its journal and
/// where tokens are kept.
#[derive(Debug, Clone)]
pub struct Opptak {
    data_dir: DataDir,
    journal: Journal,
    retry: RetryPolicy,
    tokens: Arc<TokenStore>,
    /// One writer of the settings file at a time in this process.
    settings_lock: Arc<std::sync::Mutex<()>>,
}

/// A blocking journal task that panicked or was cancelled.
fn journal_task_stopped(err: tokio::task::JoinError) -> Error {
    Error::Journal(format!("a journal task stopped: {err}"))
}

pub(crate) fn journal_error(err: opptak_journal::Error) -> Error {
    Error::Journal(err.to_string())
}

impl Opptak {
    /// Opens (creating) the data directory's journal, and repairs the
    /// recordings whose recorder died (see [`Opptak::recover`]).
    /// Tokens go to the operating system's credential store, or where none
    /// answers to a private file in the data directory (see [`TokenStore`]);
    /// tokens an older Opptak left in the journal are moved there.
    pub fn open(data_dir: &DataDir) -> Result<Self> {
        Self::open_with_tokens(data_dir, TokenStore::for_data_dir(data_dir.path()))
    }

    /// [`Opptak::open`], keeping tokens in `tokens`.
    pub fn open_with_tokens(data_dir: &DataDir, tokens: TokenStore) -> Result<Self> {
        data_dir.ensure_writable()?;
        let journal = Journal::open_in(data_dir.path()).map_err(journal_error)?;
        let opptak = Self {
            data_dir: data_dir.clone(),
            journal,
            retry: RetryPolicy::default(),
            tokens: Arc::new(tokens),
            settings_lock: Arc::default(),
        };
        match opptak.move_journaled_tokens() {
            Ok(0) => {}
            Ok(moved) => {
                tracing::info!(destinations = moved, "moved tokens from the journal to the credential store");
            }
            // Retried at every start; the journal's tokens still work meanwhile.
            Err(err) => tracing::error!("moving tokens out of the journal failed: {err}"),
        }
        if let Err(err) = opptak.recover() {
            // Recovery is retried at every start; it must not stop this one.
            tracing::error!("recovering interrupted recordings failed: {err}");
        }
        Ok(opptak)
    }

    /// Uses `policy` for automatic retries of failed uploads instead of
    /// [`RetryPolicy::default`].
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The policy for automatic retries.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs a journal call on a blocking thread, as async code must.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> opptak_journal::Result<T> + Send + 'static,
    ) -> Result<T> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal))
            .await
            .map_err(journal_task_stopped)?
            .map_err(journal_error)
    }

    pub(crate) fn tokens(&self) -> &Arc<TokenStore> {
        &self.tokens
    }

    pub(crate) fn settings_lock(&self) -> &std::sync::Mutex<()> {
        &self.settings_lock
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Connects to `target`, starting the embedded server for [`Target::Embedded`].
    /// A remote token goes to the credential store; the journal keeps its
    /// reference ([`crate::destinations::token_reference`]).
    pub async fn connect(&self, target: &Target) -> Result<Destination> {
        match target {
            Target::Remote { url, token } => {
                let (url, token) = (url.clone(), token.clone());
                let id = {
                    let (opptak, url, token) = (self.clone(), url.clone(), token.clone());
                    tokio::task::spawn_blocking(move || {
                        let reference = opptak.tokens.put(&token)?;
                        opptak.journal.upsert_destination(&url, &reference, &url).map_err(journal_error)
                    })
                    .await
                    .map_err(journal_task_stopped)??
                };
                Ok(Destination { id, client: ApiClient::new(&url, &token), server: None })
            }
            Target::Embedded => {
                let dir = self.data_dir.path().join("server");
                let token = {
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || embedded_token(&dir))
                        .await
                        .map_err(|err| Error::Embedded(err.to_string()))??
                };
                let started = Server::builder()
                    .data_dir(&dir)
                    .user(UserToken { name: "this-computer".into(), token: token.clone() })
                    .limits(embedded_limits())
                    .start()
                    .await;
                let (server, url) = match started {
                    Ok(server) => {
                        let url = server.url().to_owned();
                        (Some(server), url)
                    }
                    // The app and an `opptak` command share the data folder:
                    // the second one uploads through the first one's server
                    // (same folder, same token file) instead of running its own.
                    Err(opptak_server::Error::FolderInUse { url, .. }) => {
                        let url = match url {
                            Some(url) => url,
                            None => wait_for_running_server(&dir).await?,
                        };
                        tracing::info!(%url, "using This computer's server, which another Opptak process runs");
                        (None, url)
                    }
                    Err(err) => return Err(Error::Embedded(err.to_string())),
                };
                let id = {
                    // The token itself stays in the server's private file.
                    let reference = token_reference(&token);
                    self.blocking(move |journal| {
                        journal.upsert_destination(EMBEDDED_URL, &reference, EMBEDDED_NAME)
                    })
                    .await?
                };
                Ok(Destination { id, client: ApiClient::new(&url, &token), server })
            }
        }
    }

    /// The target a journaled destination stands for, with its token from
    /// the credential store. Blocks (the store may be asked).
    pub fn target_of(&self, destination_id: i64) -> Result<Target> {
        let destination =
            self.journal.destination(destination_id).map_err(journal_error)?.ok_or_else(|| {
                Error::Journal(format!("destination {destination_id} is missing from the journal"))
            })?;
        if destination.base_url == EMBEDDED_URL {
            return Ok(Target::Embedded);
        }
        let token = if is_token_reference(&destination.token) {
            self.tokens.get(&destination.token)?.ok_or_else(|| {
                Error::Credentials(format!(
                    "the token for {} is no longer in this computer's password store; add the server again with its token",
                    destination.base_url
                ))
            })?
        } else {
            // Journaled by an older Opptak and not moved yet.
            destination.token
        };
        Ok(Target::Remote { url: destination.base_url, token })
    }

    /// Adds a finished file to the journal (or finds it there, when it was
    /// added before and not uploaded yet), with its length; its SHA-256 is
    /// learnt as the upload reads it. The teacher asked for this upload, so
    /// a recording kept on this computer is kept no longer.
    /// Without `content_type`, the file's extension names it.
    pub async fn add_file(
        &self,
        path: &Path,
        name: &str,
        content_type: Option<&str>,
    ) -> Result<LocalRecording> {
        let (journal, path, name) = (self.journal.clone(), path.to_path_buf(), name.to_owned());
        let content_type = content_type.map(str::to_owned);
        // Canonicalising, reading and journaling all block.
        tokio::task::spawn_blocking(move || add_file_now(&journal, &path, &name, content_type.as_deref()))
            .await
            .map_err(journal_task_stopped)?
    }

    /// Starts uploading a finished recording to `destination`.
    pub fn upload(
        &self,
        recording: &LocalRecording,
        destination: &Destination,
        config: UploadConfig,
    ) -> UploadHandle {
        let source = Source::complete(&recording.path, recording.upload_size());
        UploadHandle::start(
            self.journal.clone(),
            recording.id,
            destination.id,
            source,
            destination.client.clone(),
            config,
        )
    }

    /// Recordings whose upload is not done (not ready, not failed, not kept
    /// on this computer by the teacher), oldest first.
    pub fn unfinished(&self) -> Result<Vec<LocalRecording>> {
        let all = self.journal.unfinished_uploads().map_err(journal_error)?;
        Ok(all
            .into_iter()
            .filter(|recording| recording.finished && recording.state != RecordingState::Recording)
            .collect())
    }

    /// Where `recording` goes: its journaled destination, or this computer
    /// when it has none yet.
    pub fn target_for(&self, recording: &LocalRecording) -> Result<Target> {
        match recording.destination_id {
            Some(id) => self.target_of(id),
            None => Ok(Target::Embedded),
        }
    }

    /// Starts uploading every unfinished recording in the background, as the
    /// desktop app does when it starts, after taking up the failed ones
    /// that are due an automatic retry ([`Opptak::begin_due_retries`]).
    /// Recordings for this computer go to `embedded` (the running
    /// in-process server; they wait, and are not retried, when it is
    /// `None`), the others to their own server. Returns the running
    /// uploads; their failures are the caller's to pass to
    /// [`Opptak::note_failure`].
    pub async fn resume_all(
        &self,
        embedded: Option<&Destination>,
        config: UploadConfig,
    ) -> Result<Vec<(LocalRecording, UploadHandle)>> {
        let retried = self.begin_due_retries(embedded.is_some()).await?;
        if !retried.is_empty() {
            tracing::info!(recordings = ?retried, "retrying failed uploads");
        }
        let mut running = Vec::new();
        let opptak = self.clone();
        let unfinished = tokio::task::spawn_blocking(move || opptak.unfinished())
            .await
            .map_err(journal_task_stopped)??;
        for recording in unfinished {
            let handle = match (self.target_for(&recording)?, embedded) {
                (Target::Embedded, Some(destination)) => self.upload(&recording, destination, config.clone()),
                (Target::Embedded, None) => continue,
                (remote, _) => self.upload(&recording, &self.connect(&remote).await?, config.clone()),
            };
            tracing::info!(recording = recording.id, "resuming upload");
            running.push((recording, handle));
        }
        Ok(running)
    }

    /// Journals why an upload of recording `id` failed: its [`Problem`]
    /// (see [`opptak_upload::Error::problem`]) and the error's words, and,
    /// when the problem does not need the teacher, when it may be retried
    /// automatically (the engine, which journals the failure, knows no
    /// retry policy).
    /// Front ends call it with every error an [`UploadHandle`] ends with.
    /// Changes nothing unless the upload left the recording `failed` (an
    /// upload that only stopped, or is still being checked, is not a failure).
    pub async fn note_failure(&self, id: i64, err: &opptak_upload::Error) -> Result<Problem> {
        let problem = err.problem();
        let detail = err.to_string();
        let policy = self.retry;
        self.blocking(move |journal| {
            let Some(recording) = journal.recording(id)? else { return Ok(()) };
            if recording.state != RecordingState::Failed {
                return Ok(());
            }
            journal.set_state_because(id, RecordingState::Failed, Some(problem), Some(&detail))?;
            if !problem.needs_teacher() {
                let pause = policy.pause_after(recording.retry_attempts);
                journal.set_next_retry_at(id, now_unix().saturating_add(seconds(pause)))?;
            }
            Ok(())
        })
        .await?;
        Ok(problem)
    }

    /// Takes up every failed recording that is due an automatic retry (see
    /// [`RetryPolicy`]): each becomes `stopped`, so [`Opptak::unfinished`]
    /// lists it again. With `embedded_running` false, recordings for this
    /// computer are left for when its server runs. Returns their ids.
    pub async fn begin_due_retries(&self, embedded_running: bool) -> Result<Vec<i64>> {
        let policy = self.retry;
        let opptak = self.clone();
        tokio::task::spawn_blocking(move || {
            let journal = opptak.journal();
            let mut begun = Vec::new();
            for recording in journal.retryable_failures(policy.max_attempts).map_err(journal_error)? {
                // Still being recorded, or waiting for crash repair at the next start.
                if !recording.finished {
                    continue;
                }
                if !embedded_running && opptak.target_for(&recording)? == Target::Embedded {
                    continue;
                }
                // The floor for the next retry, should this one fail without
                // a front end journaling when (see `note_failure`).
                let pause = policy.pause_after(recording.retry_attempts + 1);
                let next = now_unix().saturating_add(seconds(pause));
                if journal
                    .begin_automatic_retry(recording.id, policy.max_attempts, next)
                    .map_err(journal_error)?
                {
                    begun.push(recording.id);
                }
            }
            Ok(begun)
        })
        .await
        .map_err(journal_task_stopped)?
    }

    /// The teacher asked to retry failed recording `id` (the app's Retry,
    /// `opptak resume --failed`): whatever its problem, it becomes
    /// `stopped` with its automatic retries counted from none again, and
    /// is returned, ready for [`Opptak::upload`] to its
    /// [`Opptak::target_for`]. A recording that is not failed is returned
    /// as it is.
    pub async fn retry(&self, id: i64) -> Result<LocalRecording> {
        self.blocking(move |journal| {
            journal.retry_by_teacher(id)?;
            journal.recording(id)?.ok_or(opptak_journal::Error::UnknownRecording(id))
        })
        .await
    }

    /// When the next automatic retry falls due (seconds since the Unix
    /// epoch; in the past when one is due now), or `None` when no failed
    /// recording will be retried without the teacher. A front end that
    /// runs all day calls [`Opptak::resume_all`] again at that time.
    pub async fn next_retry_due(&self) -> Result<Option<i64>> {
        let max_attempts = self.retry.max_attempts;
        let failures = self.blocking(move |journal| journal.retryable_failures(max_attempts)).await?;
        Ok(failures
            .iter()
            .filter(|recording| recording.finished)
            .map(|recording| recording.next_retry_at.unwrap_or(0))
            .min())
    }

    /// What a failed recording waits for; `None` when it did not fail.
    pub fn failed_waits_for(&self, recording: &LocalRecording) -> Option<FailedWaits> {
        if recording.state != RecordingState::Failed {
            return None;
        }
        Some(if !recording.retries_by_itself() {
            FailedWaits::Teacher
        } else if recording.retry_attempts >= self.retry.max_attempts {
            FailedWaits::RetriesUsedUp
        } else {
            FailedWaits::RetryAt(recording.next_retry_at.unwrap_or(0))
        })
    }

    /// Each recording with the words that say where it is.
    pub fn recordings(&self) -> Result<Vec<(LocalRecording, String)>> {
        let recordings = self.journal.recordings().map_err(journal_error)?;
        recordings
            .into_iter()
            .map(|recording| {
                let words = self.journal.status_line(recording.id).map_err(journal_error)?;
                Ok((recording, words))
            })
            .collect()
    }
}

/// The server inside the app is alone on its database: its own finishes
/// and retries wake its verification workers, so they look for other work
/// once a minute instead of every second (an idle app then stays idle).
fn embedded_limits() -> Limits {
    let mut limits = Limits::default();
    limits.verification.idle_poll = Duration::from_secs(60);
    limits
}

/// How long to wait for a server that another process is starting on this
/// computer's folder to say where it answers.
const RUNNING_SERVER_WAIT: Duration = Duration::from_secs(10);
const RUNNING_SERVER_POLL: Duration = Duration::from_millis(50);

/// The URL of the server another process runs on `dir`, once it has bound
/// its address (for at most [`RUNNING_SERVER_WAIT`]).
async fn wait_for_running_server(dir: &Path) -> Result<String> {
    let deadline = tokio::time::Instant::now() + RUNNING_SERVER_WAIT;
    loop {
        let probe = dir.to_path_buf();
        let running = tokio::task::spawn_blocking(move || opptak_server::running_server(&probe))
            .await
            .map_err(|err| Error::Embedded(err.to_string()))?;
        if let Some(url) = running {
            return Ok(url);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Embedded(format!(
                "another Opptak window or command holds its folder {} but did not start serving within {} s; close the other Opptak and try again",
                dir.display(),
                RUNNING_SERVER_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(RUNNING_SERVER_POLL).await;
    }
}

/// Whole seconds of `duration`, as the journal stores times.
fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, seconds)
}

/// [`Opptak::add_file`], on the calling (blocking) thread.
fn add_file_now(
    journal: &Journal,
    path: &Path,
    name: &str,
    content_type: Option<&str>,
) -> Result<LocalRecording> {
    let path = std::fs::canonicalize(path)
        .map_err(|err| Error::File { path: path.to_path_buf(), reason: err.to_string() })?;
    let metadata = std::fs::metadata(&path)
        .map_err(|err| Error::File { path: path.clone(), reason: err.to_string() })?;
    if metadata.is_dir() {
        return Err(Error::File { path, reason: "it is a folder, not a recording".into() });
    }
    if metadata.len() == 0 {
        return Err(Error::File { path, reason: "it is empty".into() });
    }
    let content_type = match content_type.or_else(|| content_type_of(&path)) {
        Some(content_type) => content_type.to_owned(),
        None => return Err(Error::UnknownKind { path }),
    };
    let content_type = content_type.as_str();
    if let Some(existing) = journal.recording_by_path(&path).map_err(journal_error)? {
        if existing.keep_local {
            journal.set_keep_local(existing.id, false).map_err(journal_error)?;
            return journal
                .recording(existing.id)
                .map_err(journal_error)?
                .ok_or_else(|| Error::Journal(format!("recording {} vanished", existing.id)));
        }
        return Ok(existing);
    }
    // The upload hashes the file as it reads the parts (SHA-256 and MD5
    // in one pass); here it is only checked that the file can be read.
    std::fs::File::open(&path)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut [0u8; 1]))
        .map_err(|err| Error::File { path: path.clone(), reason: err.to_string() })?;
    let recording = journal
        .add_recording(NewRecording::growing(
            &path,
            name,
            content_type,
            "desktop-file",
            content_type.starts_with("video/"),
        ))
        .map_err(journal_error)?;
    journal.mark_finished(recording.id, metadata.len(), None).map_err(journal_error)?;
    journal
        .recording(recording.id)
        .map_err(journal_error)?
        .ok_or_else(|| Error::Journal("recording vanished".into()))
}

/// The media type a file's extension names.
pub fn content_type_of(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp4" | "m4a" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        _ => return None,
    })
}

/// The embedded server's token: random, made once, readable only by this user.
fn embedded_token(dir: &Path) -> Result<String> {
    let path: PathBuf = dir.join("embedded.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    std::fs::create_dir_all(dir).map_err(|err| Error::Embedded(err.to_string()))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut file| file.write_all(token.as_bytes()))
        .map_err(|err| Error::Embedded(format!("cannot write {}: {err}", path.display())))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lesson.wav` in `dir`: one second of an 8 kHz sawtooth of `period` samples.
    fn one_second_wav(dir: &Path, period: i32) -> PathBuf {
        let file = dir.join("lesson.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&file, spec).unwrap();
        for n in 0..8000 {
            writer.write_sample((n % period) as i16).unwrap();
        }
        writer.finalize().unwrap();
        file
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn resume_all_takes_an_unfinished_recording_to_ready_on_the_running_embedded_server() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path().join("data"));
        let opptak = Opptak::open(&data_dir).unwrap();
        let file = one_second_wav(temp.path(), 200);
        let recording = opptak.add_file(&file, "lesson", None).await.unwrap();
        let embedded = opptak.connect(&Target::Embedded).await.unwrap();

        let running = opptak.resume_all(Some(&embedded), UploadConfig::default()).await.unwrap();
        assert_eq!(running.len(), 1);
        let (resumed, upload) = running.into_iter().next().unwrap();
        assert_eq!(resumed.id, recording.id);
        let uploaded = upload.join().await.unwrap();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap()));
        assert_eq!(uploaded.sha256, sha256);
        let journaled = opptak.journal().recording(recording.id).unwrap().unwrap();
        assert_eq!(journaled.sha256, Some(sha256), "the journal learned the SHA-256 from the parts' reads");
        assert!(opptak.unfinished().unwrap().is_empty());
        assert!(opptak.resume_all(Some(&embedded), UploadConfig::default()).await.unwrap().is_empty());
        embedded.shutdown().await;
    }

    #[test]
    fn retries_pause_longer_each_time_up_to_the_longest_pause() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts, 5);
        let pauses: Vec<u64> = (0..10).map(|attempts| policy.pause_after(attempts).as_secs()).collect();
        assert_eq!(pauses, [0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(policy.pause_after(u32::MAX), RetryPolicy::DEFAULT_MAX_PAUSE);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_recording_kept_on_this_computer_is_not_resumed_by_the_app() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap();
        let file = temp.path().join("kept.wav");
        std::fs::write(&file, b"RIFF....WAVE not really audio").unwrap();
        let kept = opptak.add_file(&file, "kept", None).await.unwrap();
        opptak.journal().set_keep_local(kept.id, true).unwrap();
        let embedded = opptak.connect(&Target::Embedded).await.unwrap();
        assert!(opptak.resume_all(Some(&embedded), UploadConfig::default()).await.unwrap().is_empty());
        assert_eq!(opptak.journal().recording(kept.id).unwrap().unwrap().state, RecordingState::Stopped);
        // The teacher's upload of the same file lets it go.
        let asked = opptak.add_file(&file, "kept", None).await.unwrap();
        assert_eq!((asked.id, asked.keep_local), (kept.id, false));
        embedded.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failure_is_journaled_with_its_problem_and_retried_only_as_the_policy_allows() {
        let temp = tempfile::tempdir().unwrap();
        let policy = RetryPolicy { max_attempts: 2, ..RetryPolicy::default() };
        let opptak = Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap().with_retry_policy(policy);
        let file = temp.path().join("a.wav");
        std::fs::write(&file, b"some bytes").unwrap();
        let id = opptak.add_file(&file, "a", None).await.unwrap().id;
        let journal = opptak.journal();
        let fail = |detail: &str| journal.set_state(id, RecordingState::Failed, Some(detail)).unwrap();

        // Not failed: nothing to note.
        let refused = opptak_upload::Error::Refused("Part 1 is not in storage".into());
        assert_eq!(opptak.note_failure(id, &refused).await.unwrap(), Problem::Unknown);
        assert_eq!(journal.recording(id).unwrap().unwrap().problem, None);

        fail("refused");
        opptak.note_failure(id, &refused).await.unwrap();
        let failed = journal.recording(id).unwrap().unwrap();
        assert_eq!(failed.problem, Some(Problem::Unknown));
        assert_eq!(
            opptak.failed_waits_for(&failed),
            Some(FailedWaits::RetryAt(failed.next_retry_at.unwrap()))
        );
        // The first retry is due at once (remote targets only when nothing is embedded).
        assert_eq!(opptak.begin_due_retries(true).await.unwrap(), [id]);
        fail("refused again");
        opptak.note_failure(id, &refused).await.unwrap();
        let failed = journal.recording(id).unwrap().unwrap();
        assert!(failed.next_retry_at.unwrap() >= now_unix() + 59, "a minute's pause after a failed retry");
        assert!(opptak.begin_due_retries(true).await.unwrap().is_empty(), "not due yet");
        assert_eq!(opptak.next_retry_due().await.unwrap(), failed.next_retry_at);

        // A problem that needs the teacher is never retried by itself.
        let gone =
            opptak_upload::Error::Read { path: "a.wav".into(), source: std::io::ErrorKind::NotFound.into() };
        opptak.note_failure(id, &gone).await.unwrap();
        let failed = journal.recording(id).unwrap().unwrap();
        assert_eq!(opptak.failed_waits_for(&failed), Some(FailedWaits::Teacher));
        assert_eq!(opptak.next_retry_due().await.unwrap(), None, "only the teacher retries it");
        let retried = opptak.retry(id).await.unwrap();
        assert_eq!(
            (retried.state, retried.retry_attempts, retried.problem),
            (RecordingState::Stopped, 0, None)
        );
        assert_eq!(opptak.failed_waits_for(&retried), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_second_process_on_the_folder_uploads_through_the_running_embedded_server() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path().join("data"));
        // Two owners of one data folder, as the app and an `opptak` command are.
        let app = Opptak::open(&data_dir).unwrap();
        let command = Opptak::open(&data_dir).unwrap();
        let running = app.connect(&Target::Embedded).await.unwrap();
        let shared = command.connect(&Target::Embedded).await.unwrap();
        assert!(shared.server.is_none(), "the second one runs no server of its own");
        assert_eq!(shared.client.base_url(), running.client.base_url());
        assert_eq!(shared.id, running.id, "the same destination in the journal");

        let file = one_second_wav(temp.path(), 100);
        let recording = command.add_file(&file, "lesson", None).await.unwrap();
        let uploaded = command.upload(&recording, &shared, UploadConfig::default()).join().await.unwrap();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap()));
        assert_eq!(uploaded.sha256, sha256);
        shared.shutdown().await;
        running.shutdown().await;
    }
}
