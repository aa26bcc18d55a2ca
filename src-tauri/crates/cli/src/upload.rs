//! `opptak upload`, `opptak resume` and `opptak recordings`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opptak_core::{DataDir, Opptak, Target};
use opptak_journal::LocalRecording;
use opptak_upload::{UploadConfig, UploadEvent, UploadHandle, Uploaded};
use serde_json::json;

/// Where to upload: the embedded server, or `--server` with `--token`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Base URL of the school's server or LMS [default: this computer's own server].
    #[arg(long, value_name = "URL", requires = "token")]
    server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, value_name = "TOKEN", requires = "server", env = "OPPTAK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ServerArgs {
    pub(crate) fn target(&self) -> Target {
        match (&self.server, &self.token) {
            (Some(url), Some(token)) => Target::Remote { url: url.clone(), token: token.clone() },
            _ => Target::Embedded,
        }
    }
}

/// Flags of `opptak upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The recording file.
    file: PathBuf,
    /// Name shown on the server [default: the file name].
    #[arg(long)]
    name: Option<String>,
    /// Media type [default: from the extension: .wav .flac .ogg .mp4 .webm].
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// Parts in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Exit once every part is in storage and finish is accepted, without
    /// waiting for the server's check.
    #[arg(long)]
    no_wait: bool,
    /// Print one JSON event per line.
    #[arg(long)]
    json: bool,
}

/// How the CLI shows an upload's events.
struct Reporter {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Reporter {
    fn new(json: bool, name: &str, total: u64) -> Self {
        let bar = (!json).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar
        });
        Self { json, bar }
    }

    fn show(&self, local_id: i64, event: &UploadEvent) {
        if self.json {
            println!("{}", event_json(local_id, event));
            return;
        }
        let Some(bar) = &self.bar else { return };
        match event {
            UploadEvent::PartSent { sent_bytes, .. } => bar.set_position(*sent_bytes),
            UploadEvent::SessionStarted { restarted: Some(reason), .. } => {
                bar.println(format!("The earlier upload session ended ({reason}); starting a new one."));
            }
            UploadEvent::WaitingForNetwork { reason, retry_in } => {
                bar.println(format!(
                    "Waiting for the network ({reason}); trying again in {}s.",
                    retry_in.as_secs().max(1)
                ));
            }
            UploadEvent::Retrying { reason, retry_in } => {
                bar.println(format!("Retrying in {:.1}s: {reason}", retry_in.as_secs_f64()));
            }
            UploadEvent::Finishing => bar.set_message("finishing"),
            UploadEvent::Processing => bar.set_message("server checking"),
            _ => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn event_json(local_id: i64, event: &UploadEvent) -> serde_json::Value {
    match event {
        UploadEvent::SessionStarted { recording_id, restarted } => {
            json!({"event": "sessionStarted", "localId": local_id, "recordingId": recording_id, "restarted": restarted})
        }
        UploadEvent::PartSent { part_number, sent_bytes, total_bytes } => {
            json!({"event": "partSent", "localId": local_id, "partNumber": part_number, "sentBytes": sent_bytes, "totalBytes": total_bytes})
        }
        UploadEvent::Retrying { reason, retry_in } => {
            json!({"event": "retrying", "localId": local_id, "reason": reason, "retryInMs": retry_in.as_millis() as u64})
        }
        UploadEvent::WaitingForNetwork { reason, retry_in } => {
            json!({"event": "waitingForNetwork", "localId": local_id, "reason": reason, "retryInMs": retry_in.as_millis() as u64})
        }
        UploadEvent::Finishing => json!({"event": "finishing", "localId": local_id}),
        UploadEvent::Processing => json!({"event": "processing", "localId": local_id}),
        UploadEvent::Ready { recording_id, sha256, bytes } => {
            json!({"event": "ready", "localId": local_id, "recordingId": recording_id, "sha256": sha256, "bytes": bytes})
        }
        UploadEvent::Failed { message } => {
            json!({"event": "failed", "localId": local_id, "message": message})
        }
    }
}

/// Runs one upload to its end (or to `Processing` with `no_wait`),
/// reporting its events.
async fn drive(
    upload: UploadHandle,
    reporter: Reporter,
    local_id: i64,
    no_wait: bool,
) -> Result<Option<Uploaded>, String> {
    let mut events = upload.subscribe();
    let (processing, accepted) = tokio::sync::oneshot::channel();
    // Prints until the engine and the handle are gone, so the last events
    // are shown before the final line.
    let printer = tokio::spawn(async move {
        let mut processing = Some(processing);
        loop {
            match events.recv().await {
                Ok(event) => {
                    reporter.show(local_id, &event);
                    if event == UploadEvent::Processing
                        && let Some(processing) = processing.take()
                    {
                        let _ = processing.send(());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        reporter.finish();
    });
    let stopper = upload.abort_handle();
    let result = tokio::select! {
        result = upload.join() => result.map(Some).map_err(|err| err.to_string()),
        Ok(()) = accepted, if no_wait => {
            stopper.abort();
            Ok(None)
        }
    };
    let _ = printer.await;
    result
}

fn final_line(json: bool, recording: &LocalRecording, uploaded: Option<&Uploaded>) {
    match (json, uploaded) {
        (true, Some(done)) => {
            println!(
                "{}",
                json!({"recordingId": done.recording_id, "status": "ready", "sha256": done.sha256, "localId": recording.id})
            );
        }
        (true, None) => println!("{}", json!({"localId": recording.id, "status": "processing"})),
        (false, Some(done)) => {
            println!(
                "{}: safe on server (recording {}, SHA-256 {}).",
                recording.name, done.recording_id, done.sha256
            );
        }
        (false, None) => {
            println!(
                "{}: uploaded; the server is checking it. `opptak resume` waits for it.",
                recording.name
            );
        }
    }
}

/// `opptak upload`.
pub async fn upload(args: UploadArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Recording".into())
    });
    let opptak = Opptak::open(data_dir)?;
    let recording = opptak.add_file(&args.file, &name, args.content_type.as_deref()).await?;
    let destination = opptak.connect(&args.server.target()).await?;
    let config = UploadConfig { concurrency: usize::from(args.concurrency), ..UploadConfig::default() };
    let reporter = Reporter::new(args.json, &recording.name, recording.upload_size());
    let upload = opptak.upload(&recording, &destination, config);
    let result = drive(upload, reporter, recording.id, args.no_wait).await;
    destination.shutdown().await;
    match result {
        Ok(uploaded) => {
            final_line(args.json, &recording, uploaded.as_ref());
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            if args.json {
                println!("{}", json!({"localId": recording.id, "status": "failed", "message": message}));
            }
            anyhow::bail!(message)
        }
    }
}

/// `opptak resume`: continues every unfinished upload, one at a time.
pub async fn resume(json: bool, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let opptak = Opptak::open(data_dir)?;
    let pending = opptak.unfinished()?;
    if pending.is_empty() {
        if !json {
            println!("Nothing to resume: every recording is safe on the server or was never uploaded.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failures = 0;
    for recording in pending {
        let destination = opptak.connect(&opptak.target_for(&recording)?).await?;
        let reporter = Reporter::new(json, &recording.name, recording.upload_size());
        let upload = opptak.upload(&recording, &destination, UploadConfig::default());
        let result = drive(upload, reporter, recording.id, false).await;
        destination.shutdown().await;
        match result {
            Ok(uploaded) => final_line(json, &recording, uploaded.as_ref()),
            Err(message) => {
                failures += 1;
                if json {
                    println!("{}", json!({"localId": recording.id, "status": "failed", "message": message}));
                } else {
                    eprintln!("{}: {message}", recording.name);
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `opptak recordings`.
pub fn recordings(json: bool, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let opptak = Opptak::open(data_dir)?;
    let recordings = opptak.recordings()?;
    if json {
        let list: Vec<serde_json::Value> = recordings
            .iter()
            .map(|(recording, words)| {
                json!({
                    "localId": recording.id,
                    "name": recording.name,
                    "path": recording.path,
                    "state": recording.state.as_str(),
                    "status": words,
                    "bytes": recording.upload_size(),
                    "sha256": recording.sha256,
                    "error": recording.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if recordings.is_empty() {
        println!("No recordings yet.");
    } else {
        for (recording, words) in &recordings {
            println!("{:>4}  {:<32}  {}", recording.id, recording.name, words);
        }
    }
    Ok(ExitCode::SUCCESS)
}
