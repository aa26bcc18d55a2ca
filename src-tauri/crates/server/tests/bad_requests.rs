//! A table of bad requests to every endpoint of the upload API and to the
//! local store's presigned routes, driven through the router (`oneshot`).
//!
//! Each case names the exact status it must get; for an answer of the API,
//! its `code` (every 404 and 409 names its own; the other statuses have one
//! code each) and, for a 400, the exact `modelState` keys; for a storage
//! route, the S3 error `<Code>`. Every API error body is `code`, `message`
//! and, for a 400 only, `modelState`: nothing else.
//! After the whole table no case may have answered 5xx, and nothing may have
//! changed: the database's rows, what `listparts` answers for every fixture
//! session, the bytes behind every stored part and the store's files are
//! compared with a snapshot taken before the first case.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use md5::Digest;
use opptak_api::{
    ARRAYS_NAMESPACE, CONTRACT_NAMESPACE, ErrorBody, ErrorCode, FinishPart, INVALID_REQUEST_MESSAGE,
    MAX_BODY_BYTES, MAX_MODEL_STATE_KEYS, MAX_UPLOAD_BYTES, PartsResponse, PresignedPart, Response as _,
    ResponseFormat, StartResponse, XSI_NAMESPACE,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The table's row.

/// One bad request and what it must answer.
struct Case {
    /// The endpoint the case belongs to, for the summary.
    group: &'static str,
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    /// For a 400 from the API: exactly these `modelState` keys.
    keys: Vec<String>,
    /// For a storage route: the S3 error code of the XML body.
    code: Option<&'static str>,
    /// For an API answer: its `code`, when the status alone does not say
    /// (404 and 409); see [`code_of_status`].
    api_code: Option<ErrorCode>,
    /// The body must be byte-for-byte that of the named case (another
    /// user's recording must look exactly like an unknown one).
    like: Option<String>,
}

impl Case {
    fn new(
        group: &'static str,
        name: impl Into<String>,
        method: &'static str,
        path: impl Into<String>,
    ) -> Self {
        Self {
            group,
            name: name.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            status: 0,
            keys: Vec::new(),
            code: None,
            api_code: None,
            like: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn token(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The body, with its `Content-Type`.
    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self = self.without_header("content-type").header("content-type", content_type);
        self.body = body.into();
        self
    }

    fn json(self, body: &Value) -> Self {
        self.body("application/json", body.to_string())
    }

    fn xml(self, body: impl Into<Vec<u8>>) -> Self {
        self.body("application/xml", body)
    }

    fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.body("application/x-www-form-urlencoded", body)
    }

    /// The body without any `Content-Type`.
    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// 400 with exactly these `modelState` keys.
    fn invalid(mut self, keys: &[&str]) -> Self {
        self.status = 400;
        self.keys = keys.iter().map(|k| (*k).to_owned()).collect();
        self
    }

    fn invalid_keys(mut self, keys: Vec<String>) -> Self {
        self.status = 400;
        self.keys = keys;
        self
    }

    /// 404 `not_found`: no such recording, or not the caller's.
    fn not_found(mut self) -> Self {
        self.status = 404;
        self.api_code = Some(ErrorCode::NotFound);
        self
    }

    /// 404 `no_such_endpoint`: nothing is routed at this address.
    fn no_endpoint(mut self) -> Self {
        self.status = 404;
        self.api_code = Some(ErrorCode::NoSuchEndpoint);
        self
    }

    /// 409 with `code`, saying which conflict.
    fn conflict(mut self, code: ErrorCode) -> Self {
        self.status = 409;
        self.api_code = Some(code);
        self
    }

    /// A storage answer: status and S3 error code.
    fn storage(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn like(mut self, other: &str) -> Self {
        self.like = Some(other.to_owned());
        self
    }
}

/// A POST to an upload endpoint as ada.
fn post(endpoint: &'static str, name: &str) -> Case {
    Case::new(endpoint, name, "POST", common::endpoint(endpoint)).token(ADA)
}

// ---------------------------------------------------------------------------
// The fixture: sessions in every state, and presigned URLs into them.

struct Session {
    started: StartResponse,
    etags: Vec<FinishPart>,
    store_upload_id: String,
    token: &'static str,
}

impl Session {
    fn rid(&self) -> &str {
        &self.started.recording_id
    }

    fn uid(&self) -> &str {
        &self.started.upload_id
    }

    fn key(&self) -> &str {
        &self.started.object_key
    }

    fn etag(&self, part_number: u32) -> &str {
        &self.etags.iter().find(|p| p.part_number == part_number).unwrap().etag
    }
}

struct Fx {
    base: Fixture,
    /// Open, part 1 exactly `PART_SIZE`, part 2 short.
    ada: Session,
    /// Open, parts 1 and 2 both short (part 1 is too short to be a middle part).
    ada_short: Session,
    /// Open, nothing uploaded.
    ada_empty: Session,
    /// Aborted after one part.
    ada_aborted: Session,
    /// Finished with one part: `processing`, its job queued.
    ada_done: Session,
    /// Expired after one part, as the sweeper leaves it: the session and
    /// recording `expired`, the upload gone from storage.
    ada_expired: Session,
    /// Open, but storage no longer holds its upload (lost in a crash).
    ada_lost: Session,
    /// Bob's open session, one part.
    bob: Session,
    /// Bob's finished recording.
    bob_done: Session,
    part1: Vec<u8>,
    urls: Urls,
}

struct Urls {
    /// Ada's part 1 (stored), no MD5 signed.
    put1: PresignedPart,
    /// Ada's part 1 with the MD5 of its stored bytes signed.
    put1_md5: PresignedPart,
    /// Ada's part 3 (not stored), no MD5 signed.
    put3: PresignedPart,
    /// Ada's part 3 with the MD5 of `OTHER` signed.
    put3_md5: PresignedPart,
    /// A URL of the aborted session, presigned before the abort.
    aborted_put: PresignedPart,
    /// A URL of the finished session, presigned before the finish.
    done_put: PresignedPart,
    /// Signed with no time to live: expired once a second has passed.
    expired_put: String,
    expired_get: String,
    get_done: String,
    get_missing: String,
    get_traversal: String,
    signed_at: Instant,
}

const OTHER: &[u8] = b"bytes that are not the part";
const NAME: &str = "Fractions, lesson 3";

async fn session(fx: &Fixture, token: &'static str, parts: &[Vec<u8>]) -> Session {
    let started = start(&fx.app, token).await;
    let etags =
        if parts.is_empty() { Vec::new() } else { upload_parts_as(&fx.app, token, &started, parts).await };
    let store_upload_id = store_upload_id(fx, &started.upload_id).await;
    Session { started, etags, store_upload_id, token }
}

async fn presign(fx: &Fixture, s: &Session, part_number: u32, md5: Option<&[u8]>) -> PresignedPart {
    let mut body = json!({"recordingId": s.rid(), "uploadId": s.uid(), "partNumbers": [part_number]});
    if let Some(bytes) = md5 {
        body["contentMd5"] = json!([md5_base64(bytes)]);
    }
    let answer = post_as(&fx.app, s.token, "parts", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    PartsResponse::decode(ResponseFormat::Json, &answer.body).unwrap().parts.remove(0)
}

fn session_json(s: &Session) -> Value {
    json!({"recordingId": s.rid(), "uploadId": s.uid()})
}

async fn finish_with(fx: &Fixture, s: &Session) {
    let body = finish_json(s, s.etags.iter().map(|p| part(p.part_number, &p.etag)).collect());
    let answer = post_as(&fx.app, s.token, "finish", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

async fn fixture_with_sessions() -> Fx {
    let base = fixture().await;
    let wav = wav_bytes(3 * 1024 * 1024); // 6 MiB: part 1 is PART_SIZE, part 2 is 1 MiB
    let chunks: Vec<Vec<u8>> = wav.chunks(PART_SIZE as usize).map(<[u8]>::to_vec).collect();
    assert_eq!((chunks.len(), chunks[0].len() as u64), (2, PART_SIZE));
    let small = wav_bytes(100);

    let ada = session(&base, ADA, &chunks).await;
    let ada_done = session(&base, ADA, std::slice::from_ref(&small)).await;
    let done_put = presign(&base, &ada_done, 2, None).await;
    finish_with(&base, &ada_done).await;
    // Expired URLs: signed with no time to live, early, so that the rest of
    // the setup runs down the second they need before the table runs.
    let store = &base.state.store;
    let signed_at = Instant::now();
    let expired_put =
        store.presign_part(ada.key(), &ada.store_upload_id, 3, None, Duration::ZERO).await.unwrap().url;
    let expired_get = store.presign_get(ada_done.key(), Duration::ZERO).await.unwrap().url;

    let ada_short = session(&base, ADA, &[b"short one".to_vec(), b"short two".to_vec()]).await;
    let ada_empty = session(&base, ADA, &[]).await;
    let ada_aborted = session(&base, ADA, std::slice::from_ref(&small)).await;
    let aborted_put = presign(&base, &ada_aborted, 2, None).await;
    let answer = post_as(&base.app, ADA, "abort", &session_json(&ada_aborted)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let ada_expired = session(&base, ADA, std::slice::from_ref(&small)).await;
    let (upload_id, recording_id) = (ada_expired.uid().to_owned(), ada_expired.rid().to_owned());
    base.state
        .sqlite().unwrap()
        .write_durably(move |tx| {
            tx.execute("UPDATE upload_sessions SET state = 'expired' WHERE upload_id = ?1", [&upload_id])?;
            tx.execute(
                "UPDATE recordings SET status = 'expired', error = 'The upload was not finished before it expired; start it again.' WHERE id = ?1",
                [&recording_id],
            )
        })
        .await
        .unwrap();
    store.abort_upload(ada_expired.key(), &ada_expired.store_upload_id).await.unwrap();
    let ada_lost = session(&base, ADA, std::slice::from_ref(&small)).await;
    store.abort_upload(ada_lost.key(), &ada_lost.store_upload_id).await.unwrap();
    let bob = session(&base, BOB, std::slice::from_ref(&small)).await;
    let bob_done = session(&base, BOB, std::slice::from_ref(&small)).await;
    finish_with(&base, &bob_done).await;

    let hour = Duration::from_secs(3600);
    let urls = Urls {
        put1: presign(&base, &ada, 1, None).await,
        put1_md5: presign(&base, &ada, 1, Some(&chunks[0])).await,
        put3: presign(&base, &ada, 3, None).await,
        put3_md5: presign(&base, &ada, 3, Some(OTHER)).await,
        aborted_put,
        done_put,
        expired_put,
        expired_get,
        get_done: store.presign_get(ada_done.key(), hour).await.unwrap().url,
        get_missing: store.presign_get("recordings/1/missing.wav", hour).await.unwrap().url,
        get_traversal: store.presign_get("../signing.key", hour).await.unwrap().url,
        signed_at,
    };
    let part1 = chunks[0].clone();
    Fx {
        base,
        ada,
        ada_short,
        ada_empty,
        ada_aborted,
        ada_done,
        ada_expired,
        ada_lost,
        bob,
        bob_done,
        part1,
        urls,
    }
}

// ---------------------------------------------------------------------------
// Body builders.

fn part(n: u32, etag: &str) -> Value {
    json!({"partNumber": n, "etag": etag})
}

fn finish_json(s: &Session, parts: Vec<Value>) -> Value {
    json!({
        "recordingId": s.rid(),
        "uploadId": s.uid(),
        "objectKey": s.key(),
        "recordingName": NAME,
        "recorderType": "desktop-audio",
        "isVideoRecording": false,
        "usedInFileUploader": false,
        "parts": parts,
    })
}

/// Ada's open session's parts, as stored.
fn good_parts(s: &Session) -> Vec<Value> {
    s.etags.iter().map(|p| part(p.part_number, &p.etag)).collect()
}

fn start_json() -> Value {
    json!({
        "recordingName": NAME,
        "recorderType": "desktop-audio",
        "isVideoRecording": false,
        "usedInFileUploader": false,
        "contentType": "audio/wav",
        "expectedSizeBytes": null,
    })
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn xml_doc(root: &str, members: &str) -> String {
    format!(
        r#"<MediaRecorderController.{root} xmlns:i="{XSI_NAMESPACE}" xmlns="{CONTRACT_NAMESPACE}">{members}</MediaRecorderController.{root}>"#
    )
}

fn el(name: &str, text: &str) -> String {
    format!("<{name}>{text}</{name}>")
}

fn xml_part(n: &str, etag: &str) -> String {
    format!(
        "<MediaRecorderController.NativeUploadPart>{}{}</MediaRecorderController.NativeUploadPart>",
        el("etag", etag),
        el("partNumber", n)
    )
}

/// A finish body in XML for `s`, with `skip` members left out and `extra` appended.
fn finish_xml(s: &Session, skip: &[&str], extra: &str) -> String {
    let members = [
        ("recordingId", s.rid()),
        ("uploadId", s.uid()),
        ("objectKey", s.key()),
        ("recordingName", NAME),
        ("recorderType", "desktop-audio"),
        ("isVideoRecording", "false"),
        ("usedInFileUploader", "false"),
    ];
    let mut out: String =
        members.iter().filter(|(name, _)| !skip.contains(name)).map(|(name, text)| el(name, text)).collect();
    out.push_str(extra);
    xml_doc("NativeUploadFinishRequest", &out)
}

fn xml_parts(s: &Session) -> String {
    let items: String = s.etags.iter().map(|p| xml_part(&p.part_number.to_string(), &p.etag)).collect();
    el("parts", &items)
}

fn start_xml(skip: &[&str], extra: &str) -> String {
    let members = [
        ("recordingName", NAME),
        ("recorderType", "desktop-audio"),
        ("isVideoRecording", "false"),
        ("usedInFileUploader", "false"),
        ("contentType", "audio/wav"),
    ];
    let mut out: String =
        members.iter().filter(|(name, _)| !skip.contains(name)).map(|(name, text)| el(name, text)).collect();
    out.push_str(extra);
    xml_doc("NativeUploadStartRequest", &out)
}

fn session_xml(root: &str, s: &Session, extra: &str) -> String {
    xml_doc(root, &format!("{}{}{extra}", el("recordingId", s.rid()), el("uploadId", s.uid())))
}

/// Percent-encodes a form value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(name, value)| format!("{name}={}", enc(value))).collect::<Vec<_>>().join("&")
}

fn finish_form(s: &Session, skip: &[&str]) -> Vec<(&'static str, String)> {
    [
        ("recordingId", s.rid().to_owned()),
        ("uploadId", s.uid().to_owned()),
        ("objectKey", s.key().to_owned()),
        ("recordingName", NAME.to_owned()),
        ("recorderType", "desktop-audio".to_owned()),
        ("isVideoRecording", "false".to_owned()),
        ("usedInFileUploader", "false".to_owned()),
    ]
    .into_iter()
    .filter(|(name, _)| !skip.contains(name))
    .collect()
}

fn form_of(pairs: &[(&str, String)], extra: &str) -> String {
    let mut out: Vec<String> = pairs.iter().map(|(name, value)| format!("{name}={}", enc(value))).collect();
    if !extra.is_empty() {
        out.push(extra.to_owned());
    }
    out.join("&")
}

const START_FORM: &str = "recordingName=Lesson&recorderType=desktop-audio&isVideoRecording=false&usedInFileUploader=false&contentType=audio%2Fwav";

const XXE: &str = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>"#;

fn billion_laughs() -> String {
    let mut dtd = String::from(r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">"#);
    for level in 1..10 {
        let refs = format!("&lol{};", level - 1).repeat(10);
        dtd.push_str(&format!(r#"<!ENTITY lol{level} "{refs}">"#));
    }
    dtd.push_str("]>");
    dtd
}

/// `text` with its `@` replaced by `bytes` (which need not be UTF-8).
fn splice(text: &str, bytes: &[u8]) -> Vec<u8> {
    let (before, after) = text.split_once('@').unwrap();
    [before.as_bytes(), bytes, after.as_bytes()].concat()
}

/// A body just over the 2 MiB limit: `prefix`, padding, `suffix`.
fn oversized(prefix: &str, suffix: &str) -> Vec<u8> {
    let limit = MAX_BODY_BYTES;
    let mut body = prefix.as_bytes().to_vec();
    body.resize(limit + 1 - suffix.len(), b' ');
    body.extend_from_slice(suffix.as_bytes());
    assert_eq!(body.len(), limit + 1);
    body
}

// ---------------------------------------------------------------------------
// URL surgery for the storage cases.

fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let url = url.strip_prefix("http://127.0.0.1:9").unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (path.to_owned(), params)
}

fn join_url(path: &str, params: &[(String, String)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

/// The URL with query parameter `name` set to `value`, or removed for `None`.
fn set_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (path, mut params) = split_url(url);
    match value {
        Some(value) => match params.iter_mut().find(|(k, _)| k == name) {
            Some(param) => param.1 = value.to_owned(),
            None => params.push((name.to_owned(), value.to_owned())),
        },
        None => params.retain(|(k, _)| k != name),
    }
    join_url(&path, &params)
}

fn param(url: &str, name: &str) -> String {
    split_url(url).1.into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap()
}

/// The URL with its path's `from` replaced by `to`.
fn set_path(url: &str, from: &str, to: &str) -> String {
    let (path, params) = split_url(url);
    assert!(path.contains(from), "{path} has no {from}");
    join_url(&path.replace(from, to), &params)
}

/// A signature with its last hex digit changed.
fn forged(sig: &str) -> String {
    let mut forged = sig.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    forged
}

fn put(name: &str, url: &str) -> Case {
    Case::new("storage PUT", name, "PUT", "").with_url(url)
}

fn get(name: &str, url: &str) -> Case {
    Case::new("storage GET", name, "GET", "").with_url(url)
}

impl Case {
    fn with_url(mut self, url: &str) -> Self {
        self.path = url.strip_prefix("http://127.0.0.1:9").unwrap_or(url).to_owned();
        self
    }

    /// The presigned part's headers.
    fn signed_headers(mut self, part: &PresignedPart) -> Self {
        for (name, value) in &part.headers {
            self = self.header(name, value.clone());
        }
        self
    }
}

// ---------------------------------------------------------------------------
// The cases, per endpoint.

#[rustfmt::skip] // A table: one case a line.
fn start_cases() -> Vec<Case> {
    let s = |name: &str| post("start", name);
    let long = "a".repeat(256);
    let long_wide = "ø".repeat(256);
    vec![
        s("no body").body("application/json", "").invalid(&["request"]),
        s("whitespace body").body("application/json", "  \n ").invalid(&["request"]),
        s("empty object").json(&json!({})).invalid(&[
            "request.recordingName",
            "request.recorderType",
            "request.isVideoRecording",
            "request.usedInFileUploader",
            "request.contentType",
        ]),
        s("missing recordingName").json(&without(start_json(), "recordingName")).invalid(&["request.recordingName"]),
        s("empty recordingName").json(&with(start_json(), "recordingName", json!(""))).invalid(&["request.recordingName"]),
        s("whitespace-only recordingName").json(&with(start_json(), "recordingName", json!("   "))).invalid(&["request.recordingName"]),
        s("tab-only recordingName").json(&with(start_json(), "recordingName", json!("\t"))).invalid(&["request.recordingName"]),
        s("256-char recordingName").json(&with(start_json(), "recordingName", json!(long))).invalid(&["request.recordingName"]),
        s("256-char non-ASCII recordingName").json(&with(start_json(), "recordingName", json!(long_wide))).invalid(&["request.recordingName"]),
        s("recordingName with a line break").json(&with(start_json(), "recordingName", json!("a\nb"))).invalid(&["request.recordingName"]),
        s("null recordingName").json(&with(start_json(), "recordingName", json!(null))).invalid(&["request.recordingName"]),
        s("numeric recordingName").json(&with(start_json(), "recordingName", json!(5))).invalid(&["request.recordingName"]),
        s("list recordingName").json(&with(start_json(), "recordingName", json!(["x"]))).invalid(&["request.recordingName"]),
        s("recordingName given twice")
            .body("application/json", r#"{"recordingName":"a","recordingName":"b","recorderType":"desktop-audio","isVideoRecording":false,"usedInFileUploader":false,"contentType":"audio/wav"}"#)
            .invalid(&["request.recordingName"]),
        s("recordingName given twice in different case")
            .body("application/json", r#"{"recordingName":"a","RecordingName":"b","recorderType":"desktop-audio","isVideoRecording":false,"usedInFileUploader":false,"contentType":"audio/wav"}"#)
            .invalid(&["request.recordingName"]),
        s("empty recorderType").json(&with(start_json(), "recorderType", json!(""))).invalid(&["request.recorderType"]),
        s("256-char recorderType").json(&with(start_json(), "recorderType", json!("r".repeat(256)))).invalid(&["request.recorderType"]),
        s("missing recorderType").json(&without(start_json(), "recorderType")).invalid(&["request.recorderType"]),
        s("isVideoRecording as text").json(&with(start_json(), "isVideoRecording", json!("true"))).invalid(&["request.isVideoRecording"]),
        s("isVideoRecording as a number").json(&with(start_json(), "isVideoRecording", json!(1))).invalid(&["request.isVideoRecording"]),
        s("null isVideoRecording").json(&with(start_json(), "isVideoRecording", json!(null))).invalid(&["request.isVideoRecording"]),
        s("missing usedInFileUploader").json(&without(start_json(), "usedInFileUploader")).invalid(&["request.usedInFileUploader"]),
        s("unsupported contentType").json(&with(start_json(), "contentType", json!("audio/mp3"))).invalid(&["request.contentType"]),
        s("empty contentType").json(&with(start_json(), "contentType", json!(""))).invalid(&["request.contentType"]),
        s("null contentType").json(&with(start_json(), "contentType", json!(null))).invalid(&["request.contentType"]),
        s("expectedSizeBytes 0").json(&with(start_json(), "expectedSizeBytes", json!(0))).invalid(&["request.expectedSizeBytes"]),
        s("negative expectedSizeBytes").json(&with(start_json(), "expectedSizeBytes", json!(-1))).invalid(&["request.expectedSizeBytes"]),
        s("fractional expectedSizeBytes").json(&with(start_json(), "expectedSizeBytes", json!(1.5))).invalid(&["request.expectedSizeBytes"]),
        s("expectedSizeBytes as text").json(&with(start_json(), "expectedSizeBytes", json!("100"))).invalid(&["request.expectedSizeBytes"]),
        s("expectedSizeBytes over the largest upload").json(&with(start_json(), "expectedSizeBytes", json!(MAX_UPLOAD_BYTES + 1))).invalid(&["request.expectedSizeBytes"]),
        s("three problems at once")
            .json(&with(with(with(start_json(), "recordingName", json!("")), "contentType", json!("image/png")), "isVideoRecording", json!("x")))
            .invalid(&["request.recordingName", "request.isVideoRecording", "request.contentType"]),
        s("JSON array").body("application/json", "[]").invalid(&["request"]),
        s("JSON string").body("application/json", r#""recordingName""#).invalid(&["request"]),
        s("truncated JSON").body("application/json", r#"{"recordingName":"#).invalid(&["request"]),
        s("trailing garbage after JSON").body("application/json", format!("{} x", start_json())).invalid(&["request"]),
        s("JSON nested 100000 deep").body("application/json", "[".repeat(100_000)).invalid(&["request"]),
        s("invalid UTF-8 in JSON").body("application/json", b"{\"recordingName\":\"\xff\xfe\"}".to_vec()).invalid(&["request"]),
        // XML
        s("XML with no members").xml(xml_doc("NativeUploadStartRequest", "")).invalid(&[
            "request.recordingName",
            "request.recorderType",
            "request.isVideoRecording",
            "request.usedInFileUploader",
            "request.contentType",
        ]),
        s("XML isVideoRecording yes").xml(start_xml(&["isVideoRecording"], &el("isVideoRecording", "yes"))).invalid(&["request.isVideoRecording"]),
        s("XML nil recordingName").xml(start_xml(&["recordingName"], r#"<recordingName i:nil="true"/>"#)).invalid(&["request.recordingName"]),
        s("XML whitespace-only recordingName").xml(start_xml(&["recordingName"], &el("recordingName", " \n "))).invalid(&["request.recordingName"]),
        s("XML 256-char recordingName").xml(start_xml(&["recordingName"], &el("recordingName", &long))).invalid(&["request.recordingName"]),
        // DataContract names are exact: <RecordingName> is not <recordingName>.
        s("XML member in the wrong case").xml(start_xml(&["recordingName"], &el("RecordingName", "x"))).invalid(&["request.recordingName"]),
        s("XML expectedSizeBytes not a number").xml(start_xml(&[], &el("expectedSizeBytes", "lots"))).invalid(&["request.expectedSizeBytes"]),
        s("XML of the finish request").xml(xml_doc("NativeUploadFinishRequest", &el("recordingName", "x"))).invalid(&["request"]),
        s("XML in another namespace")
            .xml(start_xml(&[], "").replace(CONTRACT_NAMESPACE, "http://example.com/evil"))
            .invalid(&["request"]),
        s("XML with an ISO-8859-1 declaration")
            .xml(format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{}", start_xml(&[], "")))
            .invalid(&["request"]),
        s("XML DTD").xml(format!("<!DOCTYPE r [<!ELEMENT r ANY>]>{}", start_xml(&[], ""))).invalid(&["request"]),
        // Form
        s("form empty recordingName").form(START_FORM.replace("recordingName=Lesson", "recordingName=")).invalid(&["request.recordingName"]),
        s("form isVideoRecording maybe").form(START_FORM.replace("isVideoRecording=false", "isVideoRecording=maybe")).invalid(&["request.isVideoRecording"]),
        s("form without contentType").form(START_FORM.replace("&contentType=audio%2Fwav", "")).invalid(&["request.contentType"]),
        s("form negative expectedSizeBytes").form(format!("{START_FORM}&expectedSizeBytes=-3")).invalid(&["request.expectedSizeBytes"]),
        s("form recordingName twice").form(format!("{START_FORM}&recordingName=Again")).invalid(&["request.recordingName"]),
        s("form 256-char recordingName").form(START_FORM.replace("recordingName=Lesson", &format!("recordingName={long}"))).invalid(&["request.recordingName"]),
        s("form bad percent-escape").form(format!("{START_FORM}&x=%zz")).invalid(&["request"]),
        s("form percent-escape of invalid UTF-8").form(START_FORM.replace("Lesson", "%FF%FE")).invalid(&["request"]),
        s("form raw invalid UTF-8").form([START_FORM.as_bytes(), b"&x=\xff"].concat()).invalid(&["request"]),
        // Answered in XML when asked.
        s("empty object, answered in XML")
            .header("accept", "application/xml")
            .json(&json!({"recordingName": ""}))
            .invalid(&[
                "request.recordingName",
                "request.recorderType",
                "request.isVideoRecording",
                "request.usedInFileUploader",
                "request.contentType",
            ]),
    ]
}

#[rustfmt::skip] // A table: one case a line.
fn parts_cases(fx: &Fx) -> Vec<Case> {
    let s = |name: &str| post("parts", name);
    let ada = &fx.ada;
    let body = |numbers: Value| with(session_json(ada), "partNumbers", numbers);
    let md5 = md5_base64(OTHER);
    let hundred_and_one: Vec<u32> = (1..=101).collect();
    let short_md5 = base64_of(&[0u8; 15]);
    vec![
        s("empty object").json(&json!({})).invalid(&["request.recordingId", "request.uploadId", "request.partNumbers"]),
        s("no part numbers").json(&body(json!([]))).invalid(&["request.partNumbers"]),
        s("101 part numbers").json(&body(json!(hundred_and_one))).invalid(&["request.partNumbers"]),
        s("part number 0").json(&body(json!([0]))).invalid(&["request.partNumbers[0]"]),
        s("part number 10001").json(&body(json!([3, 10001]))).invalid(&["request.partNumbers[1]"]),
        s("negative part number").json(&body(json!([-1]))).invalid(&["request.partNumbers[0]"]),
        s("duplicated part number").json(&body(json!([3, 4, 3]))).invalid(&["request.partNumbers[2]"]),
        s("part number as text").json(&body(json!([3, "4"]))).invalid(&["request.partNumbers[1]"]),
        s("null part number").json(&body(json!([3, null]))).invalid(&["request.partNumbers[1]"]),
        s("fractional part number").json(&body(json!([1.5]))).invalid(&["request.partNumbers[0]"]),
        s("partNumbers not a list").json(&body(json!(3))).invalid(&["request.partNumbers"]),
        s("null partNumbers").json(&body(json!(null))).invalid(&["request.partNumbers"]),
        s("missing partNumbers").json(&session_json(ada)).invalid(&["request.partNumbers"]),
        s("contentMd5 count differs").json(&with(body(json!([3, 4])), "contentMd5", json!([md5]))).invalid(&["request.contentMd5"]),
        s("contentMd5 not base64").json(&with(body(json!([3])), "contentMd5", json!(["abc"]))).invalid(&["request.contentMd5[0]"]),
        s("contentMd5 of 15 bytes").json(&with(body(json!([3])), "contentMd5", json!([short_md5]))).invalid(&["request.contentMd5[0]"]),
        s("contentMd5 not a list").json(&with(body(json!([3])), "contentMd5", json!(md5))).invalid(&["request.contentMd5"]),
        // partNumbers cannot be read, so "one MD5 per part number" has nothing to count.
        s("unreadable partNumbers with contentMd5").json(&with(body(json!("3")), "contentMd5", json!([md5]))).invalid(&["request.partNumbers"]),
        s("wrong uploadId").json(&with(body(json!([3])), "uploadId", json!(fx.ada_short.uid()))).invalid(&["request.uploadId"]),
        s("empty uploadId").json(&with(body(json!([3])), "uploadId", json!(""))).invalid(&["request.uploadId"]),
        s("missing recordingId").json(&without(body(json!([3])), "recordingId")).invalid(&["request.recordingId"]),
        s("wrong uploadId and part number 0").json(&with(body(json!([0])), "uploadId", json!("nope"))).invalid(&["request.uploadId", "request.partNumbers[0]"]),
        s("unknown recordingId").json(&with(body(json!([3])), "recordingId", json!("0123456789abcdef0123456789abcdef"))).not_found(),
        s("bob's recording").json(&json!({"recordingId": fx.bob.rid(), "uploadId": fx.bob.uid(), "partNumbers": [3]})).not_found().like("parts: unknown recordingId"),
        s("bob's recording with ada's uploadId").json(&with(body(json!([3])), "recordingId", json!(fx.bob.rid()))).not_found().like("parts: unknown recordingId"),
        // Unknown and not yours look the same, also with a problem in the body.
        s("unknown recordingId and part number 0").json(&with(body(json!([0])), "recordingId", json!("nope"))).invalid(&["request.partNumbers[0]"]),
        s("bob's recording and part number 0").json(&json!({"recordingId": fx.bob.rid(), "uploadId": fx.bob.uid(), "partNumbers": [0]})).invalid(&["request.partNumbers[0]"]),
        s("aborted session").json(&json!({"recordingId": fx.ada_aborted.rid(), "uploadId": fx.ada_aborted.uid(), "partNumbers": [2]})).conflict(ErrorCode::UploadAborted),
        s("finished session").json(&json!({"recordingId": fx.ada_done.rid(), "uploadId": fx.ada_done.uid(), "partNumbers": [2]})).conflict(ErrorCode::UploadFinished),
        s("expired session").json(&json!({"recordingId": fx.ada_expired.rid(), "uploadId": fx.ada_expired.uid(), "partNumbers": [2]})).conflict(ErrorCode::UploadExpired),
        s("XML long items").xml(session_xml("NativeUploadPartsRequest", ada, "<partNumbers><long>3</long></partNumbers>")).invalid(&["request.partNumbers[0]"]),
        s("XML item not a number")
            .xml(session_xml("NativeUploadPartsRequest", ada, &format!("<partNumbers><int xmlns=\"{}\">x</int></partNumbers>", ARRAYS_NAMESPACE)))
            .invalid(&["request.partNumbers[0]"]),
        s("XML of the listparts request").xml(session_xml("NativeUploadListPartsRequest", ada, "")).invalid(&["request"]),
        s("form part number 0").form(format!("{}&partNumbers=0&partNumbers=3", form(&[("recordingId", ada.rid()), ("uploadId", ada.uid())]))).invalid(&["request.partNumbers[0]"]),
        s("form duplicated part number").form(format!("{}&partNumbers[0]=3&partNumbers[1]=3", form(&[("recordingId", ada.rid()), ("uploadId", ada.uid())]))).invalid(&["request.partNumbers[1]"]),
        s("form without partNumbers").form(form(&[("recordingId", ada.rid()), ("uploadId", ada.uid())])).invalid(&["request.partNumbers"]),
        s("form raw invalid UTF-8").form(b"recordingId=\xff&uploadId=u&partNumbers=3".to_vec()).invalid(&["request"]),
    ]
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[rustfmt::skip] // A table: one case a line.
fn listparts_cases(fx: &Fx) -> Vec<Case> {
    let s = |name: &str| post("listparts", name);
    let ada = &fx.ada;
    vec![
        s("empty object").json(&json!({})).invalid(&["request.recordingId", "request.uploadId"]),
        s("numeric recordingId")
            .json(&with(session_json(ada), "recordingId", json!(7)))
            .invalid(&["request.recordingId"]),
        s("list recordingId")
            .json(&with(session_json(ada), "recordingId", json!([ada.rid()])))
            .invalid(&["request.recordingId"]),
        s("whitespace recordingId")
            .json(&with(session_json(ada), "recordingId", json!("  ")))
            .invalid(&["request.recordingId"]),
        s("null uploadId")
            .json(&with(session_json(ada), "uploadId", json!(null)))
            .invalid(&["request.uploadId"]),
        s("wrong uploadId")
            .json(&with(session_json(ada), "uploadId", json!(fx.ada_done.uid())))
            .invalid(&["request.uploadId"]),
        s("unknown recordingId").json(&with(session_json(ada), "recordingId", json!("nope"))).not_found(),
        s("bob's recording").json(&session_json(&fx.bob)).not_found().like("listparts: unknown recordingId"),
        s("bob's finished recording")
            .json(&session_json(&fx.bob_done))
            .not_found()
            .like("listparts: unknown recordingId"),
        s("aborted session").json(&session_json(&fx.ada_aborted)).conflict(ErrorCode::UploadAborted),
        s("expired session").json(&session_json(&fx.ada_expired)).conflict(ErrorCode::UploadExpired),
        s("storage lost the upload").json(&session_json(&fx.ada_lost)).conflict(ErrorCode::UploadLost),
        s("storage lost the upload, answered in XML")
            .header("accept", "application/xml")
            .json(&session_json(&fx.ada_lost))
            .conflict(ErrorCode::UploadLost),
        s("XML of the abort request")
            .xml(session_xml("NativeUploadAbortRequest", ada, ""))
            .invalid(&["request"]),
        s("XML nil recordingId")
            .xml(xml_doc(
                "NativeUploadListPartsRequest",
                &format!("<recordingId i:nil=\"true\"/>{}", el("uploadId", ada.uid())),
            ))
            .invalid(&["request.recordingId"]),
        s("XML undeclared prefix")
            .xml(session_xml("NativeUploadListPartsRequest", ada, "<x:y>1</x:y>"))
            .invalid(&["request"]),
        s("form without uploadId").form(form(&[("recordingId", ada.rid())])).invalid(&["request.uploadId"]),
        // A JSON body sent as a form is one field with a strange name.
        s("JSON sent as a form")
            .form(session_json(ada).to_string())
            .invalid(&["request.recordingId", "request.uploadId"]),
        s("XML sent as JSON")
            .body("application/json", session_xml("NativeUploadListPartsRequest", ada, ""))
            .invalid(&["request"]),
    ]
}

#[rustfmt::skip] // A table: one case a line.
fn abort_cases(fx: &Fx) -> Vec<Case> {
    let s = |name: &str| post("abort", name);
    let ada = &fx.ada;
    vec![
        s("empty object").json(&json!({})).invalid(&["request.recordingId", "request.uploadId"]),
        s("wrong uploadId")
            .json(&with(session_json(ada), "uploadId", json!(fx.bob.uid())))
            .invalid(&["request.uploadId"]),
        s("null uploadId")
            .json(&with(session_json(ada), "uploadId", json!(null)))
            .invalid(&["request.uploadId"]),
        s("boolean recordingId")
            .json(&with(session_json(ada), "recordingId", json!(false)))
            .invalid(&["request.recordingId"]),
        s("unknown recordingId").json(&with(session_json(ada), "recordingId", json!("nope"))).not_found(),
        s("bob's recording").json(&session_json(&fx.bob)).not_found().like("abort: unknown recordingId"),
        s("bob's finished recording")
            .json(&session_json(&fx.bob_done))
            .not_found()
            .like("abort: unknown recordingId"),
        s("finished session").json(&session_json(&fx.ada_done)).conflict(ErrorCode::UploadFinished),
        s("XML nil uploadId")
            .xml(xml_doc(
                "NativeUploadAbortRequest",
                &format!("{}<uploadId i:nil=\"true\"/>", el("recordingId", ada.rid())),
            ))
            .invalid(&["request.uploadId"]),
        s("XML of the start request").xml(start_xml(&[], "")).invalid(&["request"]),
        s("form without uploadId").form(form(&[("recordingId", ada.rid())])).invalid(&["request.uploadId"]),
        s("form with a wrong uploadId")
            .form(form(&[("recordingId", ada.rid()), ("uploadId", "x")]))
            .invalid(&["request.uploadId"]),
    ]
}

#[rustfmt::skip] // A table: one case a line.
fn finish_cases(fx: &Fx) -> Vec<Case> {
    let s = |name: &str| post("finish", name);
    let ada = &fx.ada;
    let (e1, e2) = (ada.etag(1).to_owned(), ada.etag(2).to_owned());
    let body = |parts: Vec<Value>| finish_json(ada, parts);
    let ok = || body(good_parts(ada));
    let zeros = "0".repeat(32);
    let many: Vec<Value> = (1..=10_001).map(|n| part(n, &zeros)).collect();
    let mut many_dup: Vec<Value> = (1..=10_000).map(|n| part(n, &zeros)).collect();
    many_dup.push(part(1, &zeros));
    let no_etags: Vec<Value> = (1..=300).map(|n| part(n, "")).collect();
    // Past 200 keys the report is cut short, with a note under `request`.
    let mut capped: Vec<String> =
        (0..MAX_MODEL_STATE_KEYS).map(|i| format!("request.parts[{i}].etag")).collect();
    capped.push("request".to_owned());
    let reference_json = include_str!("../../api/src/testdata/finish-reference.json");
    let reference_xml = include_str!("../../api/src/testdata/finish-reference.xml");
    let done = &fx.ada_done;
    vec![
        s("empty object").json(&json!({})).invalid(&[
            "request.recordingId",
            "request.uploadId",
            "request.objectKey",
            "request.recordingName",
            "request.recorderType",
            "request.isVideoRecording",
            "request.usedInFileUploader",
            "request.parts",
        ]),
        s("the reference JSON sample").body("application/json", reference_json).invalid(&["request.parts[1].partNumber"]),
        s("the reference XML sample").body("text/xml", reference_xml).invalid(&["request.parts[1].partNumber"]),
        s("no parts").json(&body(vec![])).invalid(&["request.parts"]),
        s("missing parts").json(&without(ok(), "parts")).invalid(&["request.parts"]),
        s("null parts").json(&with(ok(), "parts", json!(null))).invalid(&["request.parts"]),
        s("parts not a list").json(&with(ok(), "parts", part(1, &e1))).invalid(&["request.parts"]),
        s("a part that is a number").json(&with(ok(), "parts", json!([5]))).invalid(&["request.parts[0]"]),
        s("a null part").json(&with(ok(), "parts", json!([null, part(2, &e2)]))).invalid(&["request.parts[0]"]),
        s("duplicated part number").json(&body(vec![part(1, &e1), part(1, &e1)])).invalid(&["request.parts[1].partNumber"]),
        s("duplicated part number out of order").json(&body(vec![part(2, &e2), part(1, &e1), part(2, &e2)])).invalid(&["request.parts[2].partNumber"]),
        s("gap in part numbers").json(&body(vec![part(1, &e1), part(3, &e2)])).invalid(&["request.parts"]),
        s("only the last part").json(&body(vec![part(2, &e2)])).invalid(&["request.parts"]),
        s("part number 0").json(&body(vec![part(0, &e1), part(1, &e1)])).invalid(&["request.parts[0].partNumber"]),
        s("part number 10001").json(&body(vec![part(1, &e1), part(10_001, &e2)])).invalid(&["request.parts[1].partNumber"]),
        s("negative part number").json(&body(vec![json!({"partNumber": -2, "etag": e1})])).invalid(&["request.parts[0].partNumber"]),
        s("part number as text").json(&body(vec![json!({"partNumber": "1", "etag": e1}), part(2, &e2)])).invalid(&["request.parts[0].partNumber"]),
        s("fractional part number").json(&body(vec![json!({"partNumber": 1.5, "etag": e1})])).invalid(&["request.parts[0].partNumber"]),
        s("part number 1e23").body("application/json", ok().to_string().replace("\"partNumber\":2", "\"partNumber\":99999999999999999999999")).invalid(&["request.parts[1].partNumber"]),
        s("10,001 parts").json(&body(many)).invalid(&["request.parts", "request.parts[10000].partNumber"]),
        s("10,001 parts, the last a duplicate").json(&body(many_dup)).invalid(&["request.parts", "request.parts[10000].partNumber"]),
        s("300 empty ETags").json(&body(no_etags)).invalid_keys(capped),
        s("empty etag").json(&body(vec![part(1, &e1), part(2, "")])).invalid(&["request.parts[1].etag"]),
        s("whitespace etag").json(&body(vec![part(1, "  "), part(2, &e2)])).invalid(&["request.parts[0].etag"]),
        s("quoted empty etag").json(&body(vec![part(1, &e1), part(2, "\"\"")])).invalid(&["request.parts[1].etag"]),
        s("missing etag").json(&body(vec![json!({"partNumber": 1}), part(2, &e2)])).invalid(&["request.parts[0].etag"]),
        s("null etag").json(&body(vec![part(1, &e1), json!({"partNumber": 2, "etag": null})])).invalid(&["request.parts[1].etag"]),
        s("numeric etag").json(&body(vec![part(1, &e1), json!({"partNumber": 2, "etag": 5})])).invalid(&["request.parts[1].etag"]),
        s("part number as text and missing etag").json(&body(vec![json!({"partNumber": "1"})])).invalid(&["request.parts[0].partNumber", "request.parts[0].etag"]),
        s("wrong uploadId").json(&with(ok(), "uploadId", json!(fx.ada_short.uid()))).invalid(&["request.uploadId"]),
        s("wrong objectKey").json(&with(ok(), "objectKey", json!(fx.bob.key()))).invalid(&["request.objectKey"]),
        s("made-up objectKey").json(&with(ok(), "objectKey", json!("recordings/1/mine.wav"))).invalid(&["request.objectKey"]),
        s("wrong uploadId and objectKey").json(&with(with(ok(), "objectKey", json!("k")), "uploadId", json!("u"))).invalid(&["request.uploadId", "request.objectKey"]),
        s("empty objectKey").json(&with(ok(), "objectKey", json!(""))).invalid(&["request.objectKey"]),
        s("empty recordingName").json(&with(ok(), "recordingName", json!(""))).invalid(&["request.recordingName"]),
        s("whitespace-only recordingName").json(&with(ok(), "recordingName", json!(" \u{3000} "))).invalid(&["request.recordingName"]),
        s("256-char recordingName").json(&with(ok(), "recordingName", json!("n".repeat(256)))).invalid(&["request.recordingName"]),
        s("missing recorderType").json(&without(ok(), "recorderType")).invalid(&["request.recorderType"]),
        s("isVideoRecording as text").json(&with(ok(), "isVideoRecording", json!("false"))).invalid(&["request.isVideoRecording"]),
        s("null usedInFileUploader").json(&with(ok(), "usedInFileUploader", json!(null))).invalid(&["request.usedInFileUploader"]),
        s("missing recordingId").json(&without(ok(), "recordingId")).invalid(&["request.recordingId"]),
        s("unknown recordingId").json(&with(ok(), "recordingId", json!("nope"))).not_found(),
        s("bob's recording").json(&finish_json(&fx.bob, good_parts(&fx.bob))).not_found().like("finish: unknown recordingId"),
        s("bob's finished recording").json(&finish_json(&fx.bob_done, good_parts(&fx.bob_done))).not_found().like("finish: unknown recordingId"),
        s("unknown recordingId and a gap").json(&with(body(vec![part(2, &e2)]), "recordingId", json!("nope"))).invalid(&["request.parts"]),
        s("bob's recording and a gap").json(&finish_json(&fx.bob, vec![part(2, "x")])).invalid(&["request.parts"]),
        // Storage checks.
        s("wrong ETag").json(&body(vec![part(1, &e1), part(2, &zeros)])).invalid(&["request.parts[1].etag"]),
        s("wrong ETag, parts in reverse order").json(&body(vec![part(2, &e2), part(1, &format!("\"{zeros}\""))])).invalid(&["request.parts[1].etag"]),
        s("ETags swapped").json(&body(vec![part(1, &e2), part(2, &e1)])).invalid(&["request.parts[0].etag", "request.parts[1].etag"]),
        s("ETag not hex").json(&body(vec![part(1, &e1), part(2, "not-an-etag")])).invalid(&["request.parts[1].etag"]),
        s("part 3 missing in storage").json(&body(vec![part(1, &e1), part(2, &e2), part(3, &zeros)]))
            .invalid(&["request.parts[1].partNumber", "request.parts[2].partNumber"]),
        s("nothing in storage").json(&finish_json(&fx.ada_empty, vec![part(1, &zeros)])).invalid(&["request.parts[0].partNumber"]),
        s("too-short middle part").json(&finish_json(&fx.ada_short, good_parts(&fx.ada_short))).invalid(&["request.parts[0].partNumber"]),
        s("too-short middle part, parts in reverse order")
            .json(&finish_json(&fx.ada_short, good_parts(&fx.ada_short).into_iter().rev().collect()))
            .invalid(&["request.parts[1].partNumber"]),
        // State conflicts come after the request is valid.
        s("after abort").json(&finish_json(&fx.ada_aborted, good_parts(&fx.ada_aborted))).conflict(ErrorCode::UploadAborted),
        s("after abort, wrong ETag").json(&finish_json(&fx.ada_aborted, vec![part(1, &zeros)])).conflict(ErrorCode::UploadAborted),
        s("after expiry").json(&finish_json(&fx.ada_expired, good_parts(&fx.ada_expired))).conflict(ErrorCode::UploadExpired),
        s("after abort, wrong uploadId").json(&with(finish_json(&fx.ada_aborted, good_parts(&fx.ada_aborted)), "uploadId", json!("u"))).invalid(&["request.uploadId"]),
        s("again with a different ETag").json(&finish_json(done, vec![part(1, &zeros)])).conflict(ErrorCode::FinishConflict),
        s("again with another part").json(&finish_json(done, vec![part(1, done.etag(1)), part(2, &zeros)])).conflict(ErrorCode::FinishConflict),
        s("again with a wrong objectKey").json(&with(finish_json(done, good_parts(done)), "objectKey", json!("k"))).invalid(&["request.objectKey"]),
        s("again with a gap").json(&finish_json(done, vec![part(2, done.etag(1))])).invalid(&["request.parts"]),
        // XML
        s("XML with no parts element").xml(finish_xml(ada, &[], "")).invalid(&["request.parts"]),
        s("XML nil recordingId").xml(finish_xml(ada, &["recordingId"], &format!("<recordingId i:nil=\"true\"/>{}", xml_parts(ada)))).invalid(&["request.recordingId"]),
        s("XML part item misnamed")
            .xml(finish_xml(ada, &[], &el("parts", &format!("<part>{}{}</part>", el("partNumber", "1"), el("etag", &e1)))))
            .invalid(&["request.parts[0]"]),
        s("XML isVideoRecording yes").xml(finish_xml(ada, &["isVideoRecording"], &format!("{}{}", el("isVideoRecording", "yes"), xml_parts(ada)))).invalid(&["request.isVideoRecording"]),
        s("XML part number 0").xml(finish_xml(ada, &[], &el("parts", &xml_part("0", &e1)))).invalid(&["request.parts[0].partNumber"]),
        s("XML wrong ETag").xml(finish_xml(ada, &[], &el("parts", &format!("{}{}", xml_part("1", &e1), xml_part("2", &zeros))))).invalid(&["request.parts[1].etag"]),
        s("XML wrong ETag, answered in XML")
            .header("accept", "text/xml")
            .xml(finish_xml(ada, &[], &el("parts", &format!("{}{}", xml_part("1", &e1), xml_part("2", &zeros)))))
            .invalid(&["request.parts[1].etag"]),
        s("XML unclosed").xml(finish_xml(ada, &[], "<parts>")).invalid(&["request"]),
        s("XML mismatched end tag").xml(xml_doc("NativeUploadFinishRequest", "<recordingId>r</uploadId>")).invalid(&["request"]),
        s("XML two roots").xml(format!("{0}{0}", finish_xml(ada, &[], &xml_parts(ada)))).invalid(&["request"]),
        s("XML text outside the root").xml(format!("{}trailing", finish_xml(ada, &[], &xml_parts(ada)))).invalid(&["request"]),
        s("XML mixed text and elements").xml(finish_xml(ada, &[], &el("parts", &format!("text{}", xml_part("1", &e1))))).invalid(&["request"]),
        s("XML nested 20 deep").xml(xml_doc("NativeUploadFinishRequest", &format!("{}{}", "<a>".repeat(20), "</a>".repeat(20)))).invalid(&["request"]),
        s("XML DTD").xml(format!("<!DOCTYPE r [<!ELEMENT r ANY>]>{}", finish_xml(ada, &[], &xml_parts(ada)))).invalid(&["request"]),
        s("XML external entity")
            .xml(format!("{XXE}{}", finish_xml(ada, &["recordingName"], &format!("<recordingName>&x;</recordingName>{}", xml_parts(ada)))))
            .invalid(&["request"]),
        s("XML external DTD")
            .xml(format!(r#"<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">{}"#, finish_xml(ada, &[], &xml_parts(ada))))
            .invalid(&["request"]),
        s("XML billion laughs")
            .xml(format!("{}{}", billion_laughs(), finish_xml(ada, &["recordingName"], &format!("<recordingName>&lol9;</recordingName>{}", xml_parts(ada)))))
            .invalid(&["request"]),
        s("XML undeclared entity").xml(finish_xml(ada, &["recordingName"], &format!("<recordingName>&x;</recordingName>{}", xml_parts(ada)))).invalid(&["request"]),
        s("XML of the abort request").xml(session_xml("NativeUploadAbortRequest", ada, "")).invalid(&["request"]),
        s("XML without namespace")
            .xml(finish_xml(ada, &[], &xml_parts(ada)).replace(&format!(" xmlns=\"{CONTRACT_NAMESPACE}\""), ""))
            .invalid(&["request"]),
        s("XML invalid UTF-8")
            .body("text/xml", splice(&finish_xml(ada, &["recordingName"], "<recordingName>@</recordingName>"), b"\xc3\x28"))
            .invalid(&["request"]),
        s("JSON sent as XML").body("application/xml", ok().to_string()).invalid(&["request"]),
        // Form
        s("form part number not a number").form(form_of(&finish_form(ada, &[]), &format!("parts[0].partNumber=one&parts[0].etag={}", enc(&e1)))).invalid(&["request.parts[0].partNumber"]),
        s("form part 1 given as parts[1]").form(form_of(&finish_form(ada, &[]), &format!("parts[1][partNumber]=1&parts[1][etag]={}", enc(&e1)))).invalid(&["request"]),
        s("form scalar and group under one name").form(form_of(&finish_form(ada, &[]), "parts=1&parts[0][etag]=e")).invalid(&["request"]),
        s("form nested 9 levels").form(form_of(&finish_form(ada, &[]), "a[b][c][d][e][f][g][h][i]=1")).invalid(&["request"]),
        s("form index too large").form(form_of(&finish_form(ada, &[]), "parts[100001][etag]=e")).invalid(&["request"]),
        s("form without objectKey")
            .form(form_of(&finish_form(ada, &["objectKey"]), &format!("parts[0][partNumber]=1&parts[0][etag]={}&parts[1][partNumber]=2&parts[1][etag]={}", enc(&e1), enc(&e2))))
            .invalid(&["request.objectKey"]),
        s("form empty etag").form(form_of(&finish_form(ada, &[]), "parts[0][partNumber]=1&parts[0][etag]=")).invalid(&["request.parts[0].etag"]),
        s("form isVideoRecording maybe")
            .form(form_of(&finish_form(ada, &["isVideoRecording"]), &format!("isVideoRecording=maybe&parts[0][partNumber]=1&parts[0][etag]={}&parts[1][partNumber]=2&parts[1][etag]={}", enc(&e1), enc(&e2))))
            .invalid(&["request.isVideoRecording"]),
        s("form wrong ETag")
            .form(form_of(&finish_form(ada, &[]), &format!("parts[0][partNumber]=1&parts[0][etag]={}&parts[1].partNumber=2&parts[1].etag={zeros}", enc(&e1))))
            .invalid(&["request.parts[1].etag"]),
    ]
}

#[rustfmt::skip] // A table: one case a line.
fn recordings_cases(fx: &Fx) -> Vec<Case> {
    let list = |name: &str| Case::new("recordings list", name, "GET", format!("{API}/recordings/v1"));
    let detail = |name: &str, id: &str| {
        Case::new("recording detail", name, "GET", format!("{API}/recordings/{id}/v1"))
    };
    let unknown = "recording detail: unknown recording";
    vec![
        list("no token").status(401),
        list("bad token").token("not-a-token-of-anyone").status(401),
        list("basic auth").header("authorization", "Basic YWRhOmFkYQ==").status(401),
        list("token without a scheme").header("authorization", ADA).status(401),
        Case { method: "POST", ..list("POST") }.token(ADA).json(&json!({})).status(405),
        detail("unknown recording", "0123456789abcdef0123456789abcdef").token(ADA).not_found(),
        detail("bob's recording", fx.bob_done.rid()).token(ADA).not_found().like(unknown),
        detail("ada's recording asked by bob", fx.ada_done.rid()).token(BOB).not_found().like(unknown),
        detail("still uploading", fx.ada.rid()).token(ADA).not_found().like(unknown),
        detail("aborted", fx.ada_aborted.rid()).token(ADA).not_found().like(unknown),
        detail("a 2000-character id", &"x".repeat(2000)).token(ADA).not_found().like(unknown),
        detail("an id with odd bytes", "%00%27%22%3B--").token(ADA).not_found().like(unknown),
        detail("no token", fx.ada_done.rid()).status(401),
        detail("bad token", fx.ada_done.rid()).token("ada-token-0002").status(401),
        detail("unknown recording, answered in XML", "nope")
            .token(ADA)
            .header("accept", "application/xml")
            .not_found(),
        Case::new(
            "recording detail",
            "an extra path segment",
            "GET",
            format!("{API}/recordings/{}/v1/x", fx.ada_done.rid()),
        )
        .token(ADA)
        .no_endpoint(),
        Case::new(
            "recording detail",
            "DELETE",
            "DELETE",
            format!("{API}/recordings/{}/v1", fx.ada_done.rid()),
        )
        .token(ADA)
        .status(405),
    ]
}

/// Authentication, content types and sizes, across the upload endpoints.
#[rustfmt::skip] // A table: one case a line.
fn common_cases(fx: &Fx) -> Vec<Case> {
    let ada = &fx.ada;
    let finish = finish_json(ada, good_parts(ada));
    let parts = with(session_json(ada), "partNumbers", json!([3]));
    let session = session_json(ada);
    let start = start_json();
    let bodies: [(&'static str, &Value); 5] = [
        ("start", &start),
        ("parts", &parts),
        ("listparts", &session),
        ("abort", &session),
        ("finish", &finish),
    ];
    let mut cases = Vec::new();
    for (endpoint, body) in bodies {
        let anonymous = || Case::new(endpoint, "", "POST", common::endpoint(endpoint));
        let named = |case: Case, name: &str| Case { name: name.to_owned(), ..case };
        cases.push(named(anonymous().json(body).status(401), "no token"));
        cases.push(named(anonymous().token("wrong-token-0001").json(body).status(401), "bad token"));
        cases.push(named(
            anonymous().token(&ADA[..ADA.len() - 1]).json(body).status(401),
            "a prefix of a token",
        ));
        cases.push(named(anonymous().raw(body.to_string()).token(ADA).status(415), "no content type"));
        cases.push(named(
            anonymous().token(ADA).body("text/plain", body.to_string()).status(415),
            "text/plain",
        ));
    }
    let s = |endpoint: &'static str, name: &str| post(endpoint, name);
    let anonymous =
        |endpoint: &'static str, name: &str| Case::new(endpoint, name, "POST", common::endpoint(endpoint));
    cases.extend([
        anonymous("start", "basic auth")
            .header("authorization", "Basic YWRhOmFkYQ==")
            .json(&start)
            .status(401),
        anonymous("listparts", "bearer without a token")
            .header("authorization", "Bearer")
            .json(&session)
            .status(401),
        anonymous("abort", "bearer and spaces")
            .header("authorization", "Bearer    ")
            .json(&session)
            .status(401),
        anonymous("finish", "token without a scheme").header("authorization", ADA).json(&finish).status(401),
        anonymous("parts", "token scheme")
            .header("authorization", format!("Token {ADA}"))
            .json(&parts)
            .status(401),
        anonymous("finish", "token with extra words")
            .header("authorization", format!("Bearer {ADA} {ADA}"))
            .json(&finish)
            .status(401),
        anonymous("start", "non-ASCII token")
            .header("authorization", "Bearer ådå-tøkén")
            .json(&start)
            .status(401),
        anonymous("listparts", "unknown token").token("bob-token-0003").json(&session).status(401),
        // Authentication comes first: no token wins over a bad body.
        anonymous("start", "no token and text/plain").body("text/plain", "hello").status(401),
        anonymous("finish", "no token and an oversized body")
            .body("application/json", oversized("{", "}"))
            .status(401),
        s("finish", "application/octet-stream")
            .body("application/octet-stream", finish.to_string())
            .status(415),
        s("listparts", "multipart/form-data")
            .body("multipart/form-data; boundary=x", session.to_string())
            .status(415),
        s("abort", "JSON in UTF-16")
            .body("application/json; charset=utf-16", session.to_string())
            .status(415),
        s("start", "application/json-patch+json")
            .body("application/json-patch+json", start.to_string())
            .status(415),
        s("start", "XML in ISO-8859-1")
            .body("application/xml; charset=iso-8859-1", start_xml(&[], ""))
            .status(415),
        s("finish", "text/html").body("text/html", finish.to_string()).status(415),
        s("parts", "content type 'json'").body("json", parts.to_string()).status(415),
        s("listparts", "non-ASCII content type").body("application/jsön", session.to_string()).status(415),
        s("start", "JSON over 2 MiB")
            .body("application/json", oversized(r#"{"recordingName":"a""#, "}"))
            .status(413),
        s("finish", "XML over 2 MiB")
            .body("application/xml", oversized(&finish_xml(ada, &[], &xml_parts(ada)), ""))
            .status(413),
        s("parts", "form over 2 MiB")
            .body("application/x-www-form-urlencoded", oversized("recordingId=", ""))
            .status(413),
        s("listparts", "3 MiB of JSON").body("application/json", vec![b' '; 3 * 1024 * 1024]).status(413),
        s("abort", "3 MiB of text/plain").body("text/plain", vec![b'x'; 3 * 1024 * 1024]).status(415),
        Case::new("routes", "unknown endpoint", "POST", common::endpoint("complete"))
            .token(ADA)
            .json(&finish)
            .no_endpoint(),
        Case::new("routes", "version 2", "POST", format!("{API}/native/upload/finish/v2"))
            .token(ADA)
            .json(&finish)
            .no_endpoint(),
        Case::new("routes", "GET finish", "GET", common::endpoint("finish")).token(ADA).status(405),
        Case::new("routes", "PUT start", "PUT", common::endpoint("start"))
            .token(ADA)
            .json(&start)
            .status(405),
    ]);
    cases
}

#[rustfmt::skip] // A table: one case a line.
fn storage_cases(fx: &Fx) -> Vec<Case> {
    let u = &fx.urls;
    let part1 = fx.part1.clone();
    let mut corrupted = part1.clone();
    corrupted[1000] ^= 0xff;
    let signed_md5 = u.put1_md5.headers["Content-MD5"].clone();
    let put1 = u.put1.url.as_str();
    let put3 = u.put3.url.as_str();
    let bob_upload = format!("/uploads/{}/", fx.bob.store_upload_id);
    let ada_upload = format!("/uploads/{}/", fx.ada.store_upload_id);
    let aborted_upload = format!("/uploads/{}/", fx.ada_aborted.store_upload_id);
    let far_future = "9999999999";
    let (traversal_path, traversal_query) = split_url(&u.get_traversal);
    vec![
        put("forged signature", &set_param(put3, "sig", Some(&forged(&param(put3, "sig")))))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("signature not hex", &set_param(put3, "sig", Some("zz-not-hex")))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("empty signature", &set_param(put3, "sig", Some("")))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("missing sig", &set_param(put3, "sig", None)).raw(OTHER).storage(403, "AccessDenied"),
        put("missing expires", &set_param(put3, "expires", None)).raw(OTHER).storage(403, "AccessDenied"),
        put("expires not a number", &set_param(put3, "expires", Some("soon")))
            .raw(OTHER)
            .storage(403, "AccessDenied"),
        put("no query at all", &split_url(put3).0).raw(OTHER).storage(403, "AccessDenied"),
        put("expires moved later", &set_param(put3, "expires", Some(far_future)))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("expires moved into the past", &set_param(put3, "expires", Some("1000000000")))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("expired, signature valid", &u.expired_put).raw(OTHER).storage(403, "AccessDenied"),
        put("replayed for another part number", &set_path(put3, "/parts/3", "/parts/4"))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("replayed for a stored part", &set_path(put3, "/parts/3", "/parts/2"))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("replayed for part 0", &set_path(put3, "/parts/3", "/parts/0"))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("replayed for part 10001", &set_path(put3, "/parts/3", "/parts/10001"))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("part number not a number", &set_path(put3, "/parts/3", "/parts/three"))
            .raw(OTHER)
            .storage(400, "InvalidArgument"),
        put("replayed for bob's upload", &set_path(put3, &ada_upload, &bob_upload))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        // The local store needs the upload's key to check a signature; an
        // upload it no longer holds answers as S3 does for one: NoSuchUpload.
        put("replayed for the aborted upload", &set_path(put3, &ada_upload, &aborted_upload))
            .raw(OTHER)
            .storage(404, "NoSuchUpload"),
        put("replayed for an unknown upload", &set_path(put3, &ada_upload, "/uploads/0123456789abcdef/"))
            .raw(OTHER)
            .storage(404, "NoSuchUpload"),
        put("replayed for a path-traversing upload", &set_path(put3, &ada_upload, "/uploads/%2E%2E/"))
            .raw(OTHER)
            .storage(404, "NoSuchUpload"),
        put("valid URL of an aborted upload", &u.aborted_put.url).raw(OTHER).storage(404, "NoSuchUpload"),
        put("valid URL of a finished upload", &u.done_put.url).raw(OTHER).storage(404, "NoSuchUpload"),
        put("signed MD5 left out of the query", &set_param(&u.put1_md5.url, "md5", None))
            .header("content-md5", signed_md5.clone())
            .raw(part1.clone())
            .storage(403, "SignatureDoesNotMatch"),
        put(
            "signed MD5 changed in the query",
            &set_param(
                &u.put1_md5.url,
                "md5",
                Some(&md5_base64(OTHER).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")),
            ),
        )
        .header("content-md5", md5_base64(OTHER))
        .raw(OTHER)
        .storage(403, "SignatureDoesNotMatch"),
        put("Content-MD5 differs from the signed one", &u.put1_md5.url)
            .header("content-md5", md5_base64(OTHER))
            .raw(OTHER)
            .storage(403, "SignatureDoesNotMatch"),
        put("Content-MD5 missing though signed", &u.put1_md5.url)
            .raw(part1.clone())
            .storage(403, "SignatureDoesNotMatch"),
        put("bytes not matching the signed Content-MD5, stored part", &u.put1_md5.url)
            .signed_headers(&u.put1_md5)
            .raw(corrupted.clone())
            .storage(400, "BadDigest"),
        put("bytes not matching the signed Content-MD5, new part", &u.put3_md5.url)
            .signed_headers(&u.put3_md5)
            .raw(b"not OTHER".to_vec())
            .storage(400, "BadDigest"),
        put("bytes not matching an unsigned Content-MD5, stored part", put1)
            .header("content-md5", signed_md5)
            .raw(corrupted)
            .storage(400, "BadDigest"),
        put("Content-MD5 not base64", put1)
            .header("content-md5", "not base64!")
            .raw(part1.clone())
            .storage(400, "InvalidDigest"),
        put("Content-MD5 of 15 bytes", put1)
            .header("content-md5", base64_of(&[7; 15]))
            .raw(part1.clone())
            .storage(400, "InvalidDigest"),
        put("a part over the part size, stored part", put1)
            .raw(vec![b'x'; PART_SIZE as usize + 1])
            .storage(400, "EntityTooLarge"),
        put("an empty part, stored part", put1).raw(Vec::new()).storage(400, "EntityTooSmall"),
        Case::new(
            "storage PUT",
            "GET of a part URL",
            "GET",
            put1.strip_prefix("http://127.0.0.1:9").unwrap(),
        )
        .status(405),
        Case::new(
            "storage PUT",
            "POST to a part URL",
            "POST",
            put1.strip_prefix("http://127.0.0.1:9").unwrap(),
        )
        .raw(OTHER)
        .status(405),
        get("forged signature", &set_param(&u.get_done, "sig", Some(&forged(&param(&u.get_done, "sig")))))
            .storage(403, "SignatureDoesNotMatch"),
        get("missing sig", &set_param(&u.get_done, "sig", None)).storage(403, "AccessDenied"),
        get("no query at all", &split_url(&u.get_done).0).storage(403, "AccessDenied"),
        get("expires moved later", &set_param(&u.get_done, "expires", Some(far_future)))
            .storage(403, "SignatureDoesNotMatch"),
        get("expired, signature valid", &u.expired_get).storage(403, "AccessDenied"),
        get("replayed for bob's recording", &set_path(&u.get_done, fx.ada_done.key(), fx.bob_done.key()))
            .storage(403, "SignatureDoesNotMatch"),
        get("replayed for the signing key", &set_path(&u.get_done, fx.ada_done.key(), "signing.key"))
            .storage(403, "SignatureDoesNotMatch"),
        get("signed for a missing object", &u.get_missing).storage(404, "NoSuchKey"),
        get("signed for a path-traversing key", &u.get_traversal).storage(400, "InvalidRequest"),
        get(
            "signed for a percent-encoded path-traversing key",
            &join_url(&traversal_path.replace("..", "%2E%2E"), &traversal_query),
        )
        .storage(400, "InvalidRequest"),
        get("unsatisfiable range", &u.get_done).header("range", "bytes=999999999-").status(416),
        Case::new(
            "storage GET",
            "PUT to a media URL",
            "PUT",
            u.get_done.strip_prefix("http://127.0.0.1:9").unwrap(),
        )
        .raw(OTHER)
        .status(405),
    ]
}

// ---------------------------------------------------------------------------
// Snapshots of everything a request could change.

#[derive(Debug, PartialEq)]
struct Snapshot {
    /// `(table, state, count)` for recordings, upload sessions and jobs.
    counts: Vec<(String, String, i64)>,
    /// Every row of every table.
    rows: BTreeMap<&'static str, Vec<String>>,
    /// What `listparts` answers for each fixture session.
    listed: Vec<(&'static str, u16, String)>,
    /// Each stored part: upload, part number, its ETag and the MD5 of the
    /// bytes at its place in the upload's data file.
    parts: Vec<(String, u32, String, String)>,
    /// Every file of the store but the upload data files (covered by
    /// `parts`): path, size and MD5.
    files: Vec<(String, u64, String)>,
}

/// The state; `with_bytes` also hashes every stored part's bytes (slow in
/// a debug build, so only before and after the whole table).
async fn snapshot(fx: &Fx, with_bytes: bool) -> Snapshot {
    let db = fx.base.state.sqlite().unwrap();
    let counts = db
        .call(|conn| {
            let mut statement = conn.prepare(
                "SELECT 'recordings', status, count(*) FROM recordings GROUP BY status
                 UNION ALL SELECT 'upload_sessions', state, count(*) FROM upload_sessions GROUP BY state
                 UNION ALL SELECT 'jobs', state, count(*) FROM jobs GROUP BY state ORDER BY 1, 2",
            )?;
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        })
        .await
        .unwrap();
    let mut rows = BTreeMap::new();
    for table in ["users", "recordings", "upload_sessions", "jobs"] {
        let dump = db
            .call(move |conn| {
                let mut statement = conn.prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))?;
                let columns = statement.column_count();
                statement
                    .query_map([], |row| {
                        let values: rusqlite::Result<Vec<String>> = (0..columns)
                            .map(|i| row.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                            .collect();
                        values.map(|v| v.join(" | "))
                    })?
                    .collect()
            })
            .await
            .unwrap();
        rows.insert(table, dump);
    }
    let mut listed = Vec::new();
    for (name, s) in [
        ("ada", &fx.ada),
        ("ada_short", &fx.ada_short),
        ("ada_empty", &fx.ada_empty),
        ("ada_aborted", &fx.ada_aborted),
        ("ada_done", &fx.ada_done),
        ("ada_expired", &fx.ada_expired),
        ("ada_lost", &fx.ada_lost),
        ("bob", &fx.bob),
        ("bob_done", &fx.bob_done),
    ] {
        let answer = post_as(&fx.base.app, s.token, "listparts", &session_json(s)).await;
        listed.push((name, answer.status.as_u16(), answer.text()));
    }
    let media = fx.base.temp.path().join("media");
    let mut parts = Vec::new();
    for upload in std::fs::read_dir(media.join("uploads")).unwrap() {
        let dir = upload.unwrap().path();
        let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        let part_size = meta["part_size"].as_u64().unwrap();
        let data = if with_bytes { std::fs::read(dir.join("data")).unwrap() } else { Vec::new() };
        for marker in std::fs::read_dir(dir.join("parts")).unwrap() {
            let marker = marker.unwrap();
            let Ok(n) = marker.file_name().to_string_lossy().parse::<u32>() else { continue };
            let text = std::fs::read_to_string(marker.path()).unwrap();
            let (etag, size) = text.trim().split_once(' ').unwrap();
            let offset = (u64::from(n) - 1) * part_size;
            let bytes =
                data.get(offset as usize..(offset + size.parse::<u64>().unwrap()) as usize).unwrap_or(&[]);
            let upload = dir.file_name().unwrap().to_string_lossy().into_owned();
            let md5 = if with_bytes { hex::encode(md5::Md5::digest(bytes)) } else { etag.to_owned() };
            parts.push((upload, n, etag.to_owned(), md5));
        }
    }
    parts.sort();
    let mut files = Vec::new();
    walk(&media, &media, &mut files);
    files.sort();
    Snapshot { counts, rows, listed, parts, files }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, u64, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, files);
        } else if path.file_name().is_some_and(|name| name != "data") {
            let bytes = std::fs::read(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            files.push((name, bytes.len() as u64, hex::encode(md5::Md5::digest(&bytes))));
        }
    }
}

// ---------------------------------------------------------------------------
// Running the table.

/// An API error body, in JSON or XML: its code, message and model-state
/// keys. A JSON body with a member other than `code`, `message` and
/// `modelState` is refused: clients read exactly these.
fn error_body(answer: &Answer) -> Result<(ErrorCode, String, BTreeSet<String>), String> {
    let content_type = answer.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let format =
        if content_type.starts_with("application/xml") { ResponseFormat::Xml } else { ResponseFormat::Json };
    if format == ResponseFormat::Json {
        let members: Value =
            serde_json::from_slice(&answer.body).map_err(|err| format!("not JSON ({err})"))?;
        let names: Vec<&String> =
            members.as_object().map(|object| object.keys().collect()).unwrap_or_default();
        if names.iter().any(|name| !["code", "message", "modelState"].contains(&name.as_str())) {
            return Err(format!("the error body has members {names:?}"));
        }
    }
    let body = ErrorBody::decode(format, &answer.body).map_err(|err| format!("not an error body ({err})"))?;
    Ok((body.code, body.message, body.model_state.keys().map(str::to_owned).collect()))
}

/// The one code an API answer with `status` has, for the statuses that have
/// only one; 404 and 409 have several, which each case names.
fn code_of_status(status: u16) -> Option<ErrorCode> {
    match status {
        400 => Some(ErrorCode::InvalidRequest),
        401 => Some(ErrorCode::Unauthorized),
        413 => Some(ErrorCode::PayloadTooLarge),
        415 => Some(ErrorCode::UnsupportedMediaType),
        503 => Some(ErrorCode::Unavailable),
        _ => None,
    }
}

fn storage_code(answer: &Answer) -> Option<String> {
    let text = answer.text();
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

/// What is wrong with `answer` for `case`, if anything.
fn judge(case: &Case, answer: &Answer) -> Option<String> {
    let status = answer.status.as_u16();
    if status != case.status {
        return Some(format!("expected {}, got {status}: {}", case.status, excerpt(&answer.text())));
    }
    if answer.text().contains("root:x:0:0") {
        return Some("the body shows /etc/passwd".to_owned());
    }
    if let Some(code) = case.code {
        return match storage_code(answer) {
            Some(got) if got == code => None,
            got => Some(format!("expected storage code {code}, got {got:?}: {}", excerpt(&answer.text()))),
        };
    }
    if case.path.starts_with("/storage/") || status == 405 || status == 416 {
        return None;
    }
    let (code, message, keys) = match error_body(answer) {
        Ok(found) => found,
        Err(err) => return Some(format!("{err}: {}", excerpt(&answer.text()))),
    };
    let expected_code = case.api_code.or_else(|| code_of_status(status));
    if Some(code) != expected_code {
        return Some(format!("expected code {expected_code:?}, got {code:?}: {}", excerpt(&answer.text())));
    }
    if status == 400 {
        let expected: BTreeSet<String> = case.keys.iter().cloned().collect();
        if message != INVALID_REQUEST_MESSAGE {
            return Some(format!("a 400's message is {message:?}"));
        }
        if keys != expected {
            return Some(format!("expected keys {expected:?}, got {keys:?}: {}", excerpt(&answer.text())));
        }
    } else if !keys.is_empty() || message.is_empty() {
        return Some(format!(
            "a {status} must have a message and no modelState: {}",
            excerpt(&answer.text())
        ));
    }
    None
}

fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(600).collect();
    if cut.len() < text.len() { format!("{cut}…") } else { cut }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_answer_exactly_and_change_nothing() {
    let began = Instant::now();
    let fx = fixture_with_sessions().await;
    let mut cases = start_cases();
    cases.extend(parts_cases(&fx));
    cases.extend(listparts_cases(&fx));
    cases.extend(abort_cases(&fx));
    cases.extend(finish_cases(&fx));
    cases.extend(recordings_cases(&fx));
    cases.extend(common_cases(&fx));
    cases.extend(storage_cases(&fx));

    let mut names = BTreeSet::new();
    for case in &cases {
        let full = format!("{}: {}", case.group, case.name);
        assert!(names.insert(full.clone()), "two cases are named {full:?}");
        assert!(case.status != 0, "{full} has no expected status");
        assert!(case.status != 400 || case.code.is_some() || !case.keys.is_empty(), "{full} names no keys");
        let api_answer = !case.path.starts_with("/storage/") && ![405, 416].contains(&case.status);
        assert!(
            !api_answer || case.api_code.is_some() || code_of_status(case.status).is_some(),
            "{full} does not name its code"
        );
    }
    assert!(cases.len() >= 150, "only {} cases", cases.len());

    // The expired URLs need a second to pass since they were signed: their
    // `expires` is that second, and a URL works until it has passed.
    let wait = Duration::from_millis(1100).saturating_sub(fx.urls.signed_at.elapsed());
    tokio::time::sleep(wait).await;

    let before = snapshot(&fx, true).await;
    let mut last = snapshot(&fx, false).await;
    let mut failures = Vec::new();
    let mut server_errors = Vec::new();
    let mut bodies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for case in &cases {
        let full = format!("{}: {}", case.group, case.name);
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let answer = call(&fx.base.app, case.method, &case.path, &headers, case.body.clone()).await;
        if answer.status.is_server_error() {
            server_errors.push(format!("{full}: {} {}", answer.status, excerpt(&answer.text())));
        }
        if let Some(problem) = judge(case, &answer) {
            failures.push(format!("{full}: {problem}"));
        }
        // Checked after every case, so that a change names its case.
        let now = snapshot(&fx, false).await;
        if now != last {
            failures.push(format!("{full}: changed the state:\nbefore: {last:?}\nafter: {now:?}"));
            last = now;
        }
        bodies.insert(full, answer.body);
    }
    for case in &cases {
        let full = format!("{}: {}", case.group, case.name);
        if let Some(other) = &case.like {
            match bodies.get(other) {
                Some(body) if *body == bodies[&full] => {}
                Some(body) => failures.push(format!(
                    "{full}: the body differs from {other:?}'s: {} vs {}",
                    String::from_utf8_lossy(&bodies[&full]),
                    String::from_utf8_lossy(body)
                )),
                None => failures.push(format!("{full}: no case named {other:?}")),
            }
        }
    }
    let after = snapshot(&fx, true).await;

    assert!(
        server_errors.is_empty(),
        "{} cases answered 5xx:\n{}",
        server_errors.len(),
        server_errors.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(before.counts, after.counts, "row counts by state changed");
    assert_eq!(before.rows, after.rows, "database rows changed");
    assert_eq!(before.listed, after.listed, "listparts answers changed");
    assert_eq!(before.parts, after.parts, "stored parts changed");
    assert_eq!(before.files, after.files, "the store's files changed");
    for (upload, n, etag, md5) in &before.parts {
        assert_eq!(etag, md5, "part {n} of upload {upload} does not hold the bytes of its ETag");
    }

    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        *per_group.entry(case.group).or_default() += 1;
    }
    let groups: Vec<String> = per_group.iter().map(|(group, n)| format!("{group} {n}")).collect();
    println!(
        "bad_requests: {} cases ({}), none 5xx, state unchanged, in {:.1?}",
        cases.len(),
        groups.join(", "),
        began.elapsed()
    );
}

/// Storage that fails (here its uploads folder is replaced by a file, as a
/// disk gone read-only or unmounted leaves it) answers 503 `unavailable`
/// with `Retry-After`, in JSON and in XML: a client retries, and the state
/// the table above keeps unchanged cannot give this answer.
#[tokio::test]
async fn failing_storage_answers_503_unavailable_with_retry_after() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let uploads = fx.temp.path().join("media/uploads");
    std::fs::rename(&uploads, fx.temp.path().join("media/uploads.away")).unwrap();
    std::fs::write(&uploads, b"not a folder").unwrap();
    let ids = json!({"recordingId": started.recording_id, "uploadId": started.upload_id});
    for accept in ["application/json", "application/xml"] {
        let auth = format!("Bearer {ADA}");
        let headers =
            [("content-type", "application/json"), ("authorization", auth.as_str()), ("accept", accept)];
        let answer =
            call(&fx.app, "POST", &endpoint("listparts"), &headers, ids.to_string().into_bytes()).await;
        assert_eq!(answer.status.as_u16(), 503, "{accept}: {}", answer.text());
        assert!(answer.headers.contains_key("retry-after"), "{accept}: no Retry-After");
        let (code, message, keys) = error_body(&answer).unwrap();
        assert_eq!(code, ErrorCode::Unavailable, "{accept}: {}", answer.text());
        assert!(message.contains("Try again"), "{accept}: {message}");
        assert!(keys.is_empty(), "{accept}: {keys:?}");
    }
}
