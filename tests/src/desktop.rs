//! Driving the desktop app's real window through tauri-driver and
//! WebKitWebDriver: the session, selectors and waits the window tests share.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::{PulseAudio, TauriDriver, Xvfb, in_ci, workspace_bin};

/// How long a window test waits for an element or a state.
pub const WAIT: Duration = Duration::from_secs(20);

/// The environment the app runs in under a window test: the virtual
/// display, its own data folder, and the virtual microphone. The XDG
/// folders go under the data folder too: the window's storage (the chosen
/// source, language) and its remembered size must not leak from one test
/// into the next.
pub fn app_env(xvfb: &Xvfb, pulse: &PulseAudio, data_dir: &Path) -> Vec<(&'static str, String)> {
    let xdg = |kind: &str| data_dir.join(".xdg").join(kind).display().to_string();
    let mut env = vec![
        ("DISPLAY", xvfb.display().to_owned()),
        ("OPPTAK_DATA_DIR", data_dir.display().to_string()),
        ("XDG_DATA_HOME", xdg("data")),
        ("XDG_CONFIG_HOME", xdg("config")),
        ("XDG_CACHE_HOME", xdg("cache")),
    ];
    env.extend(pulse.env());
    env
}

/// A WebDriver session with the desktop app, which `driver` starts.
pub async fn connect(driver: &TauriDriver) -> Client {
    connect_to(driver, &workspace_bin("opptak-desktop")).await
}

/// A WebDriver session with the Tauri app `application`, which `driver` starts.
pub async fn connect_to(driver: &TauriDriver, application: &Path) -> Client {
    // Two TLS backends are linked into the tests (the AWS SDK's and
    // reqwest's), so rustls needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("tauri:options".into(), serde_json::json!({ "application": application }));
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

/// The CSS selector of the element with this `data-testid`.
pub fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// Waits for the page to paint what the DOM now says: a screenshot taken
/// right after a change can be one frame stale.
pub async fn settle(client: &Client) {
    client
        .execute_async("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))", vec![])
        .await
        .expect("two animation frames");
}

/// The button whose accessible name (its text) is exactly `name`.
pub async fn button(client: &Client, name: &str) -> Result<Element, fantoccini::error::CmdError> {
    let xpath = format!("//button[normalize-space()='{name}']");
    client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await
}

/// Polls `what` until it holds, for at most `timeout`.
pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The recorded time the Record screen shows, in seconds.
pub async fn elapsed_seconds(client: &Client) -> anyhow::Result<u32> {
    let shown = client.find(Locator::Css(&testid("elapsed"))).await?.text().await?;
    let seconds =
        shown.trim().split(':').try_fold(0u32, |total, part| part.parse::<u32>().map(|n| total * 60 + n));
    Ok(seconds.unwrap_or(0))
}

/// A private D-Bus session bus (`dbus-daemon --session`), stopped by PID on
/// drop, so the machine's own desktop never sees the test's app: its
/// single-instance channel, tray and notifications.
pub struct SessionBus {
    daemon: Child,
    /// The bus's address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub address: String,
}

impl SessionBus {
    /// Starts the bus; `None` (skip) off CI where dbus-daemon is missing.
    pub fn start() -> Option<Self> {
        let spawned = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut daemon = match spawned {
            Ok(daemon) => daemon,
            Err(err) if !in_ci() => {
                eprintln!("skipped: dbus-daemon is needed for a session bus ({err})");
                return None;
            }
            Err(err) => panic!("dbus-daemon is needed for a session bus: {err}"),
        };
        // The daemon prints its address once it listens.
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed no address: {address:?}");
        Some(Self { daemon, address })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Ends a WebDriver session and then fails with `result`'s error, printing
/// the page first so a failure shows what the window held.
pub async fn close(client: Client, result: anyhow::Result<()>) {
    if result.is_err() {
        eprintln!("DEBUG page: {}", client.source().await.unwrap_or_default());
    }
    client.close().await.expect("end the WebDriver session");
    result.unwrap();
}

/// The desktop app launched through a small shell wrapper that writes the
/// app's exit status to a file: WebKitWebDriver starts the app as its own
/// child, so the test cannot wait for it. Give [`AppExit::launcher`] to
/// [`connect_to`]; a signal to the wrapper (the session ending) is passed
/// on to the app, so no app outlives its test.
pub struct AppExit {
    /// The program WebDriver starts in place of `opptak-desktop`.
    pub launcher: std::path::PathBuf,
    status_file: std::path::PathBuf,
}

impl AppExit {
    /// Writes the wrapper for the workspace's `opptak-desktop` into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let launcher = dir.join("opptak-desktop-launcher.sh");
        let status_file = dir.join("opptak-desktop.exit-status");
        let quote = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
        // `wait` returns early when a trapped signal arrives: wait again
        // until the app is really gone, so the status written is the app's.
        let script = format!(
            "#!/bin/sh\n\
             {app} \"$@\" &\n\
             app=$!\n\
             trap 'kill -TERM $app 2>/dev/null' TERM INT HUP\n\
             while :; do\n\
             \x20 wait $app; status=$?\n\
             \x20 kill -0 $app 2>/dev/null || break\n\
             done\n\
             echo $status > {status}.part && mv {status}.part {status}\n",
            app = quote(&workspace_bin("opptak-desktop")),
            status = quote(&status_file),
        );
        std::fs::write(&launcher, script)?;
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { launcher, status_file })
    }

    /// The app's exit status, once it has exited.
    pub fn status(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status_file).ok()?.trim().parse().ok()
    }

    /// Waits for the app to exit, at most `timeout`; its exit status.
    pub async fn wait(&self, timeout: Duration) -> anyhow::Result<i32> {
        poll("the app exits", timeout, || async { Ok(self.status().is_some()) }).await?;
        Ok(self.status().expect("polled above"))
    }
}
