//! Reading a stored recording: is it the media its content type says, and
//! how long is it. Durations come from the file, never from the client.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use opptak_api::ContentType;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Why a file is not the media it claims to be, in words for the teacher.
pub type MediaProblem = String;

/// The duration in seconds of the media in `path`, read as `content_type`.
/// A file whose first bytes say it is another kind of media (a WAV sent as
/// `video/mp4`) is refused before it is parsed.
pub fn probe_duration(path: &Path, content_type: ContentType) -> Result<f64, MediaProblem> {
    if let Some(actual) = sniff(path)
        && actual != content_type
    {
        return Err(format!(
            "The file is {}, but it was uploaded as {}. Upload it again with its own type.",
            described(actual),
            content_type.as_str()
        ));
    }
    match content_type {
        ContentType::Wav => wav_duration(path),
        ContentType::Mp4 => mp4_duration(path),
        other => symphonia_duration(path, other),
    }
}

/// What a file's signature says it is; `None` when it is none of the
/// accepted types (the parser then says what is wrong).
fn sniff(path: &Path) -> Option<ContentType> {
    use std::io::Read;
    let mut head = [0u8; 12];
    let mut file = File::open(path).ok()?;
    let read = file.read(&mut head).ok()?;
    let head = &head[..read];
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Some(ContentType::Wav)
    } else if head.starts_with(b"fLaC") {
        Some(ContentType::Flac)
    } else if head.starts_with(b"OggS") {
        Some(ContentType::Ogg)
    } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
        Some(ContentType::Mp4)
    } else if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(ContentType::Webm)
    } else {
        None
    }
}

/// A content type in words.
fn described(content_type: ContentType) -> &'static str {
    match content_type {
        ContentType::Wav => "a WAV recording",
        ContentType::Flac => "a FLAC recording",
        ContentType::Ogg => "an Ogg recording",
        ContentType::Mp4 => "an MP4 video",
        ContentType::Webm => "a WebM video",
    }
}

fn wav_duration(path: &Path) -> Result<f64, MediaProblem> {
    let reader = hound::WavReader::open(path)
        .map_err(|err| format!("The file is not a readable WAV recording ({err})."))?;
    let spec = reader.spec();
    if spec.sample_rate == 0 {
        return Err("The WAV header gives a sample rate of 0.".into());
    }
    // `duration()` counts frames from the data chunk's declared size; a
    // header that declares more than the file holds is a damaged file.
    let declared = u64::from(reader.duration());
    let bytes_per_frame = u64::from(spec.channels) * u64::from(spec.bits_per_sample.div_ceil(8));
    let file_len = std::fs::metadata(path).map_err(|err| err.to_string())?.len();
    if bytes_per_frame == 0 || declared * bytes_per_frame > file_len {
        return Err(format!(
            "The WAV header declares {declared} frames, more than the {file_len}-byte file holds."
        ));
    }
    Ok(declared as f64 / f64::from(spec.sample_rate))
}

/// The duration of an MP4 from its headers alone: the longest track
/// (`mdhd`), else the movie header (`mvhd`); for a fragmented MP4 the
/// fragment duration the file declares (`mehd`), else the sum of its
/// fragments' sample durations (`moof/traf/tfhd/trun`, with the `trex`
/// defaults). Sample data (`mdat`) is skipped, never read, so a long
/// recording is measured in the time it takes to read its box headers.
fn mp4_duration(path: &Path) -> Result<f64, MediaProblem> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let len = file.metadata().map_err(|err| err.to_string())?.len();
    let mut boxes = mp4_boxes::Scan::default();
    boxes.walk(&mut BufReader::new(file), 0, len, 0).map_err(|problem| match problem {
        mp4_boxes::Problem::Io(err) => format!("The MP4 file could not be read ({err})."),
        mp4_boxes::Problem::Damaged(what) => format!("The file is not a readable MP4 recording ({what})."),
    })?;
    boxes.duration()
}

/// Just enough of ISO BMFF (ISO/IEC 14496-12) to find a file's duration.
mod mp4_boxes {
    use std::collections::BTreeMap;
    use std::io::{Read, Seek, SeekFrom};

    use super::MediaProblem;

    /// Why the boxes could not be walked.
    pub enum Problem {
        Io(std::io::Error),
        Damaged(String),
    }

    impl From<std::io::Error> for Problem {
        fn from(err: std::io::Error) -> Self {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                Problem::Damaged("a box is cut short".into())
            } else {
                Problem::Io(err)
            }
        }
    }

    /// Boxes are nested this deep at most in a sane file (moov/trak/mdia).
    const MAX_DEPTH: u32 = 8;
    /// The largest leaf box read into memory (a `trun` of a long fragment
    /// holds 16 bytes per sample).
    const MAX_LEAF: u64 = 64 * 1024 * 1024;

    #[derive(Debug, Default)]
    struct Track {
        timescale: u32,
        duration: u64,
    }

    /// What the walk found.
    #[derive(Debug, Default)]
    pub struct Scan {
        movie_timescale: u32,
        movie_duration: u64,
        saw_moov: bool,
        fragmented: bool,
        declared_fragment_duration: u64,
        /// Tracks in `moov` order; `tkhd` names the id of the last one.
        tracks: BTreeMap<u32, Track>,
        current_track: Option<u32>,
        pending_track: Track,
        trex_default_duration: BTreeMap<u32, u32>,
        /// The `tfhd` of the fragment being read: (track id, default duration).
        current_traf: Option<(u32, Option<u32>)>,
        fragment_ticks: BTreeMap<u32, u64>,
    }

    fn be_u32(bytes: &[u8], at: usize) -> Result<u32, Problem> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| Problem::Damaged("a header box is too short".into()))
    }

    fn be_u64(bytes: &[u8], at: usize) -> Result<u64, Problem> {
        Ok(u64::from(be_u32(bytes, at)?) << 32 | u64::from(be_u32(bytes, at + 4)?))
    }

    /// `(timescale, duration)` of an `mvhd` or `mdhd` payload.
    fn timescale_and_duration(payload: &[u8]) -> Result<(u32, u64), Problem> {
        let version = *payload.first().ok_or_else(|| Problem::Damaged("an empty header box".into()))?;
        let (timescale, duration) = if version == 1 {
            (be_u32(payload, 20)?, be_u64(payload, 24)?)
        } else {
            (be_u32(payload, 12)?, u64::from(be_u32(payload, 16)?))
        };
        // All ones means "unknown" in both versions.
        let unknown = duration == u64::MAX || (version != 1 && duration == u64::from(u32::MAX));
        Ok((timescale, if unknown { 0 } else { duration }))
    }

    impl Scan {
        /// Walks the boxes in `start..end` of `reader`.
        pub fn walk<R: Read + Seek>(
            &mut self,
            reader: &mut R,
            start: u64,
            end: u64,
            depth: u32,
        ) -> Result<(), Problem> {
            if depth > MAX_DEPTH {
                return Err(Problem::Damaged("boxes are nested too deep".into()));
            }
            let mut at = start;
            while at < end {
                if end - at < 8 {
                    return Err(Problem::Damaged("a box header is cut short".into()));
                }
                reader.seek(SeekFrom::Start(at))?;
                let mut header = [0u8; 8];
                reader.read_exact(&mut header)?;
                let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let kind = [header[4], header[5], header[6], header[7]];
                let (size, header_len) = match size32 {
                    0 => (end - at, 8),
                    1 => {
                        let mut large = [0u8; 8];
                        reader.read_exact(&mut large)?;
                        (u64::from_be_bytes(large), 16)
                    }
                    size => (u64::from(size), 8),
                };
                if size < header_len || size > end - at {
                    return Err(Problem::Damaged(format!(
                        "the '{}' box at byte {at} runs past the end of what holds it",
                        String::from_utf8_lossy(&kind)
                    )));
                }
                let (payload_start, box_end) = (at + header_len, at + size);
                match &kind {
                    b"moov" => {
                        self.saw_moov = true;
                        self.walk(reader, payload_start, box_end, depth + 1)?;
                    }
                    b"trak" => {
                        self.current_track = None;
                        self.pending_track = Track::default();
                        self.walk(reader, payload_start, box_end, depth + 1)?;
                        let track = std::mem::take(&mut self.pending_track);
                        let id = self.current_track.take().unwrap_or(self.tracks.len() as u32 + 1);
                        self.tracks.insert(id, track);
                    }
                    b"mvex" => {
                        self.fragmented = true;
                        self.walk(reader, payload_start, box_end, depth + 1)?;
                    }
                    b"mdia" | b"moof" => self.walk(reader, payload_start, box_end, depth + 1)?,
                    b"traf" => {
                        self.current_traf = None;
                        self.walk(reader, payload_start, box_end, depth + 1)?;
                    }
                    b"mvhd" | b"tkhd" | b"mdhd" | b"mehd" | b"trex" | b"tfhd" | b"trun" => {
                        let len = box_end - payload_start;
                        if len > MAX_LEAF {
                            return Err(Problem::Damaged("a header box is implausibly large".into()));
                        }
                        let mut payload = vec![0u8; len as usize];
                        reader.read_exact(&mut payload)?;
                        self.leaf(&kind, &payload)?;
                    }
                    // mdat and everything else: skipped, never read.
                    _ => {}
                }
                at = box_end;
            }
            Ok(())
        }

        fn leaf(&mut self, kind: &[u8; 4], payload: &[u8]) -> Result<(), Problem> {
            let version = payload.first().copied().unwrap_or(0);
            match kind {
                b"mvhd" => (self.movie_timescale, self.movie_duration) = timescale_and_duration(payload)?,
                b"mdhd" => {
                    let (timescale, duration) = timescale_and_duration(payload)?;
                    self.pending_track = Track { timescale, duration };
                }
                b"tkhd" => self.current_track = Some(be_u32(payload, if version == 1 { 20 } else { 12 })?),
                b"mehd" => {
                    self.declared_fragment_duration =
                        if version == 1 { be_u64(payload, 4)? } else { u64::from(be_u32(payload, 4)?) };
                }
                b"trex" => {
                    self.trex_default_duration.insert(be_u32(payload, 4)?, be_u32(payload, 12)?);
                }
                b"tfhd" => {
                    let flags = be_u32(payload, 0)? & 0x00ff_ffff;
                    let track_id = be_u32(payload, 4)?;
                    let mut at = 8;
                    if flags & 0x01 != 0 {
                        at += 8; // base data offset
                    }
                    if flags & 0x02 != 0 {
                        at += 4; // sample description index
                    }
                    let default_duration = if flags & 0x08 != 0 { Some(be_u32(payload, at)?) } else { None };
                    self.current_traf = Some((track_id, default_duration));
                }
                b"trun" => {
                    let (track_id, tfhd_default) = self.current_traf.ok_or_else(|| {
                        Problem::Damaged("a track run comes before its fragment header".into())
                    })?;
                    let flags = be_u32(payload, 0)? & 0x00ff_ffff;
                    let samples = u64::from(be_u32(payload, 4)?);
                    let mut at = 8;
                    if flags & 0x001 != 0 {
                        at += 4; // data offset
                    }
                    if flags & 0x004 != 0 {
                        at += 4; // first sample flags
                    }
                    let ticks = if flags & 0x100 != 0 {
                        let per_sample =
                            4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|bit| flags & **bit != 0).count();
                        if samples.saturating_mul(per_sample as u64)
                            > (payload.len() - at.min(payload.len())) as u64
                        {
                            return Err(Problem::Damaged(
                                "a track run lists more samples than it holds".into(),
                            ));
                        }
                        (0..samples as usize)
                            .map(|n| be_u32(payload, at + n * per_sample).map(u64::from))
                            .sum::<Result<u64, Problem>>()?
                    } else {
                        let default = tfhd_default
                            .or_else(|| self.trex_default_duration.get(&track_id).copied())
                            .unwrap_or(0);
                        samples * u64::from(default)
                    };
                    *self.fragment_ticks.entry(track_id).or_default() += ticks;
                }
                _ => {}
            }
            Ok(())
        }

        /// The duration in seconds the headers give.
        pub fn duration(&self) -> Result<f64, MediaProblem> {
            if !self.saw_moov {
                return Err("The file is not a readable MP4 recording (it has no movie header).".into());
            }
            let seconds = |ticks: u64, timescale: u32| {
                if timescale == 0 { 0.0 } else { ticks as f64 / f64::from(timescale) }
            };
            let longest_track = self
                .tracks
                .iter()
                .map(|(id, track)| {
                    let fragments = self.fragment_ticks.get(id).copied().unwrap_or(0);
                    seconds(track.duration + fragments, track.timescale)
                })
                .fold(0.0, f64::max);
            let declared = seconds(self.declared_fragment_duration, self.movie_timescale);
            let movie = seconds(self.movie_duration, self.movie_timescale);
            let duration = if self.fragmented && declared > 0.0 {
                declared
            } else if self.fragmented && !self.fragment_ticks.is_empty() {
                longest_track
            } else if longest_track > 0.0 {
                // A track's own timescale is finer than the movie's (often
                // 1/1000 s, which muxers round each sample to).
                longest_track
            } else {
                movie
            };
            if duration > 0.0 { Ok(duration) } else { Err("The MP4 file holds no media samples.".into()) }
        }
    }
}

fn symphonia_duration(path: &Path, content_type: ContentType) -> Result<f64, MediaProblem> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(content_type.extension());
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|err| format!("The file is not readable as {} ({err}).", content_type.as_str()))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or("The file holds no audio or video track.")?.clone();
    let params = &track.codec_params;
    if let (Some(frames), Some(base)) = (params.n_frames, params.time_base) {
        let time = base.calc_time(frames);
        return Ok(time.seconds as f64 + time.frac);
    }
    // Streams that do not declare their length (Ogg, WebM from a live
    // recorder): read packet timestamps to the end.
    let base = params.time_base.ok_or("The file's track has no time base, so its length is unknown.")?;
    let mut end = 0;
    while let Ok(packet) = format.next_packet() {
        if packet.track_id() == track.id {
            end = end.max(packet.ts() + packet.dur());
        }
    }
    let time = base.calc_time(end);
    Ok(time.seconds as f64 + time.frac)
}

/// The hex SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, seconds: u32, rate: u32) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..seconds * rate {
            writer.write_sample((i % 100) as i16).unwrap();
        }
        writer.finalize().unwrap();
    }

    #[test]
    fn wav_duration_comes_from_the_file() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.wav");
        write_wav(&path, 2, 8000);
        assert!((probe_duration(&path, ContentType::Wav).unwrap() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_file_uploaded_as_another_type_is_refused_by_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("lesson.wav");
        write_wav(&wav, 1, 8000);
        let problem = probe_duration(&wav, ContentType::Mp4).unwrap_err();
        assert_eq!(
            problem,
            "The file is a WAV recording, but it was uploaded as video/mp4. Upload it again with its own type."
        );
        let mp4 = dir.path().join("lesson.mp4");
        std::fs::write(&mp4, fragmented_head(1000, 1000, None, 40)).unwrap();
        let problem = probe_duration(&mp4, ContentType::Wav).unwrap_err();
        assert!(
            problem.starts_with("The file is an MP4 video, but it was uploaded as audio/wav."),
            "{problem}"
        );
        assert!(probe_duration(&mp4, ContentType::Ogg).unwrap_err().contains("uploaded as audio/ogg"));
    }

    #[test]
    fn a_truncated_wav_and_a_non_wav_are_problems() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.wav");
        write_wav(&path, 2, 8000);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(probe_duration(&path, ContentType::Wav).unwrap_err().contains("declares"));
        std::fs::write(&path, b"not audio at all").unwrap();
        assert!(probe_duration(&path, ContentType::Wav).is_err());
        assert!(probe_duration(&path, ContentType::Mp4).is_err());
        assert!(probe_duration(&path, ContentType::Flac).is_err());
    }

    fn mp4_box(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
        let payload: Vec<u8> = parts.concat();
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(&payload);
        out
    }

    fn full_box(kind: &[u8; 4], version: u8, flags: u32, fields: &[&[u8]]) -> Vec<u8> {
        let head = ((u32::from(version) << 24) | flags).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&head];
        parts.extend_from_slice(fields);
        mp4_box(kind, &parts)
    }

    /// ftyp + moov of a fragmented file as a live recorder writes it: the
    /// durations in `mvhd`/`mdhd` are 0, `mehd` only when `declared` is.
    fn fragmented_head(
        movie_timescale: u32,
        track_timescale: u32,
        declared: Option<u64>,
        trex_default: u32,
    ) -> Vec<u8> {
        let zero = 0u32.to_be_bytes();
        let mvhd = full_box(b"mvhd", 0, 0, &[&zero, &zero, &movie_timescale.to_be_bytes(), &zero, &[0; 80]]);
        let tkhd = full_box(b"tkhd", 0, 3, &[&zero, &zero, &1u32.to_be_bytes(), &[0; 68]]);
        let mdhd = full_box(b"mdhd", 0, 0, &[&zero, &zero, &track_timescale.to_be_bytes(), &zero, &[0; 4]]);
        let hdlr = full_box(b"hdlr", 0, 0, &[&zero, b"soun", &[0; 13]]);
        let stbl = mp4_box(
            b"stbl",
            &[
                &full_box(b"stsd", 0, 0, &[&zero]),
                &full_box(b"stts", 0, 0, &[&zero]),
                &full_box(b"stsc", 0, 0, &[&zero]),
                &full_box(b"stsz", 0, 0, &[&zero, &zero]),
                &full_box(b"stco", 0, 0, &[&zero]),
            ],
        );
        let minf = mp4_box(b"minf", &[&stbl]);
        let trak = mp4_box(b"trak", &[&tkhd, &mp4_box(b"mdia", &[&mdhd, &hdlr, &minf])]);
        let trex = full_box(
            b"trex",
            0,
            0,
            &[&1u32.to_be_bytes(), &1u32.to_be_bytes(), &trex_default.to_be_bytes(), &zero, &zero],
        );
        let mut mvex_parts = Vec::new();
        if let Some(declared) = declared {
            mvex_parts.push(full_box(b"mehd", 1, 0, &[&declared.to_be_bytes()]));
        }
        mvex_parts.push(trex);
        let mvex = mp4_box(b"mvex", &mvex_parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let ftyp = mp4_box(b"ftyp", &[b"iso6", &zero, b"iso6mp41"]);
        [ftyp, mp4_box(b"moov", &[&mvhd, &trak, &mvex])].concat()
    }

    /// A track run of `samples` with their own durations, or of `count`
    /// samples taking the defaults.
    fn trun(durations: &[u32], count: u32) -> Vec<u8> {
        if durations.is_empty() {
            return full_box(b"trun", 0, 0x200, &[&count.to_be_bytes(), &vec![0; 4 * count as usize]]);
        }
        let mut entries = Vec::new();
        for duration in durations {
            entries.extend_from_slice(&duration.to_be_bytes());
            entries.extend_from_slice(&100u32.to_be_bytes()); // size
        }
        full_box(
            b"trun",
            0,
            0x001 | 0x100 | 0x200,
            &[&(durations.len() as u32).to_be_bytes(), &[0; 4], &entries],
        )
    }

    fn fragment(tfhd_default: Option<u32>, runs: &[Vec<u8>], media_bytes: usize) -> Vec<u8> {
        let tfhd = match tfhd_default {
            Some(duration) => full_box(b"tfhd", 0, 0x020008, &[&1u32.to_be_bytes(), &duration.to_be_bytes()]),
            None => full_box(b"tfhd", 0, 0x020000, &[&1u32.to_be_bytes()]),
        };
        let mut traf_parts: Vec<&[u8]> = vec![&tfhd];
        traf_parts.extend(runs.iter().map(Vec::as_slice));
        let moof = mp4_box(
            b"moof",
            &[&full_box(b"mfhd", 0, 0, &[&1u32.to_be_bytes()]), &mp4_box(b"traf", &traf_parts)],
        );
        [moof, mp4_box(b"mdat", &[&vec![0x55; media_bytes]])].concat()
    }

    #[test]
    fn a_fragmented_mp4_is_measured_from_its_fragment_headers() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.mp4");
        // 48 kHz audio, 1024-sample frames: durations in every place a
        // recorder puts them, including two runs in one fragment.
        let file = [
            fragmented_head(1000, 48_000, None, 1024),
            fragment(None, &[trun(&[1024; 30], 0)], 3000),
            fragment(Some(2048), &[trun(&[], 20)], 2000),
            fragment(None, &[trun(&[], 10), trun(&[960, 1024], 0)], 1200),
        ]
        .concat();
        std::fs::write(&path, &file).unwrap();
        let ticks = 30 * 1024 + 20 * 2048 + 10 * 1024 + 960 + 1024;
        let expected = f64::from(ticks) / 48_000.0;
        let measured = probe_duration(&path, ContentType::Mp4).unwrap();
        assert!((measured - expected).abs() < 1e-9, "{measured} != {expected}");
    }

    #[test]
    fn a_fragmented_mp4_that_declares_its_length_in_mehd_is_taken_at_its_word() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.mp4");
        let file =
            [fragmented_head(1000, 48_000, Some(2500), 1024), fragment(None, &[trun(&[], 10)], 100)].concat();
        std::fs::write(&path, &file).unwrap();
        assert!((probe_duration(&path, ContentType::Mp4).unwrap() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn a_large_media_box_is_skipped_not_read() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.mp4");
        let mut file =
            [fragmented_head(1000, 48_000, None, 1024), fragment(None, &[trun(&[], 48)], 0)].concat();
        // An 8 GiB media box (sparse on disk) ends the file: only its header is read.
        let mdat_at = file.len() as u64;
        let big: u64 = 8 << 30;
        file.extend_from_slice(&1u32.to_be_bytes());
        file.extend_from_slice(b"mdat");
        file.extend_from_slice(&(big + 16).to_be_bytes());
        std::fs::write(&path, &file).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(mdat_at + 16 + big).unwrap();
        let started = std::time::Instant::now();
        assert!((probe_duration(&path, ContentType::Mp4).unwrap() - 1.024).abs() < 1e-9);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn a_plain_mp4_is_measured_exactly_from_its_track_header() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.mp4");
        let config = mp4::Mp4Config {
            major_brand: "isom".parse().unwrap(),
            minor_version: 512,
            compatible_brands: vec!["isom".parse().unwrap(), "mp41".parse().unwrap()],
            timescale: 1000,
        };
        let mut writer = mp4::Mp4Writer::write_start(File::create(&path).unwrap(), &config).unwrap();
        writer
            .add_track(&mp4::TrackConfig {
                track_type: mp4::TrackType::Audio,
                timescale: 48_000,
                language: "und".into(),
                media_conf: mp4::MediaConfig::AacConfig(mp4::AacConfig::default()),
            })
            .unwrap();
        for n in 0..75u64 {
            let sample = mp4::Mp4Sample {
                start_time: n * 1024,
                duration: 1024,
                rendering_offset: 0,
                is_sync: true,
                bytes: bytes::Bytes::from_static(&[0x21; 64]),
            };
            writer.write_sample(1, &sample).unwrap();
        }
        writer.write_end().unwrap();
        // Exact: the track's timescale, not the movie's 1/1000 s, which
        // this muxer rounds each sample down to (its mvhd says 1.575 s).
        let expected = 75.0 * 1024.0 / 48_000.0;
        let measured = probe_duration(&path, ContentType::Mp4).unwrap();
        assert!((measured - expected).abs() < 1e-9, "{measured} != {expected}");
    }

    #[test]
    fn damaged_mp4s_are_problems_not_panics() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a.mp4");
        let whole =
            [fragmented_head(1000, 48_000, None, 1024), fragment(None, &[trun(&[1024; 4], 0)], 10)].concat();
        for cut in [4, 20, whole.len() / 2, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(probe_duration(&path, ContentType::Mp4).is_err(), "cut at {cut}");
        }
        // A run that claims more samples than it holds.
        let mut lying = trun(&[1024; 2], 0);
        lying[15] = 200;
        std::fs::write(
            &path,
            [fragmented_head(1000, 48_000, None, 1024), fragment(None, &[lying], 0)].concat(),
        )
        .unwrap();
        assert!(probe_duration(&path, ContentType::Mp4).unwrap_err().contains("more samples"));
        std::fs::write(&path, fragment(None, &[trun(&[], 1)], 0)).unwrap();
        assert!(probe_duration(&path, ContentType::Mp4).unwrap_err().contains("no movie header"));
    }

    #[test]
    fn sha256_of_a_known_file() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
