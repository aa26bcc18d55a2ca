//! Choosing another data folder, and moving the recordings there.
//!
//! The choice lives outside the data folder, in the operating system's
//! preferences folder (`~/.config/opptak/data-folder.json` on Linux), where the
//! app and the `opptak` command both find it. A move is asked for while the
//! app runs ([`FolderChoice::ask_to_move`], which checks every reason to
//! refuse) and carried out by [`FolderChoice::finish_pending_move`] at the
//! app's next start, before the journal, the logs or the server open a
//! file in the folder:
//! - on one disk the folder is renamed, in one step;
//! - across disks it is copied (each file fsynced) under a marker file, the
//!   journal's paths are pointed at the copy, and only then does the choice
//!   switch to the new folder and the old one get removed.
//!
//! A crash before the switch leaves the old folder in use, untouched, and
//! the move still asked for; a crash after it leaves only an old folder to
//! remove, which the next start does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::data_dir::{DataDir, Origin, project_dirs};
use crate::destinations::{sync_dir, write_atomically};
use crate::{Error, Result};

/// The file in the OS config folder that keeps the choice.
pub const FOLDER_CHOICE_FILE: &str = "data-folder.json";
/// Inside the new folder while a copy is in progress: what is there is ours.
const COPYING_MARKER: &str = ".opptak-copying";
/// Room left free on the new disk beyond what the recordings take.
const SPARE_BYTES: u64 = 64 * 1024 * 1024;
/// The folders that hold a running Opptak's lock files.
const LOCK_FOLDERS: [&str; 2] = [opptak_journal::LOCKS_DIR, "server"];

/// The data folder the teacher chose in Settings, and a move waiting for
/// the app's next start.
#[derive(Debug, Clone)]
pub struct FolderChoice {
    file: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moving: Option<PendingMove>,
    /// An old folder whose copy is in use, still to be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left_behind: Option<PathBuf>,
}

/// A move asked for and not carried out yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingMove {
    /// The data folder in use.
    pub from: PathBuf,
    /// Where it goes.
    pub to: PathBuf,
}

/// How a move ended, for the app to tell the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum MoveOutcome {
    /// The data folder is now `to`.
    Moved {
        /// The old folder.
        from: PathBuf,
        /// The data folder now.
        to: PathBuf,
    },
    /// Nothing was moved: Opptak goes on with `from`.
    Failed {
        /// The data folder, still.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why, in a teacher's words.
        reason: String,
    },
}

impl FolderChoice {
    /// The choice of the user this process runs as. It lives in the
    /// preferences folder, which on macOS (unlike the config folder) is not
    /// the default data folder: the choice must not move with the data.
    pub fn of_this_user() -> Result<Self> {
        Ok(Self::at(project_dirs()?.preference_dir().join(FOLDER_CHOICE_FILE)))
    }

    /// The choice kept in `file`.
    pub fn at(file: impl Into<PathBuf>) -> Self {
        Self { file: file.into() }
    }

    /// The folder chosen in Settings, if one was.
    pub fn chosen(&self) -> Option<PathBuf> {
        self.load().data_dir
    }

    /// The move asked for, if one waits for the next start.
    pub fn pending_move(&self) -> Option<PendingMove> {
        self.load().moving
    }

    /// Checks that the data folder `current` can move to `to` and asks for
    /// the move at the app's next start. Refused, with the reason, when
    /// `current` was set by a flag or [`crate::DATA_DIR_ENV`], or `to` is not
    /// a full path, is inside `current`, holds files, cannot be written or
    /// lacks room. Creates `to` when it does not exist; moves nothing.
    pub fn ask_to_move(&self, current: &DataDir, to: &Path) -> Result<PendingMove> {
        let by = match current.origin() {
            Origin::Chosen | Origin::Default => None,
            Origin::Env => Some(format!("the {} environment variable", crate::DATA_DIR_ENV)),
            Origin::Flag => Some("how Opptak was started (a data folder given to it)".to_owned()),
        };
        if let Some(by) = by {
            return Err(Error::DataDirFixed { path: current.path().to_path_buf(), by });
        }
        let refuse = |reason: String| Error::MoveRefused { to: to.to_path_buf(), reason };
        if !to.is_absolute() {
            return Err(refuse("it is not a full path (choose the folder with Browse…)".into()));
        }
        let (from, resolved_to) = (resolved(current.path()), resolved(to));
        if resolved_to == from {
            return Err(refuse("it is the data folder already".into()));
        }
        if resolved_to.starts_with(&from) {
            return Err(refuse("it is inside the data folder. Choose a folder outside it".into()));
        }
        if holds_files(to) {
            return Err(refuse(
                "it already holds files. Choose an empty folder, or type the name of a new one".into(),
            ));
        }
        if to.exists() && !to.is_dir() {
            return Err(refuse("it is a file, not a folder".into()));
        }
        DataDir::at(to).ensure_writable().map_err(|err| match err {
            Error::DataDirUnusable { source, .. } => refuse(format!("Opptak cannot write there ({source})")),
            other => other,
        })?;
        if !same_disk(current.path(), to) {
            let needed = folder_size(current.path()) + SPARE_BYTES;
            let free = fs4::available_space(to)
                .map_err(|err| refuse(format!("its free space cannot be read ({err})")))?;
            if free < needed {
                return Err(refuse(format!(
                    "its disk has {} free and the recordings need {}. Free some space there or choose another disk",
                    gigabytes(free),
                    gigabytes(needed)
                )));
            }
        }
        let pending = PendingMove { from: current.path().to_path_buf(), to: to.to_path_buf() };
        let mut saved = self.load();
        saved.moving = Some(pending.clone());
        self.save(&saved)?;
        tracing::info!(from = %pending.from.display(), to = %pending.to.display(), "data folder move asked for");
        Ok(pending)
    }

    /// Carries out the move asked for, if any, once no other Opptak holds a
    /// lock in the data folder (waiting up to `wait` for one that is
    /// closing). Call it before anything opens a file in the data folder.
    /// Also removes an old folder a crash left behind after its move.
    pub fn finish_pending_move(&self, wait: Duration) -> Option<MoveOutcome> {
        let mut saved = self.load();
        if let Some(old) = saved.left_behind.take() {
            remove_old_folder(&old);
            self.save_or_log(&saved);
        }
        let PendingMove { from, to } = saved.moving.clone()?;
        let outcome = match carry_out(&from, &to, wait) {
            Ok(copied) => {
                saved = Saved {
                    data_dir: Some(to.clone()),
                    moving: None,
                    left_behind: copied.then(|| from.clone()),
                };
                if let Err(err) = self.save(&saved) {
                    // The old folder stays the data folder: nothing may be removed.
                    tracing::error!(error = %err, "the moved data folder cannot be chosen");
                    return Some(MoveOutcome::Failed { from, to, reason: err.to_string() });
                }
                if copied {
                    remove_old_folder(&from);
                    saved.left_behind = None;
                    self.save_or_log(&saved);
                }
                tracing::info!(from = %from.display(), to = %to.display(), "data folder moved");
                MoveOutcome::Moved { from, to }
            }
            Err(reason) => {
                tracing::error!(from = %from.display(), to = %to.display(), reason, "data folder not moved");
                saved.moving = None;
                self.save_or_log(&saved);
                MoveOutcome::Failed { from, to, reason }
            }
        };
        Some(outcome)
    }

    fn load(&self) -> Saved {
        match fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(file = %self.file.display(), error = %err, "the data folder choice is unreadable; using the default folder");
                Saved::default()
            }),
            Err(_) => Saved::default(),
        }
    }

    fn save(&self, saved: &Saved) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(saved).expect("the choice serialises");
        write_atomically(&self.file, &bytes, true)
            .map_err(|err| Error::Settings { path: self.file.clone(), reason: err.to_string() })
    }

    fn save_or_log(&self, saved: &Saved) {
        if let Err(err) = self.save(saved) {
            tracing::warn!(error = %err, "the data folder choice could not be updated");
        }
    }
}

/// Moves `from` to `to`; `Ok(true)` when it was copied (the old folder is
/// still to be removed), `Err` with a reason for the teacher when nothing
/// moved (a partial copy is cleaned away).
fn carry_out(from: &Path, to: &Path, wait: Duration) -> Result<bool, String> {
    let journal_at = |dir: &Path| dir.join(opptak_journal::JOURNAL_FILE).exists();
    if !from.exists() {
        // A crash came after a rename and before the choice was saved.
        return if journal_at(to) {
            Ok(false)
        } else {
            Err(format!("the data folder {} is gone", from.display()))
        };
    }
    if !wait_until_unused(from, wait) {
        return Err("another Opptak window or command was still using the data folder. Close it, then move the folder again".into());
    }
    let ours = to.join(COPYING_MARKER).exists();
    if !ours && holds_files(to) {
        return Err(format!("{} holds files now. Choose an empty folder", to.display()));
    }
    if !ours && renamed(from, to) {
        point_journal(from, to).inspect_err(|_| {
            // Put the folder back so the journal and its files agree.
            let _ = fs::rename(to, from);
        })?;
        return Ok(false);
    }
    let copied = copy_under_marker(from, to).and_then(|()| point_journal(from, to));
    match copied {
        Ok(()) => {
            let _ = fs::remove_file(to.join(COPYING_MARKER));
            Ok(true)
        }
        Err(reason) => {
            remove_copy(from, to);
            Err(reason)
        }
    }
}

/// Whether `dir` is a folder with anything in it.
fn holds_files(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Renames `from` over the empty (or missing) `to`: false when they are on
/// different disks or the system refuses, and then nothing changed.
fn renamed(from: &Path, to: &Path) -> bool {
    let _ = fs::remove_dir(to);
    match fs::rename(from, to) {
        Ok(()) => {
            if let Some(parent) = to.parent() {
                let _ = sync_dir(parent);
            }
            true
        }
        Err(err) => {
            tracing::info!(error = %err, "the data folder cannot be renamed; copying it");
            let _ = fs::create_dir_all(to);
            false
        }
    }
}

fn copy_under_marker(from: &Path, to: &Path) -> Result<(), String> {
    let failed = |err: io::Error| format!("copying to {} failed ({err})", to.display());
    if to.join(COPYING_MARKER).exists() {
        // An earlier copy was cut short: start it again.
        remove_copy(from, to);
    }
    fs::create_dir_all(to).map_err(failed)?;
    fs::File::create(to.join(COPYING_MARKER)).map_err(failed)?;
    copy_tree(from, to).map_err(failed)
}

/// Removes from `to` what a copy of `from` put there (by name, so nothing
/// else in `to` is touched), and the marker.
fn remove_copy(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).into_iter().flatten().flatten() {
        let target = to.join(entry.file_name());
        let _ = if target.is_dir() { fs::remove_dir_all(&target) } else { fs::remove_file(&target) };
    }
    let _ = fs::remove_file(to.join(COPYING_MARKER));
}

/// Copies the files and folders under `from` into `to`, each file fsynced.
/// Anything else (links, sockets) is not Opptak's and is left out.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
            fs::OpenOptions::new().write(true).open(&target)?.sync_all()?;
        }
    }
    sync_dir(to)
}

/// Points the copied journal's recordings at their new place.
fn point_journal(from: &Path, to: &Path) -> Result<(), String> {
    if !to.join(opptak_journal::JOURNAL_FILE).exists() {
        return Ok(());
    }
    let journal = opptak_journal::Journal::open_in(to).map_err(|err| err.to_string())?;
    journal.move_recordings(from, to).map(drop).map_err(|err| err.to_string())
}

/// Whether every lock file in the folder is free by the deadline: a closing
/// app still holds its locks for a moment.
fn wait_until_unused(dir: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while in_use(dir) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn in_use(dir: &Path) -> bool {
    LOCK_FOLDERS.iter().flat_map(|folder| fs::read_dir(dir.join(folder)).into_iter().flatten().flatten()).any(
        |entry| {
            let is_lock = entry.path().extension().is_some_and(|extension| extension == "lock");
            is_lock
                && fs::File::open(entry.path())
                    .is_ok_and(|file| matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)))
        },
    )
}

/// Marks a data folder in use while it lives, so a move waits for this
/// process to end (the app holds one for its whole run).
#[derive(Debug)]
pub struct InUse {
    _lock: fs::File,
}

impl InUse {
    /// Takes a shared hold on `data_dir`; `None` when its lock file cannot
    /// be made (the folder is unusable, which the app reports elsewhere).
    pub fn hold(data_dir: &DataDir) -> Option<Self> {
        let locks = data_dir.path().join(opptak_journal::LOCKS_DIR);
        fs::create_dir_all(&locks).ok()?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join("app.lock"))
            .ok()?;
        file.try_lock_shared().ok()?;
        Some(Self { _lock: file })
    }
}

fn remove_old_folder(old: &Path) {
    match fs::remove_dir_all(old) {
        Ok(()) => tracing::info!(folder = %old.display(), "the old data folder was removed"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(folder = %old.display(), error = %err, "the old data folder could not be removed");
        }
    }
}

/// `path` with its existing part resolved (links, `..`), so two spellings
/// of one folder compare equal.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    while fs::canonicalize(existing).is_err() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return path.to_path_buf();
        };
        rest.push(name);
        existing = parent;
    }
    let mut resolved = fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    resolved.extend(rest.into_iter().rev());
    resolved
}

#[cfg(unix)]
fn same_disk(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((fs::metadata(a), fs::metadata(b)), (Ok(a), Ok(b)) if a.dev() == b.dev())
}

#[cfg(not(unix))]
fn same_disk(_a: &Path, _b: &Path) -> bool {
    false
}

fn folder_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|meta| meta.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opptak_journal::{Journal, NewRecording};

    /// A data folder chosen in Settings with a journal and one recording in
    /// it, and the choice file, in a temp dir.
    struct Setup {
        temp: tempfile::TempDir,
        choice: FolderChoice,
        current: DataDir,
    }

    impl Setup {
        fn new() -> Self {
            let temp = tempfile::tempdir().unwrap();
            let current = DataDir::new(temp.path().join("old"), Origin::Default);
            let recording = current.path().join("recordings/lesson.wav");
            fs::create_dir_all(recording.parent().unwrap()).unwrap();
            fs::write(&recording, b"RIFF lesson").unwrap();
            let journal = Journal::open_in(current.path()).unwrap();
            journal
                .add_recording(NewRecording::growing(&recording, "Lesson", "audio/wav", "audio", false))
                .unwrap();
            let choice = FolderChoice::at(temp.path().join("config").join(FOLDER_CHOICE_FILE));
            Self { temp, choice, current }
        }

        fn to(&self) -> PathBuf {
            self.temp.path().join("new")
        }

        fn recording_path_in_journal(&self, dir: &Path) -> PathBuf {
            Journal::open_in(dir).unwrap().recordings().unwrap()[0].path.clone()
        }
    }

    fn refusal(err: Error) -> String {
        match err {
            Error::MoveRefused { reason, .. } => reason,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn a_move_on_one_disk_renames_the_folder_and_points_the_journal_there() {
        let setup = Setup::new();
        let to = setup.to();
        setup.choice.ask_to_move(&setup.current, &to).unwrap();
        assert!(setup.current.path().join("recordings/lesson.wav").exists(), "asking moves nothing");
        assert_eq!(setup.choice.chosen(), None, "the old folder stays in use until the next start");

        let outcome = setup.choice.finish_pending_move(Duration::ZERO).unwrap();
        assert_eq!(outcome, MoveOutcome::Moved { from: setup.current.path().to_path_buf(), to: to.clone() });
        assert_eq!(setup.choice.chosen(), Some(to.clone()));
        assert_eq!(setup.choice.pending_move(), None);
        assert!(!setup.current.path().exists());
        assert_eq!(fs::read(to.join("recordings/lesson.wav")).unwrap(), b"RIFF lesson");
        assert_eq!(setup.recording_path_in_journal(&to), to.join("recordings/lesson.wav"));
        assert_eq!(setup.choice.finish_pending_move(Duration::ZERO), None, "nothing is left to do");
    }

    #[test]
    fn what_cannot_work_is_refused_with_a_reason_and_nothing_moves() {
        let setup = Setup::new();
        let fixed = DataDir::new(setup.current.path().to_path_buf(), Origin::Env);
        let err = setup.choice.ask_to_move(&fixed, &setup.to()).unwrap_err();
        assert!(err.to_string().contains(crate::DATA_DIR_ENV), "{err}");
        let busy = setup.temp.path().join("busy");
        fs::create_dir_all(&busy).unwrap();
        fs::write(busy.join("notes.txt"), b"mine").unwrap();
        let file = busy.join("notes.txt");
        for (to, says) in [
            (PathBuf::from("relative/folder"), "not a full path"),
            (setup.current.path().to_path_buf(), "the data folder already"),
            (setup.current.path().join("recordings/inner"), "inside the data folder"),
            (busy.clone(), "already holds files"),
            (file, "a file, not a folder"),
        ] {
            let reason = refusal(setup.choice.ask_to_move(&setup.current, &to).unwrap_err());
            assert!(reason.contains(says), "{}: {reason}", to.display());
        }
        assert_eq!(fs::read(busy.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(setup.choice.pending_move(), None);
        assert_eq!(setup.choice.finish_pending_move(Duration::ZERO), None);
    }

    #[test]
    fn a_folder_another_opptak_uses_is_not_moved_and_stays_in_use() {
        let setup = Setup::new();
        let to = setup.to();
        setup.choice.ask_to_move(&setup.current, &to).unwrap();
        let _other_app = InUse::hold(&setup.current).unwrap();
        let Some(MoveOutcome::Failed { reason, .. }) =
            setup.choice.finish_pending_move(Duration::from_millis(300))
        else {
            panic!("the move went ahead while the folder was in use");
        };
        assert!(reason.contains("another Opptak window or command"), "{reason}");
        assert_eq!(setup.choice.chosen(), None);
        assert_eq!(setup.choice.pending_move(), None, "a failed move is not tried again by itself");
        assert!(setup.current.path().join("recordings/lesson.wav").exists());
    }

    #[test]
    fn an_old_folder_left_after_a_crash_is_removed_at_the_next_start() {
        let setup = Setup::new();
        let saved = Saved {
            data_dir: Some(setup.to()),
            moving: None,
            left_behind: Some(setup.current.path().into()),
        };
        setup.choice.save(&saved).unwrap();
        assert_eq!(setup.choice.finish_pending_move(Duration::ZERO), None);
        assert!(!setup.current.path().exists());
        assert_eq!(setup.choice.chosen(), Some(setup.to()));
    }

    const KILLED_CHILD: &str = "OPPTAK_TEST_MOVE_CHOICE";

    /// The copy (across disks; here forced by the marker of a copy cut
    /// short) is SIGKILLed half-way in a child process: the old folder is
    /// still the data folder and whole, and the next start copies again.
    #[test]
    fn a_copy_killed_half_way_keeps_the_old_folder_and_is_done_again_at_the_next_start() {
        if let Some(choice) = std::env::var_os(KILLED_CHILD) {
            FolderChoice::at(choice).finish_pending_move(Duration::ZERO);
            return;
        }
        let setup = Setup::new();
        const FILES: usize = 300;
        let content = |n: usize| vec![n as u8; 256 * 1024];
        let many = setup.current.path().join("recordings/many");
        fs::create_dir_all(&many).unwrap();
        for n in 0..FILES {
            fs::write(many.join(format!("{n:03}.wav")), content(n)).unwrap();
        }
        let to = setup.to();
        setup.choice.ask_to_move(&setup.current, &to).unwrap();
        fs::File::create(to.join(COPYING_MARKER)).unwrap();

        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "data_move::tests::a_copy_killed_half_way_keeps_the_old_folder_and_is_done_again_at_the_next_start"])
            .env(KILLED_CHILD, &setup.choice.file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let copied = || fs::read_dir(to.join("recordings/many")).map(|entries| entries.count()).unwrap_or(0);
        while copied() < 20 {
            assert!(child.try_wait().unwrap().is_none(), "the copy ended before it could be killed");
            assert!(Instant::now() < deadline, "the copy did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let killed_at = copied();
        assert!(killed_at < FILES, "killed after the copy ended");

        assert_eq!(setup.choice.chosen(), None, "the old folder is still the data folder");
        assert!(setup.choice.pending_move().is_some(), "the move is still asked for");
        for n in 0..FILES {
            assert_eq!(fs::read(many.join(format!("{n:03}.wav"))).unwrap(), content(n), "old file {n}");
        }
        let Some(MoveOutcome::Moved { .. }) = setup.choice.finish_pending_move(Duration::ZERO) else {
            panic!("the move was not done again");
        };
        for n in 0..FILES {
            assert_eq!(
                fs::read(to.join(format!("recordings/many/{n:03}.wav"))).unwrap(),
                content(n),
                "copy {n}"
            );
        }
        assert!(!to.join(COPYING_MARKER).exists());
        assert!(!setup.current.path().exists(), "the old folder is removed once the copy is in use");
        assert_eq!(setup.recording_path_in_journal(&to), to.join("recordings/lesson.wav"));
        println!("killed with {killed_at} of {FILES} files copied");
    }
}
