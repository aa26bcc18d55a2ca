//! Closing the app's real window the way a window manager asks it to: an X11
//! `WM_PROTOCOLS`/`WM_DELETE_WINDOW` client message to its top-level window,
//! under Xvfb with a private session bus: with no tray host on it the dialog
//! must not offer the tray; with one, "keep recording in the tray" hides the
//! window and the lesson goes on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use opptak_journal::{Journal, LocalRecording, RecordingState};
use opptak_tests::desktop::{
    Desktop, WAIT, WindowManager, app_log, button, desktop_status, elapsed_seconds, poll, testid,
};
use opptak_tests::{ChildGuard, PulseAudio, seconds_of_tone, sha256_hex, workspace_bin, write_tone};

/// Whether the close dialog is open.
async fn dialog_open(client: &Client) -> anyhow::Result<bool> {
    let dialog = client.find(Locator::Css(&testid("close-dialog"))).await?;
    Ok(dialog.attr("open").await?.is_some())
}

/// The only recording in the journal.
fn the_recording(journal: &Journal) -> anyhow::Result<LocalRecording> {
    let mut recordings = journal.recordings()?;
    anyhow::ensure!(recordings.len() == 1, "one recording: {recordings:?}");
    Ok(recordings.remove(0))
}

/// Plays `tone` into the virtual microphone until dropped.
fn play(pulse: &PulseAudio, tone: &Path) -> anyhow::Result<ChildGuard> {
    let mut paplay = Command::new("paplay");
    paplay.args(["-d", "vsink"]).arg(tone).stdout(Stdio::null()).envs(pulse.env());
    ChildGuard::spawn("paplay", &mut paplay)
}

/// A 30 s tone in the test's scratch folder, playing into the virtual
/// microphone until dropped.
fn play_tone(desktop: &Desktop) -> anyhow::Result<ChildGuard> {
    let tone = desktop.scratch.path().join("tone.wav");
    write_tone(&tone, 30.0);
    play(&desktop.pulse, &tone)
}

/// Waits for the app's window, then starts recording the tone from the
/// Record screen and waits until 2 s are recorded. The app's process id.
async fn record_two_seconds(desktop: &Desktop) -> anyhow::Result<u32> {
    let client = &desktop.client;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
    let app = desktop.app_pid()?;
    button(client, "Start recording").await?.click().await?;
    button(client, "Stop recording").await?;
    poll("2 s recorded", WAIT, || async { Ok(elapsed_seconds(client).await? >= 2) }).await?;
    Ok(app)
}

/// The saved recording is whole: finished, as long as its file, and holding
/// at least `seconds` of the tone.
fn assert_saved_whole(journal: &Journal, seconds: f64) {
    let saved = the_recording(journal).unwrap();
    eprintln!("saved: {:?}, {} bytes", saved.state, saved.durable_bytes);
    assert!(saved.finished && saved.state != RecordingState::Recording, "{saved:?}");
    assert_eq!(saved.total_bytes, Some(std::fs::metadata(&saved.path).unwrap().len()), "{saved:?}");
    let tone_seconds = seconds_of_tone(&saved.path);
    assert!(tone_seconds >= seconds, "the saved file holds {tone_seconds} s of tone, not {seconds} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_while_recording_asks_cancel_keeps_recording_and_stop_and_save_keeps_the_lesson() {
    // A bus of its own with no tray host on it: the window cannot hide.
    let Some(desktop) = Desktop::with().warm_microphone().session_bus().exit_status().open().await else {
        return;
    };
    let (client, exit) = (&desktop.client, desktop.exit.as_ref().expect("asked for"));
    let window_manager = WindowManager::connect(desktop.xvfb.display()).unwrap();

    let result = async {
        let _player = play_tone(&desktop)?;
        let app = record_two_seconds(&desktop).await?;
        let journal = Journal::open_in(desktop.data_dir())?;

        // The window manager's close button: the app keeps its window and asks.
        window_manager.ask_to_close(app)?;
        poll("the close dialog opens", WAIT, || dialog_open(client)).await?;
        let note = client.find(Locator::Css(&testid("close-no-tray"))).await?;
        anyhow::ensure!(note.is_displayed().await?, "the dialog says why the tray is not offered");
        anyhow::ensure!(
            client.find_all(Locator::Css(&testid("close-keep-in-tray"))).await?.is_empty(),
            "no tray host: \"keep recording in the tray\" is not offered"
        );

        // Cancel: the window stays and the lesson keeps recording.
        let (shown, recorded) = (elapsed_seconds(client).await?, the_recording(&journal)?);
        client.find(Locator::Css(&testid("close-cancel"))).await?.click().await?;
        poll("the dialog closes", WAIT, || async { Ok(!dialog_open(client).await?) }).await?;
        poll("the clock and the file go on after Cancel", WAIT, || async {
            let now = the_recording(&journal)?;
            Ok(elapsed_seconds(client).await? >= shown + 2
                && now.durable_bytes > recorded.durable_bytes
                && !now.finished)
        })
        .await?;
        anyhow::ensure!(window_manager.windows_of(app)?.len() == 1, "Cancel keeps the window");

        // Asked again, "Stop and save": the recording ends saved and the window goes.
        window_manager.ask_to_close(app)?;
        poll("the close dialog opens again", WAIT, || dialog_open(client)).await?;
        let asked_at = Instant::now();
        client.find(Locator::Css(&testid("close-stop-and-save"))).await?.click().await?;
        poll("the window goes away", WAIT, || async { Ok(window_manager.windows_of(app)?.is_empty()) })
            .await?;
        eprintln!("Stop and save → window gone in {:?}", asked_at.elapsed());
        let status = exit.wait(WAIT).await?;
        anyhow::ensure!(status == 0, "the app exits with 0, not {status}");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;

    let journal = Journal::open_in(desktop.data_dir()).unwrap();
    assert_saved_whole(&journal, 2.0);

    // Nothing lost: the next launch uploads whatever is left and the server
    // has the same bytes.
    let mut relaunch = Command::new(workspace_bin("opptak-desktop"));
    relaunch
        .envs(desktop.env.iter().map(|(key, value)| (*key, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _app = ChildGuard::spawn("the relaunched Opptak", &mut relaunch).unwrap();
    let ready = poll("the recording is safe on the server", Duration::from_secs(30), || async {
        Ok(the_recording(&journal)?.state == RecordingState::Ready)
    })
    .await;
    if ready.is_err() {
        eprintln!("the app's log:\n{}", app_log(desktop.data_dir()));
    }
    ready.unwrap();
    let safe = the_recording(&journal).unwrap();
    let local_sha256 = sha256_hex(&std::fs::read(&safe.path).unwrap());
    assert_eq!(safe.sha256.as_deref(), Some(local_sha256.as_str()), "{safe:?}");
    assert_eq!(safe.server_sha256.as_deref(), Some(local_sha256.as_str()), "{safe:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_while_not_recording_closes_at_once() {
    let Some(desktop) = Desktop::with().session_bus().exit_status().open().await else { return };
    let (client, exit) = (&desktop.client, desktop.exit.as_ref().expect("asked for"));
    let window_manager = WindowManager::connect(desktop.xvfb.display()).unwrap();

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        button(client, "Start recording").await?;
        let app = desktop.app_pid()?;
        let asked_at = Instant::now();
        window_manager.ask_to_close(app)?;
        // A dialog would keep the window: its going proves none was shown.
        poll("the window closes", WAIT, || async { Ok(window_manager.windows_of(app)?.is_empty()) }).await?;
        eprintln!("close → window gone in {:?}", asked_at.elapsed());
        let status = exit.wait(WAIT).await?;
        anyhow::ensure!(status == 0, "the app exits with 0, not {status}");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
    assert!(Journal::open_in(desktop.data_dir()).unwrap().recordings().unwrap().is_empty());
}

/// With a StatusNotifier host on the session bus, "keep recording in the
/// tray" hides the window (no longer mapped on the X server), the lesson
/// goes on into its file while the app runs without a window, and Stop
/// recording in the tray's menu, picked through the host, stops it;
/// it becomes safe on the server with the tone recorded while hidden, and
/// opening Opptak again shows the window.
#[tokio::test(flavor = "multi_thread")]
async fn keep_recording_in_the_tray_hides_the_window_and_the_lesson_goes_on_until_stopped() {
    let Some(desktop) = Desktop::with().warm_microphone().tray_host().exit_status().open().await else {
        return;
    };
    let (client, exit) = (&desktop.client, desktop.exit.as_ref().expect("asked for"));
    let window_manager = WindowManager::connect(desktop.xvfb.display()).unwrap();

    let result = async {
        let _player = play_tone(&desktop)?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        poll("the app sees the tray host", WAIT, || async {
            Ok(desktop_status(client).await?["trayShown"] == true)
        })
        .await?;
        let host = desktop.tray_host.as_ref().expect("asked for");
        poll("the app's tray icon registers with the host", WAIT, || async { Ok(!host.items().is_empty()) })
            .await?;
        eprintln!("tray icons on the host: {:?}", host.items());
        let app = record_two_seconds(&desktop).await?;
        let journal = Journal::open_in(desktop.data_dir())?;

        window_manager.ask_to_close(app)?;
        poll("the close dialog opens", WAIT, || dialog_open(client)).await?;
        anyhow::ensure!(
            client.find_all(Locator::Css(&testid("close-no-tray"))).await?.is_empty(),
            "a tray host runs: the dialog does not say the tray is missing"
        );
        let keep = client.find(Locator::Css(&testid("close-keep-in-tray"))).await?;
        anyhow::ensure!(keep.is_displayed().await?, "\"keep recording in the tray\" is offered");
        let shown_before = elapsed_seconds(client).await?;
        let window = window_manager.window_of(app)?;
        // Clicked from the page: a WebDriver click waits for the page to
        // paint again, which a window hidden by that click may never do.
        client
            .execute("document.querySelector('[data-testid=\"close-keep-in-tray\"]').click()", vec![])
            .await?;
        let hidden_at = Instant::now();
        // Hidden, not destroyed (the X window is still there, unmapped): the
        // tray's Open brings it back.
        poll("the window is hidden", WAIT, || async { Ok(!window_manager.is_shown(window)?) }).await?;
        eprintln!("keep recording in the tray → window hidden in {:?}", hidden_at.elapsed());
        anyhow::ensure!(window_manager.windows_of(app)?.is_empty(), "no window of the app is shown");

        // Hidden, the app runs on and the file keeps growing.
        let hidden = the_recording(&journal)?;
        poll("the file grows for 2 s while the window is hidden", WAIT, || async {
            let now = the_recording(&journal)?;
            Ok(hidden_at.elapsed() >= Duration::from_secs(2)
                && now.durable_bytes > hidden.durable_bytes
                && !now.finished)
        })
        .await?;
        anyhow::ensure!(exit.status().is_none(), "the app still runs");
        anyhow::ensure!(window_manager.windows_of(app)?.is_empty(), "the window stays hidden");
        let grown = the_recording(&journal)?.durable_bytes - hidden.durable_bytes;
        eprintln!("hidden for {:?}: the file grew by {grown} bytes", hidden_at.elapsed());

        // Stopped without the window: Stop recording in the tray's menu,
        // picked through the host as a panel does.
        host.click("Stop recording").await?;
        poll("the recording stops and becomes safe on the server", Duration::from_secs(30), || async {
            Ok(the_recording(&journal)?.state == RecordingState::Ready)
        })
        .await?;
        anyhow::ensure!(exit.status().is_none(), "the app runs on in the tray after the lesson");
        // The tone went on the whole time: more of it than was recorded
        // before hiding, by the 2 s hidden at least.
        let safe = the_recording(&journal)?;
        let tone_seconds = seconds_of_tone(&safe.path);
        anyhow::ensure!(
            tone_seconds >= f64::from(shown_before) + 2.0,
            "{tone_seconds} s of tone; {shown_before} s were recorded before hiding"
        );
        let local_sha256 = sha256_hex(&std::fs::read(&safe.path)?);
        anyhow::ensure!(safe.server_sha256.as_deref() == Some(local_sha256.as_str()), "{safe:?}");

        // Opening Opptak again (as the tray's Open does) brings the same window back.
        let mut reopen = Command::new(workspace_bin("opptak-desktop"));
        reopen
            .envs(desktop.env.iter().map(|(key, value)| (*key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let reopened = ChildGuard::spawn("the second launch", &mut reopen)?.wait_timeout(WAIT)?;
        anyhow::ensure!(reopened.success(), "the second launch hands over and exits: {reopened}");
        poll("the hidden window is shown again", WAIT, || async { window_manager.is_shown(window) }).await?;
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
