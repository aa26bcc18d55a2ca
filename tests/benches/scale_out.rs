//! Scale-out benchmark: finish latency (p50, p99) and uploads per second
//! with 1, 2 and 3 `opptak serve` instances on one PostgreSQL against 1
//! instance on its own SQLite file, all in the same run, all with media in
//! one SeaweedFS (S3). Each row: 40 uploads of one 64 KiB WAV part, 8 at a
//! time; upload i starts on instance i mod n and finishes on instance
//! (i + 1) mod n; a row ends when every recording is `ready`. The table goes
//! to `tests/BENCHMARKS.md`.
//!
//! `cargo build --workspace --bins && cargo test -p opptak-tests --bench scale_out`
//! (debug build), or with `--release` builds and `cargo bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opptak_api::RecordingStatus;
use opptak_tests::bench::{measured_line, write_section};
use opptak_tests::{ApiClient, OpptakServe, Postgres, SeaweedFs, wav_of_len};

const UPLOADS: usize = 40;
const CONCURRENCY: usize = 8;
const DEADLINE: Duration = Duration::from_secs(120);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// (finish latencies in ms, sorted; uploads per second until all ready).
async fn run_row(clients: Vec<ApiClient>) -> (Vec<f64>, f64) {
    let clients = Arc::new(clients);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..UPLOADS {
        let (clients, semaphore) = (clients.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            let n = clients.len();
            let (on_start, on_finish) = (&clients[index % n], &clients[(index + 1) % n]);
            let data = wav_of_len(64 * 1024 + index * 2);
            let upload = on_start.start(&format!("bench {index}")).await.unwrap();
            // SeaweedFS on a loaded machine now and then answers a PUT with
            // 500; a real uploader sends the part again, and so does this.
            let mut tries = 0;
            let parts = loop {
                match on_start.put_parts(&upload, &data).await {
                    Ok(parts) => break parts,
                    Err(err) if tries < 3 => {
                        tries += 1;
                        eprintln!("retrying a part: {err}");
                    }
                    Err(err) => panic!("{err}"),
                }
            };
            let asked = Instant::now();
            on_finish.finish(&upload, parts).await.unwrap();
            let latency = asked.elapsed().as_secs_f64() * 1000.0;
            let recording = on_start.wait_until_processed(&upload.recording_id, DEADLINE).await.unwrap();
            assert_eq!(recording.status, RecordingStatus::Ready);
            latency
        });
    }
    let mut latencies = Vec::new();
    while let Some(latency) = tasks.join_next().await {
        latencies.push(latency.unwrap());
    }
    let rate = UPLOADS as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    (latencies, rate)
}

fn start_instances(
    temp: &std::path::Path,
    seaweed: &SeaweedFs,
    bucket: &str,
    row: &str,
    database: Option<&str>,
    count: usize,
) -> Vec<OpptakServe> {
    (0..count)
        .map(|index| {
            let name = format!("{row}-{index}");
            let mut args = vec!["--instance-id", &name];
            if let Some(database) = database {
                args.extend(["--database-url", database]);
            }
            OpptakServe::start_on_bucket(&temp.join(&name), seaweed, bucket, &args, &[]).unwrap()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let postgres = Postgres::start().unwrap().expect("the scale-out benchmark needs PostgreSQL");
    let seaweed = SeaweedFs::start().unwrap().expect("the scale-out benchmark needs SeaweedFS");
    let temp = tempfile::Builder::new().prefix("opptak-bench-scale-out-").tempdir().unwrap();
    // One bucket for every row: SeaweedFS gives each bucket volumes of its
    // own, and a few buckets exhaust a small test server's volume budget.
    seaweed.create_bucket("bench-scale-out").unwrap();
    let mut rows = Vec::new();
    for (label, count, postgres_backed) in
        [("SQLite", 1, false), ("PostgreSQL", 1, true), ("PostgreSQL", 2, true), ("PostgreSQL", 3, true)]
    {
        let database = postgres_backed.then(|| postgres.fresh_database().unwrap());
        let row = format!("{}-{count}", label.to_lowercase());
        let instances =
            start_instances(temp.path(), &seaweed, "bench-scale-out", &row, database.as_deref(), count);
        let clients = instances.iter().map(OpptakServe::client).collect();
        let (latencies, rate) = run_row(clients).await;
        let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
        eprintln!("{label} × {count}: finish p50 {p50:.1} ms, p99 {p99:.1} ms, {rate:.1} uploads/s");
        rows.push(format!("| {label} | {count} | {p50:.1} | {p99:.1} | {rate:.1} |"));
        drop(instances);
    }
    let section = format!(
        "## Scale-out (`cargo test -p opptak-tests --bench scale_out`)\n\n{}\n\n\
         {UPLOADS} uploads per row of one 64 KiB WAV part each, {CONCURRENCY} at a time; upload i starts on \
         instance i mod n and finishes on instance (i + 1) mod n; media in one SeaweedFS for every row; \
         uploads/s counts until every recording is `ready` (verified). Every process — the instances, \
         PostgreSQL, SeaweedFS and this client — shares the same cores, so this shows correctness under \
         concurrency and the cost of PostgreSQL against SQLite, not scaling.\n\n\
         | Metadata | Instances | finish p50 (ms) | finish p99 (ms) | uploads/s |\n|---|---:|---:|---:|---:|\n{}\n",
        measured_line(),
        rows.join("\n")
    );
    write_section("scale_out", &section);
}
