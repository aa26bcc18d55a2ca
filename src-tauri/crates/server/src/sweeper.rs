//! Aborts upload sessions that passed their `expiresAt` and frees their parts.

use std::sync::Arc;
use std::time::Duration;

use crate::db::{Db, now_unix};
use crate::store::MediaStore;

/// How often expired sessions are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Aborts every open session whose expiry has passed; returns how many.
pub async fn sweep_once(db: &Db, store: &Arc<dyn MediaStore>) -> crate::Result<usize> {
    let now = now_unix();
    let expired: Vec<(String, String, String, String)> = db
        .call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT upload_id, recording_id, object_key, store_upload_id FROM upload_sessions
                 WHERE state = 'open' AND expires_at <= ?1",
            )?;
            statement
                .query_map([now], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                .collect()
        })
        .await?;
    let count = expired.len();
    for (upload_id, recording_id, key, store_upload_id) in expired {
        // Storage first: if it fails the session stays open and the next
        // sweep tries again, so no parts are left behind unreferenced.
        store.abort_upload(&key, &store_upload_id).await?;
        let id = recording_id.clone();
        db.write_durably(move |tx| {
            tx.execute(
                "UPDATE upload_sessions SET state = 'expired' WHERE upload_id = ?1 AND state = 'open'",
                [&upload_id],
            )?;
            tx.execute(
                "UPDATE recordings SET status = 'expired',
                 error = 'The upload was not finished before it expired; start it again.' WHERE id = ?1",
                [&id],
            )
        })
        .await?;
        tracing::info!(recording_id, "expired upload session aborted");
    }
    Ok(count)
}

/// Sweeps every [`SWEEP_INTERVAL`] until `shutdown` changes.
pub async fn run(db: Db, store: Arc<dyn MediaStore>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(err) = sweep_once(&db, &store).await {
            tracing::warn!(error = %err, "expiry sweep failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

        assert_eq!(sweep_once(&db, &store).await.unwrap(), 1);
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
        assert_eq!(sweep_once(&db, &store).await.unwrap(), 0, "a second sweep finds nothing");
    }
}
