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
pub fn probe_duration(path: &Path, content_type: ContentType) -> Result<f64, MediaProblem> {
    match content_type {
        ContentType::Wav => wav_duration(path),
        ContentType::Mp4 => mp4_duration(path),
        other => symphonia_duration(path, other),
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

fn mp4_duration(path: &Path) -> Result<f64, MediaProblem> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let size = file.metadata().map_err(|err| err.to_string())?.len();
    let mut reader = mp4::Mp4Reader::read_header(BufReader::new(file), size)
        .map_err(|err| format!("The file is not a readable MP4 recording ({err})."))?;
    let from_header = reader.duration().as_secs_f64();
    if from_header > 0.0 {
        return Ok(from_header);
    }
    // A fragmented MP4 (as the recorder writes) leaves the movie header's
    // duration at 0; the tracks' samples carry it.
    let tracks: Vec<(u32, u32, u32)> = reader
        .tracks()
        .values()
        .map(|track| (track.track_id(), track.timescale().max(1), track.sample_count()))
        .collect();
    let mut longest: f64 = 0.0;
    for (track_id, timescale, samples) in tracks {
        let mut ticks = 0u64;
        for n in 1..=samples {
            if let Ok(Some(sample)) = reader.read_sample(track_id, n) {
                ticks += u64::from(sample.duration);
            }
        }
        longest = longest.max(ticks as f64 / f64::from(timescale));
    }
    if longest > 0.0 { Ok(longest) } else { Err("The MP4 file holds no media samples.".into()) }
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
