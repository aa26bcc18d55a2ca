//! The desktop app in a real window: Xvfb, tauri-driver, WebKitWebDriver and
//! the debug binary, driven like a user would.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use opptak_journal::{Journal, RecordingState};
use opptak_tests::desktop::{WAIT, app_env, button, close, connect, elapsed_seconds, poll, settle, testid};
use opptak_tests::{
    ChildGuard, PulseAudio, TauriDriver, Xvfb, screenshots_dir, seconds_of_tone, sha256_hex, write_tone,
};

#[tokio::test(flavor = "multi_thread")]
async fn settings_shows_the_version_and_the_doctor_findings() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let env = app_env(&xvfb, &pulse, data_dir.path());
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        let record = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        assert!(record.is_displayed().await?, "the app opens on the Record screen");

        client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-settings"))).await?;
        let version =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("settings-version"))).await?;
        assert_eq!(version.text().await?.trim(), env!("CARGO_PKG_VERSION"));
        let shown_dir = client.find(Locator::Css(&testid("settings-data-dir"))).await?.text().await?;
        assert_eq!(shown_dir.trim(), data_dir.path().display().to_string());
        // The default destination is the server inside the app, on loopback.
        let destination = client.find(Locator::Css(&testid("settings-destination"))).await?.text().await?;
        assert!(destination.starts_with("This computer (http://127.0.0.1:"), "{destination}");

        // The doctor's findings come from the real command, not the page.
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("doctor-check"))).await?;
        let checks = client.find_all(Locator::Css(&testid("doctor-check"))).await?;
        let mut ids = Vec::new();
        for check in &checks {
            ids.push(check.attr("data-check-id").await?.unwrap_or_default());
        }
        assert!(ids.contains(&"data-dir".to_owned()) && ids.contains(&"microphone".to_owned()), "{ids:?}");

        // Settings with destinations is `settings.png`, taken by desktop_settings.rs.

        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_made_in_the_window_holds_the_tone_and_is_safe_on_the_server() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let tone = data_dir.path().join("tone.wav");
    write_tone(&tone, 5.0);
    let env = app_env(&xvfb, &pulse, data_dir.path());
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        // The virtual microphone is listed and preselected as the default.
        let microphone = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        let chosen = microphone.prop("value").await?.unwrap_or_default();
        assert!(!chosen.is_empty(), "a microphone is preselected");
        let name = client.find(Locator::Css(&testid("recording-name"))).await?.prop("value").await?;
        assert!(name.as_deref().is_some_and(|name| name.starts_with("Lesson 20")), "{name:?}");
        let destination = client.find(Locator::Css(&testid("record-destination"))).await?.text().await?;
        assert!(destination.starts_with("This computer (http://127.0.0.1:"), "{destination}");

        let space = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("space-left"))).await?;
        let space = space.text().await?;
        assert!(space.contains("of recording space left"), "{space}");

        // Test microphone: nothing plays into the virtual microphone yet, so
        // it hears silence and says what to check; with the tone, it hears it.
        button(&client, "Test microphone").await?.click().await?;
        let result =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone-test-result"))).await?;
        let words = result.text().await?;
        assert_eq!(result.attr("data-heard").await?.as_deref(), Some("false"), "{words}");
        assert!(words.starts_with("We heard nothing from ") && words.contains("not muted"), "{words}");
        // Its own folder: the lesson's 1 kHz clip is `tone.wav` in the data folder.
        let test_clip_dir = tempfile::tempdir()?;
        let tone_player = pulse.play_tone_in_background(test_clip_dir.path(), 8)?;
        button(&client, "Test microphone").await?.click().await?;
        poll("the microphone test hears the tone", WAIT, || async {
            let found = client.find(Locator::Css(&testid("microphone-test-result"))).await;
            Ok(match found {
                // The first test's result may go stale while the second runs.
                Ok(result) => result.attr("data-heard").await.ok().flatten().as_deref() == Some("true"),
                Err(_) => false,
            })
        })
        .await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone-test-playback"))).await?;
        drop(tone_player);

        button(&client, "Start recording").await?.click().await?;
        button(&client, "Stop recording").await?;
        // A second start while recording is refused with a code the UI can branch on.
        let second = client
            .execute_async(
                "const done = arguments[0];
                 const internals = window.__TAURI_INTERNALS__;
                 const channel = '__CHANNEL__:' + internals.transformCallback(() => {});
                 internals.invoke('start_recording', { device: null, name: 'twice', onEvent: channel })
                   .then(() => done('started'), (err) => done(err.code));",
                vec![],
            )
            .await?;
        assert_eq!(second, "already_recording");

        let mut paplay = Command::new("paplay");
        paplay.args(["-d", "vsink"]).arg(&tone).stdout(Stdio::null());
        for (key, value) in pulse.env() {
            paplay.env(key, value);
        }
        let mut player = ChildGuard::spawn("paplay", &mut paplay)?;
        let meter = client.find(Locator::Css(&testid("level-meter"))).await?;
        // The screenshot shows the clock running and the meter full of tone.
        poll("the clock runs and the level meter shows the tone", WAIT, || async {
            let level = meter.attr("aria-valuenow").await?.unwrap_or_default();
            Ok(level.parse::<u32>().unwrap_or(0) > 50 && elapsed_seconds(&client).await? >= 2)
        })
        .await?;
        settle(&client).await;
        std::fs::write(screenshots_dir().join("record.png"), client.screenshot().await?)?;
        let status = player.wait_timeout(Duration::from_secs(15))?;
        anyhow::ensure!(status.success(), "paplay failed: {status}");
        poll("the elapsed time counts the tone", WAIT, || async { Ok(elapsed_seconds(&client).await? >= 5) })
            .await?;

        button(&client, "Pause recording").await?.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("paused"))).await?;
        button(&client, "Resume recording").await?.click().await?;
        button(&client, "Pause recording").await?;

        // Every status the screen shows after Stop, in order.
        client
            .execute(
                "window.shownStatuses = [];
                 new MutationObserver(() => {
                   const status = document.querySelector('[data-testid=\"record-status\"]');
                   const text = status && status.textContent.trim();
                   if (text && window.shownStatuses.at(-1) !== text) window.shownStatuses.push(text);
                 }).observe(document.body, { subtree: true, childList: true, characterData: true });",
                vec![],
            )
            .await?;
        let stopped_at = Instant::now();
        button(&client, "Stop recording").await?.click().await?;
        let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
        poll("Safe on server", WAIT, || async { Ok(status.text().await?.contains("Safe on server")) })
            .await?;
        eprintln!("stop → \"Safe on server\" shown in {:?}", stopped_at.elapsed());
        let shown: Vec<String> =
            serde_json::from_value(client.execute("return window.shownStatuses", vec![]).await?)?;
        eprintln!("statuses shown: {shown:?}");
        // Statuses can be skipped when the server is quick, never shown out of order.
        let order = [
            "Finishing",
            "Saved on this computer",
            "Uploading",
            "Checking on the server",
            "Safe on server ✓",
        ];
        let ranks: Vec<usize> = shown
            .iter()
            .map(|text| order.iter().position(|step| text.starts_with(step)).unwrap_or(usize::MAX))
            .collect();
        assert!(ranks.is_sorted() && ranks.last() == Some(&4), "{shown:?}");

        anyhow::Ok(())
    }
    .await;
    close(client, result).await;

    let journal = Journal::open_in(data_dir.path()).unwrap();
    let recordings = journal.recordings().unwrap();
    assert_eq!(recordings.len(), 1, "one recording: {recordings:?}");
    let recording = &recordings[0];
    assert_eq!(recording.state, RecordingState::Ready, "{recording:?}");
    assert!(recording.name.starts_with("Lesson 20"), "the name from the screen: {}", recording.name);
    let local_sha256 = sha256_hex(&std::fs::read(&recording.path).unwrap());
    assert_eq!(recording.sha256.as_deref(), Some(local_sha256.as_str()));
    assert_eq!(
        recording.server_sha256.as_deref(),
        Some(local_sha256.as_str()),
        "the server holds the same bytes"
    );
    let tone_seconds = seconds_of_tone(&recording.path);
    assert!(tone_seconds >= 4.0, "the file holds {tone_seconds} s of the 5 s tone");
}
