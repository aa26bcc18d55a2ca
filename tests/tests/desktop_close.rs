//! Closing the app's real window the way a window manager asks it to: an X11
//! `WM_PROTOCOLS`/`WM_DELETE_WINDOW` client message to its top-level window,
//! under Xvfb with a private session bus (so no tray host: the dialog must
//! not offer the tray).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use opptak_journal::{Journal, LocalRecording, RecordingState};
use opptak_tests::desktop::{
    AppExit, SessionBus, WAIT, app_env, button, connect_to, elapsed_seconds, poll, testid,
};
use opptak_tests::{
    ChildGuard, PulseAudio, TauriDriver, Xvfb, seconds_of_tone, sha256_hex, workspace_bin, write_tone,
};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

/// The X server as a window manager sees it: the app's top-level windows
/// and the close request it sends them.
struct WindowManager {
    connection: RustConnection,
    root: Window,
    wm_protocols: u32,
    wm_delete_window: u32,
    net_wm_pid: u32,
}

impl WindowManager {
    fn connect(display: &str) -> anyhow::Result<Self> {
        let (connection, screen) = x11rb::connect(Some(display))?;
        let root = connection.setup().roots[screen].root;
        let atom = |name: &str| -> anyhow::Result<u32> {
            Ok(connection.intern_atom(false, name.as_bytes())?.reply()?.atom)
        };
        let (wm_protocols, wm_delete_window, net_wm_pid) =
            (atom("WM_PROTOCOLS")?, atom("WM_DELETE_WINDOW")?, atom("_NET_WM_PID")?);
        Ok(Self { connection, root, wm_protocols, wm_delete_window, net_wm_pid })
    }

    /// The shown top-level windows of process `pid` that take part in the
    /// WM_DELETE_WINDOW protocol (GTK's hidden leader and popups do not).
    fn windows_of(&self, pid: u32) -> anyhow::Result<Vec<Window>> {
        let mut found = Vec::new();
        for window in self.connection.query_tree(self.root)?.reply()?.children {
            let owner = self
                .connection
                .get_property(false, window, self.net_wm_pid, AtomEnum::CARDINAL, 0, 1)?
                .reply()?;
            if owner.value32().and_then(|mut values| values.next()) != Some(pid) {
                continue;
            }
            if self.connection.get_window_attributes(window)?.reply()?.map_state != MapState::VIEWABLE {
                continue;
            }
            let protocols = self
                .connection
                .get_property(false, window, self.wm_protocols, AtomEnum::ATOM, 0, 32)?
                .reply()?;
            if protocols.value32().is_some_and(|mut atoms| atoms.any(|atom| atom == self.wm_delete_window)) {
                found.push(window);
            }
        }
        Ok(found)
    }

    /// Asks the one window of process `pid` to close, as a window manager
    /// does when its close button is clicked.
    fn ask_to_close(&self, pid: u32) -> anyhow::Result<()> {
        let windows = self.windows_of(pid)?;
        anyhow::ensure!(windows.len() == 1, "one window of the app, not {windows:?}");
        let window = windows[0];
        let event = ClientMessageEvent::new(
            32,
            window,
            self.wm_protocols,
            [self.wm_delete_window, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        self.connection.send_event(false, window, EventMask::NO_EVENT, event)?;
        self.connection.flush()?;
        Ok(())
    }
}

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

/// The app's log lines, for a failure's message.
fn app_log(data_dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(data_dir.join("logs")) else { return String::new() };
    entries.flatten().filter_map(|entry| std::fs::read_to_string(entry.path()).ok()).collect()
}

/// Ends a session whose app may be gone: WebKitWebDriver then has nothing
/// to close, and must not hold the test up.
async fn end_session(client: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_while_recording_asks_cancel_keeps_recording_and_stop_and_save_keeps_the_lesson() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let Some(bus) = SessionBus::start() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let launcher_dir = tempfile::tempdir().unwrap();
    let tone = launcher_dir.path().join("tone.wav");
    write_tone(&tone, 30.0);
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    // A bus of its own with no tray host on it: the window cannot hide.
    env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
    let exit = AppExit::new(launcher_dir.path()).unwrap();
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect_to(&driver, &exit.launcher).await;
    let window_manager = WindowManager::connect(xvfb.display()).unwrap();

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        let app = driver.launched("opptak-desktop").ok_or_else(|| anyhow::anyhow!("the app's process"))?;
        let _player = play(&pulse, &tone)?;
        button(&client, "Start recording").await?.click().await?;
        button(&client, "Stop recording").await?;
        poll("2 s recorded", WAIT, || async { Ok(elapsed_seconds(&client).await? >= 2) }).await?;
        let journal = Journal::open_in(data_dir.path())?;

        // The window manager's close button: the app keeps its window and asks.
        window_manager.ask_to_close(app)?;
        poll("the close dialog opens", WAIT, || dialog_open(&client)).await?;
        let note = client.find(Locator::Css(&testid("close-no-tray"))).await?;
        anyhow::ensure!(note.is_displayed().await?, "the dialog says why the tray is not offered");
        anyhow::ensure!(
            client.find_all(Locator::Css(&testid("close-keep-in-tray"))).await?.is_empty(),
            "no tray host: \"keep recording in the tray\" is not offered"
        );

        // Cancel: the window stays and the lesson keeps recording.
        let (shown, recorded) = (elapsed_seconds(&client).await?, the_recording(&journal)?);
        client.find(Locator::Css(&testid("close-cancel"))).await?.click().await?;
        poll("the dialog closes", WAIT, || async { Ok(!dialog_open(&client).await?) }).await?;
        poll("the clock and the file go on after Cancel", WAIT, || async {
            let now = the_recording(&journal)?;
            Ok(elapsed_seconds(&client).await? >= shown + 2
                && now.durable_bytes > recorded.durable_bytes
                && !now.finished)
        })
        .await?;
        anyhow::ensure!(window_manager.windows_of(app)?.len() == 1, "Cancel keeps the window");

        // Asked again, "Stop and save": the recording ends saved and the window goes.
        window_manager.ask_to_close(app)?;
        poll("the close dialog opens again", WAIT, || dialog_open(&client)).await?;
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
    end_session(client).await;
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    result.unwrap();

    let journal = Journal::open_in(data_dir.path()).unwrap();
    let saved = the_recording(&journal).unwrap();
    eprintln!("after the app exited: {:?}, {} bytes", saved.state, saved.durable_bytes);
    assert!(saved.finished && saved.state != RecordingState::Recording, "{saved:?}");
    assert_eq!(saved.total_bytes, Some(std::fs::metadata(&saved.path).unwrap().len()), "{saved:?}");
    let tone_seconds = seconds_of_tone(&saved.path);
    assert!(tone_seconds >= 2.0, "the saved file holds {tone_seconds} s of tone");

    // Nothing lost: the next launch uploads whatever is left and the server
    // has the same bytes.
    let mut relaunch = Command::new(workspace_bin("opptak-desktop"));
    relaunch.envs(env.iter().map(|(key, value)| (*key, value))).stdout(Stdio::null()).stderr(Stdio::null());
    let _app = ChildGuard::spawn("the relaunched Opptak", &mut relaunch).unwrap();
    let ready = poll("the recording is safe on the server", Duration::from_secs(30), || async {
        Ok(the_recording(&journal)?.state == RecordingState::Ready)
    })
    .await;
    if ready.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    ready.unwrap();
    let safe = the_recording(&journal).unwrap();
    let local_sha256 = sha256_hex(&std::fs::read(&safe.path).unwrap());
    assert_eq!(safe.sha256.as_deref(), Some(local_sha256.as_str()), "{safe:?}");
    assert_eq!(safe.server_sha256.as_deref(), Some(local_sha256.as_str()), "{safe:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_while_not_recording_closes_at_once() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let Some(bus) = SessionBus::start() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let launcher_dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
    let exit = AppExit::new(launcher_dir.path()).unwrap();
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect_to(&driver, &exit.launcher).await;
    let window_manager = WindowManager::connect(xvfb.display()).unwrap();

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        button(&client, "Start recording").await?;
        let app = driver.launched("opptak-desktop").ok_or_else(|| anyhow::anyhow!("the app's process"))?;
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
    end_session(client).await;
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    result.unwrap();
    assert!(Journal::open_in(data_dir.path()).unwrap().recordings().unwrap().is_empty());
}
