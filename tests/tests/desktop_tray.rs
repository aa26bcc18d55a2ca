//! The app on the desktop, in a real window under Xvfb with its own D-Bus
//! session bus: one instance, the global shortcut and `opptak toggle`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use opptak_journal::{Journal, RecordingState};
use opptak_tests::desktop::{SessionBus, WAIT, app_env, connect, poll, testid};
use opptak_tests::{PulseAudio, TauriDriver, Xvfb, apps_among, descendants, workspace_bin};

/// The apps that `driver` launched (children by PID, never by name).
fn apps_of(driver: &TauriDriver) -> Vec<u32> {
    apps_among(descendants(driver.pid()))
}

/// The log lines of the app in `data_dir`.
fn app_log(data_dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(data_dir.join("logs")) else { return String::new() };
    entries.flatten().filter_map(|entry| std::fs::read_to_string(entry.path()).ok()).collect()
}

/// The desktop integration's state, from the app's own command.
async fn desktop_status(client: &Client) -> anyhow::Result<serde_json::Value> {
    let script = "const done = arguments[arguments.length - 1];\
                  window.__TAURI_INTERNALS__.invoke('desktop_status').then(done, (e) => done({ error: String(e) }));";
    Ok(client.execute_async(script, vec![]).await?)
}

/// The states of the recordings in `data_dir`'s journal, oldest first.
fn states(journal: &Journal) -> Vec<RecordingState> {
    journal.recordings().unwrap().into_iter().map(|recording| recording.state).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_launch_hands_over_to_the_first_and_exits() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let Some(bus) = SessionBus::start() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        let first = apps_of(&driver);
        anyhow::ensure!(first.len() == 1, "one app at first: {first:?}");

        let started = Instant::now();
        let mut second = Command::new(workspace_bin("opptak-desktop"));
        second.envs(env.iter().map(|(key, value)| (*key, value))).stdout(Stdio::null()).stderr(Stdio::null());
        let mut second = second.spawn()?;
        let exited = loop {
            if let Some(status) = second.try_wait()? {
                break status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = second.kill();
                let _ = second.wait();
                anyhow::bail!("the second launch did not exit within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        anyhow::ensure!(exited.success(), "the second launch exited with {exited}");
        eprintln!("the second launch exited in {:?}", started.elapsed());
        // The first got the second's arguments and is still the only one.
        poll("the first app hears the second launch", WAIT, || async {
            Ok(app_log(data_dir.path()).contains("Opptak was launched again"))
        })
        .await?;
        anyhow::ensure!(apps_of(&driver) == first, "still the first app only: {:?}", apps_of(&driver));
        // The window still answers.
        client.find(Locator::Css(&testid("screen-record"))).await?;
        // The second launch opened no engine (no second server, no resumed
        // uploads) on its way out: the log, shared by both, says so once.
        let log = app_log(data_dir.path());
        anyhow::ensure!(log.matches("engine ready").count() == 1, "{log}");
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_alt_r_and_opptak_toggle_start_and_stop_recordings_that_become_safe() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let Some(bus) = SessionBus::start() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        poll("the shortcut is registered", WAIT, || async {
            let status = desktop_status(&client).await?;
            Ok(status["shortcut"]["works"] == true && status["shortcut"]["keys"] == "Ctrl+Alt+R")
        })
        .await?;
        let journal = Journal::open_in(data_dir.path())?;
        let press = || {
            let status = Command::new("xdotool")
                .args(["key", "--clearmodifiers", "ctrl+alt+r"])
                .env("DISPLAY", xvfb.display())
                .status()
                .expect("xdotool runs (apt install xdotool)");
            assert!(status.success(), "xdotool: {status}");
        };

        press();
        // A recording that uploads while it records is journaled as
        // recording, then uploading: the app's own activity says it records.
        poll("Ctrl+Alt+R starts a recording", WAIT, || async {
            Ok(states(&journal).len() == 1
                && desktop_status(&client).await?["activity"]["state"] == "recording")
        })
        .await?;
        poll("a second is recorded", WAIT, || async {
            let status = desktop_status(&client).await?;
            Ok(status["activity"]["state"] == "recording"
                && std::fs::metadata(&journal.recordings()?[0].path).map(|file| file.len()).unwrap_or(0)
                    > 96_000)
        })
        .await?;
        press();
        poll("Ctrl+Alt+R again stops it and it becomes safe on the server", WAIT, || async {
            Ok(states(&journal) == [RecordingState::Ready])
        })
        .await?;
        let first = &journal.recordings()?[0];
        anyhow::ensure!(first.sha256.is_some() && first.sha256 == first.server_sha256, "{first:?}");

        // `opptak toggle` reaches the same app over the single-instance channel.
        let toggle = || {
            let output = Command::new(workspace_bin("opptak"))
                .arg("--data-dir")
                .arg(data_dir.path())
                .arg("toggle")
                .envs(env.iter().map(|(key, value)| (*key, value)))
                .output()
                .expect("opptak runs");
            assert!(output.status.success(), "opptak toggle: {output:?}");
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let said = toggle();
        anyhow::ensure!(said.contains("Asked Opptak"), "{said}");
        poll("opptak toggle starts a recording", WAIT, || async {
            Ok(states(&journal).len() == 2
                && desktop_status(&client).await?["activity"]["state"] == "recording")
        })
        .await?;
        toggle();
        poll("opptak toggle stops it and it becomes safe", WAIT, || async {
            Ok(states(&journal) == [RecordingState::Ready, RecordingState::Ready])
        })
        .await?;
        anyhow::ensure!(apps_of(&driver).len() == 1, "one app throughout: {:?}", apps_of(&driver));
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    result.unwrap();
}

/// Where another program holds Ctrl+Alt+R (here: an Opptak with its own
/// data folder, started first), the desktop refuses the shortcut and
/// Settings says so and names `opptak toggle`.
#[tokio::test(flavor = "multi_thread")]
async fn settings_says_when_the_shortcut_is_taken_and_names_opptak_toggle() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let first_dir = tempfile::tempdir().unwrap();
    // No session bus: the two apps cannot find each other and both open.
    let first_env = app_env(&xvfb, &pulse, first_dir.path());
    let mut first = Command::new(workspace_bin("opptak-desktop"));
    first
        .envs(first_env.iter().map(|(key, value)| (*key, value)))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _first = opptak_tests::ChildGuard::spawn("the first Opptak", &mut first).unwrap();
    poll("the first app holds the shortcut", WAIT, || async {
        Ok(app_log(first_dir.path()).contains("the start/stop shortcut is registered"))
    })
    .await
    .unwrap();

    let data_dir = tempfile::tempdir().unwrap();
    let env = app_env(&xvfb, &pulse, data_dir.path());
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;
    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("nav-settings"))).await?.click().await?;
        let problem = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&testid("shortcut-problem")))
            .await?
            .text()
            .await?;
        anyhow::ensure!(
            problem.contains("Ctrl+Alt+R")
                && problem.contains("another program")
                && problem.contains("opptak toggle"),
            "{problem}"
        );
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    result.unwrap();
}
