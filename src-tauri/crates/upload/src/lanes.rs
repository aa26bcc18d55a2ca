//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain: each 64-byte step needs the one before, so a
//! core hashes one message at ~1.4 CPU-s/GiB on the machines Opptak is
//! measured on — more than everything else an upload costs the client.
//! Independent parts fill the lanes of SIMD registers instead
//! ([`opptak_api::md5`]), several in about the time of one.
//!
//! The parts come from memory (bytes already read to be sent) or straight
//! from the file, read [`CHUNK`] bytes a lane at a time so the working set
//! stays in the CPU's cache.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use opptak_api::md5::{Md5State, finalize_many, update_many};

/// MD5s computed side by side.
pub const LANES: usize = opptak_api::md5::FULL_BATCH;
/// Bytes of each lane read from the file and hashed at a time.
const CHUNK: usize = 256 * 1024;

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
        let mut states = vec![Md5State::new(); batch.len()];
        let mut scratch: Vec<Vec<u8>> = batch
            .iter()
            .map(|input| if matches!(input, Input::File { .. }) { vec![0; CHUNK] } else { Vec::new() })
            .collect();
        let longest = batch.iter().map(Input::len).max().unwrap_or(0);
        let mut done = 0u64;
        while done < longest {
            let take = |input: &Input<'_>| input.len().saturating_sub(done).min(CHUNK as u64) as usize;
            for (input, buffer) in batch.iter().zip(&mut scratch) {
                if let Input::File { offset, .. } = input {
                    file.read_exact_at(&mut buffer[..take(input)], offset + done)?;
                }
            }
            let slices: Vec<&[u8]> = batch
                .iter()
                .zip(&scratch)
                .map(|(input, buffer)| match input {
                    Input::Memory(bytes) => {
                        let start = (done as usize).min(bytes.len());
                        &bytes[start..start + take(input)]
                    }
                    Input::File { .. } => &buffer[..take(input)],
                })
                .collect();
            update_many(&mut states, &slices);
            done += CHUNK as u64;
        }
        digests.extend(finalize_many(&states));
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

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
