//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain: each step needs the one before, so a core
//! runs it at ~5 cycles a byte whatever its width (1.4 CPU-s/GiB on the
//! machines Opptak is measured on, more than everything else an upload
//! costs the client together). [`LANES`] independent MD5s put in the lanes
//! of SIMD registers (SSE2 on x86-64, NEON on ARM, through `wide`) run in
//! about the time of one, ~5× less CPU per byte.
//!
//! The parts come from memory (bytes already read to be sent) or straight
//! from the file, read [`CHUNK`] bytes a lane at a time so the working set
//! stays in the CPU's cache.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use md5::Digest as _;
use wide::u32x4;

/// Four-lane registers hashed together: two keep a core's vector units
/// busy while each waits on its own chain.
const GROUPS: usize = 2;
/// MD5s computed side by side.
pub const LANES: usize = 4 * GROUPS;
/// Bytes of each lane read from the file and hashed at a time.
const CHUNK: usize = 256 * 1024;

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

/// Per-step left rotations (RFC 1321).
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5,
    9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6,
    10, 15, 21, 6, 10, 15, 21,
];

/// Where the bytes of one part are.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Already in memory.
    Memory(&'a [u8]),
    /// `len` bytes of the file from `offset`.
    File {
        /// Where they start.
        offset: u64,
        /// How many.
        len: u64,
    },
}

impl Input<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }
}

/// The MD5 of each input, in order; [`LANES`] at a time when there are
/// several. File inputs are read from `file`.
pub fn md5_each(file: &File, inputs: &[Input<'_>]) -> std::io::Result<Vec<[u8; 16]>> {
    let mut digests = Vec::with_capacity(inputs.len());
    for batch in inputs.chunks(LANES) {
        if let [single] = batch {
            digests.push(md5_one(file, *single)?);
        } else {
            digests.extend(md5_lanes(file, batch)?);
        }
    }
    Ok(digests)
}

/// One MD5 alone: the scalar code is faster than lanes left empty.
fn md5_one(file: &File, input: Input<'_>) -> std::io::Result<[u8; 16]> {
    match input {
        Input::Memory(bytes) => Ok(md5::Md5::digest(bytes).into()),
        Input::File { offset, len } => {
            let mut hasher = md5::Md5::new();
            let mut buffer = vec![0; CHUNK];
            let mut done = 0;
            while done < len {
                let take = (len - done).min(CHUNK as u64) as usize;
                file.read_exact_at(&mut buffer[..take], offset + done)?;
                hasher.update(&buffer[..take]);
                done += take as u64;
            }
            Ok(hasher.finalize().into())
        }
    }
}

/// Up to [`LANES`] MD5s side by side. Lanes advance together by whole
/// 64-byte blocks; a lane whose input ends early keeps its state from
/// then on (the lanes after it hash zeros), and each ends alone with its
/// last partial block and the padding.
fn md5_lanes(file: &File, inputs: &[Input<'_>]) -> std::io::Result<Vec<[u8; 16]>> {
    debug_assert!(inputs.len() <= LANES);
    let full: Vec<u64> = inputs.iter().map(|input| input.len() / 64 * 64).collect();
    let mut states: Vec<Option<[u32; 4]>> = vec![None; inputs.len()];
    let mut scratch: Vec<Vec<u8>> = inputs
        .iter()
        .map(|input| if matches!(input, Input::File { .. }) { vec![0; CHUNK] } else { Vec::new() })
        .collect();
    let idle = vec![0u8; CHUNK];
    let mut lanes = Md5Lanes::new();
    let mut done = 0u64;
    loop {
        for (lane, state) in states.iter_mut().enumerate() {
            if state.is_none() && full[lane] == done {
                *state = Some(lanes.state(lane));
            }
        }
        let Some(step) = (0..inputs.len())
            .filter(|&lane| states[lane].is_none())
            .map(|lane| (full[lane] - done).min(CHUNK as u64))
            .min()
        else {
            break;
        };
        let step = step as usize;
        for (lane, input) in inputs.iter().enumerate() {
            if let (None, Input::File { offset, .. }) = (states[lane], input) {
                file.read_exact_at(&mut scratch[lane][..step], offset + done)?;
            }
        }
        let slices: [&[u8]; LANES] = std::array::from_fn(|lane| match inputs.get(lane) {
            Some(_) if states[lane].is_some() => &idle[..step],
            Some(Input::Memory(bytes)) => &bytes[done as usize..done as usize + step],
            Some(Input::File { .. }) => &scratch[lane][..step],
            None => &idle[..step],
        });
        lanes.update(slices);
        done += step as u64;
    }
    let mut digests = Vec::with_capacity(inputs.len());
    for (lane, input) in inputs.iter().enumerate() {
        let tail_len = (input.len() - full[lane]) as usize;
        let tail = match input {
            Input::Memory(bytes) => bytes[full[lane] as usize..].to_vec(),
            Input::File { offset, .. } => {
                let mut tail = vec![0; tail_len];
                file.read_exact_at(&mut tail, offset + full[lane])?;
                tail
            }
        };
        let state = states[lane].expect("every lane ended");
        digests.push(finish(state, &tail, input.len()));
    }
    Ok(digests)
}

/// The state of [`LANES`] MD5s: lane `l` is word `l % 4` of group `l / 4`.
struct Md5Lanes {
    a: [u32x4; GROUPS],
    b: [u32x4; GROUPS],
    c: [u32x4; GROUPS],
    d: [u32x4; GROUPS],
}

#[inline(always)]
fn rotl<const LEFT: u32, const RIGHT: u32>(x: u32x4) -> u32x4 {
    (x << LEFT) | (x >> RIGHT)
}

#[inline(always)]
fn f(b: u32x4, c: u32x4, d: u32x4) -> u32x4 {
    d ^ (b & (c ^ d))
}
#[inline(always)]
fn g(b: u32x4, c: u32x4, d: u32x4) -> u32x4 {
    c ^ (d & (b ^ c))
}
#[inline(always)]
fn h(b: u32x4, c: u32x4, d: u32x4) -> u32x4 {
    b ^ c ^ d
}
#[inline(always)]
fn i(b: u32x4, c: u32x4, d: u32x4) -> u32x4 {
    c ^ (b | !d)
}

/// Step `$i` of RFC 1321 on every group: `$f` the round's function, `$w`
/// the message word, `$s` the rotation.
macro_rules! step {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident, $w:literal, $i:literal, $s:literal) => {
        for group in 0..GROUPS {
            let x = $a[group] + ($m[group][$w] + u32x4::splat(K[$i])) + $f($b[group], $c[group], $d[group]);
            $a[group] = $b[group] + rotl::<$s, { 32 - $s }>(x);
        }
    };
}

impl Md5Lanes {
    fn new() -> Self {
        let init = |word: u32| [u32x4::splat(word); GROUPS];
        Self { a: init(INIT[0]), b: init(INIT[1]), c: init(INIT[2]), d: init(INIT[3]) }
    }

    /// Hashes the next bytes of every lane: slices of one length, a
    /// multiple of 64.
    fn update(&mut self, lanes: [&[u8]; LANES]) {
        let len = lanes[0].len();
        debug_assert!(len.is_multiple_of(64) && lanes.iter().all(|lane| lane.len() == len));
        // Plain loops, not `array::from_fn`: its closure is not always
        // inlined, and a call per block costs more than the block.
        let mut blocks = [&[0u8; 64]; LANES];
        for offset in (0..len).step_by(64) {
            for (block, lane) in blocks.iter_mut().zip(lanes) {
                *block = lane[offset..offset + 64].try_into().expect("a slice of 64 bytes");
            }
            self.block(&blocks);
        }
    }

    #[inline(always)]
    fn block(&mut self, blocks: &[&[u8; 64]; LANES]) {
        let word = |lane: usize, index: usize| {
            u32::from_le_bytes([
                blocks[lane][index * 4],
                blocks[lane][index * 4 + 1],
                blocks[lane][index * 4 + 2],
                blocks[lane][index * 4 + 3],
            ])
        };
        let mut m = [[u32x4::ZERO; 16]; GROUPS];
        for (group, words) in m.iter_mut().enumerate() {
            let base = group * 4;
            for (index, word_of_lanes) in words.iter_mut().enumerate() {
                *word_of_lanes = u32x4::new([
                    word(base, index),
                    word(base + 1, index),
                    word(base + 2, index),
                    word(base + 3, index),
                ]);
            }
        }
        let (mut a, mut b, mut c, mut d) = (self.a, self.b, self.c, self.d);
        step!(f, a, b, c, d, m, 0, 0, 7);
        step!(f, d, a, b, c, m, 1, 1, 12);
        step!(f, c, d, a, b, m, 2, 2, 17);
        step!(f, b, c, d, a, m, 3, 3, 22);
        step!(f, a, b, c, d, m, 4, 4, 7);
        step!(f, d, a, b, c, m, 5, 5, 12);
        step!(f, c, d, a, b, m, 6, 6, 17);
        step!(f, b, c, d, a, m, 7, 7, 22);
        step!(f, a, b, c, d, m, 8, 8, 7);
        step!(f, d, a, b, c, m, 9, 9, 12);
        step!(f, c, d, a, b, m, 10, 10, 17);
        step!(f, b, c, d, a, m, 11, 11, 22);
        step!(f, a, b, c, d, m, 12, 12, 7);
        step!(f, d, a, b, c, m, 13, 13, 12);
        step!(f, c, d, a, b, m, 14, 14, 17);
        step!(f, b, c, d, a, m, 15, 15, 22);

        step!(g, a, b, c, d, m, 1, 16, 5);
        step!(g, d, a, b, c, m, 6, 17, 9);
        step!(g, c, d, a, b, m, 11, 18, 14);
        step!(g, b, c, d, a, m, 0, 19, 20);
        step!(g, a, b, c, d, m, 5, 20, 5);
        step!(g, d, a, b, c, m, 10, 21, 9);
        step!(g, c, d, a, b, m, 15, 22, 14);
        step!(g, b, c, d, a, m, 4, 23, 20);
        step!(g, a, b, c, d, m, 9, 24, 5);
        step!(g, d, a, b, c, m, 14, 25, 9);
        step!(g, c, d, a, b, m, 3, 26, 14);
        step!(g, b, c, d, a, m, 8, 27, 20);
        step!(g, a, b, c, d, m, 13, 28, 5);
        step!(g, d, a, b, c, m, 2, 29, 9);
        step!(g, c, d, a, b, m, 7, 30, 14);
        step!(g, b, c, d, a, m, 12, 31, 20);

        step!(h, a, b, c, d, m, 5, 32, 4);
        step!(h, d, a, b, c, m, 8, 33, 11);
        step!(h, c, d, a, b, m, 11, 34, 16);
        step!(h, b, c, d, a, m, 14, 35, 23);
        step!(h, a, b, c, d, m, 1, 36, 4);
        step!(h, d, a, b, c, m, 4, 37, 11);
        step!(h, c, d, a, b, m, 7, 38, 16);
        step!(h, b, c, d, a, m, 10, 39, 23);
        step!(h, a, b, c, d, m, 13, 40, 4);
        step!(h, d, a, b, c, m, 0, 41, 11);
        step!(h, c, d, a, b, m, 3, 42, 16);
        step!(h, b, c, d, a, m, 6, 43, 23);
        step!(h, a, b, c, d, m, 9, 44, 4);
        step!(h, d, a, b, c, m, 12, 45, 11);
        step!(h, c, d, a, b, m, 15, 46, 16);
        step!(h, b, c, d, a, m, 2, 47, 23);

        step!(i, a, b, c, d, m, 0, 48, 6);
        step!(i, d, a, b, c, m, 7, 49, 10);
        step!(i, c, d, a, b, m, 14, 50, 15);
        step!(i, b, c, d, a, m, 5, 51, 21);
        step!(i, a, b, c, d, m, 12, 52, 6);
        step!(i, d, a, b, c, m, 3, 53, 10);
        step!(i, c, d, a, b, m, 10, 54, 15);
        step!(i, b, c, d, a, m, 1, 55, 21);
        step!(i, a, b, c, d, m, 8, 56, 6);
        step!(i, d, a, b, c, m, 15, 57, 10);
        step!(i, c, d, a, b, m, 6, 58, 15);
        step!(i, b, c, d, a, m, 13, 59, 21);
        step!(i, a, b, c, d, m, 4, 60, 6);
        step!(i, d, a, b, c, m, 11, 61, 10);
        step!(i, c, d, a, b, m, 2, 62, 15);
        step!(i, b, c, d, a, m, 9, 63, 21);

        for group in 0..GROUPS {
            self.a[group] += a[group];
            self.b[group] += b[group];
            self.c[group] += c[group];
            self.d[group] += d[group];
        }
    }

    /// Lane `lane`'s state words (a, b, c, d).
    fn state(&self, lane: usize) -> [u32; 4] {
        let (group, word) = (lane / 4, lane % 4);
        [self.a[group], self.b[group], self.c[group], self.d[group]].map(|x| x.as_array()[word])
    }
}

/// One 64-byte block of one MD5, for the ends of messages.
fn compress(state: &mut [u32; 4], block: &[u8]) {
    let m: [u32; 16] =
        std::array::from_fn(|i| u32::from_le_bytes(block[i * 4..i * 4 + 4].try_into().expect("4 bytes")));
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => (d ^ (b & (c ^ d)), i),
            1 => (c ^ (d & (b ^ c)), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let x = a.wrapping_add(f).wrapping_add(K[i]).wrapping_add(m[g]);
        (a, d, c) = (d, c, b);
        b = b.wrapping_add(x.rotate_left(S[i]));
    }
    for (word, new) in state.iter_mut().zip([a, b, c, d]) {
        *word = word.wrapping_add(new);
    }
}

/// The digest of a message of `total_len` bytes whose whole blocks left
/// `state` and whose last `tail.len() < 64` bytes are `tail`.
fn finish(mut state: [u32; 4], tail: &[u8], total_len: u64) -> [u8; 16] {
    debug_assert!(tail.len() < 64);
    let mut last = [0u8; 128];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    let end = if tail.len() < 56 { 64 } else { 128 };
    last[end - 8..end].copy_from_slice(&total_len.wrapping_mul(8).to_le_bytes());
    for block in last[..end].chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut digest = [0u8; 16];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    digest
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

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

    fn reference(bytes: &[u8]) -> [u8; 16] {
        md5::Md5::digest(bytes).into()
    }

    #[test]
    fn lanes_agree_with_md5_at_every_length_around_the_block_and_padding_edges() {
        let file = tempfile::tempfile().unwrap();
        let lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000];
        let messages: Vec<Vec<u8>> =
            lengths.iter().enumerate().map(|(i, &len)| noise(len, i as u32 + 7)).collect();
        let inputs: Vec<Input<'_>> = messages.iter().map(|message| Input::Memory(message)).collect();
        let digests = md5_each(&file, &inputs).unwrap();
        for (message, digest) in messages.iter().zip(digests) {
            assert_eq!(digest, reference(message), "{} bytes", message.len());
        }
    }

    #[test]
    fn parts_of_a_file_and_of_memory_mix_in_one_pass_whatever_their_count() {
        // Lengths past CHUNK, uneven, and one ending inside the padding edge.
        let data = noise(3 * CHUNK + 4 * 1000 + 77, 99);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let ranges: Vec<(usize, usize)> =
            vec![(0, CHUNK + 5), (CHUNK + 5, CHUNK), (2 * CHUNK + 5, 120), (2 * CHUNK + 125, CHUNK + 3000)];
        for count in 1..=ranges.len() {
            for memory_lanes in 0..=count {
                let inputs: Vec<Input<'_>> = ranges[..count]
                    .iter()
                    .enumerate()
                    .map(|(lane, &(offset, len))| {
                        if lane < memory_lanes {
                            Input::Memory(&data[offset..offset + len])
                        } else {
                            Input::File { offset: offset as u64, len: len as u64 }
                        }
                    })
                    .collect();
                let digests = md5_each(&file, &inputs).unwrap();
                for (&(offset, len), digest) in ranges.iter().zip(digests) {
                    assert_eq!(digest, reference(&data[offset..offset + len]), "{count} parts");
                }
            }
        }
    }

    #[test]
    fn more_inputs_than_lanes_go_in_batches() {
        let file = tempfile::tempfile().unwrap();
        let messages: Vec<Vec<u8>> = (0..LANES * 2 + 1).map(|i| noise(200 + i * 64, i as u32)).collect();
        let inputs: Vec<Input<'_>> = messages.iter().map(|message| Input::Memory(message)).collect();
        let digests = md5_each(&file, &inputs).unwrap();
        assert_eq!(digests.len(), messages.len());
        for (message, digest) in messages.iter().zip(digests) {
            assert_eq!(digest, reference(message));
        }
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&noise(100, 1)).unwrap();
        let inputs = [Input::File { offset: 0, len: 100 }, Input::File { offset: 50, len: 100 }];
        assert!(md5_each(&file, &inputs).is_err());
    }
}
