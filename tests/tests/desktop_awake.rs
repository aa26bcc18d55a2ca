//! Staying awake while recording, read back in the real window: the app's
//! own record of its sleep inhibitor (`desktop_status().awake`) says
//! released before Start, held through a pause until Stop, and released
//! after. Where logind answers on the system bus, its `ListInhibitors` must
//! agree; where it does not (a container, this CI), the record must say
//! "unavailable" with the reason, and the app logs that once however many
//! lessons it records.

use fantoccini::{Client, Locator};
use opptak_tests::desktop::{Desktop, WAIT, app_log, button, desktop_status, elapsed_seconds, poll, testid};

/// What logind shows as the app's inhibitor (who, why), as in `awake.rs`.
const OURS: (&str, &str) = ("Opptak", "Recording a lesson");
/// The app's log line when it cannot keep the computer awake.
const CANNOT_STAY_AWAKE: &str = "cannot keep the computer awake";

/// logind's inhibitors (who, why), or why logind cannot be asked.
fn logind_inhibitors() -> Result<Vec<(String, String)>, String> {
    let bus = zbus::blocking::Connection::system().map_err(|err| format!("no system bus ({err})"))?;
    let reply = bus
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "ListInhibitors",
            &(),
        )
        .map_err(|err| format!("logind does not answer ({err})"))?;
    let list: Vec<(String, String, String, String, u32, u32)> =
        reply.body().deserialize().map_err(|err| err.to_string())?;
    Ok(list.into_iter().map(|(_, who, why, ..)| (who, why)).collect())
}

/// Whether logind lists the app's inhibitor.
fn logind_lists_ours() -> bool {
    logind_inhibitors().is_ok_and(|list| list.iter().any(|(who, why)| (who.as_str(), why.as_str()) == OURS))
}

/// The app's record of its inhibitor: `held`, `released` or `unavailable`.
async fn awake(client: &Client) -> anyhow::Result<serde_json::Value> {
    Ok(desktop_status(client).await?["awake"].clone())
}

/// Waits until the record's state is `state`.
async fn awake_becomes(client: &Client, state: &str) -> anyhow::Result<serde_json::Value> {
    poll(&format!("the inhibitor is {state}"), WAIT, || async { Ok(awake(client).await?["state"] == state) })
        .await?;
    awake(client).await
}

/// What the record must say while recording here: held where logind
/// answers, unavailable (with its reason) where it does not.
fn expect_while_recording(record: &serde_json::Value, logind: bool) -> anyhow::Result<()> {
    if logind {
        anyhow::ensure!(record["state"] == "held", "logind answers, yet the record says {record}");
        anyhow::ensure!(logind_lists_ours(), "the app says held, but logind does not list {OURS:?}");
    } else {
        anyhow::ensure!(record["state"] == "unavailable", "no logind, yet the record says {record}");
        let reason = record["reason"].as_str().unwrap_or_default();
        anyhow::ensure!(
            reason.contains("system bus") || reason.contains("logind"),
            "the reason says what is missing: {record}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inhibitor_is_held_from_start_through_a_pause_and_released_after_stop() {
    let Some(desktop) = Desktop::with().warm_microphone().open().await else { return };
    let client = &desktop.client;
    let logind = match logind_inhibitors() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("no logind here ({why}): the app's record must say unavailable");
            false
        }
    };

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        let before = awake(client).await?;
        anyhow::ensure!(before["state"] == "released", "nothing records yet: {before}");
        anyhow::ensure!(!logind_lists_ours(), "logind lists an inhibitor before Start");

        for lesson in 1..=2 {
            if lesson > 1 {
                button(client, "Record another lesson").await?.click().await?;
            }
            button(client, "Start recording").await?.click().await?;
            button(client, "Stop recording").await?;
            poll("the recording runs", WAIT, || async { Ok(elapsed_seconds(client).await? >= 1) }).await?;
            let recording = awake(client).await?;
            eprintln!("lesson {lesson}, recording: {recording}");
            expect_while_recording(&recording, logind)?;

            let pause = client.find(Locator::Css(&testid("pause-recording"))).await?;
            pause.click().await?;
            button(client, "Resume recording").await?;
            poll("the activity is paused", WAIT, || async {
                Ok(desktop_status(client).await?["activity"]["state"] == "paused")
            })
            .await?;
            let paused = awake(client).await?;
            anyhow::ensure!(paused == recording, "a pause keeps the inhibitor: {paused}, not {recording}");
            expect_while_recording(&paused, logind)?;
            button(client, "Resume recording").await?.click().await?;
            button(client, "Pause recording").await?;

            button(client, "Stop recording").await?.click().await?;
            let after = awake_becomes(client, "released").await?;
            eprintln!("lesson {lesson}, stopped: {after}");
            poll("logind no longer lists the inhibitor", WAIT, || async { Ok(!logind_lists_ours()) }).await?;
        }
        // Said once in the log, not once per lesson.
        let said = app_log(desktop.data_dir()).matches(CANNOT_STAY_AWAKE).count();
        anyhow::ensure!(said == usize::from(!logind), "the log says \"{CANNOT_STAY_AWAKE}\" {said} times");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
