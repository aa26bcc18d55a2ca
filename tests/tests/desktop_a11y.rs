//! Accessibility in the real window: axe-core (the npm package in `ui/`)
//! runs inside the app's WebKitGTK webview on the Record, Library and
//! Settings screens, in the light and the dark theme, and finds nothing;
//! the keyboard alone starts a recording.
//!
//! The UI follows the OS theme through `prefers-color-scheme`. WebKitGTK
//! reports dark when GTK's theme is a dark variant, so the dark run starts
//! the app with `GTK_THEME=Adwaita:dark` (and the light run with
//! `GTK_THEME=Adwaita`, so the machine's own setting cannot leak in); each
//! run checks what the window itself reports.

use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, Locator};
use opptak_journal::Journal;
use opptak_tests::desktop::{
    Desktop, WAIT, WindowManager, brightness, button, elapsed_seconds, poll, settle, testid,
};
use opptak_tests::{repo_root, screenshots_dir};

/// The rule sets the app is held to: WCAG 2.1 A and AA, and axe's best practices.
const RULES: &str = "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']";

/// Loads axe-core into the window once per page.
async fn inject_axe(client: &Client) -> anyhow::Result<()> {
    let path = repo_root().join("ui/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path)
        .map_err(|err| anyhow::anyhow!("{} is missing ({err}): run `npm install` in ui/", path.display()))?;
    client.execute(&source, vec![]).await?;
    let loaded =
        client.execute("return typeof window.axe === 'object' && window.axe.version", vec![]).await?;
    anyhow::ensure!(loaded.is_string(), "axe-core did not load in the window: {loaded}");
    Ok(())
}

/// Runs axe-core on the whole document; one line per violation and element.
async fn violations(client: &Client) -> anyhow::Result<Vec<String>> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {{ runOnly: {RULES}, resultTypes: ['violations'] }}).then(
           (results) => done(results.violations.flatMap((violation) => violation.nodes.map((node) =>
             `${{violation.id}} (${{violation.impact}}) at ${{JSON.stringify(node.target)}}: ` +
             `${{violation.help}}. ${{(node.failureSummary || '').replace(/\\s+/g, ' ')}}`))),
           (err) => done({{ error: String(err) }}));"
    );
    let found = client.execute_async(&script, vec![]).await?;
    anyhow::ensure!(found.get("error").is_none(), "axe-core failed: {found}");
    Ok(serde_json::from_value(found)?)
}

/// Whether the window reports the dark theme to the page.
async fn reports_dark(client: &Client) -> anyhow::Result<bool> {
    let dark = client.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await?;
    Ok(dark == true)
}

async fn open_screen(client: &Client, screen: &str) -> anyhow::Result<()> {
    client.find(Locator::Css(&testid(&format!("nav-{screen}")))).await?.click().await?;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid(&format!("screen-{screen}")))).await?;
    Ok(())
}

/// Saves the window as `tests/screenshots/<name>`; fails rather than hangs
/// when the window does not paint.
async fn screenshot(client: &Client, name: &str) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, settle(client))
        .await
        .map_err(|_| anyhow::anyhow!("the window painted no frame within {WAIT:?}"))?;
    let png = tokio::time::timeout(WAIT, client.screenshot())
        .await
        .map_err(|_| anyhow::anyhow!("no screenshot within {WAIT:?}"))??;
    std::fs::write(screenshots_dir().join(name), png)?;
    Ok(())
}

/// Audits the Record, Library and Settings screens in the app started with
/// `gtk_theme`, and saves each screen as `<screen><suffix>.png` when a
/// suffix is given.
async fn audit_every_screen(gtk_theme: &str, dark: bool, screenshot_suffix: Option<&str>) {
    let Some(desktop) = Desktop::with().warm_microphone().env("GTK_THEME", gtk_theme).open().await else {
        return;
    };
    let client = &desktop.client;

    let result = async {
        client.update_timeouts(TimeoutConfiguration::new(Some(Duration::from_secs(60)), None, None)).await?;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
        anyhow::ensure!(
            reports_dark(client).await? == dark,
            "GTK_THEME={gtk_theme}: the window should report prefers-color-scheme {}",
            if dark { "dark" } else { "light" }
        );
        // axe stays loaded: the app is one page and screens swap inside it.
        inject_axe(client).await?;
        let mut found = Vec::new();

        // The idle Record screen is taken first: after a recording,
        // WebKitWebDriver has been seen to hang on screenshots in the dark theme.
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        if let Some(suffix) = screenshot_suffix {
            screenshot(client, &format!("record{suffix}.png")).await?;
        }
        found.extend(violations(client).await?.into_iter().map(|line| format!("record (idle): {line}")));
        // The Record screen while recording (clock, meter, pause and stop), then idle.
        button(client, "Start recording").await?.click().await?;
        button(client, "Stop recording").await?;
        poll("1 s recorded", WAIT, || async { Ok(elapsed_seconds(client).await? >= 1) }).await?;
        found.extend(violations(client).await?.into_iter().map(|line| format!("record (recording): {line}")));
        button(client, "Stop recording").await?.click().await?;
        let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
        poll("Safe on server", WAIT, || async { Ok(status.text().await?.contains("Safe on server")) })
            .await?;
        found.extend(violations(client).await?.into_iter().map(|line| format!("record: {line}")));
        for screen in ["library", "settings"] {
            open_screen(client, screen).await?;
            if screen == "library" {
                client
                    .wait()
                    .at_most(WAIT)
                    .for_element(Locator::Css("[data-testid^=\"recording-\"][data-state]"))
                    .await?;
            } else {
                client.wait().at_most(WAIT).for_element(Locator::Css(&testid("doctor-check"))).await?;
            }
            found.extend(violations(client).await?.into_iter().map(|line| format!("{screen}: {line}")));
        }
        anyhow::ensure!(found.is_empty(), "{} axe-core violations:\n{}", found.len(), found.join("\n"));
        // The other screenshots last, so that a hung one (see above) cannot
        // stop the audit. The Library, with its recording, is taken from the
        // X server: WebKitWebDriver's screenshot hangs there in the dark theme.
        if let Some(suffix) = screenshot_suffix {
            open_screen(client, "library").await?;
            client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css("[data-testid^=\"recording-\"][data-state]"))
                .await?;
            tokio::time::timeout(WAIT, settle(client))
                .await
                .map_err(|_| anyhow::anyhow!("the window painted no frame within {WAIT:?}"))?;
            let window_manager = WindowManager::connect(desktop.xvfb.display())?;
            let path = screenshots_dir().join(format!("library{suffix}.png"));
            window_manager.capture(window_manager.window_of(desktop.app_pid()?)?, &path)?;
            let (mean, spread) = brightness(&path)?;
            eprintln!("{}: mean brightness {mean:.3}, spread {spread:.3}", path.display());
            anyhow::ensure!(spread > 0.02, "{} shows nothing but one colour", path.display());
            anyhow::ensure!(
                (mean < 0.5) == dark,
                "{} is {} on the whole (mean brightness {mean:.3})",
                path.display(),
                if mean < 0.5 { "dark" } else { "light" }
            );
            open_screen(client, "settings").await?;
            if let Err(err) = screenshot(client, &format!("settings{suffix}.png")).await {
                eprintln!("no screenshot of settings: {err}");
            }
        }
        anyhow::Ok(())
    }
    .await;
    // A hung screenshot leaves WebKitWebDriver unable to end the session:
    // ending it gives up after a while.
    desktop.end_session(result).await;
    assert_eq!(Journal::open_in(desktop.data_dir()).unwrap().recordings().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn axe_finds_no_violations_on_any_screen_in_the_light_theme() {
    audit_every_screen("Adwaita", false, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn axe_finds_no_violations_on_any_screen_in_the_dark_theme() {
    audit_every_screen("Adwaita:dark", true, Some("-dark")).await;
}

/// Presses `key` once.
async fn press(client: &Client, key: Key) -> anyhow::Result<()> {
    let key: char = key.into();
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await?;
    Ok(())
}

/// The focused element's text and whether its focus can be seen (an
/// outline at least 2 px wide that is not `none`).
async fn focused(client: &Client) -> anyhow::Result<(String, bool)> {
    let script = "const element = document.activeElement;
                  const style = getComputedStyle(element);
                  return [(element.textContent || '').trim(),
                          style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2];";
    let found = client.execute(script, vec![]).await?;
    Ok((found[0].as_str().unwrap_or_default().to_owned(), found[1] == true))
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_reaches_start_recording_with_a_visible_focus_and_enter_starts_it() {
    let Some(desktop) = Desktop::with().warm_microphone().open().await else { return };
    let client = &desktop.client;

    let result = async {
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("microphone"))).await?;
        button(client, "Start recording").await?;
        // From the top of the page, as a teacher with only a keyboard starts.
        client.execute("document.activeElement && document.activeElement.blur()", vec![]).await?;
        let mut passed = Vec::new();
        let mut reached = false;
        for _ in 0..30 {
            press(client, Key::Tab).await?;
            let (text, visible) = focused(client).await?;
            if text == "Start recording" {
                anyhow::ensure!(visible, "the focus on Start recording can be seen");
                reached = true;
                break;
            }
            passed.push(text);
        }
        anyhow::ensure!(reached, "Tab never reached Start recording; it passed {passed:?}");
        eprintln!("Start recording is reached after {} Tab presses", passed.len() + 1);
        press(client, Key::Enter).await?;
        button(client, "Stop recording").await?;
        poll("the recording runs", WAIT, || async { Ok(elapsed_seconds(client).await? >= 1) }).await?;
        let journal = Journal::open_in(desktop.data_dir())?;
        anyhow::ensure!(journal.recordings()?.len() == 1, "Enter started one recording");
        button(client, "Stop recording").await?.click().await?;
        let status = client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await?;
        poll("Safe on server", WAIT, || async { Ok(status.text().await?.contains("Safe on server")) })
            .await?;
        anyhow::Ok(())
    }
    .await;
    desktop.end_session(result).await;
}
