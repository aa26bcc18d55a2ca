//! One conformance suite for every [`MetaStore`]: each check takes a fresh,
//! empty store and panics when the store breaks a promise of the module's
//! invariants. The SQLite store runs it in this module's tests; the
//! PostgreSQL store runs the same functions against a real server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Completion, JobResult, MetaStore, NewUpload, SessionAccess};

/// Bounds every wait in the suite.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a blocked locker is given to (wrongly) get through.
const MUST_STILL_WAIT: Duration = Duration::from_millis(300);

/// Adds the user `ada` and returns her id.
async fn ada(meta: &dyn MetaStore) -> i64 {
    let digest = vec![7u8; 32];
    meta.sync_users(vec![("ada".into(), digest.clone())]).await.unwrap();
    meta.user_by_token_digest(digest).await.unwrap().expect("a synced user is found by her token").0
}

/// Starts an upload `id` for `user_id` that stays open for `ttl`.
async fn start(meta: &dyn MetaStore, user_id: i64, id: &str, ttl: Duration) {
    meta.create_upload(NewUpload {
        recording_id: id.into(),
        user_id,
        name: format!("recording {id}"),
        recorder_type: "desktop-audio".into(),
        content_type: "audio/wav".into(),
        is_video: false,
        used_in_file_uploader: false,
        expected_size: None,
        upload_id: format!("u-{id}"),
        object_key: format!("recordings/{user_id}/{id}.wav"),
        store_upload_id: format!("s-{id}"),
        part_size: 5 << 20,
        ttl,
    })
    .await
    .unwrap();
}

fn completion() -> Completion {
    Completion {
        finished_parts: r#"[[1,"abc"]]"#.into(),
        object_size: 10,
        object_etag: Some("abc-1".into()),
        name: "finished".into(),
        recorder_type: "desktop-audio".into(),
        used_in_file_uploader: false,
    }
}

/// Starts and finishes upload `id`, which queues its verification job.
async fn finished(meta: &dyn MetaStore, user_id: i64, id: &str) {
    start(meta, user_id, id, Duration::from_secs(3600)).await;
    let guard = meta.lock_session(user_id, id, SessionAccess::Exclusive).await.unwrap().unwrap();
    assert!(guard.complete(completion()).await.unwrap(), "finishing an open session commits");
}

/// Sessions: created open, found only by their owner, finished once.
pub async fn sessions_finish_once(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    start(meta.as_ref(), user, "r1", Duration::from_secs(3600)).await;
    assert!(
        meta.lock_session(user + 1, "r1", SessionAccess::Shared).await.unwrap().is_none(),
        "another user's"
    );
    assert!(meta.lock_session(user, "nope", SessionAccess::Shared).await.unwrap().is_none());
    let guard = meta.lock_session(user, "r1", SessionAccess::Exclusive).await.unwrap().unwrap();
    let session = guard.session().clone();
    assert_eq!((session.state.as_str(), session.recording_status.as_str()), ("open", "uploading"));
    assert!(!session.past_expiry);
    assert!(guard.complete(completion()).await.unwrap());
    let guard = meta.lock_session(user, "r1", SessionAccess::Exclusive).await.unwrap().unwrap();
    assert_eq!(guard.session().state, "completed");
    assert_eq!(guard.session().finished_parts.as_deref(), Some(r#"[[1,"abc"]]"#));
    assert!(!guard.complete(completion()).await.unwrap(), "a second finish changes nothing");
    let (recording, key) = meta.recording(user, "r1").await.unwrap().unwrap();
    assert_eq!((recording.recording_name.as_str(), key), ("finished", format!("recordings/{user}/r1.wav")));
    assert_eq!(meta.list_recordings(user).await.unwrap().len(), 1);
    let claim =
        meta.claim_job(Duration::from_secs(60), "instance-a").await.unwrap().expect("finish queued one job");
    assert_eq!((claim.recording_id.as_str(), claim.attempts, claim.owner.as_str()), ("r1", 1, "instance-a"));
    assert!(meta.claim_job(Duration::from_secs(60), "instance-a").await.unwrap().is_none(), "and only one");
}

/// Eight workers claiming at once never get the same job.
pub async fn concurrent_claimers_never_share_a_job(meta: Arc<dyn MetaStore>) {
    const JOBS: usize = 24;
    let user = ada(meta.as_ref()).await;
    for index in 0..JOBS {
        finished(meta.as_ref(), user, &format!("r{index:02}")).await;
    }
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let meta = meta.clone();
        workers.spawn(async move {
            let mut claimed = Vec::new();
            // Bounded: each claim takes a job, and there are JOBS of them.
            for _ in 0..=JOBS {
                match meta.claim_job(Duration::from_secs(600), "instance-a").await.unwrap() {
                    Some(claim) => claimed.push(claim.recording_id),
                    None => break,
                }
            }
            claimed
        });
    }
    let mut times_claimed: HashMap<String, usize> = HashMap::new();
    while let Some(claimed) = workers.join_next().await {
        for id in claimed.unwrap() {
            *times_claimed.entry(id).or_default() += 1;
        }
    }
    assert_eq!(times_claimed.len(), JOBS, "every job was claimed");
    assert!(times_claimed.values().all(|&count| count == 1), "a job was claimed twice: {times_claimed:?}");
}

/// A lapsed lease is claimed again; the first holder can neither renew nor
/// settle after that, and the second holder's result stands.
pub async fn a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    finished(meta.as_ref(), user, "r1").await;
    let lease = Duration::from_secs(1);
    let stale = meta.claim_job(lease, "instance-a").await.unwrap().unwrap();
    assert!(
        meta.claim_job(lease, "instance-a").await.unwrap().is_none(),
        "a leased job is not claimed twice"
    );
    let until = tokio::time::Instant::now() + DEADLINE;
    let current = loop {
        if let Some(claim) = meta.claim_job(Duration::from_secs(600), "instance-b").await.unwrap() {
            break claim;
        }
        assert!(tokio::time::Instant::now() < until, "a lapsed lease was never reclaimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((current.recording_id.as_str(), current.attempts), ("r1", 2));
    assert_eq!(
        (stale.owner.as_str(), current.owner.as_str()),
        ("instance-a", "instance-b"),
        "each claim names its owner"
    );
    assert!(!meta.renew_job(&stale, lease).await.unwrap(), "a stale holder cannot renew");
    assert!(!meta.settle_job(&stale, JobResult::Failed("stale".into())).await.unwrap(), "nor settle");
    assert!(meta.renew_job(&current, lease).await.unwrap());
    let ready = JobResult::Ready { size: 10, duration: 1.5, sha256: "ab".repeat(32) };
    assert!(meta.settle_job(&current, ready).await.unwrap());
    let retry = JobResult::Retry { reason: "stale".into(), delay: Duration::ZERO };
    assert!(!meta.settle_job(&stale, retry).await.unwrap(), "nor after the job is done");
    let (recording, _) = meta.recording(user, "r1").await.unwrap().unwrap();
    assert_eq!(recording.status, opptak_api::RecordingStatus::Ready);
    assert_eq!(recording.duration_seconds, Some(1.5));
    assert!(meta.claim_job(lease, "instance-a").await.unwrap().is_none(), "a done job is not claimed");
}

/// A retried job waits for its delay; the next claim's fence is one higher.
pub async fn a_retried_job_comes_back_after_its_delay(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    finished(meta.as_ref(), user, "r1").await;
    let first = meta.claim_job(Duration::from_secs(60), "instance-a").await.unwrap().unwrap();
    let retry = JobResult::Retry { reason: "storage is away".into(), delay: Duration::from_secs(3600) };
    assert!(meta.settle_job(&first, retry).await.unwrap());
    assert!(
        meta.claim_job(Duration::from_secs(60), "instance-a").await.unwrap().is_none(),
        "not before its delay"
    );
    let retry = JobResult::Retry { reason: "storage is away".into(), delay: Duration::ZERO };
    // The fence of a queued job no longer holds.
    assert!(!meta.settle_job(&first, retry).await.unwrap());
}

/// Waits until `task` is done, within the deadline.
async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(DEADLINE, task).await.expect("a waiter never got through").unwrap()
}

/// An exclusive holder keeps every other locker of the session waiting;
/// another session is not held up.
pub async fn session_locks_exclude(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    start(meta.as_ref(), user, "r1", Duration::from_secs(3600)).await;
    start(meta.as_ref(), user, "r2", Duration::from_secs(3600)).await;
    for (held, waiting) in [
        (SessionAccess::Exclusive, SessionAccess::Exclusive),
        (SessionAccess::Exclusive, SessionAccess::Shared),
        (SessionAccess::Shared, SessionAccess::Exclusive),
    ] {
        let guard = meta.lock_session(user, "r1", held).await.unwrap().unwrap();
        let mut waiter = tokio::spawn({
            let meta = meta.clone();
            async move {
                meta.lock_session(user, "r1", waiting).await.unwrap().map(|guard| guard.session().clone())
            }
        });
        let early = tokio::time::timeout(MUST_STILL_WAIT, &mut waiter).await;
        assert!(early.is_err(), "{waiting:?} got through while {held:?} was held");
        let other = tokio::time::timeout(DEADLINE, meta.lock_session(user, "r2", SessionAccess::Exclusive))
            .await
            .expect("another session was held up");
        drop(other);
        if held == SessionAccess::Exclusive && waiting == SessionAccess::Exclusive {
            // What the holder wrote is what the waiter then reads.
            guard.abort().await.unwrap();
            assert_eq!(joined(waiter).await.unwrap().state, "aborted");
        } else {
            drop(guard);
            assert!(joined(waiter).await.is_some());
        }
    }
}

/// A request that cannot get a held session within the store's lock timeout
/// fails with [`Error::SessionBusy`](crate::Error::SessionBusy) instead of
/// waiting for ever; the session is free again once the holder lets go.
/// `meta` must have been made with a lock timeout under [`BUSY_TIMEOUT_AT_MOST`].
pub async fn a_session_held_too_long_is_busy(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    start(meta.as_ref(), user, "r1", Duration::from_secs(3600)).await;
    for waiting in [SessionAccess::Exclusive, SessionAccess::Shared] {
        let held = meta.lock_session(user, "r1", SessionAccess::Exclusive).await.unwrap().unwrap();
        let asked = tokio::time::Instant::now();
        let busy = tokio::time::timeout(DEADLINE, meta.lock_session(user, "r1", waiting))
            .await
            .expect("the lock timeout did not fire");
        assert!(matches!(busy, Err(crate::Error::SessionBusy)), "{waiting:?} on a held session: {busy:?}");
        assert!(asked.elapsed() < BUSY_TIMEOUT_AT_MOST + MUST_STILL_WAIT, "{:?}", asked.elapsed());
        drop(held);
        assert!(meta.lock_session(user, "r1", waiting).await.unwrap().is_some(), "free again");
    }
}

/// The longest lock timeout [`a_session_held_too_long_is_busy`] accepts.
pub const BUSY_TIMEOUT_AT_MOST: Duration = Duration::from_secs(2);

/// The sweep never waits for a held session and takes it once free.
pub async fn the_sweep_skips_held_sessions(meta: Arc<dyn MetaStore>) {
    let user = ada(meta.as_ref()).await;
    start(meta.as_ref(), user, "old", Duration::ZERO).await;
    start(meta.as_ref(), user, "new", Duration::from_secs(3600)).await;
    assert_eq!(meta.expired_sessions().await.unwrap(), ["old"]);
    let held = meta.lock_session(user, "old", SessionAccess::Exclusive).await.unwrap().unwrap();
    assert!(held.session().past_expiry);
    let skipped = tokio::time::timeout(DEADLINE, meta.lock_expired_session("old"))
        .await
        .expect("the sweep waited for a held session")
        .unwrap();
    assert!(skipped.is_none(), "a held session was handed to the sweep");
    assert!(meta.lock_expired_session("new").await.unwrap().is_none(), "an unexpired session is not swept");
    drop(held);
    // A dropped PostgreSQL transaction rolls back (and frees its row lock)
    // on its connection's next use, a moment after the drop.
    let swept = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(swept) = meta.lock_expired_session("old").await.unwrap() {
                return swept;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a free expired session is taken");
    swept.expire().await.unwrap();
    assert!(meta.lock_expired_session("old").await.unwrap().is_none(), "nor twice");
    let guard = meta.lock_session(user, "old", SessionAccess::Shared).await.unwrap().unwrap();
    assert_eq!(
        (guard.session().state.as_str(), guard.session().recording_status.as_str()),
        ("expired", "expired")
    );
    assert!(meta.expired_sessions().await.unwrap().is_empty());
}

/// Every check, in order, each on a fresh store from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn MetaStore>>,
{
    sessions_finish_once(fresh().await).await;
    concurrent_claimers_never_share_a_job(fresh().await).await;
    a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced(fresh().await).await;
    a_retried_job_comes_back_after_its_delay(fresh().await).await;
    session_locks_exclude(fresh().await).await;
    the_sweep_skips_held_sessions(fresh().await).await;
}

#[cfg(test)]
mod sqlite {
    use super::*;
    use crate::meta::SqliteMeta;

    /// A fresh SQLite store; the temp folder lives as long as the test.
    fn fresh(temp: &tempfile::TempDir, name: &str) -> Arc<dyn MetaStore> {
        Arc::new(SqliteMeta::open(&temp.path().join(format!("{name}.sqlite3"))).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_session_held_too_long_is_busy() {
        let temp = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&temp.path().join("a.sqlite3"))
            .unwrap()
            .with_lock_timeout(Duration::from_millis(500));
        a_session_held_too_long_is_busy(Arc::new(meta)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_sessions_finish_once() {
        let temp = tempfile::tempdir().unwrap();
        sessions_finish_once(fresh(&temp, "a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_concurrent_claimers_never_share_a_job() {
        let temp = tempfile::tempdir().unwrap();
        concurrent_claimers_never_share_a_job(fresh(&temp, "a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced() {
        let temp = tempfile::tempdir().unwrap();
        a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced(fresh(&temp, "a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_retried_job_comes_back_after_its_delay() {
        let temp = tempfile::tempdir().unwrap();
        a_retried_job_comes_back_after_its_delay(fresh(&temp, "a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_session_locks_exclude() {
        let temp = tempfile::tempdir().unwrap();
        session_locks_exclude(fresh(&temp, "a")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_the_sweep_skips_held_sessions() {
        let temp = tempfile::tempdir().unwrap();
        the_sweep_skips_held_sessions(fresh(&temp, "a")).await;
    }
}
