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

    /// The body a server answers with for this error.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Error::Invalid(state) => ErrorBody::invalid(state.clone()),
            other => ErrorBody::new(capitalise(&other.to_string())),
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

/// The body of every error answer: `{"message": "...", "modelState": {...}}`.
///
/// `modelState` is present only for validation errors (400). In XML:
/// `<Error><Message>…</Message><ModelState><Field name="…"><Message>…</Message></Field></ModelState></Error>`.
/// Encode with [`ErrorBody::encode`], read with [`ErrorBody::decode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub message: String,
    /// The problems of a 400, each under the field it concerns; empty otherwise.
    #[serde(default, skip_serializing_if = "ModelState::is_empty")]
    pub model_state: ModelState,
}

/// The message of a validation error, as the LMS's Web API words it.
pub const INVALID_REQUEST_MESSAGE: &str = "The request is invalid.";

impl ErrorBody {
    /// An error body with only a message (401, 404, 409, 413, 415, 429, 503).
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), model_state: ModelState::new() }
    }

    /// The body of a 400: [`INVALID_REQUEST_MESSAGE`] and the problems.
    pub fn invalid(model_state: ModelState) -> Self {
        Self { message: INVALID_REQUEST_MESSAGE.to_owned(), model_state }
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
    }

    #[test]
    fn json_error_body_omits_an_empty_model_state() {
        let plain = serde_json::to_string(&ErrorBody::new("Not found.")).unwrap();
        assert_eq!(plain, r#"{"message":"Not found."}"#);

        let mut state = ModelState::new();
        state.add("request.parts[1].partNumber", "Part number 1 appears more than once.");
        let invalid = serde_json::to_string(&Error::Invalid(state).to_body()).unwrap();
        assert_eq!(
            invalid,
            r#"{"message":"The request is invalid.","modelState":{"request.parts[1].partNumber":["Part number 1 appears more than once."]}}"#
        );
    }
}
