//! The durable verification queue: after `finish`, a job checks the stored
//! object (size, composite ETag, media header and duration), computes its
//! SHA-256 and marks the recording `ready` or `failed`.
//!
//! A job is `queued` → `running` (with a lease) → `done`. A running job
//! whose lease lapsed — its server died — is claimed again, so every
//! finished recording reaches a final state. Storage errors are retried
//! with exponential backoff; a bad file fails the recording with a reason.

use std::sync::Arc;
use std::time::Duration;

use opptak_api::ContentType;
use tokio::sync::Notify;

use crate::Result;
use crate::db::{Db, now_unix};
use crate::store::{MediaStore, StoreError, composite_etag, unquote_etag};

/// How long a claimed job is reserved before another worker may take it.
pub const LEASE: Duration = Duration::from_secs(120);
/// The longest wait between retries of a job that met a storage error.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// How often idle workers look for due jobs (they are also woken on finish).
const POLL: Duration = Duration::from_secs(1);

enum Outcome {
    Ready { size: u64, duration: f64, sha256: String },
    Failed(String),
    Retry(String),
}

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct Jobs {
    /// The server's database.
    pub db: Db,
    /// Where the media is.
    pub store: Arc<dyn MediaStore>,
    /// Wakes idle workers when a job is queued.
    pub wake: Arc<Notify>,
    /// Scratch folder for copies of remote objects.
    pub scratch: std::path::PathBuf,
}

impl Jobs {
    /// Runs jobs until `shutdown` resolves.
    pub async fn run_worker(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = %err, "job queue failed; retrying"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims and runs one due job; false when none is due.
    pub async fn run_next(&self) -> Result<bool> {
        let now = now_unix();
        let lease_until = now + LEASE.as_secs() as i64;
        let claimed: Option<(String, i64)> = self
            .db
            .write_durably(move |tx| {
                use rusqlite::OptionalExtension;
                tx.query_row(
                    "UPDATE jobs SET state = 'running', lease_until = ?2, attempts = attempts + 1
                     WHERE recording_id = (
                         SELECT recording_id FROM jobs
                         WHERE (state = 'queued' AND run_after <= ?1) OR (state = 'running' AND lease_until < ?1)
                         ORDER BY run_after LIMIT 1)
                     RETURNING recording_id, attempts",
                    rusqlite::params![now, lease_until],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
            })
            .await?;
        let Some((recording_id, attempts)) = claimed else { return Ok(false) };
        tracing::info!(recording_id, attempts, "verifying recording");
        let outcome = self.verify(&recording_id).await?;
        self.record(&recording_id, attempts, outcome).await?;
        Ok(true)
    }

    async fn verify(&self, recording_id: &str) -> Result<Outcome> {
        let id = recording_id.to_owned();
        let (key, content_type, object_size, finished_parts): (String, String, Option<i64>, Option<String>) =
            self.db
                .call(move |conn| {
                    conn.query_row(
                        "SELECT s.object_key, r.content_type, s.object_size, s.finished_parts
                     FROM upload_sessions s JOIN recordings r ON r.id = s.recording_id
                     WHERE s.recording_id = ?1",
                        [id],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                })
                .await?;
        let Ok(content_type) = content_type.parse::<ContentType>() else {
            return Ok(Outcome::Failed(format!("Unknown content type {content_type}.")));
        };
        let head = match self.store.head_object(&key).await {
            Ok(head) => head,
            Err(StoreError::NoSuchObject) => {
                return Ok(Outcome::Failed("The uploaded media is missing from storage.".into()));
            }
            Err(err) => return Ok(Outcome::Retry(err.to_string())),
        };
        if let Some(expected) = object_size
            && head.size != expected as u64
        {
            return Ok(Outcome::Failed(format!(
                "Storage holds {} bytes but the parts add up to {expected}.",
                head.size
            )));
        }
        let part_etags: Vec<(u32, String)> =
            finished_parts.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default();
        if let (Some(stored), Some(expected)) = (
            head.etag.as_deref().map(unquote_etag).filter(|etag| etag.contains('-')),
            composite_etag(part_etags.iter().map(|(_, etag)| etag.as_str())),
        ) && stored != expected
        {
            return Ok(Outcome::Failed(format!(
                "The stored object's ETag {stored} is not the one its parts give ({expected})."
            )));
        }
        let copy = match self.store.fetch_to_file(&key, &self.scratch).await {
            Ok(copy) => copy,
            Err(err) => return Ok(Outcome::Retry(err.to_string())),
        };
        let checked = tokio::task::spawn_blocking(move || {
            let sha256 = crate::media::sha256_file(&copy.path);
            let duration = crate::media::probe_duration(&copy.path, content_type);
            (sha256, duration)
        })
        .await
        .map_err(|err| crate::Error::Database(format!("verification task failed: {err}")))?;
        Ok(match checked {
            (Err(err), _) => Outcome::Retry(format!("could not read the stored media: {err}")),
            (Ok(_), Err(problem)) => Outcome::Failed(problem),
            (Ok(sha256), Ok(duration)) => Outcome::Ready { size: head.size, duration, sha256 },
        })
    }

    async fn record(&self, recording_id: &str, attempts: i64, outcome: Outcome) -> Result<()> {
        let id = recording_id.to_owned();
        let now = now_unix();
        match outcome {
            Outcome::Ready { size, duration, sha256 } => {
                tracing::info!(recording_id, size, duration, sha256, "recording ready");
                self.db
                    .write_durably(move |tx| {
                        tx.execute(
                            "UPDATE recordings SET status = 'ready', size_bytes = ?2, duration_seconds = ?3,
                             sha256 = ?4, ready_at = ?5, error = NULL WHERE id = ?1",
                            rusqlite::params![id, size as i64, duration, sha256, now],
                        )?;
                        tx.execute(
                            "UPDATE jobs SET state = 'done', lease_until = NULL WHERE recording_id = ?1",
                            [&id],
                        )
                    })
                    .await?;
            }
            Outcome::Failed(reason) => {
                tracing::warn!(recording_id, reason, "recording failed verification");
                self.db
                    .write_durably(move |tx| {
                        tx.execute("UPDATE recordings SET status = 'failed', error = ?2 WHERE id = ?1", rusqlite::params![id, reason])?;
                        tx.execute(
                            "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = ?2 WHERE recording_id = ?1",
                            rusqlite::params![id, reason],
                        )
                    })
                    .await?;
            }
            Outcome::Retry(reason) => {
                let delay = retry_delay(attempts);
                tracing::warn!(
                    recording_id,
                    reason,
                    retry_in_s = delay.as_secs(),
                    "verification will be retried"
                );
                self.db
                    .write_durably(move |tx| {
                        tx.execute(
                            "UPDATE jobs SET state = 'queued', lease_until = NULL, run_after = ?2, last_error = ?3
                             WHERE recording_id = ?1",
                            rusqlite::params![id, now + delay.as_secs() as i64, reason],
                        )
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// Queues again the jobs a previous server process left running: one
/// server owns a data directory, so at start nothing else can be running them.
pub async fn requeue_interrupted(db: &Db) -> Result<usize> {
    db.write_durably(|tx| {
        tx.execute("UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'running'", [])
    })
    .await
}

/// 1 s, 2 s, 4 s, … capped at [`MAX_RETRY_DELAY`].
fn retry_delay(attempts: i64) -> Duration {
    let exponent = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs(1u64 << exponent).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
    }
}
