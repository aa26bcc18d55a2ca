//! What a running recording tells the Record screen, over the
//! `tauri::ipc::Channel` that `start_recording` was given: a point-to-point
//! stream for that one screen, not a broadcast to every window.

use opptak_core::app_engine::CaptureEvent;
use opptak_core::{RecordingFeed, RecordingStatus, SessionEvent};
use serde::Serialize;
use tauri::ipc::Channel;
use tokio::sync::broadcast::error::RecvError;

/// One update for the Record screen.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum RecordEvent {
    /// The microphone's level over the last 50 ms (20 a second).
    #[serde(rename_all = "camelCase")]
    Level {
        /// Peak in dBFS (0 is the loudest possible).
        peak_dbfs: f32,
        /// RMS in dBFS.
        rms_dbfs: f32,
    },
    /// How much has been recorded, pauses left out.
    Elapsed {
        /// Whole seconds.
        seconds: u32,
    },
    /// The teacher paused.
    Paused,
    /// Recording goes on after a pause.
    Resumed,
    /// The input has been silent for a while: the microphone may be muted.
    SilenceStarted {
        /// What happened and what to do.
        message: String,
    },
    /// Sound is back.
    SilenceEnded,
    /// The microphone went away; recording is paused until it is back.
    MicrophoneLost {
        /// What happened and what to do.
        message: String,
    },
    /// The microphone is back and recording goes on.
    MicrophoneBack,
    /// Where the recording is now (after Stop: saved, uploading, safe…).
    Status {
        /// The state, as the engine has it.
        status: RecordingStatus,
    },
}

impl RecordEvent {
    /// What the screen shows for a microphone event, if anything.
    fn from_capture(event: CaptureEvent) -> Option<Self> {
        Some(match event {
            CaptureEvent::Level { peak_dbfs, rms_dbfs } => Self::Level { peak_dbfs, rms_dbfs },
            CaptureEvent::SilenceStarted { message } => Self::SilenceStarted { message },
            CaptureEvent::SilenceEnded => Self::SilenceEnded,
            CaptureEvent::Paused => Self::Paused,
            CaptureEvent::Resumed => Self::Resumed,
            CaptureEvent::DeviceLost { .. } => Self::MicrophoneLost {
                message: "The microphone was lost — recording is paused and will continue when it is back. \
                          Check its cable or plug it in again."
                    .to_owned(),
            },
            CaptureEvent::DeviceBack => Self::MicrophoneBack,
            _ => return None,
        })
    }
}

/// Passes `feed` on to `channel` until the recording is safe on the
/// server, has failed, or the window is gone.
pub async fn forward(feed: RecordingFeed, channel: Channel<RecordEvent>) {
    let RecordingFeed { mut events, mut progress, mut status, .. } = feed;
    let (mut events_open, mut progress_open) = (true, true);
    let mut shown_seconds = None;
    loop {
        let next = tokio::select! {
            event = events.recv(), if events_open => match event {
                Ok(SessionEvent::Capture(event)) => RecordEvent::from_capture(event),
                // After a sleep the lesson goes on in a new file: the
                // progress and status go on, nothing else changes here.
                Ok(SessionEvent::Upload { .. } | SessionEvent::ContinuedAfterSleep { .. })
                | Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => {
                    events_open = false;
                    None
                }
            },
            changed = progress.changed(), if progress_open => match changed {
                Ok(()) => {
                    let seconds = u32::try_from(progress.borrow_and_update().recorded.as_secs()).unwrap_or(u32::MAX);
                    (shown_seconds != Some(seconds)).then(|| {
                        shown_seconds = Some(seconds);
                        RecordEvent::Elapsed { seconds }
                    })
                }
                Err(_) => {
                    progress_open = false;
                    None
                }
            },
            changed = status.changed() => match changed {
                Ok(()) => Some(RecordEvent::Status { status: status.borrow_and_update().clone() }),
                Err(_) => return,
            },
        };
        let Some(next) = next else { continue };
        let done = matches!(&next, RecordEvent::Status { status } if status.is_final());
        if channel.send(next).is_err() || done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_microphone_is_told_in_a_teachers_words() {
        let lost = CaptureEvent::DeviceLost { message: "stream error: device gone".into() };
        let Some(RecordEvent::MicrophoneLost { message }) = RecordEvent::from_capture(lost) else {
            panic!("a lost microphone is shown")
        };
        assert!(message.contains("will continue when it is back"), "{message}");
        assert_eq!(
            serde_json::to_value(RecordEvent::Level { peak_dbfs: -3.0, rms_dbfs: -9.0 }).unwrap(),
            serde_json::json!({"event": "level", "peakDbfs": -3.0, "rmsDbfs": -9.0})
        );
        assert_eq!(
            serde_json::to_value(RecordEvent::Status { status: RecordingStatus::Uploading { percent: 43 } })
                .unwrap(),
            serde_json::json!({"event": "status", "status": {"state": "uploading", "percent": 43}})
        );
    }
}
