//! The engine as the desktop app owns it: one [`Opptak`], the destination
//! recordings go to (the server inside the app, "This computer"), and at
//! most one recording at a time.
//!
//! After a recording stops, its [`RecordingStatus`] follows it from "saved
//! on this computer" to "safe on server" on a `watch` channel, so a window
//! that looks late still sees the last state, never a stale one.

use std::sync::Arc;

use opptak_journal::{Journal, RecordingState};
use opptak_upload::{UploadConfig, UploadEvent, UploadHandle};
use serde::Serialize;
use tokio::sync::{Mutex, broadcast, watch};

use crate::recording::RecordedFile;
pub use opptak_capture::{CaptureEvent, Error as CaptureError, InputDevice, Progress};

use crate::{
    DataDir, Destination, Error, Opptak, RecordOptions, RecordingSession, Result, SessionEvent, Target,
};

/// Where a recording is, in the order a teacher sees it pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum RecordingStatus {
    /// The microphone is being recorded.
    Recording,
    /// The file is finished and safe on this computer; its upload has not
    /// moved since.
    Saved,
    /// Parts are being sent.
    Uploading {
        /// How much of the file the server has, 0–99.
        percent: u8,
    },
    /// The server cannot be reached; the upload goes on by itself when it can.
    WaitingForNetwork,
    /// Everything is sent; the server is checking the file.
    Checking,
    /// The server holds the recording with the same SHA-256 as this computer.
    Safe,
    /// The recording stays on this computer only: there is nowhere to send it.
    OnlyOnThisComputer {
        /// Why, and what to do.
        message: String,
    },
    /// The upload stopped for good.
    Failed {
        /// What happened and what to do.
        message: String,
    },
}

impl RecordingStatus {
    /// Whether nothing more will change without the teacher.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Safe | Self::Failed { .. } | Self::OnlyOnThisComputer { .. })
    }
}

/// What a front end follows while a recording runs and after it stops.
#[derive(Debug)]
pub struct RecordingFeed {
    /// The journal id of the recording.
    pub local_id: i64,
    /// Levels, warnings, pauses and upload events.
    pub events: broadcast::Receiver<SessionEvent>,
    /// Recorded time and durable lengths.
    pub progress: watch::Receiver<Progress>,
    /// Where the recording is; [`RecordingStatus::Recording`] until stopped.
    pub status: watch::Receiver<RecordingStatus>,
}

struct Current {
    session: RecordingSession,
    status: watch::Sender<RecordingStatus>,
}

/// The one owner of the engine in the desktop app.
pub struct AppEngine {
    opptak: Opptak,
    destination: Option<Arc<Destination>>,
    destination_label: String,
    current: Mutex<Option<Current>>,
    /// Uploads `resume_all` started at launch, held so they are not lost
    /// track of.
    resumed: std::sync::Mutex<Vec<UploadHandle>>,
}

impl std::fmt::Debug for AppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEngine").field("destination", &self.destination_label).finish_non_exhaustive()
    }
}

impl AppEngine {
    /// Opens the journal in `data_dir`, starts the server inside the app
    /// and resumes the uploads a crash or a lost network interrupted.
    /// When the server cannot start, recordings stay on this computer and
    /// [`AppEngine::destination_label`] says why.
    pub async fn open(data_dir: &DataDir) -> Result<Self> {
        let opptak = Opptak::open(data_dir)?;
        let (destination, label) = match opptak.connect(&Target::Embedded).await {
            Ok(destination) => {
                let label = format!("{} ({})", crate::uploads::EMBEDDED_NAME, destination.client.base_url());
                (Some(Arc::new(destination)), label)
            }
            Err(err) => {
                tracing::error!(error = %err, "embedded destination failed");
                (None, format!("{} is not available: {err}", crate::uploads::EMBEDDED_NAME))
            }
        };
        let engine = Self::with_destination(opptak, destination, label);
        match engine.opptak.resume_all(engine.destination.as_deref(), UploadConfig::default()).await {
            Ok(running) => {
                tracing::info!(uploads = running.len(), "resumed unfinished uploads");
                let handles = running.into_iter().map(|(_, handle)| handle);
                engine.resumed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(handles);
            }
            Err(err) => tracing::error!(error = %err, "could not resume unfinished uploads"),
        }
        Ok(engine)
    }

    /// An engine over `opptak` that uploads to `destination` (none: every
    /// recording stays on this computer), described to the teacher as `label`.
    pub fn with_destination(opptak: Opptak, destination: Option<Arc<Destination>>, label: String) -> Self {
        Self {
            opptak,
            destination,
            destination_label: label,
            current: Mutex::new(None),
            resumed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The engine.
    pub fn opptak(&self) -> &Opptak {
        &self.opptak
    }

    /// Where recordings go, in words ("This computer (http://127.0.0.1:…)").
    pub fn destination_label(&self) -> &str {
        &self.destination_label
    }

    /// The microphones this computer offers, the system default first and
    /// marked. Asks the sound system: call it off the async threads.
    pub fn microphones() -> Result<Vec<InputDevice>> {
        Ok(opptak_capture::input_devices()?)
    }

    /// Starts recording `device` (`None`: the system default) as `name`,
    /// uploading while recording. Fails with [`Error::AlreadyRecording`]
    /// while another recording runs.
    pub async fn start(&self, device: Option<String>, name: Option<String>) -> Result<RecordingFeed> {
        let mut current = self.current.lock().await;
        if current.is_some() {
            return Err(Error::AlreadyRecording);
        }
        let options = RecordOptions { device, name, ..RecordOptions::default() };
        let session = self.opptak.record(options, self.destination.as_deref()).await?;
        let (status, status_rx) = watch::channel(RecordingStatus::Recording);
        let feed = RecordingFeed {
            local_id: session.local_id(),
            events: session.subscribe(),
            progress: session.progress(),
            status: status_rx,
        };
        *current = Some(Current { session, status });
        Ok(feed)
    }

    /// Whether a recording runs now.
    pub async fn is_recording(&self) -> bool {
        self.current.lock().await.is_some()
    }

    /// Pauses the recording; paused time is not recorded.
    pub async fn pause(&self) -> Result<()> {
        self.current.lock().await.as_ref().ok_or(Error::NotRecording)?.session.pause();
        Ok(())
    }

    /// Continues the recording after a pause.
    pub async fn resume(&self) -> Result<()> {
        self.current.lock().await.as_ref().ok_or(Error::NotRecording)?.session.resume();
        Ok(())
    }

    /// Stops the recording and finishes its files; their uploads go on, and
    /// the feed's status follows them until the recording is safe on the
    /// server or has failed. Returns the recording's journal id.
    pub async fn stop(&self) -> Result<i64> {
        // Taken out first: stopping waits for the files to be finished, and
        // pause or a second stop meanwhile must not find it.
        let Current { session, status } = self.current.lock().await.take().ok_or(Error::NotRecording)?;
        let local_id = session.local_id();
        let stopped = match session.stop().await {
            Ok(stopped) => stopped,
            Err(err) => {
                status.send_replace(RecordingStatus::Failed { message: err.to_string() });
                return Err(err);
            }
        };
        status.send_replace(RecordingStatus::Saved);
        let nowhere = if self.destination.is_none() {
            format!(
                "{}. The recording is kept on this computer; restart Opptak to upload it.",
                self.destination_label
            )
        } else {
            "The recording is kept on this computer and was not sent anywhere.".to_owned()
        };
        tokio::spawn(follow_uploads(self.opptak.journal().clone(), stopped.files, status, nowhere));
        Ok(local_id)
    }
}

/// Turns one upload event into what the teacher sees, when it changes that.
fn status_of(event: &UploadEvent) -> Option<RecordingStatus> {
    match event {
        UploadEvent::PartSent { sent_bytes, total_bytes, .. } => {
            let percent = sent_bytes.saturating_mul(100).checked_div(*total_bytes).unwrap_or(0).min(99);
            Some(RecordingStatus::Uploading { percent: percent as u8 })
        }
        UploadEvent::WaitingForNetwork { .. } => Some(RecordingStatus::WaitingForNetwork),
        UploadEvent::Finishing | UploadEvent::Processing | UploadEvent::StillChecking { .. } => {
            Some(RecordingStatus::Checking)
        }
        UploadEvent::Ready { .. } => Some(RecordingStatus::Safe),
        UploadEvent::Failed { message } => Some(RecordingStatus::Failed { message: message.clone() }),
        UploadEvent::SessionStarted { .. } | UploadEvent::Retrying { .. } | UploadEvent::Stalled { .. } => {
            None
        }
    }
}

/// The journal's word on a file whose upload ended: it is the truth even
/// when events were missed.
fn status_in_journal(journal: &Journal, local_id: i64, ended_with: Option<String>) -> RecordingStatus {
    match journal.recording(local_id) {
        Ok(Some(recording)) => match recording.state {
            RecordingState::Ready => RecordingStatus::Safe,
            RecordingState::Waiting => RecordingStatus::WaitingForNetwork,
            RecordingState::Finishing | RecordingState::Processing => RecordingStatus::Checking,
            RecordingState::Failed => RecordingStatus::Failed {
                message: recording
                    .error
                    .or(ended_with)
                    .unwrap_or_else(|| "The upload stopped. Open the Library and press Retry.".to_owned()),
            },
            _ => match ended_with {
                Some(message) => RecordingStatus::Failed { message },
                None => RecordingStatus::Saved,
            },
        },
        Ok(None) => RecordingStatus::Failed {
            message: format!(
                "Recording {local_id} is no longer in Opptak's list. Look for its file in the recordings folder."
            ),
        },
        Err(err) => RecordingStatus::Failed { message: Error::Journal(err.to_string()).to_string() },
    }
}

/// Follows each file's upload to its end, publishing where the recording is.
async fn follow_uploads(
    journal: Journal,
    files: Vec<RecordedFile>,
    status: watch::Sender<RecordingStatus>,
    nowhere: String,
) {
    for file in files {
        let local_id = file.recording.id;
        let Some(upload) = file.upload else {
            status.send_replace(RecordingStatus::OnlyOnThisComputer { message: nowhere });
            return;
        };
        let mut events = upload.subscribe();
        let joined = upload.join();
        tokio::pin!(joined);
        let ended = loop {
            tokio::select! {
                ended = &mut joined => break ended,
                event = events.recv() => match event {
                    // "Safe" is said once the journal agrees, after the join.
                    Ok(UploadEvent::Ready { .. }) => {}
                    Ok(event) => {
                        if let Some(next) = status_of(&event) {
                            status.send_replace(next);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        break (&mut joined).await;
                    }
                },
            }
        };
        let ended_with = ended.err().map(|err| err.to_string());
        let journal_for_read = journal.clone();
        let now =
            tokio::task::spawn_blocking(move || status_in_journal(&journal_for_read, local_id, ended_with))
                .await
                .unwrap_or_else(|err| RecordingStatus::Failed {
                    message: Error::Journal(err.to_string()).to_string(),
                });
        let safe = now == RecordingStatus::Safe;
        status.send_replace(now);
        if !safe {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_events_read_as_a_teacher_sees_them() {
        let part = UploadEvent::PartSent { part_number: 1, sent_bytes: 43, total_bytes: 100 };
        assert_eq!(status_of(&part), Some(RecordingStatus::Uploading { percent: 43 }));
        let all = UploadEvent::PartSent { part_number: 2, sent_bytes: 100, total_bytes: 100 };
        assert_eq!(
            status_of(&all),
            Some(RecordingStatus::Uploading { percent: 99 }),
            "safe only when checked"
        );
        assert_eq!(status_of(&UploadEvent::Processing), Some(RecordingStatus::Checking));
        let waiting =
            UploadEvent::WaitingForNetwork { reason: "refused".into(), retry_in: std::time::Duration::ZERO };
        assert_eq!(status_of(&waiting), Some(RecordingStatus::WaitingForNetwork));
        assert!(RecordingStatus::Safe.is_final() && !RecordingStatus::Checking.is_final());
    }

    #[tokio::test]
    async fn pause_resume_and_stop_with_nothing_recording_are_typed_errors() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open(&DataDir::at(temp.path())).unwrap();
        let engine = AppEngine::with_destination(opptak, None, "nowhere".into());
        assert!(matches!(engine.pause().await, Err(Error::NotRecording)));
        assert!(matches!(engine.resume().await, Err(Error::NotRecording)));
        assert!(matches!(engine.stop().await, Err(Error::NotRecording)));
        assert!(!engine.is_recording().await);
    }

    #[test]
    fn the_journal_decides_the_final_word() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = Opptak::open(&DataDir::at(temp.path())).unwrap();
        let journal = opptak.journal();
        let path = temp.path().join("a.wav");
        std::fs::write(&path, b"x").unwrap();
        let new = opptak_journal::NewRecording::growing(&path, "lesson", "audio/wav", "audio", false);
        let id = journal.add_recording(new).unwrap().id;
        journal.mark_finished(id, 1, None).unwrap();
        journal.set_state(id, RecordingState::Uploading, None).unwrap();
        journal.set_state(id, RecordingState::Waiting, None).unwrap();
        assert_eq!(status_in_journal(journal, id, None), RecordingStatus::WaitingForNetwork);
        journal
            .set_state_because(
                id,
                RecordingState::Failed,
                Some(crate::Problem::Storage),
                Some("the token was refused"),
            )
            .unwrap();
        assert_eq!(
            status_in_journal(journal, id, None),
            RecordingStatus::Failed { message: "the token was refused".into() }
        );
        assert!(matches!(status_in_journal(journal, id + 1, None), RecordingStatus::Failed { .. }));
    }
}
