//! Plays recordings in the app's window straight from disk.
//!
//! The window's media player asks for a recording in pieces (HTTP range
//! requests) as it plays and seeks, so an hour-long lesson starts at once
//! and is never read whole into memory. WebKitGTK's player cannot read
//! Tauri's asset protocol, so the pieces come from a small server on
//! 127.0.0.1, started the first time something is played. Its paths begin
//! with a secret made at start, and it serves only the recordings in the
//! journal (by id) and the last microphone test.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{Error, Opptak, Result};

/// Where "Test microphone" keeps what it heard, inside the data folder and
/// outside the journal.
pub const MICROPHONE_TEST_DIR: &str = "microphone-test";

/// The microphone test's file in `data_dir`.
pub fn microphone_test_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join(MICROPHONE_TEST_DIR).join("test.wav")
}

/// The playback server; it stops when dropped.
#[derive(Debug)]
pub struct Playback {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Playback {
    /// Starts serving `opptak`'s recordings on a free port of 127.0.0.1.
    pub async fn start(opptak: Opptak) -> Result<Self> {
        let unavailable = |err: std::io::Error| Error::Playback(err.to_string());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(unavailable)?;
        let port = listener.local_addr().map_err(unavailable)?.port();
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let test_file = microphone_test_file(opptak.data_dir().path());
        let app = Router::new()
            .route(&format!("/{secret}/recordings/{{id}}"), get(recording))
            .route(&format!("/{secret}/{MICROPHONE_TEST_DIR}"), get(move |request| serve(test_file, request)))
            .with_state(opptak);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(err) = served.await {
                tracing::error!(error = %err, "the playback server stopped");
            }
        });
        tracing::info!(port, "playback server started");
        Ok(Self { base: format!("http://127.0.0.1:{port}/{secret}"), _stop: stop })
    }

    /// Where the window plays recording `id` from.
    pub fn recording_url(&self, id: i64) -> String {
        format!("{}/recordings/{id}", self.base)
    }

    /// Where the window plays the last microphone test from.
    pub fn microphone_test_url(&self) -> String {
        format!("{}/{MICROPHONE_TEST_DIR}", self.base)
    }
}

async fn recording(State(opptak): State<Opptak>, Path(id): Path<i64>, request: Request) -> Response {
    let found = tokio::task::spawn_blocking(move || opptak.journal().recording(id)).await;
    match found {
        Ok(Ok(Some(recording))) => serve(recording.path, request).await,
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The file, or the part of it the request's range names.
async fn serve(file: PathBuf, request: Request) -> Response {
    let Ok(response) = ServeFile::new(file).oneshot(request).await;
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;
    use opptak_journal::NewRecording;

    #[tokio::test]
    async fn a_recording_is_served_in_the_pieces_the_player_asks_for_and_nothing_else_is() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open(&DataDir::at(temp.path().join("data"))).unwrap();
        let file = temp.path().join("lesson.wav");
        let bytes: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let id = opptak
            .journal()
            .add_recording(NewRecording::growing(&file, "Lesson", "audio/wav", "audio", false))
            .unwrap()
            .id;
        let playback = Playback::start(opptak.clone()).await.unwrap();
        let client = reqwest::Client::new();

        let piece =
            client.get(playback.recording_url(id)).header("Range", "bytes=1000-1999").send().await.unwrap();
        assert_eq!(piece.status(), 206);
        assert_eq!(piece.headers()["content-range"], "bytes 1000-1999/100000");
        assert!(
            piece.headers()["content-type"].to_str().unwrap().starts_with("audio/"),
            "{:?}",
            piece.headers()
        );
        assert_eq!(piece.bytes().await.unwrap(), bytes[1000..2000]);
        let whole = client.get(playback.recording_url(id)).send().await.unwrap();
        assert_eq!(whole.headers()["accept-ranges"], "bytes");
        assert_eq!(whole.bytes().await.unwrap().len(), bytes.len());

        let unknown = client.get(playback.recording_url(id + 1)).send().await.unwrap();
        assert_eq!(unknown.status(), 404);
        let secret = playback.base.rsplit('/').next().unwrap();
        let guessed = playback.recording_url(id).replace(secret, "0123456789abcdef0123456789abcdef");
        assert_eq!(client.get(guessed).send().await.unwrap().status(), 404, "a path without the secret");
        let no_test_yet = client.get(playback.microphone_test_url()).send().await.unwrap();
        assert_eq!(no_test_yet.status(), 404);

        drop(playback);
    }
}
