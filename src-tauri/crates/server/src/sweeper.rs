//! Aborts upload sessions that passed their `expiresAt` and frees their parts.
//!
//! The sweep takes one expired session at a time, exclusively, and skips a
//! session someone else holds ([`MetaStore::lock_expired_session`]): a
//! `finish` that was running when the session expired completes, and a
//! later sweep finds it no longer open. Several server instances sweeping
//! one database never wait on each other or on a request. Only a recording
//! still `uploading` becomes `expired`. The handlers refuse `parts`,
//! `listparts` and `finish` on a session past its expiry even before a
//! sweep ran, so the sweep's timing never decides an answer.

use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;
use crate::meta::MetaStore;
use crate::store::MediaStore;

/// How often expired sessions are looked for, by default.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Aborts every open session whose expiry has passed and that nobody
/// holds; returns how many.
pub async fn sweep_once(meta: &dyn MetaStore, store: &Arc<dyn MediaStore>) -> crate::Result<usize> {
    let mut count = 0;
    for recording_id in meta.expired_sessions().await? {
        // Held (a request is working on it), or finished or aborted since it
        // was listed: its holder decides, or the next sweep looks again.
        let Some(guard) = meta.lock_expired_session(&recording_id).await? else { continue };
        let session = guard.session();
        // Storage first: if it fails the session stays open and the next
        // sweep tries again, so no parts are left behind unreferenced.
        store.abort_upload(&session.object_key, &session.store_upload_id).await?;
        guard.expire().await?;
        count += 1;
        tracing::info!(recording_id, "expired upload session aborted");
    }
    Ok(count)
}

/// Sweeps every [`Limits::sweep_interval`](crate::Limits::sweep_interval)
/// until `shutdown` changes.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(err) = sweep_once(state.meta.as_ref(), &state.store).await {
            tracing::warn!(error = %err, "expiry sweep failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(state.limits.sweep_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, now_unix};
    use crate::meta::SqliteMeta;
    use crate::store::interfering::{Fault, Interfering};
    use crate::store::{LocalStore, StoreError};

    #[tokio::test]
    async fn expired_open_sessions_are_aborted_and_their_parts_freed() {
        let temp = tempfile::tempdir().unwrap();
        let db = Db::open(&temp.path().join("server.sqlite3")).unwrap();
        let local = LocalStore::open(&temp.path().join("media")).unwrap();
        let store: Arc<dyn MediaStore> = Arc::new(local);
        let mut uploads = Vec::new();
        for (name, expires_at) in [("past", now_unix() - 1), ("future", now_unix() + 3600)] {
            let key = format!("recordings/1/{name}.wav");
            let upload = store.create_upload(&key, "audio/wav", 5 << 20).await.unwrap();
            let (key_db, upload_db, name) = (key.clone(), upload.clone(), name.to_owned());
            db.write_durably(move |tx| {
                tx.execute("INSERT OR IGNORE INTO users (id, name, token_sha256) VALUES (1, 'ada', x'01')", [])?;
                tx.execute(
                    "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
                     used_in_file_uploader, status, created_at) VALUES (?1, 1, ?1, 'desktop-audio', 'audio/wav', 0, 0, 'uploading', 0)",
                    [&name],
                )?;
                tx.execute(
                    "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size, state, expires_at)
                     VALUES (?1, ?1, ?2, ?3, 5242880, 'open', ?4)",
                    rusqlite::params![name, key_db, upload_db, expires_at],
                )
            })
            .await
            .unwrap();
            uploads.push((key, upload));
        }

        assert_eq!(sweep_once(&SqliteMeta::new(db.clone()), &store).await.unwrap(), 1);
        assert!(matches!(
            store.list_parts(&uploads[0].0, &uploads[0].1).await,
            Err(StoreError::NoSuchUpload)
        ));
        assert!(store.list_parts(&uploads[1].0, &uploads[1].1).await.is_ok(), "an unexpired upload is kept");
        let states: Vec<(String, String)> = db
            .call(|conn| {
                let mut statement = conn.prepare(
                    "SELECT s.state, r.status FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id ORDER BY s.upload_id",
                )?;
                statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
            })
            .await
            .unwrap();
        assert_eq!(states, [("open".into(), "uploading".into()), ("expired".into(), "expired".into())]);
        assert_eq!(
            sweep_once(&SqliteMeta::new(db.clone()), &store).await.unwrap(),
            0,
            "a second sweep finds nothing"
        );
    }

    async fn send(app: &axum::Router, uri: &str, body: Vec<u8>) -> (axum::http::StatusCode, Vec<u8>) {
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(if uri.starts_with("/storage") { "PUT" } else { "POST" })
            .uri(uri)
            .header("content-type", "application/json")
            .header("authorization", "Bearer ada-token-0001")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let etag = response.headers().get("etag").map(|etag| etag.as_bytes().to_vec());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
        (status, etag.unwrap_or(body))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finish_racing_the_sweep_completes_and_is_never_expired() {
        use opptak_api::{Request as _, Response as _};
        let temp = tempfile::tempdir().unwrap();
        let users = vec!["ada:ada-token-0001".parse().unwrap()];
        let limits = crate::Limits { part_size: 5 << 20, ..crate::Limits::default() };
        let mut state =
            AppState::open(temp.path(), &crate::StoreConfig::Local, users, limits, "http://127.0.0.1:9")
                .await
                .unwrap();
        // Finish is held inside its session lock while the session expires.
        let gate = Arc::new(Interfering::new(state.local.clone().unwrap()));
        gate.on_complete(Fault::Hold);
        state.store = gate.clone();
        let app = crate::app(state.clone());
        let api = "/restapi/personal/mediarecorder/native/upload";

        let start = opptak_api::StartRequest {
            recording_name: "Fractions".into(),
            recorder_type: "desktop-audio".into(),
            is_video_recording: false,
            used_in_file_uploader: false,
            content_type: opptak_api::ContentType::Wav,
            expected_size_bytes: None,
        };
        let (status, body) =
            send(&app, &format!("{api}/start/v1"), start.encode(opptak_api::BodyFormat::Json)).await;
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
        let started = opptak_api::StartResponse::decode(opptak_api::ResponseFormat::Json, &body).unwrap();
        let parts = opptak_api::PartsRequest {
            recording_id: started.recording_id.clone(),
            upload_id: started.upload_id.clone(),
            part_numbers: vec![1],
            content_md5: None,
        };
        let (status, body) =
            send(&app, &format!("{api}/parts/v1"), parts.encode(opptak_api::BodyFormat::Json)).await;
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
        let presigned = opptak_api::PartsResponse::decode(opptak_api::ResponseFormat::Json, &body).unwrap();
        let url = presigned.parts[0].url.strip_prefix("http://127.0.0.1:9").unwrap().to_owned();
        let (status, etag) = send(&app, &url, b"RIFF and some audio".to_vec()).await;
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&etag));
        let finish = opptak_api::FinishRequest {
            recording_id: started.recording_id.clone(),
            upload_id: started.upload_id.clone(),
            object_key: started.object_key.clone(),
            recording_name: "Fractions".into(),
            recorder_type: "desktop-audio".into(),
            is_video_recording: false,
            used_in_file_uploader: false,
            parts: vec![opptak_api::FinishPart { part_number: 1, etag: String::from_utf8(etag).unwrap() }],
        };

        let completing = gate.reached.notified();
        let finishing = tokio::spawn({
            let (app, uri) = (app.clone(), format!("{api}/finish/v1"));
            async move { send(&app, &uri, finish.encode(opptak_api::BodyFormat::Json)).await }
        });
        completing.await;
        // The finish has passed its checks; now the session's time runs out.
        state
            .sqlite()
            .unwrap()
            .call(|conn| conn.execute("UPDATE upload_sessions SET expires_at = 0", []))
            .await
            .unwrap();
        // The sweep skips the session the finish holds, without waiting for
        // it (bounded: a sweep that waited would hold this test until the
        // finish is released, which only happens below).
        let skipped =
            tokio::time::timeout(Duration::from_secs(10), sweep_once(state.meta.as_ref(), &state.store))
                .await
                .expect("the sweep waited for the finish holding the session");
        assert_eq!(skipped.unwrap(), 0, "a held session is skipped");
        gate.release.notify_one();

        let (status, body) = finishing.await.unwrap();
        assert!(status.is_success(), "finish: {status} {}", String::from_utf8_lossy(&body));
        assert_eq!(
            sweep_once(state.meta.as_ref(), &state.store).await.unwrap(),
            0,
            "a completed session is not swept"
        );
        let states: (String, String) = state
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
        assert_eq!(states, ("completed".into(), "processing".into()));
    }

    #[tokio::test]
    async fn only_uploading_recordings_become_expired() {
        let temp = tempfile::tempdir().unwrap();
        let db = Db::open(&temp.path().join("server.sqlite3")).unwrap();
        let store: Arc<dyn MediaStore> = Arc::new(LocalStore::open(&temp.path().join("media")).unwrap());
        let upload = store.create_upload("k", "audio/wav", 5 << 20).await.unwrap();
        // An open session whose recording another path already moved on
        // (a finish whose session update did not commit, then a retry).
        db.write_durably(move |tx| {
            tx.execute("INSERT INTO users (id, name, token_sha256) VALUES (1, 'ada', x'01')", [])?;
            tx.execute(
                "INSERT INTO recordings (id, user_id, name, recorder_type, content_type, is_video,
                 used_in_file_uploader, status, created_at) VALUES ('r', 1, 'r', 'desktop-audio', 'audio/wav', 0, 0, 'processing', 0)",
                [],
            )?;
            tx.execute(
                "INSERT INTO upload_sessions (upload_id, recording_id, object_key, store_upload_id, part_size, state, expires_at)
                 VALUES ('u', 'r', 'k', ?1, 5242880, 'open', 0)",
                [upload],
            )
        })
        .await
        .unwrap();
        assert_eq!(sweep_once(&SqliteMeta::new(db.clone()), &store).await.unwrap(), 1);
        let status: String = db
            .call(|conn| conn.query_row("SELECT status FROM recordings", [], |row| row.get(0)))
            .await
            .unwrap();
        assert_eq!(status, "processing");
    }
}
