//! Three `opptak serve` instances on one PostgreSQL and one S3 store
//! (SeaweedFS), 30 uploads from real `opptak upload` processes, every API
//! request to a random instance: a small proxy in this test picks an
//! instance per connection and asks it to close the connection after one
//! answer (`Connection: close`), so the client's next request is a new
//! connection and a new pick. Every recording becomes `ready` exactly once
//! (a trigger on the status column counts), with the file's SHA-256, and
//! no multipart upload is left in S3.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opptak_tests::{OpptakServe, Postgres, SeaweedFs, TEST_TOKEN, sha256_hex, wav_of_len, workspace_bin};
use serde_json::Value;

const UPLOADS: usize = 30;
const MIB: usize = 1024 * 1024;
/// Bounds the whole run.
const DEADLINE: Duration = Duration::from_secs(300);

/// A proxy that sends each connection to a pseudo-random backend and makes
/// it one request long. Stops accepting when dropped.
struct RandomProxy {
    url: String,
    stop: Arc<AtomicBool>,
}

impl RandomProxy {
    fn start(backends: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let picks = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        // xorshift: spread without a pattern the clients could fall into.
                        let mut x = picks.load(Ordering::SeqCst);
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        picks.store(x, Ordering::SeqCst);
                        let backend = backends[(x % backends.len() as u64) as usize].clone();
                        std::thread::spawn(move || relay(client, &backend));
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(err) => panic!("proxy accept: {err}"),
                }
            }
        });
        Self { url, stop }
    }
}

impl Drop for RandomProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Relays one request: its head gets `Connection: close`, so the backend
/// closes after answering and the client opens a new connection for the next.
fn relay(mut client: TcpStream, backend: &str) {
    client.set_nonblocking(false).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 4096];
    let end = loop {
        let Ok(read) = client.read(&mut byte) else { return };
        if read == 0 {
            return;
        }
        head.extend_from_slice(&byte[..read]);
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
    };
    let mut request = head[..end + 2].to_vec();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&head[end + 4..]);
    let address = backend.strip_prefix("http://").unwrap();
    let Ok(mut upstream) = TcpStream::connect(address) else { return };
    if upstream.write_all(&request).is_err() {
        return;
    }
    let (mut from_client, mut to_upstream) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_upstream);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
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

/// API requests an instance answered, from its `/metrics`.
fn api_requests(url: &str) -> u64 {
    let scraped = Command::new("curl").arg("-sf").arg(format!("{url}/metrics")).output().unwrap();
    String::from_utf8(scraped.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("opptak_http_requests_total{route=\"/restapi"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn three_instances_thirty_uploads_every_request_to_a_random_instance() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let Some(seaweed) = SeaweedFs::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    seaweed.create_bucket("three").unwrap();
    let temp = tempfile::tempdir().unwrap();
    let instances: Vec<OpptakServe> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let args = ["--database-url", &database, "--instance-id", name];
            OpptakServe::start_on_bucket(
                &temp.path().join(format!("serve-{name}")),
                &seaweed,
                "three",
                &args,
                &[],
            )
            .unwrap()
        })
        .collect();
    postgres
        .psql(
            &database,
            "CREATE TABLE ready_writes (recording_id TEXT NOT NULL);
             CREATE FUNCTION count_ready() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO ready_writes VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER ready_writes AFTER UPDATE OF status ON recordings
             FOR EACH ROW WHEN (NEW.status = 'ready') EXECUTE FUNCTION count_ready();",
        )
        .unwrap();
    let proxy = RandomProxy::start(instances.iter().map(|instance| instance.url.clone()).collect());

    let files: Vec<(PathBuf, String)> = (0..UPLOADS)
        .map(|index| {
            let len = (index % 3) * 5 * MIB + 32 * 1024 + index * 2;
            let data = wav_of_len(len);
            let file = temp.path().join(format!("lesson-{index}.wav"));
            std::fs::write(&file, &data).unwrap();
            (file, sha256_hex(&data))
        })
        .collect();
    let started = Instant::now();
    // Ten at a time: 2 cores, three servers, SeaweedFS and PostgreSQL share them.
    for batch in files.chunks(10).enumerate() {
        let (batch_index, batch) = batch;
        let running: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(offset, (file, _))| {
                let index = batch_index * 10 + offset;
                let (file, proxy, client) =
                    (file.clone(), proxy.url.clone(), temp.path().join(format!("client-{index}")));
                std::thread::spawn(move || upload(&client, &file, &proxy))
            })
            .collect();
        for ((offset, upload), (_, sha256)) in running.into_iter().enumerate().zip(batch) {
            let index = batch_index * 10 + offset;
            let output = upload.join().unwrap();
            assert!(output.status.success(), "upload {index}: {}", String::from_utf8_lossy(&output.stderr));
            let done = last_json(&output);
            assert_eq!(done["status"], "ready", "upload {index}: {done}");
            assert_eq!(done["sha256"].as_str(), Some(sha256.as_str()), "upload {index}");
        }
        assert!(started.elapsed() < DEADLINE, "30 uploads took longer than {DEADLINE:?}");
    }
    eprintln!("{UPLOADS} uploads through three instances in {:.1} s", started.elapsed().as_secs_f64());

    let ready =
        postgres.psql(&database, "SELECT count(*), count(DISTINCT recording_id) FROM ready_writes").unwrap();
    assert_eq!(ready.trim(), format!("{UPLOADS}|{UPLOADS}"), "every recording became ready exactly once");
    let states = postgres
        .psql(
            &database,
            "SELECT (SELECT count(*) FROM recordings WHERE status = 'ready'),
                    (SELECT count(*) FROM upload_sessions WHERE state = 'completed'),
                    (SELECT count(DISTINCT owner) FROM jobs)",
        )
        .unwrap();
    let fields: Vec<&str> = states.trim().split('|').collect();
    assert_eq!(fields[..2], [UPLOADS.to_string(), UPLOADS.to_string()], "{states}");
    for instance in &instances {
        let answered = api_requests(&instance.url);
        eprintln!("{} answered {answered} API requests", instance.url);
        assert!(answered > 0, "{} got no requests: the proxy did not spread them", instance.url);
    }
    assert_eq!(open_multipart_uploads(&seaweed, "three"), 0, "a multipart upload was left in S3");
    drop(proxy);
}

/// Multipart uploads still open in `bucket`.
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
