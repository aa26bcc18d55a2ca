//! One Opptak per desktop session. A second launch hands its arguments to
//! the first over the D-Bus session bus and exits: a plain launch brings
//! the first window to the front, a launch with [`TOGGLE_ARG`] (what
//! `opptak toggle` runs) starts or stops the recording.
//!
//! Without a session bus the plugin cannot tell, logs why and the app
//! starts anyway; the data folder's lock keeps two engines apart.

use tauri::{AppHandle, Runtime};

use crate::controls;

/// The argument that asks the running app to start or stop recording.
pub const TOGGLE_ARG: &str = "--toggle";

/// Whether `args` (a launch's, without the program) ask for a toggle.
pub fn asks_toggle<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter().any(|arg| arg.as_ref() == TOGGLE_ARG)
}

/// What the running app does when Opptak is launched again with `argv`
/// (the program first, as the plugin passes it).
pub fn on_second_launch<R: Runtime>(app: &AppHandle<R>, argv: &[String]) {
    tracing::info!(?argv, "Opptak was launched again");
    if asks_toggle(argv.get(1..).unwrap_or_default()) {
        controls::spawn(
            app,
            "opptak toggle",
            |engine| async move { controls::toggle(&engine).await.map(drop) },
        );
    } else {
        controls::show_window(app);
    }
}

/// Whether an Opptak with config `identifier` already runs in this desktop
/// session (its single-instance name is taken on the session bus). Asked
/// before the engine opens, so a second launch starts no server and
/// resumes no uploads on its way out; `false` when there is no bus.
#[cfg(target_os = "linux")]
pub fn another_is_running(identifier: &str) -> bool {
    let check = || -> Result<bool, String> {
        let bus = zbus::blocking::Connection::session().map_err(|err| err.to_string())?;
        let names = zbus::blocking::fdo::DBusProxy::new(&bus).map_err(|err| err.to_string())?;
        let name = format!("{identifier}.SingleInstance");
        let name = zbus::names::BusName::try_from(name.as_str()).map_err(|err| err.to_string())?;
        names.name_has_owner(name).map_err(|err| err.to_string())
    };
    match check() {
        Ok(running) => running,
        Err(why) => {
            tracing::warn!(
                why,
                "no D-Bus session bus: a second Opptak cannot find this one and may open beside it"
            );
            false
        }
    }
}

/// Elsewhere the plugin finds the first instance by its own means.
#[cfg(not(target_os = "linux"))]
pub fn another_is_running(_identifier: &str) -> bool {
    false
}

/// The single-instance plugin; register it before every other plugin, so a
/// second launch exits before it opens anything.
pub fn plugin<R: Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri_plugin_single_instance::init(|app, argv, _cwd| on_second_launch(app, &argv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_toggle_argument_toggles() {
        assert!(asks_toggle(&["--toggle"]));
        assert!(!asks_toggle(&["--toggled", "toggle"]));
        assert!(!asks_toggle::<&str>(&[]));
    }
}
