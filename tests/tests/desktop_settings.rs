//! The Settings screen in a real window (Xvfb, tauri-driver, WebKitWebDriver,
//! the debug binary), with a real school server (`opptak serve` on
//! 127.0.0.1): a wrong token is refused, the right one connects, the
//! server becomes the default and a recording made on the Record screen is
//! ready there with the same SHA-256; with the server down the recording
//! waits for the network and becomes safe by itself once it is back. No
//! file Opptak writes in the open holds a byte of the token.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use opptak_journal::{Journal, RecordingState};
use opptak_tests::desktop::{WAIT, app_env, button, connect, elapsed_seconds, poll, settle, testid};
use opptak_tests::{
    ChildGuard, OpptakServe, PulseAudio, TEST_TOKEN, TauriDriver, Xvfb, screenshots_dir, sha256_hex,
    write_tone,
};

/// How long a recording may wait for a school server that came back: the
/// upload's backoff after a few failed attempts is up to ~16 s.
const BACK_ONLINE_WAIT: Duration = Duration::from_secs(90);

/// The recordings the school server lists for the test user, as JSON.
async fn server_recordings(url: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let response = reqwest::Client::new()
        .get(format!("{url}/restapi/personal/mediarecorder/recordings/v1"))
        .bearer_auth(TEST_TOKEN)
        .header("accept", "application/json")
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "recordings/v1 answered {}", response.status());
    Ok(response.json().await?)
}

/// Types `text` into the field with `data-testid` `id`, replacing what is there.
async fn fill(client: &Client, id: &str, text: &str) -> anyhow::Result<()> {
    let field = client.find(Locator::Css(&testid(id))).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// Presses the add form's Test connection and returns the outcome shown.
async fn test_form_connection(client: &Client) -> anyhow::Result<(String, String)> {
    // The previous answer is removed while the test runs.
    client.find(Locator::Css(&testid("add-test"))).await?.click().await?;
    let result = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("add-check"))).await?;
    let outcome = result.attr("data-outcome").await?.unwrap_or_default();
    Ok((outcome, result.text().await?))
}

/// Records `seconds` of tone on the Record screen, which shows its Start
/// button, and presses Stop.
async fn record_tone(client: &Client, pulse: &PulseAudio, tone: &Path, seconds: u32) -> anyhow::Result<()> {
    button(client, "Start recording").await?.click().await?;
    button(client, "Stop recording").await?;
    let mut paplay = Command::new("paplay");
    paplay.args(["-d", "vsink"]).arg(tone).stdout(Stdio::null());
    for (key, value) in pulse.env() {
        paplay.env(key, value);
    }
    let mut player = ChildGuard::spawn("paplay", &mut paplay)?;
    poll("the clock counts the tone", WAIT, || async { Ok(elapsed_seconds(client).await? >= seconds) })
        .await?;
    let played = player.wait_timeout(Duration::from_secs(15))?;
    anyhow::ensure!(played.success(), "paplay failed: {played}");
    button(client, "Stop recording").await?.click().await?;
    Ok(())
}

/// The status line the Record screen shows after Stop.
async fn record_status(client: &Client) -> anyhow::Result<String> {
    let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
    Ok(status.text().await?)
}

/// Every file under `dir` holding `needle`, except those Opptak keeps private.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_school_server_added_in_settings_takes_recordings_and_catches_up_after_it_was_down() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let school_dir = tempfile::tempdir().unwrap();
    let mut school = OpptakServe::start(school_dir.path(), &[], &[]).unwrap();
    let school_url = school.url.clone();
    let tone = data_dir.path().join("tone.wav");
    write_tone(&tone, 4.5);
    let env = app_env(&xvfb, &pulse, data_dir.path());
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("add-destination"))).await?;
        let token_field = client.find(Locator::Css(&testid("add-token"))).await?;
        assert_eq!(token_field.attr("type").await?.as_deref(), Some("password"), "the token is hidden");

        fill(&client, "add-name", "School").await?;
        fill(&client, "add-url", &school_url).await?;
        fill(&client, "add-token", "a-wrong-token").await?;
        let (outcome, words) = test_form_connection(&client).await?;
        assert_eq!(outcome, "tokenRefused", "{words}");
        assert!(words.contains("The token was refused") && words.contains("(401)"), "{words}");

        fill(&client, "add-token", TEST_TOKEN).await?;
        // The refusal may still be on screen for a moment: ask until the new answer shows.
        let deadline = std::time::Instant::now() + WAIT;
        let (outcome, words) = loop {
            let answer = test_form_connection(&client).await?;
            if answer.0 == "ok" || std::time::Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(outcome, "ok", "{words}");
        assert!(words.contains("Connected"), "{words}");

        client.find(Locator::Css(&testid("add-submit"))).await?.click().await?;
        let school_item = "[data-testid=\"destination-item\"]:not([data-destination-id=\"this-computer\"])";
        let item = client.wait().at_most(WAIT).for_element(Locator::Css(school_item)).await?;
        assert!(item.text().await?.contains(&school_url));
        item.find(Locator::Css(&testid("make-default"))).await?.click().await?;
        poll("the school server is the default", WAIT, || async {
            let item = client.find(Locator::Css(school_item)).await?;
            Ok(item.attr("data-default").await?.as_deref() == Some("true"))
        })
        .await?;
        let store = client.find(Locator::Css(&testid("credential-store"))).await?;
        let (kind, words) = (store.attr("data-store").await?.unwrap_or_default(), store.text().await?);
        assert!(["system", "file"].contains(&kind.as_str()) && words.contains("kept in"), "{kind}: {words}");
        settle(&client).await;
        std::fs::write(screenshots_dir().join("settings.png"), client.screenshot().await?)?;

        // The Record screen names the default, and the recording goes there.
        client.find(Locator::Css(&testid("nav-record"))).await?.click().await?;
        let shown =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-destination"))).await?;
        let shown = shown.text().await?;
        assert_eq!(shown, format!("School ({school_url})"));
        // The first recording uploads from Stop on.
        set_upload_while_recording(&client, data_dir.path(), false).await?;
        record_tone(&client, &pulse, &tone, 4).await?;
        poll("Safe on server", WAIT, || async {
            Ok(record_status(&client).await?.contains("Safe on server"))
        })
        .await?;

        // Upload while recording back on: the recording that starts while
        // the server is down waits for it.
        set_upload_while_recording(&client, data_dir.path(), true).await?;
        // The school server goes away (SIGTERM to its PID); the next recording waits for it.
        school.process.stop();
        record_tone(&client, &pulse, &tone, 2).await?;
        let waiting = poll("Waiting for network", WAIT, || async {
            Ok(record_status(&client).await?.contains("Waiting for network"))
        })
        .await;
        if let Err(err) = waiting {
            anyhow::bail!("{err}; the screen says {:?}", record_status(&client).await?);
        }
        let listen = school_url.trim_start_matches("http://").to_owned();
        school = OpptakServe::start_at(school_dir.path(), &listen, &[])?;
        poll("safe on the server that came back, with no click", BACK_ONLINE_WAIT, || async {
            Ok(record_status(&client).await?.contains("Safe on server"))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    drop(driver);
    result.unwrap();

    let journal = Journal::open_in(data_dir.path()).unwrap();
    let recordings = journal.recordings().unwrap();
    assert_eq!(recordings.len(), 2, "{recordings:?}");
    let listed = server_recordings(&school.url).await.unwrap();
    assert_eq!(listed.len(), 2, "the school server has both: {listed:?}");
    let mut on_server = Vec::new();
    for item in &listed {
        assert_eq!(item["status"], "ready", "{item}");
        let id = item["recordingId"].as_str().unwrap();
        on_server.push(school.client().recording(id).await.unwrap().sha256.unwrap());
    }
    for recording in &recordings {
        assert_eq!(recording.state, RecordingState::Ready, "{recording:?}");
        let destination = journal.destination(recording.destination_id.unwrap()).unwrap().unwrap();
        assert_eq!(destination.base_url, school_url, "it went to the school server");
        let local = sha256_hex(&std::fs::read(&recording.path).unwrap());
        assert!(on_server.contains(&local), "the school server holds the same bytes: {local} {on_server:?}");
        assert_eq!(recording.server_sha256.as_deref(), Some(local.as_str()));
    }

    // The token is in no file Opptak writes in the open: not the journal,
    // not the settings, not the log. Only the credential store (here, where
    // no password store answers, its private file) holds it.
    let holding = files_holding(data_dir.path(), TEST_TOKEN.as_bytes());
    let private = data_dir.path().join("tokens.json");
    assert!(holding.iter().all(|path| *path == private), "the token leaked into {holding:?}");
    assert!(data_dir.path().join("settings.json").exists());
    assert!(std::fs::read_dir(data_dir.path().join("logs")).unwrap().count() > 0, "a log was written");
}

/// Turns Settings' upload-while-recording switch to `on`, waits until the
/// settings file says so, and goes back to the Record screen.
async fn set_upload_while_recording(client: &Client, data_dir: &Path, on: bool) -> anyhow::Result<()> {
    client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
    let switch =
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("upload-while-recording"))).await?;
    assert_eq!(switch.prop("checked").await?.as_deref(), Some(if on { "false" } else { "true" }));
    switch.click().await?;
    let saved_line = format!("\"uploadWhileRecording\": {on}");
    poll("the switch is saved", WAIT, || async {
        let saved = std::fs::read_to_string(data_dir.join("settings.json")).unwrap_or_default();
        Ok(saved.contains(&saved_line))
    })
    .await?;
    client.find(Locator::Css(&testid("nav-record"))).await?.click().await?;
    Ok(())
}
