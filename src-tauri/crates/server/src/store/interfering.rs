//! A local store that tests can hold up, fail or crash at the two calls the
//! server's background work races with: completing an upload (finish
//! against the expiry sweeper) and fetching an object (verification).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    CompletedPart, LocalCopy, LocalStore, MediaStore, ObjectInfo, PresignedRequest, StoreError, StoreResult,
    StoredPart,
};

/// What an [`Interfering`] store does at one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answers like the store it wraps.
    None,
    /// Storage is down.
    Unavailable,
    /// The code behind the call panics (a demuxer on a box it cannot read).
    Panic,
    /// Waits until [`Interfering::release`] is notified; [`Interfering::reached`]
    /// is notified when it starts waiting.
    Hold,
}

/// A [`LocalStore`] whose `complete_upload` and `fetch_to_file` misbehave as told.
#[derive(Debug)]
pub(crate) struct Interfering {
    inner: LocalStore,
    on_complete: Mutex<Fault>,
    on_fetch: Mutex<Fault>,
    /// How many times `fetch_to_file` was called.
    pub fetches: AtomicUsize,
    /// Notified when a held call starts waiting.
    pub reached: Notify,
    /// Lets one held call go on.
    pub release: Notify,
}

impl Interfering {
    /// Wraps `inner`, answering like it until told otherwise.
    pub fn new(inner: LocalStore) -> Self {
        Self {
            inner,
            on_complete: Mutex::new(Fault::None),
            on_fetch: Mutex::new(Fault::None),
            fetches: AtomicUsize::new(0),
            reached: Notify::new(),
            release: Notify::new(),
        }
    }

    /// What `complete_upload` does from now on.
    pub fn on_complete(&self, fault: Fault) {
        *self.on_complete.lock().unwrap() = fault;
    }

    /// What `fetch_to_file` does from now on.
    pub fn on_fetch(&self, fault: Fault) {
        *self.on_fetch.lock().unwrap() = fault;
    }

    async fn interfere(&self, fault: &Mutex<Fault>) -> StoreResult<()> {
        let fault = *fault.lock().unwrap();
        match fault {
            Fault::None => {}
            Fault::Unavailable => return Err(StoreError::Unavailable("the disk is offline".into())),
            Fault::Panic => panic!("the demuxer hit a box it cannot read"),
            Fault::Hold => {
                let released = self.release.notified();
                self.reached.notify_one();
                released.await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MediaStore for Interfering {
    async fn create_upload(&self, key: &str, content_type: &str, part_size: u64) -> StoreResult<String> {
        self.inner.create_upload(key, content_type, part_size).await
    }
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<&str>,
        expires_in: Duration,
    ) -> StoreResult<PresignedRequest> {
        self.inner.presign_part(key, upload_id, part_number, content_md5, expires_in).await
    }
    async fn list_parts(&self, key: &str, upload_id: &str) -> StoreResult<Vec<StoredPart>> {
        self.inner.list_parts(key, upload_id).await
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<ObjectInfo> {
        self.interfere(&self.on_complete).await?;
        self.inner.complete_upload(key, upload_id, parts).await
    }
    async fn abort_upload(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_upload(key, upload_id).await
    }
    async fn head_object(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head_object(key).await
    }
    async fn fetch_to_file(&self, key: &str, scratch: &Path) -> StoreResult<LocalCopy> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.interfere(&self.on_fetch).await?;
        self.inner.fetch_to_file(key, scratch).await
    }
    async fn presign_get(&self, key: &str, expires_in: Duration) -> StoreResult<PresignedRequest> {
        self.inner.presign_get(key, expires_in).await
    }
}
