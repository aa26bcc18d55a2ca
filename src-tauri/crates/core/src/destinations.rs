//! Where recordings go, as the teacher chooses it: "This computer" (the
//! server inside the app, always there) and any number of school servers
//! (a name, a URL and a token), one of them the default.
//!
//! # Invariants
//!
//! - The choice lives in `settings.json` in the data folder, written
//!   atomically (temp file, fsync, rename), so the app and the `opptak`
//!   commands see the same destinations and nothing is half-written after
//!   a crash.
//! - A token is never written to the settings file, the journal or a log.
//!   Both hold its *reference*, `sha256:<hex>` of the token (so a
//!   destination's identity stays URL + token); the token itself is kept
//!   by the [`TokenStore`]: the operating system's credential store
//!   (Secret Service, Keychain, Credential Manager) when one answers, else
//!   a file in the data folder that only this user can read.
//! - [`check_connection`] only reads: it calls the authenticated
//!   `GET recordings/v1` and sorts the answer into a [`ConnectionOutcome`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app_engine::RecordingChoice;
use crate::uploads::{EMBEDDED_NAME, Target};
use crate::{Error, Opptak, Result};

/// Environment variable naming the machine preset file instead of the
/// per-OS path (tests; unusual installs).
pub const MACHINE_PRESET_ENV: &str = "OPPTAK_MACHINE_PRESET";
/// The id of the school server the machine preset names.
pub const MACHINE_PRESET_ID: &str = "school-machine-preset";
const MACHINE_PRESET_DEFAULT_NAME: &str = "School server";

/// The settings file in the data folder.
pub const SETTINGS_FILE: &str = "settings.json";
/// The file that keeps tokens where no credential store answers.
pub const TOKENS_FILE: &str = "tokens.json";
/// The id of the destination "This computer".
pub const THIS_COMPUTER_ID: &str = "this-computer";
/// Set to `file` to keep tokens in [`TOKENS_FILE`] even where the operating
/// system offers a credential store (tests, or a shared lab computer).
pub const CREDENTIAL_STORE_ENV: &str = "OPPTAK_CREDENTIAL_STORE";
/// How long [`check_connection`] waits for a server by default.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The service name Opptak's tokens are filed under in the credential store.
const KEYRING_SERVICE: &str = "Opptak";
/// The prefix of a token reference.
const REFERENCE_PREFIX: &str = "sha256:";
/// The API path [`check_connection`] calls (under the base URL).
const RECORDINGS_PATH: &str = "restapi/personal/mediarecorder/recordings/v1";
/// The longest name a teacher may give a destination.
const MAX_NAME_CHARS: usize = 80;

/// The reference the journal and the settings file keep instead of `token`.
pub fn token_reference(token: &str) -> String {
    format!("{REFERENCE_PREFIX}{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// Whether a journal's token column holds a reference (and not, as journals
/// written before tokens moved to the credential store, the token itself).
pub fn is_token_reference(value: &str) -> bool {
    value.strip_prefix(REFERENCE_PREFIX).is_some_and(|hex| hex.len() == 64)
}

/// Where tokens are kept on this computer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum CredentialStore {
    /// The operating system's credential store.
    System,
    /// [`TOKENS_FILE`] in the data folder, readable only by this user.
    File,
}

/// Keeps tokens: in the operating system's credential store when it
/// answers, else in a file only this user can read. Which one is decided
/// once, at the first use, by asking the system store.
#[derive(Debug)]
pub struct TokenStore {
    file: PathBuf,
    only_file: bool,
    system_answers: OnceLock<bool>,
    /// One writer of the tokens file at a time in this process.
    file_lock: std::sync::Mutex<()>,
}

impl TokenStore {
    /// A store for the data folder `data_dir`, honouring [`CREDENTIAL_STORE_ENV`].
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let only_file =
            std::env::var(CREDENTIAL_STORE_ENV).is_ok_and(|value| value.eq_ignore_ascii_case("file"));
        Self::new(data_dir.join(TOKENS_FILE), only_file)
    }

    /// A store whose fallback file is `file`; with `only_file`, the system
    /// store is never asked.
    pub fn new(file: PathBuf, only_file: bool) -> Self {
        Self { file, only_file, system_answers: OnceLock::new(), file_lock: std::sync::Mutex::new(()) }
    }

    /// The store in use. The first call may ask the system (blocking).
    pub fn kind(&self) -> CredentialStore {
        if self.system() { CredentialStore::System } else { CredentialStore::File }
    }

    /// The fallback file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What the teacher is told about where tokens are kept.
    pub fn description(&self) -> String {
        match self.kind() {
            CredentialStore::System => format!("Tokens are kept in {}.", system_store_name()),
            CredentialStore::File => format!(
                "This computer has no password store that answers, so tokens are kept in {}, a file only you can read.",
                self.file.display()
            ),
        }
    }

    fn system(&self) -> bool {
        !self.only_file && *self.system_answers.get_or_init(probe_system_store)
    }

    /// Keeps `token` and returns its reference.
    pub fn put(&self, token: &str) -> Result<String> {
        let reference = token_reference(token);
        if self.system() {
            keyring::Entry::new(KEYRING_SERVICE, &reference)
                .and_then(|entry| entry.set_password(token))
                .map_err(|err| credential_error("keep", &err))?;
        } else {
            self.edit_file(|tokens| {
                tokens.insert(reference.clone(), token.to_owned());
            })?;
        }
        Ok(reference)
    }

    /// The token with this reference, looked for in the system store and in
    /// the file (a token kept while the system store did not answer stays
    /// usable once it does).
    pub fn get(&self, reference: &str) -> Result<Option<String>> {
        if self.system() {
            match keyring::Entry::new(KEYRING_SERVICE, reference).and_then(|entry| entry.get_password()) {
                Ok(token) => return Ok(Some(token)),
                Err(keyring::Error::NoEntry) => {}
                Err(err) => return Err(credential_error("read", &err)),
            }
        }
        Ok(self.read_file()?.remove(reference))
    }

    /// Forgets the token with this reference.
    pub fn delete(&self, reference: &str) -> Result<()> {
        if self.system() {
            match keyring::Entry::new(KEYRING_SERVICE, reference).and_then(|entry| entry.delete_credential())
            {
                Ok(()) | Err(keyring::Error::NoEntry) => {}
                Err(err) => return Err(credential_error("remove", &err)),
            }
        }
        if self.file.exists() {
            self.edit_file(|tokens| {
                tokens.remove(reference);
            })?;
        }
        Ok(())
    }

    fn read_file(&self) -> Result<BTreeMap<String, String>> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                Error::Credentials(format!(
                    "{} cannot be read ({err}); add the school servers again in Settings",
                    self.file.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(err) => Err(Error::Credentials(format!("{} cannot be read ({err})", self.file.display()))),
        }
    }

    fn edit_file(&self, edit: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<()> {
        let _writer = self.file_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tokens = self.read_file()?;
        edit(&mut tokens);
        let bytes = serde_json::to_vec_pretty(&tokens).map_err(|err| Error::Credentials(err.to_string()))?;
        write_atomically(&self.file, &bytes, true)
            .map_err(|err| Error::Credentials(format!("{} cannot be written ({err})", self.file.display())))
    }
}

fn credential_error(what: &str, err: &keyring::Error) -> Error {
    Error::Credentials(format!("{} could not {what} the token ({err})", system_store_name()))
}

fn system_store_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "the macOS Keychain"
    } else if cfg!(windows) {
        "Windows Credential Manager"
    } else {
        "the system's password store (Secret Service)"
    }
}

/// Whether the system credential store answers: reading an entry that is
/// not there answers "no entry" from a working store, an error otherwise.
fn probe_system_store() -> bool {
    let answer =
        keyring::Entry::new(KEYRING_SERVICE, "opptak-store-probe").and_then(|entry| entry.get_password());
    let answers = matches!(answer, Ok(_) | Err(keyring::Error::NoEntry));
    if !answers {
        // Settings says so to the teacher; a warning here would add a line
        // to every `opptak` command's output on such a computer.
        tracing::info!(
            error = %answer.err().map(|err| err.to_string()).unwrap_or_default(),
            "no credential store answers; tokens are kept in a file only this user can read"
        );
    }
    answers
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new file,
/// never a mix: a temp file beside it, fsynced, renamed over it, and the
/// folder fsynced. With `private`, the file is readable only by this user.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("settings");
    let temp = folder.join(format!(".{name}.{}.tmp", hex::encode(rand::random::<[u8; 6]>())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    sync_dir(folder)
}

/// Makes a folder's entries (a file created, renamed or removed in it)
/// durable. Windows has no such call: its renames are durable by themselves.
pub(crate) fn sync_dir(folder: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(folder)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

/// A school server as the settings file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchoolServer {
    id: String,
    name: String,
    url: String,
    /// [`token_reference`] of its token.
    token: String,
}

/// The settings file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SettingsFile {
    default_destination: String,
    upload_while_recording: bool,
    school_servers: Vec<SchoolServer>,
    /// The desktop app's start/stop shortcut ("Ctrl+Alt+R"); `None`: its default.
    #[serde(skip_serializing_if = "Option::is_none")]
    record_shortcut: Option<String>,
    /// The machine preset's server URL once this profile has listed it, so
    /// a teacher who removes it does not get it back at the next start.
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_preset_url: Option<String>,
    /// What the tray and the shortcut record; `None`: the microphone.
    #[serde(skip_serializing_if = "Option::is_none")]
    recording_choice: Option<RecordingChoice>,
    /// The language the teacher chose in Settings ("en", "nb", "nn");
    /// `None`: the computer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
}

impl Default for SettingsFile {
    fn default() -> Self {
        Self {
            default_destination: THIS_COMPUTER_ID.to_owned(),
            upload_while_recording: true,
            school_servers: Vec::new(),
            record_shortcut: None,
            machine_preset_url: None,
            recording_choice: None,
            language: None,
        }
    }
}

/// Which kind of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum DestinationKind {
    /// The server inside the app.
    ThisComputer,
    /// A school's server or an LMS.
    SchoolServer,
}

/// A destination as the Settings screen lists it (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct DestinationInfo {
    /// Its id: [`THIS_COMPUTER_ID`] or a school server's.
    pub id: String,
    /// The name the teacher gave it.
    pub name: String,
    /// Its base URL; `None` for This computer.
    pub url: Option<String>,
    /// Which kind it is.
    pub kind: DestinationKind,
    /// Whether new recordings go there.
    pub is_default: bool,
}

/// The Settings screen's view of this computer's choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// Every destination, This computer first.
    pub destinations: Vec<DestinationInfo>,
    /// The id of the default destination.
    pub default_destination: String,
    /// Whether parts are uploaded while recording (else after Stop).
    pub upload_while_recording: bool,
    /// The data folder.
    pub data_dir: String,
    /// Where tokens are kept.
    pub credential_store: CredentialStore,
    /// The same in words for the teacher.
    pub credential_store_description: String,
}

/// The default destination, resolved so recordings can go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultDestination {
    /// Its id.
    pub id: String,
    /// The teacher's name for it.
    pub name: String,
    /// Where it is.
    pub target: Target,
}

fn this_computer(is_default: bool) -> DestinationInfo {
    DestinationInfo {
        id: THIS_COMPUTER_ID.to_owned(),
        name: EMBEDDED_NAME.to_owned(),
        url: None,
        kind: DestinationKind::ThisComputer,
        is_default,
    }
}

/// `url` as a destination's base URL: http or https, with a host, no
/// query, no trailing slash.
pub fn normalise_url(url: &str) -> Result<String> {
    let trimmed = url.trim();
    let invalid = |reason: &str| Error::InvalidUrl { url: trimmed.to_owned(), reason: reason.to_owned() };
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let parsed = reqwest::Url::parse(trimmed).map_err(|_| invalid("it is not a web address"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("it must start with https:// (or http://)"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no server"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it must not end with ? or # parts"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("it must not hold a user name or password; put the token in the token field"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The school server IT names for every user of a computer, in the machine
/// preset file (`client.toml`):
///
/// ```toml
/// [server]
/// url = "https://opptak.school.example"
/// name = "School server"   # optional
/// ```
///
/// Tokens are per teacher and never read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePreset {
    /// The server's base URL, normalised.
    pub url: String,
    /// Its name in the destination list.
    pub name: String,
}

#[derive(Debug, Deserialize)]
struct PresetFile {
    server: Option<PresetServer>,
}

#[derive(Debug, Deserialize)]
struct PresetServer {
    url: String,
    name: Option<String>,
    /// Present only to be refused: a token in a file every user can read
    /// would be everyone's token.
    token: Option<toml::Value>,
}

/// Where IT puts the machine preset: [`MACHINE_PRESET_ENV`] if set, else
/// `/etc/opptak/client.toml` (Linux and other Unixes),
/// `%ProgramData%\Opptak\client.toml` (Windows) or
/// `/Library/Application Support/Opptak/client.toml` (macOS).
pub fn machine_preset_path() -> PathBuf {
    if let Some(path) = std::env::var_os(MACHINE_PRESET_ENV).filter(|value| !value.is_empty()) {
        return PathBuf::from(path);
    }
    #[cfg(windows)]
    {
        let program_data =
            std::env::var_os("ProgramData").map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
        program_data.join("Opptak").join("client.toml")
    }
    #[cfg(target_os = "macos")]
    {
        PathBuf::from("/Library/Application Support/Opptak/client.toml")
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        PathBuf::from("/etc/opptak/client.toml")
    }
}

/// The machine preset at `path`; `None` when there is none or it cannot be
/// used. A broken preset must not stop a teacher from recording, so what is
/// wrong with it goes to the log, for IT, and the app starts without it.
pub fn read_machine_preset(path: &Path) -> Option<MachinePreset> {
    let file: PresetFile = read_preset_file(path).ok().flatten()?;
    let server = file.server?;
    if server.token.is_some() {
        tracing::warn!(path = %path.display(), "the machine preset holds a token; Opptak ignores it, because every user of this computer can read that file. Remove the token line: each teacher adds their own token in Settings.");
    }
    let url = match normalise_url(&server.url) {
        Ok(url) => url,
        Err(err) => {
            tracing::warn!(path = %path.display(), "the machine preset's server URL cannot be used: {err}; starting without it.");
            return None;
        }
    };
    let name = server
        .name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| MACHINE_PRESET_DEFAULT_NAME.to_owned());
    Some(MachinePreset { url, name })
}

/// The machine preset at `path` as `T`: `Ok(None)` when there is none, and
/// an error (said in the log too, for IT) when it cannot be read or is not
/// valid TOML.
pub(crate) fn read_preset_file<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> std::result::Result<Option<T>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            tracing::warn!(path = %path.display(), "the machine preset cannot be read ({err}); starting without it. Make it readable by every user.");
            return Err(format!("it cannot be read ({err})"));
        }
    };
    toml::from_str(&text).map(Some).map_err(|err| {
        tracing::warn!(path = %path.display(), "the machine preset is not valid TOML ({err}); starting without it. Fix it as the example in /usr/share/doc/opptak/client.toml.example shows.");
        format!("it is not valid TOML ({})", err.message())
    })
}

/// Adds the preset's server to `settings` unless this profile lists it
/// already or listed it once (the teacher removed it); in a `fresh` profile
/// it becomes the default. Its token stays empty until the teacher adds one.
fn merge_machine_preset(settings: &mut SettingsFile, preset: &MachinePreset, fresh: bool) {
    let listed = settings.school_servers.iter().any(|server| server.url == preset.url);
    if !listed && settings.machine_preset_url.as_deref() != Some(preset.url.as_str()) {
        settings.school_servers.push(SchoolServer {
            id: MACHINE_PRESET_ID.to_owned(),
            name: preset.name.clone(),
            url: preset.url.clone(),
            token: String::new(),
        });
        if fresh {
            MACHINE_PRESET_ID.clone_into(&mut settings.default_destination);
        }
    }
    settings.machine_preset_url = Some(preset.url.clone());
}

impl Opptak {
    fn settings_path(&self) -> PathBuf {
        self.data_dir().path().join(SETTINGS_FILE)
    }

    fn read_settings(&self) -> Result<SettingsFile> {
        let path = self.settings_path();
        let (mut settings, fresh) = match std::fs::read(&path) {
            Ok(bytes) => (
                serde_json::from_slice(&bytes).map_err(|err| Error::Settings {
                    path,
                    reason: format!("it is not valid settings ({err}); delete it to start from the defaults"),
                })?,
                false,
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (SettingsFile::default(), true),
            Err(err) => return Err(Error::Settings { path, reason: err.to_string() }),
        };
        if let Some(preset) = read_machine_preset(&machine_preset_path()) {
            merge_machine_preset(&mut settings, &preset, fresh);
        }
        Ok(settings)
    }

    /// Reads, changes and writes the settings file, one change at a time.
    fn edit_settings<T>(&self, edit: impl FnOnce(&mut SettingsFile) -> Result<T>) -> Result<T> {
        let _writer = self.settings_lock().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut settings = self.read_settings()?;
        let out = edit(&mut settings)?;
        let bytes = serde_json::to_vec_pretty(&settings)
            .map_err(|err| Error::Settings { path: self.settings_path(), reason: err.to_string() })?;
        let path = self.settings_path();
        write_atomically(&path, &bytes, false)
            .map_err(|err| Error::Settings { path, reason: err.to_string() })?;
        Ok(out)
    }

    /// Where tokens are kept.
    pub fn token_store(&self) -> &Arc<TokenStore> {
        self.tokens()
    }

    /// Every destination, This computer first. Reads a file: call it off the async threads.
    pub fn destinations(&self) -> Result<Vec<DestinationInfo>> {
        let settings = self.read_settings()?;
        Ok(list(&settings))
    }

    /// The Settings screen's view. May ask the credential store which one
    /// answers (blocking).
    pub fn settings_view(&self) -> Result<SettingsView> {
        let settings = self.read_settings()?;
        Ok(SettingsView {
            destinations: list(&settings),
            default_destination: settings.default_destination.clone(),
            upload_while_recording: settings.upload_while_recording,
            data_dir: self.data_dir().path().display().to_string(),
            credential_store: self.tokens().kind(),
            credential_store_description: self.tokens().description(),
        })
    }

    /// Adds a school server; its token goes to the credential store, never
    /// to a file Opptak writes in the open. Blocks.
    pub fn add_destination(&self, name: &str, url: &str, token: &str) -> Result<DestinationInfo> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Destination("Give the school server a name, for example \"School\".".into()));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::Destination(format!(
                "The name is too long; use at most {MAX_NAME_CHARS} characters."
            )));
        }
        let url = normalise_url(url)?;
        let token = token.trim();
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(Error::Destination(
                "The token is empty or has spaces in it. Copy it again from your school's Opptak or LMS page.".into(),
            ));
        }
        let reference = token_reference(token);
        self.edit_settings(|settings| {
            // The machine preset's server waits for this teacher's token.
            if let Some(waiting) =
                settings.school_servers.iter_mut().find(|server| server.url == url && server.token.is_empty())
            {
                self.tokens().put(token)?;
                waiting.token = reference;
                return Ok(info(waiting, false));
            }
            if settings.school_servers.iter().any(|server| server.url == url && server.token == reference) {
                return Err(Error::Destination(format!(
                    "{url} with this token is already in the list. Remove it first to add it again."
                )));
            }
            self.tokens().put(token)?;
            let server = SchoolServer {
                id: format!("school-{}", hex::encode(rand::random::<[u8; 4]>())),
                name: name.to_owned(),
                url,
                token: reference,
            };
            settings.school_servers.push(server.clone());
            Ok(info(&server, false))
        })
    }

    /// Removes a school server. When it was the default, This computer is
    /// the default again. Its token is forgotten unless a recording that is
    /// not safe yet still needs it. Blocks.
    pub fn remove_destination(&self, id: &str) -> Result<()> {
        if id == THIS_COMPUTER_ID {
            return Err(Error::Destination(
                "This computer cannot be removed: recordings stay here when no server can take them.".into(),
            ));
        }
        let removed = self.edit_settings(|settings| {
            let position = settings
                .school_servers
                .iter()
                .position(|server| server.id == id)
                .ok_or_else(|| Error::UnknownDestination(id.to_owned()))?;
            let removed = settings.school_servers.remove(position);
            if settings.default_destination == id {
                THIS_COMPUTER_ID.clone_into(&mut settings.default_destination);
            }
            Ok(removed)
        })?;
        let still_used = settings_still_use(&self.read_settings()?, &removed.token)
            || self.unfinished()?.iter().any(|recording| {
                recording.destination_id.is_some_and(|destination| {
                    self.journal()
                        .destination(destination)
                        .ok()
                        .flatten()
                        .is_some_and(|row| row.token == removed.token)
                })
            });
        // The machine preset's server has no token until the teacher adds one.
        if !still_used && !removed.token.is_empty() {
            self.tokens().delete(&removed.token)?;
        }
        Ok(())
    }

    /// Makes `id` the default destination; returns it. Blocks.
    pub fn set_default_destination(&self, id: &str) -> Result<DestinationInfo> {
        self.edit_settings(|settings| {
            let chosen = if id == THIS_COMPUTER_ID {
                this_computer(true)
            } else {
                let server = settings
                    .school_servers
                    .iter()
                    .find(|server| server.id == id)
                    .ok_or_else(|| Error::UnknownDestination(id.to_owned()))?;
                info(server, true)
            };
            id.clone_into(&mut settings.default_destination);
            Ok(chosen)
        })
    }

    /// Whether parts are uploaded while recording (else after Stop). Blocks.
    pub fn set_upload_while_recording(&self, on: bool) -> Result<()> {
        self.edit_settings(|settings| {
            settings.upload_while_recording = on;
            Ok(())
        })
    }

    /// Whether parts are uploaded while recording (on unless the teacher
    /// turned it off).
    pub fn upload_while_recording(&self) -> Result<bool> {
        Ok(self.read_settings()?.upload_while_recording)
    }

    /// Saves the desktop app's start/stop shortcut (`None`: its default).
    pub fn set_record_shortcut(&self, shortcut: Option<&str>) -> Result<()> {
        self.edit_settings(|settings| {
            settings.record_shortcut = shortcut.map(str::to_owned);
            Ok(())
        })
    }

    /// The desktop app's start/stop shortcut as saved; `None`: its default.
    pub fn record_shortcut(&self) -> Result<Option<String>> {
        Ok(self.read_settings()?.record_shortcut)
    }

    /// Saves what the Record screen is set to record, for the tray and the
    /// shortcut. Blocks.
    pub fn set_recording_choice(&self, choice: &RecordingChoice) -> Result<()> {
        self.edit_settings(|settings| {
            settings.recording_choice = Some(choice.clone());
            Ok(())
        })
    }

    /// What the Record screen was last set to record (the microphone until
    /// it was set).
    pub fn recording_choice(&self) -> Result<RecordingChoice> {
        Ok(self.read_settings()?.recording_choice.unwrap_or_default())
    }

    /// Saves the language the teacher chose (a tag such as "nn"), or `None`
    /// to follow the computer's. Blocks.
    pub fn set_language(&self, language: Option<&str>) -> Result<()> {
        self.edit_settings(|settings| {
            settings.language = language.map(str::to_owned);
            Ok(())
        })
    }

    /// The language the teacher chose; `None`: the computer's.
    pub fn language(&self) -> Result<Option<String>> {
        Ok(self.read_settings()?.language)
    }

    /// Where destination `id` is, with its token from the credential store. Blocks.
    pub fn destination_target(&self, id: &str) -> Result<DefaultDestination> {
        if id == THIS_COMPUTER_ID {
            return Ok(DefaultDestination {
                id: id.to_owned(),
                name: EMBEDDED_NAME.to_owned(),
                target: Target::Embedded,
            });
        }
        let settings = self.read_settings()?;
        let server = settings
            .school_servers
            .iter()
            .find(|server| server.id == id)
            .ok_or_else(|| Error::UnknownDestination(id.to_owned()))?;
        if server.token.is_empty() {
            return Err(Error::Credentials(format!(
                "\"{}\" is your school's server, but Opptak has no token of yours for it yet; open Settings and add {} with the token your school gave you",
                server.name, server.url
            )));
        }
        let token = self.tokens().get(&server.token)?.ok_or_else(|| missing_token(&server.name))?;
        Ok(DefaultDestination {
            id: server.id.clone(),
            name: server.name.clone(),
            target: Target::Remote { url: server.url.clone(), token },
        })
    }

    /// The default destination, resolved. A default whose server was
    /// removed from the file by hand falls back to This computer. Blocks.
    pub fn default_destination(&self) -> Result<DefaultDestination> {
        let settings = self.read_settings()?;
        match self.destination_target(&settings.default_destination) {
            Err(Error::UnknownDestination(_)) => self.destination_target(THIS_COMPUTER_ID),
            other => other,
        }
    }

    /// Moves tokens that an older Opptak left in the journal into the
    /// credential store, leaving their references in the journal. The
    /// embedded server's token is only replaced by its reference: it lives
    /// in the server's own private file already.
    pub(crate) fn move_journaled_tokens(&self) -> Result<usize> {
        let mut moved = 0;
        for destination in self.journal().destinations().map_err(crate::uploads::journal_error)? {
            if is_token_reference(&destination.token) {
                continue;
            }
            let reference = if destination.base_url == crate::uploads::EMBEDDED_URL {
                token_reference(&destination.token)
            } else {
                self.tokens().put(&destination.token)?
            };
            self.journal()
                .set_destination_token(destination.id, &reference)
                .map_err(crate::uploads::journal_error)?;
            moved += 1;
        }
        Ok(moved)
    }
}

fn missing_token(name: &str) -> Error {
    Error::Credentials(format!(
        "the token for \"{name}\" is no longer in this computer's password store; remove the server in Settings and add it again with its token"
    ))
}

fn settings_still_use(settings: &SettingsFile, reference: &str) -> bool {
    settings.school_servers.iter().any(|server| server.token == reference)
}

fn info(server: &SchoolServer, is_default: bool) -> DestinationInfo {
    DestinationInfo {
        id: server.id.clone(),
        name: server.name.clone(),
        url: Some(server.url.clone()),
        kind: DestinationKind::SchoolServer,
        is_default,
    }
}

fn list(settings: &SettingsFile) -> Vec<DestinationInfo> {
    let mut all = vec![this_computer(settings.default_destination == THIS_COMPUTER_ID)];
    all.extend(
        settings.school_servers.iter().map(|server| info(server, settings.default_destination == server.id)),
    );
    if !all.iter().any(|destination| destination.is_default) {
        all[0].is_default = true;
    }
    all
}

/// What [`check_connection`] found, for the UI to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum ConnectionOutcome {
    /// An Opptak (or compatible LMS) upload API answered and took the token.
    Ok,
    /// The server answered 401 or 403: the token is wrong or expired.
    TokenRefused,
    /// Something answered, but not the upload API (404, a web page, other JSON).
    NotUploadApi,
    /// Nothing answered: connection refused, unknown name, or no answer in time.
    Unreachable,
    /// The secure connection failed (certificate, or not HTTPS at all).
    TlsProblem,
    /// The upload API answered with a server error (5xx).
    ServerError,
}

/// The answer of [`check_connection`]: an outcome and what to tell the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionCheck {
    /// What was found.
    pub outcome: ConnectionOutcome,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// What happened and what to do, in a teacher's words.
    pub message: String,
}

impl ConnectionCheck {
    fn new(outcome: ConnectionOutcome, status: Option<u16>, message: String) -> Self {
        Self { outcome, status, message }
    }
}

/// Calls the authenticated `GET recordings/v1` of the server at `url` with
/// `token` and tells apart what answered, waiting at most `timeout`.
pub async fn check_connection(url: &str, token: &str, timeout: Duration) -> ConnectionCheck {
    use ConnectionOutcome as Outcome;
    let base = match normalise_url(url) {
        Ok(base) => base,
        Err(err) => return ConnectionCheck::new(Outcome::NotUploadApi, None, err.to_string()),
    };
    let client = match reqwest::Client::builder().connect_timeout(timeout).timeout(timeout).build() {
        Ok(client) => client,
        Err(err) => {
            return ConnectionCheck::new(
                Outcome::Unreachable,
                None,
                format!("Opptak could not set up a connection ({err}). Restart Opptak and try again."),
            );
        }
    };
    let sent = client
        .get(format!("{base}/{RECORDINGS_PATH}"))
        .bearer_auth(token.trim())
        .header("accept", "application/json")
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => return transport_failure(&base, &err, timeout),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => return transport_failure(&base, &err, timeout),
    };
    match status {
        401 | 403 => ConnectionCheck::new(
            Outcome::TokenRefused,
            Some(status),
            format!(
                "The server at {base} refused the token ({status}). Copy the token again from your school's Opptak or LMS page and paste it in."
            ),
        ),
        500..=599 => ConnectionCheck::new(
            Outcome::ServerError,
            Some(status),
            format!(
                "The server at {base} answered with an error ({status}). Try again later, or ask your school's IT support."
            ),
        ),
        200..=299 => match recordings_listed(&content_type, &body) {
            Some(count) => ConnectionCheck::new(
                Outcome::Ok,
                Some(status),
                format!(
                    "The Opptak upload service at {base} answered and accepted the token ({count} recording{} there).",
                    if count == 1 { "" } else { "s" }
                ),
            ),
            None => not_upload_api(&base, status, &content_type),
        },
        _ => not_upload_api(&base, status, &content_type),
    }
}

fn not_upload_api(base: &str, status: u16, content_type: &str) -> ConnectionCheck {
    let what = if content_type.contains("html") {
        "a web page".to_owned()
    } else if status == 404 {
        "\"not found\" (404)".to_owned()
    } else {
        format!("something else ({status})")
    };
    ConnectionCheck::new(
        ConnectionOutcome::NotUploadApi,
        Some(status),
        format!(
            "{base} answered with {what}, not as an Opptak upload service. Check the address: use the one your school gave for Opptak, not the LMS's home page."
        ),
    )
}

/// How many recordings a `recordings/v1` answer lists, when it is one.
fn recordings_listed(content_type: &str, body: &[u8]) -> Option<usize> {
    if !content_type.contains("json") {
        return None;
    }
    let listed: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    listed
        .iter()
        .all(|item| item.get("recordingId").is_some_and(serde_json::Value::is_string))
        .then_some(listed.len())
}

fn transport_failure(base: &str, err: &reqwest::Error, timeout: Duration) -> ConnectionCheck {
    let chain = error_chain(err);
    let lower = chain.to_ascii_lowercase();
    let tls =
        ["certificate", "tls", "handshake", "invalidcontenttype", "corrupt message", "unknownissuer", "ssl"]
            .iter()
            .any(|marker| lower.contains(marker));
    if tls {
        return ConnectionCheck::new(
            ConnectionOutcome::TlsProblem,
            None,
            format!(
                "The secure connection to {base} failed ({chain}). Check that the address starts with the right https:// or http://, or ask your school's IT support about the server's certificate."
            ),
        );
    }
    let why = if err.is_timeout() {
        format!("it did not answer within {} s", timeout.as_secs_f32().ceil() as u64)
    } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        "no server has that name".to_owned()
    } else if lower.contains("refused") {
        "nothing answers at that address".to_owned()
    } else {
        chain
    };
    ConnectionCheck::new(
        ConnectionOutcome::Unreachable,
        None,
        format!(
            "Cannot reach {base}: {why}. Check the address and that this computer is on the school's network, then try again."
        ),
    )
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut words = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        cause = next.source();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;
    use std::io::Read;

    fn file_only_opptak(dir: &Path) -> Opptak {
        let data_dir = DataDir::at(dir.join("data"));
        Opptak::open_with_tokens(&data_dir, TokenStore::new(data_dir.path().join(TOKENS_FILE), true)).unwrap()
    }

    /// Every file under `dir` whose bytes contain `needle`.
    fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|window| window == needle) {
                    found.push(path);
                }
            }
        }
        found
    }

    #[test]
    fn urls_are_checked_and_normalised() {
        assert_eq!(
            normalise_url(" https://school.example/opptak/ ").unwrap(),
            "https://school.example/opptak"
        );
        assert_eq!(normalise_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        for bad in [
            "",
            "school.example",
            "ftp://school.example",
            "https://school.example/?a=1",
            "https://u:p@x.example",
        ] {
            assert!(matches!(normalise_url(bad), Err(Error::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn references_are_fingerprints_and_say_so() {
        let reference = token_reference("secret-token");
        assert!(is_token_reference(&reference));
        assert!(!reference.contains("secret"));
        assert_eq!(reference, token_reference("secret-token"));
        assert_ne!(reference, token_reference("secret-token2"));
        assert!(!is_token_reference("secret-token"));
    }

    #[test]
    fn the_file_store_keeps_tokens_private_and_forgets_them() {
        let temp = tempfile::tempdir().unwrap();
        let store = TokenStore::new(temp.path().join(TOKENS_FILE), true);
        assert_eq!(store.kind(), CredentialStore::File);
        assert!(store.description().contains("only you can read"));
        let reference = store.put("tok-1").unwrap();
        store.put("tok-2").unwrap();
        assert_eq!(store.get(&reference).unwrap().as_deref(), Some("tok-1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.file()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        store.delete(&reference).unwrap();
        assert_eq!(store.get(&reference).unwrap(), None);
        assert_eq!(store.get(&token_reference("tok-2")).unwrap().as_deref(), Some("tok-2"));
    }

    #[test]
    fn destinations_are_added_made_default_and_removed_without_the_token_in_any_file_but_the_store() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = file_only_opptak(temp.path());
        let listed = opptak.destinations().unwrap();
        assert_eq!(listed, [this_computer(true)]);
        assert!(opptak.upload_while_recording().unwrap());

        let token = "very-secret-school-token-42";
        let school = opptak.add_destination("  School  ", "https://school.example/", token).unwrap();
        assert_eq!((school.name.as_str(), school.url.as_deref()), ("School", Some("https://school.example")));
        let again = opptak.add_destination("School", "https://school.example", token).unwrap_err();
        assert!(matches!(again, Error::Destination(_)), "{again}");
        assert!(matches!(opptak.add_destination("", "https://x.example", "t"), Err(Error::Destination(_))));
        assert!(matches!(
            opptak.add_destination("X", "https://x.example", "a b"),
            Err(Error::Destination(_))
        ));
        assert!(matches!(opptak.add_destination("X", "nope", "t"), Err(Error::InvalidUrl { .. })));

        let chosen = opptak.set_default_destination(&school.id).unwrap();
        assert!(chosen.is_default);
        let default = opptak.default_destination().unwrap();
        assert_eq!(
            default.target,
            Target::Remote { url: "https://school.example".into(), token: token.into() }
        );
        assert!(matches!(opptak.set_default_destination("school-nope"), Err(Error::UnknownDestination(_))));
        opptak.set_upload_while_recording(false).unwrap();
        assert!(!opptak.upload_while_recording().unwrap());
        assert_eq!(opptak.recording_choice().unwrap(), RecordingChoice::default(), "the microphone at first");
        let screen = RecordingChoice {
            source: crate::app_engine::RecordingSource::Screen { display: Some(":7".into()) },
            size: crate::app_engine::VideoSize::Hd1080,
            microphone: Some("USB headset".into()),
        };
        opptak.set_recording_choice(&screen).unwrap();
        assert_eq!(opptak.recording_choice().unwrap(), screen);
        assert_eq!(opptak.language().unwrap(), None, "the computer's language at first");
        opptak.set_language(Some("nn")).unwrap();
        assert_eq!(file_only_opptak(temp.path()).language().unwrap().as_deref(), Some("nn"));
        opptak.set_language(None).unwrap();
        assert_eq!(opptak.language().unwrap(), None);

        // The journal learns the destination when it is connected.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let connected = runtime.block_on(opptak.connect(&default.target)).unwrap();
        assert_eq!(opptak.target_of(connected.id).unwrap(), default.target, "resolved from the store");
        // Another process on the folder (an `opptak resume`) finds it too.
        let command = file_only_opptak(temp.path());
        assert_eq!(command.target_of(connected.id).unwrap(), default.target);
        assert_eq!(command.default_destination().unwrap(), default);

        let holding = files_containing(temp.path(), token.as_bytes());
        assert_eq!(holding, [opptak.token_store().file().to_path_buf()], "only the private tokens file");
        let view = opptak.settings_view().unwrap();
        assert_eq!(view.default_destination, school.id);
        assert_eq!(view.credential_store, CredentialStore::File);
        assert!(!serde_json::to_string(&view).unwrap().contains(token));

        assert!(matches!(opptak.remove_destination(THIS_COMPUTER_ID), Err(Error::Destination(_))));
        opptak.remove_destination(&school.id).unwrap();
        assert!(matches!(opptak.remove_destination(&school.id), Err(Error::UnknownDestination(_))));
        assert_eq!(
            opptak.destinations().unwrap(),
            [this_computer(true)],
            "This computer is the default again"
        );
        assert!(files_containing(temp.path(), token.as_bytes()).is_empty(), "the token is forgotten");
    }

    #[test]
    fn tokens_an_older_opptak_journaled_move_to_the_store_at_open() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        let old_token = "token-from-an-older-journal";
        {
            let journal = opptak_journal::Journal::open_in(&data).unwrap();
            journal.upsert_destination("http://school.example", old_token, "School").unwrap();
            journal
                .upsert_destination(
                    crate::uploads::EMBEDDED_URL,
                    "embedded-secret-0123456789",
                    "This computer",
                )
                .unwrap();
        }
        let opptak = file_only_opptak(temp.path());
        let rows = opptak.journal().destinations().unwrap();
        assert!(rows.iter().all(|row| is_token_reference(&row.token)), "{rows:?}");
        assert_eq!(
            opptak.target_of(rows[0].id).unwrap(),
            Target::Remote { url: "http://school.example".into(), token: old_token.into() }
        );
        assert_eq!(opptak.target_of(rows[1].id).unwrap(), Target::Embedded);
        let journal_files: Vec<PathBuf> = files_containing(temp.path(), old_token.as_bytes());
        assert_eq!(journal_files, [opptak.token_store().file().to_path_buf()]);
        assert!(files_containing(temp.path(), b"embedded-secret-0123456789").is_empty());
    }

    /// The .msi's `SERVER_URL` fragment must write a preset this parser
    /// reads. No WiX compiler runs here (the release workflow installs the
    /// .msi on Windows); this checks the fragment's IniFile against the
    /// line Windows writes for it (`key=value` under `[section]`).
    #[test]
    fn the_msi_fragment_writes_a_preset_opptak_reads() {
        use quick_xml::events::Event;
        let src_tauri = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let fragment_path = src_tauri.join("packaging/windows/machine-preset.wxs");
        let fragment = std::fs::read_to_string(&fragment_path).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src_tauri.join("tauri.conf.json")).unwrap())
                .unwrap();
        let wix = &config["bundle"]["windows"]["wix"];
        assert_eq!(wix["fragmentPaths"], serde_json::json!(["packaging/windows/machine-preset.wxs"]));

        let mut reader = quick_xml::Reader::from_str(&fragment);
        let (mut components, mut ini_lines, mut secure_properties) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            match reader.read_event().unwrap() {
                Event::Eof => break,
                Event::Start(element) | Event::Empty(element) => {
                    let attribute = |name: &str| {
                        element
                            .try_get_attribute(name)
                            .unwrap()
                            .map(|value| value.unescape_value().unwrap().into_owned())
                    };
                    match element.name().as_ref() {
                        b"Component" => components.push(attribute("Id").unwrap()),
                        b"Property" if attribute("Secure").as_deref() == Some("yes") => {
                            secure_properties.push(attribute("Id").unwrap());
                        }
                        b"IniFile" => {
                            assert_eq!(attribute("Name").as_deref(), Some("client.toml"));
                            assert_eq!(attribute("Directory").as_deref(), Some("OpptakProgramData"));
                            ini_lines.push((
                                attribute("Section").unwrap(),
                                attribute("Key").unwrap(),
                                attribute("Value").unwrap(),
                            ));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        assert_eq!(
            wix["componentRefs"],
            serde_json::json!(components),
            "tauri.conf.json names the fragment's component"
        );
        // Secure: msiexec passes a public property to the elevated install only then.
        assert_eq!(secure_properties, ["SERVER_URL"]);
        let [(section, key, value)] = ini_lines.as_slice() else { panic!("one IniFile line: {ini_lines:?}") };

        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("client.toml");
        let url = "https://opptak.school.example";
        let written = format!("[{section}]\r\n{key}={}\r\n", value.replace("[SERVER_URL]", url));
        std::fs::write(&path, written).unwrap();
        let preset = read_machine_preset(&path).expect("the preset the .msi writes is read");
        assert_eq!(preset.url, url);
    }

    #[test]
    fn a_machine_preset_is_read_without_its_token_and_a_broken_one_is_skipped() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("client.toml");
        assert_eq!(read_machine_preset(&path), None, "no file, no preset");
        std::fs::write(
            &path,
            "[server]\nurl = \"https://opptak.school.example/\"\nname = \" Vika skole \"\n",
        )
        .unwrap();
        assert_eq!(
            read_machine_preset(&path),
            Some(MachinePreset { url: "https://opptak.school.example".into(), name: "Vika skole".into() })
        );
        std::fs::write(&path, "[server]\nurl = \"https://s.example\"\ntoken = \"shared-secret\"\n").unwrap();
        let preset = read_machine_preset(&path).unwrap();
        assert_eq!(
            (preset.url.as_str(), preset.name.as_str()),
            ("https://s.example", MACHINE_PRESET_DEFAULT_NAME)
        );
        for broken in ["[server\nurl=", "[server]\nurl = \"ftp://s.example\"\n", "[server]\nname = \"x\"\n"] {
            std::fs::write(&path, broken).unwrap();
            assert_eq!(read_machine_preset(&path), None, "{broken}");
        }
    }

    #[test]
    fn a_machine_preset_adds_its_server_once_and_is_the_default_only_in_a_fresh_profile() {
        let preset = MachinePreset { url: "https://s.example".into(), name: "School".into() };
        let mut fresh = SettingsFile::default();
        merge_machine_preset(&mut fresh, &preset, true);
        assert_eq!(fresh.default_destination, MACHINE_PRESET_ID);
        assert_eq!(
            list(&fresh)[1],
            DestinationInfo {
                id: MACHINE_PRESET_ID.into(),
                name: "School".into(),
                url: Some("https://s.example".into()),
                kind: DestinationKind::SchoolServer,
                is_default: true,
            }
        );
        let mut existing = SettingsFile::default();
        merge_machine_preset(&mut existing, &preset, false);
        assert_eq!(existing.default_destination, THIS_COMPUTER_ID, "a teacher's own choice stays");
        assert_eq!(existing.school_servers.len(), 1, "added to the teacher's list");
        // Removed by the teacher: it does not come back.
        existing.school_servers.clear();
        merge_machine_preset(&mut existing, &preset, false);
        assert!(existing.school_servers.is_empty());
    }

    /// Runs `test` in a child process of this test binary with the machine
    /// preset at `preset` (the environment is per process, and setting it
    /// in this one would race the other tests).
    fn in_child_with_preset(test: &str, preset: &Path) -> bool {
        if std::env::var_os(MACHINE_PRESET_ENV).is_some() {
            return false;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("destinations::tests::{test}"), "--nocapture"])
            .env(MACHINE_PRESET_ENV, preset)
            .env(CREDENTIAL_STORE_ENV, "file")
            .status()
            .unwrap();
        assert!(status.success(), "the child run of {test} failed");
        true
    }

    #[test]
    fn the_machine_preset_file_makes_its_server_the_default_in_a_fresh_profile_and_takes_the_token_from_the_teacher()
     {
        let temp = tempfile::tempdir().unwrap();
        let preset = std::env::var_os(MACHINE_PRESET_ENV)
            .map_or_else(|| temp.path().join("client.toml"), PathBuf::from);
        if !preset.exists() {
            std::fs::write(
                &preset,
                "[server]\nurl = \"https://opptak.school.example\"\nname = \"Vika\"\ntoken = \"machine-wide-token\"\n",
            )
            .unwrap();
        }
        if in_child_with_preset(
            "the_machine_preset_file_makes_its_server_the_default_in_a_fresh_profile_and_takes_the_token_from_the_teacher",
            &preset,
        ) {
            return;
        }
        let opptak = file_only_opptak(temp.path());
        let listed = opptak.destinations().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed[1].is_default && listed[1].url.as_deref() == Some("https://opptak.school.example"));
        let err = opptak.default_destination().unwrap_err();
        assert!(matches!(err, Error::Credentials(_)) && err.to_string().contains("open Settings"), "{err}");
        assert!(
            files_containing(temp.path(), b"machine-wide-token").is_empty(),
            "never taken from the preset"
        );

        let added =
            opptak.add_destination("Vika", "https://opptak.school.example/", "teachers-own-token").unwrap();
        assert_eq!(added.id, MACHINE_PRESET_ID, "the preset's entry takes the token");
        assert_eq!(
            opptak.default_destination().unwrap().target,
            Target::Remote {
                url: "https://opptak.school.example".into(),
                token: "teachers-own-token".into()
            }
        );
        assert_eq!(opptak.destinations().unwrap().len(), 2);
        opptak.remove_destination(MACHINE_PRESET_ID).unwrap();
        assert_eq!(opptak.destinations().unwrap(), [this_computer(true)], "removed stays removed");
    }

    #[test]
    fn a_settings_file_that_is_not_valid_is_a_typed_error_that_names_it() {
        let temp = tempfile::tempdir().unwrap();
        let opptak = file_only_opptak(temp.path());
        std::fs::write(opptak.settings_path(), b"{not json").unwrap();
        let err = opptak.destinations().unwrap_err();
        assert!(matches!(err, Error::Settings { .. }));
        assert!(err.to_string().contains(SETTINGS_FILE), "{err}");
    }

    /// A server on 127.0.0.1 that answers every request with `response`
    /// (as raw HTTP) and then closes; `None` accepts and never answers.
    fn one_answer_listener(response: Option<&'static str>) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            match response {
                Some(response) => {
                    let _ = stream.write_all(response.as_bytes());
                }
                None => std::thread::sleep(Duration::from_millis(1500)),
            }
        });
        (url, thread)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_connection_test_tells_apart_ok_a_refused_token_and_not_an_upload_api_on_a_real_server() {
        let temp = tempfile::tempdir().unwrap();
        let server = opptak_server::Server::builder()
            .data_dir(temp.path())
            .user(opptak_server::UserToken { name: "teacher".into(), token: "right-token".into() })
            .start()
            .await
            .unwrap();
        let url = server.url().to_owned();

        let ok = check_connection(&url, "right-token", CONNECTION_TIMEOUT).await;
        assert_eq!(ok.outcome, ConnectionOutcome::Ok, "{ok:?}");
        assert!(ok.message.contains("0 recordings"), "{}", ok.message);
        let refused = check_connection(&url, "wrong-token", CONNECTION_TIMEOUT).await;
        assert_eq!(
            (refused.outcome, refused.status),
            (ConnectionOutcome::TokenRefused, Some(401)),
            "{refused:?}"
        );
        assert!(refused.message.contains("refused the token"), "{}", refused.message);
        let elsewhere = check_connection(&format!("{url}/lms"), "right-token", CONNECTION_TIMEOUT).await;
        assert_eq!((elsewhere.outcome, elsewhere.status), (ConnectionOutcome::NotUploadApi, Some(404)));
        server.shutdown().await;

        let closed = check_connection(&url, "right-token", CONNECTION_TIMEOUT).await;
        assert_eq!(closed.outcome, ConnectionOutcome::Unreachable, "{closed:?}");
        assert!(closed.message.contains("nothing answers"), "{}", closed.message);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_connection_test_knows_a_web_page_other_json_a_server_error_tls_and_silence() {
        let page = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 27\r\nconnection: close\r\n\r\n<html><body>LMS</body></html>";
        let (url, thread) = one_answer_listener(Some(page));
        let html = check_connection(&url, "t", CONNECTION_TIMEOUT).await;
        assert_eq!(html.outcome, ConnectionOutcome::NotUploadApi, "{html:?}");
        assert!(html.message.contains("a web page"), "{}", html.message);
        thread.join().unwrap();

        let json = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\nconnection: close\r\n\r\n{\"hello\": 1}\n";
        let (url, thread) = one_answer_listener(Some(json));
        assert_eq!(
            check_connection(&url, "t", CONNECTION_TIMEOUT).await.outcome,
            ConnectionOutcome::NotUploadApi
        );
        thread.join().unwrap();

        let busy = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let (url, thread) = one_answer_listener(Some(busy));
        let error = check_connection(&url, "t", CONNECTION_TIMEOUT).await;
        assert_eq!((error.outcome, error.status), (ConnectionOutcome::ServerError, Some(503)));
        thread.join().unwrap();

        // HTTPS to a server that speaks plain HTTP: the TLS handshake fails.
        let (url, thread) = one_answer_listener(Some(page));
        let tls = check_connection(&url.replace("http://", "https://"), "t", CONNECTION_TIMEOUT).await;
        assert_eq!(tls.outcome, ConnectionOutcome::TlsProblem, "{tls:?}");
        thread.join().unwrap();

        let (url, thread) = one_answer_listener(None);
        let started = std::time::Instant::now();
        let silent = check_connection(&url, "t", Duration::from_millis(300)).await;
        assert_eq!(silent.outcome, ConnectionOutcome::Unreachable, "{silent:?}");
        assert!(silent.message.contains("did not answer within 1 s"), "{}", silent.message);
        assert!(started.elapsed() < Duration::from_secs(1), "gave up in time: {:?}", started.elapsed());
        thread.join().unwrap();
    }
}
