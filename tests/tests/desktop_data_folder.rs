//! Moving the data folder from Settings, in the real window: a folder that
//! holds files is refused with the reason and nothing moves; an empty one
//! gets the recordings, the journal and the server's copy, the app restarts
//! on it by itself, and `opptak recordings` (which reads the same choice)
//! finds the recording there, still safe on the server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opptak_tests::desktop::{Desktop, WAIT, app_log, button, poll, testid};
use opptak_tests::{apps_among, descendants, screenshots_dir, workspace_bin};

/// The restart and the move, with the old app's wind-down.
const MOVED: Duration = Duration::from_secs(60);

async fn record_a_lesson(client: &Client) -> anyhow::Result<()> {
    button(client, "Start recording").await?.click().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    button(client, "Stop recording").await?.click().await?;
    let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
    poll("Safe on server", WAIT, || async { Ok(status.text().await?.contains("Safe on server")) }).await
}

async fn ask_to_move(client: &Client, to: &Path) -> anyhow::Result<()> {
    let target = client.find(Locator::Css(&testid("data-folder-target"))).await?;
    target.clear().await?;
    target.send_keys(&to.display().to_string()).await?;
    client.find(Locator::Css(&testid("data-folder-move"))).await?.click().await?;
    Ok(())
}

/// The app the old one restarted into: an orphan, so (with this test a
/// child subreaper) a child of this test.
fn restarted_app(old: u32) -> Option<u32> {
    apps_among(descendants(std::process::id())).into_iter().find(|&pid| pid != old)
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_folder_moves_to_an_empty_folder_and_the_app_restarts_on_it() {
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    // No OPPTAK_DATA_DIR: the app uses the folder chosen in Settings, or
    // the default one under XDG_DATA_HOME.
    let Some(desktop) =
        Desktop::with().session_bus().warm_microphone().env("OPPTAK_DATA_DIR", "").open().await
    else {
        return;
    };
    let env = desktop.env.clone();
    let xdg = |kind: &str| {
        let value = env.iter().rev().find(|(key, _)| *key == kind).map(|(_, value)| value.clone());
        std::path::PathBuf::from(value.expect("the test sets it"))
    };
    let old_dir = xdg("XDG_DATA_HOME").join("opptak");
    let new_dir = desktop.scratch.path().join("Opptak data");
    let busy = desktop.scratch.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"the teacher's own file").unwrap();
    let old_app = desktop.app_pid().unwrap();
    let client = &desktop.client;

    let result = async {
        record_a_lesson(client).await?;
        client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
        let shown =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("settings-data-dir"))).await?;
        assert_eq!(shown.text().await?.trim(), old_dir.display().to_string());

        // A folder with the teacher's own file in it is refused, with why.
        ask_to_move(client, &busy).await?;
        let problem =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("data-folder-problem"))).await?;
        let said = problem.text().await?;
        assert!(said.contains("cannot move there") && said.contains("already holds files"), "{said}");
        assert_eq!(std::fs::read(busy.join("notes.txt"))?, b"the teacher's own file");
        assert_eq!(std::fs::read_dir(&busy)?.count(), 1);
        client
            .execute("document.querySelector('[data-testid=\"data-folder-problem\"]').scrollIntoView({block: 'center'})", vec![])
            .await?;
        std::fs::write(screenshots_dir().join("settings-data-folder.png"), client.screenshot().await?)?;

        ask_to_move(client, &new_dir).await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("data-folder-moving"))).await?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        desktop.end_session(result).await;
        return;
    }

    let deadline = Instant::now() + MOVED;
    while !gone(old_app) {
        assert!(Instant::now() < deadline, "the app did not restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_app = loop {
        if let Some(pid) = restarted_app(old_app) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no app came back after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while !app_log(&new_dir).contains("the data folder was moved here") {
        assert!(
            Instant::now() < deadline,
            "the restarted app did not move the folder:\n{}",
            app_log(&old_dir)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!old_dir.exists(), "the old folder is gone after a move on one disk");

    // `opptak` reads the same choice (no --data-dir, no OPPTAK_DATA_DIR).
    let listed = Command::new(workspace_bin("opptak"))
        .args(["recordings", "--json"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let recordings: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let recording = &recordings[0];
    assert_eq!(recording["state"], "ready", "{recordings}");
    let path = Path::new(recording["path"].as_str().unwrap());
    assert!(path.starts_with(&new_dir) && path.exists(), "{recordings}");

    kill(Pid::from_raw(new_app as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + WAIT;
    while !gone(new_app) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !gone(new_app) {
        kill(Pid::from_raw(new_app as i32), Signal::SIGKILL).unwrap();
    }
    let _ = nix::sys::wait::waitpid(Pid::from_raw(new_app as i32), None);
    desktop.end_session(Ok(())).await;
}
