//! The metadata conformance suite (`opptak_server::meta::conformance`, which
//! the SQLite store runs in its unit tests) against the PostgreSQL store, on
//! a real PostgreSQL started for each test in a temp folder.

use std::future::Future;
use std::sync::Arc;

use opptak_server::meta::{MetaStore, PostgresMeta, conformance};
use opptak_tests::Postgres;

/// Runs `check` on a fresh database of a private PostgreSQL (skips when
/// PostgreSQL is not installed outside CI).
async fn on_postgres<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn MetaStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let meta = PostgresMeta::connect(&url).await.unwrap();
    check(Arc::new(meta.clone())).await;
    meta.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sessions_finish_once() {
    on_postgres(conformance::sessions_finish_once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claimers_never_share_a_job() {
    on_postgres(conformance::concurrent_claimers_never_share_a_job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced() {
    on_postgres(conformance::a_lapsed_lease_is_reclaimed_and_the_stale_holder_is_fenced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_retried_job_comes_back_after_its_delay() {
    on_postgres(conformance::a_retried_job_comes_back_after_its_delay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_session_locks_exclude() {
    on_postgres(conformance::session_locks_exclude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_session_held_too_long_is_busy() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let meta =
        PostgresMeta::connect(&url).await.unwrap().with_lock_timeout(std::time::Duration::from_millis(500));
    conformance::a_session_held_too_long_is_busy(Arc::new(meta.clone())).await;
    meta.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_sweep_skips_held_sessions() {
    on_postgres(conformance::the_sweep_skips_held_sessions).await;
}

/// Instances starting together migrate under sqlx's advisory lock: all
/// connect, none fails, and the schema is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let mut starting = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        starting.spawn(async move { PostgresMeta::connect(&url).await });
    }
    while let Some(started) = starting.join_next().await {
        started.unwrap().unwrap().pool().close().await;
    }
    let applied = postgres.psql(&url, "SELECT count(*) FROM _sqlx_migrations WHERE success").unwrap();
    assert_eq!(applied.trim(), "2");
}

/// A request that waits longer than the lock timeout for a session another
/// request (here: another instance) holds answers 503 with Retry-After,
/// and the same request succeeds once the session is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_held_too_long_answers_503_with_retry_after() {
    use opptak_server::meta::SessionAccess;
    use opptak_tests::{ApiClient, TEST_TOKEN};
    use sha2::Digest;

    let Some(postgres) = Postgres::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let server = opptak_server::Server::builder()
        .data_dir(temp.path())
        .database_url(&url)
        .user(format!("teacher:{TEST_TOKEN}").parse().unwrap())
        .start()
        .await
        .unwrap();
    let client = ApiClient::new(server.url(), TEST_TOKEN);
    let started = client.start("held").await.unwrap();

    let other = PostgresMeta::connect(&url).await.unwrap();
    let (user_id, _, _) =
        other.user_by_token_digest(sha2::Sha256::digest(TEST_TOKEN).to_vec()).await.unwrap().unwrap();
    let held =
        other.lock_session(user_id, &started.recording_id, SessionAccess::Exclusive).await.unwrap().unwrap();

    let asked = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/restapi/personal/mediarecorder/native/upload/listparts/v1", server.url()))
        .bearer_auth(TEST_TOKEN)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"recordingId": started.recording_id, "uploadId": started.upload_id})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"), "{:?}", response.headers());
    assert!(
        asked.elapsed() >= opptak_server::meta::postgres::SESSION_LOCK_TIMEOUT,
        "answered before the lock timeout: {:?}",
        asked.elapsed()
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("still working on an earlier request for this upload"), "{body}");
    assert!(body.contains("\"code\":\"unavailable\""), "{body}");

    drop(held);
    assert!(client.list_parts(&started).await.unwrap().parts.is_empty(), "free again");
    other.pool().close().await;
    server.shutdown().await;
}
