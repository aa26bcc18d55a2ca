//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain (each 64-byte step needs the one before), so a
//! core hashes one message at ~1.8 CPU-s/GiB on the machines Opptak is
//! measured on: more than everything else a part PUT costs the server. Parts
//! arriving at the same time are independent messages, though: up to
//! [`MAX_LANES`] of them go through the lanes of SIMD registers (SSE2 on
//! x86-64, NEON on ARM, through `wide`) at once, in about the time of one.
//! A lone message takes the scalar path, which is as fast as the `md-5` crate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use wide::u32x4;

/// Messages hashed side by side at most (two four-lane registers).
pub const MAX_LANES: usize = 8;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-step constants, `floor(abs(sin(i + 1)) * 2^32)` (RFC 1321).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// A message being hashed: its chaining state and how many bytes went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Md5Progress {
    state: [u32; 4],
    hashed: u64,
}

impl Default for Md5Progress {
    fn default() -> Self {
        Self { state: INIT, hashed: 0 }
    }
}

impl Md5Progress {
    /// Hashes `blocks`, a multiple of 64 bytes.
    pub fn update_blocks(&mut self, blocks: &[u8]) {
        assert!(blocks.len().is_multiple_of(64), "whole 64-byte blocks only");
        for block in blocks.chunks_exact(64) {
            compress_one(&mut self.state, block);
        }
        self.hashed += blocks.len() as u64;
    }

    /// The digest of everything hashed followed by `tail`, of any length.
    pub fn finish(mut self, tail: &[u8]) -> [u8; 16] {
        let whole = tail.len() / 64 * 64;
        self.update_blocks(&tail[..whole]);
        let tail = &tail[whole..];
        let mut last = [0u8; 128];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 0x80;
        let end = if tail.len() < 56 { 64 } else { 128 };
        let bits = (self.hashed + tail.len() as u64).wrapping_mul(8);
        last[end - 8..end].copy_from_slice(&bits.to_le_bytes());
        for block in last[..end].chunks_exact(64) {
            compress_one(&mut self.state, block);
        }
        let mut digest = [0u8; 16];
        for (bytes, word) in digest.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        digest
    }
}

/// Advances each message by its bytes (whole 64-byte blocks; the lengths
/// may differ), hashing up to [`MAX_LANES`] of them side by side.
pub fn update_many(jobs: &mut [(&mut Md5Progress, &[u8])]) {
    assert!(jobs.iter().all(|(_, data)| data.len().is_multiple_of(64)), "whole 64-byte blocks only");
    let mut done = vec![0usize; jobs.len()];
    loop {
        let active: Vec<usize> =
            (0..jobs.len()).filter(|&job| done[job] < jobs[job].1.len()).take(MAX_LANES).collect();
        let Some(&first) = active.first() else { return };
        if active.len() == 1 {
            let (progress, data) = &mut jobs[first];
            progress.update_blocks(&data[done[first]..]);
            done[first] = data.len();
            continue;
        }
        // Run every active lane for as long as the shortest has bytes; the
        // others go on in the next round.
        let len = active.iter().map(|&job| jobs[job].1.len() - done[job]).min().expect("not empty");
        let slices: Vec<&[u8]> = active.iter().map(|&job| &jobs[job].1[done[job]..done[job] + len]).collect();
        let mut states: Vec<[u32; 4]> = active.iter().map(|&job| jobs[job].0.state).collect();
        if active.len() <= 4 {
            run_lanes::<1>(&mut states, &slices);
        } else {
            run_lanes::<2>(&mut states, &slices);
        }
        for (&job, state) in active.iter().zip(states) {
            jobs[job].0.state = state;
            jobs[job].0.hashed += len as u64;
            done[job] += len;
        }
    }
}

/// Hashes `slices` (equal lengths, at most `4 * G`) into `states` in `G`
/// four-lane registers; unused lanes hash a copy of the first slice and are
/// dropped.
fn run_lanes<const G: usize>(states: &mut [[u32; 4]], slices: &[&[u8]]) {
    let lane = |index: usize| index.min(slices.len() - 1);
    let gather = |word: usize| -> [u32x4; G] {
        std::array::from_fn(|group| {
            u32x4::new(std::array::from_fn(|i| {
                let index = group * 4 + i;
                if index < states.len() { states[index][word] } else { INIT[word] }
            }))
        })
    };
    let mut state = [gather(0), gather(1), gather(2), gather(3)];
    let len = slices[0].len();
    for offset in (0..len).step_by(64) {
        let blocks: [[&[u8]; 4]; G] = std::array::from_fn(|group| {
            std::array::from_fn(|i| &slices[lane(group * 4 + i)][offset..offset + 64])
        });
        compress_groups(&mut state, &blocks);
    }
    for (index, out) in states.iter_mut().enumerate() {
        for (word, value) in out.iter_mut().enumerate() {
            *value = state[word][index / 4].to_array()[index % 4];
        }
    }
}

/// The 64 steps of one block, unrolled so that every rotation and message
/// word is a constant: `$step!(f, a, b, c, d, k, s, w)` for each
/// (the names are passed in, as macros cannot see the caller's).
macro_rules! md5_steps {
    ($step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $f:ident, $g:ident, $h:ident, $i:ident) => {
        md5_steps!(@round $step, $a, $b, $c, $d, $f, 0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [7, 12, 17, 22]);
        md5_steps!(@round $step, $a, $b, $c, $d, $g, 16, [1, 6, 11, 0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12], [5, 9, 14, 20]);
        md5_steps!(@round $step, $a, $b, $c, $d, $h, 32, [5, 8, 11, 14, 1, 4, 7, 10, 13, 0, 3, 6, 9, 12, 15, 2], [4, 11, 16, 23]);
        md5_steps!(@round $step, $a, $b, $c, $d, $i, 48, [0, 7, 14, 5, 12, 3, 10, 1, 8, 15, 6, 13, 4, 11, 2, 9], [6, 10, 15, 21]);
    };
    (@round $step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $f:ident, $base:literal,
     [$w0:literal, $w1:literal, $w2:literal, $w3:literal, $w4:literal, $w5:literal, $w6:literal, $w7:literal,
      $w8:literal, $w9:literal, $w10:literal, $w11:literal, $w12:literal, $w13:literal, $w14:literal, $w15:literal],
     [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
        $step!($f, $a, $b, $c, $d, $base, $s0, $w0);
        $step!($f, $d, $a, $b, $c, $base + 1, $s1, $w1);
        $step!($f, $c, $d, $a, $b, $base + 2, $s2, $w2);
        $step!($f, $b, $c, $d, $a, $base + 3, $s3, $w3);
        $step!($f, $a, $b, $c, $d, $base + 4, $s0, $w4);
        $step!($f, $d, $a, $b, $c, $base + 5, $s1, $w5);
        $step!($f, $c, $d, $a, $b, $base + 6, $s2, $w6);
        $step!($f, $b, $c, $d, $a, $base + 7, $s3, $w7);
        $step!($f, $a, $b, $c, $d, $base + 8, $s0, $w8);
        $step!($f, $d, $a, $b, $c, $base + 9, $s1, $w9);
        $step!($f, $c, $d, $a, $b, $base + 10, $s2, $w10);
        $step!($f, $b, $c, $d, $a, $base + 11, $s3, $w11);
        $step!($f, $a, $b, $c, $d, $base + 12, $s0, $w12);
        $step!($f, $d, $a, $b, $c, $base + 13, $s1, $w13);
        $step!($f, $c, $d, $a, $b, $base + 14, $s2, $w14);
        $step!($f, $b, $c, $d, $a, $base + 15, $s3, $w15);
    };
}

/// One 64-byte block into each lane of `G` registers, the registers'
/// steps interleaved so that the core works on one while the other waits.
#[inline(always)]
fn compress_groups<const G: usize>(state: &mut [[u32x4; G]; 4], blocks: &[[&[u8]; 4]; G]) {
    let m: [[u32x4; 16]; G] = std::array::from_fn(|group| {
        std::array::from_fn(|index| {
            u32x4::new(std::array::from_fn(|lane| {
                let bytes = &blocks[group][lane][index * 4..index * 4 + 4];
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            }))
        })
    });
    let [mut a, mut b, mut c, mut d] = *state;
    let f = |b: u32x4, c: u32x4, d: u32x4| d ^ (b & (c ^ d));
    let g = |b: u32x4, c: u32x4, d: u32x4| c ^ (d & (b ^ c));
    let h = |b: u32x4, c: u32x4, d: u32x4| b ^ c ^ d;
    let i = |b: u32x4, c: u32x4, d: u32x4| c ^ (b | !d);
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:literal, $w:literal) => {
            for j in 0..G {
                let x = $a[j] + $f($b[j], $c[j], $d[j]) + (m[j][$w] + u32x4::splat(K[$k]));
                $a[j] = $b[j] + ((x << $s) | (x >> (32 - $s)));
            }
        };
    }
    md5_steps!(step, a, b, c, d, f, g, h, i);
    for (words, added) in state.iter_mut().zip([a, b, c, d]) {
        for (word, value) in words.iter_mut().zip(added) {
            *word += value;
        }
    }
}

/// One 64-byte block into one message's state.
#[inline(always)]
fn compress_one(state: &mut [u32; 4], block: &[u8]) {
    let m: [u32; 16] = std::array::from_fn(|index| {
        let bytes = &block[index * 4..index * 4 + 4];
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    });
    let [mut a, mut b, mut c, mut d] = *state;
    let f = |b: u32, c: u32, d: u32| d ^ (b & (c ^ d));
    let g = |b: u32, c: u32, d: u32| c ^ (d & (b ^ c));
    let h = |b: u32, c: u32, d: u32| b ^ c ^ d;
    let i = |b: u32, c: u32, d: u32| c ^ (b | !d);
    macro_rules! step {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:literal, $w:literal) => {
            let x = $a.wrapping_add($f($b, $c, $d)).wrapping_add(m[$w].wrapping_add(K[$k]));
            $a = $b.wrapping_add(x.rotate_left($s));
        };
    }
    md5_steps!(step, a, b, c, d, f, g, h, i);
    for (word, value) in state.iter_mut().zip([a, b, c, d]) {
        *word = word.wrapping_add(value);
    }
}

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
    progress: Md5Progress,
    block: Bytes,
    done: oneshot::Sender<Md5Progress>,
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
        let mut progress: Vec<Md5Progress> = batch.iter().map(|job| job.progress).collect();
        let mut lanes: Vec<(&mut Md5Progress, &[u8])> =
            progress.iter_mut().zip(&batch).map(|(progress, job)| (progress, &job.block[..])).collect();
        update_many(&mut lanes);
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
    progress: Md5Progress,
    pending: Option<oneshot::Receiver<Md5Progress>>,
}

impl HashStream {
    /// A stream for one message, counted among the parts whose blocks the
    /// MD5 thread waits for.
    pub fn new() -> Self {
        hasher().streams.fetch_add(1, Ordering::Relaxed);
        Self { progress: Md5Progress::default(), pending: None }
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
        Ok(self.progress.finish(tail))
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

    #[test]
    fn one_message_matches_md5_at_every_tail_length() {
        let data = noise(4096 + 200, 7);
        for len in (0..300).chain([1000, 4095, 4096, 4097, 4296]) {
            let digest = Md5Progress::default().finish(&data[..len]);
            assert_eq!(digest[..], md5::Md5::digest(&data[..len])[..], "length {len}");
        }
    }

    #[test]
    fn messages_side_by_side_match_md5_whatever_their_count_and_lengths() {
        for count in [1usize, 2, 3, 4, 5, 7, 8, 9, 13] {
            let messages: Vec<Vec<u8>> =
                (0..count).map(|i| noise(64 * (3 + 5 * i) + i * 7, i as u32 + 11)).collect();
            let mut progress = vec![Md5Progress::default(); count];
            // Two rounds of blocks of different sizes, then each tail.
            let split: Vec<usize> = messages.iter().map(|m| (m.len() / 64 / 2) * 64).collect();
            for round in 0..2 {
                let mut jobs: Vec<(&mut Md5Progress, &[u8])> = progress
                    .iter_mut()
                    .zip(&messages)
                    .zip(&split)
                    .map(|((p, m), &s)| {
                        let whole = m.len() / 64 * 64;
                        (p, if round == 0 { &m[..s] } else { &m[s..whole] })
                    })
                    .collect();
                update_many(&mut jobs);
            }
            for (i, (p, m)) in progress.into_iter().zip(&messages).enumerate() {
                let digest = p.finish(&m[m.len() / 64 * 64..]);
                assert_eq!(digest[..], md5::Md5::digest(m)[..], "{count} messages, message {i}");
            }
        }
    }
}
