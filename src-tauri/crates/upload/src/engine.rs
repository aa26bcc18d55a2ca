//! The part engine: one upload of one local recording to one destination,
//! from wherever the journal says it stands to `ready` with a matching
//! SHA-256.
//!
//! Invariants kept here:
//! - a part is journaled as sent only after storage answered its PUT with
//!   an ETag equal to the MD5 of the bytes read from the file;
//! - a part's bytes are read from the file for each attempt as they are
//!   sent, a chunk at a time, and hashed again for each retry, so memory
//!   holds a few chunks per part in flight; the parts about to go are hashed
//!   ahead of their turn, side by side, and only their MD5 is kept (storage
//!   checks the bytes sent against it);
//! - every byte is hashed once per algorithm in the first pass: MD5 ahead
//!   of its part's turn, SHA-256 (when the journal has none) as the parts go;
//! - a part whose PUT carried a signed `Content-MD5` was checked by storage
//!   against the local bytes' MD5, so an ETag that is not that MD5 (an
//!   encrypted bucket, a gateway, a proxy that drops the header) is accepted
//!   as storage lists it, and journaled beside the MD5;
//! - `finish` is sent only when parts 1..N cover the finished file exactly;
//! - on resume, storage's `listparts` and the journal are reconciled before
//!   anything is sent: a stored part with the local bytes' MD5 (or, for a
//!   journaled part, its journaled ETag) is adopted, a journaled part
//!   storage lacks is sent again, and a local file whose bytes no longer
//!   match a sent part fails the upload;
//! - a slow connection is not a failed one: a part PUT ends only when no
//!   byte moved for [`UploadConfig::stall_timeout`], and stalls lower the
//!   parts in flight (down to one) until parts go through again;
//! - a session the server ended is replaced at most
//!   [`UploadConfig::max_session_restarts`] times in one run, with backoff
//!   between, and storage answering "not found" while the API still lists
//!   the session is a routing problem, not a reason for a new session.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use opptak_api::{
    ContentMd5, ContentType, ErrorCode, FinishPart, FinishRequest, ListPartsRequest, PartsRequest,
    PresignedPart, RecordingStatus, StartRequest,
};
use opptak_journal::{
    Journal, LocalRecording, NewSession, PartRecord, Problem, RecordingState, SessionState, UploadSession,
};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::body::{self, ChunkPool, ChunkTap, PartBody, Progress};
use crate::client::{ApiClient, CallError, STALL_TIMEOUT};
use crate::lanes;
use crate::source::{Source, part_range, sendable_parts};
use crate::{Error, Result};

/// How long the engine waits for the server's check after `finish` before
/// it ends with [`Error::StillChecking`]: a server takes seconds per GiB, so
/// this much means it is busy or its check is stuck; the recording stays
/// `processing` and the next resume asks again.
pub const READY_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How many times one run replaces a session the server ended (or retries
/// storage that answers "not found") before the upload fails: a server that
/// keeps ending sessions will not stop doing so, and each new session is a
/// new recording on the server.
pub const MAX_SESSION_RESTARTS: u32 = 5;
/// Stalls in a row after which one part fewer is sent at once.
const STALLS_BEFORE_FEWER: u32 = 2;
/// Parts through in a row, without a stall, after which one part more is
/// sent at once again (up to [`UploadConfig::concurrency`]).
const PARTS_BEFORE_MORE: u32 = 3;
/// How many stall timeouts a part PUT may go without its body being taken
/// or its answer coming before the engine itself gives up on it, where the
/// operating system watches the connection for unacknowledged bytes (see
/// [`ApiClient::part_http`]): that watch is exact, while the body being
/// taken is not (a send buffer of megabytes takes minutes to drain on a
/// slow link), so this only catches an end that takes bytes but never
/// answers. Measured on loopback, a part's send buffer grew to 4 MiB: at
/// 0.5 Mbit/s shared by four parts that is over three minutes of bytes
/// already handed over, so this is generous. Elsewhere the engine's watch
/// is the only one.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const WATCH_STALLS: u32 = 8;
#[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
const WATCH_STALLS: u32 = 1;

/// Engine settings with documented defaults.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Parts in flight at once. Default 4.
    pub concurrency: usize,
    /// Retry timing.
    pub backoff: Backoff,
    /// How often the recording's state is polled after finish. Default 250 ms.
    pub poll_interval: Duration,
    /// How long a part PUT may go without a byte moving (acknowledged by
    /// the other end) before it counts as stalled and is tried again.
    /// Default [`STALL_TIMEOUT`] (45 s).
    pub stall_timeout: Duration,
    /// How long to wait for the server's check after finish. Default
    /// [`READY_DEADLINE`] (30 minutes).
    pub ready_deadline: Duration,
    /// Sessions replaced in one run before the upload fails. Default
    /// [`MAX_SESSION_RESTARTS`] (5).
    pub max_session_restarts: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            backoff: Backoff::default(),
            poll_interval: Duration::from_millis(250),
            stall_timeout: STALL_TIMEOUT,
            ready_deadline: READY_DEADLINE,
            max_session_restarts: MAX_SESSION_RESTARTS,
        }
    }
}

/// What an upload reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadEvent {
    /// A session was opened on the server; `restarted` with the reason when
    /// an earlier one had expired or was aborted.
    SessionStarted {
        /// The server's recording id.
        recording_id: String,
        /// Why a new session replaced the old one, if it did.
        restarted: Option<String>,
    },
    /// A part reached storage and the journal.
    PartSent {
        /// Its number.
        part_number: u32,
        /// Bytes journaled as sent so far.
        sent_bytes: u64,
        /// The file's length when known (finished), else the durable length.
        total_bytes: u64,
    },
    /// A call failed and will be retried.
    Retrying {
        /// What failed.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The destination cannot be reached; the upload waits and keeps trying.
    WaitingForNetwork {
        /// What failed.
        reason: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The network is up but nothing moved for a while (a congested or very
    /// slow connection); the part is tried again, fewer at once.
    Stalled {
        /// The part that stalled; `None` for an API call.
        part_number: Option<u32>,
        /// How long nothing moved.
        stalled_for: Duration,
        /// Parts sent at once from now on.
        in_flight: usize,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// Every part is in storage; `finish` is being sent.
    Finishing,
    /// The server accepted `finish` and is checking the recording.
    Processing,
    /// The server holds the recording, with the same SHA-256 as the local file.
    Ready {
        /// The server's recording id.
        recording_id: String,
        /// The SHA-256 both sides agree on.
        sha256: String,
        /// The recording's size.
        bytes: u64,
    },
    /// The server did not finish checking the recording within
    /// [`UploadConfig::ready_deadline`]; the upload stops here and the
    /// recording stays `processing` for a later resume to pick up.
    StillChecking {
        /// The server's recording id.
        recording_id: String,
        /// How long the engine waited.
        waited: Duration,
    },
    /// The upload stopped for good.
    Failed {
        /// What happened and what to do.
        message: String,
    },
}

/// How an upload ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The server's recording id.
    pub recording_id: String,
    /// The SHA-256 both sides agree on.
    pub sha256: String,
    /// The recording's size.
    pub bytes: u64,
}

/// A running upload. Dropping the handle does not stop the upload (it runs
/// on the tokio runtime until done); call [`abort`](Self::abort) to stop it.
#[derive(Debug)]
pub struct UploadHandle {
    events: broadcast::Sender<UploadEvent>,
    task: tokio::task::JoinHandle<Result<Uploaded>>,
}

impl UploadHandle {
    /// Starts uploading local recording `local_id` from `source`.
    pub fn start(
        journal: Journal,
        local_id: i64,
        destination_id: i64,
        source: Source,
        client: ApiClient,
        config: UploadConfig,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        let engine = Engine { journal, local_id, destination_id, client, config, events: events.clone() };
        let task = tokio::spawn(async move {
            let result = engine.run(source).await;
            match &result {
                Err(Error::StillChecking { recording_id, waited }) => engine
                    .emit(UploadEvent::StillChecking { recording_id: recording_id.clone(), waited: *waited }),
                Err(err) => engine.emit(UploadEvent::Failed { message: err.to_string() }),
                Ok(_) => {}
            }
            result
        });
        Self { events, task }
    }

    /// Stops the upload from elsewhere, like [`abort`](Self::abort).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UploadEvent> {
        self.events.subscribe()
    }

    /// Waits for the upload to end.
    pub async fn join(self) -> Result<Uploaded> {
        self.task.await.map_err(|err| Error::Internal(format!("the upload task stopped: {err}")))?
    }

    /// Stops the upload now. What was journaled stays: a later upload or
    /// `resume` continues from there, sending at most the parts that were
    /// in flight again.
    pub fn abort(&self) {
        self.task.abort();
    }
}

struct Engine {
    journal: Journal,
    local_id: i64,
    destination_id: i64,
    client: ApiClient,
    config: UploadConfig,
    events: broadcast::Sender<UploadEvent>,
}

/// Why the parts loop stopped short of finish.
enum Interrupted {
    /// The server no longer has the session: start a new one.
    SessionGone(String),
    /// Storage answered "not found" (or a conflict) to a part PUT: the
    /// session is gone, or the part URLs do not reach storage; `listparts`
    /// tells which.
    StorageRefused(String),
    /// Storage answered "not found" to part URLs while the API still has the
    /// session: the URLs do not reach storage (a wrong public address, a
    /// proxy that does not route them).
    Misrouted(String),
    Failed(Error),
}

impl From<Error> for Interrupted {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

impl Engine {
    fn emit(&self, event: UploadEvent) {
        let _ = self.events.send(event);
    }

    async fn journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> opptak_journal::Result<T> + Send + 'static,
    ) -> Result<T> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal))
            .await
            .map_err(|err| Error::Internal(format!("journal task stopped: {err}")))?
            .map_err(Error::from)
    }

    /// Moves the recording to `state` when the journal allows it from where
    /// it is (a recording still being captured stays `recording`); says
    /// whether it moved.
    async fn set_state(&self, state: RecordingState, why: Option<(Problem, String)>) -> Result<bool> {
        move_to(&self.journal, self.local_id, state, why).await
    }

    /// Calls until the server answers: waits out network loss and transient
    /// failures with backoff, returns refusals.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> std::result::Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, CallError>>,
    {
        let mut attempt = 0;
        let mut offline = false;
        loop {
            match call().await {
                Ok(value) => {
                    if offline {
                        let _ = self.set_state(RecordingState::Uploading, None).await;
                    }
                    return Ok(value);
                }
                Err(CallError::Offline { url, reason }) => {
                    attempt += 1;
                    let retry_in = self.config.backoff.delay(attempt, None);
                    // The journal refuses `waiting` while the file is still
                    // being recorded; asked again at every attempt, the state
                    // says so as soon as the recording has stopped.
                    if !offline {
                        offline = self
                            .set_state(
                                RecordingState::Waiting,
                                Some((Problem::Offline, format!("cannot reach {url}"))),
                            )
                            .await
                            .unwrap_or(false);
                    }
                    self.emit(UploadEvent::WaitingForNetwork {
                        reason: format!("cannot reach {url}: {reason}"),
                        retry_in,
                    });
                    tokio::time::sleep(retry_in).await;
                }
                Err(CallError::Transient { reason, retry_after }) => {
                    attempt += 1;
                    let retry_in = self.config.backoff.delay(attempt, retry_after);
                    self.emit(UploadEvent::Retrying { reason, retry_in });
                    tokio::time::sleep(retry_in).await;
                }
                Err(CallError::Stalled { stalled_for }) => {
                    attempt += 1;
                    let retry_in = self.config.backoff.delay(attempt, None);
                    self.emit(UploadEvent::Stalled {
                        part_number: None,
                        stalled_for,
                        in_flight: self.config.concurrency,
                        retry_in,
                    });
                    tokio::time::sleep(retry_in).await;
                }
                Err(refused) => return Err(refused),
            }
        }
    }

    async fn run(&self, mut source: Source) -> Result<Uploaded> {
        let id = self.local_id;
        let recording =
            self.journal(move |journal| journal.recording(id)).await?.ok_or(Error::UnknownRecording(id))?;
        let _lock = self.journal(move |journal| journal.lock_recording(id)).await?;
        if recording.state == RecordingState::Ready {
            return Err(Error::AlreadyUploaded);
        }
        self.set_state(RecordingState::Uploading, None).await?;
        let mut restarted = None;
        let mut restarts = 0;
        loop {
            let session = self.session(&recording, &source, restarted.take()).await?;
            let interrupted = match self.parts_then_finish(&recording, &session, &mut source).await {
                Ok(uploaded) => return Ok(uploaded),
                Err(Interrupted::StorageRefused(answer)) => self.why_storage_refused(&session, answer).await,
                Err(interrupted) => interrupted,
            };
            let failed = match interrupted {
                Interrupted::SessionGone(reason) => {
                    let session_id = session.id;
                    self.journal(move |journal| {
                        journal.set_session_state(session_id, SessionState::Expired, None)
                    })
                    .await?;
                    restarts += 1;
                    if restarts > self.config.max_session_restarts {
                        Error::SessionsKeepEnding { times: restarts, reason }
                    } else {
                        self.pause_before_restart(restarts, &reason).await;
                        restarted = Some(reason);
                        continue;
                    }
                }
                Interrupted::Misrouted(answer) => {
                    restarts += 1;
                    if restarts > self.config.max_session_restarts {
                        Error::StorageNotFound { answer, times: restarts }
                    } else {
                        self.pause_before_restart(restarts, &answer).await;
                        continue;
                    }
                }
                Interrupted::Failed(err @ Error::StillChecking { .. }) => return Err(err),
                Interrupted::Failed(err) => err,
                Interrupted::StorageRefused(_) => {
                    Error::Internal("a storage refusal was not looked into".into())
                }
            };
            self.set_state(RecordingState::Failed, Some((failed.problem(), failed.to_string()))).await?;
            return Err(failed);
        }
    }

    /// Waits before replacing (or retrying) a session, longer each time, so
    /// a server that keeps ending sessions is not asked for tens a second.
    async fn pause_before_restart(&self, restarts: u32, reason: &str) {
        let retry_in = self.config.backoff.delay(restarts, None);
        self.emit(UploadEvent::Retrying { reason: reason.to_owned(), retry_in });
        tokio::time::sleep(retry_in).await;
    }

    /// Storage refused a part: asks the API whether the session is still
    /// there. Gone means a new session; still there means the part URLs do
    /// not reach storage, which a new session would not change.
    async fn why_storage_refused(&self, session: &UploadSession, answer: String) -> Interrupted {
        let request = ListPartsRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
        };
        match self.retrying(|| self.client.list_parts(&request)).await {
            Ok(_) => {
                tracing::warn!(answer, "storage refused a part of a session the API still lists");
                Interrupted::Misrouted(answer)
            }
            Err(err) if session_gone(&err) => Interrupted::SessionGone(format!("{answer}; {err}")),
            Err(err) => Interrupted::Failed(refused(err)),
        }
    }

    /// The open session, resumed and reconciled, or a new one.
    async fn session(
        &self,
        recording: &LocalRecording,
        source: &Source,
        restarted: Option<String>,
    ) -> Result<UploadSession> {
        let id = self.local_id;
        let current = self.journal(move |journal| journal.current_session(id)).await?;
        if let Some(session) =
            current.filter(|session| matches!(session.state, SessionState::Open | SessionState::FinishSent))
        {
            return Ok(session);
        }
        let content_type: ContentType = recording.content_type.parse().map_err(|_| {
            Error::Refused(format!("{} is not a content type the server takes", recording.content_type))
        })?;
        let state = source.current();
        let request = StartRequest {
            recording_name: recording.name.clone(),
            recorder_type: recording.recorder_type.clone(),
            is_video_recording: recording.is_video,
            used_in_file_uploader: false,
            content_type,
            expected_size_bytes: state.finished.then_some(state.durable_len),
        };
        let started = self.retrying(|| self.client.start(&request)).await.map_err(refused)?;
        let new = NewSession {
            destination_id: self.destination_id,
            max_parts: started.max_parts,
            server_recording_id: started.recording_id.clone(),
            upload_id: started.upload_id.clone(),
            object_key: started.object_key.clone(),
            part_size_bytes: started.part_size_bytes,
            expires_at: started.expires_at.unix_timestamp(),
        };
        let session = self.journal(move |journal| journal.open_session(id, new)).await?;
        tracing::info!(
            recording = started.recording_id,
            part_size = started.part_size_bytes,
            "upload session started"
        );
        self.emit(UploadEvent::SessionStarted { recording_id: started.recording_id, restarted });
        Ok(session)
    }

    async fn parts_then_finish(
        &self,
        recording: &LocalRecording,
        session: &UploadSession,
        source: &mut Source,
    ) -> std::result::Result<Uploaded, Interrupted> {
        let mut sent = self.reconcile(session, source).await?;
        // With no SHA-256 in the journal, it is computed from the parts'
        // bytes as they go, so the file need not be read again for it; but
        // only when every byte will pass in order (no part sent before a
        // restart, part 1 not held back): otherwise the file is read at
        // finish anyway.
        let sees_every_byte = sent.is_empty() && !source.holds_first_part();
        let sha256 = (recording.sha256.is_none() && sees_every_byte).then(|| {
            // As many bytes may wait for the ones before them as are in
            // flight: a part that stalls longer costs a read at finish,
            // not memory.
            ShaFeed::start(self.in_flight_bytes(session))
        });
        if session.state == SessionState::Open {
            self.send_parts(session, source, &mut sent, sha256.as_ref()).await?;
        }
        let len = source.current().durable_len;
        let sha256 = match sha256 {
            Some(feed) => {
                let whole = feed.of_whole(len).await;
                if whole.is_none() {
                    tracing::info!(
                        "the parts sent did not cover the file in order; its SHA-256 is read from it"
                    );
                }
                whole
            }
            None => None,
        };
        self.finish(recording, session, &sent, len, sha256).await?;
        self.wait_ready(session, source.path(), len).await.map_err(Interrupted::Failed)
    }

    /// The bytes of the parts in flight at once.
    fn in_flight_bytes(&self, session: &UploadSession) -> u64 {
        self.config.concurrency as u64 * session.part_size_bytes
    }

    /// Resume: makes the journal agree with storage (see the module docs).
    async fn reconcile(
        &self,
        session: &UploadSession,
        source: &Source,
    ) -> std::result::Result<BTreeMap<u32, PartRecord>, Interrupted> {
        let session_id = session.id;
        let journaled: BTreeMap<u32, PartRecord> = self
            .journal(move |journal| journal.parts(session_id))
            .await?
            .into_iter()
            .map(|part| (part.number, part))
            .collect();
        let request = ListPartsRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
        };
        let stored = match self.retrying(|| self.client.list_parts(&request)).await {
            Ok(listed) => listed.parts,
            Err(err) if session_gone(&err) => return Err(Interrupted::SessionGone(err.to_string())),
            Err(err) => return Err(refused(err).into()),
        };
        let stored: BTreeMap<u32, (String, u64)> = stored
            .into_iter()
            .map(|part| (part.part_number, (part.etag.trim_matches('"').to_owned(), part.size_bytes)))
            .collect();
        let mut sent = BTreeMap::new();
        let local =
            md5_of_ranges(source.path(), journaled.values().map(|part| (part.offset, part.size)).collect())
                .await?;
        for ((number, part), local) in journaled.iter().zip(local) {
            if hex::encode(local) != part.md5_hex {
                return Err(
                    Error::FileChanged { path: source.path().display().to_string(), part: *number }.into()
                );
            }
            match stored.get(number) {
                Some((etag, size)) if still_stored(part, etag, *size) => {
                    sent.insert(*number, part.clone());
                }
                _ => {
                    let number = *number;
                    tracing::info!(
                        part = number,
                        "journaled part missing from storage; it will be sent again"
                    );
                    self.journal(move |journal| journal.forget_part(session_id, number)).await?;
                }
            }
        }
        let durable = source.current();
        let candidates: Vec<(u32, String, u64, u64)> = stored
            .into_iter()
            .filter(|(number, _)| !sent.contains_key(number))
            .filter_map(|(number, (etag, size))| {
                let (offset, expected) = part_range(
                    number,
                    session.part_size_bytes,
                    durable.finished.then_some(durable.durable_len),
                );
                (size == expected && offset + size <= durable.durable_len)
                    .then_some((number, etag, offset, size))
            })
            .collect();
        let local = md5_of_ranges(
            source.path(),
            candidates.iter().map(|(_, _, offset, size)| (*offset, *size)).collect(),
        )
        .await?;
        for ((number, etag, offset, size), md5) in candidates.into_iter().zip(local) {
            let md5_hex = hex::encode(md5);
            if md5_hex == etag {
                let part = PartRecord { number, offset, size, md5_hex, etag };
                let record = part.clone();
                self.journal(move |journal| journal.record_part_sent(session_id, record)).await?;
                tracing::info!(part = number, "adopted a part storage already held");
                sent.insert(number, part);
            }
        }
        Ok(sent)
    }

    /// Sends every part not yet sent, `concurrency` at a time, until the
    /// finished file is covered.
    ///
    /// Nothing that can run beside the PUTs holds them up: the parts about
    /// to go are hashed side by side (without keeping their bytes) and
    /// presigned in one call ahead of their turn, and a part's journal
    /// commit runs while the next part is already on its way.
    async fn send_parts(
        &self,
        session: &UploadSession,
        source: &mut Source,
        sent: &mut BTreeMap<u32, PartRecord>,
        sha256: Option<&ShaFeed>,
    ) -> std::result::Result<(), Interrupted> {
        let shared = Arc::new(PartSender {
            client: self.client.clone(),
            http: self.client.part_http(self.config.stall_timeout),
            session: session.clone(),
            path: source.path().to_path_buf(),
            backoff: self.config.backoff,
            events: self.events.clone(),
            sha256: sha256.map(ShaFeed::sender),
            journal: self.journal.clone(),
            local_id: self.local_id,
            in_flight: InFlight::new(self.config.concurrency),
            stall_timeout: self.config.stall_timeout,
            waiting: AtomicBool::new(false),
            // Enough for the SHA-256's waiting chunks and each part's own.
            chunks: ChunkPool::new(
                self.in_flight_bytes(session) + self.config.concurrency as u64 * body::BUFFERED_PER_PART,
            ),
        });
        // Parts hashed and presigned, waiting for a free slot.
        let mut ready: VecDeque<ReadyPart> = VecDeque::new();
        // At most one hashing pass at a time.
        let mut hashing: JoinSet<Result<Vec<HashedPart>>> = JoinSet::new();
        let mut putting: JoinSet<std::result::Result<PartRecord, Interrupted>> = JoinSet::new();
        let mut committing: JoinSet<Result<PartRecord>> = JoinSet::new();
        // Parts somewhere on that way and not yet in `sent`.
        let mut claimed = BTreeSet::new();
        let mut writer_alive = true;
        loop {
            let state = source.current();
            let len = state.finished.then_some(state.durable_len);
            if hashing.is_empty() && ready.len() < self.config.concurrency {
                let next: Vec<PartRecord> =
                    sendable_parts(state, session.part_size_bytes, source.holds_first_part())
                        .filter(|number| !sent.contains_key(number) && !claimed.contains(number))
                        .take(lanes::LANES)
                        .map(|number| {
                            let (offset, size) = part_range(number, session.part_size_bytes, len);
                            PartRecord { number, offset, size, md5_hex: String::new(), etag: String::new() }
                        })
                        .collect();
                if !next.is_empty() {
                    claimed.extend(next.iter().map(|part| part.number));
                    let path = source.path().to_path_buf();
                    hashing.spawn(async move {
                        let ranges = next.iter().map(|part| (part.offset, part.size)).collect();
                        let digests = md5_of_ranges(&path, ranges).await?;
                        Ok(next.into_iter().zip(digests).collect())
                    });
                }
            }
            // Fewer after stalls (the ones already started wait for a place).
            while putting.len() < shared.in_flight.allowed()
                && let Some(part) = ready.pop_front()
            {
                let sender = shared.clone();
                putting.spawn(async move { sender.send(part).await });
            }
            let all_sent = state.finished
                && sendable_parts(state, session.part_size_bytes, false).all(|n| sent.contains_key(&n));
            if all_sent {
                return Ok(());
            }
            if !state.finished && !writer_alive && claimed.is_empty() {
                return Err(Error::SourceAbandoned.into());
            }
            tokio::select! {
                Some(hashed) = hashing.join_next() => {
                    let hashed = hashed.map_err(|err| Error::Internal(format!("hashing stopped: {err}")))??;
                    ready.extend(self.presign(session, hashed).await?);
                }
                Some(done) = putting.join_next() => {
                    let part = done.map_err(|err| Error::Internal(format!("part task stopped: {err}")))??;
                    let (journal, session_id) = (self.journal.clone(), session.id);
                    committing.spawn_blocking(move || {
                        journal.record_part_sent(session_id, part.clone())?;
                        Ok(part)
                    });
                }
                Some(done) = committing.join_next() => {
                    let part = done.map_err(|err| Error::Internal(format!("journal task stopped: {err}")))??;
                    claimed.remove(&part.number);
                    sent.insert(part.number, part.clone());
                    let sent_bytes = sent.values().map(|part| part.size).sum();
                    self.emit(UploadEvent::PartSent { part_number: part.number, sent_bytes, total_bytes: state.durable_len });
                }
                alive = source.changed(), if writer_alive && !state.finished => writer_alive = alive,
            }
        }
    }

    /// Presigns parts hashed ahead of their turn, in one call.
    async fn presign(
        &self,
        session: &UploadSession,
        hashed: Vec<HashedPart>,
    ) -> std::result::Result<Vec<ReadyPart>, Interrupted> {
        let request = PartsRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
            part_numbers: hashed.iter().map(|(record, _)| record.number).collect(),
            content_md5: Some(hashed.iter().map(|(_, digest)| ContentMd5::from_digest(*digest)).collect()),
        };
        let presigned = match self.retrying(|| self.client.parts(&request)).await {
            Ok(presigned) => presigned.parts,
            Err(err) if session_gone(&err) => return Err(Interrupted::SessionGone(err.to_string())),
            Err(err) => return Err(refused(err).into()),
        };
        Ok(hashed
            .into_iter()
            .map(|(record, digest)| {
                let url = presigned.iter().find(|part| part.part_number == record.number).cloned();
                ReadyPart { record, first_attempt: url.map(|url| (digest, url)) }
            })
            .collect())
    }

    async fn finish(
        &self,
        recording: &LocalRecording,
        session: &UploadSession,
        sent: &BTreeMap<u32, PartRecord>,
        len: u64,
        sha256: Option<String>,
    ) -> std::result::Result<(), Interrupted> {
        let count = len.div_ceil(session.part_size_bytes) as u32;
        let covered: u64 = (1..=count).filter_map(|n| sent.get(&n)).map(|part| part.size).sum();
        if covered != len {
            return Err(
                Error::Internal(format!("parts cover {covered} of {len} bytes; refusing to finish")).into()
            );
        }
        let id = self.local_id;
        let journaled =
            self.journal(move |journal| journal.recording(id)).await?.ok_or(Error::UnknownRecording(id))?;
        if !journaled.finished || journaled.sha256.is_none() {
            // The journal needs the file's checksum before it can call the
            // recording ready: the parts' reads computed it when they saw
            // every byte in order; otherwise (a growing source whose writer
            // did not record it, or an upload resumed after a crash) the
            // file is read once more.
            let sha256 = match sha256 {
                Some(sha256) => sha256,
                None => sha256_file(&journaled.path).await?,
            };
            self.journal(move |journal| journal.mark_finished(id, len, Some(&sha256)).map(|_| ())).await?;
        }
        self.set_state(RecordingState::Finishing, None).await?;
        self.emit(UploadEvent::Finishing);
        let request = FinishRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
            object_key: session.object_key.clone(),
            recording_name: recording.name.clone(),
            recorder_type: recording.recorder_type.clone(),
            is_video_recording: recording.is_video,
            used_in_file_uploader: false,
            parts: (1..=count).map(|n| FinishPart { part_number: n, etag: sent[&n].etag.clone() }).collect(),
        };
        match self.retrying(|| self.client.finish(&request)).await {
            Ok(_) => {}
            Err(CallError::Refused {
                status: 409,
                code: ErrorCode::UploadAborted | ErrorCode::UploadExpired | ErrorCode::UploadLost,
                message,
            }) => {
                return Err(Interrupted::SessionGone(message));
            }
            Err(err) => return Err(refused(err).into()),
        }
        let session_id = session.id;
        self.journal(move |journal| journal.mark_finish_sent(session_id)).await?;
        self.emit(UploadEvent::Processing);
        Ok(())
    }

    async fn wait_ready(&self, session: &UploadSession, path: &Path, len: u64) -> Result<Uploaded> {
        let id = self.local_id;
        let known =
            self.journal(move |journal| journal.recording(id)).await?.and_then(|recording| recording.sha256);
        let local_sha256 = match known {
            Some(sha256) => sha256,
            None => sha256_file(path).await?,
        };
        self.set_state(RecordingState::Processing, None).await?;
        let deadline = self.config.ready_deadline;
        match tokio::time::timeout(deadline, self.poll_until_checked(session, local_sha256, len)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(
                    recording = session.server_recording_id,
                    ?deadline,
                    "the server is still checking"
                );
                Err(Error::StillChecking {
                    recording_id: session.server_recording_id.clone(),
                    waited: deadline,
                })
            }
        }
    }

    /// Polls the server's recording until its check ends.
    async fn poll_until_checked(
        &self,
        session: &UploadSession,
        local_sha256: String,
        len: u64,
    ) -> Result<Uploaded> {
        let id = self.local_id;
        loop {
            let recording = self
                .retrying(|| self.client.recording(&session.server_recording_id))
                .await
                .map_err(refused)?;
            match recording.status {
                RecordingStatus::Processing => tokio::time::sleep(self.config.poll_interval).await,
                RecordingStatus::Failed => {
                    let reason = recording.error.unwrap_or_else(|| "no reason given".into());
                    return Err(Error::ServerRejected(reason));
                }
                RecordingStatus::Ready => {
                    let server_sha256 = recording.sha256.unwrap_or_default();
                    if server_sha256 != local_sha256 {
                        return Err(Error::ChecksumMismatch { local: local_sha256, server: server_sha256 });
                    }
                    let sha = server_sha256.clone();
                    self.journal(move |journal| journal.mark_ready(id, &sha)).await?;
                    let uploaded =
                        Uploaded { recording_id: recording.recording_id, sha256: server_sha256, bytes: len };
                    self.emit(UploadEvent::Ready {
                        recording_id: uploaded.recording_id.clone(),
                        sha256: uploaded.sha256.clone(),
                        bytes: len,
                    });
                    return Ok(uploaded);
                }
            }
        }
    }
}

/// Moves recording `id` to `state` when the journal allows it from where it
/// is (a recording still being captured stays `recording`).
/// With `why`, the journal also gets the [`Problem`] and its detail for people.
async fn move_to(
    journal: &Journal,
    id: i64,
    state: RecordingState,
    why: Option<(Problem, String)>,
) -> Result<bool> {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || {
        let Some(current) = journal.recording(id)? else { return Ok(false) };
        if !current.state.can_become(state) {
            return Ok(false);
        }
        let (problem, detail) = why.unzip();
        journal.set_state_because(id, state, problem, detail.as_deref())?;
        Ok(true)
    })
    .await
    .map_err(|err| Error::Internal(format!("journal task stopped: {err}")))?
}

/// How many part PUTs may be on the wire at once: one fewer after
/// [`STALLS_BEFORE_FEWER`] stalls in a row (down to one, so a congested
/// uplink carries one part at full speed rather than four that each stall),
/// one more after [`PARTS_BEFORE_MORE`] parts through in a row.
#[derive(Debug)]
struct InFlight {
    state: Mutex<InFlightState>,
    freed: Notify,
    most: usize,
}

#[derive(Debug)]
struct InFlightState {
    allowed: usize,
    active: usize,
    stalls_in_a_row: u32,
    through_in_a_row: u32,
}

/// A PUT's place on the wire; given back when dropped.
struct Slot<'a>(&'a InFlight);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.lock().active -= 1;
        self.0.freed.notify_waiters();
    }
}

impl InFlight {
    fn new(most: usize) -> Self {
        let most = most.max(1);
        Self {
            state: Mutex::new(InFlightState {
                allowed: most,
                active: 0,
                stalls_in_a_row: 0,
                through_in_a_row: 0,
            }),
            freed: Notify::new(),
            most,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a place on the wire.
    async fn acquire(&self) -> Slot<'_> {
        loop {
            // Registered before the check, so a slot freed in between wakes it.
            let freed = self.freed.notified();
            {
                let mut state = self.lock();
                if state.active < state.allowed {
                    state.active += 1;
                    return Slot(self);
                }
            }
            freed.await;
        }
    }

    /// A PUT stalled; returns the parts allowed at once from now on.
    fn stalled(&self) -> usize {
        let mut state = self.lock();
        state.through_in_a_row = 0;
        state.stalls_in_a_row += 1;
        if state.stalls_in_a_row >= STALLS_BEFORE_FEWER && state.allowed > 1 {
            state.allowed -= 1;
            state.stalls_in_a_row = 0;
            tracing::info!(in_flight = state.allowed, "parts stalled; sending fewer at once");
        }
        state.allowed
    }

    /// A part went through.
    fn went_through(&self) {
        let mut state = self.lock();
        state.stalls_in_a_row = 0;
        state.through_in_a_row += 1;
        if state.through_in_a_row >= PARTS_BEFORE_MORE && state.allowed < self.most {
            state.allowed += 1;
            state.through_in_a_row = 0;
            drop(state);
            self.freed.notify_waiters();
        }
    }

    fn allowed(&self) -> usize {
        self.lock().allowed
    }
}

/// Storage's answer to a part PUT.
struct PutAnswer {
    /// The ETag it answered with (unquoted; empty when it sent none).
    etag: String,
    /// Whether the PUT carried a `Content-MD5` signed into its URL, so
    /// storage checked the bytes against it.
    md5_signed: bool,
}

/// What every part task needs.
struct PartSender {
    client: ApiClient,
    /// For the PUTs: see [`ApiClient::part_http`].
    http: reqwest::Client,
    session: UploadSession,
    path: std::path::PathBuf,
    backoff: Backoff,
    events: broadcast::Sender<UploadEvent>,
    journal: Journal,
    local_id: i64,
    in_flight: InFlight,
    stall_timeout: Duration,
    /// Whether the journal says the upload waits (stalled or offline), so
    /// the next part through moves it back to `uploading`.
    waiting: AtomicBool,
    /// Where each part's bytes also go as they are read, when the file's
    /// SHA-256 is computed from them.
    sha256: Option<ChunkTap>,
    chunks: Arc<ChunkPool>,
}

/// A part and its MD5, computed ahead of its turn.
type HashedPart = (PartRecord, [u8; 16]);

/// A part about to go: where it is, and for its first attempt its MD5,
/// computed ahead of its turn, with the URL presigned for it.
struct ReadyPart {
    record: PartRecord,
    first_attempt: Option<([u8; 16], PresignedPart)>,
}

impl PartSender {
    /// PUTs one part until storage has it. Its bytes are read as they are
    /// sent; if they changed since they were hashed, storage refuses them
    /// (Content-MD5) and the retry hashes them again, and presigns anew.
    async fn send(&self, ready: ReadyPart) -> std::result::Result<PartRecord, Interrupted> {
        let ReadyPart { record, mut first_attempt } = ready;
        let (number, offset, size) = (record.number, record.offset, record.size);
        let mut attempt = 0;
        loop {
            let slot = self.in_flight.acquire().await;
            let (digest, outcome) = match first_attempt.take() {
                Some((digest, part)) => (digest, self.put_to(&part, offset, size, digest).await?),
                None => {
                    let digest = md5_of_ranges(&self.path, vec![(offset, size)]).await?[0];
                    (digest, self.put(number, offset, size, digest).await?)
                }
            };
            drop(slot);
            let md5_hex = hex::encode(digest);
            let etag = match outcome {
                Ok(PutAnswer { etag, .. }) if etag == md5_hex => Ok(etag),
                // Storage checked the bytes against the signed MD5, so its
                // ETag, whatever it is, names these bytes; the one to finish
                // with is the one storage lists (a proxy may have dropped or
                // changed the header).
                Ok(PutAnswer { etag, md5_signed: true }) => match self.listed_etag(number, size).await? {
                    Some(listed) => {
                        tracing::info!(
                            part = number,
                            answered = etag,
                            listed,
                            "storage keeps an ETag that is not the MD5; the signed Content-MD5 proved the bytes"
                        );
                        Ok(listed)
                    }
                    None => Err((format!("storage took part {number} but does not list it yet"), None)),
                },
                Ok(PutAnswer { etag, md5_signed: false }) => Err((
                    format!("storage stored part {number} with ETag {etag}, not its MD5 {md5_hex}"),
                    None,
                )),
                Err(CallError::Refused { status: 404 | 409, message, .. }) => {
                    return Err(Interrupted::StorageRefused(message));
                }
                Err(CallError::Refused { status: 403, message, .. }) => {
                    Err((format!("the part URL was refused ({message}); asking for a new one"), None))
                }
                Err(CallError::Refused { message, .. }) => return Err(Error::Refused(message).into()),
                Err(CallError::Transient { reason, retry_after }) => Err((reason, retry_after)),
                Err(CallError::Offline { url, reason }) => {
                    attempt += 1;
                    let retry_in = self.backoff.delay(attempt, None);
                    // Asked at every attempt: the journal refuses `waiting`
                    // while the file is still being recorded.
                    if !self.waiting.load(Ordering::SeqCst) {
                        let why = Some((Problem::Offline, format!("cannot reach {url}")));
                        let moved =
                            move_to(&self.journal, self.local_id, RecordingState::Waiting, why).await?;
                        self.waiting.fetch_or(moved, Ordering::SeqCst);
                    }
                    let reason = format!("cannot reach {url}: {reason}");
                    let _ = self.events.send(UploadEvent::WaitingForNetwork { reason, retry_in });
                    tokio::time::sleep(retry_in).await;
                    continue;
                }
                Err(CallError::Stalled { stalled_for }) => {
                    let in_flight = self.in_flight.stalled();
                    attempt += 1;
                    let retry_in = self.backoff.delay(attempt, None);
                    let _ = self.events.send(UploadEvent::Stalled {
                        part_number: Some(number),
                        stalled_for,
                        in_flight,
                        retry_in,
                    });
                    if !self.waiting.swap(true, Ordering::SeqCst) {
                        let why = format!(
                            "The connection stalled: nothing moved for {} s. The upload keeps trying, fewer parts at a time.",
                            stalled_for.as_secs()
                        );
                        move_to(
                            &self.journal,
                            self.local_id,
                            RecordingState::Waiting,
                            Some((Problem::Stalled, why)),
                        )
                        .await?;
                    }
                    tokio::time::sleep(retry_in).await;
                    continue;
                }
            };
            match etag {
                Ok(etag) => {
                    self.in_flight.went_through();
                    if self.waiting.swap(false, Ordering::SeqCst) {
                        move_to(&self.journal, self.local_id, RecordingState::Uploading, None).await?;
                    }
                    return Ok(PartRecord { number, offset, size, md5_hex, etag });
                }
                Err((reason, retry_after)) => {
                    attempt += 1;
                    let retry_in = self.backoff.delay(attempt, retry_after);
                    let _ = self.events.send(UploadEvent::Retrying { reason, retry_in });
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    /// The ETag storage lists for part `number` when it holds all `size`
    /// bytes of it; `None` when it does not list it (yet).
    async fn listed_etag(&self, number: u32, size: u64) -> std::result::Result<Option<String>, Interrupted> {
        let request = ListPartsRequest {
            recording_id: self.session.server_recording_id.clone(),
            upload_id: self.session.upload_id.clone(),
        };
        match self.client.list_parts(&request).await {
            Ok(listed) => Ok(listed
                .parts
                .into_iter()
                .find(|part| part.part_number == number && part.size_bytes == size)
                .map(|part| part.etag.trim().trim_matches('"').to_owned())
                .filter(|etag| !etag.is_empty())),
            Err(err) if session_gone(&err) => Err(Interrupted::SessionGone(err.to_string())),
            Err(err @ CallError::Refused { .. }) => Err(refused(err).into()),
            Err(_) => Ok(None),
        }
    }

    /// Presigns part `number` alone (a retry) and PUTs it; see
    /// [`put_to`](Self::put_to).
    async fn put(
        &self,
        number: u32,
        offset: u64,
        size: u64,
        digest: [u8; 16],
    ) -> Result<std::result::Result<PutAnswer, CallError>> {
        let request = PartsRequest {
            recording_id: self.session.server_recording_id.clone(),
            upload_id: self.session.upload_id.clone(),
            part_numbers: vec![number],
            content_md5: Some(vec![ContentMd5::from_digest(digest)]),
        };
        let part = match self.client.parts(&request).await {
            Ok(presigned) => presigned.parts.into_iter().next(),
            Err(err) => return Ok(Err(err)),
        };
        match part {
            Some(part) => self.put_to(&part, offset, size, digest).await,
            None => Ok(Err(CallError::Transient {
                reason: "the server presigned no URL".into(),
                retry_after: None,
            })),
        }
    }

    /// PUTs `size` bytes of the file from `offset`, streamed as they are
    /// read, to a presigned part URL. Storage's answer (its ETag) inside;
    /// outside, a file that could not be read.
    async fn put_to(
        &self,
        part: &PresignedPart,
        offset: u64,
        size: u64,
        digest: [u8; 16],
    ) -> Result<std::result::Result<PutAnswer, CallError>> {
        let progress = Progress::default();
        let PartBody { body, read } = PartBody::stream(
            self.path.clone(),
            offset,
            size,
            self.chunks.clone(),
            self.sha256.clone(),
            progress.clone(),
        );
        // Slowness is fine, silence is not: the attempt ends when no byte
        // was acknowledged for the stall timeout (the connection fails with
        // a timeout), or nothing happened at all for several (see
        // [`WATCH_STALLS`]).
        let answer = tokio::select! {
            answer = self.answer(part, body, size, digest, &progress) => answer,
            stalled_for = progress.stalled(self.stall_timeout * WATCH_STALLS) => {
                Err(CallError::Stalled { stalled_for })
            }
        };
        read.await
            .map_err(|err| Error::Internal(format!("the part's reader stopped: {err}")))?
            .map_err(|source| Error::Read { path: self.path.display().to_string(), source })?;
        Ok(answer)
    }

    /// Storage's answer to the PUT of `body` to a presigned part URL.
    async fn answer(
        &self,
        part: &PresignedPart,
        body: reqwest::Body,
        size: u64,
        digest: [u8; 16],
        progress: &Progress,
    ) -> std::result::Result<PutAnswer, CallError> {
        let number = part.part_number;
        // A streamed body has no length of its own; storage needs one.
        let mut put = self.http.put(&part.url).header(reqwest::header::CONTENT_LENGTH, size).body(body);
        for (name, value) in &part.headers {
            put = put.header(name, value);
        }
        let md5_signed = part.headers.keys().any(|name| name.eq_ignore_ascii_case("content-md5"));
        if !md5_signed {
            put = put.header("Content-MD5", base64::engine::general_purpose::STANDARD.encode(digest));
        }
        let response = put.send().await.map_err(|err| match self.client.network_error(&err) {
            // The system ended a connection whose bytes were not acknowledged.
            CallError::Stalled { .. } => CallError::Stalled { stalled_for: self.stall_timeout },
            other => other,
        })?;
        progress.moved(0);
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
            return Ok(PutAnswer { etag: etag.trim().trim_matches('"').to_owned(), md5_signed });
        }
        let retry_after = crate::client::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let host = reqwest::Url::parse(&part.url)
            .ok()
            .and_then(|url| {
                url.host_str().map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                })
            })
            .unwrap_or_default();
        Err(match status {
            // Storage errors are S3 XML, not the API's JSON: keep them whole.
            403 => CallError::Refused {
                status,
                code: ErrorCode::Unknown,
                message: String::from_utf8_lossy(&body).into_owned(),
            },
            408 | 429 | 500..=599 => {
                CallError::Transient { reason: format!("storage answered {status}"), retry_after }
            }
            // A 404 from storage: the multipart upload is gone, or the URL
            // does not reach storage; the engine asks the API which.
            404 | 409 => CallError::Refused {
                status,
                code: ErrorCode::Unknown,
                message: format!("storage at {host} answered {status} to part {number}"),
            },
            _ => CallError::Transient {
                reason: format!(
                    "storage refused part {number} ({status}: {})",
                    String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
                ),
                retry_after: None,
            },
        })
    }
}

/// Whether storage still holds journaled `part`, listed with `etag` and
/// `size`: by its MD5, or by the opaque ETag journaled for it (see the
/// module docs), which is storage's own.
fn still_stored(part: &PartRecord, etag: &str, size: u64) -> bool {
    size == part.size && (etag == part.md5_hex || etag == part.etag)
}

/// Whether a refusal of a call about a session means the server ended the
/// session (start a new one). Codes decide; a server that sends none (an
/// LMS) is judged by its status. "No such endpoint" is a wrong address, not
/// an ended session.
fn session_gone(err: &CallError) -> bool {
    match err {
        CallError::Refused { status: 404, code, .. } => {
            matches!(code, ErrorCode::NotFound | ErrorCode::Unknown)
        }
        CallError::Refused { status: 409, code, .. } => matches!(
            code,
            ErrorCode::UploadAborted | ErrorCode::UploadExpired | ErrorCode::UploadLost | ErrorCode::Unknown
        ),
        _ => false,
    }
}

fn refused(err: CallError) -> Error {
    match err {
        CallError::Refused { status: 401, message, .. } => Error::Unauthorized(message),
        other => Error::Refused(other.to_string()),
    }
}

/// The SHA-256 of the file's first bytes, fed each part's chunks as the
/// parts go. Parts go side by side, so the chunks of later parts arrive
/// while earlier parts are still being read, and wait for them; a gap that
/// does not close (part 1 held back, parts sent before a restart, a part
/// retried while later ones went on) stops it, and the file is then read
/// again at finish.
struct RunningSha256 {
    hasher: sha2::Sha256,
    /// Bytes hashed so far, from the start of the file.
    end: u64,
    /// Chunks that came before the ones ahead of them: offset → bytes.
    waiting: BTreeMap<u64, bytes::Bytes>,
    /// The bytes in `waiting`.
    waiting_bytes: u64,
    /// How many bytes may wait: more means a gap that will not close soon,
    /// and holding them would hold their memory.
    budget: u64,
    gave_up: bool,
}

impl RunningSha256 {
    fn new(budget: u64) -> Self {
        Self {
            hasher: sha2::Sha256::new(),
            end: 0,
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            budget,
            gave_up: false,
        }
    }

    /// Takes the bytes at `offset`. Chunks read again (a retry) come at the
    /// same offsets as before.
    fn update(&mut self, offset: u64, bytes: bytes::Bytes) {
        if self.gave_up || offset < self.end {
            return;
        }
        self.waiting_bytes += bytes.len() as u64;
        if let Some(replaced) = self.waiting.insert(offset, bytes) {
            self.waiting_bytes -= replaced.len() as u64;
        }
        while let Some(next) = self.waiting.first_entry()
            && *next.key() == self.end
        {
            let bytes = next.remove();
            self.hasher.update(&bytes);
            self.end += bytes.len() as u64;
            self.waiting_bytes -= bytes.len() as u64;
        }
        if self.waiting_bytes > self.budget {
            self.gave_up = true;
            self.waiting.clear();
        }
    }

    /// The hex SHA-256 when every byte of a file of `len` bytes went in.
    fn of_whole(self, len: u64) -> Option<String> {
        (!self.gave_up && self.end == len).then(|| hex::encode(self.hasher.finalize()))
    }
}

/// A [`RunningSha256`] on a thread of its own, so hashing overlaps the
/// parts in flight.
struct ShaFeed {
    parts: ChunkTap,
    hashed: tokio::task::JoinHandle<RunningSha256>,
}

impl ShaFeed {
    /// A feed that holds at most `budget` bytes waiting for the ones
    /// before them.
    fn start(budget: u64) -> Self {
        let (parts, queue) = std::sync::mpsc::channel::<(u64, bytes::Bytes)>();
        let hashed = tokio::task::spawn_blocking(move || {
            let mut running = RunningSha256::new(budget);
            for (offset, bytes) in queue {
                running.update(offset, bytes);
            }
            running
        });
        Self { parts, hashed }
    }

    /// Where to send `(offset, bytes)` of each part.
    fn sender(&self) -> ChunkTap {
        self.parts.clone()
    }

    /// See [`RunningSha256::of_whole`]; every sender must be gone.
    async fn of_whole(self, len: u64) -> Option<String> {
        drop(self.parts);
        self.hashed.await.ok()?.of_whole(len)
    }
}

/// The MD5 of each (offset, size) range of the file, side by side.
async fn md5_of_ranges(path: &Path, ranges: Vec<(u64, u64)>) -> Result<Vec<[u8; 16]>> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let path_text = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        lanes::md5_each(&file, &ranges)
    })
    .await
    .map_err(|err| Error::Internal(err.to_string()))?
    .map_err(|source| Error::Read { path: path_text, source })
}

/// Bytes read at a time for [`sha256_file`]: few system calls, and the
/// buffer stays in the CPU's cache while it is hashed.
const SHA256_CHUNK: usize = 256 * 1024;

/// The hex SHA-256 of a whole file, read on a blocking thread.
pub async fn sha256_file(path: &Path) -> Result<String> {
    let path_text = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0; SHA256_CHUNK];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => hasher.update(&buffer[..read]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok::<_, std::io::Error>(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|err| Error::Internal(err.to_string()))?
    .map_err(|source| Error::Read { path: path_text, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: u64 = 1000;
    /// Parts that may wait for the ones before them in these tests.
    const WAITING: u64 = 4;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        (file, data)
    }

    /// Feeds the parts of `data` in `order` to a [`ShaFeed`].
    async fn sha256_fed(data: &[u8], order: &[u32]) -> Option<String> {
        let feed = ShaFeed::start(WAITING * PART);
        let sender = feed.sender();
        for &number in order {
            let (offset, size) = part_range(number, PART, Some(data.len() as u64));
            let bytes = bytes::Bytes::copy_from_slice(&data[offset as usize..(offset + size) as usize]);
            sender.send((offset, bytes)).unwrap();
        }
        drop(sender);
        feed.of_whole(data.len() as u64).await
    }

    #[tokio::test]
    async fn the_sha256_of_parts_fed_in_order_or_a_little_out_of_it_is_the_files() {
        let (_, data) = file_of(5 * PART as usize + 17);
        let whole = hex::encode(sha2::Sha256::digest(&data));
        assert_eq!(sha256_fed(&data, &[1, 2, 3, 4, 5, 6]).await.unwrap(), whole);
        assert_eq!(sha256_fed(&data, &[2, 1, 4, 3, 6, 5]).await.unwrap(), whole);
        assert_eq!(sha256_fed(&data, &[1, 2, 2, 3, 4, 5, 6]).await.unwrap(), whole, "a part fed twice");
    }

    #[tokio::test]
    async fn the_sha256_gives_up_on_a_gap_that_does_not_close() {
        let parts = WAITING as u32 + 3;
        let (_, data) = file_of(parts as usize * PART as usize);
        let without_first: Vec<u32> = (2..=parts).collect();
        assert_eq!(sha256_fed(&data, &without_first).await, None, "part 1 never came");
        let first_last: Vec<u32> = (2..=parts).chain([1]).collect();
        assert_eq!(sha256_fed(&data, &first_last).await, None, "too many waited for part 1");
    }

    #[test]
    fn stalls_lower_the_parts_in_flight_to_one_and_parts_through_raise_them_again() {
        let in_flight = InFlight::new(4);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(in_flight.stalled());
        }
        assert_eq!(seen, [4, 3, 3, 2, 2, 1, 1, 1], "one fewer every {STALLS_BEFORE_FEWER} stalls, never 0");
        for _ in 0..PARTS_BEFORE_MORE {
            in_flight.went_through();
        }
        assert_eq!(in_flight.allowed(), 2, "one more after {PARTS_BEFORE_MORE} parts through");
        for _ in 0..10 * PARTS_BEFORE_MORE {
            in_flight.went_through();
        }
        assert_eq!(in_flight.allowed(), 4, "never more than configured");
    }

    #[tokio::test]
    async fn a_put_waits_for_a_place_on_the_wire() {
        let in_flight = InFlight::new(1);
        let first = in_flight.acquire().await;
        let waiting = tokio::time::timeout(Duration::from_millis(100), in_flight.acquire()).await;
        assert!(waiting.is_err(), "the second waits while the first is on the wire");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), in_flight.acquire()).await;
        assert!(second.is_ok(), "and goes once the first is done");
    }

    #[test]
    fn a_session_is_gone_by_code_or_by_status_when_there_is_no_code() {
        let refusal =
            |status, code| CallError::Refused { status, code, message: "whatever the words".into() };
        assert!(session_gone(&refusal(409, ErrorCode::UploadExpired)));
        assert!(session_gone(&refusal(409, ErrorCode::UploadAborted)));
        assert!(session_gone(&refusal(404, ErrorCode::NotFound)));
        assert!(session_gone(&refusal(404, ErrorCode::Unknown)), "an LMS that sends no code");
        assert!(
            !session_gone(&refusal(404, ErrorCode::NoSuchEndpoint)),
            "a wrong address is not a gone session"
        );
        assert!(!session_gone(&refusal(409, ErrorCode::FinishConflict)));
        assert!(!session_gone(&refusal(400, ErrorCode::InvalidRequest)));
        assert!(!session_gone(&CallError::Stalled { stalled_for: Duration::from_secs(1) }));
    }

    #[test]
    fn a_journaled_part_is_adopted_by_its_md5_or_by_its_journaled_opaque_etag() {
        let md5_hex = "9e107d9d372bb6826bd81d3542a419d6".to_owned();
        let plain =
            PartRecord { number: 1, offset: 0, size: 10, md5_hex: md5_hex.clone(), etag: md5_hex.clone() };
        assert!(still_stored(&plain, &md5_hex, 10));
        assert!(!still_stored(&plain, &md5_hex, 9), "a short part is not the part");
        assert!(!still_stored(&plain, "other", 10));
        let opaque = PartRecord { etag: "kms-5d41402abc4b2a76".into(), ..plain };
        assert!(still_stored(&opaque, "kms-5d41402abc4b2a76", 10), "storage's own ETag, as journaled");
        assert!(!still_stored(&opaque, "kms-another", 10));
    }
}
