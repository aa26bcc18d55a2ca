//! `opptak serve --database-url`: several server instances over one real
//! PostgreSQL (started by the test in a temp folder) and one S3 store
//! (SeaweedFS), with real `opptak upload` processes; and the refusal of a
//! second instance when media is in a local folder.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use opptak_server::store::S3Config;
use opptak_server::{Error, Server, StoreConfig};
use opptak_tests::{OpptakServe, Postgres, SeaweedFs, TEST_TOKEN, sha256_hex, wav_of_len, workspace_bin};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

async fn start_server(
    data_dir: &Path,
    database_url: &str,
    store: StoreConfig,
) -> opptak_server::Result<opptak_server::ServerHandle> {
    Server::builder().data_dir(data_dir).database_url(database_url).store(store).start().await
}

/// A store config naming an S3 service nobody runs: joining the database's
/// instances comes before the store is reached.
fn unreachable_s3() -> StoreConfig {
    StoreConfig::S3(S3Config {
        endpoint: Some("http://127.0.0.1:9".into()),
        bucket: "none".into(),
        region: "us-east-1".into(),
        path_style: true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_local_store_a_second_instance_on_the_database_is_refused() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let first = start_server(&temp.path().join("a"), &url, StoreConfig::Local).await.unwrap();

    let second = start_server(&temp.path().join("b"), &url, StoreConfig::Local).await;
    let Err(Error::DatabaseShared(message)) = second else {
        panic!("a second local-store instance started: {second:?}")
    };
    assert!(message.contains("Another Opptak server already uses this database"), "{message}");
    let beside = start_server(&temp.path().join("c"), &url, unreachable_s3()).await;
    let Err(Error::DatabaseShared(message)) = beside else {
        panic!("an S3 instance joined a local-store one: {beside:?}")
    };
    assert!(message.contains("keeps media in a local folder"), "{message}");

    // The lock goes with the instance: once it stopped, another may start.
    first.shutdown().await;
    let again = start_server(&temp.path().join("b"), &url, StoreConfig::Local).await.unwrap();
    again.shutdown().await;
}

fn upload(data_dir: &Path, file: &Path, server: &str) -> Output {
    Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OPPTAK_TOKEN")
        .arg("upload")
        .arg(file)
        .args(["--server", server, "--token", TEST_TOKEN, "--json"])
        .output()
        .expect("run opptak upload")
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("last line is not JSON: {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    })
}

#[test]
fn two_instances_share_one_database_and_every_upload_becomes_ready_once() {
    const UPLOADS: usize = 10;
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let url = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    seaweed.create_bucket("scale-out").unwrap();
    // One instance takes the URL from the environment, the other from the flag.
    // Likewise the instance id: from the environment, and from the flag.
    let env = [("OPPTAK_DATABASE_URL", url.clone()), ("OPPTAK_INSTANCE_ID", "app-a".into())];
    let first =
        OpptakServe::start_on_bucket(&temp.path().join("serve-a"), &seaweed, "scale-out", &[], &env).unwrap();
    let with_flag = ["--database-url", url.as_str(), "--instance-id", "app-b"];
    let second =
        OpptakServe::start_on_bucket(&temp.path().join("serve-b"), &seaweed, "scale-out", &with_flag, &[])
            .unwrap();

    // Counts every write that leaves a recording `ready`, so a second
    // verification of one recording shows even though the status stays the same.
    postgres
        .psql(
            &url,
            "CREATE TABLE ready_writes (recording_id TEXT NOT NULL);
             CREATE FUNCTION count_ready() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO ready_writes VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER ready_writes AFTER UPDATE OF status ON recordings
             FOR EACH ROW WHEN (NEW.status = 'ready') EXECUTE FUNCTION count_ready();",
        )
        .unwrap();

    let files: Vec<(std::path::PathBuf, String)> = (0..UPLOADS)
        .map(|index| {
            // One to three parts of 5 MiB, each file different.
            let len = (index % 3) * 5 * MIB + 64 * 1024 + index * 2;
            let data = wav_of_len(len);
            let file = temp.path().join(format!("lesson-{index}.wav"));
            std::fs::write(&file, &data).unwrap();
            (file, sha256_hex(&data))
        })
        .collect();
    let servers = [first.url.clone(), second.url.clone()];
    let temp_path = Arc::new(temp.path().to_path_buf());
    let uploads: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(index, (file, _))| {
            let (file, server, temp) = (file.clone(), servers[index % 2].clone(), temp_path.clone());
            std::thread::spawn(move || upload(&temp.join(format!("client-{index}")), &file, &server))
        })
        .collect();
    for ((index, upload), (_, sha256)) in uploads.into_iter().enumerate().zip(&files) {
        let output = upload.join().unwrap();
        assert!(output.status.success(), "upload {index}: {}", String::from_utf8_lossy(&output.stderr));
        let done = last_json(&output);
        assert_eq!(done["status"], "ready", "upload {index}: {done}");
        assert_eq!(done["sha256"].as_str(), Some(sha256.as_str()), "upload {index}");
    }

    let ready =
        postgres.psql(&url, "SELECT count(*), count(DISTINCT recording_id) FROM ready_writes").unwrap();
    assert_eq!(ready.trim(), format!("{UPLOADS}|{UPLOADS}"), "every recording became ready exactly once");
    let states = postgres
        .psql(
            &url,
            "SELECT (SELECT count(*) FROM recordings WHERE status = 'ready'),
                    (SELECT count(*) FROM jobs WHERE state = 'done'),
                    (SELECT count(*) FROM upload_sessions WHERE state = 'completed')",
        )
        .unwrap();
    assert_eq!(states.trim(), format!("{UPLOADS}|{UPLOADS}|{UPLOADS}"));
    // Either instance answers for every recording: the metadata is shared.
    for server in [&first, &second] {
        let listed = Command::new("curl")
            .args(["-sf", "-H", &format!("Authorization: Bearer {TEST_TOKEN}")])
            .arg(format!("{}/restapi/personal/mediarecorder/recordings/v1", server.url))
            .output()
            .unwrap();
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(UPLOADS), "{listed}");
    }
    assert_eq!(open_multipart_uploads(&seaweed, "scale-out"), 0, "a multipart upload was left in S3");

    // Every job names the instance that verified it, and the instances'
    // outcome counters add up to the uploads.
    let owners = postgres.psql(&url, "SELECT count(*) FROM jobs WHERE owner IN ('app-a', 'app-b')").unwrap();
    assert_eq!(owners.trim(), UPLOADS.to_string(), "every job records its owner");
    let mut ready = 0;
    for (server, id) in [(&first, "app-a"), (&second, "app-b")] {
        let scraped =
            Command::new("curl").args(["-sf"]).arg(format!("{}/metrics", server.url)).output().unwrap();
        let text = String::from_utf8(scraped.stdout).unwrap();
        assert!(text.contains(&format!("opptak_instance_info{{instance_id=\"{id}\"}} 1")), "{text}");
        ready +=
            metric(&text, "opptak_jobs_total{kind=\"verify\",outcome=\"ready\"}").unwrap_or(0.0) as usize;
        assert!(metric(&text, "opptak_session_lock_wait_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
        assert!(metric(&text, "opptak_db_pool_connections").is_some_and(|n| n >= 1.0), "{text}");
        assert!(metric(&text, "opptak_db_pool_idle_connections").is_some(), "{text}");
    }
    assert_eq!(ready, UPLOADS, "the instances counted every verification once");
    drop((first, second));
}

/// The value of the sample `name` (with its labels) in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Multipart uploads still open in `bucket` (each finish completes its own).
fn open_multipart_uploads(seaweed: &SeaweedFs, bucket: &str) -> usize {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let env: std::collections::HashMap<_, _> = seaweed.env().into_iter().collect();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env["AWS_REGION"].clone()))
        .endpoint_url(seaweed.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            env["AWS_ACCESS_KEY_ID"].clone(),
            env["AWS_SECRET_ACCESS_KEY"].clone(),
            None,
            None,
            "scale-out-test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed = runtime.block_on(client.list_multipart_uploads().bucket(bucket).send()).unwrap();
    listed.uploads().len()
}
