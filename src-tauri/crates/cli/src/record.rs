//! `opptak devices` and `opptak record`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opptak_capture::{AudioFormat, CaptureEvent, RecorderState};
use opptak_capture::{VideoPreset, VideoSource};
use opptak_core::recording::{RecorderLimits, VideoOptions};
use opptak_core::{DataDir, Opptak, RecordOptions, RecordedFile, RecordingSession, SessionEvent};
use opptak_journal::RecordingState;
use opptak_upload::{UploadEvent, Uploaded};
use serde_json::json;

use crate::upload::{Interrupts, ServerArgs, event_json};

/// Flags of `opptak record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The microphone, by the name `opptak devices` shows [default: the system's default input].
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Stop after this many seconds [default: record until Ctrl-C or SIGTERM].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Name shown on the server [default: "Recording <date time>"].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// Refuse to start with less free disk space than this, in MB.
    #[arg(long, value_name = "MB", default_value_t = 500)]
    min_free_mb: u64,
    /// Stop (keeping the recording) when free disk space falls below this, in MB.
    #[arg(long, value_name = "MB", default_value_t = 200)]
    stop_below_mb: u64,
    /// Go on in a new file (`<name>-2.wav`, …) after this many MB of audio
    /// [default: about 4 GiB, the most a WAV file holds].
    #[arg(long, value_name = "MB", value_parser = parse_file_size_mb)]
    file_size_mb: Option<f64>,
    /// Only record, and keep the recording on this computer: `opptak resume`
    /// and the app leave it alone until `opptak upload FILE` uploads it.
    #[arg(long, conflicts_with = "server")]
    no_upload: bool,
    /// Print one JSON event per line.
    #[arg(long)]
    json: bool,
    /// Record the screen (with the microphone) into an MP4 video.
    #[arg(long)]
    screen: bool,
    /// Record this camera (with the microphone) into an MP4 video; with
    /// --screen, the camera goes in a corner of the screen.
    #[arg(long, value_name = "DEVICE")]
    camera: Option<String>,
    /// The X display whose screen --screen records [default: $DISPLAY].
    #[arg(long, value_name = ":N", requires = "screen")]
    display: Option<String>,
    /// Picture size and frames per second of a video: 720p30, 1080p30, 720p15 or 1080p15.
    #[arg(long, value_name = "PRESET", default_value_t = VideoPreset::default())]
    preset: VideoPreset,
}

impl RecordArgs {
    /// What `--screen`, `--camera` and `--display` ask to film, if anything.
    fn video(&self) -> Option<VideoOptions> {
        let source = match (self.screen, &self.camera) {
            (false, None) => return None,
            (true, None) => VideoSource::Screen { display: self.display.clone() },
            (false, Some(device)) => VideoSource::Camera { device: device.clone() },
            (true, Some(camera)) => {
                VideoSource::ScreenWithCamera { display: self.display.clone(), camera: camera.clone() }
            }
        };
        Some(VideoOptions { source, preset: self.preset })
    }
}

fn parse_file_size_mb(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(mb) if mb.is_finite() && mb >= 0.01 => Ok(mb),
        _ => Err(format!("{text:?} is not a size in MB of at least 0.01")),
    }
}

/// `opptak devices`: microphones; with `video`, screens and cameras (JSON);
/// as text, all three.
pub fn devices(json: bool, video: bool) -> anyhow::Result<ExitCode> {
    if json && video {
        let value = json!({
            "screens": opptak_capture::screens(),
            "cameras": opptak_capture::cameras(),
            "unavailable": opptak_capture::video_unavailable(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let devices = opptak_capture::input_devices()?;
    if !json {
        print_video_devices();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
    } else if devices.is_empty() {
        eprintln!("opptak: No microphone found. {}", opptak_capture::NO_MICROPHONE_ADVICE);
        return Ok(ExitCode::FAILURE);
    } else {
        for device in &devices {
            let mark = if device.is_default { "*" } else { " " };
            let channels = if device.channels == 1 {
                "1 channel".into()
            } else {
                format!("{} channels", device.channels)
            };
            println!("{mark} {} ({} Hz, {channels})", device.name, device.sample_rate);
        }
        println!("\n* is the default. Record from another with `opptak record --device NAME`.");
    }
    Ok(ExitCode::SUCCESS)
}

/// The screens and cameras, as text, before the microphones.
fn print_video_devices() {
    if let Some(why) = opptak_capture::video_unavailable() {
        println!("Screens and cameras: cannot be recorded here: {why}.\n");
        return;
    }
    let screens = opptak_capture::screens();
    println!("Screens:");
    if screens.is_empty() {
        println!("  none (no graphical desktop is running)");
    }
    for screen in &screens {
        let mark = if screen.is_default { "*" } else { " " };
        println!("{mark} {}", screen.display);
    }
    let cameras = opptak_capture::cameras();
    println!("Cameras:");
    if cameras.is_empty() {
        println!("  none");
    }
    for camera in &cameras {
        println!("  {} ({})", camera.device, camera.name);
    }
    println!("Record one with `opptak record --screen [--display :N]` or `--camera DEVICE`.\n");
    println!("Microphones:");
}

/// The one updating line of a recording in a terminal.
struct Display {
    json: bool,
    bar: Option<ProgressBar>,
    level: f32,
    state: RecorderState,
    recorded: Duration,
    upload: String,
}

impl Display {
    fn new(json: bool) -> Self {
        let bar = (!json).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self {
            json,
            bar,
            level: opptak_capture::FLOOR_DBFS,
            state: RecorderState::Recording,
            recorded: Duration::ZERO,
            upload: "upload waits for the first part".into(),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn redraw(&self) {
        let Some(bar) = &self.bar else { return };
        let seconds = self.recorded.as_secs();
        let what = match self.state {
            RecorderState::Recording => "REC",
            RecorderState::Paused => "PAUSED",
            RecorderState::DeviceLost => "NO MIC",
            RecorderState::Stopped => "STOPPED",
        };
        // −60..0 dBFS onto 20 cells.
        let cells = (((self.level + 60.0) / 3.0).clamp(0.0, 20.0)) as usize;
        bar.set_message(format!(
            "{what} {:02}:{:02}:{:02}  [{}{}] {:>4.0} dB  {}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            "#".repeat(cells),
            " ".repeat(20 - cells),
            self.level.max(-99.0),
            self.upload
        ));
    }

    fn show(&mut self, event: &SessionEvent) {
        if self.json {
            let line = match event {
                SessionEvent::Capture(event) => serde_json::to_value(event).unwrap_or_default(),
                SessionEvent::Upload { local_id, event } => event_json(*local_id, event),
                SessionEvent::ContinuedAfterSleep { previous, current } => {
                    json!({"event": "continuedAfterSleep", "previous": previous, "current": current})
                }
            };
            println!("{line}");
            return;
        }
        match event {
            SessionEvent::Capture(CaptureEvent::Level { peak_dbfs, .. }) => self.level = *peak_dbfs,
            SessionEvent::Capture(CaptureEvent::SilenceStarted { message }) => {
                self.say(&format!("Warning: {message}"));
            }
            SessionEvent::Capture(CaptureEvent::SilenceEnded) => self.say("Sound is back."),
            SessionEvent::Capture(CaptureEvent::DeviceLost { message }) => self.say(message),
            SessionEvent::Capture(CaptureEvent::Paused) => self.say("Paused. Press Enter to go on."),
            SessionEvent::Capture(CaptureEvent::Resumed) => self.say("Recording again."),
            SessionEvent::Capture(CaptureEvent::DeviceBack) => {
                self.say("The microphone is back; recording goes on.");
            }
            SessionEvent::Capture(CaptureEvent::Overrun { dropped_frames }) => {
                self.say(&format!(
                    "Warning: the computer fell behind and {dropped_frames} frames of audio were lost."
                ));
            }
            SessionEvent::Capture(CaptureEvent::RolledOver { path }) => {
                self.say(&format!("The file is full; recording goes on in {}.", path.display()));
            }
            SessionEvent::Capture(CaptureEvent::Stopped { reason: Some(reason) }) => {
                self.say(&format!("Stopped: {reason}"));
            }
            SessionEvent::Capture(CaptureEvent::Stopped { reason: None }) => {}
            SessionEvent::ContinuedAfterSleep { .. } => {
                self.say("The computer slept; the lesson goes on in a new recording.");
            }
            SessionEvent::Upload { event, .. } => match event {
                UploadEvent::PartSent { sent_bytes, .. } => {
                    self.upload = format!("uploaded {:.1} MiB", *sent_bytes as f64 / 1_048_576.0);
                }
                UploadEvent::WaitingForNetwork { .. } => {
                    self.upload = "no network: kept on this computer".into();
                }
                UploadEvent::Retrying { reason, .. } => self.upload = format!("retrying ({reason})"),
                UploadEvent::Stalled { .. } => self.upload = "connection stalled: trying again".into(),
                UploadEvent::StillChecking { .. } => self.upload = "server still checking".into(),
                UploadEvent::Finishing => self.upload = "finishing upload".into(),
                UploadEvent::Processing => self.upload = "server checking".into(),
                UploadEvent::Ready { .. } => self.upload = "safe on server".into(),
                UploadEvent::Failed { message } => self.say(&format!("Upload failed: {message}")),
                UploadEvent::SessionStarted { .. } => {}
            },
        }
        self.redraw();
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Each line typed on stdin (Enter) toggles pause. A plain thread, because
/// a read of stdin cannot be cancelled and must not hold up the exit.
fn enter_presses() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (send, presses) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            if send.send(()).is_err() {
                break;
            }
        }
    });
    presses
}

/// Shows events until the user, `--seconds` or the recorder ends the
/// recording; Enter pauses and resumes.
async fn run_until_stopped(
    session: &RecordingSession,
    display: &mut Display,
    seconds: Option<u64>,
    interrupts: &Interrupts,
) {
    let mut events = session.subscribe();
    let mut presses = enter_presses();
    let mut paused = false;
    let mut progress = session.progress();
    let deadline = async {
        match seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let stop = interrupts.requested();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = &mut deadline => break,
            Some(()) = presses.recv() => {
                paused = !paused;
                if paused { session.pause() } else { session.resume() }
            }
            changed = progress.changed() => {
                let Ok(()) = changed else { break };
                let snapshot = progress.borrow_and_update().clone();
                (display.state, display.recorded) = (snapshot.state, snapshot.recorded);
                display.redraw();
                if snapshot.state == RecorderState::Stopped {
                    break;
                }
            }
            event = events.recv() => match event {
                Ok(event) => display.show(&event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// How a file of the recording ended up.
enum Outcome {
    Ready(Uploaded),
    Kept(&'static str),
    Failed(String),
}

/// Waits for a file's upload to be ready, unless the destination cannot be
/// reached: then the file stays for `resume`.
async fn settle(opptak: &Opptak, file: RecordedFile) -> Outcome {
    let Some(upload) = file.upload else { return Outcome::Kept("onThisComputer") };
    let id = file.recording.id;
    let waiting =
        opptak.journal().recording(id).ok().flatten().is_some_and(|r| r.state == RecordingState::Waiting);
    let mut events = upload.subscribe();
    let stopper = upload.abort_handle();
    let offline = async {
        if waiting {
            return;
        }
        loop {
            match events.recv().await {
                Ok(UploadEvent::WaitingForNetwork { .. }) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    };
    tokio::select! {
        result = upload.join() => match result {
            Ok(uploaded) => Outcome::Ready(uploaded),
            // Not a failure: the recording stays `processing` for `resume`.
            Err(opptak_upload::Error::StillChecking { .. }) => Outcome::Kept("processing"),
            Err(err) => {
                // Journals the problem, so that `resume` knows whether to retry.
                if let Err(journal) = opptak.note_failure(id, &err).await {
                    tracing::error!("could not journal why the upload failed: {journal}");
                }
                Outcome::Failed(err.to_string())
            }
        },
        () = offline => {
            stopper.abort();
            Outcome::Kept("waitingForNetwork")
        }
    }
}

/// `opptak record`.
pub async fn record(args: RecordArgs, data_dir: &DataDir) -> anyhow::Result<ExitCode> {
    let opptak = Opptak::open(data_dir)?;
    let destination = if args.no_upload { None } else { Some(opptak.connect(&args.server.target()).await?) };
    let limits = RecorderLimits {
        min_free_to_start: args.min_free_mb * 1_000_000,
        min_free_while_recording: args.stop_below_mb * 1_000_000,
    };
    let options = RecordOptions {
        device: args.device.clone(),
        name: args.name.clone(),
        limits: Some(limits),
        keep_local: args.no_upload,
        max_file_bytes: args.file_size_mb.map(|mb| (mb * 1_000_000.0) as u64),
        video: args.video(),
    };
    let session = match opptak.record(options, destination.as_ref()).await {
        Ok(session) => session,
        Err(err) => {
            if let Some(destination) = destination {
                destination.shutdown().await;
            }
            return Err(err.into());
        }
    };
    let format = session.format().clone();
    let channels =
        if format.channels == 1 { "1 channel".into() } else { format!("{} channels", format.channels) };
    let how_to_stop = match args.seconds {
        Some(seconds) => format!("for {seconds} s; Enter pauses, Ctrl-C stops sooner"),
        None => "until Ctrl-C; Enter pauses and resumes".into(),
    };
    let interrupts = Interrupts::watch(
        args.json,
        "Stopping: the recording is kept and its upload goes on until it is safe on the server.",
    )?;
    let mut display = Display::new(args.json);
    let video = session.video_format().cloned();
    if args.json {
        println!(
            "{}",
            json!({"event": "recording", "localId": session.local_id(), "device": format.device, "sampleRate": format.sample_rate, "channels": format.channels, "video": video})
        );
    } else if let Some(video) = &video {
        display.say(&format!(
            "Recording the {} ({}x{} at {} fps) with the {} microphone {how_to_stop}.",
            video.source, video.width, video.height, video.fps, video.microphone
        ));
    } else {
        display.say(&format!(
            "Recording from {} ({} Hz, {channels}) {how_to_stop}.",
            format.device, format.sample_rate
        ));
    }
    run_until_stopped(&session, &mut display, args.seconds, &interrupts).await;
    display.upload = "finishing".into();
    display.redraw();
    let progress = session.progress();
    let stopped = session.stop().await?;
    // A video's length is the microphone's time recorded, not a byte count.
    let video_seconds = video.is_some().then(|| progress.borrow().recorded.as_secs_f64());
    let mut failed = false;
    for file in stopped.files {
        let recording = file.recording.clone();
        let outcome = settle(&opptak, file).await;
        let seconds = video_seconds.unwrap_or_else(|| recording_seconds(&recording, &format));
        let (status, line) = match &outcome {
            Outcome::Ready(done) => (
                "ready",
                format!(
                    "{}: {seconds:.1} s recorded, safe on server (recording {}, SHA-256 {}).",
                    recording.name, done.recording_id, done.sha256
                ),
            ),
            Outcome::Kept("onThisComputer") => (
                "onThisComputer",
                format!(
                    "{}: {seconds:.1} s recorded, kept on this computer ({path}). `opptak upload \"{path}\"` uploads it.",
                    recording.name,
                    path = recording.path.display()
                ),
            ),
            Outcome::Kept("processing") => (
                "processing",
                format!(
                    "{}: {seconds:.1} s recorded and uploaded; the server is still checking it. `opptak resume` waits for it.",
                    recording.name
                ),
            ),
            Outcome::Kept(status) => (
                *status,
                format!(
                    "{}: {seconds:.1} s recorded and kept on this computer; the server cannot be reached. `opptak resume` uploads it later.",
                    recording.name
                ),
            ),
            Outcome::Failed(message) => {
                failed = true;
                (
                    "failed",
                    format!(
                        "{}: {seconds:.1} s recorded and kept on this computer, but the upload failed: {message}",
                        recording.name
                    ),
                )
            }
        };
        if args.json {
            let (recording_id, sha256) = match &outcome {
                Outcome::Ready(done) => (Some(done.recording_id.clone()), Some(done.sha256.clone())),
                _ => (None, recording.sha256.clone()),
            };
            let message = match &outcome {
                Outcome::Failed(message) => Some(message.clone()),
                _ => None,
            };
            println!(
                "{}",
                json!({"localId": recording.id, "recordingId": recording_id, "status": status, "sha256": sha256, "path": recording.path, "seconds": seconds, "bytes": recording.upload_size(), "stopReason": stopped.reason, "message": message})
            );
        } else {
            display.say(&line);
        }
    }
    display.finish();
    if let Some(destination) = destination {
        destination.shutdown().await;
    }
    // A recorder that stopped on its own (a full disk) did not record what
    // was asked, though it kept what it had.
    Ok(if failed || stopped.reason.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Seconds of audio in a recording Opptak wrote (16-bit PCM after a 44-byte header).
fn recording_seconds(recording: &opptak_journal::LocalRecording, format: &AudioFormat) -> f64 {
    let bytes_per_second = f64::from(format.sample_rate) * f64::from(format.channels) * 2.0;
    recording.upload_size().saturating_sub(44) as f64 / bytes_per_second.max(1.0)
}
