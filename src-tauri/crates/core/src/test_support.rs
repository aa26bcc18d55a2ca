//! Helpers for tests that record (this crate's and the desktop shell's,
//! through the `test-support` feature): a private PulseAudio daemon whose
//! default source is the monitor of a null sink, a real, clocked
//! microphone on a machine with no sound card (as `opptak_tests::PulseAudio`
//! starts it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the copy of the test binary that reaches the microphone:
/// the sound library reads `PULSE_SERVER` when it connects, and this
/// process's own environment cannot be changed safely.
const IN_THE_CHILD: &str = "OPPTAK_CORE_TEST_VIRTUAL_MICROPHONE";

/// In the test process: starts the microphone, runs `test` again in
/// a copy of this binary that reaches it, asserts that run passed and
/// returns true (the caller returns). Also true, after saying so,
/// where PulseAudio is missing outside CI. In the copy: false.
pub fn ran_in_a_child(test: &str) -> bool {
    if std::env::var_os(IN_THE_CHILD).is_some() {
        return false;
    }
    let Some(microphone) = Microphone::start() else { return true };
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_THE_CHILD, "1")
        .env("PULSE_SERVER", format!("unix:{}", microphone.socket().display()))
        .status()
        .unwrap();
    assert!(status.success(), "the run with the virtual microphone failed: {status}");
    true
}

/// The daemon, killed by its PID on drop.
struct Microphone {
    daemon: Child,
    runtime_dir: tempfile::TempDir,
}

impl Microphone {
    fn start() -> Option<Self> {
        let runtime_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(runtime_dir.path().join("pulse")).unwrap();
        let socket = runtime_dir.path().join("pulse/native");
        let script = runtime_dir.path().join("virtual-mic.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 load-module module-null-sink sink_name=vsink rate=48000 channels=1 format=s16le norewinds=1\n\
                 set-default-source vsink.monitor\n",
                socket.display()
            ),
        )
        .unwrap();
        let spawned = Command::new("pulseaudio")
            .args(["-n", "-F"])
            .arg(&script)
            .args(["--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes"])
            .env("XDG_RUNTIME_DIR", runtime_dir.path())
            .env("HOME", runtime_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let daemon = match spawned {
            Ok(daemon) => daemon,
            Err(err) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: PulseAudio is needed for a virtual microphone ({err})");
                return None;
            }
            Err(err) => panic!("PulseAudio is needed for a virtual microphone: {err}"),
        };
        let mut microphone = Self { daemon, runtime_dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(microphone.daemon.try_wait().unwrap().is_none(), "PulseAudio exited");
            assert!(Instant::now() < deadline, "PulseAudio did not open its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(microphone)
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.path().join("pulse/native")
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
