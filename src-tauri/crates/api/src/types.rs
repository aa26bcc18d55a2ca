//! Small value types of the wire: [`ContentType`], [`RecordingStatus`],
//! [`ContentMd5`] and [`Timestamp`].
//!
//! Each is a closed set or a checked value, so a field that holds one is
//! valid by construction; each serialises as the string the wire carries.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::error::{Error, Result};

/// Truncates a value quoted in a message, so a megabyte of junk is not echoed back.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 60;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &value[..cut])),
        None => format!("{value:?}"),
    }
}

macro_rules! string_serde {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The media types a recording may have: the five the API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// `audio/wav`
    Wav,
    /// `audio/flac`
    Flac,
    /// `audio/ogg`
    Ogg,
    /// `video/mp4`
    Mp4,
    /// `video/webm`
    Webm,
}

impl ContentType {
    /// Every accepted content type, in the order the spec lists them.
    pub const ALL: [ContentType; 5] = [Self::Wav, Self::Flac, Self::Ogg, Self::Mp4, Self::Webm];

    /// The MIME type, e.g. `audio/wav`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Flac => "audio/flac",
            Self::Ogg => "audio/ogg",
            Self::Mp4 => "video/mp4",
            Self::Webm => "video/webm",
        }
    }

    /// The usual file extension, without the dot (for object keys and file names).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Ogg => "ogg",
            Self::Mp4 => "mp4",
            Self::Webm => "webm",
        }
    }

    /// Whether the type is a video container.
    pub fn is_video(self) -> bool {
        matches!(self, Self::Mp4 | Self::Webm)
    }

    /// The message for a content type that is not one of [`ContentType::ALL`].
    pub(crate) fn unknown_message(label: &str, got: &str) -> String {
        let all: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
        format!("{label} must be one of {}; got {}.", all.join(", "), quote(got))
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentType {
    type Err = Error;

    /// Parses a MIME type, ignoring ASCII case and surrounding whitespace.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| Error::InvalidValue(Self::unknown_message("contentType", text)))
    }
}

string_serde!(ContentType);

/// Where a recording is after `finish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordingStatus {
    /// Finished and queued or being checked; not yet safe to delete locally.
    Processing,
    /// Persisted and verified; `sha256` says what the server holds.
    Ready,
    /// Processing gave up; `error` says why.
    Failed,
}

impl RecordingStatus {
    /// The wire form: `processing`, `ready` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for RecordingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordingStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        [Self::Processing, Self::Ready, Self::Failed]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                Error::InvalidValue(format!(
                    "status must be processing, ready or failed; got {}.",
                    quote(text)
                ))
            })
    }
}

string_serde!(RecordingStatus);

/// The MD5 digest of a part's bytes; base64 on the wire, as in a
/// `Content-MD5` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContentMd5([u8; 16]);

impl ContentMd5 {
    /// Wraps a digest computed by the caller.
    pub fn from_digest(digest: [u8; 16]) -> Self {
        Self(digest)
    }

    /// The 16 bytes of the digest.
    pub fn digest(&self) -> [u8; 16] {
        self.0
    }

    /// The header value: standard base64 with padding, 24 characters.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The message for a value that is not the base64 of 16 bytes.
    pub(crate) fn invalid_message(label: &str, got: &str) -> String {
        format!(
            "{label} must be the base64 of a 16-byte MD5 digest (24 characters, like \"1B2M2Y8AsgTpgAmY7PhCfg==\"); got {}.",
            quote(got)
        )
    }
}

impl fmt::Display for ContentMd5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl FromStr for ContentMd5 {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        BASE64
            .decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| Error::InvalidValue(Self::invalid_message("contentMd5", text)))
    }
}

string_serde!(ContentMd5);

/// An instant on the wire: RFC 3339, e.g. `2025-03-01T12:00:00Z`.
///
/// A `time::OffsetDateTime` rather than a bare string, because both sides
/// compute with these (the server sets `expiresAt` from now, the client
/// compares it with now) and a string would be re-parsed, unchecked, at
/// every use. The wrapper keeps the value in UTC and in years 1-9999, the
/// range RFC 3339 can write, so formatting one never fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// `instant` in UTC, or `None` outside years 1-9999.
    pub fn new(instant: OffsetDateTime) -> Option<Self> {
        let utc = instant.checked_to_offset(UtcOffset::UTC)?;
        (1..=9999).contains(&utc.year()).then_some(Self(utc))
    }

    /// The instant `seconds` after 1970-01-01T00:00:00Z, if in range.
    pub fn from_unix_timestamp(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().and_then(Self::new)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix_timestamp(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The instant `duration` later (or earlier), if still in range.
    pub fn checked_add(self, duration: Duration) -> Option<Self> {
        self.0.checked_add(duration).and_then(Self::new)
    }

    /// The instant, in UTC.
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cannot fail: the value is UTC within years 1-9999 (see `new`).
        let text = self.0.format(&Rfc3339).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        OffsetDateTime::parse(text.trim(), &Rfc3339).ok().and_then(Self::new).ok_or_else(|| {
            Error::InvalidValue(format!(
                "expected an RFC 3339 timestamp like \"2025-03-01T12:00:00Z\"; got {}.",
                quote(text)
            ))
        })
    }
}

string_serde!(Timestamp);

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn content_types_parse_their_mime_type_only() {
        for ct in ContentType::ALL {
            assert_eq!(ct.as_str().parse::<ContentType>().unwrap(), ct);
            assert_eq!(serde_json::to_string(&ct).unwrap(), format!("\"{ct}\""));
        }
        assert_eq!(" Audio/WAV ".parse::<ContentType>().unwrap(), ContentType::Wav);
        let err = "audio/mpeg".parse::<ContentType>().unwrap_err().to_string();
        assert_eq!(
            err,
            "contentType must be one of audio/wav, audio/flac, audio/ogg, video/mp4, video/webm; got \"audio/mpeg\"."
        );
        assert!(serde_json::from_str::<ContentType>("\"video/avi\"").is_err());
    }

    #[test]
    fn content_md5_is_base64_of_sixteen_bytes() {
        // MD5 of the empty string.
        let md5: ContentMd5 = "1B2M2Y8AsgTpgAmY7PhCfg==".parse().unwrap();
        assert_eq!(md5.digest()[0], 0xd4);
        assert_eq!(md5.to_string(), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert!("1B2M2Y8AsgTpgAmY7PhC".parse::<ContentMd5>().is_err(), "12 bytes");
        assert!("not base64!".parse::<ContentMd5>().is_err());
        assert!("".parse::<ContentMd5>().is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let t: Timestamp = "2025-03-01T13:00:00+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2025-03-01T12:00:00Z");
        assert_eq!(t.to_offset_date_time(), datetime!(2025-03-01 12:00 UTC));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2025-03-01T12:00:00Z\"");
        assert_eq!(Timestamp::from_unix_timestamp(t.unix_timestamp()), Some(t));
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert!(Timestamp::new(datetime!(-0001-01-01 0:00 UTC)).is_none());
        assert!(Timestamp::new(datetime!(9999-12-31 23:59 -01:00)).is_none(), "year 10000 in UTC");
    }

    #[test]
    fn quotes_are_truncated() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "x".repeat(500);
        assert_eq!(quote(&long).chars().count(), 60 + 3);
    }
}
