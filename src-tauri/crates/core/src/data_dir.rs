//! Where Opptak keeps recordings, its journal and its logs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::data_move::FolderChoice;
use crate::{Error, Result};

/// Environment variable that overrides the per-OS default data directory.
pub const DATA_DIR_ENV: &str = "OPPTAK_DATA_DIR";

/// Opptak's data directory: an explicit choice, `OPPTAK_DATA_DIR`, the
/// folder chosen in Settings (see [`FolderChoice`]), or the per-OS default
/// (`~/.local/share/opptak` on Linux, `~/Library/Application
/// Support/no.Opptak.Opptak` on macOS, `%APPDATA%\Opptak\Opptak\data` on Windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    origin: Origin,
}

/// Who chose the data directory; only [`Origin::Chosen`] and
/// [`Origin::Default`] may be moved from Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// A `--data-dir` flag, or a path the program was given.
    Flag,
    /// The [`DATA_DIR_ENV`] environment variable.
    Env,
    /// The teacher, in Settings.
    Chosen,
    /// The operating system's place for application data.
    Default,
}

impl DataDir {
    /// Picks the data directory: `explicit` (a `--data-dir` flag) wins, then
    /// [`DATA_DIR_ENV`], then the folder chosen in Settings, then the OS
    /// default. Nothing is created yet.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self> {
        if let Some(root) = explicit {
            return Ok(Self { root, origin: Origin::Flag });
        }
        if let Some(root) = std::env::var_os(DATA_DIR_ENV).filter(|value| !value.is_empty()) {
            return Ok(Self { root: root.into(), origin: Origin::Env });
        }
        if let Some(root) = FolderChoice::of_this_user()?.chosen() {
            return Ok(Self { root, origin: Origin::Chosen });
        }
        Ok(Self { root: default_root()?, origin: Origin::Default })
    }

    /// `root`, chosen by `origin`.
    #[cfg(test)]
    pub(crate) fn new(root: PathBuf, origin: Origin) -> Self {
        Self { root, origin }
    }

    /// Uses `root` as the data directory, as-is.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), origin: Origin::Flag }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Who chose it.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Where log files rotate.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Creates the directory if needed and proves it is writable by writing,
    /// syncing and removing a probe file, the way recordings will be written.
    pub fn ensure_writable(&self) -> Result<()> {
        let unusable = |source| Error::DataDirUnusable { path: self.root.clone(), source };
        fs::create_dir_all(&self.root).map_err(unusable)?;
        let probe = self.root.join(format!(".write-probe-{}", std::process::id()));
        let written = fs::File::create(&probe).and_then(|mut file| {
            file.write_all(b"opptak")?;
            file.sync_all()
        });
        let removed = fs::remove_file(&probe);
        written.map_err(unusable)?;
        removed.map_err(unusable)
    }
}

/// The operating system's place for Opptak's data.
pub(crate) fn default_root() -> Result<PathBuf> {
    Ok(project_dirs()?.data_dir().to_path_buf())
}

pub(crate) fn project_dirs() -> Result<directories::ProjectDirs> {
    directories::ProjectDirs::from("no", "Opptak", "Opptak").ok_or(Error::NoHomeDirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choice_wins() {
        let chosen = PathBuf::from("/somewhere/chosen");
        assert_eq!(DataDir::resolve(Some(chosen.clone())).unwrap().path(), chosen);
    }

    #[test]
    fn ensure_writable_creates_nested_directories() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(temp.path().join("a/b"));
        dir.ensure_writable().unwrap();
        assert!(dir.path().is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "probe file left behind");
    }

    #[test]
    fn ensure_writable_fails_when_a_file_is_in_the_way() {
        let temp = tempfile::tempdir().unwrap();
        let blocker = temp.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let err = DataDir::at(blocker.join("data")).ensure_writable().unwrap_err();
        assert!(matches!(err, Error::DataDirUnusable { .. }), "{err:?}");
        assert!(err.to_string().contains("Choose another data folder"));
    }
}
