//! Where recordings' bytes live: a multipart-upload store.
//!
//! Upload and part identifiers are plain strings and numbers, so the server
//! can keep them in its SQLite file and pick an upload up after a restart.
//! Both implementations — [`LocalStore`] (a folder, the default) and
//! [`S3Store`] (any S3-compatible service) — pass the same
//! `conformance` suite (feature `conformance`; `tests/tests/local_store.rs` and `s3_store.rs` run it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(test)]
pub(crate) mod interfering;
mod local;
mod md5_lanes;
mod s3;

pub use local::LocalStore;
pub use s3::{S3Config, S3Store};

/// Everything a store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The upload does not exist (never created, completed or aborted).
    #[error("no such upload")]
    NoSuchUpload,
    /// The object does not exist.
    #[error("no such object")]
    NoSuchObject,
    /// The store refused what was asked (wrong part, wrong ETag, too small…).
    #[error("{0}")]
    Invalid(String),
    /// The store could not be reached or failed; worth retrying.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

/// The result type of store operations.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A request the client makes directly to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// Where to send it.
    pub url: String,
    /// The HTTP method (`PUT` for parts, `GET` for media).
    pub method: String,
    /// Headers the client must send exactly.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: SystemTime,
}

/// A part that storage holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// 1-based part number.
    pub part_number: u32,
    /// The ETag storage returned, without quotes.
    pub etag: String,
    /// Its length in bytes.
    pub size: u64,
}

/// A part named in a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub part_number: u32,
    /// The part's ETag, without quotes.
    pub etag: String,
}

/// What storage says of a whole object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Length in bytes.
    pub size: u64,
    /// The object's ETag without quotes; for a multipart object the
    /// S3 composite form `md5(md5(part1)‖…‖md5(partN))-N`.
    pub etag: Option<String>,
}

/// A multipart-upload store. Keys are chosen by the server, never by clients.
#[async_trait]
pub trait MediaStore: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a multipart upload of `key` whose parts are `part_size` long
    /// (but the last); returns the store's upload id.
    async fn create_upload(&self, key: &str, content_type: &str, part_size: u64) -> StoreResult<String>;

    /// A URL the client PUTs part `part_number` to. With `content_md5`
    /// (base64), storage rejects bytes whose MD5 differs.
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> StoreResult<PresignedRequest>;

    /// The parts storage holds for the upload, sorted, one per part number
    /// (the newest when storage lists a number twice).
    async fn list_parts(&self, key: &str, upload_id: &str) -> StoreResult<Vec<StoredPart>>;

    /// Joins the parts into the object. Repeating a completion that already
    /// succeeded returns the same object rather than an error, so a server
    /// that crashed after completing can finish its bookkeeping.
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<ObjectInfo>;

    /// Discards the upload and its parts. Aborting an unknown upload is not an error.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// Size and ETag of a stored object.
    async fn head_object(&self, key: &str) -> StoreResult<ObjectInfo>;

    /// Makes the object readable as a local file for verification: the file
    /// itself for a local store, a downloaded copy in `scratch` otherwise.
    async fn fetch_to_file(&self, key: &str, scratch: &std::path::Path) -> StoreResult<LocalCopy>;

    /// A short-lived URL to GET the object (with Range support).
    async fn presign_get(&self, key: &str, expires_in: Duration) -> StoreResult<PresignedRequest>;
}

/// A readable local file holding an object's bytes.
#[derive(Debug)]
pub struct LocalCopy {
    /// The file.
    pub path: PathBuf,
    /// Whether the file is a temporary copy to delete after use.
    pub temporary: bool,
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The S3 composite ETag of parts with these (hex) MD5s: the MD5 of their
/// concatenated binary digests, a dash and the part count.
pub fn composite_etag<'a>(part_md5s: impl IntoIterator<Item = &'a str>) -> Option<String> {
    use md5::Digest;
    let mut hasher = md5::Md5::new();
    let mut count = 0usize;
    for hex_md5 in part_md5s {
        hasher.update(hex::decode(hex_md5).ok()?);
        count += 1;
    }
    Some(format!("{}-{count}", hex::encode(hasher.finalize())))
}

/// An ETag without the quotes HTTP puts around it.
pub fn unquote_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}
