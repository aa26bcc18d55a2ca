//! Fragmented MP4 as a stream of top-level boxes: where the last whole
//! fragment ends, while writing and after a crash.
//!
//! A fragmented MP4 is `ftyp`, `moov` (the tracks, no samples), then
//! fragments, each a `moof` (the sample table) followed by its `mdat` (the
//! samples). A player needs `moov` and whole fragments, so the only places a
//! file may end are right after `moov` or right after a fragment's `mdat`,
//! or after the `mfra` (the index of fragments) a clean end appends: without
//! it WebKit's player takes the first fragment's length for the whole video.
//! The recorder publishes only such ends as durable, and [`repair_fmp4`]
//! cuts a crashed file back to the last one: every byte an uploader sent
//! while recording is still in the file, unchanged, after the repair.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Follows the top-level boxes of a file as its bytes go by and knows where
/// the last whole fragment ends.
#[cfg(any(feature = "video", test))]
#[derive(Debug, Default)]
pub(crate) struct FragmentTracker {
    /// Bytes seen so far.
    seen: u64,
    /// Where the box being read starts.
    box_start: u64,
    /// Its header bytes gathered so far (8, or 16 for a 64-bit size).
    header: Vec<u8>,
    /// Where it ends, once its header is read.
    box_end: Option<u64>,
    kind: [u8; 4],
    ends: SafeEnds,
    problem: Option<String>,
}

/// Which box ends are safe places for a file to end.
#[derive(Debug, Default)]
struct SafeEnds {
    previous: Option<[u8; 4]>,
    first: bool,
    /// Where the previous box ended.
    previous_end: u64,
    safe_end: Option<u64>,
    fragments: u64,
}

impl SafeEnds {
    /// Takes a whole box of `kind` ending at `end`; an error when the file
    /// does not start like an MP4.
    fn box_done(&mut self, kind: [u8; 4], end: u64) -> std::result::Result<(), String> {
        if !self.first {
            self.first = true;
            if &kind != b"ftyp" {
                return Err(format!(
                    "it does not start like an MP4 file (its first box is '{}')",
                    String::from_utf8_lossy(&kind)
                ));
            }
        }
        match &kind {
            b"moov" => self.safe_end = Some(end),
            b"mdat" if self.previous == Some(*b"moof") && self.safe_end.is_some() => {
                self.safe_end = Some(end);
                self.fragments += 1;
            }
            // The index of fragments a muxer appends at the end of stream.
            b"mfra" if self.safe_end == Some(self.previous_end) => {
                self.safe_end = Some(end);
            }
            _ => {}
        }
        (self.previous, self.previous_end) = (Some(kind), end);
        Ok(())
    }
}

/// `(size, header length)` of a box header, once enough of it is there.
fn box_size(header: &[u8]) -> Option<(u64, u64)> {
    let size32 = u32::from_be_bytes(header.get(..4)?.try_into().ok()?);
    match size32 {
        1 => Some((u64::from_be_bytes(header.get(8..16)?.try_into().ok()?), 16)),
        size => Some((u64::from(size), 8)),
    }
}

#[cfg(any(feature = "video", test))]
impl FragmentTracker {
    /// Takes the next bytes of the file.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.problem.is_none() {
            match self.box_end {
                None => {
                    let wanted =
                        if self.header.len() >= 4 && self.header[..4] == 1u32.to_be_bytes() { 16 } else { 8 };
                    let take = (wanted - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    (self.seen, bytes) = (self.seen + take as u64, &bytes[take..]);
                    if self.header.len() < 8 {
                        continue;
                    }
                    let Some((size, header_len)) = box_size(&self.header) else { continue };
                    self.kind = self.header[4..8].try_into().unwrap_or_default();
                    if size < header_len {
                        // Size 0 ("up to the end of the file") is never
                        // written by a muxer that streams; anything this
                        // small is damage.
                        self.problem = Some(format!("a box at byte {} has size {size}", self.box_start));
                        return;
                    }
                    self.box_end = Some(self.box_start + size);
                }
                Some(end) => {
                    let take = usize::try_from(end - self.seen).unwrap_or(usize::MAX).min(bytes.len());
                    (self.seen, bytes) = (self.seen + take as u64, &bytes[take..]);
                }
            }
            if let Some(end) = self.box_end
                && self.seen == end
            {
                if let Err(problem) = self.ends.box_done(self.kind, end) {
                    self.problem = Some(problem);
                }
                (self.box_start, self.box_end) = (end, None);
                self.header.clear();
            }
        }
    }

    /// Where the last whole fragment (or, before the first, the `moov`)
    /// ends: the longest prefix of the bytes seen that plays.
    pub(crate) fn safe_end(&self) -> Option<u64> {
        self.ends.safe_end
    }

    /// Why the stream is not a fragmented MP4, if it is not.
    pub(crate) fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }
}

/// What [`repair_fmp4`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairedMp4 {
    /// The file.
    pub path: PathBuf,
    /// Its length now.
    pub len: u64,
    /// Bytes of an unfinished fragment that were cut off the end.
    pub removed: u64,
    /// Whole fragments kept.
    pub fragments: u64,
}

/// Cuts a fragmented MP4 whose recorder died after its last whole fragment,
/// so that it plays; a whole file is left as it is. Fails, changing
/// nothing, when the file is not a fragmented MP4 or holds no `moov` yet.
pub fn repair_fmp4(path: &Path) -> Result<RepairedMp4> {
    let unrepairable = |reason: String| Error::Unrepairable { path: path.to_path_buf(), reason };
    let write_error = |source| Error::Write { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(write_error)?;
    let len = file.metadata().map_err(write_error)?.len();
    let ends = scan(&mut file, len).map_err(|err| match err {
        Scan::Io(source) => Error::Write { path: path.to_path_buf(), source },
        Scan::Damaged(reason) => unrepairable(reason),
    })?;
    let Some(safe_end) = ends.safe_end else {
        return Err(unrepairable("it ended before its first video header was written".into()));
    };
    if safe_end < len {
        file.set_len(safe_end).and_then(|()| file.sync_all()).map_err(write_error)?;
    }
    Ok(RepairedMp4 {
        path: path.to_path_buf(),
        len: safe_end,
        removed: len - safe_end,
        fragments: ends.fragments,
    })
}

enum Scan {
    Io(std::io::Error),
    Damaged(String),
}

/// Walks the top-level boxes by their headers alone (media is skipped,
/// never read), stopping at the first box the file does not hold whole.
fn scan(file: &mut File, len: u64) -> std::result::Result<SafeEnds, Scan> {
    let mut ends = SafeEnds::default();
    let mut at = 0u64;
    let mut header = [0u8; 16];
    while len - at >= 8 {
        let header_len = usize::try_from((len - at).min(16)).unwrap_or(16);
        file.seek(SeekFrom::Start(at)).map_err(Scan::Io)?;
        file.read_exact(&mut header[..header_len]).map_err(Scan::Io)?;
        let Some((size, own_header)) = box_size(&header[..header_len]) else { break };
        if size < own_header {
            return Err(Scan::Damaged(format!("a box at byte {at} has size {size}")));
        }
        let whole = size <= len - at;
        let kind: [u8; 4] = header[4..8].try_into().unwrap_or_default();
        if at == 0 && &kind != b"ftyp" {
            // Say what the file is not before looking for its end.
            ends.box_done(kind, size).map_err(Scan::Damaged)?;
        }
        if !whole {
            break;
        }
        ends.box_done(kind, at + size).map_err(Scan::Damaged)?;
        at += size;
    }
    if !ends.first {
        return Err(Scan::Damaged("it is too short to be an MP4 file".into()));
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload_len: usize) -> Vec<u8> {
        let mut bytes = ((8 + payload_len) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend((0..payload_len).map(|n| n as u8));
        bytes
    }

    /// ftyp, moov, then `fragments` whole moof+mdat pairs; the offsets
    /// where the file may end.
    fn fragmented(fragments: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = [mp4_box(b"ftyp", 16), mp4_box(b"moov", 300)].concat();
        let mut ends = vec![bytes.len() as u64];
        for n in 0..fragments {
            bytes.extend(mp4_box(b"moof", 100 + n));
            bytes.extend(mp4_box(b"mdat", 5000 + 7 * n));
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    #[test]
    fn the_tracker_finds_each_fragment_end_however_the_bytes_are_split() {
        let (bytes, ends) = fragmented(4);
        for split in [1, 3, 7, 8, 9, 16, 4096, bytes.len()] {
            let mut tracker = FragmentTracker::default();
            let mut found = Vec::new();
            for chunk in bytes.chunks(split) {
                tracker.feed(chunk);
                if found.last().copied() != tracker.safe_end() {
                    found.extend(tracker.safe_end());
                }
            }
            assert_eq!(tracker.problem(), None);
            // Chunks bigger than one box skip some ends; the last is always seen.
            assert_eq!(found.last(), ends.last(), "split {split}");
            if split <= 8 {
                assert_eq!(found, ends, "split {split}");
            }
        }
    }

    #[test]
    fn the_index_of_fragments_after_the_last_fragment_is_a_safe_end_and_nowhere_else() {
        let (mut bytes, _) = fragmented(2);
        bytes.extend(mp4_box(b"mfra", 64));
        let mut tracker = FragmentTracker::default();
        tracker.feed(&bytes);
        assert_eq!(tracker.safe_end(), Some(bytes.len() as u64));

        let (mut cut, ends) = fragmented(2);
        cut.extend(mp4_box(b"moof", 10));
        cut.extend(mp4_box(b"mfra", 64));
        let mut tracker = FragmentTracker::default();
        tracker.feed(&cut);
        assert_eq!(tracker.safe_end(), ends.last().copied(), "an mfra after a fragment's half is not an end");
    }

    #[test]
    fn the_tracker_reads_64_bit_box_sizes_and_refuses_what_is_not_mp4() {
        let mut bytes = [mp4_box(b"ftyp", 8), mp4_box(b"moov", 40)].concat();
        let large_mdat_len = 16 + 100u64;
        let mut mdat = 1u32.to_be_bytes().to_vec();
        mdat.extend_from_slice(b"mdat");
        mdat.extend_from_slice(&large_mdat_len.to_be_bytes());
        mdat.extend([0u8; 100]);
        bytes.extend(mp4_box(b"moof", 10));
        bytes.extend(mdat);
        let mut tracker = FragmentTracker::default();
        tracker.feed(&bytes);
        assert_eq!(tracker.safe_end(), Some(bytes.len() as u64));

        let mut wav = FragmentTracker::default();
        wav.feed(b"RIFF\x24\x00\x00\x00WAVEfmt ");
        assert!(wav.problem().is_none(), "a box claiming 0x52494646 bytes is not damage until it ends");
        let mut tiny = FragmentTracker::default();
        tiny.feed(&[0, 0, 0, 4, b'f', b't', b'y', b'p']);
        assert!(tiny.problem().unwrap().contains("size 4"));
        let mut wrong_start = FragmentTracker::default();
        wrong_start.feed(&mp4_box(b"free", 4));
        assert!(wrong_start.problem().unwrap().contains("does not start like an MP4"));
    }

    #[test]
    fn repair_cuts_after_the_last_whole_fragment_and_keeps_every_byte_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lesson.mp4");
        let (bytes, ends) = fragmented(3);
        // A crash in the middle of the fourth fragment's mdat.
        let (more, _) = fragmented(4);
        let crashed = &more[..more.len() - 1234];
        assert_eq!(&crashed[..bytes.len()], &bytes[..]);
        std::fs::write(&path, crashed).unwrap();
        let repaired = repair_fmp4(&path).unwrap();
        assert_eq!((repaired.len, repaired.fragments), (*ends.last().unwrap(), 3));
        assert_eq!(repaired.removed, crashed.len() as u64 - repaired.len);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // A whole file is left alone, and repairing twice changes nothing.
        let again = repair_fmp4(&path).unwrap();
        assert_eq!((again.len, again.removed), (repaired.len, 0));
    }

    #[test]
    fn repair_refuses_a_file_without_its_header_and_a_non_mp4_leaving_both_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let early = dir.path().join("early.mp4");
        let (bytes, _) = fragmented(0);
        std::fs::write(&early, &bytes[..bytes.len() - 10]).unwrap();
        let err = repair_fmp4(&early).unwrap_err();
        assert!(err.to_string().contains("before its first video header"), "{err}");
        assert_eq!(std::fs::read(&early).unwrap().len(), bytes.len() - 10);

        let wav = dir.path().join("lesson.wav");
        let mut riff = b"RIFF".to_vec();
        riff.extend(36u32.to_le_bytes());
        riff.extend(b"WAVEfmt ");
        riff.extend([0u8; 28]);
        std::fs::write(&wav, &riff).unwrap();
        assert!(matches!(repair_fmp4(&wav), Err(Error::Unrepairable { .. })));
        assert_eq!(std::fs::read(&wav).unwrap(), riff);
    }
}
