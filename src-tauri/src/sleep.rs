//! After a suspend that happened anyway (logind refused the inhibitor of
//! [`crate::awake`], or the lid closed on a laptop told to ignore it), the
//! lesson goes on in a new file: the file recorded before the sleep is
//! finished and uploads like any stopped recording, and the same source
//! records on into "Lesson (2)" (see `AppEngine::continue_after_sleep`).
//! The microphone or camera the recorder held may not have survived the
//! suspend; a new recorder opens it afresh.
//!
//! logind announces `PrepareForSleep(true)` on the system bus before it
//! suspends and `PrepareForSleep(false)` once the computer woke up; the
//! wake-up is what splits the lesson. Where there is no system bus (a
//! container, a desktop without systemd) the app logs it once and records
//! on: a sleep then goes unnoticed, as before.

use std::sync::Arc;

use opptak_core::AppEngine;
use tauri::{AppHandle, Runtime};

/// logind's manager interface, which sends the signal.
pub const LOGIN_MANAGER: &str = "org.freedesktop.login1.Manager";
/// The object that sends it.
pub const LOGIN_PATH: &str = "/org/freedesktop/login1";
/// The signal: `true` before a suspend, `false` after the wake-up.
pub const PREPARE_FOR_SLEEP: &str = "PrepareForSleep";
/// Logged once the app listens for logind's signal.
pub const FOLLOWING_LOGIND: &str =
    "following logind: after a sleep during a recording the lesson goes on in a new file";
/// logind's name on the system bus.
const LOGIN_NAME: &str = "org.freedesktop.login1";
/// Signals queued while a split runs; a wake-up is rare, so few suffice.
const QUEUED_SIGNALS: usize = 16;

/// Wake-ups as logind announces them, in order.
pub struct Wakes {
    signals: zbus::blocking::MessageIterator,
}

impl std::fmt::Debug for Wakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakes").finish_non_exhaustive()
    }
}

impl Wakes {
    /// Listens on `bus` for logind's `PrepareForSleep`; signals sent from
    /// the moment this returns are heard.
    pub fn subscribe(bus: &zbus::blocking::Connection) -> Result<Self, String> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(LOGIN_MANAGER)
            .and_then(|rule| rule.path(LOGIN_PATH))
            .and_then(|rule| rule.member(PREPARE_FOR_SLEEP))
            .map_err(|err| format!("the sleep signal cannot be described ({err})"))?
            .build();
        let signals = zbus::blocking::MessageIterator::for_match_rule(rule, bus, Some(QUEUED_SIGNALS))
            .map_err(|err| format!("the system bus refused to pass on logind's sleep signal ({err})"))?;
        Ok(Self { signals })
    }

    /// Blocks until the computer wakes up from a suspend; `None` once the
    /// bus is gone. The announcement of a suspend is skipped: the recorder
    /// cannot be saved in the moment logind leaves before it sleeps.
    pub fn next_wake(&mut self) -> Option<()> {
        for signal in self.signals.by_ref() {
            let signal = match signal {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "a message on the system bus could not be read");
                    continue;
                }
            };
            match signal.body().deserialize::<bool>() {
                Ok(false) => return Some(()),
                Ok(true) => tracing::info!("the computer is going to sleep"),
                Err(err) => tracing::warn!(error = %err, "logind sent a sleep signal that cannot be read"),
            }
        }
        None
    }
}

/// Follows logind on the system bus, on a thread of its own, and goes on
/// with a running lesson in a new file each time the computer wakes up.
pub fn setup<R: Runtime>(app: &AppHandle<R>, engine: Arc<AppEngine>) {
    let app = app.clone();
    let spawned = std::thread::Builder::new().name("opptak-sleep".into()).spawn(move || {
        let wakes = zbus::blocking::Connection::system()
            .map_err(|err| format!("there is no system bus ({err})"))
            .and_then(|bus| {
                warn_without_logind(&bus);
                Wakes::subscribe(&bus).map(|wakes| (bus, wakes))
            });
        let (_bus, mut wakes) = match wakes {
            Ok(listening) => listening,
            Err(why) => {
                tracing::warn!(
                    why,
                    "a sleep during a recording will not be noticed; recording works as before"
                );
                return;
            }
        };
        tracing::info!("{FOLLOWING_LOGIND}");
        while wakes.next_wake().is_some() {
            woke_up(&app, &engine);
        }
        tracing::info!("the system bus closed; a sleep during a recording will no longer be noticed");
    });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "a sleep during a recording will not be noticed");
    }
}

/// Says once in the log when nobody owns logind's name: its signal will
/// then never come.
fn warn_without_logind(bus: &zbus::blocking::Connection) {
    let owned = bus
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &LOGIN_NAME,
        )
        .and_then(|reply| reply.body().deserialize::<bool>());
    if !matches!(owned, Ok(true)) {
        tracing::warn!("logind is not running: a sleep during a recording will not be noticed");
    }
}

/// The computer woke up: a running lesson goes on in a new file.
fn woke_up<R: Runtime>(app: &AppHandle<R>, engine: &AppEngine) {
    match tauri::async_runtime::block_on(engine.continue_after_sleep()) {
        Ok(recording) => {
            tracing::info!(recording, "the computer woke up; the lesson goes on in a new file");
        }
        Err(opptak_core::Error::NotRecording) => {
            tracing::debug!("the computer woke up; nothing was recording");
        }
        Err(err) => {
            tracing::error!(error = %err, "the lesson could not go on after the computer slept");
            crate::controls::notice(
                app,
                &crate::CommandError::new(
                    "continue_after_sleep_failed",
                    format!(
                        "The computer slept during the recording and recording could not start again ({err}). \
                         The lesson up to the sleep is saved; press Record to go on."
                    ),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::*;

    /// A private D-Bus daemon standing in for the system bus, ended by PID.
    struct PrivateBus {
        daemon: Child,
        address: String,
    }

    impl PrivateBus {
        fn start() -> Option<Self> {
            let spawned = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let mut daemon = match spawned {
                Ok(daemon) => daemon,
                Err(err) if std::env::var_os("CI").is_none() => {
                    eprintln!("skipped: dbus-daemon is needed for a private bus ({err})");
                    return None;
                }
                Err(err) => panic!("dbus-daemon is needed for a private bus: {err}"),
            };
            let mut address = String::new();
            BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
            let address = address.trim().to_owned();
            assert!(address.starts_with("unix:"), "dbus-daemon printed no address: {address:?}");
            Some(Self { daemon, address })
        }

        fn connect(&self) -> zbus::blocking::Connection {
            zbus::blocking::connection::Builder::address(self.address.as_str()).unwrap().build().unwrap()
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    /// logind's two signals around a suspend (CI cannot really suspend, so
    /// the test plays logind): only the wake-up is heard, once per suspend,
    /// and a signal of another name or interface is not.
    #[test]
    fn a_wake_up_is_heard_once_per_suspend_and_nothing_else_is() {
        let Some(bus) = PrivateBus::start() else { return };
        let mut wakes = Wakes::subscribe(&bus.connect()).unwrap();
        let (heard, wakes_heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while wakes.next_wake().is_some() {
                if heard.send(()).is_err() {
                    return;
                }
            }
        });

        let logind = bus.connect();
        logind.request_name(LOGIN_NAME).unwrap();
        let emit = |interface: &str, member: &str, start: bool| {
            logind.emit_signal(None::<()>, LOGIN_PATH, interface, member, &start).unwrap();
        };
        emit(LOGIN_MANAGER, PREPARE_FOR_SLEEP, true);
        emit(LOGIN_MANAGER, "PrepareForShutdown", false);
        emit("org.example.NotLogind", PREPARE_FOR_SLEEP, false);
        emit(LOGIN_MANAGER, PREPARE_FOR_SLEEP, false);
        wakes_heard.recv_timeout(Duration::from_secs(10)).expect("the wake-up is heard");
        // A second suspend, a second wake-up.
        emit(LOGIN_MANAGER, PREPARE_FOR_SLEEP, true);
        emit(LOGIN_MANAGER, PREPARE_FOR_SLEEP, false);
        wakes_heard.recv_timeout(Duration::from_secs(10)).expect("the second wake-up is heard");
        // The bus keeps the order: a signal heard that should not have been
        // would be one more here.
        assert!(wakes_heard.recv_timeout(Duration::from_millis(300)).is_err(), "one wake-up each");
    }
}
