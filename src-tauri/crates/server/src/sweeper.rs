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
