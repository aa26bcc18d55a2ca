// Keeps a console window from opening next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    if let Some(args) = command_line_args() {
        return opptak_cli::run_from(args);
    }
    if std::env::args_os().nth(1).is_some_and(|arg| arg == opptak_core::CHECK_VIDEO_ARG) {
        return opptak_core::answer_video_check();
    }
    #[cfg(target_os = "linux")]
    paint_without_compositing();
    opptak_desktop::run()
}

/// The first argument with which `/usr/bin/opptak` (a one-line script in the
/// Linux packages) starts this program as the `opptak` command.
#[cfg(target_os = "linux")]
const AS_COMMAND_LINE: &str = "--as-command-line";

/// The `opptak` command's arguments when this program was started as it.
/// The app and the command share most of their code, so the Linux packages
/// ship one program for both: a second one would double the package
/// (tests/BENCHMARKS.md, "Packages").
#[cfg(target_os = "linux")]
fn command_line_args() -> Option<impl Iterator<Item = std::ffi::OsString>> {
    let mut args = std::env::args_os().skip(1).peekable();
    args.next_if(|arg| arg == AS_COMMAND_LINE)?;
    Some(std::iter::once("opptak".into()).chain(args))
}

/// WebKitGTK's switch for painting without accelerated compositing, which it
/// reads from the environment only.
#[cfg(target_os = "linux")]
const NO_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Accelerated compositing renders through OpenGL; on school laptops without
/// a usable GPU driver (and under Xvfb) that is Mesa's software rasteriser,
/// which cost the window 107 MB and a third of its CPU while the level meter
/// moved (`tests/benches/app.rs`). Opptak's window has nothing to composite,
/// so it paints without it. Setting the variable in this process would need
/// `unsafe` (`std::env::set_var`), so the app starts itself again with it
/// set (same process id); a user who set it keeps their choice, and when the
/// restart fails the app runs as it is.
#[cfg(target_os = "linux")]
fn paint_without_compositing() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(NO_COMPOSITING).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err =
        std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(NO_COMPOSITING, "1").exec();
    eprintln!("Opptak paints its window with WebKit's compositing on ({err}).");
}
