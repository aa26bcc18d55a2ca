//! `opptak toggle`: asks the desktop app to start a recording, or to stop
//! the one it is making, for desktops where the app's own shortcut cannot
//! work (Wayland without the GlobalShortcuts portal) — bind this command to
//! a key in the desktop's keyboard settings.
//!
//! It launches `opptak-desktop --toggle`: the app's single-instance channel
//! (D-Bus) passes the arguments to the running app, and the launch exits at
//! once. When no app runs, that launch is the app, opens and starts
//! recording. One channel for both, so the CLI needs no socket or protocol
//! of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The desktop app's program name.
const DESKTOP_PROGRAM: &str = "opptak-desktop";
/// The argument that asks the app to start or stop recording.
const TOGGLE_ARG: &str = "--toggle";
/// How long a launch that only hands its request on may take before it is
/// taken to be the app itself, starting up.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(8);

/// The desktop app beside this program (as packages install them), else on `PATH`.
fn desktop_program() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| {
        exe.parent().map(|dir| dir.join(format!("{DESKTOP_PROGRAM}{}", std::env::consts::EXE_SUFFIX)))
    });
    beside.filter(|path| path.is_file()).unwrap_or_else(|| PathBuf::from(DESKTOP_PROGRAM))
}

/// Asks the app to start or stop recording; `data_dir` is passed on when given.
pub fn toggle(data_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let program = desktop_program();
    let mut command = Command::new(&program);
    command.arg(TOGGLE_ARG).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(data_dir) = data_dir {
        command.env(opptak_core::DATA_DIR_ENV, data_dir);
    }
    let mut launch = command.spawn().with_context(|| {
        format!("could not start the Opptak app ({}); is it installed?", program.display())
    })?;
    let deadline = Instant::now() + HAND_OVER_WITHIN;
    loop {
        if let Some(status) = launch.try_wait()? {
            if status.success() {
                println!("Asked Opptak to start or stop recording.");
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::bail!(
                "the Opptak app could not take the request ({status}); open Opptak and use its Record button"
            );
        }
        if Instant::now() >= deadline {
            // Still running: there was no app to hand over to, so this
            // launch is the app, and it starts recording as it opens.
            println!("Opptak was not open: it is opening now and starts recording.");
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
