//! A client of the native upload API (JSON), with every failure sorted into
//! what the engine can do about it: wait for the network, retry later, or
//! stop and tell the user.

use std::time::Duration;

use opptak_api::{
    AbortRequest, BodyFormat, ErrorBody, ErrorCode, FinishRequest, FinishResponse, ListPartsRequest,
    ListPartsResponse, PartsRequest, PartsResponse, Recording, ResponseFormat, StartRequest, StartResponse,
};

const API: &str = "restapi/personal/mediarecorder";
/// How long one API call (a small JSON request and answer) may take before
/// it is given up and tried again. Part PUTs have no such limit: on a slow
/// uplink a part may take many minutes, so they end only when no byte has
/// moved for [`STALL_TIMEOUT`].
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take before the destination counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a part PUT's connection may go without the other end
/// acknowledging a byte (see [`ApiClient::part_http`]) before it counts as
/// stalled and is tried again: far longer than a congested link pauses,
/// short enough that a dead one is noticed within a minute. A slow link is
/// not a stalled one: 12 MiB went through a 0.5 Mbit/s link shared by four
/// parts in 202 s, at the link's rate, without one stall.
/// [`crate::UploadConfig::stall_timeout`] overrides it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(45);

/// Why a call failed, sorted by what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The destination could not be reached at all: wait for the network.
    #[error("cannot reach {url}: {reason}")]
    Offline {
        /// The base URL.
        url: String,
        /// What failed (DNS, refused, timed out…).
        reason: String,
    },
    /// A failure worth retrying (5xx, 408, 429, a cut connection).
    #[error("{reason}")]
    Transient {
        /// What happened.
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The server refused the request for good (4xx): retrying cannot help.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's machine-readable code ([`ErrorCode::Unknown`] when
        /// it sent none, e.g. an LMS or storage).
        code: ErrorCode,
        /// The server's message, with its modelState problems.
        message: String,
    },
    /// The connection is up but no byte moved for a while (a congested or
    /// very slow uplink, a proxy holding the request): retry, but this is
    /// not "offline".
    #[error("the connection stalled: no data moved for {} s", .stalled_for.as_secs())]
    Stalled {
        /// How long nothing moved.
        stalled_for: Duration,
    },
}

impl CallError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's code of a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The API client for one destination and token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the server at `base_url`, signing in with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        // No whole-request timeout: API calls set their own, part PUTs are
        // watched for stalls instead (a slow part is not a failed one).
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .expect("a TLS backend is compiled in");
        Self { base: base_url.trim_end_matches('/').to_owned(), token: token.to_owned(), http }
    }

    /// The destination's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The HTTP client, for PUTs to presigned URLs.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// An HTTP client for part PUTs whose connections the operating system
    /// ends when no byte it sent was acknowledged for `stall_timeout`
    /// (`TCP_USER_TIMEOUT`, where there is one). That is the one place that
    /// knows whether bytes move: a PUT hands its body to a send buffer that
    /// may hold megabytes, which drain at the link's pace long after the
    /// body was handed over. Ended by the system, a stalled connection's
    /// buffered bytes are dropped, not sent after the retry's.
    pub fn part_http(&self, stall_timeout: Duration) -> reqwest::Client {
        let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let builder = builder.tcp_user_timeout(stall_timeout);
        #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
        let _ = stall_timeout;
        builder.build().expect("a TLS backend is compiled in")
    }

    async fn post<Q: opptak_api::Request, R: opptak_api::Response>(
        &self,
        endpoint: &str,
        request: &Q,
    ) -> Result<R, CallError> {
        let sent = self
            .http
            .post(format!("{}/{API}/native/upload/{endpoint}/v1", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .timeout(API_TIMEOUT)
            .body(request.encode(BodyFormat::Json))
            .send()
            .await;
        self.read(sent).await
    }

    async fn read<R: opptak_api::Response>(
        &self,
        sent: reqwest::Result<reqwest::Response>,
    ) -> Result<R, CallError> {
        let response = sent.map_err(|err| self.network_error(&err))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|err| CallError::Transient {
            reason: format!("the answer was cut short ({err})"),
            retry_after: None,
        })?;
        if (200..300).contains(&status) {
            return R::decode(ResponseFormat::Json, &bytes).map_err(|err| CallError::Transient {
                reason: format!("the server's answer could not be read ({err})"),
                retry_after: None,
            });
        }
        Err(classify(status, &bytes, retry_after))
    }

    /// Sorts a transport error: no connection at all is "offline"; an
    /// API call that connected but did not finish in [`API_TIMEOUT`] is
    /// stalled, not offline.
    pub fn network_error(&self, err: &reqwest::Error) -> CallError {
        if err.is_connect() {
            CallError::Offline { url: self.base.clone(), reason: root_cause(err) }
        } else if err.is_timeout() {
            CallError::Stalled { stalled_for: API_TIMEOUT }
        } else {
            CallError::Transient {
                reason: format!("the connection failed ({})", root_cause(err)),
                retry_after: None,
            }
        }
    }

    /// `start`.
    pub async fn start(&self, request: &StartRequest) -> Result<StartResponse, CallError> {
        self.post("start", request).await
    }

    /// `parts`.
    pub async fn parts(&self, request: &PartsRequest) -> Result<PartsResponse, CallError> {
        self.post("parts", request).await
    }

    /// `listparts`.
    pub async fn list_parts(&self, request: &ListPartsRequest) -> Result<ListPartsResponse, CallError> {
        self.post("listparts", request).await
    }

    /// `abort`.
    pub async fn abort(&self, request: &AbortRequest) -> Result<(), CallError> {
        self.post::<_, opptak_api::AbortResponse>("abort", request).await.map(|_| ())
    }

    /// `finish`.
    pub async fn finish(&self, request: &FinishRequest) -> Result<FinishResponse, CallError> {
        self.post("finish", request).await
    }

    /// `GET recordings/{id}/v1`.
    pub async fn recording(&self, recording_id: &str) -> Result<Recording, CallError> {
        let sent = self
            .http
            .get(format!("{}/{API}/recordings/{recording_id}/v1", self.base))
            .bearer_auth(&self.token)
            .header("accept", "application/json")
            .timeout(API_TIMEOUT)
            .send()
            .await;
        self.read(sent).await
    }
}

/// A non-2xx answer as a [`CallError`].
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> CallError {
    let (code, message) = ErrorBody::decode(ResponseFormat::Json, body)
        .map(|error| {
            let mut text = error.message;
            for (field, problems) in error.model_state.iter() {
                text.push_str(&format!(" {field}: {}", problems.join(" ")));
            }
            (error.code, text)
        })
        .unwrap_or_else(|_| (ErrorCode::Unknown, String::from_utf8_lossy(body).chars().take(300).collect()));
    match status {
        408 | 429 | 500..=599 => {
            CallError::Transient { reason: format!("the server answered {status}: {message}"), retry_after }
        }
        _ => CallError::Refused { status, code, message },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare and treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_retry_or_stop() {
        assert!(matches!(
            classify(503, b"{\"message\":\"busy\"}", Some(Duration::from_secs(5))),
            CallError::Transient { retry_after: Some(_), .. }
        ));
        assert!(matches!(classify(429, b"", None), CallError::Transient { .. }));
        assert!(matches!(classify(408, b"", None), CallError::Transient { .. }));
        let refused = classify(400, br#"{"message":"The request is invalid.","modelState":{"request.parts[0].etag":["etag must not be empty."]}}"#, None);
        assert_eq!(refused.status(), Some(400));
        assert!(refused.to_string().contains("request.parts[0].etag: etag must not be empty."), "{refused}");
        assert_eq!(classify(401, b"{\"message\":\"bad token\"}", None).to_string(), "bad token");
        let expired = classify(409, br#"{"code":"upload_expired","message":"This upload expired."}"#, None);
        assert_eq!(expired.code(), Some(ErrorCode::UploadExpired));
        assert_eq!(classify(404, b"<html>nginx</html>", None).code(), Some(ErrorCode::Unknown));
    }

    #[tokio::test]
    async fn an_unreachable_destination_is_offline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ApiClient::new(&format!("http://127.0.0.1:{port}"), "token");
        let err = client.recording("r1").await.unwrap_err();
        assert!(matches!(err, CallError::Offline { .. }), "{err:?}");
    }
}
