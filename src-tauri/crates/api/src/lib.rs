//! Wire types of the Opptak upload API, shared by the server and the client.
//!
//! The API (`shared/spec/native-upload-api.md`) is the LMS vendor's native
//! upload family: `start`, `parts`, `listparts`, `abort` and `finish`,
//! plus the recordings list and detail. This crate holds, with no HTTP
//! framework attached:
//!
//! - the request and response types, camelCase in JSON
//!   ([`StartRequest`], [`FinishResponse`], [`Recording`], ...);
//! - decoding of requests from JSON, DataContract XML and form bodies,
//!   chosen by [`BodyFormat::from_content_type`], with XML read safely
//!   (no DTD, no entity is ever expanded);
//! - validation that reports every problem at once in a [`ModelState`]
//!   keyed the way ASP.NET Web API keys them
//!   (`request.parts[1].partNumber`);
//! - encoding of responses and of the [`ErrorBody`] in JSON or XML, chosen
//!   by [`ResponseFormat::from_accept`].
//!
//! # A server handler, in outline
//!
//! ```
//! use opptak_api::{
//!     BodyFormat, Error, FieldPath, FinishRequest, FinishResponse, RecordingStatus, Request,
//!     Response, ResponseFormat,
//! };
//!
//! fn finish(content_type: &str, accept: &str, body: &[u8]) -> (u16, Vec<u8>) {
//!     let answer = ResponseFormat::from_accept(accept);
//!     let result = BodyFormat::from_content_type(content_type)
//!         .and_then(|format| FinishRequest::decode_with_problems(format, body))
//!         .and_then(|mut decoded| {
//!             // The server's own checks join the same report.
//!             if decoded.request.upload_id != "u1" {
//!                 let key = FieldPath::request().field("uploadId");
//!                 decoded.problems.add(key, "uploadId is not the session start issued for this recording.");
//!             }
//!             decoded.into_result()
//!         });
//!     match result {
//!         Ok(request) => {
//!             let response = FinishResponse {
//!                 status_url: format!("RestApi/personal/mediarecorder/recordings/{}/v1", request.recording_id),
//!                 recording_id: request.recording_id,
//!                 status: RecordingStatus::Processing,
//!             };
//!             (200, response.encode(answer))
//!         }
//!         Err(err) => (err.status(), err.to_body().encode(answer)),
//!     }
//! }
//!
//! let (status, body) = finish(
//!     "application/x-www-form-urlencoded",
//!     "application/json",
//!     b"recordingId=r1&uploadId=u2&objectKey=k&recordingName=Lecture&recorderType=desktop-audio\
//!       &isVideoRecording=false&usedInFileUploader=false&parts[0][partNumber]=1&parts[0][etag]=e1",
//! );
//! assert_eq!(status, 400);
//! assert_eq!(
//!     String::from_utf8(body).unwrap(),
//!     r#"{"message":"The request is invalid.","modelState":{"request.uploadId":["uploadId is not the session start issued for this recording."]}}"#
//! );
//! ```
//!
//! # Reading bodies
//!
//! - JSON: camelCase members; scalars must have the right JSON type (`"1"`
//!   is not a number, `"true"` is not a boolean).
//! - XML: the DataContract form, root `MediaRecorderController.<TypeName>`
//!   in [`CONTRACT_NAMESPACE`] (checked, so a body sent to the wrong
//!   endpoint is refused), members in any order, list items named after
//!   their type, `i:nil="true"` for null. A DOCTYPE, and with it any DTD or
//!   entity declaration, is refused at once, never expanded.
//! - Forms: `parts[0][partNumber]=1` or `parts[0].partNumber=1`;
//!   `partNumbers=2&partNumbers=3`, `partNumbers[]=2` or
//!   `partNumbers[0]=2`; an empty value is null for an optional field.
//! - XML and form text is coerced to the type a field expects: `true` /
//!   `false` (and `1` / `0`), whole numbers.
//! - Member names match ignoring ASCII case in JSON and forms (as the LMS's
//!   Web API binds them) and exactly in XML. Unknown members are ignored; a
//!   member given twice is a problem. A UTF-8 byte order mark is skipped.
//! - Bodies over [`MAX_BODY_BYTES`] are refused (413) before parsing.
//!
//! # Validation
//!
//! Every problem is reported at once, each under its field's key. The
//! rules that need nothing but the request:
//!
//! | field | rule |
//! |---|---|
//! | every field | present and of its type; optional: `expectedSizeBytes`, `contentMd5` |
//! | `recordingName`, `recorderType` | 1-255 characters after trimming, no control characters |
//! | `recordingId`, `uploadId`, `objectKey` | not empty |
//! | `contentType` | one of [`ContentType::ALL`] |
//! | `expectedSizeBytes` | null, or 1 to [`MAX_UPLOAD_BYTES`] |
//! | `partNumbers` | 1 to [`MAX_PRESIGN_BATCH`] entries, each 1 to [`MAX_PARTS`], none twice |
//! | `contentMd5` | absent, or one base64 MD5 per part number, in the same order |
//! | `parts` (finish) | 1 to [`MAX_PARTS`] entries, each part number 1 to [`MAX_PARTS`] and unique, running 1..N without a gap in any order; every `etag` non-empty |
//!
//! Checks that need the server's state (the recording is the caller's,
//! `uploadId` and `objectKey` are the ones `start` issued, each part is in
//! storage with that ETag and size) are the server's: it adds them to the
//! same report through [`Request::decode_with_problems`], with keys built
//! by [`FieldPath`].
//!
//! # Timestamps
//!
//! [`Timestamp`] wraps `time::OffsetDateTime` rather than passing strings,
//! because both sides compute with them (the server sets `expiresAt` from
//! now, the client compares it with now); on the wire it is RFC 3339 in
//! UTC.
//!
//! # Modules
//!
//! Parsing meets in one small untyped tree (`tree`): `json`, `xml` and
//! `form` each turn a body into it, `extract` reads typed fields out of it
//! while collecting problems, and `validate` holds the API's rules. Writing
//! goes the other way through the same tree for XML and forms; JSON is
//! plain serde.

#![warn(missing_docs)]

mod codec;
mod error;
mod extract;
mod form;
mod format;
mod json;
mod limits;
pub mod md5;
mod model_state;
mod requests;
mod responses;
mod tree;
mod types;
mod validate;
mod wire;
mod xml;

pub use codec::{Decoded, Request, Response};
pub use error::{Error, ErrorBody, ErrorCode, INVALID_REQUEST_MESSAGE, Result};
pub use format::{BodyFormat, ResponseFormat};
pub use limits::{
    MAX_BODY_BYTES, MAX_NAME_CHARS, MAX_PART_SIZE, MAX_PARTS, MAX_PRESIGN_BATCH, MAX_UPLOAD_BYTES,
    MIN_PART_SIZE,
};
pub use model_state::{FieldPath, MAX_MODEL_STATE_KEYS, ModelState};
pub use requests::{AbortRequest, FinishPart, FinishRequest, ListPartsRequest, PartsRequest, StartRequest};
pub use responses::{
    AbortResponse, FinishResponse, ListPartsResponse, PartsResponse, PresignedPart, Recording, RecordingList,
    StartResponse, StoredPart,
};
pub use types::{ContentMd5, ContentType, RecordingStatus, Timestamp};
pub use xml::{ARRAYS_NAMESPACE, CONTRACT_NAMESPACE, XSI_NAMESPACE};

#[cfg(test)]
mod tests;
