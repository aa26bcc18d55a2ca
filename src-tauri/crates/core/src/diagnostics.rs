//! A diagnostics file a teacher can send to IT: the version, the computer
//! check's findings and the last log lines, in one zip, with every token
//! and signature taken out first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::destinations::DestinationKind;
use crate::logging::newest_log_file;
use crate::{Error, Opptak, Result, Target};

/// How many of the newest log lines go into the file.
pub const LOG_LINES: usize = 2000;
/// What a removed secret is replaced with.
pub const REMOVED: &str = "[removed]";

/// What was written, for the app to tell the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsFile {
    /// The zip written.
    pub path: String,
    /// Log lines included.
    pub log_lines: u32,
    /// Secrets taken out of them.
    pub removed_secrets: u32,
}

// Secrets that can reach a log line without Opptak knowing them by value:
// an authorisation header, a presigned URL's signature and credentials, a
// `token` field or parameter.
static SECRET_PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"(?i)(bearer\s+)[^\s,;]+",
        r"(?i)(x-amz-(?:signature|credential|security-token)=)[^&\s]+",
        r#"(?i)("?(?:token|password|secret)"?\s*[:=]\s*"?)[^"\s,&}]+"#,
    ]
    .iter()
    .map(|pattern| Regex::new(pattern).expect("a valid pattern"))
    .collect()
});

/// `text` with every one of `secrets` and every secret-shaped value taken
/// out, and how many were.
pub fn redact(text: &str, secrets: &[String]) -> (String, usize) {
    let mut removed = 0;
    let mut text = text.to_owned();
    // A short "secret" would blank out ordinary words.
    for secret in secrets.iter().filter(|secret| secret.len() >= 8) {
        removed += text.matches(secret.as_str()).count();
        text = text.replace(secret.as_str(), REMOVED);
    }
    for pattern in SECRET_PATTERNS.iter() {
        let mut found = 0;
        let replaced = pattern.replace_all(&text, |captures: &regex::Captures<'_>| {
            if captures[0].ends_with(REMOVED) {
                return captures[0].to_owned();
            }
            found += 1;
            format!("{}{REMOVED}", &captures[1])
        });
        text = replaced.into_owned();
        removed += found;
    }
    (text, removed)
}

impl Opptak {
    /// Writes the diagnostics zip to `path`: `summary.txt` (version,
    /// system, the computer check), `doctor.json` and `log.txt` (the
    /// newest log lines). Tokens of every saved school server are taken
    /// out, as are secret-shaped values. Blocks.
    pub fn write_diagnostics(&self, path: &Path) -> Result<DiagnosticsFile> {
        let failed = |reason: String| Error::Diagnostics { path: path.to_path_buf(), reason };
        let report = crate::doctor::run(self.data_dir());
        let secrets = self.saved_tokens();
        let (log, log_lines) = newest_log_lines(&self.data_dir().logs(), LOG_LINES);
        let (log, removed_from_log) = redact(&log, &secrets);

        let mut summary = format!(
            "Opptak {}\nSystem: {} {}\nData folder: {}\n\nComputer check:\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            self.data_dir().path().display(),
        );
        for check in &report.checks {
            summary.push_str(&format!("- [{:?}] {}: {}\n", check.status, check.title, check.detail));
            if let Some(advice) = &check.advice {
                summary.push_str(&format!("  What to do: {advice}\n"));
            }
        }
        let doctor = serde_json::to_string_pretty(&report).map_err(|err| failed(err.to_string()))?;
        let (summary, removed_from_summary) = redact(&summary, &secrets);
        let (doctor, removed_from_doctor) = redact(&doctor, &secrets);

        let files = [("summary.txt", summary), ("doctor.json", doctor), ("log.txt", log)];
        write_zip(path, &files).map_err(|err| failed(err.to_string()))?;
        Ok(DiagnosticsFile {
            path: path.display().to_string(),
            log_lines: log_lines as u32,
            removed_secrets: (removed_from_log + removed_from_summary + removed_from_doctor) as u32,
        })
    }

    /// The tokens of every school server whose token can be read.
    fn saved_tokens(&self) -> Vec<String> {
        let Ok(destinations) = self.destinations() else { return Vec::new() };
        destinations
            .iter()
            .filter(|destination| destination.kind == DestinationKind::SchoolServer)
            .filter_map(|destination| match self.destination_target(&destination.id) {
                Ok(found) => match found.target {
                    Target::Remote { token, .. } => Some(token),
                    Target::Embedded => None,
                },
                Err(_) => None,
            })
            .collect()
    }
}

/// The last `wanted` lines of the newest log files in `dir`, oldest first.
fn newest_log_lines(dir: &Path, wanted: usize) -> (String, usize) {
    let Some(newest) = newest_log_file(dir) else { return (String::new(), 0) };
    let text = std::fs::read(&newest).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let text = text.unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let kept = &lines[lines.len().saturating_sub(wanted)..];
    (kept.join("\n") + "\n", kept.len())
}

fn write_zip(path: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    // Written beside and renamed, so a failure leaves no half-made zip.
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let result = (|| {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&partial)?);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        for (name, text) in files {
            zip.start_file(*name, options).map_err(std::io::Error::other)?;
            zip.write_all(text.as_bytes())?;
        }
        zip.finish().map_err(std::io::Error::other)?.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;
    use crate::destinations::{TOKENS_FILE, TokenStore};

    fn file_only_opptak(dir: &Path) -> (DataDir, Opptak) {
        let data_dir = DataDir::at(dir.join("data"));
        let tokens = TokenStore::new(data_dir.path().join(TOKENS_FILE), true);
        let opptak = Opptak::open_with_tokens(&data_dir, tokens).unwrap();
        (data_dir, opptak)
    }

    #[test]
    fn secrets_known_and_secret_shaped_are_removed_and_counted() {
        let token = "s3cr3t-teacher-token".to_owned();
        let text = format!(
            "connect token={token}\nAuthorization: Bearer abc.def\nPUT https://s3/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=deadbeef&partNumber=2\n{{\"token\":\"xyz\"}}\nplain line"
        );
        let (clean, removed) = redact(&text, std::slice::from_ref(&token));
        for secret in [token.as_str(), "abc.def", "AK%2F1", "deadbeef", "xyz"] {
            assert!(!clean.contains(secret), "{secret} left in:\n{clean}");
        }
        assert!(clean.contains("partNumber=2") && clean.contains("plain line"), "{clean}");
        assert_eq!(removed, 5, "{clean}");
    }

    #[test]
    fn a_short_saved_token_does_not_blank_out_words() {
        let (clean, removed) = redact("the upload went on", &["on".to_owned()]);
        assert_eq!((clean.as_str(), removed), ("the upload went on", 0));
    }

    #[test]
    fn the_zip_holds_the_summary_the_check_and_the_newest_log_lines_without_the_token() {
        let temp = tempfile::tempdir().unwrap();
        let (data_dir, opptak) = file_only_opptak(temp.path());
        let token = "school-token-0123456789";
        opptak.add_destination("Skolen", "https://opptak.skolen.no", token).unwrap();
        let logs = data_dir.logs();
        std::fs::create_dir_all(&logs).unwrap();
        let old: String = (0..LOG_LINES + 10).map(|line| format!("line {line}\n")).collect();
        std::fs::write(logs.join("opptak.2026-12-05.log"), format!("{old}sent with {token}\n")).unwrap();

        let out = temp.path().join("diagnostics.zip");
        let written = opptak.write_diagnostics(&out).unwrap();
        assert_eq!((written.log_lines as usize, written.removed_secrets), (LOG_LINES, 1));

        let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
        let mut read = |name: &str| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
            text
        };
        let summary = read("summary.txt");
        assert!(
            summary.contains(env!("CARGO_PKG_VERSION")) && summary.contains("Computer check"),
            "{summary}"
        );
        let doctor: serde_json::Value = serde_json::from_str(&read("doctor.json")).unwrap();
        assert!(doctor["checks"].as_array().is_some_and(|checks| !checks.is_empty()), "{doctor}");
        let log = read("log.txt");
        assert!(!log.contains(token) && log.contains(&format!("sent with {REMOVED}")), "{log}");
        assert!(!log.contains("line 10\n") && log.contains(&format!("line {}\n", LOG_LINES + 9)));
    }

    #[test]
    fn an_unwritable_place_is_a_clear_error_and_leaves_nothing_behind() {
        let temp = tempfile::tempdir().unwrap();
        let (_data_dir, opptak) = file_only_opptak(temp.path());
        let out = temp.path().join("missing-folder/diagnostics.zip");
        let err = opptak.write_diagnostics(&out).unwrap_err();
        assert!(
            matches!(err, Error::Diagnostics { .. }) && err.to_string().contains("Choose another"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
    }
}
