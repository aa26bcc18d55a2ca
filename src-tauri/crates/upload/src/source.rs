//! What the engine uploads: a file that may still be growing.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

/// How much of the file is safe to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceState {
    /// Bytes from the start of the file that are fsynced and will not change
    /// (except part 1 when [`Source::holds_first_part`]).
    pub durable_len: u64,
    /// The file is complete: `durable_len` is its final length.
    pub finished: bool,
}

/// A local file and a watch of its durable length.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    state: watch::Receiver<SourceState>,
    hold_first_part: bool,
}

impl Source {
    /// A file that is complete now.
    pub fn complete(path: &Path, len: u64) -> Self {
        let (_, state) = watch::channel(SourceState { durable_len: len, finished: true });
        Self { path: path.to_path_buf(), state, hold_first_part: false }
    }

    /// A file still being written; `state` says how much is durable.
    /// With `hold_first_part`, part 1 is sent only once the file is finished
    /// (a WAV's header is patched at stop).
    pub fn growing(path: &Path, state: watch::Receiver<SourceState>, hold_first_part: bool) -> Self {
        Self { path: path.to_path_buf(), state, hold_first_part }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is durable now.
    pub fn current(&self) -> SourceState {
        *self.state.borrow()
    }

    /// Whether part 1 waits for the end.
    pub fn holds_first_part(&self) -> bool {
        self.hold_first_part
    }

    /// Waits until the durable length or the finished flag changes; `false`
    /// when the writer is gone (nothing will change any more).
    pub async fn changed(&mut self) -> bool {
        self.state.changed().await.is_ok()
    }
}

/// Part numbers (1-based) whose bytes are all durable and may be sent now,
/// in order, given the part size.
pub fn sendable_parts(
    state: SourceState,
    part_size: u64,
    hold_first_part: bool,
) -> impl Iterator<Item = u32> {
    let full = state.durable_len / part_size;
    let count = if state.finished { state.durable_len.div_ceil(part_size) } else { full };
    let first = if hold_first_part && !state.finished { 2 } else { 1 };
    (first..=count).map(|n| n as u32)
}

/// The byte range of part `number` in a file of final length `len`
/// (or of a full part while the length is unknown).
pub fn part_range(number: u32, part_size: u64, len: Option<u64>) -> (u64, u64) {
    let offset = u64::from(number - 1) * part_size;
    let size = match len {
        Some(len) => part_size.min(len.saturating_sub(offset)),
        None => part_size,
    };
    (offset, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_durable_parts_are_sendable_until_finished() {
        let growing = SourceState { durable_len: 25, finished: false };
        assert_eq!(sendable_parts(growing, 10, false).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(sendable_parts(growing, 10, true).collect::<Vec<_>>(), [2]);
        let done = SourceState { durable_len: 25, finished: true };
        assert_eq!(sendable_parts(done, 10, true).collect::<Vec<_>>(), [1, 2, 3]);
        let exact = SourceState { durable_len: 20, finished: true };
        assert_eq!(sendable_parts(exact, 10, false).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn the_last_part_is_short() {
        assert_eq!(part_range(3, 10, Some(25)), (20, 5));
        assert_eq!(part_range(2, 10, Some(25)), (10, 10));
        assert_eq!(part_range(4, 10, None), (30, 10));
    }
}
