//! SIGKILL of a real `opptak serve` instance at the worst moments, with a
//! second instance on the same PostgreSQL and S3 store (SeaweedFS) taking
//! over. A test-only failpoint (`OPPTAK_TEST_FAILPOINT=<point>:<marker>`)
//! makes the first instance stop at the exact point and say so by writing
//! the marker file; the test then kills it.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_api::RecordingStatus;
use opptak_tests::{OpptakServe, Postgres, SeaweedFs, wav_of_len};

/// Bounds every wait.
const DEADLINE: Duration = Duration::from_secs(60);

fn instance(
    temp: &Path,
    seaweed: &SeaweedFs,
    bucket: &str,
    database: &str,
    name: &str,
    failpoint: Option<String>,
) -> OpptakServe {
    let args = ["--database-url", database, "--instance-id", name, "--job-lease-seconds", "2"];
    let env: Vec<_> = failpoint.map(|failpoint| ("OPPTAK_TEST_FAILPOINT", failpoint)).into_iter().collect();
    OpptakServe::start_on_bucket(&temp.join(name), seaweed, bucket, &args, &env).unwrap()
}

fn count_ready_writes(postgres: &Postgres, database: &str) {
    postgres
        .psql(
            database,
            "CREATE TABLE ready_writes (recording_id TEXT NOT NULL);
             CREATE FUNCTION count_ready() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO ready_writes VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER ready_writes AFTER UPDATE OF status ON recordings
             FOR EACH ROW WHEN (NEW.status = 'ready') EXECUTE FUNCTION count_ready();",
        )
        .unwrap();
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while !path.exists() {
        assert!(Instant::now() < deadline, "the failpoint was not reached within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_storage_completing_and_the_commit_the_retry_on_another_instance_succeeds() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    seaweed.create_bucket("crash-finish").unwrap();
    let temp = tempfile::tempdir().unwrap();
    let marker = temp.path().join("finish-reached");
    let failpoint = format!("finish-before-commit:{}", marker.display());
    let mut a = instance(temp.path(), &seaweed, "crash-finish", &database, "a", Some(failpoint));
    let b = instance(temp.path(), &seaweed, "crash-finish", &database, "b", None);
    count_ready_writes(&postgres, &database);
    let (on_a, on_b) = (a.client(), b.client());

    // Two parts, so storage's completed object is a multipart one.
    let data = wav_of_len(5 * 1024 * 1024 + 4096);
    let started = on_a.start("killed mid-finish").await.unwrap();
    let parts = on_a.put_parts(&started, &data).await.unwrap();
    let hanging = tokio::spawn({
        let (on_a, started, parts) = (on_a.clone(), started.clone(), parts.clone());
        async move { on_a.finish(&started, parts).await }
    });
    wait_for_file(&marker).await;
    a.process.signal(Signal::SIGKILL).unwrap();
    a.process.wait_timeout(DEADLINE).unwrap();
    assert!(hanging.await.unwrap().is_err(), "the killed instance answered the finish");
    let session = postgres
        .psql(
            &database,
            &format!("SELECT state FROM upload_sessions WHERE recording_id = '{}'", started.recording_id),
        )
        .unwrap();
    assert_eq!(session.trim(), "open", "the kill came before the commit");

    // The client's retry, on the other instance.
    let retried = on_b.finish(&started, parts).await.unwrap();
    assert_eq!(retried.recording_id, started.recording_id);
    let recording = on_b.wait_until_processed(&started.recording_id, DEADLINE).await.unwrap();
    assert_eq!(recording.status, RecordingStatus::Ready, "{recording:?}");
    assert_eq!(recording.sha256.as_deref(), Some(opptak_tests::sha256_hex(&data).as_str()));
    let ready = postgres
        .psql(
            &database,
            &format!("SELECT count(*) FROM ready_writes WHERE recording_id = '{}'", started.recording_id),
        )
        .unwrap();
    assert_eq!(ready.trim(), "1", "ready exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_verifying_another_instance_takes_the_job_after_the_lease() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    seaweed.create_bucket("crash-verify").unwrap();
    let temp = tempfile::tempdir().unwrap();
    let marker = temp.path().join("verifying");
    let failpoint = format!("verifying:{}", marker.display());
    let mut a = instance(temp.path(), &seaweed, "crash-verify", &database, "a", Some(failpoint));
    count_ready_writes(&postgres, &database);
    let on_a = a.client();

    let data = wav_of_len(64 * 1024);
    let started = on_a.start("killed mid-verification").await.unwrap();
    let parts = on_a.put_parts(&started, &data).await.unwrap();
    on_a.finish(&started, parts).await.unwrap();
    wait_for_file(&marker).await;
    a.process.signal(Signal::SIGKILL).unwrap();
    a.process.wait_timeout(DEADLINE).unwrap();
    let job = postgres
        .psql(
            &database,
            &format!("SELECT state, owner FROM jobs WHERE recording_id = '{}'", started.recording_id),
        )
        .unwrap();
    assert_eq!(job.trim(), "running|a", "the killed instance held the job");

    // Started only now, so the job can only reach it by the lapsed lease.
    let b = instance(temp.path(), &seaweed, "crash-verify", &database, "b", None);
    let recording = b.client().wait_until_processed(&started.recording_id, DEADLINE).await.unwrap();
    assert_eq!(recording.status, RecordingStatus::Ready, "{recording:?}");
    let job = postgres
        .psql(
            &database,
            &format!(
                "SELECT j.state, j.owner, j.attempts, (SELECT count(*) FROM ready_writes w WHERE w.recording_id = j.recording_id)
                 FROM jobs j WHERE j.recording_id = '{}'",
                started.recording_id
            ),
        )
        .unwrap();
    assert_eq!(job.trim(), "done|b|2|1", "reclaimed by b on the second claim, ready once");
}
