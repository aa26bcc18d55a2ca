//! `opptak upload`, `opptak resume` and `opptak recordings`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opptak_core::{DataDir, FailedWaits, Opptak, RetryPolicy, Target};
use opptak_journal::{LocalRecording, RecordingState};
use opptak_upload::{Error as UploadError, STALL_TIMEOUT, UploadConfig, UploadEvent, UploadHandle, Uploaded};
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
    /// Send a part again after this many seconds without a byte moving
    /// (a slow connection is fine; a silent one is not) [default: 45].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    stall_seconds: Option<u64>,
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
            UploadEvent::Stalled { stalled_for, in_flight, retry_in, .. } => {
                bar.println(format!(
                    "The connection stalled (nothing moved for {} s); trying again in {}s, {in_flight} part{} at a time.",
                    stalled_for.as_secs(),
                    retry_in.as_secs().max(1),
                    if *in_flight == 1 { "" } else { "s" }
                ));
            }
            UploadEvent::StillChecking { waited, .. } => {
                bar.println(format!(
                    "The server is still checking the recording after {} minutes; stopping here.",
                    waited.as_secs().div_ceil(60)
                ));
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
        UploadEvent::Stalled { part_number, stalled_for, in_flight, retry_in } => {
            json!({"event": "stalled", "localId": local_id, "partNumber": part_number, "stalledForMs": stalled_for.as_millis() as u64, "inFlight": in_flight, "retryInMs": retry_in.as_millis() as u64})
        }
        UploadEvent::StillChecking { recording_id, waited } => {
            json!({"event": "stillChecking", "localId": local_id, "recordingId": recording_id, "waitedMs": waited.as_millis() as u64})
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

/// Ctrl-C and SIGTERM while a command runs: the first asks it to stop
/// gracefully and says what happens; the second exits at once. (Once a
/// handler is installed the signal no longer ends the process by itself,
/// so without the second a command waiting on a slow server could not be
/// interrupted.) Exiting at once is safe: every journal change is one
/// SQLite transaction, and what was in flight is sent again on resume.
pub(crate) struct Interrupts {
    requested: tokio::sync::watch::Receiver<bool>,
}

/// The exit status after Ctrl-C, as shells report it (128 + SIGINT).
pub(crate) const INTERRUPTED: u8 = 130;

impl Interrupts {
    /// Starts watching; `on_first` is what the first press does, said in
    /// the user's words (JSON lines with `json`).
    pub(crate) fn watch(json: bool, on_first: &str) -> anyhow::Result<Self> {
        let (request, requested) = tokio::sync::watch::channel(false);
        let on_first = on_first.to_owned();
        // Installed now, before the command's work starts, so no press is lost.
        let mut signals = StopSignals::install()?;
        tokio::spawn(async move {
            signals.next().await;
            let _ = request.send(true);
            let message = format!("{on_first} Press Ctrl-C again to quit at once.");
            if json {
                println!("{}", json!({"event": "stopping", "message": message}));
            } else {
                eprintln!("{message}");
            }
            signals.next().await;
            let message =
                "Quit at once. Everything sent so far is kept; `opptak resume` carries on from there.";
            if json {
                println!("{}", json!({"event": "quit", "message": message}));
            } else {
                eprintln!("{message}");
            }
            std::process::exit(i32::from(INTERRUPTED));
        });
        Ok(Self { requested })
    }

    /// Returns once the first stop was asked for.
    pub(crate) async fn requested(&self) {
        let mut requested = self.requested.clone();
        let _ = requested.wait_for(|asked| *asked).await;
    }
}

/// Ctrl-C and SIGTERM, installed once.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { interrupt: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How a driven upload ended.
enum Ended {
    /// Safe on the server.
    Ready(Uploaded),
    /// Finish was accepted and the server is (still) checking it.
    Processing,
    /// The user stopped it; it continues on resume.
    Stopped,
}

/// Runs one upload to its end (or to `Processing` with `no_wait`),
/// reporting its events, until the user asks to stop.
async fn drive(
    opptak: &Opptak,
    upload: UploadHandle,
    reporter: Reporter,
    local_id: i64,
    no_wait: bool,
    interrupts: &Interrupts,
) -> Result<Ended, String> {
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
        result = upload.join() => match result {
            Ok(uploaded) => Ok(Ended::Ready(uploaded)),
            Err(UploadError::StillChecking { .. }) => Ok(Ended::Processing),
            Err(err) => {
                // Journals the problem, so that `resume` knows whether to retry.
                if let Err(journal) = opptak.note_failure(local_id, &err).await {
                    tracing::error!("could not journal why the upload failed: {journal}");
                }
                Err(err.to_string())
            }
        },
        Ok(()) = accepted, if no_wait => {
            stopper.abort();
            Ok(Ended::Processing)
        }
        () = interrupts.requested() => {
            stopper.abort();
            Ok(Ended::Stopped)
        }
    };
    let _ = printer.await;
    result
}

/// What the user is told the first Ctrl-C does to an upload.
const STOPPING_UPLOAD: &str =
    "Stopping the upload. The parts already sent are kept, and `opptak resume` continues from there.";

fn final_line(json: bool, recording: &LocalRecording, ended: &Ended) {
    let uploaded = match ended {
        Ended::Ready(done) => Some(done),
        Ended::Processing => None,
        Ended::Stopped => {
            if json {
                println!("{}", json!({"localId": recording.id, "status": "stopped"}));
            } else {
                println!(
                    "{}: upload stopped; the recording stays on this computer. `opptak resume` continues it.",
                    recording.name
                );
            }
            return;
        }
    };
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
    let config = UploadConfig {
        concurrency: usize::from(args.concurrency),
        stall_timeout: args.stall_seconds.map_or(STALL_TIMEOUT, Duration::from_secs),
        ..UploadConfig::default()
    };
    let interrupts = Interrupts::watch(args.json, STOPPING_UPLOAD)?;
    let reporter = Reporter::new(args.json, &recording.name, recording.upload_size());
    let upload = opptak.upload(&recording, &destination, config);
    let result = drive(&opptak, upload, reporter, recording.id, args.no_wait, &interrupts).await;
    destination.shutdown().await;
    match result {
        Ok(ended) => {
            final_line(args.json, &recording, &ended);
            Ok(match ended {
                Ended::Stopped => ExitCode::from(INTERRUPTED),
                Ended::Ready(_) | Ended::Processing => ExitCode::SUCCESS,
            })
        }
        Err(message) => {
            if args.json {
                println!("{}", json!({"localId": recording.id, "status": "failed", "message": message}));
            }
            anyhow::bail!(message)
        }
    }
}

/// `opptak resume`: continues every unfinished upload, one at a time,
/// after taking up the failed ones that are due a retry (all of them with
/// `retry_failed`), and says what each failed one left waits for.
pub async fn resume(
    json: bool,
    retry_failed: bool,
    policy: RetryPolicy,
    data_dir: &DataDir,
) -> anyhow::Result<ExitCode> {
    let opptak = Opptak::open(data_dir)?.with_retry_policy(policy);
    if retry_failed {
        for recording in opptak.journal().recordings()? {
            if recording.state == RecordingState::Failed && recording.finished {
                opptak.retry(recording.id).await?;
            }
        }
    }
    opptak.begin_due_retries(true).await?;
    let pending = opptak.unfinished()?;
    let mut failures = 0;
    if pending.is_empty() && !json {
        println!(
            "Nothing to resume: every recording is safe on the server, kept on this computer, or failed."
        );
    }
    let interrupts = Interrupts::watch(json, STOPPING_UPLOAD)?;
    let mut tried = Vec::with_capacity(pending.len());
    for recording in pending {
        tried.push(recording.id);
        let destination = opptak.connect(&opptak.target_for(&recording)?).await?;
        let reporter = Reporter::new(json, &recording.name, recording.upload_size());
        let upload = opptak.upload(&recording, &destination, UploadConfig::default());
        let result = drive(&opptak, upload, reporter, recording.id, false, &interrupts).await;
        destination.shutdown().await;
        match result {
            Ok(Ended::Stopped) => {
                final_line(json, &recording, &Ended::Stopped);
                return Ok(ExitCode::from(INTERRUPTED));
            }
            Ok(ended) => final_line(json, &recording, &ended),
            Err(message) => {
                failures += 1;
                let waits = opptak
                    .journal()
                    .recording(recording.id)?
                    .and_then(|failed| opptak.failed_waits_for(&failed));
                let next = waits.map(|waits| what_next(waits, policy)).unwrap_or_default();
                if json {
                    println!(
                        "{}",
                        json!({"localId": recording.id, "status": "failed", "message": message, "waitsFor": waits.map(waits_json)})
                    );
                } else {
                    eprintln!("{}: {message}{next}", recording.name);
                }
            }
        }
    }
    // Failed recordings this run left alone: say what each waits for.
    for recording in opptak.journal().recordings()? {
        let Some(waits) = opptak.failed_waits_for(&recording) else { continue };
        if tried.contains(&recording.id) {
            continue;
        }
        let reason = recording
            .error
            .clone()
            .or_else(|| recording.problem.map(|problem| problem.describe().to_owned()))
            .unwrap_or_default();
        if json {
            println!(
                "{}",
                json!({"localId": recording.id, "status": "failed", "message": reason, "waitsFor": waits_json(waits)})
            );
        } else {
            eprintln!(
                "{}: failed: {}{}",
                recording.name,
                reason.trim_end_matches('.'),
                what_next(waits, policy)
            );
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What a failed recording waits for, in a sentence to follow its reason.
fn what_next(waits: FailedWaits, policy: RetryPolicy) -> String {
    match waits {
        FailedWaits::Teacher => {
            ". Retrying does not help until that is fixed; then `opptak resume --failed` tries again.".into()
        }
        FailedWaits::RetriesUsedUp => format!(
            ". It was retried {} times without success; `opptak resume --failed` tries again.",
            policy.max_attempts
        ),
        FailedWaits::RetryAt(at) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
            match at.saturating_sub(now) {
                ..=0 => ". The next `opptak resume` tries again.".into(),
                seconds => {
                    format!(". `opptak resume` tries again in {} minute(s) or later.", (seconds + 59) / 60)
                }
            }
        }
    }
}

fn waits_json(waits: FailedWaits) -> serde_json::Value {
    match waits {
        FailedWaits::Teacher => json!({"kind": "teacher"}),
        FailedWaits::RetriesUsedUp => json!({"kind": "retriesUsedUp"}),
        FailedWaits::RetryAt(at) => json!({"kind": "retryAt", "unixSeconds": at}),
    }
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
                    "problem": recording.problem,
                    "retryAttempts": recording.retry_attempts,
                    "keptOnThisComputer": recording.keep_local,
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
