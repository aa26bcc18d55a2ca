//! Every endpoint through the router (`oneshot`), in every body format and
//! both response formats, with the local store's storage routes.

mod common;

use axum::http::StatusCode;
use common::*;
use opptak_api::{
    AbortRequest, BodyFormat, FinishResponse, ListPartsRequest, ListPartsResponse, PartsRequest,
    PartsResponse, Recording, RecordingList, RecordingStatus, Request as _, Response as _, ResponseFormat,
    StartResponse,
};

const CONTENT_TYPES: [(&str, BodyFormat); 5] = [
    ("application/json", BodyFormat::Json),
    ("text/json; charset=utf-8", BodyFormat::Json),
    ("application/xml", BodyFormat::Xml),
    ("text/xml", BodyFormat::Xml),
    ("application/x-www-form-urlencoded", BodyFormat::Form),
];

/// Runs start → parts → PUT → listparts → finish → recording with one body
/// format and one response format.
async fn whole_flow(content_type: &str, format: BodyFormat, accept: &str, answer_format: ResponseFormat) {
    let fx = fixture().await;
    let auth = format!("Bearer {ADA}");
    let headers = [("content-type", content_type), ("authorization", auth.as_str()), ("accept", accept)];
    let send = |name: &'static str, body: Vec<u8>| {
        let app = fx.app.clone();
        let headers = headers.map(|(k, v)| (k.to_owned(), v.to_owned()));
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let answer = call(&app, "POST", &endpoint(name), &headers, body).await;
            assert_eq!(answer.status, StatusCode::OK, "{name} with {content_type}: {}", answer.text());
            let expected_type = answer_format.content_type();
            assert_eq!(
                answer.headers["content-type"], expected_type,
                "{name} answers in the accepted format"
            );
            answer.body
        }
    };

    let started =
        StartResponse::decode(answer_format, &send("start", start_request().encode(format)).await).unwrap();
    assert_eq!(started.part_size_bytes, PART_SIZE);
    assert!(started.object_key.ends_with(&format!("{}.wav", started.recording_id)));

    let wav = wav_bytes(3 * 1024 * 1024); // 6 MiB of audio: two parts, the last short
    let chunks: Vec<Vec<u8>> = wav.chunks(PART_SIZE as usize).map(<[u8]>::to_vec).collect();
    let presign = PartsRequest {
        recording_id: started.recording_id.clone(),
        upload_id: started.upload_id.clone(),
        part_numbers: vec![2, 1],
        content_md5: Some(vec![
            md5_base64(&chunks[1]).parse().unwrap(),
            md5_base64(&chunks[0]).parse().unwrap(),
        ]),
    };
    let presigned =
        PartsResponse::decode(answer_format, &send("parts", presign.encode(format)).await).unwrap();
    assert_eq!(presigned.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [2, 1]);
    let mut etags = Vec::new();
    for part in &presigned.parts {
        assert_eq!(part.method, "PUT");
        let data = &chunks[part.part_number as usize - 1];
        let headers: Vec<(&str, &str)> = part.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let put = call(&fx.app, "PUT", &part.url, &headers, data.clone()).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.text());
        etags.push(opptak_api::FinishPart {
            part_number: part.part_number,
            etag: put.headers["etag"].to_str().unwrap().to_owned(),
        });
    }

    let listed =
        ListPartsRequest { recording_id: started.recording_id.clone(), upload_id: started.upload_id.clone() };
    let listed =
        ListPartsResponse::decode(answer_format, &send("listparts", listed.encode(format)).await).unwrap();
    assert_eq!(listed.parts.len(), 2);
    assert_eq!(listed.parts[1].size_bytes, wav.len() as u64 - PART_SIZE);

    let finish = finish_request(&started, etags);
    let finished =
        FinishResponse::decode(answer_format, &send("finish", finish.encode(format)).await).unwrap();
    assert_eq!(finished.status, RecordingStatus::Processing);
    assert_eq!(
        finished.status_url,
        format!("RestApi/personal/mediarecorder/recordings/{}/v1", started.recording_id)
    );
    // Idempotent: the same finish again answers the current state.
    let again = FinishResponse::decode(answer_format, &send("finish", finish.encode(format)).await).unwrap();
    assert_eq!(again.recording_id, finished.recording_id);

    let detail_url = format!("{API}/recordings/{}/v1", started.recording_id);
    let detail =
        call(&fx.app, "GET", &detail_url, &[("authorization", &auth), ("accept", accept)], vec![]).await;
    assert_eq!(detail.status, StatusCode::OK);
    let recording = Recording::decode(answer_format, &detail.body).unwrap();
    assert_eq!(recording.status, RecordingStatus::Processing);
    assert_eq!(recording.recording_name, "Fractions, lesson 3");
    let list = call(
        &fx.app,
        "GET",
        &format!("{API}/recordings/v1"),
        &[("authorization", &auth), ("accept", accept)],
        vec![],
    )
    .await;
    let list = RecordingList::decode(answer_format, &list.body).unwrap();
    assert_eq!(list.0.len(), 1);
}

#[tokio::test]
async fn every_endpoint_in_every_body_format_answering_json() {
    for (content_type, format) in CONTENT_TYPES {
        whole_flow(content_type, format, "application/json", ResponseFormat::Json).await;
    }
}

#[tokio::test]
async fn every_endpoint_in_every_body_format_answering_xml() {
    for (content_type, format) in CONTENT_TYPES {
        whole_flow(content_type, format, "text/xml", ResponseFormat::Xml).await;
        whole_flow(
            content_type,
            format,
            "application/xml;q=0.9, application/json;q=0.1",
            ResponseFormat::Xml,
        )
        .await;
    }
}

#[tokio::test]
async fn routes_ignore_case_but_ids_do_not() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let auth = format!("Bearer {ADA}");
    let shouted = format!("/RestApi/Personal/MediaRecorder/Recordings/{}/V1", started.recording_id);
    // Not yet finished, so not a recording yet: 404, but routed (a JSON body).
    let answer = call(&fx.app, "GET", &shouted, &[("authorization", &auth)], vec![]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json()["message"].as_str().unwrap().contains("recording"));
    let listed = call(
        &fx.app,
        "GET",
        "/RESTAPI/personal/MediaRecorder/recordings/v1",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
}

#[tokio::test]
async fn the_reference_samples_parse_and_the_duplicate_part_is_named() {
    let fx = fixture().await;
    let reference = include_str!("../../api/src/testdata/finish-reference.json");
    let answer = post(&fx.app, "finish", "application/json", reference.as_bytes().to_vec()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["message"], "The request is invalid.");
    assert_eq!(body["modelState"]["request.parts[1].partNumber"][0], "Part number 1 appears more than once.");

    let reference = include_str!("../../api/src/testdata/finish-reference.xml");
    let auth = format!("Bearer {ADA}");
    let answer = call(
        &fx.app,
        "POST",
        &endpoint("finish"),
        &[("content-type", "text/xml"), ("authorization", &auth), ("accept", "application/xml")],
        reference.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let text = answer.text();
    assert!(text.contains(r#"<Field name="request.parts[1].partNumber"><Message>Part number 1 appears more than once.</Message>"#), "{text}");
}

#[tokio::test]
async fn abort_discards_the_upload_and_later_finish_conflicts() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let etags = upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
    let abort =
        AbortRequest { recording_id: started.recording_id.clone(), upload_id: started.upload_id.clone() };
    for _ in 0..2 {
        let answer = post(&fx.app, "abort", "application/json", abort.encode(BodyFormat::Json)).await;
        assert_eq!(answer.status, StatusCode::OK, "abort is idempotent: {}", answer.text());
    }
    let finish = finish_request(&started, etags);
    let answer = post(&fx.app, "finish", "application/json", finish.encode(BodyFormat::Json)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer.json()["message"].as_str().unwrap().contains("aborted"));
}

#[tokio::test]
async fn finish_again_with_different_parts_conflicts() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let etags = upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
    let finish = finish_request(&started, etags);
    assert_eq!(
        post(&fx.app, "finish", "application/json", finish.encode(BodyFormat::Json)).await.status,
        StatusCode::OK
    );
    let mut different = finish.clone();
    different.parts[0].etag = "0".repeat(32);
    let answer = post(&fx.app, "finish", "application/json", different.encode(BodyFormat::Json)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text());
    // After finish, listparts answers what finish accepted.
    let listed = list_parts(&fx.app, &started).await;
    assert_eq!(listed.parts.len(), 1);
}

#[tokio::test]
async fn operations_routes_answer() {
    let fx = fixture().await;
    let health = call(&fx.app, "GET", "/healthz", &[], vec![]).await;
    assert_eq!((health.status, health.text().as_str()), (StatusCode::OK, "ok\n"));
    start(&fx.app, ADA).await;
    let metrics = call(&fx.app, "GET", "/metrics", &[], vec![]).await;
    let text = metrics.text();
    assert!(text.contains(r#"opptak_http_requests_total{route="/restapi/personal/mediarecorder/native/upload/start/v1",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"opptak_upload_sessions{state="open"} 1"#), "{text}");
}

/// `/livez` answers while the process serves; `/readyz` is ready while the
/// database and store answer, and 503 `draining` once the server drains,
/// while `/livez` and the API still answer.
#[tokio::test]
async fn readyz_says_draining_once_the_server_drains_and_livez_stays_up() {
    let fx = fixture().await;
    let live = call(&fx.app, "GET", "/livez", &[], vec![]).await;
    assert_eq!((live.status, live.text().as_str()), (StatusCode::OK, "ok\n"));
    let ready = call(&fx.app, "GET", "/readyz", &[], vec![]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    fx.state.traffic.start_draining();
    let ready = call(&fx.app, "GET", "/readyz", &[], vec![]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["code"], "draining", "{}", ready.text());
    assert!(ready.json()["message"].as_str().unwrap().contains("stopping"), "{}", ready.text());
    assert_eq!(call(&fx.app, "GET", "/livez", &[], vec![]).await.status, StatusCode::OK);
    start(&fx.app, ADA).await;
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let fx = fixture().await;
    let answer = call(&fx.app, "GET", "/openapi.json", &[], vec![]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.json();
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    for name in ["start", "parts", "listparts", "abort", "finish"] {
        assert!(paths.contains(&&endpoint(name)), "{name} missing from {paths:?}");
    }
    for path in [
        format!("{API}/recordings/v1"),
        format!("{API}/recordings/{{recordingId}}/v1"),
        "/healthz".into(),
        "/livez".into(),
        "/readyz".into(),
        "/metrics".into(),
    ] {
        assert!(paths.contains(&&path), "{path} missing");
    }
}

/// Found by schemathesis: an abort that has reached storage but not yet the
/// database leaves an open session with no upload; finish must not answer 5xx.
#[tokio::test]
async fn finish_racing_an_abort_gets_a_client_error() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let etags = upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
    let store_upload_id = store_upload_id(&fx, &started.upload_id).await;
    fx.state.store.abort_upload(&started.object_key, &store_upload_id).await.unwrap();
    let answer =
        post(&fx.app, "finish", "application/json", finish_request(&started, etags).encode(BodyFormat::Json))
            .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(answer.json()["modelState"]["request.parts"].is_array(), "{}", answer.text());
}

/// A client that hangs up during finish must not leave the session "open"
/// over an upload storage has already completed: listparts would then fail
/// on every retry. Finish is dropped after ever longer moments, covering
/// every step between reading the body and committing.
#[tokio::test]
async fn a_finish_the_client_hangs_up_on_still_completes_consistently() {
    let fx = fixture().await;
    for step in 0..14 {
        let started = start(&fx.app, ADA).await;
        let etags = upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
        let request = finish_request(&started, etags.clone()).encode(BodyFormat::Json);
        let hang_up_after = std::time::Duration::from_micros(50 << step);
        let finishing = post(&fx.app, "finish", "application/json", request.clone());
        let _ = tokio::time::timeout(hang_up_after, finishing).await;

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let listed = post_as(
                &fx.app,
                ADA,
                "listparts",
                &serde_json::json!({
                    "recordingId": started.recording_id, "uploadId": started.upload_id,
                }),
            )
            .await;
            assert_eq!(listed.status, StatusCode::OK, "after {hang_up_after:?}: {}", listed.text());
            let finished = fx
                .state
                .sqlite()
                .unwrap()
                .call({
                    let id = started.recording_id.clone();
                    move |conn| {
                        conn.query_row(
                            "SELECT state FROM upload_sessions WHERE recording_id = ?1",
                            [id],
                            |row| row.get::<_, String>(0),
                        )
                    }
                })
                .await
                .unwrap();
            if finished == "completed" || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let again = post(&fx.app, "finish", "application/json", request).await;
        assert_eq!(again.status, StatusCode::OK, "after {hang_up_after:?}: {}", again.text());
    }
}

/// An open session whose upload storage no longer has (the server died
/// between completing and recording it) is a conflict the client answers
/// with a new upload, not a 503 it would retry for ever.
#[tokio::test]
async fn an_open_session_storage_lost_is_a_conflict_not_a_retry() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
    let store_upload_id = store_upload_id(&fx, &started.upload_id).await;
    fx.state.store.abort_upload(&started.object_key, &store_upload_id).await.unwrap();
    let ids = serde_json::json!({ "recordingId": started.recording_id, "uploadId": started.upload_id });
    let listed = post_as(&fx.app, ADA, "listparts", &ids).await;
    assert_eq!(listed.status, StatusCode::CONFLICT, "{}", listed.text());
    assert!(listed.text().contains("start a new upload"), "{}", listed.text());
}

/// Past `expiresAt`, parts, listparts and finish refuse the session with
/// `upload_expired` even though no sweep has marked it yet; abort still works.
#[tokio::test]
async fn a_session_past_its_expiry_is_refused_before_any_sweep() {
    let fx = fixture().await;
    let started = start(&fx.app, ADA).await;
    let etags = upload_parts(&fx.app, &started, &[wav_bytes(100)]).await;
    fx.state
        .sqlite()
        .unwrap()
        .call(|conn| conn.execute("UPDATE upload_sessions SET expires_at = strftime('%s', 'now') - 1", []))
        .await
        .unwrap();
    let ids = serde_json::json!({ "recordingId": started.recording_id, "uploadId": started.upload_id });
    let parts = serde_json::json!({
        "recordingId": started.recording_id, "uploadId": started.upload_id, "partNumbers": [1],
    });
    let finish: serde_json::Value =
        serde_json::from_slice(&finish_request(&started, etags).encode(BodyFormat::Json)).unwrap();
    for (name, body) in [("parts", &parts), ("listparts", &ids), ("finish", &finish)] {
        let answer = post_as(&fx.app, ADA, name, body).await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{name}: {}", answer.text());
        let body = answer.json();
        assert_eq!(body["code"], "upload_expired", "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains("start a new upload"), "{name}: {body}");
    }
    let status: (String, String) = fx
        .state
        .sqlite()
        .unwrap()
        .call(|conn| {
            conn.query_row(
                "SELECT s.state, r.status FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await
        .unwrap();
    assert_eq!(status, ("open".into(), "uploading".into()), "refusing changes nothing; the sweep does");
    let aborted = post_as(&fx.app, ADA, "abort", &ids).await;
    assert_eq!(aborted.status, StatusCode::OK, "{}", aborted.text());
}
