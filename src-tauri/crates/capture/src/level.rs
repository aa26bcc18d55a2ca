//! The level meter and the silence watchdog, counted in frames so that they
//! follow the audio, not the wall clock.

/// The quietest level reported; digital silence would be −∞ dBFS.
pub const FLOOR_DBFS: f32 = -100.0;

/// Decibels relative to full scale of an amplitude in 0..=1.
fn dbfs(amplitude: f64) -> f32 {
    if amplitude <= 0.0 { FLOOR_DBFS } else { (20.0 * amplitude.log10()).max(f64::from(FLOOR_DBFS)) as f32 }
}

/// Peak and RMS of one window of audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The loudest sample, in dBFS.
    pub peak_dbfs: f32,
    /// The root mean square, in dBFS.
    pub rms_dbfs: f32,
}

/// Cuts interleaved samples into windows of `window_frames` frames and
/// measures each.
#[derive(Debug)]
pub(crate) struct LevelMeter {
    window_samples: u64,
    seen: u64,
    peak: i32,
    sum_squares: f64,
}

impl LevelMeter {
    pub(crate) fn new(window_frames: u64, channels: u16) -> Self {
        Self {
            window_samples: window_frames.max(1) * u64::from(channels),
            seen: 0,
            peak: 0,
            sum_squares: 0.0,
        }
    }

    /// Feeds samples; calls `on_level` for every window they complete.
    pub(crate) fn feed(&mut self, samples: &[i16], mut on_level: impl FnMut(Level)) {
        for &sample in samples {
            let value = i32::from(sample);
            self.peak = self.peak.max(value.abs());
            self.sum_squares += f64::from(value) * f64::from(value);
            self.seen += 1;
            if self.seen == self.window_samples {
                let full_scale = 32768.0;
                let rms = (self.sum_squares / self.seen as f64).sqrt() / full_scale;
                on_level(Level { peak_dbfs: dbfs(f64::from(self.peak) / full_scale), rms_dbfs: dbfs(rms) });
                (self.seen, self.peak, self.sum_squares) = (0, 0, 0.0);
            }
        }
    }
}

/// Says when the input has stayed below a threshold for a while, and when
/// it comes back.
#[derive(Debug)]
pub(crate) struct SilenceWatchdog {
    threshold_dbfs: f32,
    after_frames: u64,
    quiet_frames: u64,
    silent: bool,
}

/// A change the watchdog reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SilenceChange {
    Started,
    Ended,
}

impl SilenceWatchdog {
    pub(crate) fn new(threshold_dbfs: f32, after_frames: u64) -> Self {
        Self { threshold_dbfs, after_frames, quiet_frames: 0, silent: false }
    }

    /// Takes the level of a window of `frames` frames.
    pub(crate) fn observe(&mut self, level: Level, frames: u64) -> Option<SilenceChange> {
        if level.peak_dbfs < self.threshold_dbfs {
            self.quiet_frames += frames;
            if !self.silent && self.quiet_frames >= self.after_frames {
                self.silent = true;
                return Some(SilenceChange::Started);
            }
        } else {
            self.quiet_frames = 0;
            if self.silent {
                self.silent = false;
                return Some(SilenceChange::Ended);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(meter: &mut LevelMeter, samples: &[i16]) -> Vec<Level> {
        let mut seen = Vec::new();
        meter.feed(samples, |level| seen.push(level));
        seen
    }

    #[test]
    fn a_full_scale_square_wave_is_0_dbfs_and_silence_is_the_floor() {
        let mut meter = LevelMeter::new(4, 1);
        let square = [i16::MIN, i16::MIN, i16::MIN, i16::MIN];
        let got = levels(&mut meter, &square);
        assert_eq!(got.len(), 1);
        assert!(got[0].peak_dbfs.abs() < 0.01 && got[0].rms_dbfs.abs() < 0.01, "{got:?}");
        assert_eq!(levels(&mut meter, &[0; 4]), [Level { peak_dbfs: FLOOR_DBFS, rms_dbfs: FLOOR_DBFS }]);
    }

    #[test]
    fn a_sine_at_half_scale_has_peak_minus_6_and_rms_minus_9() {
        let mut meter = LevelMeter::new(4800, 2);
        let sine: Vec<i16> = (0..9600)
            .map(|n| ((n / 2) as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0).sin() * 16384.0)
            .map(|value| value as i16)
            .collect();
        let got = levels(&mut meter, &sine);
        assert_eq!(got.len(), 1, "one window of 4800 stereo frames");
        assert!((got[0].peak_dbfs + 6.02).abs() < 0.1, "{got:?}");
        assert!((got[0].rms_dbfs + 9.03).abs() < 0.1, "{got:?}");
    }

    #[test]
    fn windows_span_calls() {
        let mut meter = LevelMeter::new(10, 1);
        assert!(levels(&mut meter, &[100; 7]).is_empty());
        assert_eq!(levels(&mut meter, &[100; 7]).len(), 1);
        assert_eq!(levels(&mut meter, &[100; 6]).len(), 1);
    }

    #[test]
    fn silence_is_reported_once_after_the_delay_and_cleared_by_sound() {
        let quiet = Level { peak_dbfs: -70.0, rms_dbfs: -80.0 };
        let loud = Level { peak_dbfs: -20.0, rms_dbfs: -30.0 };
        let mut watchdog = SilenceWatchdog::new(-60.0, 100);
        assert_eq!(watchdog.observe(quiet, 60), None);
        assert_eq!(watchdog.observe(quiet, 60), Some(SilenceChange::Started));
        assert_eq!(watchdog.observe(quiet, 60), None);
        assert_eq!(watchdog.observe(loud, 60), Some(SilenceChange::Ended));
        assert_eq!(watchdog.observe(loud, 60), None);
        // A short pause in speech is not silence.
        assert_eq!(watchdog.observe(quiet, 60), None);
        assert_eq!(watchdog.observe(loud, 60), None);
        assert_eq!(watchdog.observe(quiet, 60), None);
    }
}
