//! WAV files that survive a crash: written through hound, their header and
//! samples fsynced every second, and repairable from their length when the
//! process died before it could finish them.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The WAV header hound writes for 16-bit PCM with one or two channels.
/// Above two channels it writes a WAVE_FORMAT_EXTENSIBLE header (68
/// bytes), so a file's header length is measured, never assumed.
#[cfg(test)]
const PCM16_HEADER_LEN: u64 = 44;

/// The largest data chunk Opptak writes into one file. A RIFF size is a
/// `u32`; stopping a little short leaves room for the header.
pub const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 1024 * 1024;

/// A file whose `flush` also fsyncs, so that hound's `flush()` (header
/// update + flush) makes everything written so far durable.
#[derive(Debug)]
struct SyncOnFlush(File);

impl Write for SyncOnFlush {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Seek for SyncOnFlush {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

/// A 16-bit PCM WAV file being recorded.
pub(crate) struct DurableWav {
    path: PathBuf,
    channels: u16,
    writer: hound::WavWriter<BufWriter<SyncOnFlush>>,
    /// The header's length as hound wrote it: 44 bytes for PCM up to two
    /// channels, more for WAVE_FORMAT_EXTENSIBLE.
    header_len: u64,
    data_bytes: u64,
}

fn wav_error(path: &Path, err: hound::Error) -> Error {
    let source = match err {
        hound::Error::IoError(err) => err,
        other => io::Error::other(other.to_string()),
    };
    Error::Write { path: path.to_path_buf(), source }
}

impl DurableWav {
    /// Creates `path` (which must not exist) with a header for `channels`
    /// at `sample_rate`, and fsyncs the header and its directory entry.
    pub(crate) fn create(path: &Path, sample_rate: u32, channels: u16) -> Result<Self> {
        let write_err = |source| Error::Write { path: path.to_path_buf(), source };
        let file =
            OpenOptions::new().write(true).read(true).create_new(true).open(path).map_err(write_err)?;
        let spec = hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(BufWriter::with_capacity(64 * 1024, SyncOnFlush(file)), spec)
            .map_err(|err| wav_error(path, err))?;
        // The header is all the file holds once flushed: its length is what
        // hound chose, which depends on the channels.
        writer.flush().map_err(|err| wav_error(path, err))?;
        let header_len = std::fs::metadata(path).map_err(write_err)?.len();
        let wav = Self { path: path.to_path_buf(), channels, writer, header_len, data_bytes: 0 };
        // The file's name must survive a crash too, not only its bytes.
        // Windows cannot open a folder to flush it; NTFS journals the name.
        #[cfg(unix)]
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(write_err)?;
        }
        Ok(wav)
    }

    /// Audio bytes written so far (durable or not).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The file's length once committed.
    pub(crate) fn len(&self) -> u64 {
        self.header_len + self.data_bytes
    }

    /// Whole frames that still fit before [`MAX_DATA_BYTES`].
    pub(crate) fn frames_left(&self) -> u64 {
        (MAX_DATA_BYTES - self.data_bytes) / (2 * u64::from(self.channels))
    }

    /// Appends samples (interleaved, whole frames).
    pub(crate) fn write(&mut self, samples: &[i16]) -> Result<()> {
        let mut writer = self.writer.get_i16_writer(samples.len() as u32);
        for &sample in samples {
            writer.write_sample(sample);
        }
        writer.flush().map_err(|err| wav_error(&self.path, err))?;
        self.data_bytes += 2 * samples.len() as u64;
        Ok(())
    }

    /// Writes the header for what was written and fsyncs; returns the file's
    /// length, all of which is now durable.
    pub(crate) fn commit(&mut self) -> Result<u64> {
        self.writer.flush().map_err(|err| wav_error(&self.path, err))?;
        Ok(self.len())
    }

    /// Commits for the last time; returns the final length.
    pub(crate) fn finish(mut self) -> Result<u64> {
        let len = self.commit()?;
        self.writer.finalize().map_err(|err| wav_error(&self.path, err))?;
        Ok(len)
    }
}

/// A WAV file whose header was rebuilt by [`repair_wav`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairedWav {
    /// The file's length after repair.
    pub len: u64,
    /// Bytes of audio in its data chunk.
    pub data_bytes: u64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bytes that did not make a whole frame and were cut off the end.
    pub cut_bytes: u64,
}

impl RepairedWav {
    /// How long the audio lasts.
    pub fn duration(&self) -> std::time::Duration {
        let frame = u64::from(self.channels) * 2;
        std::time::Duration::from_secs_f64(
            (self.data_bytes / frame) as f64 / f64::from(self.sample_rate.max(1)),
        )
    }
}

/// Rebuilds the header of a WAV file whose writer died: the data chunk is
/// taken to run to the end of the file (cut to whole frames), and the RIFF
/// and data sizes are written to match, then fsynced. A file that is
/// already correct is left as it is.
///
/// Handles PCM and WAVE_FORMAT_EXTENSIBLE headers (the data chunk starts at
/// 44 or later); fails on anything that is not a RIFF/WAVE file.
pub fn repair_wav(path: &Path) -> Result<RepairedWav> {
    let unrepairable = |reason: String| Error::Unrepairable { path: path.to_path_buf(), reason };
    let io_err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut head = Vec::with_capacity(4096);
    (&mut file).take(64 * 1024).read_to_end(&mut head).map_err(io_err)?;
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(unrepairable("it does not start with a RIFF/WAVE header".into()));
    }
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let mut at = 12;
    let mut format = None;
    let data_offset = loop {
        if at + 8 > head.len() {
            return Err(unrepairable("it has no data chunk".into()));
        }
        let id = &head[at..at + 4];
        let size = u32_at(at + 4) as usize;
        if id == b"data" {
            break at + 8;
        }
        if id == b"fmt " {
            if size < 16 || at + 8 + 16 > head.len() {
                return Err(unrepairable("its format chunk is too short".into()));
            }
            let body = at + 8;
            format = Some((u16_at(body + 2), u32_at(body + 4), u16_at(body + 12)));
        }
        // Chunks are padded to an even size.
        at += 8 + size + size % 2;
    };
    let Some((channels, sample_rate, block_align)) = format else {
        return Err(unrepairable("its format chunk is missing before the data".into()));
    };
    if channels == 0 || block_align == 0 {
        return Err(unrepairable("its format chunk names no channels".into()));
    }
    let data_offset = data_offset as u64;
    let audio = file_len.saturating_sub(data_offset);
    let data_bytes = audio - audio % u64::from(block_align);
    let len = data_offset + data_bytes;
    let riff_size = u32::try_from(len - 8).map_err(|_| unrepairable("it is larger than 4 GiB".into()))?;
    let already_right = u32_at(4) == riff_size && u64::from(u32_at(data_offset as usize - 4)) == data_bytes;
    if !already_right || len != file_len {
        file.set_len(len).map_err(io_err)?;
        file.seek(SeekFrom::Start(4)).map_err(io_err)?;
        file.write_all(&riff_size.to_le_bytes()).map_err(io_err)?;
        file.seek(SeekFrom::Start(data_offset - 4)).map_err(io_err)?;
        file.write_all(&(data_bytes as u32).to_le_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
    }
    Ok(RepairedWav { len, data_bytes, sample_rate, channels, cut_bytes: file_len - len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(count: usize) -> Vec<i16> {
        (0..count).map(|n| (n as i16).wrapping_mul(31)).collect()
    }

    #[test]
    fn every_commit_leaves_a_valid_file_of_the_returned_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut wav = DurableWav::create(&path, 48_000, 2).unwrap();
        wav.write(&samples(960)).unwrap();
        let len = wav.commit().unwrap();
        assert_eq!(len, 44 + 1920);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.duration(), 480);
        wav.write(&samples(10)).unwrap();
        assert_eq!(wav.finish().unwrap(), 44 + 1940);
        let read: Vec<i16> = hound::WavReader::open(&path).unwrap().samples().map(Result::unwrap).collect();
        assert_eq!(read[960..], samples(10)[..]);
    }

    #[test]
    fn a_four_channel_file_counts_its_extensible_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("array.wav");
        let mut wav = DurableWav::create(&path, 48_000, 4).unwrap();
        assert!(wav.header_len > PCM16_HEADER_LEN, "hound writes WAVE_FORMAT_EXTENSIBLE above 2 channels");
        assert_eq!(wav.header_len, std::fs::metadata(&path).unwrap().len());
        wav.write(&samples(4 * 480)).unwrap();
        let len = wav.commit().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len(), "the durable length is the file's length");
        assert_eq!(len, wav.header_len + 2 * 4 * 480);
        wav.write(&samples(4 * 10)).unwrap();
        let len = wav.finish().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!((reader.spec().channels, reader.duration()), (4, 490));

        // Repair finds the same data and length after the extensible header.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].fill(0);
        let data_at = bytes.windows(4).position(|window| window == b"data").unwrap();
        bytes[data_at + 4..data_at + 8].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let repaired = repair_wav(&path).unwrap();
        assert_eq!((repaired.len, repaired.data_bytes, repaired.channels), (len, 2 * 4 * 490, 4));
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 490);
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, b"someone's file").unwrap();
        assert!(matches!(DurableWav::create(&path, 48_000, 1), Err(Error::Write { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"someone's file");
    }

    #[test]
    fn repair_rebuilds_the_sizes_of_a_file_whose_writer_died() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut wav = DurableWav::create(&path, 16_000, 1).unwrap();
        wav.write(&samples(100)).unwrap();
        wav.commit().unwrap();
        // Samples after the last commit, and half a sample, as a SIGKILL leaves them.
        wav.write(&samples(50)).unwrap();
        wav.writer.flush().unwrap();
        std::mem::forget(wav);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7]).unwrap();
        let repaired = repair_wav(&path).unwrap();
        assert_eq!(
            repaired,
            RepairedWav { len: 44 + 300, data_bytes: 300, sample_rate: 16_000, channels: 1, cut_bytes: 1 }
        );
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.duration(), 150);
        // Repairing a sound file changes nothing.
        let before = std::fs::read(&path).unwrap();
        assert_eq!(repair_wav(&path).unwrap().cut_bytes, 0);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn repair_finds_the_data_chunk_after_an_extensible_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f32.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for n in 0..20 {
            writer.write_sample(n as f32 / 20.0).unwrap();
        }
        writer.finalize().unwrap();
        // Zero the sizes as a crash before the first flush would.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].fill(0);
        let data_at = bytes.windows(4).position(|window| window == b"data").unwrap();
        bytes[data_at + 4..data_at + 8].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let repaired = repair_wav(&path).unwrap();
        assert_eq!(repaired.data_bytes, 80);
        assert_eq!(repaired.channels, 2);
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 10);
    }

    #[test]
    fn repair_refuses_what_is_not_a_wav_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.wav");
        std::fs::write(&path, b"just some text, not audio").unwrap();
        let err = repair_wav(&path).unwrap_err();
        assert!(matches!(err, Error::Unrepairable { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"just some text, not audio");
    }
}
