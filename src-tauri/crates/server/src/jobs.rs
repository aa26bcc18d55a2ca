//! The durable verification queue: after `finish`, a job checks the stored
//! object (size, composite ETag, media header and duration), computes its
//! SHA-256 and marks the recording `ready` or `failed`.
//!
//! A job is `queued` → `running` (with a lease) → `done`. Invariants:
//!
//! - Every claim adds one to `attempts`, and that number fences the claim:
//!   each result, retry or lease renewal is written `WHERE attempts = ?` of
//!   a `running` job. A holder whose lease lapsed and whose job another
//!   worker claimed again changes nothing, so one verification never
//!   overwrites another's result.
//! - While a job runs, a heartbeat renews its lease every
//!   [`JobPolicy::heartbeat`]; only a holder that stopped (its server died
//!   or hung) loses the job, and then only after [`JobPolicy::lease`].
//! - A job is claimed at most [`JobPolicy::max_attempts`] times. Claims that
//!   met a storage error, whose check panicked, or whose worker died count
//!   alike; after the last one the recording is `failed` with the last
//!   error as its reason, so a file that crashes the media reader cannot
//!   keep the queue busy for ever.
//!
//! Storage errors are retried with exponential backoff; a file that is not
//! the media it claims fails the recording at once with a reason.

use std::sync::Arc;
use std::time::Duration;

use opptak_api::ContentType;
use tokio::sync::Notify;

use crate::Result;
use crate::meta::{JobClaim as Claim, JobResult, MetaStore};
use crate::store::{MediaStore, StoreError, composite_etag, unquote_etag};

/// How verification jobs are leased, renewed and given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPolicy {
    /// How long a claimed job is reserved before another worker may take
    /// it, unless its holder renews the lease. Whole seconds (the database
    /// keeps Unix seconds); at least 1 s. Default 120 s.
    pub lease: Duration,
    /// How often a running job renews its lease; well under `lease`.
    /// Default 30 s.
    pub heartbeat: Duration,
    /// Claims of one job before its recording fails with the last error.
    /// Default 12: with the default backoff, about 25 minutes of storage
    /// trouble before a recording is given up on.
    pub max_attempts: u32,
    /// The wait before the first retry; each further retry waits twice as
    /// long. Default 1 s.
    pub first_retry_delay: Duration,
    /// The longest wait between retries. Default 5 minutes.
    pub max_retry_delay: Duration,
    /// How often idle workers look for jobs only the database knows of:
    /// queued by another instance, or left by one that died. This
    /// instance's own jobs wake its workers when queued and when their retry
    /// is due. Default 1 s; a server alone on its database (the one inside
    /// the app) can look far less often.
    pub idle_poll: Duration,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            heartbeat: Duration::from_secs(30),
            max_attempts: 12,
            first_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
        }
    }
}

impl JobPolicy {
    /// The wait before the retry that follows claim number `attempts`:
    /// `first_retry_delay` doubled per earlier claim, capped at `max_retry_delay`.
    fn retry_delay(&self, attempts: i64) -> Duration {
        let doublings = attempts.clamp(1, 31) as u32 - 1;
        self.first_retry_delay.saturating_mul(1u32 << doublings).min(self.max_retry_delay)
    }
}

#[derive(Debug)]
enum Outcome {
    Ready { size: u64, duration: f64, sha256: String },
    Failed(String),
    Retry(String),
}

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct Jobs {
    /// Where the queue is.
    pub meta: Arc<dyn MetaStore>,
    /// Where the media is.
    pub store: Arc<dyn MediaStore>,
    /// Wakes idle workers when a job is queued.
    pub wake: Arc<Notify>,
    /// Scratch folder for copies of remote objects.
    pub scratch: std::path::PathBuf,
    /// Lease, heartbeat, attempts and backoff.
    pub policy: JobPolicy,
    /// This server instance, recorded as the owner of the jobs it claims.
    pub owner: String,
    /// Where outcomes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Aborts the task when dropped, so a worker that is itself aborted (the
/// server handle was dropped) leaves no verification running behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Jobs {
    /// Runs jobs until `shutdown` resolves.
    pub async fn run_worker(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = %err, "job queue failed; retrying"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.policy.idle_poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims and runs one due job; false when none is due.
    pub async fn run_next(&self) -> Result<bool> {
        let Some(claim) = self.claim().await? else { return Ok(false) };
        crate::failpoint::pause_if_armed("verifying").await;
        let max_attempts = i64::from(self.policy.max_attempts.max(1));
        if claim.attempts > max_attempts {
            // Every earlier holder died or hung without a result.
            let last = claim.last_error.clone().unwrap_or_else(|| {
                "the check stopped before it finished (the server stopped or the check crashed)".into()
            });
            self.settle(&claim, Outcome::Failed(gave_up(claim.attempts - 1, &last))).await?;
            return Ok(true);
        }
        tracing::info!(recording_id = claim.recording_id, attempts = claim.attempts, "verifying recording");
        let Some(outcome) = self.verify_holding_lease(&claim).await? else {
            self.metrics.count_job("verify", "lease_lost");
            tracing::warn!(
                recording_id = claim.recording_id,
                attempts = claim.attempts,
                "lost the lease on a verification job; another worker has it"
            );
            return Ok(true);
        };
        let outcome = match outcome {
            Outcome::Retry(reason) if claim.attempts >= max_attempts => {
                Outcome::Failed(gave_up(claim.attempts, &reason))
            }
            other => other,
        };
        self.settle(&claim, outcome).await?;
        Ok(true)
    }

    /// Takes the most overdue job: a queued one whose time has come, or a
    /// running one whose lease lapsed.
    async fn claim(&self) -> Result<Option<Claim>> {
        self.meta.claim_job(self.policy.lease, &self.owner).await
    }

    /// Extends the lease of `claim`; false when the job is no longer this
    /// claim's (its lease lapsed and another worker took it, or it settled).
    async fn renew(&self, claim: &Claim) -> Result<bool> {
        self.meta.renew_job(claim, self.policy.lease).await
    }

    /// Runs the verification as its own task, renewing the lease while it
    /// runs. A panic anywhere in it is an outcome (retried, counted towards
    /// the cap), not a dead worker. `None` when the lease was lost.
    async fn verify_holding_lease(&self, claim: &Claim) -> Result<Option<Outcome>> {
        let this = self.clone();
        let id = claim.recording_id.clone();
        let mut task = AbortOnDrop(tokio::spawn(async move { this.verify(&id).await }));
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + self.policy.heartbeat,
            self.policy.heartbeat.max(Duration::from_millis(10)),
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                joined = &mut task.0 => {
                    return Ok(Some(match joined {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(err)) => Outcome::Retry(format!("the server could not read its records ({err})")),
                        Err(err) if err.is_panic() => Outcome::Retry(crashed(err.into_panic())),
                        Err(err) => Outcome::Retry(format!("the check was cancelled ({err})")),
                    }));
                }
                _ = heartbeat.tick() => match self.renew(claim).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(None),
                    // The fence still guards the result; try again next beat.
                    Err(err) => tracing::warn!(error = %err, "could not renew a verification lease"),
                },
            }
        }
    }

    async fn verify(&self, recording_id: &str) -> Result<Outcome> {
        let input = self.meta.verification_input(recording_id).await?;
        let (key, content_type, object_size) = (input.object_key, input.content_type, input.object_size);
        let Ok(content_type) = content_type.parse::<ContentType>() else {
            return Ok(Outcome::Failed(format!("Unknown content type {content_type}.")));
        };
        let head = match self.store.head_object(&key).await {
            Ok(head) => head,
            Err(StoreError::NoSuchObject) => {
                return Ok(Outcome::Failed("The uploaded media is missing from storage.".into()));
            }
            Err(err) => return Ok(Outcome::Retry(err.to_string())),
        };
        if let Some(expected) = object_size
            && head.size != expected
        {
            return Ok(Outcome::Failed(format!(
                "Storage holds {} bytes but the parts add up to {expected}.",
                head.size
            )));
        }
        let part_etags = crate::meta::parse_finished_parts(input.finished_parts.as_deref());
        if let (Some(stored), Some(expected)) = (
            head.etag.as_deref().map(unquote_etag).filter(|etag| etag.contains('-')),
            composite_etag(part_etags.iter().map(|(_, etag)| etag.as_str())),
        ) && stored != expected
        {
            return Ok(Outcome::Failed(format!(
                "The stored object's ETag {stored} is not the one its parts give ({expected})."
            )));
        }
        let copy = match self.store.fetch_to_file(&key, &self.scratch).await {
            Ok(copy) => copy,
            Err(err) => return Ok(Outcome::Retry(err.to_string())),
        };
        let checked = tokio::task::spawn_blocking(move || {
            let sha256 = crate::media::sha256_file(&copy.path);
            let duration = crate::media::probe_duration(&copy.path, content_type);
            (sha256, duration)
        })
        .await;
        Ok(match checked {
            Err(err) if err.is_panic() => Outcome::Retry(crashed(err.into_panic())),
            Err(err) => Outcome::Retry(format!("the check was cancelled ({err})")),
            Ok((Err(err), _)) => Outcome::Retry(format!("could not read the stored media: {err}")),
            Ok((Ok(_), Err(problem))) => Outcome::Failed(problem),
            Ok((Ok(sha256), Ok(duration))) => Outcome::Ready { size: head.size, duration, sha256 },
        })
    }

    /// Writes `outcome` if `claim` still holds the job; a stale holder's
    /// result changes nothing.
    async fn settle(&self, claim: &Claim, outcome: Outcome) -> Result<()> {
        let recording_id = claim.recording_id.as_str();
        let outcome_name = match &outcome {
            Outcome::Ready { .. } => "ready",
            Outcome::Failed(_) => "failed",
            Outcome::Retry(_) => "retry",
        };
        let mut retry_after = None;
        let result = match outcome {
            Outcome::Ready { size, duration, sha256 } => {
                tracing::info!(recording_id, size, duration, sha256, "recording ready");
                JobResult::Ready { size, duration, sha256 }
            }
            Outcome::Failed(reason) => {
                tracing::warn!(recording_id, reason, "recording failed verification");
                JobResult::Failed(reason)
            }
            Outcome::Retry(reason) => {
                let delay = self.policy.retry_delay(claim.attempts);
                tracing::warn!(
                    recording_id,
                    reason,
                    attempts = claim.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    "verification will be retried"
                );
                retry_after = Some(delay);
                JobResult::Retry { reason, delay }
            }
        };
        if self.meta.settle_job(claim, result).await? {
            self.metrics.count_job("verify", outcome_name);
            if let Some(delay) = retry_after {
                // The database keeps whole seconds: one more makes it due.
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay + Duration::from_secs(1)).await;
                    wake.notify_one();
                });
            }
        } else {
            self.metrics.count_job("verify", "lease_lost");
            tracing::warn!(
                recording_id,
                attempts = claim.attempts,
                "a stale verification result was discarded"
            );
        }
        Ok(())
    }
}

/// The reason a recording fails with once its checks ran out.
fn gave_up(attempts: i64, last_error: &str) -> String {
    format!(
        "The server tried {attempts} times to check this recording and gave up; the last problem was: {last_error}. \
         Upload the recording again; if this keeps happening, ask whoever runs the server to check its storage."
    )
}

/// A panic of the check, as a reason.
fn crashed(payload: Box<dyn std::any::Any + Send>) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no details".into());
    format!("the check of the file crashed ({detail})")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::db::Db;
    use crate::store::interfering::{Fault, Interfering};
    use crate::store::{CompletedPart, LocalStore};

    #[test]
    fn retry_delay_doubles_and_caps() {
        let policy = JobPolicy::default();
        assert_eq!(policy.retry_delay(1), Duration::from_secs(1));
        assert_eq!(policy.retry_delay(4), Duration::from_secs(8));
        assert_eq!(policy.retry_delay(30), policy.max_retry_delay);
        assert_eq!(policy.retry_delay(i64::MAX), policy.max_retry_delay);
    }

    struct Setup {
        _temp: tempfile::TempDir,
        db: Db,
        store: Arc<Interfering>,
    }

    impl Setup {
        /// A finished one-part WAV upload with its verification job queued.
        async fn new(fault: Fault) -> Self {
            let temp = tempfile::tempdir().unwrap();
            let db = Db::open(&temp.path().join("server.sqlite3")).unwrap();
            let local = LocalStore::open(&temp.path().join("media")).unwrap();
            let key = "recordings/1/r1.wav".to_owned();
            let upload = local.create_upload(&key, "audio/wav", 5 << 20).await.unwrap();
            put_part(&local, &key, &upload, wav_bytes(8000)).await;
            let etag = local.list_parts(&key, &upload).await.unwrap()[0].etag.clone();
            let object = local
                .complete_upload(&key, &upload, &[CompletedPart { part_number: 1, etag: etag.clone() }])
                .await
                .unwrap();
            let finished = serde_json::to_string(&[(1, etag)]).unwrap();
            db.write_durably(move |tx| {
                tx.execute("INSERT INTO users (id, name, token_sha256) VALUES (1, 'ada', x'00')", [])?;
                tx.execute(
                    "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
                     used_in_file_uploader, status, created_at)
                     VALUES ('r1', 1, 'r1', 'desktop-audio', 'audio/wav', 0, 0, 'processing', 0)",
                    [],
                )?;
                tx.execute(
                    "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size,
                     state, expires_at, finished_parts, object_size, object_etag)
                     VALUES ('u1', 'r1', ?1, ?2, 5242880, 'completed', 0, ?3, ?4, ?5)",
                    rusqlite::params![key, upload, finished, object.size as i64, object.etag],
                )?;
                tx.execute("INSERT INTO jobs (recording_id, state, run_after) VALUES ('r1', 'queued', 0)", [])
            })
            .await
            .unwrap();
            let store = Arc::new(Interfering::new(local));
            store.on_fetch(fault);
            Self { _temp: temp, db, store }
        }

        fn jobs(&self, policy: JobPolicy) -> Jobs {
            Jobs {
                meta: Arc::new(crate::meta::SqliteMeta::new(self.db.clone())),
                store: self.store.clone(),
                wake: Arc::default(),
                scratch: self._temp.path().join("scratch"),
                policy,
                owner: "test".into(),
                metrics: Arc::default(),
            }
        }

        fn set_fault(&self, fault: Fault) {
            self.store.on_fetch(fault);
        }

        /// (recording status, error, job state, attempts)
        async fn state(&self) -> (String, Option<String>, String, i64) {
            self.db
                .call(|conn| {
                    conn.query_row(
                        "SELECT r.status, r.error, j.state, j.attempts FROM recordings r JOIN jobs j ON j.recording_id = r.id",
                        [],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                })
                .await
                .unwrap()
        }

        /// Makes the running job's lease lapse, as time passing would.
        async fn expire_lease(&self) {
            self.db
                .call(|conn| conn.execute("UPDATE jobs SET lease_until = 0 WHERE state = 'running'", []))
                .await
                .unwrap();
        }
    }

    /// PUTs part 1 through the store's own presigned URL and route.
    async fn put_part(local: &LocalStore, key: &str, upload: &str, data: Vec<u8>) {
        use tower::ServiceExt;
        local.set_base_url("http://127.0.0.1:9");
        let signed = local.presign_part(key, upload, 1, None, Duration::from_secs(60)).await.unwrap();
        let mut request = axum::http::Request::builder()
            .method("PUT")
            .uri(signed.url.strip_prefix("http://127.0.0.1:9").unwrap());
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let response =
            local.router().oneshot(request.body(axum::body::Body::from(data)).unwrap()).await.unwrap();
        assert!(response.status().is_success(), "PUT part: {}", response.status());
    }

    fn wav_bytes(frames: u32) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames {
            writer.write_sample((i % 200) as i16).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn fast_retries() -> JobPolicy {
        JobPolicy {
            max_attempts: 3,
            first_retry_delay: Duration::ZERO,
            max_retry_delay: Duration::ZERO,
            ..JobPolicy::default()
        }
    }

    #[tokio::test]
    async fn a_stale_holder_cannot_settle_and_an_expired_lease_is_reclaimed() {
        let setup = Setup::new(Fault::None).await;
        let jobs = setup.jobs(JobPolicy::default());
        let stale = jobs.claim().await.unwrap().expect("a queued job is claimed");
        assert_eq!(stale.attempts, 1);
        assert!(jobs.claim().await.unwrap().is_none(), "a leased job is not claimed twice");

        setup.expire_lease().await;
        let current = jobs.claim().await.unwrap().expect("a job whose lease lapsed is claimed again");
        assert_eq!(current.attempts, 2);

        // The first holder wakes up with a verdict: it must change nothing.
        jobs.settle(&stale, Outcome::Failed("stale verdict".into())).await.unwrap();
        assert!(!jobs.renew(&stale).await.unwrap(), "a stale holder cannot renew either");
        assert_eq!(setup.state().await, ("processing".into(), None, "running".into(), 2));

        let outcome = jobs.verify_holding_lease(&current).await.unwrap().unwrap();
        jobs.settle(&current, outcome).await.unwrap();
        assert_eq!(setup.state().await, ("ready".into(), None, "done".into(), 2));
        jobs.settle(&stale, Outcome::Failed("stale verdict".into())).await.unwrap();
        assert_eq!(setup.state().await.0, "ready", "nor after the job is done");
    }

    #[tokio::test]
    async fn the_heartbeat_keeps_a_long_verification_from_being_claimed_twice() {
        let setup = Setup::new(Fault::Hold).await;
        let policy = JobPolicy {
            lease: Duration::from_secs(1),
            heartbeat: Duration::from_millis(100),
            ..fast_retries()
        };
        let (first, second) = (setup.jobs(policy.clone()), setup.jobs(policy));
        let fetching = setup.store.reached.notified();
        let running = tokio::spawn(async move { first.run_next().await });
        fetching.await;
        // Three lease lengths: without renewal the job would be claimable
        // after at most two (the lease is kept in whole seconds).
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < until {
            // Only claim: running a stolen job would wait on the slow store too.
            assert!(second.claim().await.unwrap().is_none(), "a job whose holder is alive was claimed again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        setup.store.release.notify_one();
        assert!(running.await.unwrap().unwrap());
        assert_eq!(setup.state().await, ("ready".into(), None, "done".into(), 1));
        assert_eq!(setup.store.fetches.load(Ordering::SeqCst), 1, "verified once");
    }

    /// A worker that looks for jobs only once an hour still retries its own
    /// job when the retry is due.
    #[tokio::test]
    async fn a_retry_wakes_its_worker_without_waiting_for_the_idle_poll() {
        let setup = Setup::new(Fault::Unavailable).await;
        let policy = JobPolicy {
            first_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(1),
            idle_poll: Duration::from_secs(3600),
            ..JobPolicy::default()
        };
        let jobs = setup.jobs(policy);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(jobs.clone().run_worker(stopped));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !matches!(setup.state().await, (_, _, job, 1) if job == "queued") {
            assert!(tokio::time::Instant::now() < deadline, "the first attempt never failed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        setup.set_fault(Fault::None);
        let retried = std::time::Instant::now();
        while setup.state().await.0 != "ready" {
            assert!(tokio::time::Instant::now() < deadline, "not retried: {:?}", setup.state().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(retried.elapsed() < Duration::from_secs(5), "retried after {:?}", retried.elapsed());
        assert_eq!(setup.state().await, ("ready".into(), None, "done".into(), 2));
        stop.send(true).unwrap();
        jobs.wake.notify_one();
        worker.await.unwrap();
    }

    #[tokio::test]
    async fn a_job_that_keeps_meeting_storage_errors_fails_after_the_cap_with_the_reason() {
        let setup = Setup::new(Fault::Unavailable).await;
        let jobs = setup.jobs(fast_retries());
        for attempt in 1..=2 {
            assert!(jobs.run_next().await.unwrap());
            assert_eq!(setup.state().await, ("processing".into(), None, "queued".into(), attempt));
        }
        assert!(jobs.run_next().await.unwrap());
        let (status, error, job, attempts) = setup.state().await;
        assert_eq!((status.as_str(), job.as_str(), attempts), ("failed", "done", 3));
        let error = error.unwrap();
        assert!(error.contains("3 times") && error.contains("the disk is offline"), "{error}");
        assert!(error.contains("Upload the recording again"), "{error}");
        assert!(!jobs.run_next().await.unwrap(), "a failed job is not claimed again");
        assert_eq!(setup.store.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_panicking_check_is_an_attempt_and_ends_failed_at_the_cap() {
        let setup = Setup::new(Fault::Panic).await;
        let jobs = setup.jobs(fast_retries());
        for _ in 0..3 {
            assert!(jobs.run_next().await.unwrap(), "a panic does not take the worker down");
        }
        let (status, error, job, attempts) = setup.state().await;
        assert_eq!((status.as_str(), job.as_str(), attempts), ("failed", "done", 3));
        assert!(error.as_deref().unwrap().contains("cannot read"), "{error:?}");
        assert!(!jobs.run_next().await.unwrap());
    }

    #[tokio::test]
    async fn claims_whose_worker_died_count_towards_the_cap() {
        let setup = Setup::new(Fault::None).await;
        let jobs = setup.jobs(fast_retries());
        // Three workers claim the job and die without a word.
        for _ in 0..3 {
            jobs.claim().await.unwrap().unwrap();
            setup.expire_lease().await;
        }
        assert!(jobs.run_next().await.unwrap());
        let (status, error, job, attempts) = setup.state().await;
        assert_eq!((status.as_str(), job.as_str(), attempts), ("failed", "done", 4));
        assert!(error.unwrap().contains("stopped before it finished"));
        assert_eq!(setup.store.fetches.load(Ordering::SeqCst), 0, "no fourth check was started");
    }

    #[tokio::test]
    async fn a_storage_error_then_recovery_reaches_ready() {
        let setup = Setup::new(Fault::Unavailable).await;
        let jobs = setup.jobs(fast_retries());
        assert!(jobs.run_next().await.unwrap());
        setup.set_fault(Fault::None);
        assert!(jobs.run_next().await.unwrap());
        assert_eq!(setup.state().await, ("ready".into(), None, "done".into(), 2));
    }
}
