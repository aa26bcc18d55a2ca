//! The public face of decoding and encoding: the [`Request`] and
//! [`Response`] traits, and [`ErrorBody`]'s codec.
//!
//! Decoding a request runs in three steps, each collecting problems into
//! one [`ModelState`]:
//! 1. the body is read as UTF-8 and parsed in its format into an untyped
//!    tree (a problem here is about the whole body: key `request`);
//! 2. each field is read from the tree with the type it must have (key
//!    `request.<field>`); an unreadable field gets a placeholder so the
//!    others are still read;
//! 3. the typed request is checked against the API's rules
//!    ([`Request::validate`]); problems that would only judge a
//!    placeholder from step 2 are left out.
//!
//! Only a body that cannot be read as a whole (step 1, or a root that is
//! not an object) fails outright; otherwise the request comes back with
//! its problems ([`Request::decode_with_problems`]), so a server can add
//! its own findings about the fields that were read to the same report.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorBody, Result};
use crate::extract::{Extractor, Origin};
use crate::format::{BodyFormat, ResponseFormat};
use crate::model_state::{FieldPath, ModelState};
use crate::requests::{AbortRequest, FinishRequest, ListPartsRequest, PartsRequest, StartRequest};
use crate::responses::{
    AbortResponse, FinishResponse, ListPartsResponse, PartsResponse, Recording, RecordingList, StartResponse,
};
use crate::tree::Value;
use crate::{MAX_BODY_BYTES, form, json, validate, xml};

mod sealed {
    /// Implemented only by this crate's wire types: the traits built on it
    /// rely on its reading and writing machinery. (That machinery is `pub`
    /// in private modules so it may bound a public trait, yet cannot be
    /// named outside the crate.)
    pub trait Sealed: crate::extract::FromValue + crate::tree::ToNode {}
}

/// A request body of one endpoint: decoded (and validated) by the server,
/// encoded by the client.
///
/// ```
/// use opptak_api::{BodyFormat, FinishRequest, Request};
///
/// let body = br#"{"recordingId": "r1", "uploadId": "u1", "objectKey": "k",
///     "recordingName": "Lecture 1", "recorderType": "desktop-audio",
///     "isVideoRecording": false, "usedInFileUploader": false,
///     "parts": [{"partNumber": 2, "etag": "e2"}, {"partNumber": 1, "etag": "e1"}]}"#;
/// let request = FinishRequest::decode(BodyFormat::Json, body)?;
/// assert_eq!(request.parts.len(), 2);
/// # Ok::<(), opptak_api::Error>(())
/// ```
pub trait Request: Serialize + Sized + sealed::Sealed {
    /// The root element of the XML form, e.g. `MediaRecorderController.NativeUploadFinishRequest`.
    const XML_ROOT: &'static str;

    /// Every rule of the API this request breaks (see
    /// [the crate documentation](crate#validation)); empty when it keeps
    /// them all. A client may call this before sending.
    fn validate(&self) -> ModelState;

    /// Decodes and validates a body.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] over [`MAX_BODY_BYTES`]; otherwise
    /// [`Error::Invalid`] listing every problem found, in the body's
    /// syntax, its fields' types or the API's rules.
    fn decode(format: BodyFormat, body: &[u8]) -> Result<Self> {
        Self::decode_with_problems(format, body)?.into_result()
    }

    /// Decodes a body, returning the request together with every problem
    /// found rather than failing on them, so that a server can add the
    /// problems only it can find (an `uploadId` that is not the session's,
    /// a part missing from storage) and answer them all at once with
    /// [`Decoded::into_result`].
    ///
    /// A field that could not be read (missing, null, of the wrong type)
    /// holds a placeholder — empty text, `0`, `false`, an empty list — and
    /// its problem is already in [`Decoded::problems`]; a server's own
    /// checks should skip empty values, so that they judge only what was
    /// sent.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] over [`MAX_BODY_BYTES`]; [`Error::Invalid`]
    /// (key `request`) when the body as a whole cannot be read: not UTF-8,
    /// malformed, not an object, XML with a DTD or the wrong root element.
    fn decode_with_problems(format: BodyFormat, body: &[u8]) -> Result<Decoded<Self>> {
        let value = parse_body(format, body, Self::XML_ROOT)?;
        let mut extractor = Extractor::new(origin(format));
        let request = Self::from_value(&mut extractor, &value, &FieldPath::request());
        let mut problems = extractor.into_problems();
        match request {
            Some(request) => {
                problems.extend_unless_judging_placeholders(request.validate());
                Ok(Decoded { request, problems })
            }
            None => Err(Error::Invalid(problems)),
        }
    }

    /// Encodes the request as a body in `format`; send it with
    /// [`BodyFormat::content_type`].
    fn encode(&self, format: BodyFormat) -> Vec<u8> {
        match format {
            BodyFormat::Json => to_json(self),
            BodyFormat::Xml => xml::write_contract(Self::XML_ROOT, &self.to_node()).into_bytes(),
            BodyFormat::Form => form::write(&self.to_node()).into_bytes(),
        }
    }
}

/// A decoded request with every problem found in it.
#[derive(Debug)]
pub struct Decoded<R> {
    /// The request as sent; a field that could not be read holds a
    /// placeholder (empty text, `0`, `false`, an empty list).
    pub request: R,
    /// Every problem found, under its key: fields that could not be read
    /// and rules broken. Add the server's own findings here.
    pub problems: ModelState,
}

impl<R> Decoded<R> {
    /// The request if there is no problem, else [`Error::Invalid`] with them all.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `problems` is not empty.
    pub fn into_result(self) -> Result<R> {
        self.problems.into_result(self.request)
    }
}

/// A response body: encoded by the server, decoded by the client.
///
/// JSON goes through serde, so a client may equally use
/// `reqwest::Response::json::<T>()`.
pub trait Response: Serialize + DeserializeOwned + sealed::Sealed {
    /// The root element of the XML form.
    const XML_ROOT: &'static str;

    /// Encodes the response in `format`; answer with
    /// [`ResponseFormat::content_type`].
    fn encode(&self, format: ResponseFormat) -> Vec<u8> {
        match format {
            ResponseFormat::Json => to_json(self),
            ResponseFormat::Xml => xml::write_contract(Self::XML_ROOT, &self.to_node()).into_bytes(),
        }
    }

    /// Decodes a response body.
    ///
    /// # Errors
    /// [`Error::MalformedResponse`] saying what could not be read.
    fn decode(format: ResponseFormat, body: &[u8]) -> Result<Self> {
        match format {
            ResponseFormat::Json => {
                serde_json::from_slice(body).map_err(|e| Error::MalformedResponse(e.to_string()))
            }
            ResponseFormat::Xml => {
                let text = std::str::from_utf8(body).map_err(|e| Error::MalformedResponse(e.to_string()))?;
                let value = xml::parse_contract(text, Self::XML_ROOT).map_err(Error::MalformedResponse)?;
                let mut extractor = Extractor::new(Origin::Xml);
                let response = Self::from_value(&mut extractor, &value, &FieldPath::root("response"));
                let problems = extractor.into_problems();
                match response {
                    Some(response) if problems.is_empty() => Ok(response),
                    _ => Err(Error::MalformedResponse(problems.to_string())),
                }
            }
        }
    }
}

impl ErrorBody {
    /// Encodes the error body in `format`.
    pub fn encode(&self, format: ResponseFormat) -> Vec<u8> {
        match format {
            ResponseFormat::Json => to_json(self),
            ResponseFormat::Xml => xml::write_error(self).into_bytes(),
        }
    }

    /// Decodes an error body.
    ///
    /// # Errors
    /// [`Error::MalformedResponse`] saying what could not be read.
    pub fn decode(format: ResponseFormat, body: &[u8]) -> Result<Self> {
        match format {
            ResponseFormat::Json => {
                serde_json::from_slice(body).map_err(|e| Error::MalformedResponse(e.to_string()))
            }
            ResponseFormat::Xml => std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(xml::read_error)
                .map_err(Error::MalformedResponse),
        }
    }
}

fn origin(format: BodyFormat) -> Origin {
    match format {
        BodyFormat::Json => Origin::Json,
        BodyFormat::Xml => Origin::Xml,
        BodyFormat::Form => Origin::Form,
    }
}

/// Step 1: the body as an untyped tree, or a problem with the whole body.
fn parse_body(format: BodyFormat, body: &[u8], xml_root: &str) -> Result<Value> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    let invalid = |message: String| {
        let mut problems = ModelState::new();
        problems.add(FieldPath::request(), message);
        Error::Invalid(problems)
    };
    let text = std::str::from_utf8(body).map_err(|err| {
        let at = err.valid_up_to();
        let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        invalid(format!(
            "The body is not valid UTF-8: the byte at offset {at} (line {line}) does not start or continue a character. Send UTF-8."
        ))
    })?;
    // Windows tools like to start UTF-8 with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(invalid(
            "The request body is empty; send the request's fields as JSON, XML or a form.".to_owned(),
        ));
    }
    match format {
        BodyFormat::Json => json::parse(text),
        BodyFormat::Xml => xml::parse_contract(text, xml_root),
        BodyFormat::Form => form::parse(text),
    }
    .map_err(invalid)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Cannot fail: every wire type is made of strings, numbers, booleans,
    // lists and string-keyed maps, and a Timestamp always formats (see its
    // invariant). A failure would be a bug in this crate, not bad input.
    serde_json::to_vec(value).expect("wire types always serialise to JSON")
}

macro_rules! request {
    ($type:ty, $root:literal, $rules:path) => {
        impl sealed::Sealed for $type {}

        impl Request for $type {
            const XML_ROOT: &'static str = $root;

            fn validate(&self) -> ModelState {
                $rules(self)
            }
        }
    };
}

request!(StartRequest, "MediaRecorderController.NativeUploadStartRequest", validate::start);
request!(PartsRequest, "MediaRecorderController.NativeUploadPartsRequest", validate::parts);
request!(ListPartsRequest, "MediaRecorderController.NativeUploadListPartsRequest", validate::list_parts);
request!(AbortRequest, "MediaRecorderController.NativeUploadAbortRequest", validate::abort);
request!(FinishRequest, "MediaRecorderController.NativeUploadFinishRequest", validate::finish);

macro_rules! response {
    ($type:ty, $root:literal) => {
        impl sealed::Sealed for $type {}

        impl Response for $type {
            const XML_ROOT: &'static str = $root;
        }
    };
}

response!(StartResponse, "MediaRecorderController.NativeUploadStartResponse");
response!(PartsResponse, "MediaRecorderController.NativeUploadPartsResponse");
response!(ListPartsResponse, "MediaRecorderController.NativeUploadListPartsResponse");
response!(AbortResponse, "MediaRecorderController.NativeUploadAbortResponse");
response!(FinishResponse, "MediaRecorderController.NativeUploadFinishResponse");
response!(Recording, "MediaRecorderController.Recording");
response!(RecordingList, "ArrayOfMediaRecorderController.Recording");
