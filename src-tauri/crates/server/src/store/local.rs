//! [`LocalStore`]: recordings in a folder of the server's data directory.
//!
//! Layout under the store's root:
//! - `uploads/<upload id>/meta.json` — key and part size of an open upload;
//! - `uploads/<upload id>/data` — the object being assembled: part *n* is
//!   written at offset (n−1)·partSize, so completing needs no copy, only a
//!   truncate and a rename;
//! - `uploads/<upload id>/parts/<n>` — "md5 size" of a part, written only
//!   after its bytes are synced: a part is listed only once it is whole;
//! - `objects/<key>` and `objects/<key>.meta.json` — completed objects;
//! - `signing.key` — the URL-signing key, readable by its owner only.
//!
//! Crash consistency (a power cut may come between any two steps):
//! - a part is answered 200 only once its bytes, its marker and the
//!   marker's directory entry are synced, so a part a client was told is
//!   stored is still listed after the crash;
//! - completing writes the object's meta (size and composite ETag), then
//!   moves `data` to `objects/<key>` (synced): that move is the commit. The
//!   upload folder is then renamed to `<upload id>.removing` (atomic) and
//!   deleted. A completion repeated after a crash at any point returns the
//!   object: with the folder still there but `data` gone, the object's meta
//!   shows the same parts were completed; with the folder gone, the object
//!   is there. A folder left half-deleted is `*.removing`, deleted by
//!   [`LocalStore::open`].
//!
//! Clients PUT parts and GET objects through the server's own `/storage/…`
//! routes ([`LocalStore::router`]) with URLs signed by HMAC-SHA256 over the
//! method, key, upload id, part number, expiry and Content-MD5.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncSeekExt;
use tower::ServiceExt;

use super::md5_lanes::HashStream;
use super::{
    CompletedPart, LocalCopy, MediaStore, ObjectInfo, PresignedRequest, StoreError, StoreResult, StoredPart,
    composite_etag, unquote_etag,
};

/// A [`MediaStore`] in a local folder, served through the server's own routes.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    secret: [u8; 32],
    base_url: OnceLock<String>,
    bytes_received: AtomicU64,
    /// Emptied 1 MiB blocks kept for the next parts: a fresh one is a fresh
    /// mapping the kernel has to fault in and zero, page by page.
    blocks: std::sync::Mutex<Vec<bytes::BytesMut>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadMeta {
    key: String,
    part_size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObjectMeta {
    size: u64,
    etag: String,
}

fn io_err(err: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("local storage: {err}"))
}

/// An error reading or writing a file of an upload: one that is not there
/// means the upload is gone (an abort removed its folder, perhaps while this
/// ran), which is not a storage failure.
fn upload_io_err(err: std::io::Error) -> StoreError {
    if err.kind() == std::io::ErrorKind::NotFound { StoreError::NoSuchUpload } else { io_err(err) }
}

impl LocalStore {
    /// Opens (creating) the store under `root`. The URL-signing key lives in
    /// `root/signing.key` (mode 0600) so URLs stay valid across restarts.
    /// Upload folders a crash left half-deleted are deleted now.
    pub fn open(root: &Path) -> StoreResult<Self> {
        for dir in ["uploads", "objects"] {
            std::fs::create_dir_all(root.join(dir)).map_err(io_err)?;
        }
        remove_half_deleted_uploads(&root.join("uploads")).map_err(io_err)?;
        let key_path = root.join("signing.key");
        let secret = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => {
                // A key written by a version that left it readable by all.
                keep_private(&key_path).map_err(io_err)?;
                bytes.try_into().expect("length checked")
            }
            _ => {
                let secret: [u8; 32] = rand::random();
                write_synced_private(&key_path, &secret).map_err(io_err)?;
                secret
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                secret,
                base_url: OnceLock::new(),
                bytes_received: AtomicU64::new(0),
                blocks: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Tells the store the server's public base URL (known once it listens).
    pub fn set_base_url(&self, url: &str) {
        let _ = self.inner.base_url.set(url.trim_end_matches('/').to_owned());
    }

    /// Bytes received by part PUTs since start.
    pub fn bytes_received(&self) -> u64 {
        self.inner.bytes_received.load(Ordering::Relaxed)
    }

    /// The `/storage/…` routes that presigned URLs point at.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/storage/uploads/{upload_id}/parts/{part_number}", put(put_part))
            .route("/storage/objects/{*key}", get(get_object))
            .with_state(self.clone())
    }

    fn base_url(&self) -> StoreResult<&str> {
        self.inner
            .base_url
            .get()
            .map(String::as_str)
            .ok_or_else(|| StoreError::Unavailable("the local store's URL is not known yet".into()))
    }

    fn upload_dir(&self, upload_id: &str) -> StoreResult<PathBuf> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StoreError::NoSuchUpload);
        }
        Ok(self.inner.root.join("uploads").join(upload_id))
    }

    fn object_path(&self, key: &str) -> StoreResult<PathBuf> {
        let safe = !key.is_empty()
            && key.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..")
            && !key.contains('\\');
        if !safe {
            return Err(StoreError::Invalid(format!("invalid object key {key:?}")));
        }
        Ok(self.inner.root.join("objects").join(key))
    }

    fn read_upload_meta(&self, upload_id: &str) -> StoreResult<UploadMeta> {
        let path = self.upload_dir(upload_id)?.join("meta.json");
        let bytes = std::fs::read(&path).map_err(upload_io_err)?;
        serde_json::from_slice(&bytes)
            .map_err(|err| StoreError::Unavailable(format!("{} is damaged: {err}", path.display())))
    }

    fn signature(
        &self,
        method: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        expires: u64,
        md5: &str,
    ) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.secret).expect("HMAC takes any key length");
        mac.update(format!("{method}\n{key}\n{upload_id}\n{part}\n{expires}\n{md5}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn verify(
        &self,
        method: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        query: &SignedQuery,
    ) -> Result<(), Response> {
        let (Some(expires), Some(sig)) =
            (query.expires.as_deref().and_then(|expires| expires.parse::<u64>().ok()), query.sig.as_deref())
        else {
            return Err(storage_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "The URL is not signed: it needs its expires and sig. Ask the server for a presigned URL.",
            ));
        };
        let expected =
            self.signature(method, key, upload_id, part, expires, query.md5.as_deref().unwrap_or(""));
        let given = hex::decode(sig).unwrap_or_default();
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), hex::encode(given).as_bytes()).into();
        if !matches {
            return Err(storage_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The URL's signature is not valid for this request. Ask the server for a new URL.",
            ));
        }
        if unix_now() > expires {
            return Err(storage_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "The URL has expired. Ask the server for a new URL.",
            ));
        }
        Ok(())
    }

    fn read_parts(&self, upload_id: &str) -> StoreResult<Vec<StoredPart>> {
        let dir = self.upload_dir(upload_id)?.join("parts");
        let mut parts = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(upload_io_err)? {
            let entry = entry.map_err(io_err)?;
            let Some(part_number) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
            else {
                continue; // a temporary file being written
            };
            let text = std::fs::read_to_string(entry.path()).map_err(upload_io_err)?;
            let mut fields = text.split_whitespace();
            let (Some(etag), Some(size)) = (fields.next(), fields.next().and_then(|s| s.parse().ok())) else {
                continue;
            };
            parts.push(StoredPart { part_number, etag: etag.to_owned(), size });
        }
        parts.sort_by_key(|part| part.part_number);
        Ok(parts)
    }

    fn existing_object(&self, key: &str) -> StoreResult<ObjectInfo> {
        let path = self.object_path(key)?;
        let meta_path = meta_path_of(&path);
        match std::fs::read(&meta_path) {
            Ok(bytes) if path.exists() => {
                let meta: ObjectMeta = serde_json::from_slice(&bytes).map_err(|err| {
                    StoreError::Unavailable(format!("{} is damaged: {err}", meta_path.display()))
                })?;
                Ok(ObjectInfo { size: meta.size, etag: Some(meta.etag) })
            }
            Ok(_) => Err(StoreError::NoSuchObject),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NoSuchObject),
            Err(err) => Err(io_err(err)),
        }
    }

    /// Completes an upload; see the module's notes on crash consistency.
    fn complete_blocking(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<ObjectInfo> {
        let meta = match self.read_upload_meta(upload_id) {
            Ok(meta) => meta,
            // Completed before (e.g. the server crashed before recording it);
            // with no object either, the upload is simply gone (aborted).
            Err(StoreError::NoSuchUpload) => {
                return self.existing_object(key).map_err(|err| match err {
                    StoreError::NoSuchObject => StoreError::NoSuchUpload,
                    other => other,
                });
            }
            Err(err) => return Err(err),
        };
        if meta.key != key {
            return Err(StoreError::NoSuchUpload);
        }
        let stored: BTreeMap<u32, StoredPart> =
            self.read_parts(upload_id)?.into_iter().map(|part| (part.part_number, part)).collect();
        let mut size = 0;
        for (index, part) in parts.iter().enumerate() {
            if part.part_number as usize != index + 1 {
                return Err(StoreError::Invalid("parts must be numbered 1..N in order".into()));
            }
            let Some(found) =
                stored.get(&part.part_number).filter(|found| found.etag == unquote_etag(&part.etag))
            else {
                return Err(StoreError::Invalid(format!(
                    "part {} is not stored with ETag {}",
                    part.part_number, part.etag
                )));
            };
            let is_last = index + 1 == parts.len();
            if !is_last && found.size != meta.part_size {
                return Err(StoreError::Invalid(format!(
                    "part {} is {} bytes; every part but the last must be {} bytes",
                    part.part_number, found.size, meta.part_size
                )));
            }
            size += found.size;
        }
        let etag = composite_etag(parts.iter().map(|part| unquote_etag(&part.etag)))
            .ok_or_else(|| StoreError::Invalid("an ETag is not an MD5".into()))?;

        let dir = self.upload_dir(upload_id)?;
        match std::fs::OpenOptions::new().write(true).open(dir.join("data")) {
            Ok(data) => {
                data.set_len(size).map_err(io_err)?;
                data.sync_all().map_err(io_err)?;
                let object = self.object_path(key)?;
                let parent = object.parent().expect("object paths have a parent");
                std::fs::create_dir_all(parent).map_err(io_err)?;
                write_synced(
                    &meta_path_of(&object),
                    &serde_json::to_vec(&ObjectMeta { size, etag: etag.clone() }).expect("serialisable"),
                )
                .map_err(io_err)?;
                std::fs::rename(dir.join("data"), &object).map_err(io_err)?;
                sync_dir(parent).map_err(io_err)?;
            }
            // Moved by a completion that died before deleting the folder:
            // done if the object is these parts, lost otherwise.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => match self.existing_object(key) {
                Ok(found) if found.size == size && found.etag.as_deref() == Some(etag.as_str()) => {}
                Ok(_) | Err(StoreError::NoSuchObject) => return Err(StoreError::NoSuchUpload),
                Err(other) => return Err(other),
            },
            Err(err) => return Err(io_err(err)),
        }
        crash_point("local_store_after_move");
        self.remove_upload_dir(upload_id)?;
        Ok(ObjectInfo { size, etag: Some(etag) })
    }

    /// Deletes an upload's folder: first renamed out of the way in one
    /// step, so a crash while deleting leaves no upload that looks open
    /// with some of its files gone, only a `*.removing` folder for
    /// [`LocalStore::open`] to finish deleting.
    fn remove_upload_dir(&self, upload_id: &str) -> StoreResult<()> {
        let dir = self.upload_dir(upload_id)?;
        let doomed = dir.with_extension(REMOVING);
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err(err)),
        }
        sync_dir(&self.inner.root.join("uploads")).map_err(io_err)?;
        std::fs::remove_dir_all(&doomed).map_err(io_err)
    }
}

/// The extension of an upload folder being deleted (never a valid upload id).
const REMOVING: &str = "removing";

/// Deletes the `*.removing` folders under `uploads` that a crash left.
fn remove_half_deleted_uploads(uploads: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(uploads)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == REMOVING) {
            match std::fs::remove_dir_all(&path) {
                // Another handle on the folder got there first.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Environment variable naming the one [`crash_point`] to stop at.
const PAUSE_AT_VAR: &str = "OPPTAK_TEST_PAUSE_AT";
/// Environment variable naming the folder where the `<point>.reached` file goes.
const PAUSE_DIR_VAR: &str = "OPPTAK_TEST_PAUSE_DIR";
/// How long a process waits at its crash point for the test to kill it.
const PAUSE_LIMIT: Duration = Duration::from_secs(600);

/// A named point where the crash tests (`tests/tests/local_store_crash.rs`)
/// SIGKILL the server. Inert unless the environment variable
/// `OPPTAK_TEST_PAUSE_AT` names `point`: then the process writes its id to
/// `<point>.reached` in the folder `OPPTAK_TEST_PAUSE_DIR` names and
/// sleeps (at most [`PAUSE_LIMIT`]), so the test sees the file and kills it
/// exactly here. Call only on a blocking thread. The points:
/// - `local_store_part_written`: a part's bytes are synced, its marker not yet written;
/// - `local_store_part_recorded`: its marker is synced, the 200 not yet sent;
/// - `local_store_after_move`: `data` is moved into `objects/`, the upload
///   folder not yet deleted.
fn crash_point(point: &str) {
    static PAUSE: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        let at = std::env::var(PAUSE_AT_VAR).ok().filter(|at| !at.is_empty())?;
        let dir = std::env::var_os(PAUSE_DIR_VAR).map_or_else(std::env::temp_dir, PathBuf::from);
        Some((at, dir))
    });
    if let Some((at, dir)) = pause
        && at == point
    {
        tracing::warn!(point, "pausing at a crash point for a test");
        let _ = std::fs::write(dir.join(format!("{point}.reached")), std::process::id().to_string());
        std::thread::sleep(PAUSE_LIMIT);
    }
}

fn meta_path_of(object: &Path) -> PathBuf {
    let mut name = object.file_name().expect("object has a name").to_os_string();
    name.push(".meta.json");
    object.with_file_name(name)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced,
/// so readers see the old content or the new, never half.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_synced_from(path, bytes, std::fs::OpenOptions::new())
}

/// [`write_synced`] for a secret: the file is created readable and writable
/// by its owner only (0600), never briefly readable by others.
fn write_synced_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    write_synced_from(path, bytes, options)
}

fn write_synced_from(path: &Path, bytes: &[u8], mut options: std::fs::OpenOptions) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let mut file = options.write(true).create_new(true).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes an existing secret file readable by its owner only.
fn keep_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Windows cannot open a folder as a file to flush it, and NTFS journals a
/// rename's metadata itself, so there is nothing to sync.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

impl LocalStore {
    /// Runs `work` on a blocking thread: even a small metadata read may wait
    /// on a busy disk, and that wait must not hold an async worker.
    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalStore) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|err| StoreError::Unavailable(err.to_string()))?
    }
}

#[async_trait]
impl MediaStore for LocalStore {
    async fn create_upload(&self, key: &str, _content_type: &str, part_size: u64) -> StoreResult<String> {
        self.object_path(key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&upload_id)?;
        let meta = serde_json::to_vec(&UploadMeta { key: key.to_owned(), part_size }).expect("serialisable");
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(dir.join("parts"))?;
            std::fs::File::create(dir.join("data"))?;
            write_synced(&dir.join("meta.json"), &meta)
        })
        .await
        .map_err(|err| StoreError::Unavailable(err.to_string()))?
        .map_err(io_err)?;
        Ok(upload_id)
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> StoreResult<PresignedRequest> {
        let expires = unix_now() + expires_in.as_secs();
        let md5 = content_md5.unwrap_or("");
        let sig = self.signature("PUT", key, upload_id, part_number, expires, md5);
        let mut url = format!(
            "{}/storage/uploads/{upload_id}/parts/{part_number}?expires={expires}&sig={sig}",
            self.base_url()?
        );
        let mut headers = BTreeMap::new();
        if let Some(md5) = content_md5 {
            url.push_str("&md5=");
            url.push_str(&form_encode(md5));
            headers.insert("Content-MD5".to_owned(), md5.to_owned());
        }
        Ok(PresignedRequest {
            url,
            method: "PUT".into(),
            headers,
            expires_at: UNIX_EPOCH + Duration::from_secs(expires),
        })
    }

    async fn list_parts(&self, _key: &str, upload_id: &str) -> StoreResult<Vec<StoredPart>> {
        let upload_id = upload_id.to_owned();
        self.off_thread(move |store| {
            store.read_upload_meta(&upload_id)?;
            store.read_parts(&upload_id)
        })
        .await
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<ObjectInfo> {
        let (key, upload_id, parts) = (key.to_owned(), upload_id.to_owned(), parts.to_vec());
        self.off_thread(move |store| store.complete_blocking(&key, &upload_id, &parts)).await
    }

    async fn abort_upload(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let upload_id = upload_id.to_owned();
        self.off_thread(move |store| store.remove_upload_dir(&upload_id)).await
    }

    async fn head_object(&self, key: &str) -> StoreResult<ObjectInfo> {
        let key = key.to_owned();
        self.off_thread(move |store| store.existing_object(&key)).await
    }

    async fn fetch_to_file(&self, key: &str, _scratch: &Path) -> StoreResult<LocalCopy> {
        let key = key.to_owned();
        self.off_thread(move |store| {
            store.existing_object(&key)?;
            Ok(LocalCopy { path: store.object_path(&key)?, temporary: false })
        })
        .await
    }

    async fn presign_get(&self, key: &str, expires_in: Duration) -> StoreResult<PresignedRequest> {
        let expires = unix_now() + expires_in.as_secs();
        let sig = self.signature("GET", key, "", 0, expires, "");
        Ok(PresignedRequest {
            url: format!("{}/storage/objects/{key}?expires={expires}&sig={sig}", self.base_url()?),
            method: "GET".into(),
            headers: BTreeMap::new(),
            expires_at: UNIX_EPOCH + Duration::from_secs(expires),
        })
    }
}

fn form_encode(value: &str) -> String {
    value.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// The signature a presigned URL carries. Every field is optional so that
/// a URL without one is refused as unsigned (403) rather than as malformed.
#[derive(Debug, Default, Deserialize)]
struct SignedQuery {
    expires: Option<String>,
    sig: Option<String>,
    md5: Option<String>,
}

impl SignedQuery {
    /// The query, or an empty one (unsigned) when it cannot be read.
    fn or_unsigned(query: Result<Query<Self>, QueryRejection>) -> Self {
        query.map(|Query(query)| query).unwrap_or_default()
    }
}

/// An S3-style XML error, as storage answers.
fn storage_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn store_failure(err: &StoreError) -> Response {
    match err {
        StoreError::NoSuchUpload => storage_error(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The upload does not exist; it may have been completed or aborted.",
        ),
        StoreError::NoSuchObject => {
            storage_error(StatusCode::NOT_FOUND, "NoSuchKey", "The object does not exist.")
        }
        StoreError::Invalid(message) => storage_error(StatusCode::BAD_REQUEST, "InvalidRequest", message),
        StoreError::Unavailable(message) => {
            tracing::error!(error = %message, "local storage failed");
            storage_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Storage failed; try again shortly.",
            )
        }
    }
}

async fn put_part(
    State(store): State<LocalStore>,
    UrlPath((upload_id, part_number)): UrlPath<(String, String)>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = SignedQuery::or_unsigned(query);
    let Ok(part_number) = part_number.parse::<u32>() else {
        return storage_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Part numbers run from 1 to 10000.",
        );
    };
    let read_id = upload_id.clone();
    let meta = match store.off_thread(move |store| store.read_upload_meta(&read_id)).await {
        Ok(meta) => meta,
        Err(err) => return store_failure(&err),
    };
    if let Err(refused) = store.verify("PUT", &meta.key, &upload_id, part_number, &query) {
        return refused;
    }
    if !(1..=opptak_api::MAX_PARTS).contains(&part_number) {
        return storage_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Part numbers run from 1 to 10000.",
        );
    }
    let sent_md5 = headers.get("content-md5").and_then(|v| v.to_str().ok());
    if query.md5.is_some() && query.md5.as_deref() != sent_md5 {
        return storage_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The Content-MD5 header differs from the one the URL was signed for.",
        );
    }
    let expected_md5 = match sent_md5.map(|b64| base64::engine::general_purpose::STANDARD.decode(b64)) {
        Some(Ok(digest)) if digest.len() == 16 => Some(digest),
        Some(_) => {
            return storage_error(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                "Content-MD5 is not the base64 of 16 bytes.",
            );
        }
        None => None,
    };
    match store.receive_part(&upload_id, part_number, meta.part_size, expected_md5, body).await {
        Ok(md5_hex) => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{md5_hex}\"")).expect("hex is a valid header"),
            );
            response
        }
        Err(response) => response,
    }
}

impl LocalStore {
    /// Streams a part's bytes to its offset in the upload's data file,
    /// checking length and MD5, and records the part only once it is whole
    /// and synced.
    ///
    /// A part already stored stays intact until its replacement has
    /// arrived whole and passed the checks: the replacement is staged in a
    /// file of its own and copied into place only then, so a refused PUT
    /// (bad digest, too large, cut short) changes nothing. A first upload,
    /// the usual case, goes straight to its offset, where nothing listed
    /// can be harmed.
    async fn receive_part(
        &self,
        upload_id: &str,
        part_number: u32,
        part_size: u64,
        expected_md5: Option<Vec<u8>>,
        body: Body,
    ) -> Result<String, Response> {
        let failed = |err: std::io::Error| store_failure(&io_err(err));
        let dir = self.upload_dir(upload_id).map_err(|err| store_failure(&err))?;
        let marker = dir.join("parts").join(part_number.to_string());
        let offset = u64::from(part_number - 1) * part_size;
        if !tokio::fs::try_exists(&marker).await.map_err(failed)? {
            let data = open_data(&dir).await?;
            let direct = Some(dir.join("data"));
            let (md5_hex, size) =
                self.receive_into(data, direct, offset, part_size, expected_md5, body).await?;
            return record_part(marker, md5_hex, size).await;
        }
        // Not a number, so never listed as a part (see `read_parts`).
        let staging =
            dir.join("parts").join(format!("{part_number}.staging-{}", uuid::Uuid::new_v4().simple()));
        let result = async {
            let file = tokio::fs::File::create(&staging).await.map_err(failed)?;
            let (md5_hex, size) = self.receive_into(file, None, 0, part_size, expected_md5, body).await?;
            // The replacement is whole and checked: only now does the old copy
            // go, and its marker is gone for good (synced) before the bytes it
            // describes are overwritten.
            match tokio::fs::remove_file(&marker).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(failed(err)),
            }
            let parts_dir = dir.join("parts");
            tokio::task::spawn_blocking(move || sync_dir(&parts_dir))
                .await
                .map_err(|err| store_failure(&StoreError::Unavailable(err.to_string())))?
                .map_err(failed)?;
            let mut data = open_data(&dir).await?;
            data.seek(std::io::SeekFrom::Start(offset)).await.map_err(failed)?;
            let mut staged = tokio::fs::File::open(&staging).await.map_err(failed)?;
            tokio::io::copy(&mut staged, &mut data).await.map_err(failed)?;
            data.sync_data().await.map_err(failed)?;
            record_part(marker, md5_hex, size).await
        }
        .await;
        let _ = tokio::fs::remove_file(&staging).await;
        result
    }

    /// Streams `body` into `file` at `offset`, checking it against the part
    /// size and `expected_md5`, and syncs it; returns the bytes' MD5 (hex)
    /// and length. With `direct`, the path of `file`, whole aligned blocks
    /// bypass the page cache (see [`Sink`]).
    async fn receive_into(
        &self,
        file: tokio::fs::File,
        direct: Option<PathBuf>,
        offset: u64,
        part_size: u64,
        expected_md5: Option<Vec<u8>>,
        body: Body,
    ) -> Result<(String, u64), Response> {
        let failed = |err: std::io::Error| store_failure(&io_err(err));
        let joined = |err: tokio::task::JoinError| store_failure(&StoreError::Unavailable(err.to_string()));
        // Network chunks are small (~16 KiB): they are gathered into 1 MiB
        // blocks. While the next block arrives, the last one is written on a
        // blocking thread and hashed on the MD5 thread, in SIMD lanes beside
        // the blocks of the other parts arriving (see `md5_lanes`).
        let mut file = Some(Sink { file: file.into_std().await, direct: None, direct_path: direct });
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<Sink>>> = None;
        let mut hash = HashStream::new();
        let mut block = self.take_block();
        let mut tail = bytes::Bytes::new();
        let mut received = 0u64;
        let mut stream = body.into_data_stream();
        loop {
            let chunk = stream.next().await.transpose().map_err(|err| {
                storage_error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    &format!("The part's bytes did not arrive whole ({err}). Send the part again."),
                )
            })?;
            let end = chunk.is_none();
            let mut chunk = chunk.unwrap_or_default();
            received += chunk.len() as u64;
            self.inner.bytes_received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if received > part_size {
                return Err(storage_error(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    &format!("A part may be at most {part_size} bytes."),
                ));
            }
            // Whole blocks (so every block but the last is whole 64-byte MD5
            // blocks), then the rest at the end.
            while !chunk.is_empty() || (end && !block.is_empty()) {
                let take = chunk.len().min(WRITE_BLOCK - block.len());
                block.extend_from_slice(&chunk.split_to(take));
                if block.len() < WRITE_BLOCK && !end {
                    break;
                }
                let data = self.lend(std::mem::replace(&mut block, self.take_block()));
                let at = offset + received - chunk.len() as u64 - data.len() as u64;
                let mut target = match writing.take() {
                    Some(task) => task.await.map_err(joined)?.map_err(failed)?,
                    None => file.take().expect("the file is here when no write is pending"),
                };
                // Only the last block can end with a partial MD5 block: that
                // tail goes in with the digest.
                let whole = data.len() / 64 * 64;
                if whole > 0 {
                    hash.update(data.slice(..whole)).await.map_err(failed)?;
                }
                tail = data.slice(whole..);
                writing = Some(tokio::task::spawn_blocking(move || {
                    target.write_block(&data, at)?;
                    Ok(target)
                }));
            }
            if end {
                break;
            }
        }
        let file = match writing.take() {
            Some(task) => task.await.map_err(joined)?.map_err(failed)?,
            None => file.take().expect("the file is here when no write is pending"),
        };
        self.inner.give_block(block);
        if received == 0 {
            return Err(storage_error(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                "A part must hold at least 1 byte.",
            ));
        }
        let digest = hash.finish(&tail).await.map_err(failed)?;
        if expected_md5.is_some_and(|expected| expected[..] != digest[..]) {
            return Err(storage_error(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The part's bytes do not match its Content-MD5. Send the part again.",
            ));
        }
        tokio::task::spawn_blocking(move || file.file.sync_data()).await.map_err(joined)?.map_err(failed)?;
        Ok((hex::encode(digest), received))
    }
}

/// Bytes hashed and written at a time when receiving a part.
const WRITE_BLOCK: usize = 1024 * 1024;

/// Emptied blocks kept for reuse at most: enough for 8 parts at a time,
/// each holding up to 4 (the one filling, the one being written and two
/// waiting for the MD5 thread).
const SPARE_BLOCKS: usize = 32;

/// What writes that bypass the page cache must be aligned to: the blocks'
/// memory, their offset in the file and their length.
const DIRECT_ALIGN: usize = 4096;

impl LocalStore {
    /// An empty block of [`WRITE_BLOCK`] bytes' capacity, starting at a
    /// [`DIRECT_ALIGN`] boundary.
    fn take_block(&self) -> bytes::BytesMut {
        let spare = self.inner.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| {
            let mut block = bytes::BytesMut::with_capacity(WRITE_BLOCK + DIRECT_ALIGN);
            let pad = block.as_ptr().align_offset(DIRECT_ALIGN);
            block.resize(pad, 0);
            bytes::Buf::advance(&mut block, pad);
            block
        })
    }

    /// `block`'s bytes, shared by its write and its hashing; the block
    /// comes back for [`take_block`](Self::take_block) when both are done
    /// with it, whichever is last.
    fn lend(&self, block: bytes::BytesMut) -> bytes::Bytes {
        bytes::Bytes::from_owner(LentBlock { block, inner: self.inner.clone() })
    }
}

impl Inner {
    /// Keeps `block` for [`LocalStore::take_block`].
    fn give_block(&self, mut block: bytes::BytesMut) {
        if block.capacity() < WRITE_BLOCK {
            return;
        }
        block.clear();
        let mut spare = self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < SPARE_BLOCKS {
            spare.push(block);
        }
    }
}

/// A block lent out as [`bytes::Bytes`]; see [`LocalStore::lend`]. A block
/// written before the MD5 thread got to it used to be freed rather than
/// kept: receiving 1 GiB took 47–60 thousand page faults, 16–18 thousand
/// since blocks come back this way.
struct LentBlock {
    block: bytes::BytesMut,
    inner: Arc<Inner>,
}

impl AsRef<[u8]> for LentBlock {
    fn as_ref(&self) -> &[u8] {
        &self.block
    }
}

impl Drop for LentBlock {
    fn drop(&mut self) {
        self.inner.give_block(std::mem::take(&mut self.block));
    }
}

/// Where a part's blocks are written.
///
/// On Linux, whole blocks at aligned offsets go through a second handle on
/// the file opened with `O_DIRECT`: from the block's memory to the disk, not
/// copied into the page cache first and written back from there. That copy
/// and the writeback cost more CPU per byte than `cp` does for the same
/// file, on top of receiving and hashing, and every part's `fdatasync`
/// would first write back the other parts' dirty pages of the same file.
/// Blocks that are not aligned (a part's last), and file systems that refuse
/// `O_DIRECT`, take the page cache. Either way the part is synced (data and
/// metadata) before it is recorded, as before.
#[derive(Debug)]
struct Sink {
    file: std::fs::File,
    direct: Option<std::fs::File>,
    /// The file's path, until `direct` has been tried.
    direct_path: Option<PathBuf>,
}

impl Sink {
    fn write_block(&mut self, data: &[u8], at: u64) -> std::io::Result<()> {
        let aligned = data.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
            && data.len().is_multiple_of(DIRECT_ALIGN)
            && at.is_multiple_of(DIRECT_ALIGN as u64);
        if aligned && let Some(path) = self.direct_path.take() {
            self.direct = open_direct(&path);
        }
        if aligned && let Some(direct) = &mut self.direct {
            let written = direct.seek(std::io::SeekFrom::Start(at)).and_then(|_| direct.write_all(data));
            match written {
                Ok(()) => return Ok(()),
                // The file system does not take such writes after all.
                Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => self.direct = None,
                Err(err) => return Err(err),
            }
        }
        self.file.seek(std::io::SeekFrom::Start(at))?;
        self.file.write_all(data)
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<std::fs::File> {
    None
}

/// The upload's data file, open for writing.
async fn open_data(upload_dir: &Path) -> Result<tokio::fs::File, Response> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .open(upload_dir.join("data"))
        .await
        .map_err(|err| store_failure(&upload_io_err(err)))
}

/// Records a part as stored ("md5 size" in its marker file); returns its MD5.
///
/// The part's bytes are synced before; the marker and its directory entry
/// are synced here, before the part is answered: a client told "stored"
/// journals the part and never sends it again, so after a power cut the
/// part must still be listed (it used to be lost with an unsynced marker,
/// and finish then refused the session).
async fn record_part(marker: PathBuf, md5_hex: String, size: u64) -> Result<String, Response> {
    let record = format!("{md5_hex} {size}\n");
    tokio::task::spawn_blocking(move || {
        crash_point("local_store_part_written");
        write_synced(&marker, record.as_bytes())?;
        crash_point("local_store_part_recorded");
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|err| store_failure(&StoreError::Unavailable(err.to_string())))?
    .map_err(|err| store_failure(&io_err(err)))?;
    Ok(md5_hex)
}

async fn get_object(
    State(store): State<LocalStore>,
    UrlPath(key): UrlPath<String>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let query = SignedQuery::or_unsigned(query);
    if let Err(refused) = store.verify("GET", &key, "", 0, &query) {
        return refused;
    }
    let object = key.clone();
    let path = match store
        .off_thread(move |store| store.existing_object(&object).and_then(|_| store.object_path(&object)))
        .await
    {
        Ok(path) => path,
        Err(err) => return store_failure(&err),
    };
    // ServeFile answers Range requests (206) so a browser can seek in the media.
    match tower_http::services::ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_signing_key_is_readable_by_its_owner_only() {
        let root = tempfile::tempdir().unwrap();
        LocalStore::open(root.path()).unwrap();
        let key = root.path().join("signing.key");
        assert_eq!(mode(&key), 0o600, "a new key");

        // One an earlier version left readable by all is made private, and kept.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&key).unwrap();
        LocalStore::open(root.path()).unwrap();
        assert_eq!(mode(&key), 0o600, "an old key");
        assert_eq!(std::fs::read(&key).unwrap(), before, "the key is kept, so signed URLs stay valid");
    }

    #[test]
    fn opening_deletes_upload_folders_a_crash_left_half_deleted() {
        let root = tempfile::tempdir().unwrap();
        let uploads = root.path().join("uploads");
        let doomed = uploads.join(format!("0123abcd.{REMOVING}"));
        std::fs::create_dir_all(doomed.join("parts")).unwrap();
        std::fs::write(doomed.join("parts/1"), "d41d8cd98f00b204e9800998ecf8427e 0\n").unwrap();
        let open_upload = uploads.join("4567ef");
        std::fs::create_dir_all(open_upload.join("parts")).unwrap();
        LocalStore::open(root.path()).unwrap();
        assert!(!doomed.exists(), "the half-deleted folder is gone");
        assert!(open_upload.exists(), "an upload's folder is kept");
    }

    /// Completion after a crash that came between moving `data` into
    /// `objects/` and deleting the upload folder: the folder is back as it
    /// was then (meta and markers, no `data`).
    #[tokio::test]
    async fn a_completion_that_died_after_the_move_completes_again() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).unwrap();
        let key = "recordings/1/lesson.wav";
        let upload = store.create_upload(key, "audio/wav", 1024).await.unwrap();
        let mut parts = Vec::new();
        for (number, bytes) in [(1u32, vec![1u8; 1024]), (2, vec![2u8; 100])] {
            let etag = store.receive_part(&upload, number, 1024, None, Body::from(bytes)).await.unwrap();
            parts.push(CompletedPart { part_number: number, etag });
        }
        let folder = root.path().join("uploads").join(&upload);
        let markers: Vec<(PathBuf, Vec<u8>)> = ["meta.json", "parts/1", "parts/2"]
            .iter()
            .map(|name| (folder.join(name), std::fs::read(folder.join(name)).unwrap()))
            .collect();

        let first = store.complete_upload(key, &upload, &parts).await.unwrap();
        assert!(!folder.exists(), "a completed upload's folder is deleted");
        std::fs::create_dir_all(folder.join("parts")).unwrap();
        for (path, bytes) in &markers {
            std::fs::write(path, bytes).unwrap();
        }

        let again = store.complete_upload(key, &upload, &parts).await.unwrap();
        assert_eq!(again, first, "the same object, not NoSuchUpload");
        assert!(!folder.exists(), "the left-over folder is deleted");
        let object = std::fs::read(root.path().join("objects").join(key)).unwrap();
        assert_eq!(object.len(), 1124);

        // Different parts than the object was made of: the upload is lost, not done.
        std::fs::create_dir_all(folder.join("parts")).unwrap();
        for (path, bytes) in &markers {
            std::fs::write(path, bytes).unwrap();
        }
        let other = [CompletedPart { part_number: 1, etag: parts[0].etag.clone() }];
        assert!(matches!(store.complete_upload(key, &upload, &other).await, Err(StoreError::NoSuchUpload)));
    }

    #[test]
    fn a_lent_block_comes_back_aligned_once_its_write_and_its_hashing_are_done() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).unwrap();
        let mut block = store.take_block();
        assert_eq!(block.as_ptr().align_offset(DIRECT_ALIGN), 0);
        block.extend_from_slice(&[7; WRITE_BLOCK]);
        let address = block.as_ptr();
        let written = store.lend(block);
        let hashed = written.slice(..64);
        drop(written);
        assert!(store.inner.blocks.lock().unwrap().is_empty(), "still being hashed");
        drop(hashed);
        let again = store.take_block();
        assert_eq!((again.as_ptr(), again.len()), (address, 0), "the same block, emptied");
    }
}
