//! `opptak serve` as a real process, and a minimal client of its API for
//! tests that need a server before Opptak's own upload engine exists.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use md5::Digest as _;
use opptak_api::{
    BodyFormat, ContentType, FinishPart, FinishRequest, FinishResponse, ListPartsResponse, PartsRequest,
    PartsResponse, Recording, RecordingStatus, Request as _, Response as _, ResponseFormat, StartRequest,
    StartResponse,
};

use crate::SeaweedFs;
use crate::process::ChildGuard;
use crate::workspace_bin;

/// The token of the user every test server has.
pub const TEST_TOKEN: &str = "teacher-test-token";

/// A running `opptak serve`, stopped by PID when dropped.
#[derive(Debug)]
pub struct OpptakServe {
    /// The base URL from its `listening on …` line.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The process.
    pub process: ChildGuard,
}

impl OpptakServe {
    /// Starts `opptak serve --listen 127.0.0.1:0` on `data_dir` with the test
    /// user, `extra` flags and `env`, and waits for its first stdout line.
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::start_with(data_dir, "127.0.0.1:0", extra, env)
    }

    /// `opptak serve --store s3` on a new bucket `bucket` of `seaweed`, with 5 MiB parts.
    pub fn start_on_seaweed(data_dir: &Path, seaweed: &SeaweedFs, bucket: &str) -> anyhow::Result<Self> {
        seaweed.create_bucket(bucket)?;
        Self::start_on_bucket(data_dir, seaweed, bucket, &[], &[])
    }

    /// `opptak serve --store s3` on the existing bucket `bucket` of
    /// `seaweed`, with 5 MiB parts, `extra` flags and `env` besides
    /// SeaweedFS's credentials.
    pub fn start_on_bucket(
        data_dir: &Path,
        seaweed: &SeaweedFs,
        bucket: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let endpoint = seaweed.endpoint();
        let mut args = vec![
            "--part-size-mib",
            "5",
            "--store",
            "s3",
            "--s3-endpoint",
            &endpoint,
            "--s3-bucket",
            bucket,
            "--s3-path-style",
        ];
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.extend(seaweed.env());
        Self::start(data_dir, &args, &env)
    }

    /// Like [`start`](Self::start), listening on `listen`.
    pub fn start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(data_dir, listen, extra, &[])
    }

    fn start_with(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(workspace_bin("opptak"));
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(["--user", &format!("teacher:{TEST_TOKEN}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = ChildGuard::spawn("opptak serve", &mut command)?;
        let stdout = process.take_stdout().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow::anyhow!("opptak serve printed {first:?} instead of 'listening on …'"))?
            .to_owned();
        Ok(Self { url, data_dir: data_dir.to_path_buf(), process })
    }

    /// A client for the test user.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url, TEST_TOKEN)
    }
}

/// Calls the API in JSON, and PUTs parts to presigned URLs.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

const API: &str = "restapi/personal/mediarecorder";

impl ApiClient {
    /// A client of the server at `base` signing in with `token`.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn post<R: opptak_api::Response>(&self, endpoint: &str, body: Vec<u8>) -> anyhow::Result<R> {
        let response = self
            .http
            .post(format!("{}/{API}/native/upload/{endpoint}/v1", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        anyhow::ensure!(status.is_success(), "{endpoint}: {status} {}", String::from_utf8_lossy(&bytes));
        Ok(R::decode(ResponseFormat::Json, &bytes)?)
    }

    /// `start` for a WAV recording.
    pub async fn start(&self, name: &str) -> anyhow::Result<StartResponse> {
        let request = StartRequest {
            recording_name: name.into(),
            recorder_type: "desktop-audio".into(),
            is_video_recording: false,
            used_in_file_uploader: false,
            content_type: ContentType::Wav,
            expected_size_bytes: None,
        };
        self.post("start", request.encode(BodyFormat::Json)).await
    }

    /// Presigns and PUTs every part of `data`; returns the finish parts.
    pub async fn put_parts(&self, started: &StartResponse, data: &[u8]) -> anyhow::Result<Vec<FinishPart>> {
        let chunks: Vec<&[u8]> = data.chunks(started.part_size_bytes as usize).collect();
        let mut parts = Vec::new();
        for (batch_index, batch) in chunks.chunks(opptak_api::MAX_PRESIGN_BATCH).enumerate() {
            let first = batch_index * opptak_api::MAX_PRESIGN_BATCH + 1;
            let request = PartsRequest {
                recording_id: started.recording_id.clone(),
                upload_id: started.upload_id.clone(),
                part_numbers: (first..first + batch.len()).map(|n| n as u32).collect(),
                content_md5: Some(
                    batch
                        .iter()
                        .map(|chunk| opptak_api::ContentMd5::from_digest(md5::Md5::digest(chunk).into()))
                        .collect(),
                ),
            };
            let presigned: PartsResponse = self.post("parts", request.encode(BodyFormat::Json)).await?;
            for (part, chunk) in presigned.parts.iter().zip(batch) {
                let mut put = self.http.put(&part.url).body(chunk.to_vec());
                for (name, value) in &part.headers {
                    put = put.header(name, value);
                }
                let response = put.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "PUT part {}: {}",
                    part.part_number,
                    response.status()
                );
                let etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                parts.push(FinishPart { part_number: part.part_number, etag });
            }
        }
        Ok(parts)
    }

    /// Presigns and PUTs one part.
    pub async fn put_part(
        &self,
        started: &StartResponse,
        part_number: u32,
        chunk: bytes::Bytes,
    ) -> anyhow::Result<FinishPart> {
        let request = PartsRequest {
            recording_id: started.recording_id.clone(),
            upload_id: started.upload_id.clone(),
            part_numbers: vec![part_number],
            content_md5: None,
        };
        let presigned: PartsResponse = self.post("parts", request.encode(BodyFormat::Json)).await?;
        let part = &presigned.parts[0];
        let response = self.http.put(&part.url).body(chunk).send().await?;
        anyhow::ensure!(response.status().is_success(), "PUT part {part_number}: {}", response.status());
        let etag =
            response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok(FinishPart { part_number, etag })
    }

    /// `listparts`.
    pub async fn list_parts(&self, started: &StartResponse) -> anyhow::Result<ListPartsResponse> {
        let body = serde_json::json!({"recordingId": started.recording_id, "uploadId": started.upload_id});
        self.post("listparts", body.to_string().into_bytes()).await
    }

    /// `finish` with `parts`.
    pub async fn finish(
        &self,
        started: &StartResponse,
        parts: Vec<FinishPart>,
    ) -> anyhow::Result<FinishResponse> {
        let request = FinishRequest {
            recording_id: started.recording_id.clone(),
            upload_id: started.upload_id.clone(),
            object_key: started.object_key.clone(),
            recording_name: "test".into(),
            recorder_type: "desktop-audio".into(),
            is_video_recording: false,
            used_in_file_uploader: false,
            parts,
        };
        self.post("finish", request.encode(BodyFormat::Json)).await
    }

    /// `abort`.
    pub async fn abort(&self, started: &StartResponse) -> anyhow::Result<()> {
        let body = serde_json::json!({"recordingId": started.recording_id, "uploadId": started.upload_id});
        self.post::<opptak_api::AbortResponse>("abort", body.to_string().into_bytes()).await.map(|_| ())
    }

    /// `GET recordings/{id}/v1`.
    pub async fn recording(&self, recording_id: &str) -> anyhow::Result<Recording> {
        let response = self
            .http
            .get(format!("{}/{API}/recordings/{recording_id}/v1", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        anyhow::ensure!(status.is_success(), "recording: {status} {}", String::from_utf8_lossy(&bytes));
        Ok(Recording::decode(ResponseFormat::Json, &bytes)?)
    }

    /// Polls the recording until it leaves `processing`, for at most `timeout`.
    pub async fn wait_until_processed(
        &self,
        recording_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Recording> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recording(recording_id).await {
                Ok(recording) if recording.status != RecordingStatus::Processing => return Ok(recording),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(recording) => anyhow::bail!("still {:?} after {timeout:?}", recording.status),
                Err(err) => return Err(err),
            }
        }
    }
}

/// A valid 16-bit mono 48 kHz WAV file of exactly `len` bytes (≥ 44, even).
pub fn wav_of_len(len: usize) -> Vec<u8> {
    assert!(len >= 44 && len.is_multiple_of(2), "a 16-bit mono WAV has a 44-byte header and 2-byte frames");
    let data_len = (len - 44) as u32;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&48_000u32.to_le_bytes());
    out.extend_from_slice(&96_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    let mut state = 0x2545_f491_u32 ^ len as u32;
    while out.len() < len {
        // xorshift noise: incompressible, different for every length
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(&(state as u16).to_le_bytes());
    }
    out
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
