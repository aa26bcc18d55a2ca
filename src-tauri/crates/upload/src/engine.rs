//! The part engine: one upload of one local recording to one destination,
//! from wherever the journal says it stands to `ready` with a matching
//! SHA-256.
//!
//! Invariants kept here:
//! - a part is journaled as sent only after storage answered its PUT with
//!   an ETag equal to the MD5 of the bytes read from the file;
//! - a part's bytes are read from the file for each attempt, and hashed
//!   again for each retry, so memory holds at most `concurrency` parts
//!   (parts hashed ahead of their turn, side by side with the one being
//!   read, are read a chunk at a time and only their MD5 is kept);
//! - every byte is hashed once per algorithm: MD5 for its part, SHA-256 (when
//!   the journal has none) as the parts are read in order.
//! - `finish` is sent only when parts 1..N cover the finished file exactly;
//! - on resume, storage's `listparts` and the journal are reconciled before
//!   anything is sent: a stored part with the local bytes' MD5 is adopted, a
//!   journaled part storage lacks is sent again, and a local file whose
//!   bytes no longer match a sent part fails the upload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use opptak_api::{
    ContentMd5, ContentType, FinishPart, FinishRequest, ListPartsRequest, PartsRequest, PresignedPart,
    RecordingStatus, StartRequest,
};
use opptak_journal::{
    Journal, LocalRecording, NewSession, PartRecord, RecordingState, SessionState, UploadSession,
};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::client::{ApiClient, CallError};
use crate::lanes;
use crate::source::{Source, part_range, sendable_parts};
use crate::{Error, Result};

/// Engine settings with documented defaults.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Parts in flight at once. Default 4.
    pub concurrency: usize,
    /// Retry timing.
    pub backoff: Backoff,
    /// How often the recording's state is polled after finish. Default 250 ms.
    pub poll_interval: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self { concurrency: 4, backoff: Backoff::default(), poll_interval: Duration::from_millis(250) }
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
            if let Err(err) = &result {
                engine.emit(UploadEvent::Failed { message: err.to_string() });
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
    /// it is (a recording still being captured stays `recording`).
    async fn set_state(&self, state: RecordingState, error: Option<String>) -> Result<()> {
        let id = self.local_id;
        self.journal(move |journal| {
            let Some(current) = journal.recording(id)? else { return Ok(()) };
            if current.state.can_become(state) {
                journal.set_state(id, state, error.as_deref())?;
            }
            Ok(())
        })
        .await
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
                    if !offline {
                        offline = true;
                        let _ = self
                            .set_state(RecordingState::Waiting, Some(format!("cannot reach {url}")))
                            .await;
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
        loop {
            let session = self.session(&recording, &source, restarted.take()).await?;
            match self.parts_then_finish(&recording, &session, &mut source).await {
                Ok(uploaded) => return Ok(uploaded),
                Err(Interrupted::SessionGone(reason)) => {
                    let session_id = session.id;
                    self.journal(move |journal| {
                        journal.set_session_state(session_id, SessionState::Expired, None)
                    })
                    .await?;
                    restarted = Some(reason);
                }
                Err(Interrupted::Failed(err)) => {
                    self.set_state(RecordingState::Failed, Some(err.to_string())).await?;
                    return Err(err);
                }
            }
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
        let sha256 = (recording.sha256.is_none() && sees_every_byte).then(ShaFeed::start);
        if session.state == SessionState::Open {
            self.send_parts(session, source, &mut sent, sha256.as_ref()).await?;
        }
        let len = source.current().durable_len;
        let sha256 = match sha256 {
            Some(feed) => feed.of_whole(len).await,
            None => None,
        };
        self.finish(recording, session, &sent, len, sha256).await?;
        self.wait_ready(session, source.path(), len).await.map_err(Interrupted::Failed)
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
            Err(CallError::Refused { status: 404 | 409, message }) => {
                return Err(Interrupted::SessionGone(message));
            }
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
            if local != part.md5_hex {
                return Err(
                    Error::FileChanged { path: source.path().display().to_string(), part: *number }.into()
                );
            }
            match stored.get(number) {
                Some((etag, size)) if *etag == part.md5_hex && *size == part.size => {
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
        for ((number, etag, offset, size), md5_hex) in candidates.into_iter().zip(local) {
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

    async fn send_parts(
        &self,
        session: &UploadSession,
        source: &mut Source,
        sent: &mut BTreeMap<u32, PartRecord>,
        sha256: Option<&ShaFeed>,
    ) -> std::result::Result<(), Interrupted> {
        let mut hashed_ahead = BTreeMap::new();
        let mut in_flight: JoinSet<std::result::Result<PartRecord, Interrupted>> = JoinSet::new();
        let mut flying = BTreeSet::new();
        let shared = Arc::new(PartSender {
            client: self.client.clone(),
            session: session.clone(),
            path: source.path().to_path_buf(),
            backoff: self.config.backoff,
            events: self.events.clone(),
        });
        let mut writer_alive = true;
        loop {
            let state = source.current();
            let len = state.finished.then_some(state.durable_len);
            let mut waiting = sendable_parts(state, session.part_size_bytes, source.holds_first_part())
                .filter(|number| !sent.contains_key(number) && !flying.contains(number));
            let due: Vec<u32> =
                waiting.by_ref().take(self.config.concurrency.saturating_sub(flying.len())).collect();
            if !due.is_empty() {
                let ahead: Vec<u32> = waiting
                    .filter(|number| !hashed_ahead.contains_key(number))
                    .take(lanes::LANES - 1)
                    .collect();
                let reads = PartReads {
                    path: source.path().to_path_buf(),
                    due: due.iter().map(|&n| (n, part_range(n, session.part_size_bytes, len))).collect(),
                    ahead: ahead.iter().map(|&n| (n, part_range(n, session.part_size_bytes, len))).collect(),
                    hashed_ahead: std::mem::take(&mut hashed_ahead),
                };
                let (parts, reads) = reads.run().await?;
                hashed_ahead = reads.hashed_ahead;
                if let Some(feed) = sha256 {
                    for (record, bytes, _) in &parts {
                        feed.feed(record.offset, bytes.clone());
                    }
                }
                for prepared in self.presign(session, parts).await? {
                    flying.insert(prepared.record.number);
                    let sender = shared.clone();
                    in_flight.spawn(async move { sender.send(prepared).await });
                }
            }
            let all_sent = state.finished
                && sendable_parts(state, session.part_size_bytes, false).all(|n| sent.contains_key(&n));
            if all_sent && in_flight.is_empty() {
                return Ok(());
            }
            if !state.finished && !writer_alive && in_flight.is_empty() {
                return Err(Error::SourceAbandoned.into());
            }
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    let part = done.map_err(|err| Error::Internal(format!("part task stopped: {err}")))??;
                    let (session_id, record) = (session.id, part.clone());
                    self.journal(move |journal| journal.record_part_sent(session_id, record)).await?;
                    flying.remove(&part.number);
                    sent.insert(part.number, part.clone());
                    let sent_bytes = sent.values().map(|part| part.size).sum();
                    self.emit(UploadEvent::PartSent { part_number: part.number, sent_bytes, total_bytes: state.durable_len });
                }
                alive = source.changed(), if writer_alive && !state.finished => writer_alive = alive,
            }
        }
    }

    /// Presigns the parts about to go, read and hashed, in one call.
    async fn presign(
        &self,
        session: &UploadSession,
        prepared: Vec<(PartRecord, bytes::Bytes, [u8; 16])>,
    ) -> std::result::Result<Vec<Prepared>, Interrupted> {
        let request = PartsRequest {
            recording_id: session.server_recording_id.clone(),
            upload_id: session.upload_id.clone(),
            part_numbers: prepared.iter().map(|(record, _, _)| record.number).collect(),
            content_md5: Some(
                prepared.iter().map(|(_, _, digest)| ContentMd5::from_digest(*digest)).collect(),
            ),
        };
        let presigned = match self.retrying(|| self.client.parts(&request)).await {
            Ok(presigned) => presigned.parts,
            Err(CallError::Refused { status: 404 | 409, message }) => {
                return Err(Interrupted::SessionGone(message));
            }
            Err(err) => return Err(refused(err).into()),
        };
        Ok(prepared
            .into_iter()
            .map(|(record, bytes, digest)| {
                let url = presigned.iter().find(|part| part.part_number == record.number).cloned();
                Prepared { record, first_attempt: url.map(|url| (bytes, digest, url)) }
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
            Err(CallError::Refused { status: 409, message })
                if message.contains("aborted") || message.contains("expired") =>
            {
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

/// What every part task needs.
struct PartSender {
    client: ApiClient,
    session: UploadSession,
    path: std::path::PathBuf,
    backoff: Backoff,
    events: broadcast::Sender<UploadEvent>,
}

/// A part about to go: where it is, and for its first attempt the bytes
/// already read and hashed with the URL presigned for them.
struct Prepared {
    record: PartRecord,
    first_attempt: Option<(bytes::Bytes, [u8; 16], PresignedPart)>,
}

impl PartSender {
    /// PUTs one part until storage has it; retries read and hash the bytes
    /// again and presign anew.
    async fn send(&self, prepared: Prepared) -> std::result::Result<PartRecord, Interrupted> {
        let Prepared { record, mut first_attempt } = prepared;
        let (number, offset, size) = (record.number, record.offset, record.size);
        let mut attempt = 0;
        loop {
            let (bytes, digest, presigned) = match first_attempt.take() {
                Some(first) => (first.0, first.1, Some(first.2)),
                None => {
                    let bytes = read_part(&self.path, offset, size).await?;
                    let digest: [u8; 16] = md5::Md5::digest(&bytes).into();
                    (bytes, digest, None)
                }
            };
            let md5_hex = hex::encode(digest);
            let outcome = match presigned {
                Some(part) => self.put_to(&part, bytes, digest).await,
                None => self.put(number, bytes, digest).await,
            };
            let (reason, retry_after, offline) = match outcome {
                Ok(etag) if etag == md5_hex => return Ok(PartRecord { number, offset, size, md5_hex, etag }),
                Ok(etag) => (
                    format!("storage stored part {number} with ETag {etag}, not its MD5 {md5_hex}"),
                    None,
                    false,
                ),
                Err(CallError::Refused { status: 404 | 409, message }) => {
                    return Err(Interrupted::SessionGone(message));
                }
                Err(CallError::Refused { status: 403, message }) => {
                    (format!("the part URL was refused ({message}); asking for a new one"), None, false)
                }
                Err(CallError::Refused { message, .. }) => return Err(Error::Refused(message).into()),
                Err(CallError::Transient { reason, retry_after }) => (reason, retry_after, false),
                Err(CallError::Offline { url, reason }) => {
                    (format!("cannot reach {url}: {reason}"), None, true)
                }
            };
            attempt += 1;
            let retry_in = self.backoff.delay(attempt, retry_after);
            let event = if offline {
                UploadEvent::WaitingForNetwork { reason, retry_in }
            } else {
                UploadEvent::Retrying { reason, retry_in }
            };
            let _ = self.events.send(event);
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Presigns part `number` alone (a retry) and PUTs it.
    async fn put(
        &self,
        number: u32,
        bytes: bytes::Bytes,
        digest: [u8; 16],
    ) -> std::result::Result<String, CallError> {
        let request = PartsRequest {
            recording_id: self.session.server_recording_id.clone(),
            upload_id: self.session.upload_id.clone(),
            part_numbers: vec![number],
            content_md5: Some(vec![ContentMd5::from_digest(digest)]),
        };
        let presigned = self.client.parts(&request).await?;
        let part = presigned.parts.into_iter().next().ok_or_else(|| CallError::Transient {
            reason: "the server presigned no URL".into(),
            retry_after: None,
        })?;
        self.put_to(&part, bytes, digest).await
    }

    /// PUTs `bytes` to a presigned part URL; returns storage's ETag.
    async fn put_to(
        &self,
        part: &PresignedPart,
        bytes: bytes::Bytes,
        digest: [u8; 16],
    ) -> std::result::Result<String, CallError> {
        let number = part.part_number;
        let mut put = self.client.http().put(&part.url).body(bytes);
        for (name, value) in &part.headers {
            put = put.header(name, value);
        }
        if !part.headers.keys().any(|name| name.eq_ignore_ascii_case("content-md5")) {
            put = put.header("Content-MD5", base64::engine::general_purpose::STANDARD.encode(digest));
        }
        let response = put.send().await.map_err(|err| self.client.network_error(&err))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
            return Ok(etag.trim().trim_matches('"').to_owned());
        }
        let retry_after = crate::client::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        Err(match status {
            // Storage errors are S3 XML, not the API's JSON: keep them whole.
            403 => CallError::Refused { status, message: String::from_utf8_lossy(&body).into_owned() },
            408 | 429 | 500..=599 => {
                CallError::Transient { reason: format!("storage answered {status}"), retry_after }
            }
            // A 404 from storage means the multipart upload is gone.
            404 => CallError::Refused { status, message: "storage no longer has this upload".into() },
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

fn refused(err: CallError) -> Error {
    match err {
        CallError::Refused { status: 401, message } => Error::Unauthorized(message),
        other => Error::Refused(other.to_string()),
    }
}

/// The parts' reads, and their MD5s, some computed ahead of their part's
/// turn.
///
/// A part is hashed when it is read to be sent, and [`lanes::LANES`] − 1
/// parts that wait behind it are hashed in the same pass, side by side,
/// read from the file a chunk at a time without being kept. Their turn
/// then costs only the read. The bytes they are sent with are read again
/// then, from the same durable range; storage checks them against the
/// Content-MD5 from this pass and answers with their ETag, which must equal
/// it, so bytes that changed in between are refused, and the retry reads
/// and hashes them again.
struct PartReads {
    path: std::path::PathBuf,
    /// Parts to read and send now: number, (offset, size).
    due: Vec<(u32, (u64, u64))>,
    /// Parts that wait behind them, to hash in the same pass.
    ahead: Vec<(u32, (u64, u64))>,
    /// MD5s of parts hashed ahead: number → (offset, size, digest).
    hashed_ahead: BTreeMap<u32, (u64, u64, [u8; 16])>,
}

/// A part read and hashed, ready to be presigned and sent.
type ReadPart = (PartRecord, bytes::Bytes, [u8; 16]);

impl PartReads {
    /// Reads and hashes on a blocking thread; gives back the parts and
    /// the hashing state to carry on with.
    async fn run(self) -> Result<(Vec<ReadPart>, Self)> {
        let path_text = self.path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut reads = self;
            let parts = reads.read()?;
            Ok::<_, std::io::Error>((parts, reads))
        })
        .await
        .map_err(|err| Error::Internal(err.to_string()))?
        .map_err(|source| Error::Read { path: path_text, source })
    }

    fn read(&mut self) -> std::io::Result<Vec<ReadPart>> {
        let file = std::fs::File::open(&self.path)?;
        let buffers = self
            .due
            .iter()
            .map(|&(_, (offset, size))| read_range(&file, offset, size))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut digests: Vec<Option<[u8; 16]>> = self
            .due
            .iter()
            .map(|(number, range)| {
                let hashed = self.hashed_ahead.remove(number);
                hashed.filter(|(offset, size, _)| (*offset, *size) == *range).map(|(_, _, digest)| digest)
            })
            .collect();
        let missing: Vec<usize> = (0..digests.len()).filter(|&index| digests[index].is_none()).collect();
        if !missing.is_empty() {
            // Fill the lanes of the last pass with parts that wait.
            let spare = (lanes::LANES - missing.len() % lanes::LANES) % lanes::LANES;
            let ahead = &self.ahead[..spare.min(self.ahead.len())];
            let inputs: Vec<lanes::Input<'_>> = missing
                .iter()
                .map(|&index| lanes::Input::Memory(&buffers[index]))
                .chain(ahead.iter().map(|&(_, (offset, len))| lanes::Input::File { offset, len }))
                .collect();
            let computed = lanes::md5_each(&file, &inputs)?;
            for (&index, digest) in missing.iter().zip(&computed) {
                digests[index] = Some(*digest);
            }
            for (&(number, (offset, size)), digest) in ahead.iter().zip(&computed[missing.len()..]) {
                self.hashed_ahead.insert(number, (offset, size, *digest));
            }
        }
        Ok(self
            .due
            .iter()
            .zip(buffers)
            .zip(digests)
            .map(|((&(number, (offset, size)), buffer), digest)| {
                let digest = digest.expect("every part due was hashed");
                let record =
                    PartRecord { number, offset, size, md5_hex: hex::encode(digest), etag: String::new() };
                (record, bytes::Bytes::from(buffer), digest)
            })
            .collect())
    }
}

/// The SHA-256 of the file's first bytes, fed by the parts in order as
/// they are read to be sent; a part out of order (part 1 held back, parts
/// sent before a restart) stops it, and the file is then read again.
#[derive(Default)]
struct RunningSha256 {
    hasher: sha2::Sha256,
    /// Bytes hashed so far, from the start of the file.
    end: u64,
}

impl RunningSha256 {
    fn update(&mut self, offset: u64, bytes: &[u8]) {
        if offset == self.end {
            self.hasher.update(bytes);
            self.end += bytes.len() as u64;
        }
    }

    /// The hex SHA-256 when every byte of a file of `len` bytes went in.
    fn of_whole(self, len: u64) -> Option<String> {
        (self.end == len).then(|| hex::encode(self.hasher.finalize()))
    }
}

/// A [`RunningSha256`] on a thread of its own, fed each part's bytes as
/// they are sent: hashing them then overlaps the parts in flight instead of
/// delaying the read of the next part.
struct ShaFeed {
    parts: std::sync::mpsc::Sender<(u64, bytes::Bytes)>,
    hashed: tokio::task::JoinHandle<RunningSha256>,
}

impl ShaFeed {
    fn start() -> Self {
        let (parts, queue) = std::sync::mpsc::channel::<(u64, bytes::Bytes)>();
        let hashed = tokio::task::spawn_blocking(move || {
            let mut running = RunningSha256::default();
            for (offset, bytes) in queue {
                running.update(offset, &bytes);
            }
            running
        });
        Self { parts, hashed }
    }

    fn feed(&self, offset: u64, bytes: bytes::Bytes) {
        let _ = self.parts.send((offset, bytes));
    }

    /// See [`RunningSha256::of_whole`].
    async fn of_whole(self, len: u64) -> Option<String> {
        drop(self.parts);
        self.hashed.await.ok()?.of_whole(len)
    }
}

/// `size` bytes of `file` from `offset`, into memory that is not zeroed
/// first.
fn read_range(file: &std::fs::File, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut buffer = Vec::with_capacity(size as usize);
    let mut reader = file;
    reader.seek(std::io::SeekFrom::Start(offset))?;
    reader.take(size).read_to_end(&mut buffer)?;
    if buffer.len() as u64 != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ends before byte {}", offset + size),
        ));
    }
    Ok(buffer)
}

async fn read_part(path: &Path, offset: u64, size: u64) -> Result<bytes::Bytes> {
    let path_text = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        read_range(&file, offset, size).map(bytes::Bytes::from)
    })
    .await
    .map_err(|err| Error::Internal(err.to_string()))?
    .map_err(|source| Error::Read { path: path_text.clone(), source })
}

/// The hex MD5 of each (offset, size) range of the file, side by side.
async fn md5_of_ranges(path: &Path, ranges: Vec<(u64, u64)>) -> Result<Vec<String>> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let path_text = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let inputs: Vec<lanes::Input<'_>> =
            ranges.iter().map(|&(offset, len)| lanes::Input::File { offset, len }).collect();
        Ok::<_, std::io::Error>(lanes::md5_each(&file, &inputs)?.into_iter().map(hex::encode).collect())
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

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        (file, data)
    }

    fn reads(path: &Path, due: &[u32], ahead: &[u32], len: u64) -> PartReads {
        let range = |n: u32| (n, part_range(n, PART, Some(len)));
        PartReads {
            path: path.to_path_buf(),
            due: due.iter().copied().map(range).collect(),
            ahead: ahead.iter().copied().map(range).collect(),
            hashed_ahead: BTreeMap::new(),
        }
    }

    fn md5_hex(bytes: &[u8]) -> String {
        hex::encode(md5::Md5::digest(bytes))
    }

    #[test]
    fn parts_waiting_are_hashed_ahead_and_their_turn_only_reads_them() {
        let len = 10 * PART as usize - 123;
        let (file, data) = file_of(len);
        let mut reads = reads(file.path(), &[1], &[2, 3, 4, 5, 6, 7, 8, 9, 10], len as u64);
        let parts = reads.read().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0.md5_hex, md5_hex(&data[..PART as usize]));
        // One pass fills the lanes: the part due and LANES - 1 behind it.
        assert_eq!(
            reads.hashed_ahead.keys().copied().collect::<Vec<_>>(),
            (2..=lanes::LANES as u32).collect::<Vec<_>>()
        );
        for (number, (offset, size, digest)) in &reads.hashed_ahead {
            let (expected_offset, expected_size) = part_range(*number, PART, Some(len as u64));
            assert_eq!((*offset, *size), (expected_offset, expected_size));
            assert_eq!(hex::encode(digest), md5_hex(&data[*offset as usize..(*offset + *size) as usize]));
        }
        // Their turn uses the digest; the bytes are read afresh.
        reads.due = vec![(2, part_range(2, PART, Some(len as u64)))];
        reads.ahead.clear();
        let parts = reads.read().unwrap();
        assert_eq!(&parts[0].1[..], &data[PART as usize..2 * PART as usize]);
        assert_eq!(parts[0].0.md5_hex, md5_hex(&parts[0].1));
        assert!(!reads.hashed_ahead.contains_key(&2), "a digest is used once, for the first attempt");
    }

    #[test]
    fn a_digest_hashed_for_another_range_is_not_used() {
        let len = 3 * PART as usize;
        let (file, data) = file_of(len);
        let mut reads = reads(file.path(), &[2], &[], len as u64);
        // As if part 2 had been hashed while the file was shorter.
        reads.hashed_ahead.insert(2, (PART, PART / 2, [0; 16]));
        let parts = reads.read().unwrap();
        assert_eq!(parts[0].0.md5_hex, md5_hex(&data[PART as usize..2 * PART as usize]));
    }

    /// Reads the parts in `groups`, in order, feeding them to a [`ShaFeed`].
    async fn sha256_of_parts_read(path: &Path, groups: &[&[u32]], len: u64) -> Option<String> {
        let feed = ShaFeed::start();
        for group in groups {
            for (record, bytes, _) in reads(path, group, &[], len).read().unwrap() {
                feed.feed(record.offset, bytes);
            }
        }
        feed.of_whole(len).await
    }

    #[tokio::test]
    async fn the_sha256_of_parts_read_in_order_is_the_files() {
        let len = 4 * PART as usize + 17;
        let (file, data) = file_of(len);
        let sha256 = sha256_of_parts_read(file.path(), &[&[1, 2], &[3, 4], &[5]], len as u64).await;
        assert_eq!(sha256.unwrap(), hex::encode(sha2::Sha256::digest(&data)));
    }

    #[tokio::test]
    async fn the_sha256_stops_at_a_part_out_of_order() {
        let len = 3 * PART as usize;
        let (file, _) = file_of(len);
        let sha256 = sha256_of_parts_read(file.path(), &[&[2, 3], &[1]], len as u64).await;
        assert_eq!(sha256, None, "part 1 came last");
    }

    #[test]
    fn a_part_past_the_end_of_the_file_is_a_read_error() {
        let (file, _) = file_of(PART as usize);
        let mut reads = reads(file.path(), &[1], &[], 2 * PART);
        reads.due = vec![(1, (0, 2 * PART))];
        assert_eq!(reads.read().unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
