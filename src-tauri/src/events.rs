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
    /// The microphone's level over the last 100 ms (10 a second).
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
    /// What the screen shows for a microphone event other than its level,
    /// if anything.
    fn from_capture(event: CaptureEvent) -> Option<Self> {
        Some(match event {
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

/// The engine measures the level 20 times a second; the meter is drawn 10
/// times a second (the floor the design asks for), so the web view repaints
/// it half as often while recording.
const LEVELS_PER_METER_UPDATE: u32 = 2;

/// Merges the engine's levels into the meter's: the loudest peak, and the
/// RMS of the merged span (the mean of the windows' powers).
#[derive(Debug, Default)]
struct MeterPacer {
    merged: u32,
    peak_dbfs: f32,
    power_sum: f64,
}

impl MeterPacer {
    fn add(&mut self, peak_dbfs: f32, rms_dbfs: f32) -> Option<RecordEvent> {
        self.peak_dbfs = if self.merged == 0 { peak_dbfs } else { self.peak_dbfs.max(peak_dbfs) };
        self.power_sum += 10f64.powf(f64::from(rms_dbfs) / 10.0);
        self.merged += 1;
        if self.merged < LEVELS_PER_METER_UPDATE {
            return None;
        }
        let rms_dbfs = (10.0 * (self.power_sum / f64::from(self.merged)).log10()) as f32;
        let peak_dbfs = self.peak_dbfs;
        *self = Self::default();
        Some(RecordEvent::Level { peak_dbfs, rms_dbfs })
    }
}

/// Passes `feed` on to `channel` until the recording is safe on the
/// server, has failed, or the window is gone.
pub async fn forward(feed: RecordingFeed, channel: Channel<RecordEvent>) {
    let RecordingFeed { mut events, mut progress, mut status, .. } = feed;
    let (mut events_open, mut progress_open) = (true, true);
    let mut shown_seconds = None;
    let mut meter = MeterPacer::default();
    loop {
        let next = tokio::select! {
            event = events.recv(), if events_open => match event {
                Ok(SessionEvent::Capture(CaptureEvent::Level { peak_dbfs, rms_dbfs })) => {
                    meter.add(peak_dbfs, rms_dbfs)
                }
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

    #[test]
    fn the_meter_gets_every_second_level_with_the_loudest_peak_and_the_mean_power() {
        let mut meter = MeterPacer::default();
        assert_eq!(meter.add(-6.0, -20.0), None);
        let Some(RecordEvent::Level { peak_dbfs, rms_dbfs }) = meter.add(-12.0, -80.0) else {
            panic!("every second level reaches the meter")
        };
        assert_eq!(peak_dbfs, -6.0);
        // Half the time at -20 dBFS and half near silence: 3 dB quieter.
        assert!((rms_dbfs - -23.01).abs() < 0.01, "{rms_dbfs}");
        assert_eq!(meter.add(-30.0, -30.0), None, "the next pair starts afresh");
        let Some(RecordEvent::Level { rms_dbfs, .. }) = meter.add(-30.0, -30.0) else {
            panic!("a pair is merged")
        };
        assert!((rms_dbfs - -30.0).abs() < 0.01, "{rms_dbfs}");
    }
}
