//! Server benchmarks, each against a baseline measured in the same run;
//! tables go to `tests/BENCHMARKS.md` (the section between this bench's
//! markers is replaced, the rest of the file is kept).
//!
//! Run with release binaries: `cargo build --release --bins && cargo bench -p opptak-tests --bench server`.
//!
//! 1. Part ingest into the local store over loopback: 1 GiB in 8 MiB parts,
//!    4 in flight, vs `cp` + `sync` of the same file from memory (tmpfs) to the
//!    same disk; with the CPU time of the server and of the bench's client.
//! 2. Finish latency for 100-part uploads with 20 clients finishing at once,
//!    vs `listparts` of the same sessions, and the server's peak RSS.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opptak_api::StartResponse;
use opptak_tests::bench::{cpu_time, measured_line, median, rss_mib, write_section};
use opptak_tests::{ApiClient, OpptakServe, wav_of_len};

const MIB: usize = 1024 * 1024;
const RUNS: usize = 3;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn cp_and_sync(source: &Path, target: &Path) -> f64 {
    let _ = std::fs::remove_file(target);
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg(source).arg(target).status().expect("cp");
    assert!(status.success());
    let status = std::process::Command::new("sync").arg(target).status().expect("sync");
    assert!(status.success());
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(target).unwrap();
    seconds
}

/// PUTs `data` as parts of `part_size`, `concurrency` at a time.
async fn ingest(client: &ApiClient, data: bytes::Bytes, concurrency: usize) -> (StartResponse, f64) {
    let started = client.start("ingest benchmark").await.unwrap();
    let begin = Instant::now();
    let part_size = started.part_size_bytes as usize;
    let count = data.len().div_ceil(part_size);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, data, next, started) = (client.clone(), data.clone(), next.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    return;
                }
                let chunk = data.slice(index * part_size..((index + 1) * part_size).min(data.len()));
                client.put_part(&started, index as u32 + 1, chunk).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (started, begin.elapsed().as_secs_f64())
}

async fn part_ingest(table: &mut String, scratch: &Path) {
    let data = bytes::Bytes::from(wav_of_len(1024 * MIB));
    // cp's source lives in memory (tmpfs) where there is one, as the PUTs'
    // bytes do: cp then only writes, like the server. On the disk it would
    // be written back during a later run, or, once clean, evicted and read
    // back from the disk by cp.
    let shm = Path::new("/dev/shm");
    let file = if shm.is_dir() {
        shm.join(format!("opptak-bench-{}.wav", std::process::id()))
    } else {
        scratch.join("one-gib.wav")
    };
    std::fs::write(&file, &*data).unwrap();
    let _remove = RemoveOnDrop(file.clone());
    let server_dir = scratch.join("server");
    let server = OpptakServe::start(&server_dir, &["--part-size-mib", "8"], &[]).unwrap();
    let pid = server.process.pid();
    let client = server.client();
    let (mut ours, mut cp, mut server_cpu, mut client_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (server_before, client_before) =
            (cpu_time(pid).as_secs_f64(), cpu_time(std::process::id()).as_secs_f64());
        let (started, seconds) = ingest(&client, data.clone(), 4).await;
        server_cpu.push(cpu_time(pid).as_secs_f64() - server_before);
        client_cpu.push(cpu_time(std::process::id()).as_secs_f64() - client_before);
        ours.push(1024.0 / seconds);
        client.abort(&started).await.unwrap();
        cp.push(1024.0 / cp_and_sync(&file, &scratch.join("copy.wav")));
    }
    let (ours, cp) = (median(&mut ours), median(&mut cp));
    let (server_cpu, client_cpu) = (median(&mut server_cpu), median(&mut client_cpu));
    table.push_str(&format!(
        "### Part ingest into the local store (1 GiB, 8 MiB parts, 4 in flight, loopback)\n\n\
         | | MiB/s (median of {RUNS}, interleaved) |\n|---|---|\n\
         | `opptak serve` part PUTs (fsync per part) | {ours:.0} |\n\
         | baseline: `cp` + `sync` of the same file (from tmpfs) to the same disk | {cp:.0} |\n\
         | ratio (goal ≥ 50 %) | {:.0} % |\n\n\
         CPU per GiB ingested (median): server {server_cpu:.2} s, the bench's client {client_cpu:.2} s.\n\n",
        100.0 * ours / cp
    ));
}

/// Removes its file when dropped, also on a panic (a file on tmpfs is memory).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn finish_latency(table: &mut String, scratch: &Path) {
    const CLIENTS: usize = 20;
    const PARTS: usize = 100;
    let server_dir = scratch.join("finish-server");
    let server = OpptakServe::start(&server_dir, &["--part-size-mib", "5"], &[]).unwrap();
    let pid = server.process.pid();
    let data = bytes::Bytes::from(wav_of_len(PARTS * 5 * MIB - 5 * MIB / 2));
    let mut uploads = Vec::new();
    for _ in 0..CLIENTS {
        let client = server.client();
        let (started, _) = ingest(&client, data.clone(), 4).await;
        uploads.push((client, started));
    }
    let peak = Arc::new(std::sync::Mutex::new(rss_mib(pid)));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mib(pid);
                {
                    let mut peak = peak.lock().unwrap();
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let timed = |call: &'static str| {
        let uploads = uploads.clone();
        async move {
            let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
            let mut tasks = Vec::new();
            for (client, started) in uploads {
                let barrier = barrier.clone();
                tasks.push(tokio::spawn(async move {
                    let parts = client.list_parts(&started).await.unwrap();
                    barrier.wait().await;
                    let begin = Instant::now();
                    if call == "finish" {
                        let parts = parts
                            .parts
                            .into_iter()
                            .map(|p| opptak_api::FinishPart { part_number: p.part_number, etag: p.etag })
                            .collect();
                        client.finish(&started, parts).await.unwrap();
                    } else {
                        client.list_parts(&started).await.unwrap();
                    }
                    begin.elapsed().as_secs_f64() * 1000.0
                }));
            }
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.push(task.await.unwrap());
            }
            latencies.sort_by(f64::total_cmp);
            latencies
        }
    };
    let baseline = timed("listparts").await;
    let finish = timed("finish").await;
    sampler.abort();
    let peak = *peak.lock().unwrap();
    table.push_str(&format!(
        "### Finish latency: {CLIENTS} clients finish {PARTS}-part uploads at once\n\n\
         | | p50 ms | p99 ms |\n|---|---|---|\n\
         | `finish` (validate against storage, complete, durable commit) | {:.1} | {:.1} |\n\
         | baseline: `listparts` of the same sessions, same concurrency | {:.1} | {:.1} |\n\n\
         Server peak RSS during uploads and finishes: {peak:.0} MiB.\n\n",
        percentile(&finish, 50.0),
        percentile(&finish, 99.0),
        percentile(&baseline, 50.0),
        percentile(&baseline, 99.0),
    ));
}

#[tokio::main]
async fn main() {
    let scratch = tempfile::Builder::new().prefix("opptak-bench-").tempdir().unwrap();
    let mut table = format!("## Server (`--bench server`)\n\n{}\n\n", measured_line());
    part_ingest(&mut table, scratch.path()).await;
    finish_latency(&mut table, scratch.path()).await;
    println!("{table}");
    write_section("server", &table);
}
