//! Races between two real `opptak serve` instances on one PostgreSQL and one
//! S3 store (SeaweedFS): the same upload's requests sent to both at once.
//! Each ends in exactly one terminal state, and a recording becomes `ready`
//! at most once (counted by a trigger on the status column).
//!
//! What the losers get, per the spec (`/work/shared/spec`, finish: "a
//! repeated finish with the same parts is harmless"): a duplicate finish is
//! the idempotent 200 (status `processing` or `ready`); an abort that loses
//! to a finish is 409 `upload_finished`; a finish that loses to an abort is
//! 409 `upload_aborted`; a finish that loses to the expiry is 409
//! `upload_expired`.

use std::path::Path;
use std::time::{Duration, Instant};

use opptak_api::RecordingStatus;
use opptak_tests::{ApiClient, OpptakServe, Postgres, SeaweedFs, wav_of_len};

/// Bounds every wait.
const DEADLINE: Duration = Duration::from_secs(60);
/// Rounds of each race.
const ROUNDS: usize = 4;

/// Two instances sharing `database` and a new bucket, with `extra` flags.
fn two_instances(
    temp: &Path,
    seaweed: &SeaweedFs,
    bucket: &str,
    database: &str,
    extra: &[&str],
) -> (OpptakServe, OpptakServe) {
    seaweed.create_bucket(bucket).unwrap();
    let start = |name: &str| {
        let mut args = vec!["--database-url", database, "--instance-id", name];
        args.extend_from_slice(extra);
        OpptakServe::start_on_bucket(&temp.join(format!("{bucket}-{name}")), seaweed, bucket, &args, &[])
            .unwrap()
    };
    (start("a"), start("b"))
}

/// Counts every write that leaves a recording `ready`.
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

/// (session state, recording status, times it became ready).
fn terminal(postgres: &Postgres, database: &str, recording_id: &str) -> (String, String, usize) {
    let row = postgres
        .psql(
            database,
            &format!(
                "SELECT s.state, r.status, (SELECT count(*) FROM ready_writes w WHERE w.recording_id = r.id)
                 FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id WHERE r.id = '{recording_id}'"
            ),
        )
        .unwrap();
    let fields: Vec<&str> = row.trim().split('|').collect();
    (fields[0].to_owned(), fields[1].to_owned(), fields[2].parse().unwrap())
}

/// The HTTP status an [`ApiClient`] call ended with (its errors start "endpoint: 409 …").
fn status_of<T>(result: &anyhow::Result<T>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(err) => err.to_string().split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0),
    }
}

async fn wait_processed(client: &ApiClient, recording_id: &str) -> RecordingStatus {
    client.wait_until_processed(recording_id, DEADLINE).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_finishes_and_abort_racing_finish_end_in_one_state_each() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(temp.path(), &seaweed, "races", &database, &[]);
    count_ready_writes(&postgres, &database);
    let (on_a, on_b) = (a.client(), b.client());

    for round in 0..ROUNDS {
        let data = wav_of_len(64 * 1024 + round * 2);
        let started = on_a.start(&format!("duplicate {round}")).await.unwrap();
        let parts = on_a.put_parts(&started, &data).await.unwrap();
        let (first, second) =
            tokio::join!(on_a.finish(&started, parts.clone()), on_b.finish(&started, parts.clone()));
        assert_eq!((status_of(&first), status_of(&second)), (200, 200), "{first:?} {second:?}");
        assert_eq!(wait_processed(&on_b, &started.recording_id).await, RecordingStatus::Ready);
        let state = terminal(&postgres, &database, &started.recording_id);
        assert_eq!(state, ("completed".into(), "ready".into(), 1), "duplicate round {round}");
    }

    for round in 0..ROUNDS {
        let data = wav_of_len(64 * 1024 + round * 2);
        let started = on_a.start(&format!("abort or finish {round}")).await.unwrap();
        let parts = on_a.put_parts(&started, &data).await.unwrap();
        // Alternate which instance gets which request.
        let (abort_on, finish_on) = if round % 2 == 0 { (&on_a, &on_b) } else { (&on_b, &on_a) };
        let (aborted, finished) = tokio::join!(abort_on.abort(&started), finish_on.finish(&started, parts));
        let statuses = (status_of(&aborted), status_of(&finished));
        match statuses {
            (409, 200) => {
                assert!(aborted.unwrap_err().to_string().contains("upload_finished"));
                assert_eq!(wait_processed(&on_a, &started.recording_id).await, RecordingStatus::Ready);
                let state = terminal(&postgres, &database, &started.recording_id);
                assert_eq!(state, ("completed".into(), "ready".into(), 1), "round {round}");
            }
            (200, 409) => {
                assert!(finished.unwrap_err().to_string().contains("upload_aborted"));
                let state = terminal(&postgres, &database, &started.recording_id);
                assert_eq!(state, ("aborted".into(), "aborted".into(), 0), "round {round}");
            }
            other => panic!("abort and finish both won or both lost: {other:?}: {aborted:?} {finished:?}"),
        }
    }
    assert_eq!(open_sessions(&postgres, &database), 0);
}

/// Sessions still `open` (an abort or a finish leaves none).
fn open_sessions(postgres: &Postgres, database: &str) -> usize {
    postgres
        .psql(database, "SELECT count(*) FROM upload_sessions WHERE state = 'open'")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_racing_expiry_ends_in_one_state() {
    const TTL_SECONDS: u64 = 2;
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let ttl = TTL_SECONDS.to_string();
    let flags = ["--session-ttl-seconds", ttl.as_str(), "--sweep-interval-seconds", "1"];
    let (a, b) = two_instances(temp.path(), &seaweed, "expiry", &database, &flags);
    count_ready_writes(&postgres, &database);
    let (on_a, on_b) = (a.client(), b.client());

    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        let data = wav_of_len(64 * 1024 + round * 2);
        let started = on_a.start(&format!("expiry {round}")).await.unwrap();
        let parts = on_a.put_parts(&started, &data).await.unwrap();
        // Finish around the expiry: a little before it in early rounds, after it later.
        let expires = started.expires_at.unix_timestamp();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let aim = expires as f64 - 0.6 + 0.4 * round as f64;
        if aim > now {
            tokio::time::sleep(Duration::from_secs_f64(aim - now)).await;
        }
        let finished = on_b.finish(&started, parts).await;
        let deadline = Instant::now() + DEADLINE;
        let state = loop {
            let state = terminal(&postgres, &database, &started.recording_id);
            let settled = match state.0.as_str() {
                "completed" => state.1 == "ready",
                "expired" => true,
                _ => false,
            };
            if settled {
                break state;
            }
            assert!(Instant::now() < deadline, "round {round} never settled: {state:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match status_of(&finished) {
            200 => assert_eq!(state, ("completed".into(), "ready".into(), 1), "round {round}"),
            409 => {
                assert!(
                    finished.as_ref().unwrap_err().to_string().contains("upload_expired"),
                    "{finished:?}"
                );
                assert_eq!(state, ("expired".into(), "expired".into(), 0), "round {round}");
            }
            other => panic!("finish answered {other}: {finished:?}"),
        }
        outcomes.push(status_of(&finished));
    }
    eprintln!("finish outcomes around the expiry: {outcomes:?}");
    drop((a, b));
}
