//! The crate's [`Error`] and the API's error body, [`ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::model_state::ModelState;

/// What can go wrong decoding a body or parsing a wire value.
///
/// Each variant maps to one HTTP status ([`Error::status`]) and one error
/// body ([`Error::to_body`]), so a server answers with
/// `(err.status(), err.to_body().encode(format))`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request's `Content-Type` is not one the API reads (answer 415).
    #[error(
        "unsupported media type {content_type:?}: send application/json, text/json, \
         application/xml, text/xml or application/x-www-form-urlencoded, in UTF-8"
    )]
    UnsupportedMediaType {
        /// The `Content-Type` header as received.
        content_type: String,
    },

    /// The body is longer than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES) (answer 413).
    #[error("the request body is {size} bytes; the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The body's length in bytes.
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },

    /// The body could not be read, or its fields break the API's rules
    /// (answer 400). Problems with the body as a whole (not UTF-8, malformed
    /// JSON, XML with a DTD) are under the key `request`.
    #[error("the request is invalid:\n{0}")]
    Invalid(ModelState),

    /// A response body could not be read as the expected type.
    #[error("the server's response could not be read: {0}")]
    MalformedResponse(String),

    /// A wire value (content type, timestamp, MD5, status) did not parse.
    #[error("{0}")]
    InvalidValue(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status a server answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::UnsupportedMediaType { .. } => 415,
            Error::PayloadTooLarge { .. } => 413,
            Error::Invalid(_) | Error::InvalidValue(_) => 400,
            Error::MalformedResponse(_) => 502,
        }
    }

    /// The model state of an [`Error::Invalid`], if this is one.
    pub fn model_state(&self) -> Option<&ModelState> {
        match self {
            Error::Invalid(state) => Some(state),
            _ => None,
        }
    }

    /// The machine-readable code of this error's answer.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::Invalid(_) | Error::InvalidValue(_) => ErrorCode::InvalidRequest,
            Error::MalformedResponse(_) => ErrorCode::Unknown,
        }
    }

    /// The body a server answers with for this error.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Error::Invalid(state) => ErrorBody::invalid(state.clone()),
            other => ErrorBody::new(other.code(), capitalise(&other.to_string())),
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// What went wrong, for a program: clients branch on this and on the HTTP
/// status, never on the wording of `message`.
///
/// Sent as a snake_case string (`"upload_expired"`). A code this version
/// does not know (a newer server's, or none at all from an LMS that sends
/// only `message`) reads as [`ErrorCode::Unknown`], so a client falls back
/// to the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body broke the API's rules; `modelState` says where.
    InvalidRequest,
    /// 401: no token, or one the server does not accept.
    Unauthorized,
    /// 404: no such recording, or not the caller's.
    NotFound,
    /// 404: no endpoint at this address (a wrong server URL, or a proxy
    /// that does not route the API).
    NoSuchEndpoint,
    /// 409: the upload session was aborted.
    UploadAborted,
    /// 409: the upload session passed its `expiresAt` before finish.
    UploadExpired,
    /// 409: the upload session is already finished.
    UploadFinished,
    /// 409: the session is open but storage no longer holds its parts.
    UploadLost,
    /// 409: finish named parts that differ from an earlier finish.
    FinishConflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body's content type is not one the API reads.
    UnsupportedMediaType,
    /// 503: storage or the database is not answering; retry after `Retry-After`.
    Unavailable,
    /// A code this version does not know, or none was sent.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code an error answer carries: all but [`ErrorCode::Unknown`],
    /// which is only ever read. The server's OpenAPI document lists these.
    pub const SENT: [ErrorCode; 12] = [
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::NotFound,
        Self::NoSuchEndpoint,
        Self::UploadAborted,
        Self::UploadExpired,
        Self::UploadFinished,
        Self::UploadLost,
        Self::FinishConflict,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::Unavailable,
    ];

    /// The wire spelling (`"upload_expired"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::NoSuchEndpoint => "no_such_endpoint",
            Self::UploadAborted => "upload_aborted",
            Self::UploadExpired => "upload_expired",
            Self::UploadFinished => "upload_finished",
            Self::UploadLost => "upload_lost",
            Self::FinishConflict => "finish_conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable => "unavailable",
            Self::Unknown => "unknown",
        }
    }

    /// The code spelled `text`; [`ErrorCode::Unknown`] for any other.
    pub fn from_wire(text: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).unwrap_or_default()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer:
/// `{"code": "...", "message": "...", "modelState": {...}}`.
///
/// `code` is machine-readable ([`ErrorCode`]); `message` is for a person;
/// `modelState` is present only for validation errors (400). In XML:
/// `<Error><Code>…</Code><Message>…</Message><ModelState><Field name="…"><Message>…</Message></Field></ModelState></Error>`.
/// Encode with [`ErrorBody::encode`], read with [`ErrorBody::decode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for a program.
    #[serde(default)]
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The problems of a 400, each under the field it concerns; empty otherwise.
    #[serde(default, skip_serializing_if = "ModelState::is_empty")]
    pub model_state: ModelState,
}

/// The message of a validation error, as the LMS's Web API words it.
pub const INVALID_REQUEST_MESSAGE: &str = "The request is invalid.";

impl ErrorBody {
    /// An error body with a code and a message (401, 404, 409, 413, 415, 429, 503).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), model_state: ModelState::new() }
    }

    /// The body of a 400: [`INVALID_REQUEST_MESSAGE`] and the problems.
    pub fn invalid(model_state: ModelState) -> Self {
        Self { code: ErrorCode::InvalidRequest, message: INVALID_REQUEST_MESSAGE.to_owned(), model_state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        let unsupported = Error::UnsupportedMediaType { content_type: "text/plain".into() };
        assert_eq!(unsupported.status(), 415);
        assert_eq!(Error::PayloadTooLarge { size: 3, limit: 2 }.status(), 413);
        assert_eq!(Error::Invalid(ModelState::new()).status(), 400);
        let body = unsupported.to_body();
        assert!(body.message.starts_with("Unsupported media type \"text/plain\""), "{}", body.message);
        assert!(body.model_state.is_empty());
        assert_eq!(body.code, ErrorCode::UnsupportedMediaType);
    }

    #[test]
    fn a_missing_or_unknown_code_reads_as_unknown() {
        let lms: ErrorBody = serde_json::from_str(r#"{"message":"Nope."}"#).unwrap();
        assert_eq!(lms.code, ErrorCode::Unknown);
        let newer: ErrorBody =
            serde_json::from_str(r#"{"code":"quota_exceeded","message":"Full."}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
        for code in [ErrorCode::UploadExpired, ErrorCode::NoSuchEndpoint, ErrorCode::Unavailable] {
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
        }
    }

    #[test]
    fn every_code_but_unknown_is_sent_once_and_spelled_as_serde_spells_it() {
        let mut listed = std::collections::BTreeSet::new();
        for code in ErrorCode::SENT {
            // Exhaustive: a new code fails to compile here until it is listed.
            match code {
                ErrorCode::InvalidRequest
                | ErrorCode::Unauthorized
                | ErrorCode::NotFound
                | ErrorCode::NoSuchEndpoint
                | ErrorCode::UploadAborted
                | ErrorCode::UploadExpired
                | ErrorCode::UploadFinished
                | ErrorCode::UploadLost
                | ErrorCode::FinishConflict
                | ErrorCode::PayloadTooLarge
                | ErrorCode::UnsupportedMediaType
                | ErrorCode::Unavailable => {}
                ErrorCode::Unknown => panic!("unknown is never sent"),
            }
            assert!(listed.insert(code.as_str()), "{code} is listed twice");
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
        }
        assert_eq!(listed.len(), 12);
    }

    #[test]
    fn json_error_body_omits_an_empty_model_state() {
        let plain = serde_json::to_string(&ErrorBody::new(ErrorCode::NotFound, "Not found.")).unwrap();
        assert_eq!(plain, r#"{"code":"not_found","message":"Not found."}"#);

        let mut state = ModelState::new();
        state.add("request.parts[1].partNumber", "Part number 1 appears more than once.");
        let invalid = serde_json::to_string(&Error::Invalid(state).to_body()).unwrap();
        assert_eq!(
            invalid,
            r#"{"code":"invalid_request","message":"The request is invalid.","modelState":{"request.parts[1].partNumber":["Part number 1 appears more than once."]}}"#
        );
    }
}
