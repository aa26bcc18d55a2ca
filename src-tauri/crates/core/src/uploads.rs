//! Uploads as both front ends run them: where to (the embedded server or a
//! configured one), what (a file, added to the journal), and resuming every
//! unfinished upload.

use std::path::{Path, PathBuf};

use opptak_journal::{Journal, LocalRecording, NewRecording, RecordingState};
use opptak_server::{Server, ServerHandle, UserToken};
use opptak_upload::{ApiClient, Source};
/// The upload engine's types a front end needs to run and watch uploads.
pub use opptak_upload::{UploadConfig, UploadEvent, UploadHandle, Uploaded};

use crate::{DataDir, Error, Result};

/// The journal's name for the in-process server: its URL changes every run
/// (a free port), so sessions refer to it by this instead.
pub const EMBEDDED_URL: &str = "embedded:";
/// What the user sees for the embedded destination.
pub const EMBEDDED_NAME: &str = "This computer";

/// Where recordings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Opptak's own server, in this process, with data under `<data dir>/server`.
    Embedded,
    /// A school's server or an LMS.
    Remote {
        /// Its base URL.
        url: String,
        /// The user's bearer token.
        token: String,
    },
}

/// A destination ready to take uploads. Holding it keeps the embedded
/// server running; drop it (or call [`Destination::shutdown`]) when done.
#[derive(Debug)]
pub struct Destination {
    /// The journal's id for it.
    pub id: i64,
    /// A client signed in to it.
    pub client: ApiClient,
    server: Option<ServerHandle>,
}

impl Destination {
    /// Stops the embedded server, if this destination runs one.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}

/// Opptak's state on this computer: the data directory and its journal.
#[derive(Debug, Clone)]
pub struct Opptak {
    data_dir: DataDir,
    journal: Journal,
}

pub(crate) fn journal_error(err: opptak_journal::Error) -> Error {
    Error::Journal(err.to_string())
}

impl Opptak {
    /// Opens (creating) the data directory's journal, and repairs the
    /// recordings whose recorder died (see [`Opptak::recover`]).
    pub fn open(data_dir: &DataDir) -> Result<Self> {
        data_dir.ensure_writable()?;
        let journal = Journal::open_in(data_dir.path()).map_err(journal_error)?;
        let opptak = Self { data_dir: data_dir.clone(), journal };
        if let Err(err) = opptak.recover() {
            // Recovery is retried at every start; it must not stop this one.
            tracing::error!("recovering interrupted recordings failed: {err}");
        }
        Ok(opptak)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Connects to `target`, starting the embedded server for [`Target::Embedded`].
    pub async fn connect(&self, target: &Target) -> Result<Destination> {
        match target {
            Target::Remote { url, token } => {
                let id = self.journal.upsert_destination(url, token, url).map_err(journal_error)?;
                Ok(Destination { id, client: ApiClient::new(url, token), server: None })
            }
            Target::Embedded => {
                let dir = self.data_dir.path().join("server");
                let token = embedded_token(&dir)?;
                let server = Server::builder()
                    .data_dir(&dir)
                    .user(UserToken { name: "this-computer".into(), token: token.clone() })
                    .start()
                    .await
                    .map_err(|err| Error::Embedded(err.to_string()))?;
                let id = self
                    .journal
                    .upsert_destination(EMBEDDED_URL, &token, EMBEDDED_NAME)
                    .map_err(journal_error)?;
                Ok(Destination { id, client: ApiClient::new(server.url(), &token), server: Some(server) })
            }
        }
    }

    /// The target a journaled destination stands for.
    pub fn target_of(&self, destination_id: i64) -> Result<Target> {
        let destination =
            self.journal.destination(destination_id).map_err(journal_error)?.ok_or_else(|| {
                Error::Journal(format!("destination {destination_id} is missing from the journal"))
            })?;
        Ok(if destination.base_url == EMBEDDED_URL {
            Target::Embedded
        } else {
            Target::Remote { url: destination.base_url, token: destination.token }
        })
    }

    /// Adds a finished file to the journal (or finds it there, when it was
    /// added before and not uploaded yet), with its length; its SHA-256 is
    /// learnt as the upload reads it.
    /// Without `content_type`, the file's extension names it.
    pub async fn add_file(
        &self,
        path: &Path,
        name: &str,
        content_type: Option<&str>,
    ) -> Result<LocalRecording> {
        let path = std::fs::canonicalize(path)
            .map_err(|err| Error::File { path: path.to_path_buf(), reason: err.to_string() })?;
        let metadata = std::fs::metadata(&path)
            .map_err(|err| Error::File { path: path.clone(), reason: err.to_string() })?;
        if metadata.is_dir() {
            return Err(Error::File { path, reason: "it is a folder, not a recording".into() });
        }
        if metadata.len() == 0 {
            return Err(Error::File { path, reason: "it is empty".into() });
        }
        let content_type = match content_type.or_else(|| content_type_of(&path)) {
            Some(content_type) => content_type.to_owned(),
            None => {
                return Err(Error::File {
                    path,
                    reason: "its extension does not say its media type; pass --content-type (audio/wav, audio/flac, audio/ogg, video/mp4, video/webm)".into(),
                });
            }
        };
        let content_type = content_type.as_str();
        if let Some(existing) = self.journal.recording_by_path(&path).map_err(journal_error)? {
            return Ok(existing);
        }
        // The upload hashes the file as it reads the parts (SHA-256 and MD5
        // in one pass); here it is only checked that the file can be read.
        std::fs::File::open(&path)
            .and_then(|mut file| std::io::Read::read(&mut file, &mut [0u8; 1]))
            .map_err(|err| Error::File { path: path.clone(), reason: err.to_string() })?;
        let recording = self
            .journal
            .add_recording(NewRecording::growing(
                &path,
                name,
                content_type,
                "desktop-file",
                content_type.starts_with("video/"),
            ))
            .map_err(journal_error)?;
        self.journal.mark_finished(recording.id, metadata.len(), None).map_err(journal_error)?;
        self.journal
            .recording(recording.id)
            .map_err(journal_error)?
            .ok_or_else(|| Error::Journal("recording vanished".into()))
    }

    /// Starts uploading a finished recording to `destination`.
    pub fn upload(
        &self,
        recording: &LocalRecording,
        destination: &Destination,
        config: UploadConfig,
    ) -> UploadHandle {
        let source = Source::complete(&recording.path, recording.upload_size());
        UploadHandle::start(
            self.journal.clone(),
            recording.id,
            destination.id,
            source,
            destination.client.clone(),
            config,
        )
    }

    /// Recordings whose upload is not done (not ready, not failed), oldest first.
    pub fn unfinished(&self) -> Result<Vec<LocalRecording>> {
        let all = self.journal.unfinished_uploads().map_err(journal_error)?;
        Ok(all
            .into_iter()
            .filter(|recording| recording.finished && recording.state != RecordingState::Recording)
            .collect())
    }

    /// Where `recording` goes: its journaled destination, or this computer
    /// when it has none yet.
    pub fn target_for(&self, recording: &LocalRecording) -> Result<Target> {
        match recording.destination_id {
            Some(id) => self.target_of(id),
            None => Ok(Target::Embedded),
        }
    }

    /// Starts uploading every unfinished recording in the background, as the
    /// desktop app does when it starts. Recordings for this computer go to
    /// `embedded` (the running in-process server; they wait when it is
    /// `None`), the others to their own server. Returns the running uploads.
    pub async fn resume_all(
        &self,
        embedded: Option<&Destination>,
        config: UploadConfig,
    ) -> Result<Vec<(LocalRecording, UploadHandle)>> {
        let mut running = Vec::new();
        for recording in self.unfinished()? {
            let handle = match (self.target_for(&recording)?, embedded) {
                (Target::Embedded, Some(destination)) => self.upload(&recording, destination, config.clone()),
                (Target::Embedded, None) => continue,
                (remote, _) => self.upload(&recording, &self.connect(&remote).await?, config.clone()),
            };
            tracing::info!(recording = recording.id, "resuming upload");
            running.push((recording, handle));
        }
        Ok(running)
    }

    /// Each recording with the words that say where it is.
    pub fn recordings(&self) -> Result<Vec<(LocalRecording, String)>> {
        let recordings = self.journal.recordings().map_err(journal_error)?;
        recordings
            .into_iter()
            .map(|recording| {
                let words = self.journal.status_line(recording.id).map_err(journal_error)?;
                Ok((recording, words))
            })
            .collect()
    }
}

/// The media type a file's extension names.
pub fn content_type_of(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp4" | "m4a" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        _ => return None,
    })
}

/// The embedded server's token: random, made once, readable only by this user.
fn embedded_token(dir: &Path) -> Result<String> {
    let path: PathBuf = dir.join("embedded.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    std::fs::create_dir_all(dir).map_err(|err| Error::Embedded(err.to_string()))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut file| file.write_all(token.as_bytes()))
        .map_err(|err| Error::Embedded(format!("cannot write {}: {err}", path.display())))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn resume_all_takes_an_unfinished_recording_to_ready_on_the_running_embedded_server() {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::at(temp.path().join("data"));
        let opptak = Opptak::open(&data_dir).unwrap();
        let file = temp.path().join("lesson.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&file, spec).unwrap();
        for n in 0..8000 {
            writer.write_sample((n % 200) as i16).unwrap();
        }
        writer.finalize().unwrap();
        let recording = opptak.add_file(&file, "lesson", None).await.unwrap();
        let embedded = opptak.connect(&Target::Embedded).await.unwrap();

        let running = opptak.resume_all(Some(&embedded), UploadConfig::default()).await.unwrap();
        assert_eq!(running.len(), 1);
        let (resumed, upload) = running.into_iter().next().unwrap();
        assert_eq!(resumed.id, recording.id);
        let uploaded = upload.join().await.unwrap();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap()));
        assert_eq!(uploaded.sha256, sha256);
        let journaled = opptak.journal().recording(recording.id).unwrap().unwrap();
        assert_eq!(journaled.sha256, Some(sha256), "the journal learned the SHA-256 from the parts' reads");
        assert!(opptak.unfinished().unwrap().is_empty());
        assert!(opptak.resume_all(Some(&embedded), UploadConfig::default()).await.unwrap().is_empty());
        embedded.shutdown().await;
    }
}
