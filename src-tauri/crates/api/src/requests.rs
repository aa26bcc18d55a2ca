//! The request bodies of the upload endpoints.
//!
//! Requests serialise to JSON (the client sends them) but deliberately do
//! not implement `Deserialize`: a server reads them with
//! [`Request::decode`](crate::Request::decode), which also validates, so
//! no handler can take an unchecked request by accident.

use serde::Serialize;

use crate::extract::{PartNumber, XmlItem, part_numbers};
use crate::tree::ItemName;
use crate::wire::wire_struct;
use crate::{ContentMd5, ContentType};

/// `POST …/native/upload/start/v1`: create a recording and its upload session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    /// What the user called the recording; 1-255 characters after trimming.
    pub recording_name: String,
    /// Which recorder made it, e.g. `desktop-audio`, `desktop-screen`, `desktop-camera`.
    pub recorder_type: String,
    /// Whether the recording has video.
    pub is_video_recording: bool,
    /// Whether the recorder runs inside the LMS's file uploader.
    pub used_in_file_uploader: bool,
    /// The media type of the file being uploaded.
    pub content_type: ContentType,
    /// The final size, or `None` while the recording still grows.
    pub expected_size_bytes: Option<u64>,
}

/// `POST …/native/upload/parts/v1`: presign part uploads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsRequest {
    /// The recording `start` created.
    pub recording_id: String,
    /// Its upload session.
    pub upload_id: String,
    /// The parts to presign: 1-100 numbers, each 1-10000, none twice.
    pub part_numbers: Vec<u32>,
    /// The MD5 of each part, in the order of `part_numbers`, to sign into
    /// its URL so that storage refuses corrupted bytes; `None` to sign
    /// without. (A parallel list rather than a map, so that all three body
    /// formats carry it the same plain way as `partNumbers`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<Vec<ContentMd5>>,
}

impl PartsRequest {
    /// Each part number with its MD5, if the request has them.
    pub fn parts(&self) -> impl Iterator<Item = (u32, Option<ContentMd5>)> + '_ {
        self.part_numbers.iter().enumerate().map(|(i, &n)| {
            let md5 = self.content_md5.as_ref().and_then(|all| all.get(i).copied());
            (n, md5)
        })
    }
}

/// `POST …/native/upload/listparts/v1`: what storage holds for a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPartsRequest {
    /// The recording `start` created.
    pub recording_id: String,
    /// Its upload session.
    pub upload_id: String,
}

/// `POST …/native/upload/abort/v1`: abort a session and discard its parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortRequest {
    /// The recording `start` created.
    pub recording_id: String,
    /// Its upload session.
    pub upload_id: String,
}

/// `POST …/native/upload/finish/v1`: complete the upload and have the
/// server persist the recording (the vendor's `NativeUploadFinishRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishRequest {
    /// The recording `start` created.
    pub recording_id: String,
    /// The session being completed.
    pub upload_id: String,
    /// The object key `start` issued.
    pub object_key: String,
    /// What the user called the recording.
    pub recording_name: String,
    /// Which recorder made it.
    pub recorder_type: String,
    /// Whether the recording has video.
    pub is_video_recording: bool,
    /// Whether the recorder runs inside the LMS's file uploader.
    pub used_in_file_uploader: bool,
    /// Every part, 1..N in any order, each with the ETag storage returned.
    pub parts: Vec<FinishPart>,
}

/// One uploaded part of a [`FinishRequest`] (the vendor's `NativeUploadPart`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishPart {
    /// 1 to 10000.
    pub part_number: u32,
    /// The `ETag` storage answered the part's PUT with; quotes optional.
    pub etag: String,
}

impl XmlItem for FinishPart {
    const ITEM: ItemName = ItemName::contract("MediaRecorderController.NativeUploadPart");
}

wire_struct!(StartRequest {
    recording_name: "recordingName",
    recorder_type: "recorderType",
    is_video_recording: "isVideoRecording",
    used_in_file_uploader: "usedInFileUploader",
    content_type: "contentType",
    expected_size_bytes: "expectedSizeBytes",
});

wire_struct!(PartsRequest {
    recording_id: "recordingId",
    upload_id: "uploadId",
    part_numbers: "partNumbers" as Vec<PartNumber> => part_numbers,
    content_md5: "contentMd5",
});

wire_struct!(ListPartsRequest { recording_id: "recordingId", upload_id: "uploadId" });

wire_struct!(AbortRequest { recording_id: "recordingId", upload_id: "uploadId" });

wire_struct!(FinishRequest {
    recording_id: "recordingId",
    upload_id: "uploadId",
    object_key: "objectKey",
    recording_name: "recordingName",
    recorder_type: "recorderType",
    is_video_recording: "isVideoRecording",
    used_in_file_uploader: "usedInFileUploader",
    parts: "parts",
});

wire_struct!(FinishPart {
    part_number: "partNumber" as PartNumber => u32::from,
    etag: "etag",
});
