//! The window in three languages: a language chosen in Settings changes the
//! texts at once, and the Record screen is photographed in each.

use fantoccini::{Client, Locator};
use opptak_tests::desktop::{WAIT, app_env, connect, poll, settle, testid};
use opptak_tests::{PulseAudio, TauriDriver, Xvfb, screenshots_dir};

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

#[tokio::test(flavor = "multi_thread")]
async fn switching_the_language_to_nynorsk_changes_the_record_screens_texts() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let mut env = app_env(&xvfb, &pulse, data_dir.path());
    // The computer speaks English, so System default starts in English.
    env.push(("LANG", "en_US.UTF-8".to_owned()));
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("start-recording"))).await?;
        let english = ("Record".to_owned(), "Start recording".to_owned(), "Settings".to_owned());
        assert_eq!(record_texts(&client).await?, english);
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        settle(&client).await;
        std::fs::write(screenshots_dir().join("record-en.png"), client.screenshot().await?)?;

        for (tag, expected, shot) in [
            ("nn", ("Opptak", "Start opptak", "Innstillingar"), "record-nn.png"),
            ("nb", ("Opptak", "Start opptak", "Innstillinger"), "record-nb.png"),
        ] {
            choose_language_and_open_record(&client, tag).await?;
            let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
            poll(&format!("the Record screen in {tag}"), WAIT, || async {
                Ok(record_texts(&client).await? == expected)
            })
            .await?;
            let lang = client.execute("return document.documentElement.lang", vec![]).await?;
            assert_eq!(lang, serde_json::json!(tag));
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
            settle(&client).await;
            std::fs::write(screenshots_dir().join(shot), client.screenshot().await?)?;
        }

        // English again: the names the other window tests click by come back.
        choose_language_and_open_record(&client, "en").await?;
        poll("the Record screen in English again", WAIT, || async {
            Ok(record_texts(&client).await? == english)
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    result.unwrap();
}
