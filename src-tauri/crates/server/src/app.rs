//! The HTTP surface: `fn app(state) -> Router` with every endpoint of the
//! native upload API, plus `/healthz`, `/metrics` and (local store) the
//! `/storage/…` routes presigned URLs point at.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opptak_api::{
    AbortRequest, AbortResponse, BodyFormat, ContentType, Decoded, ErrorCode, FieldPath, FinishRequest,
    FinishResponse, ListPartsRequest, ListPartsResponse, MAX_BODY_BYTES, MAX_PARTS, ModelState, PartsRequest,
    PartsResponse, PresignedPart, Recording, RecordingList, RecordingStatus, Request as ApiRequest,
    StartRequest, StartResponse, Timestamp,
};
use rusqlite::OptionalExtension;
use tokio::sync::{Notify, OwnedMutexGuard};
use tower::ServiceExt;

use crate::api_error::{ApiError, Reply, negotiate};
use crate::auth::{User, UserToken, sync_users};
use crate::db::{Db, now_unix};
use crate::metrics::Metrics;
use crate::server::{Limits, StoreConfig};
use crate::store::{CompletedPart, LocalStore, MediaStore, S3Store, StoreError, unquote_etag};

/// Everything a request handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The server's database.
    pub db: Db,
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
    /// One upload session's requests, one at a time.
    pub sessions: Arc<SessionLocks>,
}

/// Serialises the requests on one upload session. Finish completes the
/// upload in storage and then records it; a listparts or abort between the
/// two would find the session open and storage without its upload.
#[derive(Debug)]
pub struct SessionLocks([Arc<tokio::sync::Mutex<()>>; 64]);

impl Default for SessionLocks {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Arc::default()))
    }
}

impl SessionLocks {
    /// Waits until no other request holds `recording_id`'s session.
    pub async fn lock(&self, recording_id: &str) -> OwnedMutexGuard<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(recording_id);
        self.0[hash as usize % self.0.len()].clone().lock_owned().await
    }
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
        let db = Db::open(&data_dir.join("server.sqlite3"))?;
        sync_users(&db, users).await?;
        let (store, local): (Arc<dyn MediaStore>, Option<LocalStore>) = match store {
            StoreConfig::Local => {
                let local = LocalStore::open(&data_dir.join("media"))?;
                local.set_base_url(base_url);
                (Arc::new(local.clone()), Some(local))
            }
            StoreConfig::S3(config) => (Arc::new(S3Store::connect(config.clone()).await?), None),
        };
        Ok(Self {
            db,
            store,
            local,
            limits: Arc::new(limits),
            metrics: Arc::default(),
            wake_jobs: Arc::default(),
            base_url: Arc::from(base_url),
            sessions: Arc::default(),
        })
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
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .fallback(not_found)
        .layer(middleware::from_fn(negotiate));
    let mut routes: Router = api.with_state(state.clone());
    if let Some(local) = &state.local {
        routes = routes.merge(local.router());
    }
    let routes = routes.layer(middleware::from_fn_with_state(state, count_requests));
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
    match state.db.call(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {err}\n")).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let states: Vec<(String, String, i64)> = state
        .db
        .call(|conn| {
            let mut statement = conn.prepare(
                "SELECT 'jobs', state, count(*) FROM jobs GROUP BY state
                 UNION ALL SELECT 'recordings', status, count(*) FROM recordings GROUP BY status
                 UNION ALL SELECT 'upload_sessions', state, count(*) FROM upload_sessions GROUP BY state",
            )?;
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        })
        .await?;
    let states: Vec<(&str, String, i64)> = states
        .into_iter()
        .map(|(metric, state, count)| {
            let metric = match metric.as_str() {
                "jobs" => "jobs",
                "recordings" => "recordings",
                _ => "upload_sessions",
            };
            (metric, state, count)
        })
        .collect();
    let body = state.metrics.render(state.local.as_ref().map(LocalStore::bytes_received), &states);
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

fn timestamp(unix: i64) -> Timestamp {
    Timestamp::from_unix_timestamp(unix).unwrap_or_else(Timestamp::now)
}

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
    let now = now_unix();
    let expires_at = now + state.limits.session_ttl.as_secs() as i64;
    let (rid, uid, key) = (recording_id.clone(), upload_id.clone(), object_key.clone());
    state
        .db
        .write_durably(move |tx| {
            tx.execute(
                "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
                 used_in_file_uploader, expected_size, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'uploading', ?9)",
                rusqlite::params![
                    rid,
                    user.id,
                    request.recording_name.trim(),
                    request.recorder_type,
                    request.content_type.as_str(),
                    request.is_video_recording,
                    request.used_in_file_uploader,
                    request.expected_size_bytes.map(|size| size as i64),
                    now
                ],
            )?;
            tx.execute(
                "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size, state, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6)",
                rusqlite::params![uid, rid, key, store_upload_id, part_size as i64, expires_at],
            )
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

/// An upload session as the database holds it.
#[derive(Debug, Clone)]
struct Session {
    recording_id: String,
    upload_id: String,
    object_key: String,
    store_upload_id: String,
    part_size: u64,
    state: String,
    finished_parts: Option<String>,
    object_size: Option<u64>,
    recording_status: String,
    /// Unix seconds after which an open session takes no more requests.
    expires_at: i64,
}

impl Session {
    /// An open session past its `expiresAt` is over even before the sweeper
    /// marks it so: parts, listparts and finish refuse it.
    fn refuse_if_expired(&self) -> Result<(), ApiError> {
        if self.state == "open" && self.expires_at <= now_unix() {
            return Err(ApiError::conflict(
                ErrorCode::UploadExpired,
                "This upload expired before it was finished; start a new upload for the recording.",
            ));
        }
        Ok(())
    }
}

/// The caller's session for `recording_id`; `None` when unknown or another user's.
async fn load_session(db: &Db, user: &User, recording_id: &str) -> Result<Option<Session>, ApiError> {
    let (user_id, recording_id) = (user.id, recording_id.to_owned());
    Ok(db
        .call(move |conn| {
            conn.query_row(
                "SELECT s.recording_id, s.upload_id, s.object_key, s.store_upload_id, s.part_size, s.state,
                        s.finished_parts, s.object_size, r.status, s.expires_at
                 FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
                 WHERE s.recording_id = ?1 AND r.user_id = ?2",
                rusqlite::params![recording_id, user_id],
                |row| {
                    Ok(Session {
                        recording_id: row.get(0)?,
                        upload_id: row.get(1)?,
                        object_key: row.get(2)?,
                        store_upload_id: row.get(3)?,
                        part_size: row.get::<_, i64>(4)? as u64,
                        state: row.get(5)?,
                        finished_parts: row.get(6)?,
                        object_size: row.get::<_, Option<i64>>(7)?.map(|size| size as u64),
                        recording_status: row.get(8)?,
                        expires_at: row.get(9)?,
                    })
                },
            )
            .optional()
        })
        .await?)
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
/// is invalid. The session stays locked while the guard lives.
async fn decode_with_session<R: NamesSession>(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    body: Body,
) -> Result<(R, Session, OwnedMutexGuard<()>), ApiError> {
    let Decoded { request, mut problems } = decode::<R>(state, headers, body).await?;
    let (recording_id, upload_id) = request.ids();
    let guard = state.sessions.lock(recording_id).await;
    let session =
        if recording_id.is_empty() { None } else { load_session(&state.db, user, recording_id).await? };
    let Some(session) = session else {
        return Err(if problems.is_empty() {
            ApiError::not_found(RECORDING)
        } else {
            ApiError::invalid(problems)
        });
    };
    if !upload_id.is_empty() && upload_id != session.upload_id {
        problems.add(
            FieldPath::request().field("uploadId"),
            "uploadId is not the upload session start issued for this recording; use the uploadId from start.",
        );
    }
    if problems.is_empty() { Ok((request, session, guard)) } else { Err(ApiError::invalid(problems)) }
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
    let (request, session, _guard) =
        decode_with_session::<PartsRequest>(&state, &user, &headers, body).await?;
    session.refuse_if_expired()?;
    if session.state != "open" {
        return Err(closed_session_conflict(&session));
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
    session.finished_parts.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
}

async fn list_parts(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<ListPartsResponse>, ApiError> {
    let (_, session, _guard) = decode_with_session::<ListPartsRequest>(&state, &user, &headers, body).await?;
    session.refuse_if_expired()?;
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
            let parts = finished_parts(&session);
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
        _ => return Err(closed_session_conflict(&session)),
    };
    Ok(Reply(ListPartsResponse { parts }))
}

async fn abort(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<AbortResponse>, ApiError> {
    let (_, session, _guard) = decode_with_session::<AbortRequest>(&state, &user, &headers, body).await?;
    match session.state.as_str() {
        "open" => {
            state.store.abort_upload(&session.object_key, &session.store_upload_id).await?;
            let (upload_id, recording_id) = (session.upload_id.clone(), session.recording_id.clone());
            state
                .db
                .write_durably(move |tx| {
                    tx.execute("UPDATE upload_sessions SET state = 'aborted' WHERE upload_id = ?1 AND state = 'open'", [&upload_id])?;
                    tx.execute("UPDATE recordings SET status = 'aborted' WHERE id = ?1 AND status = 'uploading'", [&recording_id])
                })
                .await?;
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

fn current_status(status: &str) -> RecordingStatus {
    status.parse().unwrap_or(RecordingStatus::Processing)
}

async fn finish(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply<FinishResponse>, ApiError> {
    let mut decoded = decode::<FinishRequest>(&state, &headers, body).await?;
    let request = &decoded.request;
    let _guard = state.sessions.lock(&request.recording_id).await;
    let session = if request.recording_id.is_empty() {
        None
    } else {
        load_session(&state.db, &user, &request.recording_id).await?
    };
    let Some(session) = session else {
        return Err(if decoded.problems.is_empty() {
            ApiError::not_found(RECORDING)
        } else {
            ApiError::invalid(decoded.problems)
        });
    };
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

    session.refuse_if_expired()?;
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
                if let Some(now) = load_session(&state.db, &user, &session.recording_id).await?
                    && now.state != "open"
                {
                    return Err(closed_session_conflict(&now));
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

    let finished_json = serde_json::to_string(&wanted).expect("parts serialise");
    let (upload_id, recording_id) = (session.upload_id.clone(), session.recording_id.clone());
    let name = request.recording_name.trim().to_owned();
    let now = now_unix();
    let committed = state
        .db
        .write_durably(move |tx| {
            let changed = tx.execute(
                "UPDATE upload_sessions SET state = 'completed', finished_parts = ?2, object_size = ?3, object_etag = ?4
                 WHERE upload_id = ?1 AND state = 'open'",
                rusqlite::params![upload_id, finished_json, object.size as i64, object.etag],
            )?;
            if changed == 1 {
                tx.execute(
                    "UPDATE recordings SET status = 'processing', name = ?2, recorder_type = ?3, used_in_file_uploader = ?4
                     WHERE id = ?1",
                    rusqlite::params![recording_id, name, request.recorder_type, request.used_in_file_uploader],
                )?;
                tx.execute(
                    "INSERT INTO jobs (recording_id, state, run_after) VALUES (?1, 'queued', ?2)",
                    rusqlite::params![recording_id, now],
                )?;
            }
            Ok(changed == 1)
        })
        .await?;
    if !committed {
        // Another finish for the same recording won the race.
        let session = load_session(&state.db, &user, &session.recording_id)
            .await?
            .ok_or_else(|| ApiError::not_found(RECORDING))?;
        return repeated_finish(&session, &wanted);
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

const RECORDING_COLUMNS: &str = "id, name, status, content_type, is_video, size_bytes, duration_seconds, created_at, ready_at, error, sha256, \
     (SELECT object_key FROM upload_sessions WHERE recording_id = recordings.id)";

fn recording_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Recording, String)> {
    let content_type: String = row.get(3)?;
    let status: String = row.get(2)?;
    Ok((
        Recording {
            recording_id: row.get(0)?,
            recording_name: row.get(1)?,
            status: current_status(&status),
            content_type: content_type.parse().unwrap_or(ContentType::Wav),
            is_video_recording: row.get(4)?,
            size_bytes: row.get::<_, Option<i64>>(5)?.map(|size| size as u64),
            duration_seconds: row.get(6)?,
            created_at: timestamp(row.get(7)?),
            ready_at: row.get::<_, Option<i64>>(8)?.map(timestamp),
            error: row.get(9)?,
            media_url: None,
            sha256: row.get(10)?,
        },
        row.get(11)?,
    ))
}

/// Recordings are listed once finished; before that they are uploads.
const FINISHED: &str = "status IN ('processing', 'ready', 'failed')";

async fn list_recordings(
    State(state): State<AppState>,
    user: User,
) -> Result<Reply<RecordingList>, ApiError> {
    let user_id = user.id;
    let recordings = state
        .db
        .call(move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {RECORDING_COLUMNS} FROM recordings WHERE user_id = ?1 AND {FINISHED}
                 ORDER BY created_at DESC, rowid DESC"
            ))?;
            statement
                .query_map([user_id], |row| recording_from_row(row).map(|(recording, _)| recording))?
                .collect()
        })
        .await?;
    Ok(Reply(RecordingList(recordings)))
}

async fn recording_detail(
    State(state): State<AppState>,
    user: User,
    Path(recording_id): Path<String>,
) -> Result<Reply<Recording>, ApiError> {
    let user_id = user.id;
    let found = state
        .db
        .call(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ?1 AND user_id = ?2 AND {FINISHED}"
                ),
                rusqlite::params![recording_id, user_id],
                recording_from_row,
            )
            .optional()
        })
        .await?;
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
