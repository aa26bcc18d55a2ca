//! Logging to stderr and to a daily-rotating file in the data directory.
//!
//! The file keeps `info` and above from Opptak's crates so a support person
//! can read what happened; stderr only shows warnings unless `RUST_LOG` says
//! otherwise, so command output stays readable.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{DataDir, Error, Result};

/// How many daily log files are kept before the oldest is deleted.
pub const KEPT_LOG_FILES: usize = 14;
const LOG_PREFIX: &str = "opptak";
const LOG_SUFFIX: &str = "log";
/// Lines that may wait for the log writer before new ones are dropped. The
/// writer drains far faster than Opptak logs; tracing-appender's default of
/// 128,000 allocates (and touches) 4 MB up front, a tenth of the app's
/// memory budget.
const BUFFERED_LINES: usize = 4_096;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the background log writer alive; drop it last, at exit, so the
/// final lines reach the file.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _worker: WorkerGuard,
    file: PathBuf,
}

impl LogGuard {
    /// The log file written now.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Installs the global subscriber. Call once, early, from a binary.
pub fn init(data_dir: &DataDir, format: LogFormat) -> Result<LogGuard> {
    let dir = data_dir.logs();
    let failed = |reason: String| Error::Logging { path: dir.clone(), reason };
    std::fs::create_dir_all(&dir).map_err(|err| failed(err.to_string()))?;
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_PREFIX)
        .filename_suffix(LOG_SUFFIX)
        .max_log_files(KEPT_LOG_FILES)
        .build(&dir)
        .map_err(|err| failed(err.to_string()))?;
    let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(appender);

    // The PulseAudio client logs an error whenever a stream closes, even on
    // a normal stop; capture reports the failures that matter itself.
    let file_filter = EnvFilter::new(
        "warn,pulseaudio=off,opptak=info,opptak_desktop=info,opptak_cli=info,opptak_core=info,opptak_capture=info,opptak_server=info,opptak_upload=info,opptak_journal=info",
    );
    let stderr_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,pulseaudio=off"));
    let (file_layer, stderr_layer) = match format {
        LogFormat::Text => (
            tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer).boxed(),
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        ),
        LogFormat::Json => (
            tracing_subscriber::fmt::layer().json().with_writer(writer).boxed(),
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(file_layer.with_filter(file_filter))
        .with(stderr_layer.with_filter(stderr_filter))
        .try_init()
        .map_err(|err| failed(err.to_string()))?;

    let file = newest_log_file(&dir).unwrap_or_else(|| dir.join(format!("{LOG_PREFIX}.{LOG_SUFFIX}")));
    Ok(LogGuard { _worker: worker, file })
}

/// The most recently written log file in `dir`, if any.
pub fn newest_log_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(LOG_PREFIX) && name.ends_with(LOG_SUFFIX)
        })
        .max_by_key(|entry| entry.metadata().and_then(|meta| meta.modified()).ok())
        .map(|entry| entry.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_log_file_ignores_other_files() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(newest_log_file(temp.path()), None);
        std::fs::write(temp.path().join("notes.txt"), "x").unwrap();
        std::fs::write(temp.path().join("opptak.2026-01-01.log"), "x").unwrap();
        assert_eq!(newest_log_file(temp.path()), Some(temp.path().join("opptak.2026-01-01.log")));
    }
}
