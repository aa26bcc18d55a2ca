//! The window in three languages: a language chosen in Settings changes the
//! window's texts and the tray's menu at once, is kept for the next start,
//! and the Record screen is photographed in each.

use fantoccini::{Client, Locator};
use opptak_tests::desktop::{Desktop, TrayHost, WAIT, poll, settle, testid};
use opptak_tests::screenshots_dir;

/// Chooses `tag` in Settings' Language list, then opens the Record screen.
async fn choose_language_and_open_record(client: &Client, tag: &str) -> anyhow::Result<()> {
    client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
    let list = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("language"))).await?;
    list.select_by_value(tag).await?;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("nav-record"))).await?.click().await?;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
    Ok(())
}

/// The Record screen's heading, start button and Settings link, as shown.
async fn record_texts(client: &Client) -> anyhow::Result<(String, String, String)> {
    let heading = client.find(Locator::Css("#record-title")).await?.text().await?;
    let start = client.find(Locator::Css(&testid("start-recording"))).await?.text().await?;
    let settings = client.find(Locator::Css(&testid("nav-settings"))).await?.text().await?;
    Ok((heading.trim().to_owned(), start.trim().to_owned(), settings.trim().to_owned()))
}

/// Waits until the tray's menu offers `open` ("Open Opptak" in its language).
async fn tray_speaks(tray: &TrayHost, open: &str) -> anyhow::Result<()> {
    poll(&format!("the tray menu says {open:?}"), WAIT, || async { tray.shows(open).await }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_the_language_to_nynorsk_changes_the_record_screens_texts() {
    // The computer speaks English, so System default starts in English.
    let Some(mut desktop) = Desktop::with().session_bus().tray_host().env("LANG", "en_US.UTF-8").open().await
    else {
        return;
    };
    let english = ("Record".to_owned(), "Start recording".to_owned(), "Settings".to_owned());

    let result = async {
        let client = &desktop.client;
        let tray = desktop.tray_host.as_ref().expect("asked for");
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("start-recording"))).await?;
        assert_eq!(record_texts(client).await?, english);
        tray_speaks(tray, "Open Opptak").await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        settle(client).await;
        std::fs::write(screenshots_dir().join("record-en.png"), client.screenshot().await?)?;

        for (tag, expected, open, shot) in [
            ("nb", ("Opptak", "Start opptak", "Innstillinger"), "Åpne Opptak", "record-nb.png"),
            ("nn", ("Opptak", "Start opptak", "Innstillingar"), "Opne Opptak", "record-nn.png"),
        ] {
            choose_language_and_open_record(client, tag).await?;
            let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
            poll(&format!("the Record screen in {tag}"), WAIT, || async {
                Ok(record_texts(client).await.ok().as_ref() == Some(&expected))
            })
            .await?;
            let lang = client.execute("return document.documentElement.lang", vec![]).await?;
            assert_eq!(lang, serde_json::json!(tag));
            // The tray follows the choice at once, not the computer's language.
            tray_speaks(tray, open).await?;
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
            settle(client).await;
            std::fs::write(screenshots_dir().join(shot), client.screenshot().await?)?;
        }
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;

    // Nynorsk is kept in the data folder's settings: the next start opens
    // in it, window and tray.
    desktop.relaunch().await;
    let result = async {
        let client = &desktop.client;
        let nynorsk = ("Opptak".to_owned(), "Start opptak".to_owned(), "Innstillingar".to_owned());
        poll("the Record screen in nynorsk after a restart", WAIT, || async {
            Ok(record_texts(client).await.ok().as_ref() == Some(&nynorsk))
        })
        .await?;
        tray_speaks(desktop.tray_host.as_ref().expect("asked for"), "Opne Opptak").await?;

        // English again: the names the other window tests click by come back.
        choose_language_and_open_record(client, "en").await?;
        poll("the Record screen in English again", WAIT, || async {
            Ok(record_texts(client).await.ok().as_ref() == Some(&english))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
