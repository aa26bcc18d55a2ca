//! A screen recording made in the desktop app's real window: Xvfb,
//! tauri-driver, WebKitWebDriver, the virtual microphone and the server
//! inside the app. The Record screen offers the screen, the recording
//! becomes safe on the server, and the Library plays it as a video.

use std::time::Duration;

use fantoccini::Locator;
use opptak_journal::{Journal, RecordingState};
use opptak_tests::desktop::{Desktop, WAIT, elapsed_seconds, poll, settle, testid};
use opptak_tests::screenshots_dir;

/// Seconds the test records.
const LENGTH: u32 = 8;

/// Whether this computer has a camera (a Video4Linux device).
fn has_camera() -> bool {
    std::fs::read_dir("/sys/class/video4linux").is_ok_and(|mut devices| devices.next().is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_screen_recording_made_in_the_window_is_safe_on_the_server_and_plays_in_the_library() {
    let Some(desktop) = Desktop::with().warm_microphone().open().await else { return };
    let client = &desktop.client;

    let result = async {
        let screen = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("source-screen"))).await?;
        anyhow::ensure!(screen.is_enabled().await?, "the screen can be recorded under Xvfb");
        if !has_camera() {
            let camera = client.find(Locator::Css(&testid("source-camera"))).await?;
            anyhow::ensure!(!camera.is_enabled().await?, "no camera: the Camera choice is disabled");
            let why = client.find(Locator::Css(&testid("source-reason-camera"))).await?.text().await?;
            anyhow::ensure!(why.contains("No camera is connected"), "the reason is shown: {why}");
            let both = client.find(Locator::Css(&testid("source-screenAndCamera"))).await?;
            anyhow::ensure!(!both.is_enabled().await?, "no camera: Screen + camera is disabled");
        }
        screen.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("video-size"))).await?;

        client.find(Locator::Css(&testid("start-recording"))).await?.click().await?;
        let meter = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("level-meter"))).await?;
        poll("the clock reaches the recording's length", WAIT, || async {
            Ok(elapsed_seconds(client).await? >= LENGTH)
        })
        .await?;
        anyhow::ensure!(meter.attr("aria-valuenow").await?.is_some(), "the level meter runs for video");
        client.find(Locator::Css(&testid("stop-recording"))).await?.click().await?;
        let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
        poll("safe on the server", Duration::from_secs(60), || async {
            Ok(status.attr("data-state").await?.as_deref() == Some("safe"))
        })
        .await?;

        client.find(Locator::Css(&testid("nav-library"))).await?.click().await?;
        let entry = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("li[data-state=\"safe\"][data-testid]"))
            .await?;
        let id = entry.attr("data-testid").await?.unwrap_or_default();
        let id = id.strip_prefix("recording-").unwrap_or_default().to_owned();
        // The row says how long the video is, read from its boxes.
        let length = client.find(Locator::Css(&testid(&format!("length-{id}")))).await?.text().await?;
        anyhow::ensure!(["0:07", "0:08", "0:09"].contains(&length.as_str()), "the row gives the length as {length:?}");
        client.find(Locator::Css(&testid(&format!("play-{id}")))).await?.click().await?;
        let player = format!("video[data-testid=\"player-{id}\"]");
        client.wait().at_most(WAIT).for_element(Locator::Css(&player)).await?;
        let state = |script: &'static str| {
            let client = client.clone();
            let player = player.clone();
            async move {
                let value = client.execute(script, vec![serde_json::json!(player)]).await?;
                anyhow::Ok(value.as_f64().unwrap_or(f64::NAN))
            }
        };
        poll("the video has frames to show", WAIT, || async {
            Ok(state("return document.querySelector(arguments[0]).readyState").await? >= 2.0)
        })
        .await?;
        // WebKit may hold back autoplay of a video with sound; the teacher
        // then presses the player's own Play, as this does. One that plays
        // by itself is left alone: a second play() would wait on WebKit's
        // own start, which the player's stall guard may restart.
        let started = client
            .execute_async(
                "const done = arguments[1]; const video = document.querySelector(arguments[0]); \
                 if (!video.paused) { done('playing by itself'); return; } \
                 video.play().then(() => done('playing'), (err) => done(String(err)))",
                vec![serde_json::json!(player)],
            )
            .await?;
        anyhow::ensure!(started.as_str().is_some_and(|s| s.starts_with("playing")), "the video does not play: {started}");
        let first = state("return document.querySelector(arguments[0]).currentTime").await?;
        let plays = poll("the video plays", WAIT, || async {
            Ok(state("return document.querySelector(arguments[0]).currentTime").await? > first + 0.5)
        })
        .await;
        if let Err(err) = plays {
            let shown = client
                .execute(
                    "const v = document.querySelector(arguments[0]); return JSON.stringify({t: v.currentTime, \
                     d: v.duration, paused: v.paused, ended: v.ended, ready: v.readyState, net: v.networkState, \
                     error: v.error && v.error.message})",
                    vec![serde_json::json!(player)],
                )
                .await?;
            anyhow::bail!("{err}: the player says {shown}");
        }
        // Without the index of fragments (`mfra`) at its end, WebKit took
        // the first fragment's length for the whole video and stopped there.
        let announced = state("return document.querySelector(arguments[0]).duration").await?;
        poll("the video plays to its end", Duration::from_secs(30), || async {
            Ok(state("return document.querySelector(arguments[0]).ended ? 1 : 0").await? == 1.0)
        })
        .await?;
        let played = state("return document.querySelector(arguments[0]).currentTime").await?;
        eprintln!("video: announced {announced:.2} s, played to {played:.2} s");
        anyhow::ensure!((announced - f64::from(LENGTH)).abs() <= 1.5, "announced {announced} s");
        anyhow::ensure!((played - f64::from(LENGTH)).abs() <= 1.5, "played to {played} s");
        settle(client).await;
        std::fs::write(screenshots_dir().join("library-video.png"), client.screenshot().await?)?;
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;

    let journal = Journal::open_in(desktop.data_dir()).unwrap();
    let recordings = journal.recordings().unwrap();
    assert_eq!(recordings.len(), 1, "one recording: {recordings:?}");
    let recording = &recordings[0];
    assert_eq!(recording.state, RecordingState::Ready, "{recording:?}");
    assert!(recording.content_type == "video/mp4" && recording.is_video, "{recording:?}");
    assert_eq!(recording.sha256, recording.server_sha256, "the server holds the same bytes");
}
