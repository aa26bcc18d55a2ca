//! Recording the screen, a camera, or both (picture in picture) with a
//! microphone into a fragmented MP4 that survives a crash.
//!
//! GStreamer captures and encodes (H.264 and AAC); `isofmp4mux` cuts the
//! stream into fragments (`moof` + `mdat`, one every half second) and hands
//! them to an appsink. The recorder thread appends every buffer to the file
//! — no byte is ever rewritten — fsyncs every second and publishes, as the
//! durable length, the end of the last whole fragment on disk. So an
//! uploader can send every full part while recording, and a file whose
//! recorder died is cut back to a playable one by
//! [`repair_fmp4`](crate::repair_fmp4) without touching a byte sent.
//!
//! Only Linux (X11 screens, V4L2 cameras, PulseAudio or PipeWire
//! microphones) is built and tested; the other systems' element names sit
//! behind the same API. Without the `video` cargo feature every start fails
//! with [`Error::VideoUnavailable`](crate::Error::VideoUnavailable).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::recorder::panic_message;
use crate::{CaptureEvent, Error, Progress, Result, WavFile};

/// The microphone's rate and channels in a video recording.
pub const VIDEO_AUDIO_RATE: u32 = 48_000;
/// Mono: classroom microphones are, and it halves the AAC bytes.
pub const VIDEO_AUDIO_CHANNELS: u16 = 1;

/// What to film.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum VideoSource {
    /// The whole screen of a display (`:0`); `None` for the session's own.
    Screen {
        /// The display, as [`screens`] lists it.
        display: Option<String>,
    },
    /// A camera, as [`cameras`] lists it (`/dev/video0`).
    Camera {
        /// The camera's device.
        device: String,
    },
    /// The screen with the camera in its lower right corner.
    ScreenWithCamera {
        /// The display; `None` for the session's own.
        display: Option<String>,
        /// The camera's device.
        camera: String,
    },
}

/// Picture size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum VideoPreset {
    /// 1280×720 at 15 frames a second: slides, least CPU.
    #[serde(rename = "720p15")]
    P720At15,
    /// 1280×720 at 30 frames a second.
    #[default]
    #[serde(rename = "720p30")]
    P720At30,
    /// 1920×1080 at 15 frames a second.
    #[serde(rename = "1080p15")]
    P1080At15,
    /// 1920×1080 at 30 frames a second.
    #[serde(rename = "1080p30")]
    P1080At30,
}

impl VideoPreset {
    /// Every preset, smallest first.
    pub const ALL: [VideoPreset; 4] = [Self::P720At15, Self::P720At30, Self::P1080At15, Self::P1080At30];

    /// Width and height in pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            Self::P720At15 | Self::P720At30 => (1280, 720),
            Self::P1080At15 | Self::P1080At30 => (1920, 1080),
        }
    }

    /// Frames per second.
    pub fn fps(self) -> u32 {
        match self {
            Self::P720At15 | Self::P1080At15 => 15,
            Self::P720At30 | Self::P1080At30 => 30,
        }
    }

    /// The preset's name, e.g. `720p30`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P720At15 => "720p15",
            Self::P720At30 => "720p30",
            Self::P1080At15 => "1080p15",
            Self::P1080At30 => "1080p30",
        }
    }
}

impl std::fmt::Display for VideoPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for VideoPreset {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|preset| preset.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|preset| preset.name()).collect();
            format!("{text:?} is not a video preset; choose one of {}", names.join(", "))
        })
    }
}

/// What to record and the limits to keep.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// What to film.
    pub source: VideoSource,
    /// The microphone (a PulseAudio/PipeWire source name); `None` for the default.
    pub microphone: Option<String>,
    /// Picture size and frame rate.
    pub preset: VideoPreset,
    /// The MP4 file; it must not exist.
    pub path: PathBuf,
    /// Recording does not start with less free disk space than this.
    pub min_free_to_start: u64,
    /// Recording stops (keeping what it has) below this much free space.
    pub min_free_while_recording: u64,
    /// Input whose peak stays below this level counts as silence.
    pub silence_threshold_dbfs: f32,
    /// How long silence lasts before [`CaptureEvent::SilenceStarted`].
    pub silence_after: Duration,
}

impl VideoConfig {
    /// The defaults: 720p30, the default microphone, 500 MB free to start,
    /// stop below 200 MB, silence is 10 s below −60 dBFS.
    pub fn new(path: impl Into<PathBuf>, source: VideoSource) -> Self {
        Self {
            source,
            microphone: None,
            preset: VideoPreset::default(),
            path: path.into(),
            min_free_to_start: 500_000_000,
            min_free_while_recording: 200_000_000,
            silence_threshold_dbfs: -60.0,
            silence_after: Duration::from_secs(10),
        }
    }
}

/// What a video recording records from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoFormat {
    /// What is filmed, in words ("screen :0", "camera /dev/video0", …).
    pub source: String,
    /// The microphone's name ("default" for the system's default input).
    pub microphone: String,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// A screen that can be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Screen {
    /// The display's name, e.g. `:0`.
    pub display: String,
    /// Whether it is the session's own display.
    pub is_default: bool,
}

/// A camera that can be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Camera {
    /// The device to record from, e.g. `/dev/video0`.
    pub device: String,
    /// What the camera calls itself.
    pub name: String,
}

/// The session's display: `DISPLAY`, when set.
pub fn default_display() -> Option<String> {
    std::env::var("DISPLAY").ok().filter(|display| !display.trim().is_empty())
}

/// Whether this is a Wayland desktop session, whose screen the X11 capture
/// cannot film (it sees only X11 windows, the rest black).
pub fn wayland_session() -> bool {
    std::env::var("XDG_SESSION_TYPE").is_ok_and(|session| session.eq_ignore_ascii_case("wayland"))
}

/// The screens that can be recorded: the X11 displays with a socket on
/// this computer, the session's own first.
pub fn screens() -> Vec<Screen> {
    let default = default_display();
    let mut screens: Vec<Screen> = std::fs::read_dir("/tmp/.X11-unix")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            let number: u32 = name.strip_prefix('X')?.parse().ok()?;
            let display = format!(":{number}");
            Some(Screen {
                is_default: default.as_deref().is_some_and(|d| same_display(d, &display)),
                display,
            })
        })
        .collect();
    screens.sort_by_key(|screen| (!screen.is_default, screen.display.clone()));
    screens
}

/// `:0` and `:0.0` are the same display.
fn same_display(a: &str, b: &str) -> bool {
    let base = |display: &str| display.split('.').next().unwrap_or(display).to_owned();
    base(a) == base(b)
}

/// The cameras (Video4Linux capture devices) this computer has.
pub fn cameras() -> Vec<Camera> {
    let mut cameras: Vec<Camera> = std::fs::read_dir("/sys/class/video4linux")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let node = entry.file_name().to_string_lossy().into_owned();
            node.starts_with("video").then_some(())?;
            let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_else(|_| node.clone());
            Some(Camera { device: format!("/dev/{node}"), name: name.trim().to_owned() })
        })
        .collect();
    cameras.sort_by(|a, b| a.device.cmp(&b.device));
    cameras
}

/// Why this build or this computer cannot record video, if it cannot: the
/// missing GStreamer parts and the packages that bring them. Asked of the
/// program set by [`check_video_in`] until GStreamer runs in this process.
pub fn video_unavailable() -> Option<String> {
    #[cfg(feature = "video")]
    {
        if !gst_engine::started()
            && let Some(program) = VIDEO_CHECKER.get()
            && let Some(answer) = video_unavailable_asking(program)
        {
            return answer;
        }
        gst_engine::check_elements(&gst_engine::ALL_ELEMENTS).err()
    }
    #[cfg(not(feature = "video"))]
    {
        Some(NOT_BUILT.to_owned())
    }
}

/// The argument with which [`check_video_in`]'s program is started; it
/// hands its run to [`answer_video_check`].
pub const CHECK_VIDEO_ARG: &str = "--opptak-check-video";

static VIDEO_CHECKER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes [`video_unavailable`] ask `program`, started with
/// [`CHECK_VIDEO_ARG`], rather than start GStreamer in this process:
/// GStreamer keeps the plugin registry it reads (~6 MB) for the rest of the
/// process's life, which an app open all day should pay only once it
/// records video. Only the first call counts.
pub fn check_video_in(program: PathBuf) {
    let _ = VIDEO_CHECKER.set(program);
}

/// For a program started with [`CHECK_VIDEO_ARG`]: prints
/// [`video_unavailable`]'s answer (nothing when video can be recorded).
pub fn answer_video_check() -> std::process::ExitCode {
    if let Some(why) = video_unavailable() {
        println!("{why}");
    }
    std::process::ExitCode::SUCCESS
}

/// [`video_unavailable`] as `program` answers it; `None` when it cannot be
/// started (replaced by an update while the app runs), so this process
/// looks itself. A program that crashes answers that GStreamer failed: a
/// broken plugin then takes down the check, not the app.
#[cfg(feature = "video")]
fn video_unavailable_asking(program: &Path) -> Option<Option<String>> {
    let answer = std::process::Command::new(program)
        .arg(CHECK_VIDEO_ARG)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(if answer.status.success() {
        Some(String::from_utf8_lossy(&answer.stdout).trim().to_owned()).filter(|why| !why.is_empty())
    } else {
        Some(format!(
            "GStreamer failed to start ({}); reinstall its packages (on Debian or Ubuntu: gstreamer1.0-plugins-base)",
            answer.status
        ))
    })
}

#[cfg(not(feature = "video"))]
const NOT_BUILT: &str = "this copy of Opptak was built without screen and camera recording";

enum Command {
    Pause,
    Resume,
    Stop,
}

/// A video recording in progress. Stop it with [`VideoRecorder::stop`];
/// dropping it stops it too and finishes the file.
#[derive(Debug)]
pub struct VideoRecorder {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<Result<Vec<WavFile>>>>,
    progress: watch::Receiver<Progress>,
    events: broadcast::Sender<CaptureEvent>,
    format: VideoFormat,
}

impl VideoRecorder {
    /// Opens the screen or camera and the microphone and starts writing
    /// `config.path`. Fails — creating no file — when GStreamer or a part
    /// of it is missing, the display or camera cannot be opened, there is
    /// no microphone, or the disk is too full.
    pub fn start(config: VideoConfig) -> Result<Self> {
        let dir = config.path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        crate::recorder::check_free_space(dir, config.min_free_to_start)?;
        #[cfg(feature = "video")]
        {
            let (events, _) = broadcast::channel(256);
            let (commands, received) = mpsc::channel();
            let started = gst_engine::Started::open(&config, events.clone())?;
            let format = started.format.clone();
            let progress = started.progress.subscribe();
            let thread = std::thread::Builder::new()
                .name("opptak-video".into())
                .spawn(move || started.run(&received, &config))
                .map_err(|err| Error::Backend(format!("cannot start the video recorder thread: {err}")))?;
            tracing::info!(
                source = format.source,
                width = format.width,
                fps = format.fps,
                "video recording started"
            );
            Ok(Self { commands, thread: Some(thread), progress, events, format })
        }
        #[cfg(not(feature = "video"))]
        {
            Err(Error::VideoUnavailable { missing: NOT_BUILT.into() })
        }
    }

    /// What is recorded.
    pub fn format(&self) -> &VideoFormat {
        &self.format
    }

    /// The recorder's state, file and durable length, updated as they change.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Levels, warnings and changes, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<CaptureEvent> {
        self.events.subscribe()
    }

    /// Stops recording until [`VideoRecorder::resume`]; paused time is not in the file.
    pub fn pause(&self) {
        let _ = self.commands.send(Command::Pause);
    }

    /// Continues after [`VideoRecorder::pause`].
    pub fn resume(&self) {
        let _ = self.commands.send(Command::Resume);
    }

    /// Stops recording, lets the encoders finish the last fragment, fsyncs
    /// the file and returns it. Blocks until the recorder thread is done.
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

impl Drop for VideoRecorder {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(err) = self.stop_thread()
        {
            tracing::error!("video recording ended badly: {err}");
        }
    }
}

#[cfg(feature = "video")]
mod gst_engine {
    use std::fs::File;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, mpsc};
    use std::time::{Duration, Instant};

    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;
    use tokio::sync::{broadcast, watch};

    use super::{Command, VIDEO_AUDIO_CHANNELS, VIDEO_AUDIO_RATE, VideoConfig, VideoFormat, VideoSource};
    use crate::fmp4::FragmentTracker;
    use crate::level::{Level, LevelMeter, SilenceChange, SilenceWatchdog};
    use crate::{CaptureEvent, Error, Progress, RecorderState, Result, WavFile};

    /// How long the recorder thread waits for a buffer before it looks at
    /// its commands and the bus again.
    const TICK: Duration = Duration::from_millis(100);
    /// How often the file is fsynced and its durable length published.
    const COMMIT_EVERY: Duration = Duration::from_secs(1);
    /// How long the sources get to open (an X display, a camera, a microphone).
    const START_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long the encoders get to finish the last fragment at stop.
    const EOS_TIMEOUT: Duration = Duration::from_secs(10);
    /// Level events per second.
    const LEVELS_PER_SECOND: u32 = 20;
    /// A fragment every 2 s starting with a keyframe, cut into chunks of
    /// 0.5 s (each its own moof+mdat): at most half a second is lost in a crash.
    const FRAGMENT_NS: u64 = 2_000_000_000;
    const CHUNK_NS: u64 = 500_000_000;
    /// x264's constant quality and the bitrate cap (kbit/s) that keeps a
    /// busy screen from flooding the disk and the upload.
    const X264_QUALITY: u32 = 23;
    const X264_MAX_KBITS: u32 = 6000;
    const AAC_BITS: u32 = 96_000;

    /// The platform's element names; only Linux is built and tested.
    #[cfg(target_os = "windows")]
    mod names {
        pub const SCREEN: &str = "d3d11screencapturesrc";
        pub const CAMERA: &str = "mfvideosrc";
        pub const MICROPHONE: &str = "wasapi2src";
    }
    #[cfg(target_os = "macos")]
    mod names {
        pub const SCREEN: &str = "avfvideosrc";
        pub const CAMERA: &str = "avfvideosrc";
        pub const MICROPHONE: &str = "osxaudiosrc";
    }
    #[cfg(not(any(target_os = "windows", target_os = "macos")))]
    mod names {
        pub const SCREEN: &str = "ximagesrc";
        pub const CAMERA: &str = "v4l2src";
        pub const MICROPHONE: &str = "pulsesrc";
    }

    /// Every element a recording may use, with the Debian package that has it.
    pub(super) const ALL_ELEMENTS: [(&str, &str); 17] = [
        (names::SCREEN, "gstreamer1.0-plugins-good"),
        (names::CAMERA, "gstreamer1.0-plugins-good"),
        (names::MICROPHONE, "gstreamer1.0-plugins-good"),
        ("x264enc", "gstreamer1.0-plugins-ugly"),
        ("h264parse", "gstreamer1.0-plugins-bad"),
        ("avenc_aac", "gstreamer1.0-libav"),
        ("aacparse", "gstreamer1.0-plugins-good"),
        ("videorate", "gstreamer1.0-plugins-base"),
        ("videoconvert", "gstreamer1.0-plugins-base"),
        ("videoscale", "gstreamer1.0-plugins-base"),
        ("compositor", "gstreamer1.0-plugins-base"),
        ("decodebin", "gstreamer1.0-plugins-base"),
        ("audioconvert", "gstreamer1.0-plugins-base"),
        ("audioresample", "gstreamer1.0-plugins-base"),
        ("appsink", "gstreamer1.0-plugins-base"),
        ("queue", "libgstreamer1.0-0"),
        ("isofmp4mux", "(built into Opptak)"),
    ];

    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

    /// Whether GStreamer has been started in this process.
    pub(super) fn started() -> bool {
        INIT.get().is_some()
    }

    /// Initialises GStreamer and registers the built-in fMP4 muxer, once.
    fn init() -> std::result::Result<(), String> {
        INIT.get_or_init(|| {
            gst::init().map_err(|err| format!("GStreamer could not start ({err})"))?;
            gstfmp4::plugin_register_static()
                .map_err(|err| format!("the MP4 writer could not be registered ({err})"))
        })
        .clone()
    }

    /// `Err` names what is missing and the packages to install.
    pub(super) fn check_elements(elements: &[(&str, &str)]) -> std::result::Result<(), String> {
        init().map_err(|err| {
            format!("{err}; install the GStreamer packages (on Debian or Ubuntu: gstreamer1.0-plugins-base)")
        })?;
        let missing: Vec<&(&str, &str)> =
            elements.iter().filter(|(name, _)| gst::ElementFactory::find(name).is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
        packages.sort_unstable();
        packages.dedup();
        let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
        Err(format!(
            "GStreamer lacks {} (on Debian or Ubuntu, install {})",
            names.join(", "),
            packages.join(" ")
        ))
    }

    /// The display to record, or why there is none.
    fn display_of(display: &Option<String>) -> Result<String> {
        if super::wayland_session() {
            return Err(Error::WaylandScreen);
        }
        let display = display.clone().or_else(super::default_display).ok_or_else(|| Error::NoDisplay {
            display: "(none)".into(),
            reason: "this session has no graphical desktop".into(),
        })?;
        // An X socket that is not there cannot be opened; say so before
        // GStreamer says it less clearly.
        if let Some(number) = display.strip_prefix(':').and_then(|rest| rest.split('.').next())
            && let Ok(number) = number.parse::<u32>()
            && !Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
        {
            return Err(Error::NoDisplay { display, reason: "no desktop is running on it".into() });
        }
        Ok(display)
    }

    /// A GStreamer property value in launch syntax.
    fn quoted(value: &str) -> String {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn screen_branch(display: &str) -> String {
        format!(
            "{} display-name={} use-damage=false show-pointer=true name=screen",
            names::SCREEN,
            quoted(display)
        )
    }

    fn camera_branch(device: &str) -> String {
        format!("{} device={} name=camera ! decodebin", names::CAMERA, quoted(device))
    }

    /// A raw video branch made `width`×`height` at `fps`; the queue right
    /// after the source lets capture run ahead of conversion (without it
    /// ximagesrc managed only ~27 of 30 frames a second at 1080p).
    fn scaled(source: &str, width: u32, height: u32, fps: u32) -> String {
        format!(
            "{source} ! queue leaky=downstream max-size-buffers=4 max-size-bytes=0 max-size-time=0 \
             ! videorate ! videoconvert ! videoscale add-borders=true \
             ! video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1,framerate={fps}/1"
        )
    }

    /// The whole pipeline in launch syntax.
    fn describe(config: &VideoConfig) -> Result<(String, String)> {
        let (width, height) = config.preset.size();
        let fps = config.preset.fps();
        let (picture, source) = match &config.source {
            VideoSource::Screen { display } => {
                let display = display_of(display)?;
                (scaled(&screen_branch(&display), width, height, fps), format!("screen {display}"))
            }
            VideoSource::Camera { device } => {
                check_camera(device)?;
                (scaled(&camera_branch(device), width, height, fps), format!("camera {device}"))
            }
            VideoSource::ScreenWithCamera { display, camera } => {
                let display = display_of(display)?;
                check_camera(camera)?;
                let (small_width, small_height) = (width / 4, height / 4);
                let margin = width / 64;
                (
                    format!(
                        "{screen} ! pip.sink_0 \
                         {camera} ! pip.sink_1 \
                         compositor name=pip background=black \
                         sink_1::xpos={x} sink_1::ypos={y} sink_1::width={small_width} sink_1::height={small_height} \
                         ! video/x-raw,width={width},height={height} ! videoconvert ! video/x-raw,format=I420",
                        x = width - small_width - margin,
                        y = height - small_height - margin,
                        screen = scaled(&screen_branch(&display), width, height, fps),
                        camera = scaled(&camera_branch(camera), small_width, small_height, fps),
                    ),
                    format!("screen {display} with camera {camera}"),
                )
            }
        };
        let microphone = match &config.microphone {
            Some(name) => format!("{} device={}", names::MICROPHONE, quoted(name)),
            None => names::MICROPHONE.to_owned(),
        };
        let pipeline = format!(
            "{picture} ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 \
             ! x264enc tune=zerolatency speed-preset=ultrafast pass=qual quantizer={X264_QUALITY} \
               bitrate={X264_MAX_KBITS} key-int-max={keyframes} \
             ! h264parse ! queue ! mux. \
             {microphone} name=microphone ! queue max-size-time=3000000000 ! audioconvert ! audioresample \
             ! audio/x-raw,format=S16LE,layout=interleaved,rate={VIDEO_AUDIO_RATE},channels={VIDEO_AUDIO_CHANNELS} \
             ! identity name=audio_tap ! audioconvert ! avenc_aac bitrate={AAC_BITS} ! aacparse ! queue ! mux. \
             isofmp4mux name=mux fragment-duration={FRAGMENT_NS} chunk-duration={CHUNK_NS} write-mfra=true \
             ! appsink name=sink sync=false async=false max-buffers=0 drop=false buffer-list=true",
            keyframes = fps * 2,
        );
        Ok((pipeline, source))
    }

    fn check_camera(device: &str) -> Result<()> {
        if device.starts_with("/dev/") && !Path::new(device).exists() {
            return Err(Error::NoCamera { camera: device.into(), reason: "it is not connected".into() });
        }
        Ok(())
    }

    /// The level meter and silence watchdog, fed from the audio branch's
    /// streaming thread.
    struct Meter {
        meter: LevelMeter,
        silence: SilenceWatchdog,
        window_frames: u64,
        events: broadcast::Sender<CaptureEvent>,
        frames: Arc<AtomicU64>,
    }

    impl Meter {
        fn feed(&mut self, bytes: &[u8]) {
            let samples: Vec<i16> =
                bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])).collect();
            self.frames
                .fetch_add((samples.len() / usize::from(VIDEO_AUDIO_CHANNELS)) as u64, Ordering::Relaxed);
            let (events, silence, window) = (&self.events, &mut self.silence, self.window_frames);
            self.meter.feed(&samples, |level: Level| {
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
        }
    }

    /// A pipeline that is playing and the file it goes to.
    pub(super) struct Started {
        pipeline: gst::Pipeline,
        sink: gst_app::AppSink,
        bus: gst::Bus,
        file: File,
        path: PathBuf,
        written: u64,
        tracker: FragmentTracker,
        durable: u64,
        state: RecorderState,
        audio_frames: Arc<AtomicU64>,
        pub(super) format: VideoFormat,
        pub(super) progress: watch::Sender<Progress>,
        events: broadcast::Sender<CaptureEvent>,
    }

    /// Turns a GStreamer error from `element` into what the user is told.
    fn source_error(element: Option<String>, message: &str, config: &VideoConfig) -> Error {
        match element.as_deref() {
            Some("screen") => Error::NoDisplay {
                display: match &config.source {
                    VideoSource::Screen { display } | VideoSource::ScreenWithCamera { display, .. } => {
                        display.clone().or_else(super::default_display).unwrap_or_default()
                    }
                    VideoSource::Camera { .. } => String::new(),
                },
                reason: message.to_owned(),
            },
            Some("camera") => Error::NoCamera {
                camera: match &config.source {
                    VideoSource::Camera { device } => device.clone(),
                    VideoSource::ScreenWithCamera { camera, .. } => camera.clone(),
                    VideoSource::Screen { .. } => String::new(),
                },
                reason: message.to_owned(),
            },
            Some("microphone") => Error::NoMicrophone { reason: message.to_owned() },
            _ => Error::Video(message.to_owned()),
        }
    }

    /// The first error on the bus, with the name of the element that raised it.
    fn bus_error(bus: &gst::Bus) -> Option<(Option<String>, String)> {
        while let Some(message) = bus.pop() {
            if let gst::MessageView::Error(err) = message.view() {
                let element = message.src().map(|src| src.name().to_string());
                return Some((element, err.error().to_string()));
            }
        }
        None
    }

    impl Started {
        /// Builds the pipeline and brings it to PLAYING; only then creates
        /// the file, so a source that cannot open leaves nothing behind.
        pub(super) fn open(config: &VideoConfig, events: broadcast::Sender<CaptureEvent>) -> Result<Self> {
            check_elements(&ALL_ELEMENTS).map_err(|missing| Error::VideoUnavailable { missing })?;
            let (description, source) = describe(config)?;
            tracing::debug!(pipeline = description, "video pipeline");
            let pipeline = gst::parse::launch(&description)
                .map_err(|err| Error::Video(format!("the recording could not be set up ({err})")))?
                .downcast::<gst::Pipeline>()
                .map_err(|_| Error::Video("the recording could not be set up (not a pipeline)".into()))?;
            let bus = pipeline.bus().ok_or_else(|| Error::Video("the pipeline has no bus".into()))?;
            let sink = pipeline
                .by_name("sink")
                .and_then(|sink| sink.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| Error::Video("the pipeline has no appsink".into()))?;
            let audio_frames = Arc::new(AtomicU64::new(0));
            let window_frames = u64::from(VIDEO_AUDIO_RATE / LEVELS_PER_SECOND);
            let meter = Mutex::new(Meter {
                meter: LevelMeter::new(window_frames, VIDEO_AUDIO_CHANNELS),
                silence: SilenceWatchdog::new(
                    config.silence_threshold_dbfs,
                    config.silence_after.as_secs() * u64::from(VIDEO_AUDIO_RATE),
                ),
                window_frames,
                events: events.clone(),
                frames: audio_frames.clone(),
            });
            let tap = pipeline
                .by_name("audio_tap")
                .and_then(|tap| tap.static_pad("sink"))
                .ok_or_else(|| Error::Video("the pipeline has no audio tap".into()))?;
            tap.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data
                    && let Ok(map) = buffer.map_readable()
                    && let Ok(mut meter) = meter.lock()
                {
                    meter.feed(map.as_slice());
                }
                gst::PadProbeReturn::Ok
            });
            let fail = |pipeline: &gst::Pipeline, bus: &gst::Bus, fallback: String| {
                let error = bus_error(bus);
                let _ = pipeline.set_state(gst::State::Null);
                match error {
                    Some((element, message)) => source_error(element, &message, config),
                    None => Error::Video(fallback),
                }
            };
            if let Err(err) = pipeline.set_state(gst::State::Playing) {
                return Err(fail(&pipeline, &bus, format!("the recording could not start ({err})")));
            }
            let (changed, _, _) =
                pipeline.state(gst::ClockTime::from_nseconds(START_TIMEOUT.as_nanos() as u64));
            if let Err(err) = changed {
                return Err(fail(&pipeline, &bus, format!("the recording could not start ({err})")));
            }
            if let Some((element, message)) = bus_error(&bus) {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(source_error(element, &message, config));
            }
            let file = match File::options().write(true).create_new(true).open(&config.path) {
                Ok(file) => file,
                Err(source) => {
                    let _ = pipeline.set_state(gst::State::Null);
                    return Err(Error::Write { path: config.path.clone(), source });
                }
            };
            let (width, height) = config.preset.size();
            let format = VideoFormat {
                source,
                microphone: config.microphone.clone().unwrap_or_else(|| "default".into()),
                width,
                height,
                fps: config.preset.fps(),
            };
            let first = WavFile { path: config.path.clone(), durable_len: 0, finished: false, frames: 0 };
            let (progress, _) = watch::channel(Progress {
                state: RecorderState::Recording,
                files: vec![first],
                recorded: Duration::ZERO,
                stop_reason: None,
            });
            Ok(Self {
                pipeline,
                sink,
                bus,
                file,
                path: config.path.clone(),
                written: 0,
                tracker: FragmentTracker::default(),
                durable: 0,
                state: RecorderState::Recording,
                audio_frames,
                format,
                progress,
                events,
            })
        }

        fn emit(&self, event: CaptureEvent) {
            let _ = self.events.send(event);
        }

        fn publish(&self, finished: bool, stop_reason: Option<String>) {
            let frames = self.audio_frames.load(Ordering::Relaxed);
            self.progress.send_replace(Progress {
                state: self.state,
                files: vec![WavFile { path: self.path.clone(), durable_len: self.durable, finished, frames }],
                recorded: Duration::from_secs_f64(frames as f64 / f64::from(VIDEO_AUDIO_RATE)),
                stop_reason,
            });
        }

        fn write_error(&self, source: std::io::Error) -> Error {
            Error::Write { path: self.path.clone(), source }
        }

        /// Appends a sample's buffers to the file.
        fn write(&mut self, sample: &gst::Sample) -> Result<()> {
            let mut append = |buffer: &gst::BufferRef| -> Result<()> {
                let map = buffer.map_readable().map_err(|err| Error::Video(err.to_string()))?;
                self.file
                    .write_all(map.as_slice())
                    .map_err(|err| Error::Write { path: self.path.clone(), source: err })?;
                self.tracker.feed(map.as_slice());
                self.written += map.size() as u64;
                Ok(())
            };
            if let Some(list) = sample.buffer_list() {
                for buffer in list.iter() {
                    append(buffer)?;
                }
            } else if let Some(buffer) = sample.buffer() {
                append(buffer)?;
            }
            if let Some(problem) = self.tracker.problem() {
                return Err(Error::Video(format!("the MP4 writer produced a damaged file ({problem})")));
            }
            Ok(())
        }

        /// fsyncs and publishes the end of the last whole fragment as durable.
        fn commit(&mut self) -> Result<()> {
            self.file.sync_data().map_err(|err| self.write_error(err))?;
            self.durable = self.tracker.safe_end().unwrap_or(0).max(self.durable);
            self.publish(false, None);
            Ok(())
        }

        pub(super) fn run(
            mut self,
            commands: &mpsc::Receiver<Command>,
            config: &VideoConfig,
        ) -> Result<Vec<WavFile>> {
            let outcome = self.record(commands, config);
            let _ = self.pipeline.set_state(gst::State::Null);
            let finished = self.finish();
            let reason = match (&outcome, &finished) {
                (Ok(reason), Ok(())) => reason.clone(),
                (Err(err), _) | (Ok(_), Err(err)) => Some(err.to_string()),
            };
            if let Some(reason) = &reason {
                tracing::warn!("video recording stopped: {reason}");
            }
            self.state = RecorderState::Stopped;
            self.publish(true, reason.clone());
            self.emit(CaptureEvent::Stopped { reason });
            outcome?;
            finished?;
            Ok(vec![WavFile {
                path: self.path.clone(),
                durable_len: self.durable,
                finished: true,
                frames: self.audio_frames.load(Ordering::Relaxed),
            }])
        }

        /// Ends the file after its last whole fragment (all of it after a
        /// clean end of stream) and fsyncs it.
        fn finish(&mut self) -> Result<()> {
            let end = self.tracker.safe_end().unwrap_or(0);
            if end < self.written {
                tracing::warn!(
                    cut = self.written - end,
                    "the recording ended inside a fragment; cutting it off"
                );
                self.file.set_len(end).map_err(|err| self.write_error(err))?;
            }
            self.file.sync_all().map_err(|err| self.write_error(err))?;
            self.durable = end;
            Ok(())
        }

        fn begin_stop(&mut self, stopping: &mut Option<Instant>) {
            if stopping.is_some() {
                return;
            }
            // A paused live pipeline moves no data, so not even the end of
            // stream: play again for the few milliseconds the end takes.
            if self.state == RecorderState::Paused {
                let _ = self.pipeline.set_state(gst::State::Playing);
            }
            self.pipeline.send_event(gst::event::Eos::new());
            *stopping = Some(Instant::now());
        }

        /// Records until told to stop (`Ok(None)`) or until it must stop by
        /// itself (`Ok(Some(why))`); errors are write failures.
        fn record(
            &mut self,
            commands: &mpsc::Receiver<Command>,
            config: &VideoConfig,
        ) -> Result<Option<String>> {
            let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            let mut last_commit = Instant::now();
            let mut stopping: Option<Instant> = None;
            let mut reason: Option<String> = None;
            loop {
                loop {
                    match commands.try_recv() {
                        Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                            self.begin_stop(&mut stopping);
                            break;
                        }
                        Ok(Command::Pause)
                            if stopping.is_none() && self.state == RecorderState::Recording =>
                        {
                            let _ = self.pipeline.set_state(gst::State::Paused);
                            self.state = RecorderState::Paused;
                            self.commit()?;
                            self.emit(CaptureEvent::Paused);
                        }
                        Ok(Command::Resume) if stopping.is_none() && self.state == RecorderState::Paused => {
                            let _ = self.pipeline.set_state(gst::State::Playing);
                            self.state = RecorderState::Recording;
                            self.publish(false, None);
                            self.emit(CaptureEvent::Resumed);
                        }
                        Ok(_) => {}
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
                if let Some(sample) =
                    self.sink.try_pull_sample(gst::ClockTime::from_mseconds(TICK.as_millis() as u64))
                {
                    self.write(&sample)?;
                }
                while let Some(message) = self.bus.pop() {
                    match message.view() {
                        gst::MessageView::Eos(_) => {
                            // The appsink may still hold what came before the end.
                            while let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
                                self.write(&sample)?;
                            }
                            return Ok(reason);
                        }
                        gst::MessageView::Error(err) => {
                            let element = message.src().map(|src| src.name().to_string());
                            let what = match element.as_deref() {
                                Some("screen") => "The screen can no longer be recorded",
                                Some("camera") => "The camera went away",
                                Some("microphone") => "The microphone went away",
                                _ => "The video recorder failed",
                            };
                            tracing::error!(element, debug = ?err.debug(), "video pipeline error: {}", err.error());
                            return Ok(Some(format!(
                                "{what} ({}); the recording was stopped and what was recorded is kept",
                                err.error()
                            )));
                        }
                        _ => {}
                    }
                }
                if let Some(since) = stopping {
                    if since.elapsed() >= EOS_TIMEOUT {
                        tracing::warn!(
                            "the encoders did not finish within {EOS_TIMEOUT:?}; ending the file at the last whole fragment"
                        );
                        return Ok(reason);
                    }
                    continue;
                }
                if last_commit.elapsed() >= COMMIT_EVERY {
                    last_commit = Instant::now();
                    self.commit()?;
                    if let Err(Error::DiskFull { free, .. }) =
                        crate::recorder::check_free_space(&dir, config.min_free_while_recording)
                    {
                        reason = Some(format!(
                            "the disk is nearly full ({} MB free); the recording was stopped and kept. Free some space before recording again",
                            free / 1_000_000
                        ));
                        self.begin_stop(&mut stopping);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::VideoPreset;

        #[test]
        fn the_pipeline_names_each_source_so_errors_can_say_which_failed() {
            let mut config =
                VideoConfig::new("/tmp/x.mp4", VideoSource::Camera { device: "/dev/video-nope".into() });
            let err = describe(&config).unwrap_err();
            assert!(matches!(err, Error::NoCamera { .. }), "{err}");
            assert!(err.to_string().contains("/dev/video-nope"), "{err}");
            config.source = VideoSource::Screen { display: Some(":4321".into()) };
            let err = describe(&config).unwrap_err();
            assert!(matches!(err, Error::NoDisplay { .. }), "{err}");
            config.source = VideoSource::Camera { device: "Front \"cam\"".into() };
            config.microphone = Some("USB mic".into());
            let (pipeline, source) = describe(&config).unwrap();
            assert_eq!(source, "camera Front \"cam\"");
            assert!(pipeline.contains(r#"device="Front \"cam\"" name=camera"#), "{pipeline}");
            assert!(pipeline.contains(r#"pulsesrc device="USB mic" name=microphone"#), "{pipeline}");
            assert!(
                pipeline.contains("width=1280,height=720") && pipeline.contains("framerate=30/1"),
                "{pipeline}"
            );
            init().unwrap();
            gst::parse::launch(&pipeline).unwrap();

            // The camera in the corner of the screen: one picture, one encoder.
            config.source = VideoSource::ScreenWithCamera {
                display: Some("example.org:0".into()),
                camera: "Front".into(),
            };
            config.preset = VideoPreset::P1080At15;
            let (pipeline, source) = describe(&config).unwrap();
            assert_eq!(source, "screen example.org:0 with camera Front");
            assert_eq!(pipeline.matches("x264enc").count(), 1, "{pipeline}");
            assert!(pipeline.contains("sink_1::xpos=1410 sink_1::ypos=780 sink_1::width=480"), "{pipeline}");
            assert!(pipeline.contains("framerate=15/1"), "{pipeline}");
            gst::parse::launch(&pipeline).unwrap();
        }

        #[test]
        fn a_missing_element_is_named_with_its_package() {
            let err =
                check_elements(&[("queue", "libgstreamer1.0-0"), ("opptaknosuchenc", "gstreamer1.0-opptak")])
                    .unwrap_err();
            assert!(err.contains("opptaknosuchenc") && err.contains("install gstreamer1.0-opptak"), "{err}");
            assert!(!err.contains("queue"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_read_and_print_by_name() {
        for preset in VideoPreset::ALL {
            assert_eq!(preset.name().parse::<VideoPreset>(), Ok(preset));
        }
        assert_eq!(
            "1080p30".parse::<VideoPreset>().map(|preset| (preset.size(), preset.fps())),
            Ok(((1920, 1080), 30))
        );
        let err = "4k60".parse::<VideoPreset>().unwrap_err();
        assert!(err.contains("720p15, 720p30, 1080p15, 1080p30"), "{err}");
    }

    #[cfg(all(feature = "video", unix))]
    #[test]
    fn the_checking_program_s_answer_is_the_reason_and_its_crash_says_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let lacking = dir.path().join("lacking");
        std::fs::write(
            &lacking,
            "#!/bin/sh\n[ \"$1\" = --opptak-check-video ] && echo 'GStreamer lacks x264enc'\n",
        )
        .unwrap();
        std::fs::set_permissions(&lacking, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(video_unavailable_asking(&lacking), Some(Some("GStreamer lacks x264enc".into())));

        assert_eq!(
            video_unavailable_asking(Path::new("/bin/true")),
            Some(None),
            "nothing printed: video works"
        );
        let crashed = video_unavailable_asking(Path::new("/bin/false")).flatten().unwrap();
        assert!(
            crashed.contains("GStreamer failed to start") && crashed.contains("gstreamer1.0-plugins-base"),
            "{crashed}"
        );
        assert_eq!(
            video_unavailable_asking(&dir.path().join("gone")),
            None,
            "not there: look in this process"
        );
    }

    #[cfg(not(feature = "video"))]
    #[test]
    fn without_the_video_feature_a_start_says_so_and_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            VideoConfig::new(dir.path().join("lesson.mp4"), VideoSource::Screen { display: None });
        config.min_free_to_start = 0;
        let err = VideoRecorder::start(config).unwrap_err();
        assert!(matches!(err, Error::VideoUnavailable { .. }), "{err}");
        assert!(err.to_string().contains("built without screen and camera recording"), "{err}");
        assert!(video_unavailable().is_some());
        assert!(!dir.path().join("lesson.mp4").exists());
    }
}
