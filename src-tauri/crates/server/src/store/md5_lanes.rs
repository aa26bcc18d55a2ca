//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain (each 64-byte step needs the one before), so a
//! core hashes one message at ~1.8 CPU-s/GiB on the machines Opptak is
//! measured on: more than everything else a part PUT costs the server. Parts
//! arriving at the same time are independent messages, though: up to
//! [`MAX_LANES`] of them go through the lanes of SIMD registers at once
//! (`md5-many` picks SSE2, AVX2 or AVX-512 at run time), in about the time
//! of one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use tokio::sync::oneshot;

/// Messages hashed side by side at most.
pub const MAX_LANES: usize = 8;

/// Hashes the blocks of every part being received, side by side, on one
/// thread of its own.
///
/// Each part's blocks go in order through a [`HashStream`]; the thread takes
/// the blocks waiting from up to [`MAX_LANES`] parts at once. So that
/// parts arriving together share the lanes even when the thread keeps up
/// with them, it waits up to [`GATHER`] after a block for one from each
/// other part being received (the wait overlaps the parts' next blocks
/// arriving, which takes longer).
#[derive(Debug)]
struct Hasher {
    jobs: mpsc::Sender<Job>,
    streams: AtomicUsize,
}

/// How long a block waits for other parts' blocks to share the lanes.
const GATHER: Duration = Duration::from_millis(2);

#[derive(Debug)]
struct Job {
    progress: Md5State,
    block: Bytes,
    done: oneshot::Sender<Md5State>,
}

fn hasher() -> &'static Hasher {
    static HASHER: OnceLock<Hasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("opptak-md5".into())
            .spawn(move || hash_jobs(&queue))
            .expect("start the MD5 thread");
        Hasher { jobs, streams: AtomicUsize::new(0) }
    })
}

fn hash_jobs(queue: &mpsc::Receiver<Job>) {
    let engine = Md5Many::new();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + GATHER;
        while batch.len() < hasher().streams.load(Ordering::Relaxed).clamp(1, MAX_LANES) {
            match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while batch.len() < MAX_LANES {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut progress: Vec<Md5State> = batch.iter().map(|job| job.progress).collect();
        let blocks: Vec<&[u8]> = batch.iter().map(|job| &job.block[..]).collect();
        engine.update_many(&mut progress, &blocks);
        for (job, progress) in batch.into_iter().zip(progress) {
            // The block goes before the answer, so its owner gets it back unshared.
            drop(job.block);
            let _ = job.done.send(progress); // a part given up on no longer waits
        }
    }
}

/// The MD5 of one part, fed block by block to the shared MD5 thread; one
/// block is hashed while the caller gets the next.
#[derive(Debug)]
pub struct HashStream {
    progress: Md5State,
    pending: Option<oneshot::Receiver<Md5State>>,
}

impl HashStream {
    /// A stream for one message, counted among the parts whose blocks the
    /// MD5 thread waits for.
    pub fn new() -> Self {
        hasher().streams.fetch_add(1, Ordering::Relaxed);
        Self { progress: Md5State::new(), pending: None }
    }

    /// Queues `block` (whole 64-byte blocks) once the previous one is hashed.
    pub async fn update(&mut self, block: Bytes) -> std::io::Result<()> {
        self.wait().await?;
        let (done, pending) = oneshot::channel();
        let job = Job { progress: self.progress, block, done };
        hasher().jobs.send(job).map_err(|_| stopped())?;
        self.pending = Some(pending);
        Ok(())
    }

    /// The digest of the blocks and then `tail`, of any length.
    pub async fn finish(mut self, tail: &[u8]) -> std::io::Result<[u8; 16]> {
        self.wait().await?;
        self.progress.update(tail);
        Ok(self.progress.finalize())
    }

    async fn wait(&mut self) -> std::io::Result<()> {
        if let Some(pending) = self.pending.take() {
            self.progress = pending.await.map_err(|_| stopped())?;
        }
        Ok(())
    }
}

impl Drop for HashStream {
    fn drop(&mut self) {
        hasher().streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn stopped() -> std::io::Error {
    std::io::Error::other("the MD5 thread stopped")
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;

    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    /// Feeds `message` through a stream in blocks of `block` whole 64-byte
    /// blocks, as a part body arrives, and returns the digest.
    async fn stream_digest(message: Vec<u8>, block: usize) -> [u8; 16] {
        let message = Bytes::from(message);
        let whole = message.len() / 64 * 64;
        let mut stream = HashStream::new();
        for start in (0..whole).step_by(block) {
            stream.update(message.slice(start..(start + block).min(whole))).await.unwrap();
        }
        stream.finish(&message[whole..]).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_hashed_side_by_side_match_md5_whatever_their_count_lengths_and_blocks() {
        for count in [1usize, 2, 5, 8, 9, 13] {
            let messages: Vec<Vec<u8>> =
                (0..count).map(|i| noise(64 * (3 + 50 * i) + i * 7, i as u32 + 11)).collect();
            let streams = messages
                .iter()
                .enumerate()
                .map(|(i, message)| tokio::spawn(stream_digest(message.clone(), 64 * (1 + i % 4))));
            let digests = futures::future::join_all(streams).await;
            for (i, (digest, message)) in digests.into_iter().zip(&messages).enumerate() {
                assert_eq!(digest.unwrap()[..], md5::Md5::digest(message)[..], "{count} parts, part {i}");
            }
        }
    }

    #[tokio::test]
    async fn a_lone_part_matches_md5_at_every_tail_length() {
        let data = noise(4096 + 200, 7);
        for len in (0..300).chain([1000, 4095, 4096, 4097, 4296]) {
            let digest = stream_digest(data[..len].to_vec(), 1024).await;
            assert_eq!(digest[..], md5::Md5::digest(&data[..len])[..], "length {len}");
        }
    }
}
