//! Checks every [`MediaStore`] must pass, run against each implementation
//! (the local store under a real server, S3 against SeaweedFS): the same
//! bytes, the same errors, through real presigned HTTP requests.
//!
//! Each check panics with a message naming what the store got wrong.

use std::time::Duration;

use base64::Engine;
use md5::Digest;

use super::{CompletedPart, MediaStore, StoreError, composite_etag, unquote_etag};

/// Part size used by the checks: the smallest S3 allows.
pub const PART_SIZE: u64 = 5 * 1024 * 1024;
const EXPIRY: Duration = Duration::from_secs(300);

/// Runs every check; `prefix` keeps their keys apart from other runs.
pub async fn run_all(store: &dyn MediaStore, prefix: &str) {
    round_trip_with_short_last_part(store, &format!("{prefix}/round-trip.wav")).await;
    reuploaded_part_is_listed_once_with_newest_etag(store, &format!("{prefix}/reupload.wav")).await;
    wrong_content_md5_is_rejected(store, &format!("{prefix}/bad-md5.wav")).await;
    completion_checks_etags_and_sizes(store, &format!("{prefix}/bad-complete.wav")).await;
    abort_discards_parts_and_is_idempotent(store, &format!("{prefix}/abort.wav")).await;
    expired_url_is_refused(store, &format!("{prefix}/expired.wav")).await;
}

fn bytes(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// PUTs `data` as part `number`; returns the HTTP status and the ETag header.
async fn put_part(
    store: &dyn MediaStore,
    key: &str,
    upload_id: &str,
    number: u32,
    data: &[u8],
    signed_md5: Option<&[u8]>,
) -> (u16, Option<String>) {
    let content_md5 =
        signed_md5.map(|body| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body)));
    let presigned = store
        .presign_part(key, upload_id, number, content_md5.as_deref(), EXPIRY)
        .await
        .expect("presign part");
    send(&presigned, data).await
}

async fn send(presigned: &super::PresignedRequest, data: &[u8]) -> (u16, Option<String>) {
    let client = reqwest::Client::new();
    let mut request = client.request(presigned.method.parse().expect("method"), &presigned.url);
    for (name, value) in &presigned.headers {
        request = request.header(name, value);
    }
    let response = request.body(data.to_vec()).send().await.expect("PUT to storage");
    let etag =
        response.headers().get("etag").and_then(|v| v.to_str().ok()).map(|v| unquote_etag(v).to_owned());
    (response.status().as_u16(), etag)
}

async fn round_trip_with_short_last_part(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    let parts = [bytes(PART_SIZE, 1), bytes(PART_SIZE, 2), bytes(1000, 3)];
    // Last first, as the recorder sends a WAV's header part last.
    for (index, data) in parts.iter().enumerate().rev() {
        let number = index as u32 + 1;
        let (status, etag) = put_part(store, key, &upload, number, data, Some(data)).await;
        assert_eq!(status, 200, "PUT part {number}");
        assert_eq!(etag.as_deref(), Some(md5_hex(data).as_str()), "part {number}'s ETag is its MD5");
    }
    let listed = store.list_parts(key, &upload).await.expect("list parts");
    let numbers: Vec<u32> = listed.iter().map(|part| part.part_number).collect();
    assert_eq!(numbers, [1, 2, 3], "parts listed sorted");
    assert_eq!(listed[2].size, 1000);
    let completed: Vec<CompletedPart> = listed
        .iter()
        .map(|part| CompletedPart { part_number: part.part_number, etag: part.etag.clone() })
        .collect();

    let object = store.complete_upload(key, &upload, &completed).await.expect("complete");
    assert_eq!(object.size, 2 * PART_SIZE + 1000);
    let expected_etag =
        composite_etag(parts.iter().map(|p| md5_hex(p)).collect::<Vec<_>>().iter().map(String::as_str));
    if let Some(etag) = &object.etag {
        assert_eq!(Some(etag), expected_etag.as_ref(), "composite ETag");
    }
    let again = store.complete_upload(key, &upload, &completed).await.expect("repeated completion succeeds");
    assert_eq!(again.size, object.size, "repeated completion returns the same object");
    assert_eq!(store.head_object(key).await.expect("head").size, object.size);

    let copy = store.fetch_to_file(key, &std::env::temp_dir()).await.expect("fetch to file");
    let stored = std::fs::read(&copy.path).expect("read local copy");
    assert!(stored == parts.concat(), "stored bytes differ from the parts sent");

    let get = store.presign_get(key, EXPIRY).await.expect("presign get");
    let response = reqwest::Client::new()
        .get(&get.url)
        .header("Range", "bytes=5242875-5242884")
        .send()
        .await
        .expect("GET with Range");
    assert_eq!(response.status().as_u16(), 206, "Range GET answers 206");
    let body = response.bytes().await.expect("range body");
    assert_eq!(&body[..], &parts.concat()[5_242_875..5_242_885]);
}

async fn reuploaded_part_is_listed_once_with_newest_etag(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    let (first, second) = (bytes(2000, 7), bytes(2000, 8));
    assert_eq!(put_part(store, key, &upload, 1, &first, None).await.0, 200);
    // S3's LastModified has whole seconds, and a store that keeps both uploads
    // (SeaweedFS, in random order) can only tell the newer one a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(put_part(store, key, &upload, 1, &second, None).await.0, 200);
    let listed = store.list_parts(key, &upload).await.expect("list parts");
    assert_eq!(listed.len(), 1, "a re-uploaded part is listed once: {listed:?}");
    assert_eq!(listed[0].etag, md5_hex(&second), "the newest upload of a part wins");
    store.abort_upload(key, &upload).await.expect("abort");
}

async fn wrong_content_md5_is_rejected(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    let (status, _) = put_part(store, key, &upload, 1, &bytes(3000, 1), Some(&bytes(3000, 2))).await;
    assert!(
        (400..500).contains(&status),
        "bytes that do not match the signed Content-MD5 are refused, got {status}"
    );
    let listed = store.list_parts(key, &upload).await.expect("list parts");
    assert!(listed.is_empty(), "a refused part is not stored: {listed:?}");
    store.abort_upload(key, &upload).await.expect("abort");
}

async fn completion_checks_etags_and_sizes(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    let (short, last) = (bytes(1000, 1), bytes(1000, 2));
    let (_, short_etag) = put_part(store, key, &upload, 1, &short, None).await;
    let (_, last_etag) = put_part(store, key, &upload, 2, &last, None).await;
    let wrong = [
        CompletedPart { part_number: 1, etag: short_etag.clone().expect("etag") },
        CompletedPart { part_number: 2, etag: "0".repeat(32) },
    ];
    assert!(
        matches!(store.complete_upload(key, &upload, &wrong).await, Err(StoreError::Invalid(_))),
        "wrong ETag"
    );
    let too_small = [
        CompletedPart { part_number: 1, etag: short_etag.expect("etag") },
        CompletedPart { part_number: 2, etag: last_etag.expect("etag") },
    ];
    assert!(
        matches!(store.complete_upload(key, &upload, &too_small).await, Err(StoreError::Invalid(_))),
        "a non-last part shorter than the part size is refused"
    );
    store.abort_upload(key, &upload).await.expect("abort");
}

async fn abort_discards_parts_and_is_idempotent(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    assert_eq!(put_part(store, key, &upload, 1, &bytes(1000, 1), None).await.0, 200);
    store.abort_upload(key, &upload).await.expect("abort");
    store.abort_upload(key, &upload).await.expect("a second abort is harmless");
    match store.list_parts(key, &upload).await {
        Err(StoreError::NoSuchUpload) => {}
        Ok(parts) => assert!(parts.is_empty(), "aborted upload still lists {parts:?}"),
        Err(other) => panic!("list after abort: {other}"),
    }
    assert!(matches!(store.head_object(key).await, Err(StoreError::NoSuchObject)), "no object after abort");
}

async fn expired_url_is_refused(store: &dyn MediaStore, key: &str) {
    let upload = store.create_upload(key, "audio/wav", PART_SIZE).await.expect("create upload");
    let presigned = store.presign_part(key, &upload, 1, None, Duration::from_secs(1)).await.expect("presign");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = send(&presigned, &bytes(100, 1)).await;
    assert!((400..500).contains(&status), "an expired URL is refused, got {status}");
    store.abort_upload(key, &upload).await.expect("abort");
}
