//! `opptak doctor`: checks, for real, what Opptak needs on this computer and
//! says what to do about each problem.
//!
//! Every check does the real thing where it can (writes a file, asks the
//! sound system for its default input, looks for the display's socket and
//! the WebKit library) rather than guessing from configuration.

use serde::Serialize;

use crate::DataDir;

/// Below this much free space a recording cannot start.
pub const MIN_FREE_BYTES_TO_RECORD: u64 = 500 * 1000 * 1000;
/// Below this much free space the doctor warns that space is running out.
pub const LOW_FREE_BYTES: u64 = 2 * 1000 * 1000 * 1000;
/// Bytes one hour of 48 kHz mono 16-bit audio takes, to put free space in
/// words a teacher understands.
const AUDIO_BYTES_PER_HOUR: u64 = 48_000 * 2 * 3600;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Nothing to do.
    Ok,
    /// Opptak works, but something the user cares about will not.
    Warning,
    /// Opptak cannot do its job until this is fixed.
    Error,
}

/// One finding of the doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct DoctorCheck {
    /// Stable identifier (`data-dir`, `disk-space`, `microphone`, `video`, `display`, `webview`).
    pub id: String,
    /// What was checked, in a few words.
    pub title: String,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, when there is something to do.
    pub advice: Option<String>,
    /// What was found as a code with its facts, so the window can say it
    /// in the teacher's language; `detail` and `advice` are its English.
    pub finding: Finding,
}

/// What a check found, with the facts its sentence needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "code", rename_all = "camelCase")]
pub enum Finding {
    /// The data folder can be written.
    DataDirWritable {
        /// The folder.
        path: String,
    },
    /// The data folder cannot be written.
    DataDirNotWritable {
        /// The folder.
        path: String,
        /// Why, in English.
        reason: String,
    },
    /// The free space could not be measured.
    #[serde(rename_all = "camelCase")]
    SpaceUnknown {
        /// The data folder.
        path: String,
    },
    /// The free space on the data folder's disk, and what it means.
    #[serde(rename_all = "camelCase")]
    Space {
        /// Free bytes.
        free_bytes: u64,
        /// Hours of microphone audio that fit.
        hours: u64,
        /// Below this, recording is refused.
        needed_bytes: u64,
    },
    /// The default microphone.
    #[serde(rename_all = "camelCase")]
    Microphone {
        /// Its name.
        name: String,
        /// Its sample rate (Hz).
        sample_rate: u32,
        /// Its channels.
        channels: u16,
        /// How many other inputs there are.
        others: usize,
    },
    /// No microphone answered.
    NoMicrophone {
        /// Why, in English.
        reason: String,
    },
    /// Screens and cameras can be recorded.
    VideoReady,
    /// Screens and cameras cannot be recorded.
    VideoMissing {
        /// The missing GStreamer parts.
        missing: String,
    },
    /// The display answers.
    DisplayReachable {
        /// Its name ("X11 display :0").
        display: String,
    },
    /// No display is named.
    NoDisplay,
    /// The display named cannot be reached.
    DisplayUnreachable {
        /// The variable naming it.
        variable: String,
    },
    /// The web view library is installed.
    WebviewFound {
        /// Where.
        path: String,
    },
    /// The web view library is missing.
    WebviewMissing {
        /// The library's file name.
        library: String,
    },
}

/// All findings; `ok` is true only when every check is [`CheckStatus::Ok`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct DoctorReport {
    /// Whether every check passed.
    pub ok: bool,
    /// The findings, in the order they were checked.
    pub checks: Vec<DoctorCheck>,
}

impl DoctorCheck {
    fn new(
        id: &str,
        title: &str,
        status: CheckStatus,
        finding: Finding,
        detail: String,
        advice: Option<String>,
    ) -> Self {
        Self { id: id.into(), title: title.into(), status, detail, advice, finding }
    }
}

/// Runs every check. Never fails: a check that cannot run is itself a finding.
pub fn run(data_dir: &DataDir) -> DoctorReport {
    let mut checks =
        vec![check_data_dir(data_dir), check_disk_space(data_dir), check_microphone(), check_video()];
    checks.extend(display_checks());
    let ok = checks.iter().all(|check| check.status == CheckStatus::Ok);
    DoctorReport { ok, checks }
}

fn check_data_dir(data_dir: &DataDir) -> DoctorCheck {
    let title = "Data directory";
    match data_dir.ensure_writable() {
        Ok(()) => DoctorCheck::new(
            "data-dir",
            title,
            CheckStatus::Ok,
            Finding::DataDirWritable { path: data_dir.path().display().to_string() },
            format!("{} is writable.", data_dir.path().display()),
            None,
        ),
        Err(err) => DoctorCheck::new(
            "data-dir",
            title,
            CheckStatus::Error,
            Finding::DataDirNotWritable {
                path: data_dir.path().display().to_string(),
                reason: err.to_string(),
            },
            format!("{} cannot be written.", data_dir.path().display()),
            Some(err.to_string()),
        ),
    }
}

fn check_disk_space(data_dir: &DataDir) -> DoctorCheck {
    let title = "Free disk space";
    // The data directory may not exist yet; the disk is the one of its
    // nearest existing ancestor.
    let existing = data_dir.path().ancestors().find(|path| path.exists());
    let Some(available) = existing.and_then(|path| fs4::available_space(path).ok()) else {
        return DoctorCheck::new(
            "disk-space",
            title,
            CheckStatus::Warning,
            Finding::SpaceUnknown { path: data_dir.path().display().to_string() },
            format!("Could not measure the free space for {}.", data_dir.path().display()),
            Some("Make sure the disk holding the data folder is mounted, then run the check again.".into()),
        );
    };
    let detail = format!(
        "{} free, about {} hours of microphone audio.",
        human_bytes(available),
        available / AUDIO_BYTES_PER_HOUR
    );
    let (status, advice) = if available < MIN_FREE_BYTES_TO_RECORD {
        (
            CheckStatus::Error,
            Some(format!(
                "Recording needs at least {} free. Delete recordings that are safe on the server or choose a data folder on a larger disk.",
                human_bytes(MIN_FREE_BYTES_TO_RECORD)
            )),
        )
    } else if available < LOW_FREE_BYTES {
        (
            CheckStatus::Warning,
            Some("Space is running low. Free some space before recording long lessons.".into()),
        )
    } else {
        (CheckStatus::Ok, None)
    };
    let finding = Finding::Space {
        free_bytes: available,
        hours: available / AUDIO_BYTES_PER_HOUR,
        needed_bytes: MIN_FREE_BYTES_TO_RECORD,
    };
    DoctorCheck::new("disk-space", title, status, finding, detail, advice)
}

fn check_microphone() -> DoctorCheck {
    let title = "Microphone";
    match opptak_capture::default_input() {
        Ok(mic) => {
            let others = opptak_capture::input_devices().map(|all| all.len().saturating_sub(1)).unwrap_or(0);
            DoctorCheck::new(
                "microphone",
                title,
                CheckStatus::Ok,
                Finding::Microphone {
                    name: mic.name.clone(),
                    sample_rate: mic.sample_rate,
                    channels: mic.channels,
                    others,
                },
                format!(
                    "Default input \"{}\" ({} Hz, {} channel{}){}.",
                    mic.name,
                    mic.sample_rate,
                    mic.channels,
                    if mic.channels == 1 { "" } else { "s" },
                    match others {
                        0 => String::new(),
                        n => format!(", and {n} other input{}", if n == 1 { "" } else { "s" }),
                    }
                ),
                None,
            )
        }
        Err(err) => {
            tracing::info!(error = %err, "doctor: no microphone");
            let reason = match err {
                opptak_capture::Error::NoMicrophone { reason } => reason,
                other => other.to_string(),
            };
            DoctorCheck::new(
                "microphone",
                title,
                CheckStatus::Warning,
                Finding::NoMicrophone { reason: reason.clone() },
                format!("No microphone found ({reason})."),
                Some(opptak_capture::NO_MICROPHONE_ADVICE.into()),
            )
        }
    }
}

/// Whether screens and cameras can be recorded: GStreamer and every
/// element a video recording uses are there (asked of GStreamer itself).
fn check_video() -> DoctorCheck {
    let title = "Screen and camera recording";
    match opptak_capture::video_unavailable() {
        None => DoctorCheck::new(
            "video",
            title,
            CheckStatus::Ok,
            Finding::VideoReady,
            "GStreamer and its screen, camera and encoder parts are installed.".into(),
            None,
        ),
        Some(missing) => DoctorCheck::new(
            "video",
            title,
            CheckStatus::Warning,
            Finding::VideoMissing { missing: missing.to_string() },
            format!("Screens and cameras cannot be recorded: {missing}. Recording sound alone works."),
            Some(
                "Install GStreamer with its plugins (Debian/Ubuntu: `sudo apt install gstreamer1.0-plugins-base \
                 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav`), \
                 or install Opptak from its .deb/.rpm package, which brings them along."
                    .into(),
            ),
        ),
    }
}

#[cfg(target_os = "linux")]
fn display_checks() -> Vec<DoctorCheck> {
    vec![linux::check_display(), linux::check_webview()]
}

#[cfg(not(target_os = "linux"))]
fn display_checks() -> Vec<DoctorCheck> {
    // macOS and Windows ship their web view with the OS (WebView2 is
    // installed by Opptak's Windows installer), so there is nothing to find.
    Vec::new()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::{Path, PathBuf};

    use super::{CheckStatus, DoctorCheck, Finding};

    const WEBKIT_LIBRARY: &str = "libwebkit2gtk-4.1.so.0";

    pub(super) fn check_display() -> DoctorCheck {
        let title = "Display";
        let x11 = std::env::var("DISPLAY").ok().filter(|value| !value.is_empty());
        let wayland = std::env::var("WAYLAND_DISPLAY").ok().filter(|value| !value.is_empty());
        let found = match (&wayland, &x11) {
            (Some(name), _) => wayland_socket(name)
                .filter(|socket| socket.exists())
                .map(|_| format!("Wayland display {name}")),
            (None, Some(name)) => x11_reachable(name).then(|| format!("X11 display {name}")),
            (None, None) => None,
        };
        match found {
            Some(display) => DoctorCheck::new(
                "display",
                title,
                CheckStatus::Ok,
                Finding::DisplayReachable { display: display.clone() },
                format!("{display} is reachable."),
                None,
            ),
            None => DoctorCheck::new(
                "display",
                title,
                CheckStatus::Error,
                match (&wayland, &x11) {
                    (None, None) => Finding::NoDisplay,
                    (wayland, _) => Finding::DisplayUnreachable {
                        variable: if wayland.is_some() { "WAYLAND_DISPLAY" } else { "DISPLAY" }.into(),
                    },
                },
                match (wayland, x11) {
                    (None, None) => "No display: neither DISPLAY nor WAYLAND_DISPLAY is set.".into(),
                    (wayland, x11) => format!(
                        "The display named by {} cannot be reached.",
                        if wayland.is_some() { "WAYLAND_DISPLAY" } else { "DISPLAY" }
                    ) + &x11.map(|name| format!(" (DISPLAY={name})")).unwrap_or_default(),
                },
                Some("The desktop app needs a graphical session: start Opptak from the desktop, not over SSH. The `opptak` command line works without one.".into()),
            ),
        }
    }

    fn wayland_socket(name: &str) -> Option<PathBuf> {
        let name = Path::new(name);
        if name.is_absolute() {
            return Some(name.to_path_buf());
        }
        std::env::var_os("XDG_RUNTIME_DIR").map(|dir| PathBuf::from(dir).join(name))
    }

    /// A local X display (`:N`) answers on its Unix socket; a remote one
    /// (`host:N`) cannot be checked without connecting, so it is trusted.
    fn x11_reachable(name: &str) -> bool {
        let Some((host, rest)) = name.rsplit_once(':') else {
            return false;
        };
        if !(host.is_empty() || host == "unix") {
            return true;
        }
        let number = rest.split('.').next().unwrap_or_default();
        !number.is_empty() && Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
    }

    pub(super) fn check_webview() -> DoctorCheck {
        let title = "Web view (WebKitGTK)";
        match find_library(WEBKIT_LIBRARY) {
            Some(path) => DoctorCheck::new(
                "webview",
                title,
                CheckStatus::Ok,
                Finding::WebviewFound { path: path.display().to_string() },
                format!("{} found.", path.display()),
                None,
            ),
            None => DoctorCheck::new(
                "webview",
                title,
                CheckStatus::Error,
                Finding::WebviewMissing { library: WEBKIT_LIBRARY.into() },
                format!("{WEBKIT_LIBRARY} is not installed."),
                Some("Install WebKitGTK 4.1 (Debian/Ubuntu: `sudo apt install libwebkit2gtk-4.1-0`), or install Opptak from its .deb/.rpm package, which brings it along.".into()),
            ),
        }
    }

    /// Looks the library up the way the dynamic loader would: first the
    /// loader's cache, then the usual library directories.
    fn find_library(name: &str) -> Option<PathBuf> {
        let from_cache = ["/sbin/ldconfig", "/usr/sbin/ldconfig"].iter().find_map(|ldconfig| {
            let output = std::process::Command::new(ldconfig).arg("-p").output().ok()?;
            String::from_utf8_lossy(&output.stdout).lines().find_map(|line| {
                let (lib, path) = line.trim().split_once(" => ")?;
                lib.starts_with(name).then(|| PathBuf::from(path))
            })
        });
        from_cache.or_else(|| {
            ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.exists())
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn remote_x_displays_are_trusted_and_bad_names_are_not() {
            assert!(x11_reachable("school-server:10.0"));
            assert!(!x11_reachable("no-colon"));
            assert!(!x11_reachable(":"));
            assert!(!x11_reachable(":987654"));
        }
    }
}

/// Bytes in the units people read on their file manager (powers of 1000).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_reads_like_a_file_manager() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(53_000_000_000), "53.0 GB");
    }

    #[test]
    fn a_writable_data_dir_passes_and_a_blocked_one_fails_with_advice() {
        let temp = tempfile::tempdir().unwrap();
        let good = check_data_dir(&DataDir::at(temp.path().join("data")));
        assert_eq!(good.status, CheckStatus::Ok);

        std::fs::write(temp.path().join("file"), b"x").unwrap();
        let bad = check_data_dir(&DataDir::at(temp.path().join("file/data")));
        assert_eq!(bad.status, CheckStatus::Error);
        assert!(bad.advice.unwrap().contains("Choose another data folder"));
    }

    #[test]
    fn disk_space_is_measured_for_a_directory_not_yet_created() {
        let temp = tempfile::tempdir().unwrap();
        let check = check_disk_space(&DataDir::at(temp.path().join("not/yet")));
        assert!(check.detail.contains("free"), "{check:?}");
    }

    #[test]
    fn report_serialises_in_camel_case_with_lowercase_status() {
        let report = DoctorReport {
            ok: false,
            checks: vec![DoctorCheck::new(
                "microphone",
                "Microphone",
                CheckStatus::Warning,
                Finding::Space { free_bytes: 5, hours: 0, needed_bytes: 9 },
                "No microphone found.".into(),
                Some("Plug one in.".into()),
            )],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][0]["status"], "warning");
        assert_eq!(json["checks"][0]["advice"], "Plug one in.");
        assert_eq!(
            json["checks"][0]["finding"],
            serde_json::json!({"code": "space", "freeBytes": 5, "hours": 0, "neededBytes": 9}),
            "a code the window branches on, with camelCase facts"
        );
    }
}
