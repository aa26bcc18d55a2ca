//! Start at login (`tauri-plugin-autostart`): off in a fresh profile, and
//! the Settings switch writes and removes the login session's entry
//! (`~/.config/autostart/*.desktop` on Linux), which names this app and
//! the argument it is started with at login.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use fantoccini::{Client, Locator};
use opptak_tests::desktop::{Desktop, WAIT, poll, testid};

/// The login session's entries for Opptak under `home`.
fn autostart_entries(home: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(home.join(".config/autostart")) else { return Vec::new() };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "desktop"))
        .collect()
}

/// The switch on Settings, once the app has said how it stands.
async fn switch_state(client: &Client) -> anyhow::Result<bool> {
    client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
    let switch = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("start-at-login"))).await?;
    Ok(switch.prop("checked").await?.as_deref() == Some("true"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_settings_switch_adds_and_removes_opptak_from_the_login_session() {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_string_lossy().into_owned();
    let Some(mut desktop) = Desktop::with().env("HOME", home_path).open().await else { return };

    let result = async {
        anyhow::ensure!(!switch_state(&desktop.client).await?, "off in a fresh profile");
        anyhow::ensure!(autostart_entries(home.path()).is_empty(), "nothing written before the teacher asks");

        desktop.client.find(Locator::Css(&testid("start-at-login"))).await?.click().await?;
        poll("the login session's entry is written", WAIT, || async {
            Ok(autostart_entries(home.path()).len() == 1)
        })
        .await?;
        let entry = std::fs::read_to_string(&autostart_entries(home.path())[0])?;
        anyhow::ensure!(entry.contains("opptak-desktop") && entry.contains("--started-at-login"), "{entry}");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;

    // The next launch reads the switch back from the login session.
    desktop.relaunch().await;
    let result = async {
        desktop.client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        anyhow::ensure!(
            switch_state(&desktop.client).await.context("the switch after a restart")?,
            "still on after a restart"
        );
        desktop
            .client
            .find(Locator::Css(&testid("start-at-login")))
            .await?
            .click()
            .await
            .context("turning it off")?;
        poll("the entry is removed", WAIT, || async { Ok(autostart_entries(home.path()).is_empty()) })
            .await?;
        anyhow::ensure!(!switch_state(&desktop.client).await?, "off again");
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
