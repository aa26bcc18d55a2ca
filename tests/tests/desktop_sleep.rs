//! A suspend that happened anyway during a lesson, in the real window: the
//! app under Xvfb whose SYSTEM bus (`DBUS_SYSTEM_BUS_ADDRESS`) is a private
//! D-Bus daemon on which the test plays logind. CI cannot really suspend a
//! machine, so the test sends what logind sends around a suspend:
//! `PrepareForSleep(true)`, then `PrepareForSleep(false)` once awake. The
//! lesson must go on in a new recording ("X (2)") that the window keeps
//! following, the window's Stop must stop it, and both recordings must
//! become safe on the server inside the app.

use fantoccini::Locator;
use opptak_journal::{Journal, LocalRecording, RecordingState};
use opptak_tests::desktop::{
    Desktop, SessionBus, WAIT, app_log, button, desktop_status, elapsed_seconds, poll, testid,
};

/// logind's name, object, interface and signal, as the app listens for them.
const LOGIND: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";
const PREPARE_FOR_SLEEP: &str = "PrepareForSleep";
/// The app's log line once it listens (`opptak_desktop::sleep::FOLLOWING_LOGIND`).
const FOLLOWING_LOGIND: &str = "following logind";

/// The journal's recordings, oldest first.
fn recordings(journal: &Journal) -> anyhow::Result<Vec<LocalRecording>> {
    let mut recordings = journal.recordings()?;
    recordings.sort_by_key(|recording| recording.id);
    Ok(recordings)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_suspend_the_lesson_goes_on_in_a_new_recording_and_both_are_safe_on_the_server() {
    let Some(system_bus) = SessionBus::start() else { return };
    let logind = zbus::connection::Builder::address(system_bus.address.as_str())
        .and_then(|builder| builder.name(LOGIND))
        .expect("a connection owning logind's name");
    let logind = logind.build().await.expect("own logind's name on the private system bus");
    let Some(desktop) = Desktop::with()
        .warm_microphone()
        .env("DBUS_SYSTEM_BUS_ADDRESS", system_bus.address.clone())
        .open()
        .await
    else {
        return;
    };
    let client = &desktop.client;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        poll("the app listens to logind", WAIT, || async {
            Ok(app_log(desktop.data_dir()).contains(FOLLOWING_LOGIND))
        })
        .await?;
        button(client, "Start recording").await?.click().await?;
        button(client, "Stop recording").await?;
        poll("2 s recorded", WAIT, || async { Ok(elapsed_seconds(client).await? >= 2) }).await?;
        let journal = Journal::open_in(desktop.data_dir())?;
        let first = recordings(&journal)?;
        anyhow::ensure!(first.len() == 1, "one recording before the sleep: {first:?}");

        let emit = |start: bool| {
            let logind = logind.clone();
            async move {
                logind.emit_signal(None::<()>, LOGIND_PATH, LOGIND_MANAGER, PREPARE_FOR_SLEEP, &start).await
            }
        };
        emit(true).await?;
        emit(false).await?;
        poll("a second recording of the lesson", WAIT, || async { Ok(recordings(&journal)?.len() == 2) })
            .await?;
        let both = recordings(&journal)?;
        let lesson = &first[0].name;
        anyhow::ensure!(both[0].id == first[0].id && both[0].name == *lesson, "{both:?}");
        anyhow::ensure!(both[1].name == format!("{lesson} (2)"), "named like the lesson: {both:?}");
        poll("the first file is finished", WAIT, || async {
            Ok(journal.recording(both[0].id)?.is_some_and(|recording| recording.finished))
        })
        .await?;

        // The window follows the lesson on: still recording, its clock going on.
        let before = elapsed_seconds(client).await?;
        anyhow::ensure!(before >= 2, "the clock counts the whole lesson: {before} s");
        poll("the clock goes on", WAIT, || async { Ok(elapsed_seconds(client).await? >= before + 2) })
            .await?;
        let activity = desktop_status(client).await?["activity"]["state"].clone();
        anyhow::ensure!(activity == "recording", "the app still records: {activity}");

        button(client, "Stop recording").await?.click().await?;
        button(client, "Record another lesson").await?;
        poll("both recordings safe on the server", WAIT * 2, || async {
            let now = recordings(&journal)?;
            anyhow::ensure!(now.len() == 2, "no third recording: {now:?}");
            Ok(now.iter().all(|recording| recording.state == RecordingState::Ready))
        })
        .await?;
        for recording in recordings(&journal)? {
            anyhow::ensure!(recording.finished && recording.sha256.is_some(), "{recording:?}");
            anyhow::ensure!(recording.sha256 == recording.server_sha256, "{recording:?}");
            let reader = hound::WavReader::open(&recording.path)?;
            anyhow::ensure!(reader.duration() > 0, "{} holds sound", recording.name);
        }
        let activity = desktop_status(client).await?["activity"]["state"].clone();
        anyhow::ensure!(
            activity != "recording" && activity != "paused",
            "Stop stopped the lesson: {activity}"
        );
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
