//! [`MediaStore`] on any S3-compatible service (AWS S3, SeaweedFS, Garage…)
//! through aws-sdk-s3.
//!
//! Clients never talk to this module: they PUT parts to presigned URLs, so
//! the only bytes that pass through the server are downloads for
//! verification ([`S3Store::fetch_to_file`], streamed to disk).
//!
//! Invariants:
//! - [`S3Store::connect`] returns only after the bucket answered a
//!   HeadBucket, so a misconfigured server fails at start with a message
//!   saying what to fix, not at the first upload.
//! - [`MediaStore::list_parts`] returns one part per number, the newest by
//!   LastModified: SeaweedFS keeps every upload of a part number until
//!   completion and lists each, in random order. LastModified has whole
//!   seconds, so two uploads of one number within the same second cannot be
//!   told apart (the later listed wins); resuming stays safe because a client
//!   whose MD5 differs from the listed ETag simply sends the part again.
//! - ETags cross this module unquoted; S3's quotes are added back only in
//!   the CompleteMultipartUpload body.
//! - Errors keep S3's meaning: network trouble, 5xx and throttling become
//!   [`StoreError::Unavailable`] (worth retrying); a refused request becomes
//!   [`StoreError::Invalid`]; missing uploads and objects their own variants.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as S3CompletedPart};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{
    CompletedPart, LocalCopy, MediaStore, ObjectInfo, PresignedRequest, StoreError, StoreResult, StoredPart,
    composite_etag, unquote_etag,
};

/// How long opening a TCP connection to storage may take. Short, so an
/// endpoint that silently drops packets is reported instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Upper bound for one S3 call including its retries (not a download's body,
/// which stalled-stream protection watches instead). Generous because
/// CompleteMultipartUpload of a long recording may take minutes on AWS.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Attempts per call (the first plus retries) on throttling, 5xx and
/// network errors; the SDK backs off exponentially between them.
const MAX_ATTEMPTS: u32 = 3;

/// How long [`S3Store::connect`] may spend proving the bucket is usable,
/// so `opptak serve` fails within seconds rather than after the SDK's
/// retries against an endpoint that does not answer.
const CONNECT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The most ListParts pages read for one upload. S3 allows 10,000 parts at
/// up to 1,000 a page; the margin covers stores that list parts twice. A
/// store that keeps saying "truncated" beyond this is broken, not large.
const MAX_LIST_PAGES: usize = 100;

/// The largest part number S3 accepts.
const MAX_PART_NUMBER: u32 = 10_000;

/// Where an S3-compatible bucket is. Credentials are not part of it: they
/// come from the standard AWS chain (environment, profile, container or
/// instance role), so secrets stay out of config files.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Config {
    /// The service's URL, e.g. `http://127.0.0.1:8333`; `None` for AWS S3
    /// itself (the regional endpoint of `region`).
    pub endpoint: Option<String>,
    /// The bucket that holds the media. It must exist; the server never
    /// creates buckets.
    pub bucket: String,
    /// The region to sign for. Most S3-compatible stores expect `us-east-1`.
    pub region: String,
    /// Address the bucket in the path (`http://host/bucket/key`) rather than
    /// as a subdomain. Self-hosted stores (SeaweedFS, Garage, MinIO) need
    /// `true`; AWS works with either. Defaults to `false`.
    #[serde(default)]
    pub path_style: bool,
}

/// A [`MediaStore`] in an S3 bucket. Cloning shares the HTTP connections.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// The endpoint as users configured it, for messages.
    endpoint: String,
    /// Parts per ListParts page; `None` leaves it to the store (1,000 on AWS).
    list_page_size: Option<i32>,
}

impl S3Store {
    /// Connects with credentials from the standard AWS chain
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, container
    /// or instance roles), then proves that the bucket can be reached (see
    /// [`S3Store::connect_with`]).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] saying what to fix when the endpoint does
    /// not answer within a few seconds, the bucket is missing, or the
    /// credentials are refused.
    pub async fn connect(config: S3Config) -> StoreResult<Self> {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .load()
            .await;
        Self::connect_with(config, &shared).await
    }

    /// Connects with the credentials (and HTTP settings) of `shared`, for
    /// callers that hold explicit keys instead of using the AWS chain. The
    /// endpoint, region and addressing style always come from `config`.
    ///
    /// Sends one HeadBucket, bounded to a few seconds, so a wrong endpoint,
    /// bucket or key is reported now and not at a teacher's first upload.
    ///
    /// # Errors
    /// As [`S3Store::connect`].
    pub async fn connect_with(config: S3Config, shared: &SdkConfig) -> StoreResult<Self> {
        let store = Self::new(config, shared);
        match tokio::time::timeout(
            CONNECT_CHECK_TIMEOUT,
            store.client.head_bucket().bucket(&store.bucket).send(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(err)) => Err(store.connect_error(&err)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "S3 endpoint {} did not answer within {} s. Check --s3-endpoint and that the store is running.",
                store.endpoint,
                CONNECT_CHECK_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A store for `config` without contacting it (presigning works offline).
    fn new(config: S3Config, shared: &SdkConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut builder = aws_sdk_s3::config::Builder::from(shared)
            .region(Region::new(config.region.clone()))
            .force_path_style(config.path_style)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let endpoint =
            config.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            endpoint,
            list_page_size: None,
        }
    }

    /// Asks for at most `parts` parts per ListParts page instead of the
    /// store's default (1,000 on AWS, also its maximum). Useful to exercise
    /// paging in tests without uploading a thousand parts.
    #[must_use]
    pub fn with_list_page_size(mut self, parts: u16) -> Self {
        self.list_page_size = Some(i32::from(parts.max(1)));
        self
    }

    /// Why HeadBucket failed, as an instruction to whoever runs the server.
    fn connect_error(
        &self,
        err: &SdkError<aws_sdk_s3::operation::head_bucket::HeadBucketError, HttpResponse>,
    ) -> StoreError {
        let (endpoint, bucket) = (&self.endpoint, &self.bucket);
        let message = match err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = http_status(status, service.err().code());
                match status {
                    404 => format!(
                        "S3 bucket '{bucket}' does not exist at {endpoint}. Create it, or check --s3-bucket."
                    ),
                    401 | 403 => format!(
                        "S3 endpoint {endpoint} refused access to bucket '{bucket}' ({code}). Check the \
                         credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they \
                         may use this bucket."
                    ),
                    301 | 307 | 400 => format!(
                        "S3 endpoint {endpoint} rejected bucket '{bucket}' ({code}); the bucket may be in \
                         another region. Check --s3-region and --s3-endpoint."
                    ),
                    _ => format!(
                        "S3 endpoint {endpoint} failed to answer for bucket '{bucket}' ({code}). Check \
                         that the store is healthy, then start again."
                    ),
                }
            }
            SdkError::DispatchFailure(failure) if !failure.is_io() && !failure.is_timeout() => format!(
                "requests to S3 endpoint {endpoint} could not be prepared ({}). Check the AWS credentials \
                 (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE).",
                reason(err)
            ),
            _ => format!(
                "S3 endpoint {endpoint} cannot be reached ({}). Check --s3-endpoint and that the store is running.",
                reason(err)
            ),
        };
        StoreError::Unavailable(message)
    }

    /// Maps an SDK error of an operation that tried to `action` ("complete
    /// the upload"); `not_found` is what a 404 without an S3 error code
    /// means for it (HEAD responses carry no body, so no code).
    fn error<E>(&self, action: &str, not_found: Missing, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code();
                let message = service.err().message().unwrap_or("no message given");
                match classify(status, code, not_found) {
                    Meaning::NoSuchUpload => StoreError::NoSuchUpload,
                    Meaning::NoSuchObject => StoreError::NoSuchObject,
                    Meaning::Refused => StoreError::Invalid(format!(
                        "storage refused to {action}: {message} ({})",
                        http_status(status, code)
                    )),
                    Meaning::Misconfigured => StoreError::Unavailable(format!(
                        "S3 endpoint {} refused to {action} in bucket '{}': {message} ({}); check the \
                         server's S3 credentials and bucket",
                        self.endpoint,
                        self.bucket,
                        http_status(status, code)
                    )),
                    Meaning::Unavailable => StoreError::Unavailable(format!(
                        "S3 endpoint {} could not {action}: {message} ({})",
                        self.endpoint,
                        http_status(status, code)
                    )),
                }
            }
            _ => StoreError::Unavailable(format!(
                "S3 endpoint {} could not {action} ({})",
                self.endpoint,
                reason(&err)
            )),
        }
    }

    /// Turns an SDK presigned request into ours.
    fn presigned(
        request: &aws_sdk_s3::presigning::PresignedRequest,
        expires_at: SystemTime,
    ) -> PresignedRequest {
        PresignedRequest {
            url: request.uri().to_owned(),
            method: request.method().to_owned(),
            headers: request.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect(),
            expires_at,
        }
    }

    /// A presigning config for `expires_in`, and when it ends.
    fn presigning(expires_in: Duration) -> StoreResult<(PresigningConfig, SystemTime)> {
        let config = PresigningConfig::expires_in(expires_in).map_err(|err| {
            StoreError::Invalid(format!("cannot presign a URL valid for {expires_in:?}: {err}"))
        })?;
        let expires_at = config.start_time() + config.expires();
        Ok((config, expires_at))
    }
}

/// An error and its causes on one line ("dispatch failure: io error: …:
/// Connection refused"), for messages people read; the SDK's own rendering
/// appends a debug dump.
fn reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// "HTTP 400 InvalidPart", or "HTTP 403" when the response had no body.
fn http_status(status: u16, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("HTTP {status} {code}"),
        None => format!("HTTP {status}"),
    }
}

/// What a 404 without an S3 error code means for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The operation names an upload (ListParts, Complete, Abort).
    Upload,
    /// The operation names an object (HeadObject, GetObject).
    Object,
}

/// What an S3 error response means for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    NoSuchUpload,
    NoSuchObject,
    /// The request itself was wrong (bad part, ETag, size, order…).
    Refused,
    /// The server's own setup is wrong (credentials, bucket): nothing the
    /// client did, and nothing it can fix, so callers see "unavailable".
    Misconfigured,
    /// Storage failed or asked us to slow down; worth retrying.
    Unavailable,
}

/// Classifies an S3 error by its code first (the precise part), then its
/// HTTP status.
fn classify(status: u16, code: Option<&str>, not_found: Missing) -> Meaning {
    match code {
        Some("NoSuchUpload") => return Meaning::NoSuchUpload,
        Some("NoSuchKey") => return Meaning::NoSuchObject,
        Some(
            "NoSuchBucket"
            | "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "RequestTimeTooSkewed",
        ) => return Meaning::Misconfigured,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "InternalError"
            | "ServiceUnavailable"
            | "OperationAborted",
        ) => return Meaning::Unavailable,
        _ => {}
    }
    match status {
        404 => match not_found {
            Missing::Upload => Meaning::NoSuchUpload,
            Missing::Object => Meaning::NoSuchObject,
        },
        301 | 307 | 401 | 403 => Meaning::Misconfigured,
        408 | 429 => Meaning::Unavailable,
        400..=499 => Meaning::Refused,
        _ => Meaning::Unavailable,
    }
}

/// One entry of a ListParts response, with where it was listed.
#[derive(Debug, Clone, PartialEq)]
struct ListedPart {
    part_number: u32,
    etag: String,
    size: u64,
    last_modified: Option<DateTime>,
}

/// One part per number, sorted: of entries listing the same number, the one
/// modified last, and of equally recent ones the one listed later (the
/// order a store appends re-uploads in).
fn newest_per_part(listed: Vec<ListedPart>) -> Vec<StoredPart> {
    let mut newest: BTreeMap<u32, ListedPart> = BTreeMap::new();
    for part in listed {
        match newest.get(&part.part_number) {
            // Strictly older only: on a tie the later listing replaces the kept one.
            Some(kept) if part.last_modified < kept.last_modified => {}
            _ => {
                newest.insert(part.part_number, part);
            }
        }
    }
    newest
        .into_values()
        .map(|part| StoredPart { part_number: part.part_number, etag: part.etag, size: part.size })
        .collect()
}

/// Where the next ListParts page starts, given the part numbers of this
/// page and the store's `next` marker. SeaweedFS lists each upload of a
/// re-uploaded number, and its marker skips the rest of the entries of the
/// page's last number; so the next page starts again at that number (the
/// repeats are deduplicated) unless the page held nothing else, which would
/// never advance.
fn next_marker(numbers_on_page: &[u32], next: u32) -> u32 {
    match numbers_on_page.iter().min() {
        Some(&first) if first < next => next - 1,
        _ => next,
    }
}

/// Checks a part number against S3's range and converts it for the SDK.
fn s3_part_number(part_number: u32) -> StoreResult<i32> {
    if (1..=MAX_PART_NUMBER).contains(&part_number) {
        // In range, so it fits.
        Ok(part_number as i32)
    } else {
        Err(StoreError::Invalid(format!("part number {part_number} is outside 1..={MAX_PART_NUMBER}")))
    }
}

/// An ETag as S3 writes it in XML bodies: quoted.
fn quoted(etag: &str) -> String {
    format!("\"{}\"", unquote_etag(etag))
}

/// Whether a stored object is the one `parts` complete to. Only a composite
/// ETag (`…-N`) can say "no"; other ETag forms are taken as a match, since
/// stores that do not follow AWS's form cannot be checked this way.
fn object_matches_parts(object_etag: Option<&str>, parts: &[CompletedPart]) -> bool {
    let Some(etag) = object_etag else { return true };
    if !etag.contains('-') {
        return true;
    }
    match composite_etag(parts.iter().map(|part| unquote_etag(&part.etag))) {
        Some(expected) => expected == etag,
        // Part ETags that are not hex MD5s (e.g. encrypted objects on AWS):
        // fall back to the part count, which the composite form carries.
        None => etag.rsplit('-').next() == Some(parts.len().to_string().as_str()),
    }
}

#[async_trait]
impl MediaStore for S3Store {
    /// S3 needs no part size up front; `part_size` is ignored.
    async fn create_upload(&self, key: &str, content_type: &str, _part_size: u64) -> StoreResult<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|err| self.error("start an upload", Missing::Upload, err))?;
        output.upload_id.ok_or_else(|| {
            StoreError::Unavailable(format!("S3 endpoint {} started an upload without an id", self.endpoint))
        })
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> StoreResult<PresignedRequest> {
        let (presigning, expires_at) = Self::presigning(expires_in)?;
        // With Content-MD5 among the signed headers, storage checks the body
        // against it, and a client cannot drop or change the header without
        // breaking the signature.
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(s3_part_number(part_number)?)
            .set_content_md5(content_md5.map(str::to_owned))
            .presigned(presigning)
            .await
            .map_err(|err| self.error("presign a part upload", Missing::Upload, err))?;
        Ok(Self::presigned(&request, expires_at))
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> StoreResult<Vec<StoredPart>> {
        let mut listed = Vec::new();
        let mut marker: Option<u32> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.map(|number| number.to_string()))
                .set_max_parts(self.list_page_size)
                .send()
                .await
                .map_err(|err| self.error("list the upload's parts", Missing::Upload, err))?;
            let mut numbers_on_page = Vec::new();
            for part in page.parts() {
                let (Some(number), Some(etag), Some(size)) = (part.part_number(), part.e_tag(), part.size())
                else {
                    // The client re-sends a part it cannot see, which is safe.
                    tracing::warn!(
                        key,
                        upload_id,
                        ?part,
                        "S3 listed a part without number, ETag or size; ignoring it"
                    );
                    continue;
                };
                let (Ok(part_number), Ok(size)) = (u32::try_from(number), u64::try_from(size)) else {
                    tracing::warn!(
                        key,
                        upload_id,
                        ?part,
                        "S3 listed a part with a negative number or size; ignoring it"
                    );
                    continue;
                };
                numbers_on_page.push(part_number);
                listed.push(ListedPart {
                    part_number,
                    etag: unquote_etag(etag).to_owned(),
                    size,
                    last_modified: part.last_modified().copied(),
                });
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(newest_per_part(listed));
            }
            let next = page.next_part_number_marker().and_then(|next| next.parse::<u32>().ok());
            match next.map(|next| next_marker(&numbers_on_page, next)) {
                Some(next) if Some(next) > marker => marker = Some(next),
                _ => {
                    return Err(StoreError::Unavailable(format!(
                        "S3 endpoint {} said the part list of upload {upload_id} goes on but gave no usable marker \
                         ({:?})",
                        self.endpoint,
                        page.next_part_number_marker()
                    )));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "S3 endpoint {} listed more than {MAX_LIST_PAGES} pages of parts for upload {upload_id}",
            self.endpoint
        )))
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<ObjectInfo> {
        let s3_parts = parts
            .iter()
            .map(|part| {
                Ok(S3CompletedPart::builder()
                    .part_number(s3_part_number(part.part_number)?)
                    .e_tag(quoted(&part.etag))
                    .build())
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(s3_parts)).build())
            .send()
            .await
            .map_err(|err| self.error("complete the upload", Missing::Upload, err));
        match result {
            // The response has the ETag but not the size; HeadObject has both.
            Ok(_) => self.head_object(key).await,
            // AWS forgets an upload once it is completed, so a repeated
            // completion (the server crashed before recording the first)
            // finds the object instead. (SeaweedFS answers success again.)
            Err(StoreError::NoSuchUpload) => match self.head_object(key).await {
                Ok(object) if object_matches_parts(object.etag.as_deref(), parts) => Ok(object),
                Ok(_) | Err(StoreError::NoSuchObject) => Err(StoreError::NoSuchUpload),
                Err(other) => Err(other),
            },
            Err(other) => Err(other),
        }
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|err| self.error("abort the upload", Missing::Upload, err));
        match result {
            Ok(_) | Err(StoreError::NoSuchUpload) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectInfo> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.error("read the object's size", Missing::Object, err))?;
        let size =
            output.content_length().and_then(|length| u64::try_from(length).ok()).ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "S3 endpoint {} gave no size for object {key}",
                    self.endpoint
                ))
            })?;
        Ok(ObjectInfo { size, etag: output.e_tag().map(|etag| unquote_etag(etag).to_owned()) })
    }

    async fn fetch_to_file(&self, key: &str, scratch: &Path) -> StoreResult<LocalCopy> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.error("download the object", Missing::Object, err))?;
        let expected = output.content_length().and_then(|length| u64::try_from(length).ok());
        // The copy exists from here on, so every early return deletes it.
        let copy = LocalCopy {
            path: scratch.join(format!(".opptak-s3-{}.download", uuid::Uuid::new_v4())),
            temporary: true,
        };
        let local_error = |err: std::io::Error| {
            StoreError::Unavailable(format!(
                "cannot write the downloaded copy to {}: {err}",
                copy.path.display()
            ))
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy.path)
            .await
            .map_err(local_error)?;
        let mut body = output.body;
        let mut written = 0u64;
        // Chunk by chunk: recordings can be gigabytes, the server's memory is not.
        while let Some(chunk) = body.try_next().await.map_err(|err| {
            StoreError::Unavailable(format!(
                "S3 endpoint {} broke off the download of {key} ({})",
                self.endpoint,
                reason(&err)
            ))
        })? {
            file.write_all(&chunk).await.map_err(local_error)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(local_error)?;
        drop(file);
        if let Some(expected) = expected
            && expected != written
        {
            return Err(StoreError::Unavailable(format!(
                "S3 endpoint {} sent {written} bytes of {key}, not the {expected} it announced",
                self.endpoint
            )));
        }
        Ok(copy)
    }

    async fn presign_get(&self, key: &str, expires_in: Duration) -> StoreResult<PresignedRequest> {
        let (presigning, expires_at) = Self::presigning(expires_in)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|err| self.error("presign a download", Missing::Object, err))?;
        Ok(Self::presigned(&request, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

    use super::*;

    fn listed(part_number: u32, etag: &str, secs: Option<i64>) -> ListedPart {
        ListedPart {
            part_number,
            etag: etag.to_owned(),
            size: 10,
            last_modified: secs.map(DateTime::from_secs),
        }
    }

    fn etags(parts: &[StoredPart]) -> Vec<(u32, &str)> {
        parts.iter().map(|part| (part.part_number, part.etag.as_str())).collect()
    }

    #[test]
    fn a_part_listed_twice_keeps_the_newest_and_the_list_is_sorted() {
        let parts = newest_per_part(vec![
            listed(2, "b-new", Some(20)),
            listed(1, "a", Some(5)),
            listed(2, "b-old", Some(10)),
            listed(3, "c", None),
        ]);
        assert_eq!(etags(&parts), [(1, "a"), (2, "b-new"), (3, "c")]);
    }

    #[test]
    fn equally_recent_duplicates_keep_the_later_listing() {
        let parts = newest_per_part(vec![listed(1, "first", Some(7)), listed(1, "second", Some(7))]);
        assert_eq!(etags(&parts), [(1, "second")]);
        let undated = newest_per_part(vec![listed(1, "first", None), listed(1, "second", None)]);
        assert_eq!(etags(&undated), [(1, "second")]);
    }

    #[test]
    fn a_dated_listing_beats_an_undated_one() {
        let parts = newest_per_part(vec![listed(1, "dated", Some(1)), listed(1, "undated", None)]);
        assert_eq!(etags(&parts), [(1, "dated")]);
    }

    #[test]
    fn paging_restarts_at_the_last_number_of_a_page() {
        // SeaweedFS, 3 entries a page: [1, 1, 2] then marker 2 would skip a second entry for 2.
        assert_eq!(next_marker(&[1, 1, 2], 2), 1);
        // AWS: one entry per number, the restart re-lists one part, which deduplication drops.
        assert_eq!(next_marker(&[4, 5, 6], 6), 5);
        // A page of a single number must still advance.
        assert_eq!(next_marker(&[3, 3, 3], 3), 3);
        assert_eq!(next_marker(&[], 9), 9);
    }

    #[test]
    fn error_codes_decide_before_statuses() {
        assert_eq!(classify(404, Some("NoSuchUpload"), Missing::Object), Meaning::NoSuchUpload);
        assert_eq!(classify(404, Some("NoSuchKey"), Missing::Upload), Meaning::NoSuchObject);
        assert_eq!(classify(404, Some("NoSuchBucket"), Missing::Object), Meaning::Misconfigured);
        assert_eq!(classify(400, Some("InvalidPart"), Missing::Upload), Meaning::Refused);
        assert_eq!(classify(400, Some("EntityTooSmall"), Missing::Upload), Meaning::Refused);
        assert_eq!(classify(400, Some("InvalidPartOrder"), Missing::Upload), Meaning::Refused);
        assert_eq!(classify(400, Some("RequestTimeout"), Missing::Upload), Meaning::Unavailable);
        assert_eq!(classify(503, Some("SlowDown"), Missing::Upload), Meaning::Unavailable);
        assert_eq!(classify(403, Some("SignatureDoesNotMatch"), Missing::Upload), Meaning::Misconfigured);
    }

    #[test]
    fn statuses_decide_without_a_code() {
        assert_eq!(classify(404, None, Missing::Object), Meaning::NoSuchObject);
        assert_eq!(classify(404, None, Missing::Upload), Meaning::NoSuchUpload);
        assert_eq!(classify(403, None, Missing::Object), Meaning::Misconfigured);
        assert_eq!(classify(429, None, Missing::Object), Meaning::Unavailable);
        assert_eq!(classify(500, None, Missing::Object), Meaning::Unavailable);
        assert_eq!(classify(503, Some("Whatever"), Missing::Object), Meaning::Unavailable);
        assert_eq!(classify(409, None, Missing::Object), Meaning::Refused);
    }

    #[test]
    fn reasons_read_as_one_line_of_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(reason(&Outer(refused)), "dispatch failure: Connection refused");
        assert_eq!(http_status(403, None), "HTTP 403");
        assert_eq!(http_status(400, Some("InvalidPart")), "HTTP 400 InvalidPart");
    }

    #[test]
    fn part_numbers_outside_s3s_range_are_refused() {
        assert!(matches!(s3_part_number(0), Err(StoreError::Invalid(_))));
        assert!(matches!(s3_part_number(10_001), Err(StoreError::Invalid(_))));
        assert_eq!(s3_part_number(10_000).ok(), Some(10_000));
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
    }

    #[test]
    fn a_repeated_completion_accepts_only_the_object_its_parts_make() {
        let md5s = ["0cc175b9c0f1b6a831c399e269772661", "92eb5ffee6ae2fec3ad71c777531578f"];
        let parts: Vec<CompletedPart> = md5s
            .iter()
            .enumerate()
            .map(|(index, etag)| CompletedPart { part_number: index as u32 + 1, etag: (*etag).to_owned() })
            .collect();
        let composite = composite_etag(md5s).expect("hex");
        assert!(object_matches_parts(Some(&composite), &parts));
        assert!(!object_matches_parts(Some("00000000000000000000000000000000-2"), &parts));
        assert!(
            object_matches_parts(Some("0cc175b9c0f1b6a831c399e269772661"), &parts),
            "plain ETags are not checked"
        );
        assert!(object_matches_parts(None, &parts));
    }

    fn offline_store() -> S3Store {
        let shared = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AK", "SK", None, None, "test",
            )))
            .build();
        S3Store::new(
            S3Config {
                endpoint: Some("http://127.0.0.1:9".to_owned()),
                bucket: "media".to_owned(),
                region: "us-east-1".to_owned(),
                path_style: true,
            },
            &shared,
        )
    }

    #[tokio::test]
    async fn a_presigned_part_signs_its_content_md5() {
        let md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
        let request = offline_store()
            .presign_part("rec/a.wav", "upload-1", 3, Some(md5), Duration::from_secs(60))
            .await
            .expect("presign");
        assert_eq!(request.method, "PUT");
        assert!(request.url.starts_with("http://127.0.0.1:9/media/rec/a.wav?"), "{}", request.url);
        assert!(
            request.url.contains("partNumber=3") && request.url.contains("uploadId=upload-1"),
            "{}",
            request.url
        );
        let signed = request
            .url
            .split('&')
            .find(|pair| pair.starts_with("X-Amz-SignedHeaders="))
            .expect("signed headers");
        assert!(signed.contains("content-md5"), "{signed}");
        let header = request.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-md5"));
        assert_eq!(header.map(|(_, value)| value.as_str()), Some(md5));
        let lifetime = request.expires_at.duration_since(SystemTime::now()).expect("in the future");
        assert!(lifetime <= Duration::from_secs(60) && lifetime > Duration::from_secs(50));
    }

    #[tokio::test]
    async fn a_presigned_part_without_md5_needs_no_headers() {
        let request = offline_store()
            .presign_part("a.wav", "u", 1, None, Duration::from_secs(60))
            .await
            .expect("presign");
        assert!(request.headers.is_empty(), "{:?}", request.headers);
    }

    #[tokio::test]
    async fn presigning_for_longer_than_s3_allows_is_refused() {
        let result = offline_store().presign_get("a.wav", Duration::from_secs(8 * 24 * 3600)).await;
        assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");
    }
}
