//! Real services a test starts for itself: an X display, a PulseAudio
//! daemon with a virtual microphone, and the WebDriver bridge to the app.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, wait_until};
use crate::{free_port, require_program};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A private Xvfb display (1280×800, 24-bit), stopped by PID on drop.
#[derive(Debug)]
pub struct Xvfb {
    display: String,
    _process: ChildGuard,
}

impl Xvfb {
    /// Starts Xvfb on the first free display number from a per-process
    /// offset, or returns `None` (skip) when Xvfb is not installed outside CI.
    pub fn start() -> anyhow::Result<Option<Self>> {
        if require_program("Xvfb", "to open the desktop window in a virtual display").is_none() {
            return Ok(None);
        }
        let first = 100 + std::process::id() % 800;
        for number in first..first + 50 {
            if Path::new(&format!("/tmp/.X{number}-lock")).exists() {
                continue;
            }
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            let mut process = ChildGuard::spawn(
                "Xvfb",
                Command::new("Xvfb")
                    .args([&format!(":{number}"), "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            // Another test may win the race for this number: Xvfb then exits.
            let started = wait_until("Xvfb socket", START_TIMEOUT, || {
                socket.exists() || process.ensure_running().is_err()
            });
            if started.is_ok() && process.ensure_running().is_ok() {
                return Ok(Some(Self { display: format!(":{number}"), _process: process }));
            }
        }
        anyhow::bail!("no free X display number from :{first} to :{}", first + 49)
    }

    /// The value for `DISPLAY`.
    pub fn display(&self) -> &str {
        &self.display
    }
}

/// A private PulseAudio daemon whose default source is the monitor of a
/// 48 kHz mono null sink: a real, clocked virtual microphone. Anything
/// played into `vsink` (e.g. `paplay -d vsink clip.wav`) is what Opptak
/// records. Stopped by PID on drop.
#[derive(Debug)]
pub struct PulseAudio {
    // Fields drop in order: the capture stream, then the daemon, then its folder.
    keeper: Option<ChildGuard>,
    daemon: ChildGuard,
    runtime_dir: tempfile::TempDir,
}

impl PulseAudio {
    /// Starts the daemon, or returns `None` (skip) when PulseAudio is not
    /// installed outside CI.
    pub fn start() -> anyhow::Result<Option<Self>> {
        if require_program("pulseaudio", "for a virtual microphone").is_none() {
            return Ok(None);
        }
        let runtime_dir = tempfile::Builder::new().prefix("opptak-pulse-").tempdir()?;
        let socket = runtime_dir.path().join("pulse/native");
        std::fs::create_dir_all(runtime_dir.path().join("pulse"))?;
        let script = runtime_dir.path().join("virtual-mic.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 load-module module-null-sink sink_name=vsink rate=48000 channels=1 format=s16le norewinds=1\n\
                 set-default-sink vsink\n\
                 set-default-source vsink.monitor\n",
                socket.display()
            ),
        )?;
        let mut daemon = ChildGuard::spawn(
            "pulseaudio",
            Command::new("pulseaudio")
                .args(["-n", "-F"])
                .arg(&script)
                .args(["--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes"])
                .env("XDG_RUNTIME_DIR", runtime_dir.path())
                .env("HOME", runtime_dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_until("PulseAudio socket", START_TIMEOUT, || {
            socket.exists() || daemon.ensure_running().is_err()
        })?;
        daemon.ensure_running()?;
        Ok(Some(Self { keeper: None, daemon, runtime_dir }))
    }

    /// Keeps a low-latency capture stream open on the monitor and waits for
    /// the null sink to settle, so a new capture does not lose its first
    /// second and a half (see shared/notes on audio).
    pub fn keep_source_warm(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("parec");
        command
            .args(["--latency-msec=20", "-d", "vsink.monitor"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in self.env() {
            command.env(key, value);
        }
        self.keeper = Some(ChildGuard::spawn("parec", &mut command)?);
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    }

    /// Plays a WAV file into the virtual microphone, in real time, and
    /// returns when it has been played.
    pub fn play(&self, clip: &Path) -> anyhow::Result<()> {
        let mut command = Command::new("paplay");
        command.args(["-d", "vsink"]).arg(clip);
        for (key, value) in self.env() {
            command.env(key, value);
        }
        let status = command.status().map_err(|err| anyhow::anyhow!("could not run paplay: {err}"))?;
        anyhow::ensure!(status.success(), "paplay {} failed: {status}", clip.display());
        Ok(())
    }

    /// Plays a 440 Hz tone of `seconds` into the virtual microphone in the
    /// background, until it ends or the guard drops; `sox` writes the clip
    /// into `dir`.
    pub fn play_tone_in_background(&self, dir: &Path, seconds: u64) -> anyhow::Result<ChildGuard> {
        let clip = dir.join("tone.wav");
        let status = Command::new("sox")
            .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
            .arg(&clip)
            .args(["synth", &seconds.to_string(), "sine", "440", "vol", "0.3"])
            .status()
            .map_err(|err| anyhow::anyhow!("could not run sox: {err}"))?;
        anyhow::ensure!(status.success(), "sox failed: {status}");
        let mut command = Command::new("paplay");
        command.args(["-d", "vsink"]).arg(&clip).envs(self.env());
        ChildGuard::spawn("paplay", &mut command)
    }

    /// Stops the daemon, as if the microphone was unplugged.
    pub fn stop_daemon(&mut self) {
        self.keeper = None;
        self.daemon.stop();
    }

    /// Environment that points a client process at this daemon.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PULSE_SERVER", format!("unix:{}", self.runtime_dir.path().join("pulse/native").display())),
            ("XDG_RUNTIME_DIR", self.runtime_dir.path().display().to_string()),
        ]
    }
}

/// `tauri-driver` (which runs WebKitWebDriver) on two free ports of
/// 127.0.0.1, stopped with SIGTERM on drop so its WebKitWebDriver child ends too.
#[derive(Debug)]
pub struct TauriDriver {
    port: u16,
    _process: ChildGuard,
}

impl TauriDriver {
    /// Starts tauri-driver with `env` (at least `DISPLAY`), or returns `None`
    /// (skip) when it or WebKitWebDriver is not installed outside CI.
    pub fn start(env: &[(&str, String)]) -> anyhow::Result<Option<Self>> {
        let why = "to drive the desktop window through WebDriver";
        if require_program("tauri-driver", why).is_none() || require_program("WebKitWebDriver", why).is_none()
        {
            return Ok(None);
        }
        let (port, native_port) = (free_port(), free_port());
        let mut command = Command::new("tauri-driver");
        command
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = ChildGuard::spawn("tauri-driver", &mut command)?;
        // tauri-driver answers on its port before the WebKitWebDriver it
        // starts answers on the native one; a session asked for in between
        // gets its connection closed.
        wait_until("tauri-driver and WebKitWebDriver ports", START_TIMEOUT, || {
            [port, native_port].iter().all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok())
                || process.ensure_running().is_err()
        })?;
        process.ensure_running()?;
        Ok(Some(Self { port, _process: process }))
    }

    /// The WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id of tauri-driver; the app it launches is a descendant.
    pub fn pid(&self) -> u32 {
        self._process.pid()
    }

    /// The process id of the running `program` (its file name) that this
    /// driver launched, when there is one.
    pub fn launched(&self, program: &str) -> Option<u32> {
        crate::process::descendants(self.pid())
            .into_iter()
            .find(|&pid| crate::process::program_of(pid).as_deref() == Some(program))
    }
}
