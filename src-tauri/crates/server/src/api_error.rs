//! Answers in the format the client accepts: handlers return [`Reply`] or
//! [`ApiError`] without knowing it; [`negotiate`] encodes them as JSON or
//! XML from the request's `Accept` header.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opptak_api::{ErrorBody, ErrorCode, ModelState, ResponseFormat};

use crate::store::StoreError;

/// Seconds a client is asked to wait when storage or the database is busy.
const RETRY_AFTER_SECONDS: u64 = 5;

/// A body waiting to be encoded in the negotiated format.
#[derive(Clone)]
struct Pending(Arc<dyn Fn(ResponseFormat) -> Vec<u8> + Send + Sync>);

fn pending(
    status: StatusCode,
    encode: impl Fn(ResponseFormat) -> Vec<u8> + Send + Sync + 'static,
) -> Response {
    let mut response = status.into_response();
    response.extensions_mut().insert(Pending(Arc::new(encode)));
    response
}

/// A successful answer: any response type of the API.
pub struct Reply<T>(pub T);

impl<T: opptak_api::Response + Send + Sync + 'static> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        pending(StatusCode::OK, move |format| self.0.encode(format))
    }
}

/// An error answer: a status and the spec's `{message, modelState}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody::new(code, message), retry_after: false }
    }

    /// The machine-readable code of this answer.
    pub fn code(&self) -> ErrorCode {
        self.body.code
    }

    /// 401: no or bad token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "Authorization is missing or the token is not valid. Send 'Authorization: Bearer <token>' with a token your administrator gave you.",
        )
    }

    /// 404: unknown, or not the caller's (which must look the same).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} was not found."))
    }

    /// 404: no endpoint at this address.
    pub fn no_such_endpoint() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoSuchEndpoint,
            "No API endpoint at this address; check the server URL. The resource was not found.",
        )
    }

    /// 409: the request conflicts with the recording's state; `code` says how.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 400 with every problem found.
    pub fn invalid(problems: ModelState) -> Self {
        Self { status: StatusCode::BAD_REQUEST, body: ErrorBody::invalid(problems), retry_after: false }
    }

    /// 503 with `Retry-After`: a dependency failed; the client should retry.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "answering 503");
        Self {
            retry_after: true,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "The server cannot reach its storage or database right now. Try again in a few seconds.",
            )
        }
    }
}

impl ApiError {
    /// 503 with `Retry-After`: another request (on this or another server
    /// instance) held the upload session for longer than the lock timeout.
    /// The code is `unavailable`, which clients already retry after the wait.
    pub fn session_busy() -> Self {
        tracing::warn!("answering 503: an upload session stayed held past the lock timeout");
        Self {
            retry_after: true,
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "The server is still working on an earlier request for this upload (it may have been sent twice). Try again in a few seconds.",
            )
        }
    }
}

impl From<opptak_api::Error> for ApiError {
    fn from(err: opptak_api::Error) -> Self {
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self { status, body: err.to_body(), retry_after: false }
    }
}

impl From<crate::Error> for ApiError {
    fn from(err: crate::Error) -> Self {
        match err {
            crate::Error::SessionBusy => Self::session_busy(),
            err => Self::unavailable(err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // The session is open here but storage lost its upload (a server
            // crash between completing and recording it): retrying cannot
            // help, a new upload can.
            StoreError::NoSuchUpload => Self::conflict(
                ErrorCode::UploadLost,
                "Storage no longer holds this upload's parts; start a new upload for the recording.",
            ),
            err => Self::unavailable(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body;
        let mut response = pending(self.status, move |format| body.encode(format));
        if self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// Middleware: encodes pending bodies as JSON, or XML when `Accept` prefers it.
pub async fn negotiate(request: Request, next: Next) -> Response {
    let format = ResponseFormat::from_accept(
        request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or(""),
    );
    let mut response = next.run(request).await;
    if let Some(Pending(encode)) = response.extensions_mut().remove::<Pending>() {
        let (mut parts, _) = response.into_parts();
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        parts.headers.remove(header::CONTENT_LENGTH);
        response = Response::from_parts(parts, axum::body::Body::from(encode(format)));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_session_is_503_with_retry_after_and_says_to_try_again() {
        let error = ApiError::from(crate::Error::SessionBusy);
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert!(error.body.message.contains("still working on an earlier request"), "{}", error.body.message);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECONDS.to_string().as_str());
    }
}
