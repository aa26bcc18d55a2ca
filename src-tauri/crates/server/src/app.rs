//! The HTTP surface: `fn app(state) -> Router` with every endpoint of the
//! native upload API, plus the probes (`/livez`, `/readyz`, `/healthz`),
//! `/metrics` and (local store) the `/storage/…` routes presigned URLs point at.
//!
//! Probes for a load balancer: `/livez` is 200 while the process serves
//! HTTP at all; `/readyz` is 200 only when the metadata database and the
//! media store answer, and 503 with a JSON `code` (`draining`,
//! `database_unavailable`, `storage_unavailable`) otherwise — from the
//! moment the server starts draining ([`Traffic::start_draining`], on
//! SIGTERM), so the balancer stops sending new uploads while the requests
//! in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opptak_api::{
    AbortRequest, AbortResponse, BodyFormat, Decoded, ErrorCode, FieldPath, FinishRequest, FinishResponse,
    ListPartsRequest, ListPartsResponse, MAX_BODY_BYTES, MAX_PARTS, ModelState, PartsRequest, PartsResponse,
    PresignedPart, Recording, RecordingList, RecordingStatus, Request as ApiRequest, StartRequest,
    StartResponse, Timestamp,
};
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::api_error::{ApiError, Reply, negotiate};
use crate::auth::{User, UserToken, sync_users};
use crate::db::Db;
use crate::meta::{Completion, MetaStore, NewUpload, Session, SessionAccess, SessionGuard, SqliteMeta};
use crate::metrics::Metrics;
use crate::server::{Limits, StoreConfig};
use crate::store::{CompletedPart, LocalStore, MediaStore, S3Store, StoreError, unquote_etag};

/// Everything a request handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Users, recordings, upload sessions and jobs.
    pub meta: Arc<dyn MetaStore>,
    /// Where media lives.
    pub store: Arc<dyn MediaStore>,
    /// The local store, when media lives in a folder (its routes are served).
    pub local: Option<LocalStore>,
    /// Protocol numbers.
    pub limits: Arc<Limits>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Wakes the verification workers after a finish.
    pub wake_jobs: Arc<Notify>,
    /// The base URL clients reach the server at.
    pub base_url: Arc<str>,
    /// Requests in flight, and whether the server is draining.
    pub traffic: Arc<Traffic>,
}

/// Requests in flight (probes and `/metrics` not counted) and whether the
/// server is draining: still serving, but telling load balancers (`/readyz`)
/// to send nothing new.
#[derive(Debug, Default)]
pub struct Traffic {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Traffic {
    /// From now on `/readyz` answers 503 `draining`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`start_draining`](Self::start_draining) was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `timeout` passed; true when idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// One request in flight; dropped when it is answered (or its client left).
struct InFlight(Arc<Traffic>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The routes that are not traffic: probes and metrics, which a balancer
/// and a scraper keep calling while the server drains.
const OPERATIONS_ROUTES: [&str; 4] = ["/livez", "/readyz", "/healthz", "/metrics"];

async fn count_in_flight(State(traffic): State<Arc<Traffic>>, request: Request, next: Next) -> Response {
    if OPERATIONS_ROUTES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let _in_flight = traffic.enter();
    next.run(request).await
}

impl AppState {
    /// Opens the database (creating it and syncing `users`) and the store
    /// under `data_dir`; `base_url` is where clients reach the server.
    pub async fn open(
        data_dir: &std::path::Path,
        store: &StoreConfig,
        users: Vec<UserToken>,
        limits: Limits,
        base_url: &str,
    ) -> crate::Result<Self> {
        let data_dir_error = |source| crate::Error::DataDir { path: data_dir.to_path_buf(), source };
        std::fs::create_dir_all(data_dir.join("scratch")).map_err(data_dir_error)?;
        let meta = Arc::new(SqliteMeta::open(&data_dir.join("server.sqlite3"))?);
        Self::with_meta(data_dir, meta, store, users, limits, base_url).await
    }

    /// Like [`open`](Self::open), with metadata in `meta` instead of the
    /// data folder's SQLite file.
    pub async fn with_meta(
        data_dir: &std::path::Path,
        meta: Arc<dyn MetaStore>,
        store: &StoreConfig,
        users: Vec<UserToken>,
        limits: Limits,
        base_url: &str,
    ) -> crate::Result<Self> {
        let data_dir_error = |source| crate::Error::DataDir { path: data_dir.to_path_buf(), source };
        std::fs::create_dir_all(data_dir.join("scratch")).map_err(data_dir_error)?;
        sync_users(meta.as_ref(), users).await?;
        let (store, local): (Arc<dyn MediaStore>, Option<LocalStore>) = match store {
            StoreConfig::Local => {
                let local = LocalStore::open(&data_dir.join("media"))?;
                local.set_base_url(base_url);
                (Arc::new(local.clone()), Some(local))
            }
            StoreConfig::S3(config) => (Arc::new(S3Store::connect(config.clone()).await?), None),
        };
        Ok(Self {
            meta,
            store,
            local,
            limits: Arc::new(limits),
            metrics: Arc::default(),
            wake_jobs: Arc::default(),
            base_url: Arc::from(base_url),
            traffic: Arc::default(),
        })
    }

    /// The SQLite database, when metadata lives in one.
    pub fn sqlite(&self) -> Option<&Db> {
        self.meta.sqlite()
    }
}

const API: &str = "/restapi/personal/mediarecorder";

/// The path segments routing ignores the case of; ids keep theirs.
const LITERAL_SEGMENTS: &[&str] = &[
    "restapi",
    "personal",
    "mediarecorder",
    "native",
    "upload",
    "start",
    "parts",
    "listparts",
    "abort",
    "finish",
    "recordings",
    "v1",
];

/// Runs the request to its end even when the client hangs up. start, abort
/// and finish change storage and then the database; cancelled between the
/// two, the session would say "open" over an upload storage no longer has.
async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => ApiError::unavailable(err).into_response(),
    }
}

/// The router: API endpoints (case-insensitive), operations routes and,
/// with the local store, the storage routes.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route(
            &format!("{API}/native/upload/start/v1"),
            post(start).layer(middleware::from_fn(run_to_completion)),
        )
        .route(&format!("{API}/native/upload/parts/v1"), post(parts))
        .route(&format!("{API}/native/upload/listparts/v1"), post(list_parts))
        .route(
            &format!("{API}/native/upload/abort/v1"),
            post(abort).layer(middleware::from_fn(run_to_completion)),
        )
        .route(
            &format!("{API}/native/upload/finish/v1"),
            post(finish).layer(middleware::from_fn(run_to_completion)),
        )
        .route(&format!("{API}/recordings/v1"), get(list_recordings))
        .route(&format!("{API}/recordings/{{recording_id}}/v1"), get(recording_detail))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .fallback(not_found)
        .layer(middleware::from_fn(negotiate));
    let mut routes: Router = api.with_state(state.clone());
    if let Some(local) = &state.local {
        routes = routes.merge(local.router());
    }
    let routes = routes
        .layer(middleware::from_fn_with_state(state.traffic.clone(), count_in_flight))
        .layer(middleware::from_fn_with_state(state, count_requests));
    Router::new().fallback_service(routes.map_request(case_insensitive_path))
}

/// Lower-cases the API's literal path segments so `RestApi/Personal/…` routes
/// like `restapi/personal/…`, leaving ids as sent.
fn case_insensitive_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if path.split('/').any(|segment| {
        segment.bytes().any(|b| b.is_ascii_uppercase())
            && LITERAL_SEGMENTS.iter().any(|lit| segment.eq_ignore_ascii_case(lit))
    }) {
        let rewritten: Vec<String> = path
            .split('/')
            .map(|segment| match LITERAL_SEGMENTS.iter().find(|lit| segment.eq_ignore_ascii_case(lit)) {
                Some(literal) => (*literal).to_owned(),
                None => segment.to_owned(),
            })
            .collect();
        let mut path_and_query = rewritten.join("/");
        if let Some(query) = uri.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let mut parts = uri.clone().into_parts();
        if let Ok(value) = path_and_query.parse() {
            parts.path_and_query = Some(value);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.count_request(&route, response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::no_such_endpoint()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.meta.ping().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {err}\n")).into_response()
        }
    }
}

/// The process is up and serving HTTP.
async fn livez() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// How long `/readyz` waits for the database or the store to answer.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The key `/readyz` asks the store about: it need not exist, the store
/// only has to answer.
const READY_PROBE_KEY: &str = "opptak-readyz-probe";

/// 200 when this instance should get new requests; 503 with a JSON `code`
/// and `message` when it is draining or the database or store do not answer.
async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready = |code: &str, message: String| {
        let body = serde_json::json!({ "code": code, "message": message });
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    if state.traffic.is_draining() {
        return not_ready(
            "draining",
            "This server is stopping; it finishes the requests in flight and takes no new ones.".into(),
        );
    }
    match tokio::time::timeout(READY_CHECK_TIMEOUT, state.meta.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            return not_ready("database_unavailable", format!("The database does not answer: {err}"));
        }
        Err(_) => {
            return not_ready(
                "database_unavailable",
                format!("The database did not answer within {READY_CHECK_TIMEOUT:?}."),
            );
        }
    }
    match tokio::time::timeout(READY_CHECK_TIMEOUT, state.store.head_object(READY_PROBE_KEY)).await {
        Ok(Ok(_) | Err(StoreError::NoSuchObject)) => {}
        Ok(Err(err)) => {
            return not_ready("storage_unavailable", format!("The media store does not answer: {err}"));
        }
        Err(_) => {
            return not_ready(
                "storage_unavailable",
                format!("The media store did not answer within {READY_CHECK_TIMEOUT:?}."),
            );
        }
    }
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready" }))).into_response()
}

/// Takes `user_id`'s session `recording_id`, counting the wait in the metrics.
async fn lock_session(
    state: &AppState,
    user_id: i64,
    recording_id: &str,
    access: SessionAccess,
) -> Result<Option<Box<dyn SessionGuard>>, ApiError> {
    let asked = Instant::now();
    let locked = state.meta.lock_session(user_id, recording_id, access).await;
    state.metrics.observe_lock_wait(asked.elapsed(), matches!(locked, Err(crate::Error::SessionBusy)));
    Ok(locked?)
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let states: Vec<(&str, String, i64)> = state
        .meta
        .state_counts()
        .await?
        .into_iter()
        .map(|(table, state, count)| (table.metric(), state, count))
        .collect();
    let body = state.metrics.render(
        state.local.as_ref().map(LocalStore::bytes_received),
        &states,
        state.meta.pool_stats(),
        state.traffic.in_flight(),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Reads and decodes a request body, collecting every problem.
/// Bodies up to this size are decoded on the async thread that received
/// them; larger ones (up to [`MAX_BODY_BYTES`]: a finish naming 10,000
/// parts, in XML) take long enough to hold up other requests, and are
/// decoded on a blocking thread.
const DECODE_INLINE_BYTES: usize = 64 * 1024;

async fn decode<R: ApiRequest + Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Decoded<R>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let format = BodyFormat::from_content_type(content_type)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::from(opptak_api::Error::PayloadTooLarge { size: MAX_BODY_BYTES + 1, limit: MAX_BODY_BYTES })
    })?;
    state.metrics.count_body_bytes(bytes.len());
    let decoded = if bytes.len() <= DECODE_INLINE_BYTES {
        R::decode_with_problems(format, &bytes)
    } else {
        tokio::task::spawn_blocking(move || R::decode_with_problems(format, &bytes))
            .await
            .map_err(ApiError::unavailable)?
    };
    Ok(decoded?)
}

use crate::meta::timestamp;

fn system_time_to_timestamp(time: std::time::SystemTime) -> Timestamp {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    timestamp(seconds)
}

/// The part size for an upload: the configured size, grown when the
/// expected size would need more than 10,000 parts.
fn part_size_for(limits: &Limits, expected: Option<u64>) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = expected.map_or(0, |size| size.div_ceil(u64::from(MAX_PARTS)));
    limits.part_size.max(needed.div_ceil(MIB) * MIB)
}

async fn start(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<StartResponse>, ApiError> {
    let request: StartRequest = decode::<StartRequest>(&state, &headers, body).await?.into_result()?;
    let recording_id = uuid::Uuid::new_v4().simple().to_string();
    let object_key = format!("recordings/{}/{recording_id}.{}", user.id, request.content_type.extension());
    let part_size = part_size_for(&state.limits, request.expected_size_bytes);
    let store_upload_id =
        state.store.create_upload(&object_key, request.content_type.as_str(), part_size).await?;
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let expires_at = state
        .meta
        .create_upload(NewUpload {
            recording_id: recording_id.clone(),
            user_id: user.id,
            name: request.recording_name.trim().to_owned(),
            recorder_type: request.recorder_type,
            content_type: request.content_type.as_str().to_owned(),
            is_video: request.is_video_recording,
            used_in_file_uploader: request.used_in_file_uploader,
            expected_size: request.expected_size_bytes,
            upload_id: upload_id.clone(),
            object_key: object_key.clone(),
            store_upload_id,
            part_size,
            ttl: state.limits.session_ttl,
        })
        .await?;
    tracing::info!(recording_id, user = user.name, part_size, "upload started");
    Ok(Reply(StartResponse {
        recording_id,
        upload_id,
        object_key,
        part_size_bytes: part_size,
        max_parts: MAX_PARTS,
        expires_at: timestamp(expires_at),
    }))
}

/// An open session past its `expiresAt` is over even before the sweeper
/// marks it so: parts, listparts and finish refuse it.
fn refuse_if_expired(session: &Session) -> Result<(), ApiError> {
    if session.state == "open" && session.past_expiry {
        return Err(ApiError::conflict(
            ErrorCode::UploadExpired,
            "This upload expired before it was finished; start a new upload for the recording.",
        ));
    }
    Ok(())
}

const RECORDING: &str = "The recording";

/// A request that names a recording and its upload session.
trait NamesSession: ApiRequest + Send + 'static {
    /// `(recordingId, uploadId)`.
    fn ids(&self) -> (&str, &str);
}

impl NamesSession for PartsRequest {
    fn ids(&self) -> (&str, &str) {
        (&self.recording_id, &self.upload_id)
    }
}

impl NamesSession for ListPartsRequest {
    fn ids(&self) -> (&str, &str) {
        (&self.recording_id, &self.upload_id)
    }
}

impl NamesSession for AbortRequest {
    fn ids(&self) -> (&str, &str) {
        (&self.recording_id, &self.upload_id)
    }
}

/// Decodes a request that names an upload session and finds the caller's
/// session, reporting the body's problems and a wrong uploadId together.
/// An unknown recording (or another user's) is 404 unless the body itself
/// is invalid. The session stays held (as `access` says) while the guard lives.
async fn decode_with_session<R: NamesSession>(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    body: Body,
    access: SessionAccess,
) -> Result<(R, Box<dyn SessionGuard>), ApiError> {
    let Decoded { request, mut problems } = decode::<R>(state, headers, body).await?;
    let (recording_id, upload_id) = request.ids();
    let guard = if recording_id.is_empty() {
        None
    } else {
        lock_session(state, user.id, recording_id, access).await?
    };
    let Some(guard) = guard else {
        return Err(if problems.is_empty() {
            ApiError::not_found(RECORDING)
        } else {
            ApiError::invalid(problems)
        });
    };
    if !upload_id.is_empty() && upload_id != guard.session().upload_id {
        problems.add(
            FieldPath::request().field("uploadId"),
            "uploadId is not the upload session start issued for this recording; use the uploadId from start.",
        );
    }
    if problems.is_empty() { Ok((request, guard)) } else { Err(ApiError::invalid(problems)) }
}

fn closed_session_conflict(session: &Session) -> ApiError {
    match session.state.as_str() {
        "aborted" => ApiError::conflict(
            ErrorCode::UploadAborted,
            "This upload was aborted; start a new upload for the recording.",
        ),
        "expired" => ApiError::conflict(
            ErrorCode::UploadExpired,
            "This upload expired before it was finished; start a new upload for the recording.",
        ),
        _ => ApiError::conflict(
            ErrorCode::UploadFinished,
            "This upload is already finished; poll the recording's status instead.",
        ),
    }
}

async fn parts(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<PartsResponse>, ApiError> {
    let (request, guard) =
        decode_with_session::<PartsRequest>(&state, &user, &headers, body, SessionAccess::Shared).await?;
    let session = guard.session();
    refuse_if_expired(session)?;
    if session.state != "open" {
        return Err(closed_session_conflict(session));
    }
    let mut presigned = Vec::with_capacity(request.part_numbers.len());
    for (part_number, md5) in request.parts() {
        let md5 = md5.map(|digest| digest.to_base64());
        let signed = state
            .store
            .presign_part(
                &session.object_key,
                &session.store_upload_id,
                part_number,
                md5.as_deref(),
                state.limits.presign_ttl,
            )
            .await?;
        presigned.push(PresignedPart {
            part_number,
            url: signed.url,
            method: signed.method,
            headers: signed.headers,
            expires_at: system_time_to_timestamp(signed.expires_at),
        });
    }
    Ok(Reply(PartsResponse { parts: presigned }))
}

/// The parts of a finished session, rebuilt from what finish recorded.
fn finished_parts(session: &Session) -> Vec<(u32, String)> {
    crate::meta::parse_finished_parts(session.finished_parts.as_deref())
}

async fn list_parts(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<ListPartsResponse>, ApiError> {
    let (_, guard) =
        decode_with_session::<ListPartsRequest>(&state, &user, &headers, body, SessionAccess::Shared).await?;
    let session = guard.session();
    refuse_if_expired(session)?;
    let parts = match session.state.as_str() {
        "open" => state
            .store
            .list_parts(&session.object_key, &session.store_upload_id)
            .await?
            .into_iter()
            .map(|part| opptak_api::StoredPart {
                part_number: part.part_number,
                etag: part.etag,
                size_bytes: part.size,
            })
            .collect(),
        // After finish, storage no longer lists the upload; what finish
        // accepted is the answer, so a resuming client sees every part sent.
        "completed" => {
            let parts = finished_parts(session);
            let count = parts.len() as u64;
            parts
                .into_iter()
                .map(|(part_number, etag)| {
                    let size_bytes = if u64::from(part_number) == count {
                        session.object_size.unwrap_or(0).saturating_sub((count - 1) * session.part_size)
                    } else {
                        session.part_size
                    };
                    opptak_api::StoredPart { part_number, etag, size_bytes }
                })
                .collect()
        }
        _ => return Err(closed_session_conflict(session)),
    };
    Ok(Reply(ListPartsResponse { parts }))
}

async fn abort(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<AbortResponse>, ApiError> {
    let (_, guard) =
        decode_with_session::<AbortRequest>(&state, &user, &headers, body, SessionAccess::Exclusive).await?;
    let session = guard.session().clone();
    match session.state.as_str() {
        "open" => {
            state.store.abort_upload(&session.object_key, &session.store_upload_id).await?;
            guard.abort().await?;
            tracing::info!(recording_id = session.recording_id, "upload aborted");
        }
        "aborted" | "expired" => {}
        _ => {
            return Err(ApiError::conflict(
                ErrorCode::UploadFinished,
                "This upload is already finished and cannot be aborted.",
            ));
        }
    }
    Ok(Reply(AbortResponse { recording_id: session.recording_id, upload_id: session.upload_id }))
}

fn status_url(recording_id: &str) -> String {
    format!("RestApi/personal/mediarecorder/recordings/{recording_id}/v1")
}

use crate::meta::recording_status as current_status;

async fn finish(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<FinishResponse>, ApiError> {
    let mut decoded = decode::<FinishRequest>(&state, &headers, body).await?;
    let request = &decoded.request;
    let guard = if request.recording_id.is_empty() {
        None
    } else {
        lock_session(&state, user.id, &request.recording_id, SessionAccess::Exclusive).await?
    };
    let Some(mut guard) = guard else {
        return Err(if decoded.problems.is_empty() {
            ApiError::not_found(RECORDING)
        } else {
            ApiError::invalid(decoded.problems)
        });
    };
    let session = guard.session().clone();
    if !request.upload_id.is_empty() && request.upload_id != session.upload_id {
        decoded.problems.add(
            FieldPath::request().field("uploadId"),
            "uploadId is not the upload session start issued for this recording; use the uploadId from start.",
        );
    }
    if !request.object_key.is_empty() && request.object_key != session.object_key {
        decoded.problems.add(
            FieldPath::request().field("objectKey"),
            "objectKey is not the key start issued for this recording; use the objectKey from start.",
        );
    }
    if !decoded.problems.is_empty() {
        return Err(ApiError::invalid(decoded.problems));
    }
    let request = decoded.request;
    let mut wanted: Vec<(u32, String)> =
        request.parts.iter().map(|part| (part.part_number, unquote_etag(&part.etag).to_owned())).collect();
    wanted.sort();

    refuse_if_expired(&session)?;
    match session.state.as_str() {
        "open" => {}
        "completed" => return repeated_finish(&session, &wanted),
        _ => return Err(closed_session_conflict(&session)),
    }

    // Every part must be in storage with the ETag the client names, and all
    // but the last exactly partSize long.
    let stored = match state.store.list_parts(&session.object_key, &session.store_upload_id).await {
        Ok(stored) => Some(stored),
        // Completed by a finish whose bookkeeping did not commit (crash):
        // completing again returns the object, so there is nothing to check.
        Err(StoreError::NoSuchUpload) => None,
        Err(err) => return Err(err.into()),
    };
    let mut problems = ModelState::new();
    let last = wanted.len();
    if let Some(stored) = stored {
        for (index, part) in request.parts.iter().enumerate() {
            let key = FieldPath::request().field("parts").index(index);
            match stored.iter().find(|found| found.part_number == part.part_number) {
                None => problems.add(
                    key.field("partNumber"),
                    format!("Part {} is not in storage; upload it before finishing.", part.part_number),
                ),
                Some(found) if found.etag != unquote_etag(&part.etag) => problems.add(
                    key.field("etag"),
                    format!(
                        "Part {} is in storage with a different ETag; send the ETag its upload returned, or upload it again.",
                        part.part_number
                    ),
                ),
                Some(found) if part.part_number as usize != last && found.size != session.part_size => problems.add(
                    key.field("partNumber"),
                    format!(
                        "Part {} is {} bytes; every part but the last must be exactly {} bytes.",
                        part.part_number, found.size, session.part_size
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let completed: Vec<CompletedPart> = wanted
        .iter()
        .map(|(part_number, etag)| CompletedPart { part_number: *part_number, etag: etag.clone() })
        .collect();
    let object =
        match state.store.complete_upload(&session.object_key, &session.store_upload_id, &completed).await {
            Ok(object) => object,
            Err(StoreError::Invalid(reason)) => {
                let mut problems = ModelState::new();
                problems.add(
                    FieldPath::request().field("parts"),
                    format!("Storage refused the parts: {reason}."),
                );
                return Err(ApiError::invalid(problems));
            }
            Err(StoreError::NoSuchUpload) => {
                // An abort or the expiry sweep may have won a race with this finish.
                guard.reload().await?;
                if guard.session().state != "open" {
                    return Err(closed_session_conflict(guard.session()));
                }
                let mut problems = ModelState::new();
                problems.add(
                    FieldPath::request().field("parts"),
                    "Storage holds none of these parts; upload them before finishing.",
                );
                return Err(ApiError::invalid(problems));
            }
            Err(err) => return Err(err.into()),
        };

    let completion = Completion {
        finished_parts: serde_json::to_string(&wanted).expect("parts serialise"),
        object_size: object.size,
        object_etag: object.etag,
        name: request.recording_name.trim().to_owned(),
        recorder_type: request.recorder_type,
        used_in_file_uploader: request.used_in_file_uploader,
    };
    crate::failpoint::pause_if_armed("finish-before-commit").await;
    if !guard.complete(completion).await? {
        // Another finish for the same recording won the race.
        let guard = lock_session(&state, user.id, &session.recording_id, SessionAccess::Shared)
            .await?
            .ok_or_else(|| ApiError::not_found(RECORDING))?;
        return repeated_finish(guard.session(), &wanted);
    }
    state.wake_jobs.notify_waiters();
    tracing::info!(
        recording_id = session.recording_id,
        parts = wanted.len(),
        "upload finished; verification queued"
    );
    Ok(Reply(FinishResponse {
        status_url: status_url(&session.recording_id),
        recording_id: session.recording_id,
        status: RecordingStatus::Processing,
    }))
}

/// A finish for a session already finished: harmless with the same parts, a
/// conflict with different ones.
fn repeated_finish(session: &Session, wanted: &[(u32, String)]) -> Result<Reply<FinishResponse>, ApiError> {
    if finished_parts(session) != wanted {
        return Err(ApiError::conflict(
            ErrorCode::FinishConflict,
            "This recording was already finished with different parts; start a new upload to send a different file.",
        ));
    }
    Ok(Reply(FinishResponse {
        status_url: status_url(&session.recording_id),
        recording_id: session.recording_id.clone(),
        status: current_status(&session.recording_status),
    }))
}

async fn list_recordings(
    State(state): State<AppState>,
    user: User,
) -> Result<Reply<RecordingList>, ApiError> {
    let recordings = state.meta.list_recordings(user.id).await?;
    Ok(Reply(RecordingList(recordings)))
}

async fn recording_detail(
    State(state): State<AppState>,
    user: User,
    Path(recording_id): Path<String>,
) -> Result<Reply<Recording>, ApiError> {
    let found = state.meta.recording(user.id, &recording_id).await?;
    let Some((mut recording, object_key)) = found else { return Err(ApiError::not_found(RECORDING)) };
    if recording.status == RecordingStatus::Ready {
        recording.media_url =
            Some(state.store.presign_get(&object_key, state.limits.media_url_ttl).await?.url);
    }
    Ok(Reply(recording))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_only_when_10000_parts_would_not_hold_the_file() {
        let limits = Limits::default();
        assert_eq!(part_size_for(&limits, None), limits.part_size);
        assert_eq!(part_size_for(&limits, Some(1 << 30)), limits.part_size);
        let huge = 200 * 1024 * 1024 * 1024u64; // 200 GiB
        let size = part_size_for(&limits, Some(huge));
        assert!(size * u64::from(MAX_PARTS) >= huge && size.is_multiple_of(1024 * 1024));
    }

    #[test]
    fn literal_segments_lose_their_case_and_ids_keep_theirs() {
        let request = Request::builder()
            .uri("/RestApi/Personal/MediaRecorder/Recordings/AbC123/V1?x=Y")
            .body(Body::empty())
            .unwrap();
        let rewritten = case_insensitive_path(request);
        assert_eq!(rewritten.uri(), "/restapi/personal/mediarecorder/recordings/AbC123/v1?x=Y");
    }
}
