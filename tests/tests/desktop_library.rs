//! The Library in the real window: Xvfb, tauri-driver, WebKitWebDriver, a
//! PulseAudio virtual microphone and the server inside the app.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use opptak_journal::{Journal, NewRecording, RecordingState};
use opptak_tests::desktop::{WAIT, app_env, button, connect, elapsed_seconds, poll, settle, testid};
use opptak_tests::{
    ChildGuard, PulseAudio, TauriDriver, Xvfb, free_port, screenshots_dir, seconds_of_tone, write_tone,
};

/// The Library's row for recording `id`: its state and whether its file is here.
async fn row(client: &Client, id: i64) -> anyhow::Result<Option<(String, bool)>> {
    let found = client.find_all(Locator::Css(&testid(&format!("recording-{id}")))).await?;
    let Some(row) = found.first() else { return Ok(None) };
    let state = row.attr("data-state").await?.unwrap_or_default();
    let local = row.attr("data-local-file").await?.as_deref() == Some("true");
    Ok(Some((state, local)))
}

/// Waits until recording `id` is listed in `state`.
async fn wait_for_state(client: &Client, id: i64, state: &str, timeout: Duration) -> anyhow::Result<()> {
    poll(&format!("recording {id} listed as {state}"), timeout, || async {
        Ok(row(client, id).await?.is_some_and(|(shown, _)| shown == state))
    })
    .await
}

/// A finished WAV in the data folder's recordings, journaled as `name`.
fn journaled_tone(journal: &Journal, data_dir: &Path, name: &str) -> (i64, PathBuf) {
    let folder = data_dir.join("recordings");
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("{name}.wav"));
    write_tone(&path, 2.0);
    let size = std::fs::metadata(&path).unwrap().len();
    let new = NewRecording {
        finished: true,
        total_bytes: Some(size),
        ..NewRecording::growing(&path, name, "audio/wav", "audio", false)
    };
    (journal.add_recording(new).unwrap().id, path)
}

/// Records `seconds` of the 1 kHz tone through the Record screen; returns
/// the recording's name.
async fn record_tone(
    client: &Client,
    pulse: &PulseAudio,
    tone: &Path,
    seconds: u32,
) -> anyhow::Result<String> {
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
    let name =
        client.find(Locator::Css(&testid("recording-name"))).await?.prop("value").await?.unwrap_or_default();
    button(client, "Start recording").await?.click().await?;
    button(client, "Stop recording").await?;
    let mut player = play(pulse, tone)?;
    poll("the tone is recorded", WAIT, || async { Ok(elapsed_seconds(client).await? >= seconds) }).await?;
    button(client, "Stop recording").await?.click().await?;
    player.stop();
    Ok(name)
}

fn play(pulse: &PulseAudio, tone: &Path) -> anyhow::Result<ChildGuard> {
    let mut paplay = Command::new("paplay");
    paplay.args(["-d", "vsink"]).arg(tone).stdout(Stdio::null()).envs(pulse.env());
    ChildGuard::spawn("paplay", &mut paplay)
}

async fn open_library(client: &Client) -> anyhow::Result<()> {
    client.find(Locator::Css(&testid("nav-library"))).await?.click().await?;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-library"))).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_shows_a_recording_safe_and_deletes_a_safe_copy_at_once_but_the_only_copy_only_when_confirmed()
 {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let tone = data_dir.path().join("tone.wav");
    write_tone(&tone, 8.0);

    // Made before the app starts, as `opptak record --no-upload` leaves one:
    // kept on this computer, nothing uploads it.
    let journal = Journal::open_in(data_dir.path()).unwrap();
    let (kept, kept_file) = journaled_tone(&journal, data_dir.path(), "Kept on this computer");
    journal.set_keep_local(kept, true).unwrap();
    // One for a school server that is down: it waits for the network.
    let down = format!("http://127.0.0.1:{}", free_port());
    let school =
        journal.upsert_destination(&down, "token-for-a-server-that-is-down", "School server").unwrap();
    let (waiting, _) = journaled_tone(&journal, data_dir.path(), "For the school server");
    journal.set_destination(waiting, Some(school)).unwrap();

    let env = app_env(&xvfb, &pulse, data_dir.path());
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        let name = record_tone(&client, &pulse, &tone, 5).await?;
        let stopped_at = Instant::now();
        let recorded = journal
            .recordings()?
            .into_iter()
            .find(|recording| recording.name == name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not in the journal"))?;
        open_library(&client).await?;
        wait_for_state(&client, recorded.id, "safe", Duration::from_secs(20)).await?;
        eprintln!("stop → listed safe on the server in {:?}", stopped_at.elapsed());
        let status = client.find(Locator::Css(&testid(&format!("recording-status-{}", recorded.id)))).await?;
        assert_eq!(status.text().await?.trim(), "Safe on server ✓");
        wait_for_state(&client, kept, "onlyOnThisComputer", WAIT).await?;
        wait_for_state(&client, waiting, "waitingForNetwork", WAIT).await?;
        let waiting_text =
            client.find(Locator::Css(&testid(&format!("recording-status-{waiting}")))).await?.text().await?;
        assert!(waiting_text.starts_with("Waiting for network"), "{waiting_text}");
        // Newest first: the recording made now comes before the two made earlier.
        let rows = client.find_all(Locator::Css("[data-testid^=\"recording-\"][data-state]")).await?;
        assert_eq!(rows[0].attr("data-testid").await?, Some(format!("recording-{}", recorded.id)));
        settle(&client).await;
        std::fs::write(screenshots_dir().join("library.png"), client.screenshot().await?)?;

        // Play: the player streams the file from the app's loopback address.
        client.find(Locator::Css(&testid(&format!("play-{kept}")))).await?.click().await?;
        let player = format!("document.querySelector('[data-testid=\"player-{kept}\"]')");
        poll("the player loads the recording", WAIT, || async {
            let script =
                format!("const p = {player}; return p ? [p.readyState, p.duration, !!p.error, p.error && p.error.code] : null;");
            let loaded = client.execute(&script, vec![]).await?;
            anyhow::ensure!(loaded[2] != true, "the player could not read the file: {loaded}");
            Ok(loaded[0].as_u64().unwrap_or(0) >= 1)
        })
        .await?;
        let source = client.execute(&format!("return {player}.currentSrc"), vec![]).await?;
        assert!(source.as_str().is_some_and(|src| src.starts_with("http://127.0.0.1:")), "{source}");
        let duration = client.execute(&format!("return {player}.duration"), vec![]).await?;
        let duration = duration.as_f64().unwrap_or(0.0);
        assert!((duration - 2.0).abs() < 0.1, "the player knows the 2 s recording: {duration}");
        client.find(Locator::Css(&testid(&format!("play-{kept}")))).await?.click().await?;

        // The only copy: the confirmation says so, and Cancel keeps the file.
        client.find(Locator::Css(&testid(&format!("delete-{kept}")))).await?.click().await?;
        let title = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("delete-title"))).await?;
        assert!(title.text().await?.contains("only copy"), "{}", title.text().await?);
        let body = client.find(Locator::Css(&testid("delete-body"))).await?.text().await?;
        assert!(body.contains("only copy"), "{body}");
        client.find(Locator::Css(&testid("delete-cancel"))).await?.click().await?;
        poll("the dialog closes", WAIT, || async {
            Ok(client.find_all(Locator::Css(&testid("delete-title"))).await?.is_empty())
        })
        .await?;
        assert!(kept_file.exists(), "Cancel keeps the only copy");
        assert_eq!(row(&client, kept).await?, Some(("onlyOnThisComputer".to_owned(), true)));

        // Safe on the server: deleted at once, and still listed as safe.
        client.find(Locator::Css(&testid(&format!("delete-{}", recorded.id)))).await?.click().await?;
        let title = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("delete-title"))).await?;
        assert!(!title.text().await?.contains("only copy"));
        client.find(Locator::Css(&testid("delete-confirm"))).await?.click().await?;
        poll("the safe recording's file is deleted", WAIT, || async {
            Ok(row(&client, recorded.id).await? == Some(("safe".to_owned(), false)))
        })
        .await?;
        assert!(!recorded.path.exists(), "the local file is gone");
        let length = client
            .find(Locator::Css(&format!("{} [aria-label=Length]", testid(&format!("recording-{}", recorded.id)))))
            .await?
            .text()
            .await?;
        assert!(length.starts_with("0:0") && length != "0:00", "the row still shows its length: {length}");
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    result.unwrap();
    assert!(kept_file.exists());
    // The deleted file's length stays in the journal for the next launch.
    let lengths = journal.kept_lengths().unwrap();
    let deleted = lengths.iter().find(|(_, seconds)| **seconds >= 3.0).map(|(id, _)| *id);
    assert!(deleted.is_some_and(|id| id != kept), "the deleted recording's length is kept: {lengths:?}");
    let kept_row = journal.recording(kept).unwrap().unwrap();
    assert_eq!((kept_row.state, kept_row.keep_local), (RecordingState::Stopped, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_whose_app_was_killed_is_recovered_and_safe_at_the_next_launch_with_no_click() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let tone = data_dir.path().join("tone.wav");
    write_tone(&tone, 10.0);
    let env = app_env(&xvfb, &pulse, data_dir.path());

    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;
    let killed = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        button(&client, "Start recording").await?.click().await?;
        button(&client, "Stop recording").await?;
        let mut player = play(&pulse, &tone)?;
        poll("4 s of tone recorded", WAIT, || async { Ok(elapsed_seconds(&client).await? >= 4) }).await?;
        let app = driver.launched("opptak-desktop").ok_or_else(|| anyhow::anyhow!("the app's process"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(app as i32), nix::sys::signal::Signal::SIGKILL)?;
        poll("the app is gone", WAIT, || async { Ok(!Path::new(&format!("/proc/{app}")).exists()) }).await?;
        player.stop();
        anyhow::Ok(())
    }
    .await;
    // The session's app is gone: ending the session may fail.
    let _ = client.close().await;
    drop(driver);
    killed.unwrap();

    let journal = Journal::open_in(data_dir.path()).unwrap();
    let recordings = journal.recordings().unwrap();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let id = recordings[0].id;
    assert_eq!(recordings[0].state, RecordingState::Recording, "the killed app could not stop it");

    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;
    let result = async {
        open_library(&client).await?;
        // No click: the launch repairs the file and uploads it.
        wait_for_state(&client, id, "safe", Duration::from_secs(30)).await?;
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    result.unwrap();

    let recording = journal.recording(id).unwrap().unwrap();
    assert_eq!(recording.state, RecordingState::Ready);
    assert_eq!(recording.sha256, recording.server_sha256);
    let tone_seconds = seconds_of_tone(&recording.path);
    assert!(tone_seconds >= 3.0, "the recovered file holds {tone_seconds} s of tone");
}
