//! MD5 of several parts side by side.
//!
//! One MD5 is a serial chain: each 64-byte step needs the one before, so a
//! core hashes one message at ~1.4 CPU-s/GiB on the machines Opptak is
//! measured on — more than everything else an upload costs the client.
//! Independent parts fill the lanes of SIMD registers instead
//! ([`opptak_api::md5`]), several in about the time of one.
//!
//! The parts are read from the file [`CHUNK`] bytes a lane at a time, so
//! the working set stays in the CPU's cache, and their bytes are not kept.

use std::fs::File;
#[cfg(unix)]
use std::os::unix::fs::FileExt as _;
#[cfg(windows)]
use std::os::windows::fs::FileExt as _;

use opptak_api::md5::{Md5State, finalize_many, update_many};

/// MD5s computed side by side.
pub const LANES: usize = opptak_api::md5::FULL_BATCH;
/// Bytes of each lane read from the file and hashed at a time.
const CHUNK: usize = 256 * 1024;

/// The MD5 of each `(offset, len)` range of `file`, in order; [`LANES`] at
/// a time when there are several.
pub fn md5_each(file: &File, ranges: &[(u64, u64)]) -> std::io::Result<Vec<[u8; 16]>> {
    let mut digests = Vec::with_capacity(ranges.len());
    for batch in ranges.chunks(LANES) {
        let mut states = vec![Md5State::new(); batch.len()];
        let mut buffers: Vec<Vec<u8>> = batch.iter().map(|_| vec![0; CHUNK]).collect();
        let longest = batch.iter().map(|&(_, len)| len).max().unwrap_or(0);
        let mut done = 0u64;
        while done < longest {
            let mut slices = Vec::with_capacity(batch.len());
            for (&(offset, len), buffer) in batch.iter().zip(&mut buffers) {
                let take = len.saturating_sub(done).min(CHUNK as u64) as usize;
                read_exact_at(file, &mut buffer[..take], offset + done)?;
                slices.push(&buffer[..take]);
            }
            update_many(&mut states, &slices);
            done += CHUNK as u64;
        }
        digests.extend(finalize_many(&states));
    }
    Ok(digests)
}

/// Fills `buffer` from `file` at `offset` without moving a shared cursor,
/// so lanes (and other readers of the same handle) never disturb each other.
#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    file.read_exact_at(buffer, offset)
}

/// Windows has no `read_exact_at`; `seek_read` may return fewer bytes than
/// asked, so it is repeated until the buffer is full.
#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => {
                buffer = &mut buffer[read..];
                offset += read as u64;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
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

    /// A file holding `messages` one after another, and their ranges.
    fn file_of(messages: &[Vec<u8>]) -> (File, Vec<(u64, u64)>) {
        let mut file = tempfile::tempfile().unwrap();
        let mut ranges = Vec::new();
        let mut offset = 0;
        for message in messages {
            file.write_all(message).unwrap();
            ranges.push((offset, message.len() as u64));
            offset += message.len() as u64;
        }
        (file, ranges)
    }

    #[test]
    fn lanes_agree_with_md5_at_every_length_around_the_block_and_padding_edges() {
        let lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000];
        let messages: Vec<Vec<u8>> =
            lengths.iter().enumerate().map(|(i, &len)| noise(len, i as u32 + 7)).collect();
        let (file, ranges) = file_of(&messages);
        let digests = md5_each(&file, &ranges).unwrap();
        for (message, digest) in messages.iter().zip(digests) {
            assert_eq!(digest, reference(message), "{} bytes", message.len());
        }
    }

    #[test]
    fn overlapping_uneven_ranges_past_a_chunk_in_any_count() {
        // Lengths past CHUNK, uneven, and one ending inside the padding edge.
        let data = noise(3 * CHUNK + 4 * 1000 + 77, 99);
        let (file, _) = file_of(std::slice::from_ref(&data));
        let ranges = [(0, CHUNK + 5), (CHUNK + 5, CHUNK), (2 * CHUNK + 5, 120), (100, 2 * CHUNK + 3000)];
        for count in 1..=ranges.len() {
            let asked: Vec<(u64, u64)> =
                ranges[..count].iter().map(|&(offset, len)| (offset as u64, len as u64)).collect();
            let digests = md5_each(&file, &asked).unwrap();
            for (&(offset, len), digest) in ranges.iter().zip(digests) {
                assert_eq!(digest, reference(&data[offset..offset + len]), "{count} parts");
            }
        }
    }

    #[test]
    fn more_ranges_than_lanes_go_in_batches() {
        let messages: Vec<Vec<u8>> = (0..LANES * 2 + 1).map(|i| noise(200 + i * 64, i as u32)).collect();
        let (file, ranges) = file_of(&messages);
        let digests = md5_each(&file, &ranges).unwrap();
        assert_eq!(digests.len(), messages.len());
        for (message, digest) in messages.iter().zip(digests) {
            assert_eq!(digest, reference(message));
        }
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_error() {
        let (file, _) = file_of(&[noise(100, 1)]);
        assert!(md5_each(&file, &[(0, 100), (50, 100)]).is_err());
    }
}
