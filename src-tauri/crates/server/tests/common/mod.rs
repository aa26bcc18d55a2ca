//! A server app on a temp dir, called with `oneshot`, and a few requests
//! every router test needs.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine;
use md5::Digest;
use opptak_api::{
    BodyFormat, FinishPart, FinishRequest, ListPartsResponse, PartsRequest, PartsResponse, Request as _,
    Response as _, ResponseFormat, StartRequest, StartResponse,
};
use opptak_server::{AppState, Limits, StoreConfig, UserToken, app};
use tower::ServiceExt;

pub const ADA: &str = "ada-token-0001";
pub const BOB: &str = "bob-token-0002";
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

pub struct Fixture {
    pub temp: tempfile::TempDir,
    pub state: AppState,
    pub app: Router,
}

pub async fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let users = vec![
        UserToken { name: "ada".into(), token: ADA.into() },
        UserToken { name: "bob".into(), token: BOB.into() },
    ];
    let limits = Limits { part_size: PART_SIZE, ..Limits::default() };
    let state =
        AppState::open(temp.path(), &StoreConfig::Local, users, limits, "http://127.0.0.1:9").await.unwrap();
    let app = app(state.clone());
    Fixture { temp, state, app }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to the app; `uri` may be a full URL (presigned).
pub async fn call(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let path = uri.strip_prefix("http://127.0.0.1:9").unwrap_or(uri);
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
    Answer { status, headers, body }
}

pub const API: &str = "/restapi/personal/mediarecorder";

pub fn endpoint(name: &str) -> String {
    format!("{API}/native/upload/{name}/v1")
}

/// POSTs `body` as `content_type` with ada's token.
pub async fn post(app: &Router, name: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let auth = format!("Bearer {ADA}");
    call(app, "POST", &endpoint(name), &[("content-type", content_type), ("authorization", &auth)], body)
        .await
}

pub fn start_request() -> StartRequest {
    StartRequest {
        recording_name: "Fractions, lesson 3".into(),
        recorder_type: "desktop-audio".into(),
        is_video_recording: false,
        used_in_file_uploader: false,
        content_type: opptak_api::ContentType::Wav,
        expected_size_bytes: None,
    }
}

pub async fn start(app: &Router, token: &str) -> StartResponse {
    let auth = format!("Bearer {token}");
    let answer = call(
        app,
        "POST",
        &endpoint("start"),
        &[("content-type", "application/json"), ("authorization", &auth)],
        start_request().encode(BodyFormat::Json),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    StartResponse::decode(ResponseFormat::Json, &answer.body).unwrap()
}

pub fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// POSTs a JSON body to an upload endpoint with `token`.
pub async fn post_as(app: &Router, token: &str, name: &str, body: &serde_json::Value) -> Answer {
    let auth = format!("Bearer {token}");
    call(
        app,
        "POST",
        &endpoint(name),
        &[("content-type", "application/json"), ("authorization", &auth)],
        body.to_string().into_bytes(),
    )
    .await
}

/// Presigns and PUTs each part; returns the ETags in part order.
pub async fn upload_parts(app: &Router, started: &StartResponse, parts: &[Vec<u8>]) -> Vec<FinishPart> {
    upload_parts_as(app, ADA, started, parts).await
}

/// As [`upload_parts`], for the user with `token`.
pub async fn upload_parts_as(
    app: &Router,
    token: &str,
    started: &StartResponse,
    parts: &[Vec<u8>],
) -> Vec<FinishPart> {
    let request = PartsRequest {
        recording_id: started.recording_id.clone(),
        upload_id: started.upload_id.clone(),
        part_numbers: (1..=parts.len() as u32).collect(),
        content_md5: Some(parts.iter().map(|p| md5_base64(p).parse().unwrap()).collect()),
    };
    let auth = format!("Bearer {token}");
    let answer = call(
        app,
        "POST",
        &endpoint("parts"),
        &[("content-type", "application/json"), ("authorization", &auth)],
        request.encode(BodyFormat::Json),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let presigned = PartsResponse::decode(ResponseFormat::Json, &answer.body).unwrap();
    let mut etags = Vec::new();
    for (part, data) in presigned.parts.iter().zip(parts) {
        let headers: Vec<(&str, &str)> = part.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let put = call(app, "PUT", &part.url, &headers, data.clone()).await;
        assert_eq!(put.status, StatusCode::OK, "PUT part {}: {}", part.part_number, put.text());
        let etag = put.headers.get("etag").unwrap().to_str().unwrap().to_owned();
        etags.push(FinishPart { part_number: part.part_number, etag });
    }
    etags
}

pub fn finish_request(started: &StartResponse, parts: Vec<FinishPart>) -> FinishRequest {
    FinishRequest {
        recording_id: started.recording_id.clone(),
        upload_id: started.upload_id.clone(),
        object_key: started.object_key.clone(),
        recording_name: "Fractions, lesson 3".into(),
        recorder_type: "desktop-audio".into(),
        is_video_recording: false,
        used_in_file_uploader: false,
        parts,
    }
}

pub async fn list_parts(app: &Router, started: &StartResponse) -> ListPartsResponse {
    let body = serde_json::json!({"recordingId": started.recording_id, "uploadId": started.upload_id});
    let answer = post(app, "listparts", "application/json", body.to_string().into_bytes()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    ListPartsResponse::decode(ResponseFormat::Json, &answer.body).unwrap()
}

/// A small valid WAV file of `frames` 16-bit mono samples at 8 kHz.
pub fn wav_bytes(frames: u32) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..frames {
        writer.write_sample(((i * 37) % 2000) as i16 - 1000).unwrap();
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

/// The store's own upload id behind an API upload id.
pub async fn store_upload_id(fx: &Fixture, upload_id: &str) -> String {
    let upload_id = upload_id.to_owned();
    fx.state
        .sqlite()
        .unwrap()
        .call(move |conn| {
            conn.query_row(
                "SELECT store_upload_id FROM upload_sessions WHERE upload_id = ?1",
                [upload_id],
                |row| row.get(0),
            )
        })
        .await
        .unwrap()
}
