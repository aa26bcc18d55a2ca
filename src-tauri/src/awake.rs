//! Keeps the computer awake while a lesson is recorded: a logind inhibitor
//! (`sleep:idle`, mode `block`) held from Start to Stop on Linux, the
//! `keepawake` crate's request on Windows and macOS.
//!
//! It is held while paused too: a pause is a short break in the same
//! lesson, and a laptop that suspends during it would take the microphone
//! away and split the lesson when the teacher resumes. It is released when
//! the recording stops, whatever stopped it.
//!
//! logind hands out the inhibitor as a file descriptor; the inhibitor lasts
//! as long as the descriptor is open, so dropping it releases it, and a
//! crashed app cannot keep the computer awake. Where logind is absent (a
//! container, a desktop without systemd) the app logs it once and records
//! anyway.
//!
//! The app keeps its own record of the inhibitor ([`Awake`], in
//! `desktop_status`): the one witness where logind is absent, and what
//! logind's `ListInhibitors` must agree with where it runs.

use serde::Serialize;
use tokio::sync::watch;

use crate::controls::Activity;

/// What logind's `ListInhibitors` shows as the inhibitor's owner.
pub const WHO: &str = "Opptak";
/// Why, as logind shows it.
pub const WHY: &str = "Recording a lesson";
/// What is inhibited: suspend and going idle.
pub const WHAT: &str = "sleep:idle";

/// Whether the computer must stay awake during `activity`.
pub fn wanted(activity: Activity) -> bool {
    activity.is_recording()
}

/// What to do with the inhibitor, holding it or not, when the activity
/// becomes `activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask logind for an inhibitor.
    Take,
    /// Close the inhibitor's descriptor.
    Release,
    /// Nothing changes.
    Keep,
}

/// The step from `held` to what `activity` wants.
pub fn step(held: bool, activity: Activity) -> Step {
    match (held, wanted(activity)) {
        (false, true) => Step::Take,
        (true, false) => Step::Release,
        _ => Step::Keep,
    }
}

/// Whether the computer is being kept awake, as the app itself records it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, specta::Type)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Awake {
    /// No inhibitor is held: nothing records, or the recording stopped.
    #[default]
    Released,
    /// An inhibitor is held: the computer does not sleep while recording.
    Held,
    /// A recording runs, but the computer could not be kept awake.
    Unavailable {
        /// Why not (no system bus, logind refused…).
        reason: String,
    },
}

/// An open inhibitor: the computer stays awake until it is dropped.
pub struct Inhibitor {
    #[cfg(target_os = "linux")]
    _fd: zbus::zvariant::OwnedFd,
    #[cfg(not(target_os = "linux"))]
    _awake: keepawake::KeepAwake,
}

impl std::fmt::Debug for Inhibitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inhibitor").finish_non_exhaustive()
    }
}

/// Asks logind to keep the computer awake. Blocks on D-Bus.
#[cfg(target_os = "linux")]
pub fn inhibit() -> Result<Inhibitor, String> {
    let bus = zbus::blocking::Connection::system().map_err(|err| format!("no system bus ({err})"))?;
    let fd: zbus::zvariant::OwnedFd = bus
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Inhibit",
            &(WHAT, WHO, WHY, "block"),
        )
        .and_then(|reply| reply.body().deserialize())
        .map_err(|err| format!("logind refused ({err})"))?;
    Ok(Inhibitor { _fd: fd })
}

/// Elsewhere the platform's own request (a power assertion on macOS,
/// `SetThreadExecutionState` on Windows), with the display free to turn off.
#[cfg(not(target_os = "linux"))]
pub fn inhibit() -> Result<Inhibitor, String> {
    let awake = keepawake::Builder::default()
        .display(false)
        .idle(true)
        .sleep(true)
        .reason(WHY)
        .app_name(WHO)
        .app_reverse_domain("no.opptak.desktop")
        .create()
        .map_err(|err| format!("the system refused ({err})"))?;
    Ok(Inhibitor { _awake: awake })
}

/// Holds an inhibitor whenever `activity` says a recording runs, until the
/// app closes, and keeps `record` saying what it holds.
pub async fn follow(mut activity: watch::Receiver<Activity>, record: watch::Sender<Awake>) {
    let mut held: Option<Inhibitor> = None;
    let mut wanted_now = false;
    let mut told_absent = false;
    loop {
        let now = *activity.borrow_and_update();
        match step(wanted_now, now) {
            Step::Take => {
                wanted_now = true;
                let asked = tauri::async_runtime::spawn_blocking(inhibit)
                    .await
                    .unwrap_or_else(|err| Err(format!("asking to stay awake stopped unexpectedly ({err})")));
                match asked {
                    Ok(inhibitor) => {
                        tracing::info!("the computer stays awake while recording");
                        held = Some(inhibitor);
                        record.send_replace(Awake::Held);
                    }
                    Err(why) => {
                        if !told_absent {
                            told_absent = true;
                            tracing::warn!(why, "cannot keep the computer awake; recording goes on");
                        }
                        record.send_replace(Awake::Unavailable { reason: why });
                    }
                }
            }
            Step::Release => {
                wanted_now = false;
                if held.take().is_some() {
                    tracing::info!("the computer may sleep again");
                }
                record.send_replace(Awake::Released);
            }
            Step::Keep => {}
        }
        if activity.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awake_from_start_to_stop_and_through_a_pause() {
        let lesson = [
            (Activity::Recording, Step::Take),
            (Activity::Paused, Step::Keep),
            (Activity::Recording, Step::Keep),
            (Activity::Uploading { percent: 10 }, Step::Release),
            (Activity::Idle, Step::Keep),
            (Activity::Paused, Step::Take),
            (Activity::Idle, Step::Release),
        ];
        let mut held = false;
        for (activity, expected) in lesson {
            let step = step(held, activity);
            assert_eq!(step, expected, "at {activity:?}");
            held = match step {
                Step::Take => true,
                Step::Release => false,
                Step::Keep => held,
            };
        }
    }

    /// The record follows a lesson: released before, held (or unavailable,
    /// with the reason, where logind does not answer) from Start through a
    /// pause to Stop, released after; a second lesson is recorded the same.
    #[test]
    fn the_record_says_held_or_unavailable_while_recording_and_released_after() {
        let (activity, follows) = watch::channel(Activity::Idle);
        let (record, mut reads) = watch::channel(Awake::Released);
        tauri::async_runtime::spawn(follow(follows, record));
        let logind = inhibit();
        let expected = match &logind {
            Ok(_) => Awake::Held,
            Err(why) => Awake::Unavailable { reason: why.clone() },
        };
        drop(logind);
        let mut wait_for = |wanted: &Awake, what: &str| {
            let reached = tauri::async_runtime::block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), reads.wait_for(|now| now == wanted))
                    .await
                    .is_ok()
            });
            assert!(reached, "{what}: {:?}, not {wanted:?}", *reads.borrow());
        };
        for lesson in 1..=2 {
            assert_eq!(*activity.borrow(), Activity::Idle);
            activity.send_replace(Activity::Recording);
            wait_for(&expected, &format!("recording lesson {lesson}"));
            activity.send_replace(Activity::Paused);
            activity.send_replace(Activity::Recording);
            activity.send_replace(Activity::Uploading { percent: 3 });
            wait_for(&Awake::Released, &format!("after lesson {lesson}"));
            activity.send_replace(Activity::Idle);
        }
        let as_json = serde_json::to_value(&expected).unwrap();
        match expected {
            Awake::Held => assert_eq!(as_json, serde_json::json!({ "state": "held" })),
            Awake::Unavailable { reason } => {
                assert_eq!(as_json, serde_json::json!({ "state": "unavailable", "reason": reason }));
            }
            Awake::Released => unreachable!(),
        }
    }

    /// Reads logind's inhibitors: who and why of each.
    #[cfg(target_os = "linux")]
    fn inhibitors() -> Result<Vec<(String, String)>, zbus::Error> {
        let bus = zbus::blocking::Connection::system()?;
        let reply = bus.call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "ListInhibitors",
            &(),
        )?;
        let list: Vec<(String, String, String, String, u32, u32)> = reply.body().deserialize()?;
        Ok(list.into_iter().map(|(_, who, why, ..)| (who, why)).collect())
    }

    /// With logind (a desktop): the inhibitor is listed while held and gone
    /// when dropped. Without (a container): asking says why, never panics.
    #[cfg(target_os = "linux")]
    #[test]
    fn logind_lists_the_inhibitor_while_it_is_held() {
        let ours = (WHO.to_owned(), WHY.to_owned());
        match inhibit() {
            Ok(inhibitor) => {
                assert!(inhibitors().unwrap().contains(&ours), "listed while held");
                drop(inhibitor);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while inhibitors().unwrap().contains(&ours) {
                    assert!(std::time::Instant::now() < deadline, "still listed after release");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            Err(why) => {
                assert!(inhibitors().is_err(), "logind answers, yet inhibiting failed: {why}");
                assert!(why.contains("system bus") || why.contains("logind"), "{why}");
            }
        }
    }
}
