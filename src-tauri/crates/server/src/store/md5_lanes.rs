//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain (each 64-byte step needs the one before), so a
//! core hashes one message at ~1.4 CPU-s/GiB on the machines Opptak is
//! measured on: more than everything else a part PUT costs the server. Parts
//! arriving at the same time are independent messages, though: up to
//! [`MAX_LANES`] of them go through the lanes of SIMD registers at once
//! ([`opptak_api::md5`]), in about the time of one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opptak_api::md5::{Md5State, update_many};
use tokio::sync::oneshot;

/// Messages hashed side by side at most.
pub const MAX_LANES: usize = opptak_api::md5::FULL_BATCH;

/// How long a block may wait for a block of every other part being
/// received, so that they share the lanes. Parts arrive side by side but
/// not in step: a part's next 1 MiB block comes every ~2–10 ms.
const GATHER: Duration = Duration::from_millis(20);

/// A part's blocks waiting to be hashed at most; it receives the next one
/// meanwhile, so waiting for the others does not hold up its network reads.
const QUEUED_PER_PART: usize = 2;

/// What a [`HashStream`] asks of the MD5 thread.
enum Message {
    Open { stream: u64 },
    Block { stream: u64, block: Bytes, hashed: oneshot::Sender<()> },
    Finish { stream: u64, tail: Vec<u8>, digest: oneshot::Sender<[u8; 16]> },
    Close { stream: u64 },
}

/// One part's hashing, kept by the MD5 thread.
#[derive(Default)]
struct Part {
    progress: Md5State,
    queued: VecDeque<(Bytes, oneshot::Sender<()>, Instant)>,
    finish: Option<(Vec<u8>, oneshot::Sender<[u8; 16]>)>,
}

/// The MD5 thread's queue, started on first use.
fn sender() -> &'static mpsc::Sender<Message> {
    static SENDER: OnceLock<mpsc::Sender<Message>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("opptak-md5".into())
            .spawn(move || hash_parts(&queue))
            .expect("start the MD5 thread");
        sender
    })
}

/// The MD5 thread: hashes the oldest waiting block of up to [`MAX_LANES`]
/// parts at once, as soon as every part being received has one waiting (or
/// one is finishing, or the oldest has waited [`GATHER`]).
fn hash_parts(queue: &mpsc::Receiver<Message>) {
    let mut parts: HashMap<u64, Part> = HashMap::new();
    loop {
        let oldest = parts.values().filter_map(|part| part.queued.front().map(|(_, _, at)| *at)).min();
        let due = oldest.is_some_and(|oldest| {
            oldest.elapsed() >= GATHER
                || parts.values().all(|part| !part.queued.is_empty())
                || parts.values().any(|part| part.finish.is_some() && !part.queued.is_empty())
        });
        if due {
            hash_batch(&mut parts);
            continue;
        }
        let message = match oldest {
            None => queue.recv().ok(),
            Some(oldest) => match queue.recv_timeout(GATHER.saturating_sub(oldest.elapsed())) {
                Ok(message) => Some(message),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(message) = message else { return };
        match message {
            Message::Open { stream } => {
                parts.insert(stream, Part::default());
            }
            Message::Block { stream, block, hashed } => {
                parts.entry(stream).or_default().queued.push_back((block, hashed, Instant::now()));
            }
            Message::Finish { stream, tail, digest } => {
                parts.entry(stream).or_default().finish = Some((tail, digest));
                finish_drained(&mut parts);
            }
            Message::Close { stream } => {
                parts.remove(&stream);
            }
        }
    }
}

/// Hashes the oldest waiting block of each part, up to [`MAX_LANES`] parts.
fn hash_batch(parts: &mut HashMap<u64, Part>) {
    let mut waiting: Vec<(u64, Instant)> = parts
        .iter()
        .filter_map(|(&stream, part)| part.queued.front().map(|(_, _, at)| (stream, *at)))
        .collect();
    waiting.sort_by_key(|&(_, at)| at);
    waiting.truncate(MAX_LANES);
    let mut batch: Vec<(u64, Bytes, oneshot::Sender<()>)> = waiting
        .iter()
        .map(|(stream, _)| {
            let (block, hashed, _) =
                parts.get_mut(stream).and_then(|part| part.queued.pop_front()).expect("waiting");
            (*stream, block, hashed)
        })
        .collect();
    let mut progress: Vec<Md5State> = batch.iter().map(|(stream, _, _)| parts[stream].progress).collect();
    let blocks: Vec<&[u8]> = batch.iter().map(|(_, block, _)| &block[..]).collect();
    update_many(&mut progress, &blocks);
    for ((stream, block, hashed), progress) in batch.drain(..).zip(progress) {
        parts.get_mut(&stream).expect("still here").progress = progress;
        // The block goes before the answer, so its owner may get it back unshared.
        drop(block);
        let _ = hashed.send(()); // a part given up on no longer waits
    }
    finish_drained(parts);
}

/// Answers every finishing part whose blocks are all hashed.
fn finish_drained(parts: &mut HashMap<u64, Part>) {
    let done: Vec<u64> = parts
        .iter()
        .filter(|(_, part)| part.finish.is_some() && part.queued.is_empty())
        .map(|(&stream, _)| stream)
        .collect();
    for stream in done {
        let mut part = parts.remove(&stream).expect("listed");
        let (tail, digest) = part.finish.take().expect("finishing");
        part.progress.update(&tail);
        let _ = digest.send(part.progress.finalize());
    }
}

/// The MD5 of one part, fed block by block to the shared MD5 thread, which
/// hashes it beside the other parts being received.
#[derive(Debug)]
pub struct HashStream {
    stream: u64,
    /// Blocks sent and not yet hashed, oldest first.
    queued: VecDeque<oneshot::Receiver<()>>,
    finished: bool,
}

impl HashStream {
    /// A stream for one message, counted among the parts whose blocks the
    /// MD5 thread waits for.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let stream = NEXT.fetch_add(1, Ordering::Relaxed);
        let _ = sender().send(Message::Open { stream });
        Self { stream, queued: VecDeque::new(), finished: false }
    }

    /// Queues `block` (whole 64-byte blocks); waits first while
    /// [`QUEUED_PER_PART`] blocks of this part are still waiting.
    pub async fn update(&mut self, block: Bytes) -> std::io::Result<()> {
        while self.queued.len() >= QUEUED_PER_PART {
            let oldest = self.queued.pop_front().expect("not empty");
            oldest.await.map_err(|_| stopped())?;
        }
        let (hashed, waiting) = oneshot::channel();
        sender().send(Message::Block { stream: self.stream, block, hashed }).map_err(|_| stopped())?;
        self.queued.push_back(waiting);
        Ok(())
    }

    /// The digest of the blocks and then `tail`, of any length.
    pub async fn finish(mut self, tail: &[u8]) -> std::io::Result<[u8; 16]> {
        self.finished = true;
        let (digest, answer) = oneshot::channel();
        sender()
            .send(Message::Finish { stream: self.stream, tail: tail.to_vec(), digest })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

impl Drop for HashStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = sender().send(Message::Close { stream: self.stream });
        }
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
