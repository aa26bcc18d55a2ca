//! The app's notifications reaching a real notification server: dunst on a
//! private D-Bus session bus under Xvfb, read back with `dunstctl history`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opptak_journal::{Journal, RecordingState};
use opptak_tests::desktop::{SessionBus, WAIT, app_env, poll};
use opptak_tests::{ChildGuard, PulseAudio, Xvfb, require_program, workspace_bin};

/// dunst, the notification server, on `bus` and `display`, with an empty
/// configuration in `dir` (its defaults, whatever the machine's dunstrc).
fn start_dunst(bus: &SessionBus, display: &str, dir: &Path) -> anyhow::Result<ChildGuard> {
    let config = dir.join("dunstrc");
    std::fs::write(&config, "[global]\n")?;
    let mut command = Command::new("dunst");
    command
        .arg("-config")
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("DISPLAY", display)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn("dunst", &mut command)
}

/// `dunstctl <args>` on `bus`: its output, or why it failed.
fn dunstctl(bus: &SessionBus, args: &[&str]) -> anyhow::Result<String> {
    let output =
        Command::new("dunstctl").args(args).env("DBUS_SESSION_BUS_ADDRESS", &bus.address).output()?;
    anyhow::ensure!(
        output.status.success(),
        "dunstctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The (summary, body) of every notification in dunst's history, after
/// moving the ones on screen there.
fn notifications(bus: &SessionBus) -> anyhow::Result<Vec<(String, String)>> {
    dunstctl(bus, &["close-all"])?;
    let history: serde_json::Value = serde_json::from_str(&dunstctl(bus, &["history"])?)?;
    let text =
        |entry: &serde_json::Value, field: &str| entry[field]["data"].as_str().unwrap_or_default().to_owned();
    Ok(history["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|list| list.as_array().into_iter().flatten())
        .map(|entry| (text(entry, "summary"), text(entry, "body")))
        .collect())
}

/// The log lines of the app in `data_dir`.
fn app_log(data_dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(data_dir.join("logs")) else { return String::new() };
    entries.flatten().filter_map(|entry| std::fs::read_to_string(entry.path()).ok()).collect()
}

/// `opptak toggle` on the app running over `data_dir`.
fn toggle(data_dir: &Path, env: &[(&str, String)]) {
    let output = Command::new(workspace_bin("opptak"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("toggle")
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .output()
        .expect("opptak runs");
    assert!(output.status.success(), "opptak toggle: {output:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_safe_on_the_server_is_notified_by_name_in_the_teachers_language() {
    if require_program("dunst", "to receive the app's notifications").is_none() {
        return;
    }
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(mut pulse) = PulseAudio::start().unwrap() else { return };
    pulse.keep_source_warm().unwrap();
    let Some(bus) = SessionBus::start() else { return };
    let dunst_dir = tempfile::tempdir().unwrap();
    let _dunst = start_dunst(&bus, xvfb.display(), dunst_dir.path()).unwrap();
    poll("dunst answers on the session bus", WAIT, || async { Ok(dunstctl(&bus, &["is-paused"]).is_ok()) })
        .await
        .unwrap();
    // Recordings already safe when the app starts are not notified again.
    assert_eq!(notifications(&bus).unwrap(), []);

    let data_dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
    // The teacher's computer speaks nynorsk.
    env.push(("LANGUAGE", "nn".to_owned()));
    let mut app = Command::new(workspace_bin("opptak-desktop"));
    app.envs(env.iter().map(|(key, value)| (*key, value))).stdout(Stdio::null()).stderr(Stdio::null());
    let mut app = ChildGuard::spawn("opptak-desktop", &mut app).unwrap();

    let result = async {
        poll("the app is ready", WAIT, || async { Ok(app_log(data_dir.path()).contains("engine ready")) })
            .await?;
        toggle(data_dir.path(), &env);
        let journal = Journal::open_in(data_dir.path())?;
        poll("a few seconds are recorded", WAIT, || async {
            let recordings = journal.recordings()?;
            Ok(recordings.len() == 1
                && std::fs::metadata(&recordings[0].path).map(|file| file.len()).unwrap_or(0) > 3 * 96_000)
        })
        .await?;
        let started = Instant::now();
        toggle(data_dir.path(), &env);
        poll("the recording becomes safe on the server", WAIT, || async {
            Ok(journal.recordings()?.iter().map(|recording| recording.state).collect::<Vec<_>>()
                == [RecordingState::Ready])
        })
        .await?;
        let name = journal.recordings()?[0].name.clone();
        poll("dunst received the notification", WAIT, || async { Ok(!notifications(&bus)?.is_empty()) })
            .await?;
        let received = notifications(&bus)?;
        eprintln!("notified {:?} after Stop: {received:?}", started.elapsed());
        let expected = (
            "Trygt lagra på tenaren".to_owned(),
            format!("«{name}» er trygt lagra på tenaren. Du treng ikkje gjere meir."),
        );
        anyhow::ensure!(received == [expected], "one notification, by name: {received:?}");
        app.ensure_running()?;
        // Nothing more arrives for the same recording (progress, checks).
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::ensure!(notifications(&bus)?.len() == 1, "still one");
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("the app's log:\n{}", app_log(data_dir.path()));
    }
    app.stop();
    result.unwrap();
}
