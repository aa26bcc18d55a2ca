//! SeaweedFS (`weed mini`) as a test's private S3-compatible store: every
//! file in one temp folder, every port a free one on 127.0.0.1, no
//! telemetry, stopped by PID with SIGTERM on drop.
//!
//! Ready means more than an open port: after start SeaweedFS may answer S3
//! requests before its volume server has registered, and a read then fails
//! with 500 "volume not found". [`SeaweedFs::start`] returns only once a
//! probe object was written and read back.

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use nix::sys::signal::Signal;

use crate::process::{ChildGuard, wait_until};
use crate::require_program;

/// The access key of the only identity in `s3.json`.
const ACCESS_KEY: &str = "AK";
/// Its secret key.
const SECRET_KEY: &str = "SK";
/// The region clients sign for; SeaweedFS accepts any, the SDK needs one.
const REGION: &str = "us-east-1";
/// One identity with every S3 permission.
const S3_IDENTITIES: &str = r#"{"identities":[{"name":"test","credentials":[{"accessKey":"AK","secretKey":"SK"}],"actions":["Admin","Read","Write","List","Tagging"]}]}"#;

/// From start until a probe object reads back. Measured here: ~1 s for the
/// port, a few more when the volume server is slow to register.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between probes, so a slow start is not flooded with requests.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Starts tried when `weed` exits at once: the usual cause is that another
/// process took one of its ten "free" ports in the meantime.
const START_ATTEMPTS: usize = 3;
/// How long `weed mini` gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Where readiness is proven (a bucket of its own, never a test's).
const PROBE_BUCKET: &str = "opptak-readiness-probe";

/// A running private SeaweedFS with an S3 endpoint (identity `AK`/`SK`).
#[derive(Debug)]
pub struct SeaweedFs {
    s3_port: u16,
    // Fields drop in order: the process stops before its folder is removed.
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

/// What one start led to.
enum Started {
    Ready(SeaweedFs),
    /// `weed` exited before it was ready; starting again may help.
    Exited(anyhow::Error),
}

impl SeaweedFs {
    /// Starts `weed mini` and waits until S3 works, or returns `None` (skip)
    /// when SeaweedFS is not installed outside CI.
    pub fn start() -> anyhow::Result<Option<Self>> {
        let Some(weed) = require_program("weed", "for an S3-compatible store (SeaweedFS)") else {
            return Ok(None);
        };
        let mut last_exit = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&weed)? {
                Started::Ready(seaweed) => return Ok(Some(seaweed)),
                Started::Exited(err) => last_exit = Some(err),
            }
        }
        Err(last_exit.unwrap_or_else(|| anyhow::anyhow!("SeaweedFS did not start")))
    }

    fn start_once(weed: &Path) -> anyhow::Result<Started> {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("opptak-seaweed-").tempdir()?;
        let root = dir.path();
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let identities = root.join("s3.json");
        std::fs::write(&identities, S3_IDENTITIES)?;
        let output = root.join("weed.out");

        // Every listener gets an explicit port: the defaults (9333, 8888…)
        // would collide between parallel tests, and gRPC ports default to
        // HTTP + 10000, which overflows for ports above 55535.
        let mut reserved = Vec::new();
        let [s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc] =
            reserve_free_ports::<8>(&mut reserved)?;
        let admin = reserve_admin_port(&mut reserved)?;
        drop(reserved);
        let mut command = Command::new(weed);
        command
            .arg(format!("-logdir={}", root.join("logs").display()))
            .arg("mini")
            .arg(format!("-dir={}", root.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", identities.display()))
            .arg(format!("-s3.localSocket={}", root.join("s3.sock").display()))
            .arg(format!("-filer.localSocket={}", root.join("filer.sock").display()))
            .args(["-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            // The admin server starts even with its UI off, and its built-in
            // worker dials admin port + 10000 whatever -admin.port.grpc says.
            .arg(format!("-admin.port={admin}"))
            .arg(format!("-admin.port.grpc={}", admin + ADMIN_GRPC_OFFSET))
            // The volume server's default 1 s pause before stopping lets a
            // cluster move writes elsewhere; a single private node has no
            // elsewhere, and the pause counts against STOP_GRACE.
            .arg("-volume.preStopSeconds=0")
            .current_dir(root)
            // Nothing outside the folder: temp files, and no ~/.seaweedfs/*.toml.
            .env("TMPDIR", root.join("tmp"))
            .env("HOME", root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&output)?))
            .stderr(Stdio::from(std::fs::File::create(root.join("weed.err"))?));
        let mut process = ChildGuard::spawn("weed mini", &mut command)?;
        let endpoint = format!("http://127.0.0.1:{s3}");

        let port_open = wait_until("SeaweedFS S3 port", READY_TIMEOUT, || {
            TcpStream::connect(("127.0.0.1", s3)).is_ok() || process.ensure_running().is_err()
        });
        if let Err(exited) = process.ensure_running() {
            return Ok(Started::Exited(exited.context(output_tail(root))));
        }
        port_open.map_err(|err| err.context(output_tail(root)))?;

        let mut last_probe_error = None;
        while started.elapsed() < READY_TIMEOUT {
            if let Err(exited) = process.ensure_running() {
                return Ok(Started::Exited(exited.context(output_tail(root))));
            }
            match block_on(probe(client(&endpoint, false)))? {
                Ok(()) => {
                    eprintln!("SeaweedFS ready on {endpoint} in {:.1} s", started.elapsed().as_secs_f64());
                    return Ok(Started::Ready(Self { s3_port: s3, process, _dir: dir }));
                }
                Err(err) => last_probe_error = Some(err),
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        let last = last_probe_error.map_or_else(String::new, |err| format!("; last probe: {err:#}"));
        anyhow::bail!(
            "SeaweedFS could not store and read an object within {READY_TIMEOUT:?}{last}\n{}",
            output_tail(root)
        )
    }

    /// The S3 endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Environment for a process that talks to this store through the
    /// standard AWS chain. Instance metadata is off so that no request
    /// leaves the machine looking for credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// Creates bucket `name` (an existing one of ours is fine). Blocks; safe
    /// to call from inside a tokio runtime.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let client = client(&self.endpoint(), true);
        block_on(async move {
            match client.create_bucket().bucket(name).send().await {
                Ok(_) => Ok(()),
                Err(err) if err.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
                Err(err) => Err(anyhow::anyhow!("create bucket {name}: {}", DisplayErrorContext(&err))),
            }
        })?
    }
}

impl Drop for SeaweedFs {
    /// SIGTERM, then SIGKILL after `STOP_GRACE`. Usually `weed mini` stops
    /// in ~1.3 s, but now and then its volume server hangs in shutdown for
    /// half a minute; the data is a test's and goes with the folder, so
    /// waiting buys nothing.
    fn drop(&mut self) {
        let started = Instant::now();
        if self.process.signal(Signal::SIGTERM).is_err() {
            return; // Already gone.
        }
        while started.elapsed() < STOP_GRACE {
            if self.process.ensure_running().is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("SeaweedFS did not stop within {STOP_GRACE:?} of SIGTERM; killing it");
        let _ = self.process.signal(Signal::SIGKILL);
        // ChildGuard's own drop then reaps it.
    }
}

/// A client with the store's keys; `retry` off for probes, which retry on
/// their own schedule.
fn client(endpoint: &str, retry: bool) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "opptak-tests"))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(if retry { RetryConfig::standard() } else { RetryConfig::disabled() })
        .build();
    Client::from_conf(config)
}

/// The end of `weed`'s console output in `root`, for failure messages.
fn output_tail(root: &Path) -> String {
    let mut tail = String::from("weed output:\n");
    for name in ["weed.out", "weed.err"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            tail.push_str(line);
            tail.push('\n');
        }
    }
    tail
}

/// Writes an object and reads it back: proof that master, volume, filer and
/// S3 gateway all work, not just that a port is open.
async fn probe(client: Client) -> anyhow::Result<()> {
    match client.create_bucket().bucket(PROBE_BUCKET).send().await {
        Ok(_) => {}
        Err(err) if err.code() == Some("BucketAlreadyOwnedByYou") => {}
        Err(err) => anyhow::bail!("create probe bucket: {}", DisplayErrorContext(&err)),
    }
    let body = b"opptak readiness probe";
    client
        .put_object()
        .bucket(PROBE_BUCKET)
        .key("probe")
        .body(ByteStream::from_static(body))
        .send()
        .await
        .map_err(|err| anyhow::anyhow!("put probe: {}", DisplayErrorContext(&err)))?;
    let read = client
        .get_object()
        .bucket(PROBE_BUCKET)
        .key("probe")
        .send()
        .await
        .map_err(|err| anyhow::anyhow!("get probe: {}", DisplayErrorContext(&err)))?
        .body
        .collect()
        .await?
        .into_bytes();
    anyhow::ensure!(&read[..] == body, "the probe read back {} bytes that differ", read.len());
    Ok(())
}

/// Runs `future` to completion on a runtime of its own thread, so that the
/// blocking API above works both in plain tests and inside `#[tokio::test]`
/// (where blocking on the test's own runtime would panic).
fn block_on<F>(future: F) -> anyhow::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<F::Output> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(runtime.block_on(future))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the S3 helper thread panicked"))?
    })
}

/// Reserves `N` different free ports: each stays bound (in `reserved`)
/// until the caller drops it, so the kernel cannot hand out one twice.
fn reserve_free_ports<const N: usize>(reserved: &mut Vec<TcpListener>) -> anyhow::Result<[u16; N]> {
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        *port = listener.local_addr()?.port();
        reserved.push(listener);
    }
    Ok(ports)
}

/// Where `weed mini`'s worker expects the admin server's gRPC port.
const ADMIN_GRPC_OFFSET: u16 = 10_000;

/// Reserves a free port P whose P + 10000 is free too, for the admin
/// server; otherwise the worker would dial another process's port, possibly
/// a parallel test's SeaweedFS.
fn reserve_admin_port(reserved: &mut Vec<TcpListener>) -> anyhow::Result<u16> {
    // Start at a per-process offset so parallel tests rarely probe the same ports.
    let span = 30_000 - 1_024;
    let seed = std::process::id()
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    for step in 0..200 {
        let port = 1_024 + u16::try_from((seed.wrapping_add(step * 7_919)) % span)?;
        let (Ok(http), Ok(grpc)) = (
            TcpListener::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.1", port + ADMIN_GRPC_OFFSET)),
        ) else {
            continue;
        };
        reserved.extend([http, grpc]);
        return Ok(port);
    }
    anyhow::bail!("found no free port pair P, P + {ADMIN_GRPC_OFFSET} on 127.0.0.1")
}
