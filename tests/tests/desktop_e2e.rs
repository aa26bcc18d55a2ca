//! The desktop app in a real window: Xvfb, tauri-driver, WebKitWebDriver and
//! the debug binary, driven like a user would.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use opptak_tests::{TauriDriver, Xvfb, screenshots_dir, workspace_bin};

const WAIT: Duration = Duration::from_secs(20);

async fn connect(driver: &TauriDriver) -> Client {
    // Two TLS backends are linked into the tests (the AWS SDK's and
    // reqwest's), so rustls needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": workspace_bin("opptak-desktop") }),
    );
    // Starting the app can outlast WebKitWebDriver's patience on a loaded
    // machine; it then closes the connection, and a second try succeeds.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let session = ClientBuilder::rustls()
            .expect("TLS roots for the WebDriver client")
            .capabilities(capabilities.clone())
            .connect(&driver.url())
            .await;
        match session {
            Ok(client) => return client,
            Err(err) if attempts < 3 => {
                eprintln!("WebDriver session attempt {attempts} failed ({err}); trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => panic!("WebDriver session with the desktop app, after {attempts} attempts: {err:?}"),
        }
    }
}

fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// Waits for the page to paint what the DOM now says: a screenshot taken
/// right after a change can be one frame stale.
async fn settle(client: &Client) {
    client
        .execute_async("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))", vec![])
        .await
        .expect("two animation frames");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_shows_the_version_and_the_doctor_findings() {
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let env =
        [("DISPLAY", xvfb.display().to_owned()), ("OPPTAK_DATA_DIR", data_dir.path().display().to_string())];
    let Some(driver) = TauriDriver::start(&env).unwrap() else { return };
    let client = connect(&driver).await;

    let result = async {
        let record = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        assert!(record.is_displayed().await?, "the app opens on the Record screen");

        client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-settings"))).await?;
        let version =
            client.wait().at_most(WAIT).for_element(Locator::Css(&testid("settings-version"))).await?;
        assert_eq!(version.text().await?.trim(), env!("CARGO_PKG_VERSION"));
        let shown_dir = client.find(Locator::Css(&testid("settings-data-dir"))).await?.text().await?;
        assert_eq!(shown_dir.trim(), data_dir.path().display().to_string());
        // The default destination is the server inside the app, on loopback.
        let destination = client.find(Locator::Css(&testid("settings-destination"))).await?.text().await?;
        assert!(destination.starts_with("This computer (http://127.0.0.1:"), "{destination}");

        // The doctor's findings come from the real command, not the page.
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("doctor-check"))).await?;
        let checks = client.find_all(Locator::Css(&testid("doctor-check"))).await?;
        let mut ids = Vec::new();
        for check in &checks {
            ids.push(check.attr("data-check-id").await?.unwrap_or_default());
        }
        assert!(ids.contains(&"data-dir".to_owned()) && ids.contains(&"microphone".to_owned()), "{ids:?}");

        settle(&client).await;
        let png = client.screenshot().await?;
        std::fs::write(screenshots_dir().join("settings.png"), png)?;

        client.find(Locator::Css(&testid("nav-record"))).await?.click().await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        settle(&client).await;
        std::fs::write(screenshots_dir().join("record.png"), client.screenshot().await?)?;
        anyhow::Ok(())
    }
    .await;
    client.close().await.expect("end the WebDriver session");
    result.unwrap();
}
