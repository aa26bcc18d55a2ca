//! Recording from a microphone into crash-safe WAV files.
//!
//! Three parties, so that the audio callback never waits:
//! - cpal's callback converts samples to 16-bit and pushes them into a
//!   lock-free ring buffer (rtrb); it never blocks or allocates, and counts
//!   what did not fit;
//! - the recorder thread owns the stream and the file: it drains the ring
//!   ten times a second, writes, measures levels, and every second
//!   commits (header + fsync) and publishes the durable length;
//! - the owner ([`Recorder`]) sends it pause, resume and stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::level::{Level, LevelMeter, SilenceChange, SilenceWatchdog};
use crate::wav::{DurableWav, MAX_DATA_BYTES};
use crate::{Error, Result};

/// How often the recorder thread drains the ring buffer (which holds 2 s).
/// Waking less often is most of what the recorder can save: at 20 ms it
/// cost a fifth more CPU than at 100 ms.
const TICK: Duration = Duration::from_millis(100);
/// How often the file is committed (header written, fsynced).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// A stream that delivers nothing for this long has lost its device.
const NO_DATA_TIMEOUT: Duration = Duration::from_secs(4);
/// How often a lost device is looked for again.
const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// Level events per second.
const LEVELS_PER_SECOND: u32 = 20;

/// What to record and the limits to keep.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The input's name as [`crate::input_devices`] lists it; `None` for the default.
    pub device: Option<String>,
    /// The first WAV file; it must not exist. Further files (past the WAV
    /// size limit) are named `<stem>-2.wav`, `<stem>-3.wav`, …
    pub path: PathBuf,
    /// Recording does not start with less free disk space than this.
    pub min_free_to_start: u64,
    /// Recording stops (keeping what it has) below this much free space.
    pub min_free_while_recording: u64,
    /// Input whose peak stays below this level counts as silence.
    pub silence_threshold_dbfs: f32,
    /// How long silence lasts before [`CaptureEvent::SilenceStarted`].
    pub silence_after: Duration,
    /// Audio bytes per file before the recording rolls over to a new file.
    pub max_data_bytes: u64,
}

impl RecorderConfig {
    /// The defaults: 500 MB free to start, stop below 200 MB, silence is
    /// 10 s below −60 dBFS, files up to the WAV limit of 4 GiB.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            device: None,
            path: path.into(),
            min_free_to_start: 500_000_000,
            min_free_while_recording: 200_000_000,
            silence_threshold_dbfs: -60.0,
            silence_after: Duration::from_secs(10),
            max_data_bytes: MAX_DATA_BYTES,
        }
    }
}

/// What is being recorded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioFormat {
    /// The input's name.
    pub device: String,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
}

/// Where the recorder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RecorderState {
    /// Audio is being written.
    Recording,
    /// The user paused; nothing is written.
    Paused,
    /// The microphone went away; nothing is written until it is back.
    DeviceLost,
    /// Recording ended; every file is finished.
    Stopped,
}

/// One file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WavFile {
    /// The file.
    pub path: PathBuf,
    /// Bytes from its start that are fsynced (all but the header's sizes
    /// are final; the header is rewritten at each commit).
    pub durable_len: u64,
    /// Whether the file is complete and will not change again.
    pub finished: bool,
    /// Frames of audio written to it.
    pub frames: u64,
}

/// The recorder's state as it changes (about once a second).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Where the recorder is.
    pub state: RecorderState,
    /// The recording's files, in order; only the last may be unfinished.
    pub files: Vec<WavFile>,
    /// How much audio was written in all.
    pub recorded: Duration,
    /// Why the recorder stopped on its own (a full disk, a write error);
    /// set with the final [`RecorderState::Stopped`].
    pub stop_reason: Option<String>,
}

/// Something the user should see while recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum CaptureEvent {
    /// The level of the last 50 ms.
    #[serde(rename_all = "camelCase")]
    Level {
        /// Peak in dBFS.
        peak_dbfs: f32,
        /// RMS in dBFS.
        rms_dbfs: f32,
    },
    /// The input has been silent for a while: the microphone may be muted.
    SilenceStarted {
        /// What to tell the user.
        message: String,
    },
    /// Sound is back after [`CaptureEvent::SilenceStarted`].
    SilenceEnded,
    /// The user paused; nothing is recorded until [`CaptureEvent::Resumed`].
    Paused,
    /// Recording goes on after a pause.
    Resumed,
    /// The microphone went away; recording is paused until it is back.
    DeviceLost {
        /// What happened and what to do.
        message: String,
    },
    /// The microphone is back and recording goes on.
    DeviceBack,
    /// Samples were lost because the recorder fell behind.
    Overrun {
        /// Frames lost in all so far.
        dropped_frames: u64,
    },
    /// A file reached the WAV size limit; recording goes on in `path`.
    RolledOver {
        /// The new file.
        path: PathBuf,
    },
    /// Recording ended, by request or by itself (`reason` then says why).
    Stopped {
        /// Why the recorder stopped on its own, e.g. the disk is nearly full.
        reason: Option<String>,
    },
}

enum Command {
    Pause,
    Resume,
    Stop,
    StreamFailed(String),
}

/// Counters the audio callback shares with the recorder thread.
#[derive(Debug, Default)]
struct Shared {
    paused: AtomicBool,
    callbacks: AtomicU64,
    dropped_samples: AtomicU64,
}

/// A recording in progress. Stop it with [`Recorder::stop`]; dropping it
/// stops it too and finishes the file.
#[derive(Debug)]
pub struct Recorder {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<Result<Vec<WavFile>>>>,
    progress: watch::Receiver<Progress>,
    events: broadcast::Sender<CaptureEvent>,
    format: AudioFormat,
}

impl Recorder {
    /// Opens the input and starts writing `config.path`. Fails — creating
    /// no file — when there is no such input, it cannot be opened, or the
    /// disk is too full.
    pub fn start(config: RecorderConfig) -> Result<Self> {
        let dir = config.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        check_free_space(dir, config.min_free_to_start)?;
        let (events, _) = broadcast::channel(256);
        let (commands_tx, commands) = mpsc::channel();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let thread_events = events.clone();
        let errors = commands_tx.clone();
        let thread = std::thread::Builder::new()
            .name("opptak-recorder".into())
            .spawn(move || {
                let opened = Input::open(config.device.as_deref(), None, &errors);
                let input = match opened {
                    Ok(input) => input,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return Ok(Vec::new());
                    }
                };
                let mut writer = match Writer::create(&config, &input.format, thread_events) {
                    Ok(writer) => writer,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return Ok(Vec::new());
                    }
                };
                let _ = ready_tx.send(Ok((input.format.clone(), writer.progress_receiver())));
                writer.run(input, &commands, &errors, &config)
            })
            .map_err(|err| Error::Backend(format!("cannot start the recorder thread: {err}")))?;
        match ready.recv() {
            Ok(Ok((format, progress))) => {
                tracing::info!(
                    device = format.device,
                    rate = format.sample_rate,
                    channels = format.channels,
                    "recording started"
                );
                Ok(Self { commands: commands_tx, thread: Some(thread), progress, events, format })
            }
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => Err(Error::Backend(match thread.join() {
                Ok(_) => "the recorder thread ended early".into(),
                Err(panic) => panic_message(panic),
            })),
        }
    }

    /// The input and its format.
    pub fn format(&self) -> &AudioFormat {
        &self.format
    }

    /// The recorder's state, files and durable lengths, updated as they change.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Levels, warnings and changes, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<CaptureEvent> {
        self.events.subscribe()
    }

    /// Stops writing until [`Recorder::resume`]; paused time is not recorded.
    pub fn pause(&self) {
        let _ = self.commands.send(Command::Pause);
    }

    /// Continues after [`Recorder::pause`].
    pub fn resume(&self) {
        let _ = self.commands.send(Command::Resume);
    }

    /// Stops recording, finishes (and fsyncs) the last file, and returns
    /// every file. Blocks until the recorder thread is done.
    pub fn stop(mut self) -> Result<Vec<WavFile>> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Result<Vec<WavFile>> {
        let _ = self.commands.send(Command::Stop);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|panic| Error::Backend(panic_message(panic)))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(err) = self.stop_thread()
        {
            tracing::error!("recording ended badly: {err}");
        }
    }
}

pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the recorder thread failed: {text}")
}

pub(crate) fn check_free_space(dir: &Path, needed: u64) -> Result<()> {
    let free =
        fs4::available_space(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    if free < needed {
        return Err(Error::DiskFull { path: dir.to_path_buf(), free, needed });
    }
    Ok(())
}

/// An open input stream and the ring buffer it fills.
struct Input {
    format: AudioFormat,
    samples: rtrb::Consumer<i16>,
    shared: Arc<Shared>,
    stream: cpal::Stream,
}

impl Input {
    /// Opens `device` (or the default); with `want`, at that rate and
    /// channel count (a device that comes back must match its file).
    fn open(
        device: Option<&str>,
        want: Option<&AudioFormat>,
        errors: &mpsc::Sender<Command>,
    ) -> Result<Self> {
        let (device, name) = crate::devices::find_input(device)?;
        let default =
            device.default_input_config().map_err(|err| Error::NoMicrophone { reason: err.to_string() })?;
        let (sample_rate, channels) = match want {
            Some(format) => (format.sample_rate, format.channels),
            None => (default.sample_rate(), default.channels()),
        };
        let sample_format = choose_sample_format(&device, sample_rate, channels, default.sample_format());
        let buffer_size = match default.buffer_size() {
            // A tenth of a second per callback: small callbacks cost a lot
            // of CPU on ALSA (see shared notes), large ones delay the meter.
            cpal::SupportedBufferSize::Range { min, max } => {
                cpal::BufferSize::Fixed((sample_rate / 10).clamp(*min, *max))
            }
            cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Default,
        };
        let config = cpal::StreamConfig { channels, sample_rate, buffer_size };
        let capacity = sample_rate as usize * usize::from(channels) * 2;
        let (producer, samples) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared::default());
        let stream = match sample_format {
            cpal::SampleFormat::I16 => build::<i16>(&device, config, producer, &shared, errors),
            cpal::SampleFormat::F32 => build::<f32>(&device, config, producer, &shared, errors),
            cpal::SampleFormat::I32 => build::<i32>(&device, config, producer, &shared, errors),
            cpal::SampleFormat::U16 => build::<u16>(&device, config, producer, &shared, errors),
            cpal::SampleFormat::U8 => build::<u8>(&device, config, producer, &shared, errors),
            other => {
                return Err(Error::NoMicrophone {
                    reason: format!("{name} delivers {other} samples, which Opptak cannot record"),
                });
            }
        }
        .map_err(|err| Error::NoMicrophone { reason: format!("{name} cannot be opened: {err}") })?;
        stream.play().map_err(|err| Error::NoMicrophone { reason: format!("{name} cannot start: {err}") })?;
        Ok(Self { format: AudioFormat { device: name, sample_rate, channels }, samples, shared, stream })
    }
}

/// 16-bit when the device offers it at this rate (no conversion, so the
/// file holds exactly what the device gave), else the device's default.
fn choose_sample_format(
    device: &cpal::Device,
    sample_rate: u32,
    channels: u16,
    default: cpal::SampleFormat,
) -> cpal::SampleFormat {
    let offers_i16 = device.supported_input_configs().is_ok_and(|mut configs| {
        configs.any(|range| {
            range.sample_format() == cpal::SampleFormat::I16
                && range.channels() == channels
                && (range.min_sample_rate()..=range.max_sample_rate()).contains(&sample_rate)
        })
    });
    if offers_i16 { cpal::SampleFormat::I16 } else { default }
}

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: rtrb::Producer<i16>,
    shared: &Arc<Shared>,
    errors: &mpsc::Sender<Command>,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    i16: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let shared = shared.clone();
    let errors = errors.clone();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _| {
            shared.callbacks.fetch_add(1, Ordering::Relaxed);
            if shared.paused.load(Ordering::Relaxed) {
                return;
            }
            let fits = data.len().min(producer.slots());
            let fits = fits - fits % channels;
            if let Ok(chunk) = producer.write_chunk_uninit(fits) {
                chunk.fill_from_iter(data.iter().map(|sample| sample.to_sample::<i16>()));
            }
            if fits < data.len() {
                shared.dropped_samples.fetch_add((data.len() - fits) as u64, Ordering::Relaxed);
            }
        },
        move |err| {
            let _ = errors.send(Command::StreamFailed(err.to_string()));
        },
        None,
    )
}

/// The recorder thread's side: the files, the meter and what was published.
struct Writer {
    wav: Option<DurableWav>,
    channels: u16,
    sample_rate: u32,
    max_data_bytes: u64,
    first_path: PathBuf,
    files: Vec<WavFile>,
    state: RecorderState,
    frames: u64,
    meter: LevelMeter,
    window_frames: u64,
    silence: SilenceWatchdog,
    dropped_reported: u64,
    progress: watch::Sender<Progress>,
    events: broadcast::Sender<CaptureEvent>,
}

impl Writer {
    fn create(
        config: &RecorderConfig,
        format: &AudioFormat,
        events: broadcast::Sender<CaptureEvent>,
    ) -> Result<Self> {
        let wav = DurableWav::create(&config.path, format.sample_rate, format.channels)?;
        let window_frames = u64::from(format.sample_rate / LEVELS_PER_SECOND).max(1);
        let first = WavFile { path: config.path.clone(), durable_len: wav.len(), finished: false, frames: 0 };
        let (progress, _) = watch::channel(Progress {
            state: RecorderState::Recording,
            files: vec![first.clone()],
            recorded: Duration::ZERO,
            stop_reason: None,
        });
        Ok(Self {
            wav: Some(wav),
            channels: format.channels,
            sample_rate: format.sample_rate,
            max_data_bytes: config.max_data_bytes.min(MAX_DATA_BYTES),
            first_path: config.path.clone(),
            files: vec![first],
            state: RecorderState::Recording,
            frames: 0,
            meter: LevelMeter::new(window_frames, format.channels),
            window_frames,
            silence: SilenceWatchdog::new(
                config.silence_threshold_dbfs,
                config.silence_after.as_secs() * u64::from(format.sample_rate),
            ),
            dropped_reported: 0,
            progress,
            events,
        })
    }

    fn progress_receiver(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    fn emit(&self, event: CaptureEvent) {
        let _ = self.events.send(event);
    }

    fn publish(&self) {
        self.publish_with(None);
    }

    fn publish_with(&self, stop_reason: Option<String>) {
        self.progress.send_replace(Progress {
            state: self.state,
            files: self.files.clone(),
            recorded: Duration::from_secs_f64(self.frames as f64 / f64::from(self.sample_rate)),
            stop_reason,
        });
    }

    fn run(
        &mut self,
        input: Input,
        commands: &mpsc::Receiver<Command>,
        errors: &mpsc::Sender<Command>,
        config: &RecorderConfig,
    ) -> Result<Vec<WavFile>> {
        let mut input = Some(input);
        let outcome = self.record(&mut input, commands, errors, config);
        // Whatever ended the recording, the audio already captured is kept.
        if let Some(mut live) = input.take() {
            drop(live.stream);
            let _ = self.drain(&mut live.samples);
        }
        let finished = self.finish_file();
        let reason = match (&outcome, &finished) {
            (Ok(reason), Ok(())) => reason.clone(),
            (Err(err), _) | (Ok(_), Err(err)) => Some(err.to_string()),
        };
        if let Some(reason) = &reason {
            tracing::warn!("recording stopped: {reason}");
        }
        self.state = RecorderState::Stopped;
        self.publish_with(reason.clone());
        self.emit(CaptureEvent::Stopped { reason });
        outcome?;
        finished?;
        Ok(self.files.clone())
    }

    /// Records until told to stop (`Ok(None)`) or until it must stop by
    /// itself (`Ok(Some(why))`); errors are write failures.
    fn record(
        &mut self,
        input: &mut Option<Input>,
        commands: &mpsc::Receiver<Command>,
        errors: &mpsc::Sender<Command>,
        config: &RecorderConfig,
    ) -> Result<Option<String>> {
        let dir = self.first_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let mut last_commit = Instant::now();
        let mut last_data = Instant::now();
        let mut last_callbacks = 0;
        let mut last_reopen = Instant::now();
        let mut user_paused = false;
        loop {
            match commands.recv_timeout(TICK) {
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
                Ok(Command::Pause) => {
                    user_paused = true;
                    if let Some(live) = input.as_ref() {
                        live.shared.paused.store(true, Ordering::Relaxed);
                    }
                    if self.state == RecorderState::Recording {
                        self.state = RecorderState::Paused;
                        self.commit()?;
                        self.emit(CaptureEvent::Paused);
                    }
                }
                Ok(Command::Resume) => {
                    user_paused = false;
                    if let Some(live) = input.as_ref() {
                        live.shared.paused.store(false, Ordering::Relaxed);
                        last_data = Instant::now();
                    }
                    if self.state == RecorderState::Paused {
                        self.state = RecorderState::Recording;
                        self.publish();
                        self.emit(CaptureEvent::Resumed);
                    }
                }
                Ok(Command::StreamFailed(reason)) => {
                    if input.is_some() {
                        self.lose_device(input, &reason)?;
                        last_reopen = Instant::now();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(live) = input.as_mut() {
                self.drain(&mut live.samples)?;
                self.report_overruns(&live.shared);
                let callbacks = live.shared.callbacks.load(Ordering::Relaxed);
                if callbacks != last_callbacks {
                    (last_callbacks, last_data) = (callbacks, Instant::now());
                } else if last_data.elapsed() >= NO_DATA_TIMEOUT {
                    self.lose_device(input, "the microphone stopped sending sound")?;
                    last_reopen = Instant::now();
                }
            } else if last_reopen.elapsed() >= REOPEN_EVERY {
                last_reopen = Instant::now();
                let format = AudioFormat {
                    device: String::new(),
                    sample_rate: self.sample_rate,
                    channels: self.channels,
                };
                if let Ok(live) = Input::open(config.device.as_deref(), Some(&format), errors) {
                    tracing::info!(device = live.format.device, "the microphone is back");
                    live.shared.paused.store(user_paused, Ordering::Relaxed);
                    (last_callbacks, last_data) = (0, Instant::now());
                    *input = Some(live);
                    self.state = if user_paused { RecorderState::Paused } else { RecorderState::Recording };
                    self.publish();
                    self.emit(CaptureEvent::DeviceBack);
                }
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.commit()?;
                if let Err(Error::DiskFull { free, .. }) =
                    check_free_space(&dir, config.min_free_while_recording)
                {
                    return Ok(Some(format!(
                        "the disk is nearly full ({} MB free); the recording was stopped and kept. Free some space before recording again",
                        free / 1_000_000
                    )));
                }
            }
        }
    }

    fn lose_device(&mut self, input: &mut Option<Input>, reason: &str) -> Result<()> {
        if let Some(mut live) = input.take() {
            drop(live.stream);
            self.drain(&mut live.samples)?;
        }
        self.commit()?;
        self.state = RecorderState::DeviceLost;
        self.publish();
        tracing::warn!("microphone lost: {reason}");
        self.emit(CaptureEvent::DeviceLost {
            message: format!(
                "The microphone went away ({reason}). Recording is paused and what was recorded is kept; \
                 plug the microphone back in and recording continues, or stop the recording."
            ),
        });
        Ok(())
    }

    /// Writes everything the callback has pushed.
    fn drain(&mut self, samples: &mut rtrb::Consumer<i16>) -> Result<()> {
        let available = samples.slots();
        let available = available - available % usize::from(self.channels);
        if available > 0
            && let Ok(chunk) = samples.read_chunk(available)
        {
            let (first, second) = chunk.as_slices();
            self.write(first)?;
            self.write(second)?;
            chunk.commit_all();
        }
        Ok(())
    }

    fn write(&mut self, mut samples: &[i16]) -> Result<()> {
        let channels = usize::from(self.channels);
        while !samples.is_empty() {
            let wav = self.wav.as_mut().expect("a file is open while recording");
            let room_frames = (self.max_data_bytes.saturating_sub(wav.data_bytes())) / (2 * channels as u64);
            let room = usize::try_from(room_frames.min(wav.frames_left())).unwrap_or(usize::MAX) * channels;
            if room == 0 {
                self.roll_over()?;
                continue;
            }
            let (now, later) = samples.split_at(room.min(samples.len()));
            wav.write(now)?;
            let frames = (now.len() / channels) as u64;
            self.frames += frames;
            if let Some(file) = self.files.last_mut() {
                file.frames += frames;
            }
            let (events, silence, window) = (&self.events, &mut self.silence, self.window_frames);
            self.meter.feed(now, |level: Level| {
                let _ =
                    events.send(CaptureEvent::Level { peak_dbfs: level.peak_dbfs, rms_dbfs: level.rms_dbfs });
                match silence.observe(level, window) {
                    Some(SilenceChange::Started) => {
                        let _ = events.send(CaptureEvent::SilenceStarted {
                            message: "Your microphone seems muted: nothing above −60 dB for 10 seconds. \
                                      Check its mute switch and the input volume."
                                .into(),
                        });
                    }
                    Some(SilenceChange::Ended) => {
                        let _ = events.send(CaptureEvent::SilenceEnded);
                    }
                    None => {}
                }
            });
            samples = later;
        }
        Ok(())
    }

    /// Writes the header and fsyncs, then publishes the durable length.
    fn commit(&mut self) -> Result<()> {
        if let Some(wav) = self.wav.as_mut() {
            let len = wav.commit()?;
            if let Some(file) = self.files.last_mut() {
                file.durable_len = len;
            }
        }
        self.publish();
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        if let Some(wav) = self.wav.take() {
            let len = wav.finish()?;
            if let Some(file) = self.files.last_mut() {
                (file.durable_len, file.finished) = (len, true);
            }
        }
        Ok(())
    }

    fn roll_over(&mut self) -> Result<()> {
        self.finish_file()?;
        let path = numbered_path(&self.first_path, self.files.len() + 1);
        let wav = DurableWav::create(&path, self.sample_rate, self.channels)?;
        self.files.push(WavFile { path: path.clone(), durable_len: wav.len(), finished: false, frames: 0 });
        self.wav = Some(wav);
        tracing::info!(path = %path.display(), "the WAV file is full; recording goes on in a new file");
        self.publish();
        self.emit(CaptureEvent::RolledOver { path });
        Ok(())
    }

    fn report_overruns(&mut self, shared: &Shared) {
        let dropped = shared.dropped_samples.load(Ordering::Relaxed) / u64::from(self.channels);
        if dropped > self.dropped_reported {
            self.dropped_reported = dropped;
            self.emit(CaptureEvent::Overrun { dropped_frames: dropped });
        }
    }
}

/// `lesson.wav`, 2 → `lesson-2.wav`.
fn numbered_path(first: &Path, number: usize) -> PathBuf {
    let stem = first.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match first.extension() {
        Some(extension) => format!("{stem}-{number}.{}", extension.to_string_lossy()),
        None => format!("{stem}-{number}"),
    };
    first.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, max_data_bytes: u64) -> (Writer, broadcast::Receiver<CaptureEvent>) {
        let mut config = RecorderConfig::new(dir.join("lesson.wav"));
        config.max_data_bytes = max_data_bytes;
        config.silence_after = Duration::from_secs(1);
        let format = AudioFormat { device: "test".into(), sample_rate: 1000, channels: 2 };
        let (events, receiver) = broadcast::channel(1024);
        (Writer::create(&config, &format, events).unwrap(), receiver)
    }

    fn drained(events: &mut broadcast::Receiver<CaptureEvent>) -> Vec<CaptureEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[test]
    fn a_full_file_rolls_over_to_a_numbered_one_without_losing_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut events) = writer(dir.path(), 4000);
        let samples: Vec<i16> = (0..3000).map(|n| n as i16).collect();
        writer.write(&samples).unwrap();
        writer.finish_file().unwrap();
        assert_eq!(writer.files.len(), 2);
        let [first, second] = &writer.files[..] else { unreachable!() };
        assert_eq!((first.frames, first.durable_len, first.finished), (1000, 44 + 4000, true));
        assert_eq!(second.path, dir.path().join("lesson-2.wav"));
        assert_eq!((second.frames, second.durable_len, second.finished), (500, 44 + 2000, true));
        let read = |path: &Path| -> Vec<i16> {
            hound::WavReader::open(path).unwrap().samples().map(Result::unwrap).collect()
        };
        assert_eq!([read(&first.path), read(&second.path)].concat(), samples);
        let events = drained(&mut events);
        assert!(events.contains(&CaptureEvent::RolledOver { path: second.path.clone() }), "{events:?}");
    }

    #[test]
    fn levels_come_20_times_a_second_and_silence_raises_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut events) = writer(dir.path(), MAX_DATA_BYTES);
        // 1.5 s of silence at 1000 Hz stereo, then 0.5 s of sound.
        writer.write(&vec![0; 3000]).unwrap();
        writer.write(&vec![8000; 1000]).unwrap();
        let events = drained(&mut events);
        let levels = events.iter().filter(|event| matches!(event, CaptureEvent::Level { .. })).count();
        assert_eq!(levels, 40);
        let started = events.iter().position(|event| matches!(event, CaptureEvent::SilenceStarted { .. }));
        let ended = events.iter().position(|event| *event == CaptureEvent::SilenceEnded);
        assert!(started.is_some() && ended > started, "{events:?}");
        writer.commit().unwrap();
        let progress = writer.progress.borrow().clone();
        assert_eq!(progress.recorded, Duration::from_secs(2));
        assert_eq!(progress.files[0].durable_len, 44 + 8000);
    }
}
