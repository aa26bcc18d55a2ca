//! A part's bytes, read from the file as they are sent.
//!
//! A part read whole before its PUT is on the wire for only part of its
//! turn; the server hashes the parts it is receiving side by side, so parts
//! that arrive one after another cost it up to 4 times the MD5 work of
//! parts that arrive together. Streaming each part from the file keeps all
//! the parts in flight arriving at once, and memory holds a few chunks per
//! part instead of whole parts.
//!
//! The chunks' buffers are used again ([`ChunkPool`]): freshly allocated,
//! each one's pages fault on first touch, and a 1 GiB upload took 186
//! thousand page faults and twice the system time.

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes read from the file and sent at a time: large enough for few
/// system calls, small enough to stay in the CPU's cache from the read to
/// the socket.
const CHUNK: u64 = 256 * 1024;
/// Chunks read ahead of the socket for each part.
const CHUNKS_AHEAD: usize = 2;
/// Bytes handed to the connection at a time. Smaller than a chunk, so the
/// stall watch sees progress every few seconds even at a few kbit/s per
/// connection (a chunk is sliced, not copied).
const SLICE: usize = 32 * 1024;
/// The chunk buffers a part being streamed uses at most: those read ahead,
/// the one being read and the one being sent.
pub const BUFFERED_PER_PART: u64 = (CHUNKS_AHEAD as u64 + 2) * CHUNK;

/// Where a streamed part's chunks are also sent, with their offsets in the
/// file (for the file's SHA-256).
pub type ChunkTap = std::sync::mpsc::Sender<(u64, Bytes)>;

/// The body of one PUT attempt, and the thread reading it from the file.
pub struct PartBody {
    /// The HTTP body: exactly the part's length unless the read fails.
    pub body: reqwest::Body,
    /// How the read ended: an error if the file could not be read or ends
    /// before the part does; `Ok` also when the request stopped reading.
    pub read: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl PartBody {
    /// Streams `size` bytes of the file at `path` from `offset`, read into
    /// buffers from `pool`; `tap` gets each chunk as well, and `progress`
    /// counts every slice the connection takes.
    pub fn stream(
        path: PathBuf,
        offset: u64,
        size: u64,
        pool: Arc<ChunkPool>,
        tap: Option<ChunkTap>,
        progress: Progress,
    ) -> Self {
        let (chunks, mut queue) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_AHEAD);
        let read = tokio::task::spawn_blocking(move || {
            let outcome = read_chunks(&path, offset, size, &pool, |at, chunk| {
                if let Some(tap) = &tap {
                    let _ = tap.send((at, chunk.clone()));
                }
                chunks.blocking_send(Ok(chunk)).is_ok()
            });
            if let Err(err) = &outcome {
                // The body fails too, so the server does not take a short part.
                let _ = chunks.blocking_send(Err(std::io::Error::new(err.kind(), err.to_string())));
            }
            outcome
        });
        let mut current = Bytes::new();
        let stream = futures::stream::poll_fn(move |context| {
            if current.is_empty() {
                match queue.poll_recv(context) {
                    std::task::Poll::Ready(Some(Ok(chunk))) => current = chunk,
                    other => return other,
                }
            }
            let slice = current.split_to(SLICE.min(current.len()));
            progress.moved(slice.len() as u64);
            std::task::Poll::Ready(Some(Ok(slice)))
        });
        Self { body: reqwest::Body::wrap_stream(stream), read }
    }
}

/// Bytes a PUT moved so far, in either direction, for the stall watch.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Counts `bytes` more moved.
    pub fn moved(&self, bytes: u64) {
        // Counted even for 0 bytes (an answer's head arriving): it is a sign of life.
        self.0.fetch_add(bytes.max(1), Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `timeout`; checks a few times
    /// per `timeout`, so it notices within a quarter of it.
    pub async fn stalled(&self, timeout: Duration) -> Duration {
        let check = (timeout / 4).max(Duration::from_millis(50));
        let mut seen = self.0.load(Ordering::Relaxed);
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(check).await;
            let now = self.0.load(Ordering::Relaxed);
            if now != seen {
                (seen, since) = (now, tokio::time::Instant::now());
            } else if since.elapsed() >= timeout {
                return since.elapsed();
            }
        }
    }
}

/// Reads `size` bytes of the file from `offset`, [`CHUNK`] at a time, and
/// hands each to `send` until it returns false.
fn read_chunks(
    path: &std::path::Path,
    offset: u64,
    size: u64,
    pool: &Arc<ChunkPool>,
    mut send: impl FnMut(u64, Bytes) -> bool,
) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut at = offset;
    while at < offset + size {
        let len = CHUNK.min(offset + size - at);
        let mut chunk = pool.take();
        (&mut file).take(len).read_to_end(&mut chunk)?;
        if chunk.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends before byte {}", offset + size),
            ));
        }
        if !send(at, Bytes::from_owner(Pooled { chunk, pool: pool.clone() })) {
            return Ok(());
        }
        at += len;
    }
    Ok(())
}

/// Chunk buffers waiting to be used again.
#[derive(Debug)]
pub struct ChunkPool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most; more are freed.
    keep: usize,
}

impl ChunkPool {
    /// A pool that keeps buffers for up to `bytes` (at least one buffer):
    /// as many as are ever in use at once, read ahead, being sent or
    /// waiting to be hashed, so that none is allocated afresh.
    pub fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self { free: Mutex::new(Vec::new()), keep: bytes.div_ceil(CHUNK).max(1) as usize })
    }

    /// An empty buffer with room for a chunk (not zeroed: the read fills it).
    fn take(&self) -> Vec<u8> {
        let mut buffer = self.free.lock().expect("pool lock").pop().unwrap_or_default();
        buffer.clear();
        buffer.reserve_exact(CHUNK as usize);
        buffer
    }
}

/// A chunk lent out as [`Bytes`]; its buffer goes back to the pool when
/// the last clone is dropped (sent, and hashed if tapped).
struct Pooled {
    chunk: Vec<u8>,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.chunk
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().expect("pool lock");
        if free.len() < self.pool.keep {
            free.push(std::mem::take(&mut self.chunk));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file_of(data: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(data).unwrap();
        file
    }

    #[test]
    fn chunks_cover_the_range_exactly_with_their_offsets() {
        let data: Vec<u8> = (0..3 * CHUNK as usize + 1000).map(|i| (i * 7 + 3) as u8).collect();
        let file = file_of(&data);
        let (offset, size) = (100, 2 * CHUNK + 500);
        let mut seen = Vec::new();
        read_chunks(file.path(), offset, size, &ChunkPool::new(1), |at, chunk| {
            assert_eq!(at, offset + seen.len() as u64, "chunks come in order, without gaps");
            seen.extend_from_slice(&chunk);
            true
        })
        .unwrap();
        assert_eq!(seen, data[offset as usize..(offset + size) as usize]);
    }

    #[test]
    fn a_file_shorter_than_the_part_is_an_unexpected_eof() {
        let file = file_of(&[1; 100]);
        let err = read_chunks(file.path(), 50, 100, &ChunkPool::new(1), |_, _| true).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_chunk_s_buffer_is_used_again_once_every_clone_is_gone() {
        let pool = ChunkPool::new(1);
        let file = file_of(&[7; 100]);
        let mut chunks = Vec::new();
        read_chunks(file.path(), 0, 100, &pool, |_, chunk| {
            chunks.push(chunk);
            true
        })
        .unwrap();
        let chunk = chunks.pop().unwrap();
        let (clone, address) = (chunk.clone(), chunk.as_ptr());
        drop(chunk);
        assert!(pool.free.lock().unwrap().is_empty(), "a clone keeps it lent out");
        drop(clone);
        let again = pool.take();
        assert_eq!(again.as_ptr(), address, "the buffer came back");
    }

    #[tokio::test]
    async fn the_body_and_the_tap_carry_the_part_and_a_short_file_fails_both() {
        let data: Vec<u8> = (0..CHUNK as usize + 10).map(|i| (i * 13) as u8).collect();
        let file = file_of(&data);
        let (tap, tapped) = std::sync::mpsc::channel();
        let pool = ChunkPool::new(4 * CHUNK);
        let progress = Progress::default();
        let part = PartBody::stream(
            file.path().to_path_buf(),
            5,
            CHUNK + 5,
            pool.clone(),
            Some(tap),
            progress.clone(),
        );
        let mut stream = http_body_util::BodyDataStream::new(part.body);
        let mut sent = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            sent.extend_from_slice(&chunk.unwrap());
        }
        part.read.await.unwrap().unwrap();
        assert_eq!(sent, data[5..]);
        assert_eq!(progress.0.load(Ordering::Relaxed), CHUNK + 5, "every byte taken is counted");
        let tapped: Vec<u8> = tapped.try_iter().flat_map(|(_, chunk)| chunk.to_vec()).collect();
        assert_eq!(tapped, data[5..]);

        let short =
            PartBody::stream(file.path().to_path_buf(), 5, 2 * CHUNK, pool, None, Progress::default());
        let mut stream = http_body_util::BodyDataStream::new(short.body);
        let mut failed = false;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            failed |= chunk.is_err();
        }
        assert!(failed, "the body fails rather than end short");
        assert_eq!(short.read.await.unwrap().unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_stall_is_nothing_moving_for_the_timeout_not_slowness() {
        let progress = Progress::default();
        let timeout = Duration::from_millis(600);
        let watch = tokio::spawn({
            let progress = progress.clone();
            async move { progress.stalled(timeout).await }
        });
        // A byte every 200 ms is slow, but never 600 ms without one.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            progress.moved(1);
            assert!(!watch.is_finished(), "a trickle is not a stall");
        }
        let started = std::time::Instant::now();
        let stalled_for = tokio::time::timeout(Duration::from_secs(5), watch).await.unwrap().unwrap();
        assert!(stalled_for >= timeout, "{stalled_for:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "noticed promptly: {:?}", started.elapsed());
    }
}
