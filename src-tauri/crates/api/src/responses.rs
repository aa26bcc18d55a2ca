//! The response bodies of every endpoint.
//!
//! Responses serialise and deserialise with serde for JSON (the server
//! writes them, the client reads them); XML goes through
//! [`Response::encode`](crate::Response::encode) and
//! [`Response::decode`](crate::Response::decode). Optional fields are
//! written as `null` (`i:nil` in XML) rather than left out, as the LMS's
//! serialisers do, and read as `None` when missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::extract::{Extractor, FromValue, PartNumber, XmlItem};
use crate::model_state::FieldPath;
use crate::tree::{ItemName, Node, ToNode, Value};
use crate::wire::wire_struct;
use crate::{ContentType, RecordingStatus, Timestamp};

/// The answer to `start`: where and how to upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    /// The new recording.
    pub recording_id: String,
    /// Its multipart upload session.
    pub upload_id: String,
    /// The storage key, chosen by the server; the client never chooses one.
    pub object_key: String,
    /// The size of every part but the last, at least [`MIN_PART_SIZE`](crate::MIN_PART_SIZE).
    pub part_size_bytes: u64,
    /// At most this many parts ([`MAX_PARTS`](crate::MAX_PARTS)).
    pub max_parts: u32,
    /// When the server aborts the session if it is not finished.
    pub expires_at: Timestamp,
}

/// The answer to `parts`: one presigned upload per requested part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsResponse {
    /// The presigned parts, in the order requested.
    pub parts: Vec<PresignedPart>,
}

/// How to upload one part (the `NativeUploadPresignedPart` of the XML form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedPart {
    /// 1 to 10000.
    pub part_number: u32,
    /// Where to send the part's bytes.
    pub url: String,
    /// The HTTP method, `PUT`.
    pub method: String,
    /// Headers to send exactly as given (e.g. `Content-MD5` when signed in).
    pub headers: BTreeMap<String, String>,
    /// When `url` stops working; presign again after.
    pub expires_at: Timestamp,
}

/// The answer to `listparts`: what storage holds, for resuming.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPartsResponse {
    /// The stored parts, sorted by part number.
    pub parts: Vec<StoredPart>,
}

/// One part storage holds (the `NativeUploadStoredPart` of the XML form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPart {
    /// 1 to 10000.
    pub part_number: u32,
    /// The part's ETag in storage.
    pub etag: String,
    /// The part's length.
    pub size_bytes: u64,
}

/// The answer to `abort`: the session is aborted (or already was; abort is idempotent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortResponse {
    /// The recording whose session was aborted.
    pub recording_id: String,
    /// The aborted session.
    pub upload_id: String,
}

/// The answer to `finish`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishResponse {
    /// The finished recording.
    pub recording_id: String,
    /// `processing` at first; later the recording's current status.
    pub status: RecordingStatus,
    /// Where to poll the recording (`…/recordings/{recordingId}/v1`).
    pub status_url: String,
}

/// A recording as the recordings endpoints describe it: an item of the
/// list, or the detail (which adds `mediaUrl` when ready).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// The recording.
    pub recording_id: String,
    /// What the user called it.
    pub recording_name: String,
    /// Where it is in processing.
    pub status: RecordingStatus,
    /// Its media type.
    pub content_type: ContentType,
    /// Whether it has video.
    pub is_video_recording: bool,
    /// Its size, once `ready`.
    pub size_bytes: Option<u64>,
    /// Its duration read from the media, once `ready`.
    pub duration_seconds: Option<f64>,
    /// When `start` created it.
    pub created_at: Timestamp,
    /// When it became `ready`.
    pub ready_at: Option<Timestamp>,
    /// Why it `failed`.
    pub error: Option<String>,
    /// A short-lived presigned GET of the media; detail only, when `ready`.
    pub media_url: Option<String>,
    /// Lowercase hex SHA-256 of the stored media, once `ready`; the client
    /// deletes its local copy only when this equals its own.
    pub sha256: Option<String>,
}

/// The answer to `GET …/recordings/v1`: the caller's recordings, newest
/// first. A bare JSON array; in XML `ArrayOfMediaRecorderController.Recording`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordingList(pub Vec<Recording>);

impl XmlItem for PresignedPart {
    const ITEM: ItemName = ItemName::contract("MediaRecorderController.NativeUploadPresignedPart");
}

impl XmlItem for StoredPart {
    const ITEM: ItemName = ItemName::contract("MediaRecorderController.NativeUploadStoredPart");
}

impl XmlItem for Recording {
    const ITEM: ItemName = ItemName::contract("MediaRecorderController.Recording");
}

wire_struct!(StartResponse {
    recording_id: "recordingId",
    upload_id: "uploadId",
    object_key: "objectKey",
    part_size_bytes: "partSizeBytes",
    max_parts: "maxParts",
    expires_at: "expiresAt",
});

wire_struct!(PartsResponse { parts: "parts" });

wire_struct!(PresignedPart {
    part_number: "partNumber" as PartNumber => u32::from,
    url: "url",
    method: "method",
    headers: "headers",
    expires_at: "expiresAt",
});

wire_struct!(ListPartsResponse { parts: "parts" });

wire_struct!(StoredPart {
    part_number: "partNumber" as PartNumber => u32::from,
    etag: "etag",
    size_bytes: "sizeBytes",
});

wire_struct!(AbortResponse { recording_id: "recordingId", upload_id: "uploadId" });

wire_struct!(FinishResponse { recording_id: "recordingId", status: "status", status_url: "statusUrl" });

wire_struct!(Recording {
    recording_id: "recordingId",
    recording_name: "recordingName",
    status: "status",
    content_type: "contentType",
    is_video_recording: "isVideoRecording",
    size_bytes: "sizeBytes",
    duration_seconds: "durationSeconds",
    created_at: "createdAt",
    ready_at: "readyAt",
    error: "error",
    media_url: "mediaUrl",
    sha256: "sha256",
});

impl FromValue for RecordingList {
    fn placeholder() -> Self {
        Self::default()
    }

    fn from_value(x: &mut Extractor, value: &Value, path: &FieldPath) -> Option<Self> {
        Vec::from_value(x, value, path).map(Self)
    }
}

impl ToNode for RecordingList {
    fn to_node(&self) -> Node {
        self.0.to_node()
    }
}
