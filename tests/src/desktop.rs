//! Driving the desktop app's real window through tauri-driver and
//! WebKitWebDriver: the session, selectors and waits the window tests share.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt as _, EventMask, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

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

/// How long starting a WebDriver session may take before it is taken to hang.
const SESSION_START: Duration = Duration::from_secs(120);

/// A WebDriver session with the Tauri app `application`, which `driver` starts.
pub async fn connect_to(driver: &TauriDriver, application: &Path) -> Client {
    // Two TLS backends are linked into the tests (the AWS SDK's and
    // reqwest's), so rustls needs to be told which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("tauri:options".into(), serde_json::json!({ "application": application }));
    // Starting the app can outlast WebKitWebDriver's patience on a loaded
    // machine; it then closes the connection, and a second try succeeds.
    // And when the app's remote inspector cannot listen on the port
    // WebKitWebDriver picked for it (another process took it first),
    // WebKitWebDriver waits for ever: that try's app is ended and the next
    // one gets another port.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut builder = ClientBuilder::rustls().expect("TLS roots for the WebDriver client");
        let session = match tokio::time::timeout(
            SESSION_START,
            builder.capabilities(capabilities.clone()).connect(&driver.url()),
        )
        .await
        {
            Ok(session) => session.map_err(|err| format!("{err:?}")),
            Err(_) => {
                let program = application.file_name().map(|name| name.to_string_lossy().into_owned());
                if let Some(pid) = program.and_then(|program| driver.launched(&program)) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(format!("no session within {SESSION_START:?}"))
            }
        };
        match session {
            Ok(client) => {
                // The window mounts once it knows the saved language (one
                // command away): wait for it, so no test finds an empty page.
                let mounted = "const root = document.getElementById('app'); return !root || root.childElementCount > 0;";
                let deadline = tokio::time::Instant::now() + WAIT;
                while client.execute(mounted, vec![]).await.ok() != Some(serde_json::Value::Bool(true))
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return client;
            }
            Err(err) if attempts < 3 => {
                eprintln!("WebDriver session attempt {attempts} failed ({err}); trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => panic!("WebDriver session with the desktop app, after {attempts} attempts: {err}"),
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

/// The mean brightness of the PNG at `path` and its standard deviation,
/// each 0–1, from ImageMagick.
pub fn brightness(path: &Path) -> anyhow::Result<(f64, f64)> {
    let output = std::process::Command::new("convert")
        .arg(path)
        .args(["-colorspace", "Gray", "-format", "%[fx:mean] %[fx:standard_deviation]", "info:"])
        .output()?;
    anyhow::ensure!(output.status.success(), "convert {}: {output:?}", path.display());
    let text = String::from_utf8(output.stdout)?;
    let mut numbers = text.split_whitespace().map(str::parse::<f64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(mean)), Some(Ok(spread))) => Ok((mean, spread)),
        _ => anyhow::bail!("convert said {text:?}"),
    }
}

/// The button whose accessible name (its text) is exactly `name`.
pub async fn button(client: &Client, name: &str) -> Result<Element, fantoccini::error::CmdError> {
    let xpath = format!("//button[normalize-space()='{name}']");
    client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await
}

/// Polls `what` until it holds, for at most `timeout`; a check that does
/// not answer (a WebDriver call the window never replies to) counts against
/// the same deadline.
pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // Even past the deadline, one last check gets a moment to answer.
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500));
        let answered = tokio::time::timeout(left, check())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: the check did not answer within {timeout:?}"))?;
        if answered? {
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
#[derive(Debug)]
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

/// The log lines of the app whose data folder is `data_dir`, for a
/// failure's message.
pub fn app_log(data_dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(data_dir.join("logs")) else { return String::new() };
    entries.flatten().filter_map(|entry| std::fs::read_to_string(entry.path()).ok()).collect()
}

/// A StatusNotifier host's registry on a session bus, as a desktop panel
/// runs it: it owns the registry's name, so the app shows a tray icon and
/// offers to keep recording in the tray, and it answers the icons that
/// register. Held until dropped.
#[derive(Debug)]
pub struct TrayHost {
    connection: zbus::Connection,
    items: Arc<Mutex<Vec<String>>>,
}

impl TrayHost {
    /// The tray icons registered so far (bus name and object path).
    pub fn items(&self) -> Vec<String> {
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl TrayHost {
    /// The bus name, dbusmenu path and item id of the item labelled `label`
    /// in the menu of the tray icon registered last (`None`: no such item):
    /// the icon's `Menu` property names its dbusmenu, whose layout gives
    /// the items, as a panel reads them.
    async fn menu_item(&self, label: &str) -> anyhow::Result<Option<(String, String, i32)>> {
        use zbus::zvariant::{OwnedObjectPath, OwnedValue};
        let item =
            self.items().into_iter().last().ok_or_else(|| anyhow::anyhow!("no tray icon registered"))?;
        let (service, path) = item.split_at(item.find('/').unwrap_or(item.len()));
        let properties = zbus::fdo::PropertiesProxy::builder(&self.connection)
            .destination(service.to_owned())?
            .path(path.to_owned())?
            .build()
            .await?;
        let interface = zbus::names::InterfaceName::try_from("org.kde.StatusNotifierItem")?;
        let menu = OwnedObjectPath::try_from(properties.get(interface, "Menu").await?)?;
        let reply = self
            .connection
            .call_method(
                Some(service),
                menu.as_str(),
                Some(DBUS_MENU),
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .await?;
        type Layout = (i32, std::collections::HashMap<String, OwnedValue>, Vec<OwnedValue>);
        let (_revision, (_root, _properties, children)): (u32, Layout) = reply.body().deserialize()?;
        let id = children.iter().find_map(|child| menu_item_id(child, label));
        Ok(id.map(|id| (service.to_owned(), menu.as_str().to_owned(), id)))
    }

    /// Whether the tray menu has an item labelled `label` now.
    pub async fn shows(&self, label: &str) -> anyhow::Result<bool> {
        Ok(self.menu_item(label).await?.is_some())
    }

    /// Clicks the item labelled `label` in the tray menu, as a panel does
    /// when the teacher picks it.
    pub async fn click(&self, label: &str) -> anyhow::Result<()> {
        let (service, menu, id) = self
            .menu_item(label)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no item labelled {label:?} in the tray menu"))?;
        let clicked = zbus::zvariant::Value::I32(0);
        self.connection
            .call_method(
                Some(service.as_str()),
                menu.as_str(),
                Some(DBUS_MENU),
                "Event",
                &(id, "clicked", clicked, 0u32),
            )
            .await?;
        Ok(())
    }
}

/// The menu interface tray icons export.
const DBUS_MENU: &str = "com.canonical.dbusmenu";

/// The id of the dbusmenu item labelled `label` (mnemonic underscores
/// ignored) in `layout`, an `(ia{sv}av)` menu node, or in its children.
fn menu_item_id(layout: &zbus::zvariant::Value<'_>, label: &str) -> Option<i32> {
    use zbus::zvariant::Value;
    let layout = match layout {
        Value::Value(inner) => inner.as_ref(),
        other => other,
    };
    let Value::Structure(layout) = layout else { return None };
    let [Value::I32(id), Value::Dict(properties), Value::Array(children)] = layout.fields() else {
        return None;
    };
    let shown = properties.iter().find_map(|(key, value)| {
        let value = match value {
            Value::Value(inner) => inner.as_ref(),
            other => other,
        };
        match (key, value) {
            (Value::Str(key), Value::Str(text)) if key.as_str() == "label" => Some(text.replace('_', "")),
            _ => None,
        }
    });
    if shown.as_deref() == Some(label) {
        return Some(*id);
    }
    children.iter().find_map(|child| menu_item_id(child, label))
}

/// The registry's D-Bus interface, as much of it as an icon uses to register.
struct StatusNotifierWatcher {
    items: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl StatusNotifierWatcher {
    async fn register_status_notifier_item(
        &self,
        service: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        // Some icons pass their object path and leave the bus name to the sender.
        let item = match header.sender() {
            Some(sender) if service.starts_with('/') => format!("{sender}{service}"),
            _ => service,
        };
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(item);
    }

    async fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    async fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    #[zbus(property)]
    async fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    async fn protocol_version(&self) -> i32 {
        0
    }
}

/// Starts a StatusNotifier host's registry on the session bus at `address`.
pub async fn own_tray_host(address: &str) -> anyhow::Result<TrayHost> {
    let items = Arc::new(Mutex::new(Vec::new()));
    let watcher = StatusNotifierWatcher { items: items.clone() };
    let connection = zbus::connection::Builder::address(address)?
        .serve_at("/StatusNotifierWatcher", watcher)?
        .name(STATUS_NOTIFIER_WATCHER)?
        .build()
        .await?;
    Ok(TrayHost { connection, items })
}

/// The bus name of a StatusNotifier host's registry (what the app looks for).
pub const STATUS_NOTIFIER_WATCHER: &str = "org.kde.StatusNotifierWatcher";

/// The app's `desktop_status` command, asked through the page.
pub async fn desktop_status(client: &Client) -> anyhow::Result<serde_json::Value> {
    let script = "const done = arguments[arguments.length - 1];\
                  window.__TAURI_INTERNALS__.invoke('desktop_status').then(done, (e) => done({ error: String(e) }));";
    let status = client.execute_async(script, vec![]).await?;
    anyhow::ensure!(status.get("error").is_none(), "desktop_status failed: {status}");
    Ok(status)
}

/// What a window test's app runs with, beyond the display, the virtual
/// microphone and a data folder of its own. Made by [`Desktop::with`].
#[derive(Debug, Default)]
pub struct DesktopSetup {
    warm_microphone: bool,
    session_bus: bool,
    tray_host: bool,
    exit_status: bool,
    env: Vec<(&'static str, String)>,
}

impl DesktopSetup {
    /// Keeps the virtual microphone's source warm, so a recording loses
    /// nothing at its start ([`PulseAudio::keep_source_warm`]).
    pub fn warm_microphone(mut self) -> Self {
        self.warm_microphone = true;
        self
    }

    /// Gives the app a private session bus with no tray host on it.
    pub fn session_bus(mut self) -> Self {
        self.session_bus = true;
        self
    }

    /// Gives the app a private session bus with a StatusNotifier host on
    /// it, so it may hide its window in the tray.
    pub fn tray_host(mut self) -> Self {
        self.session_bus = true;
        self.tray_host = true;
        self
    }

    /// Launches the app through [`AppExit`], so the test can wait for it to
    /// exit and read its exit status.
    pub fn exit_status(mut self) -> Self {
        self.exit_status = true;
        self
    }

    /// Adds `key=value` to the app's environment.
    pub fn env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// Starts everything and opens the app's window; `None` (the test
    /// skips, after saying why) where a tool is missing outside CI.
    pub async fn open(self) -> Option<Desktop> {
        let xvfb = Xvfb::start().unwrap()?;
        let mut pulse = PulseAudio::start().unwrap()?;
        if self.warm_microphone {
            pulse.keep_source_warm().unwrap();
        }
        let bus = if self.session_bus { Some(SessionBus::start()?) } else { None };
        let tray_host = match (&bus, self.tray_host) {
            (Some(bus), true) => Some(own_tray_host(&bus.address).await.expect("own the tray host's name")),
            _ => None,
        };
        let data_dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let mut env = app_env(&xvfb, &pulse, data_dir.path());
        if let Some(bus) = &bus {
            env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()));
        }
        env.extend(self.env);
        let exit = self.exit_status.then(|| AppExit::new(scratch.path()).unwrap());
        let driver = TauriDriver::start(&env).unwrap()?;
        let client = match &exit {
            Some(exit) => connect_to(&driver, &exit.launcher).await,
            None => connect(&driver).await,
        };
        Some(Desktop { client, driver, exit, env, scratch, tray_host, bus, data_dir, pulse, xvfb })
    }
}

/// The desktop app in its real window under Xvfb, driven through
/// tauri-driver, with the virtual microphone and a data folder of its own.
/// Dropping it stops everything it started, by PID, in the right order (the
/// WebDriver bridge first, the display last); end the session first with
/// [`Desktop::end_session`].
pub struct Desktop {
    /// The WebDriver session with the app.
    pub client: Client,
    /// The WebDriver bridge, which launched the app.
    pub driver: TauriDriver,
    /// The app's exit status, when [`DesktopSetup::exit_status`] asked for it.
    pub exit: Option<AppExit>,
    /// The app's environment: give it to a second launch or to `opptak`.
    pub env: Vec<(&'static str, String)>,
    /// A folder for the test's own files (clips, the launcher).
    pub scratch: tempfile::TempDir,
    /// The tray host, when asked for.
    pub tray_host: Option<TrayHost>,
    /// The private session bus, when asked for.
    pub bus: Option<SessionBus>,
    /// The app's data folder (and its XDG folders, see [`app_env`]).
    pub data_dir: tempfile::TempDir,
    /// The virtual microphone.
    pub pulse: PulseAudio,
    /// The display.
    pub xvfb: Xvfb,
}

impl Desktop {
    /// A window test's app with only the display, the microphone and a data folder.
    pub fn with() -> DesktopSetup {
        DesktopSetup::default()
    }

    /// Opens the app with nothing more; see [`Desktop::with`] for more.
    pub async fn open() -> Option<Self> {
        Self::with().open().await
    }

    /// The app's data folder.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The process id of the app the bridge launched, while it runs.
    pub fn app_pid(&self) -> anyhow::Result<u32> {
        self.driver
            .launched("opptak-desktop")
            .ok_or_else(|| anyhow::anyhow!("the app's process is not running"))
    }

    /// Starts a new WebDriver session, which launches the app again with
    /// the same data folder and environment. End the last one first.
    pub async fn relaunch(&mut self) {
        self.client = match &self.exit {
            Some(exit) => {
                let _ = std::fs::remove_file(&exit.status_file);
                connect_to(&self.driver, &exit.launcher).await
            }
            None => connect(&self.driver).await,
        };
    }

    /// Ends the WebDriver session, then fails with `result`'s error, after
    /// printing the page and the app's log. The app may be gone already (the
    /// test closed it), or the page hung: neither may hold the test up.
    pub async fn end_session(&self, result: anyhow::Result<()>) {
        if result.is_err() {
            if let Ok(Ok(page)) = tokio::time::timeout(SESSION_END, self.client.source()).await {
                eprintln!("DEBUG page: {page}");
            }
            eprintln!("the app's log:\n{}", app_log(self.data_dir()));
        }
        let _ = tokio::time::timeout(SESSION_END, self.client.clone().close()).await;
        result.unwrap();
    }
}

/// How long ending a WebDriver session may take; WebKitWebDriver hangs on
/// a session whose app is gone or whose page stopped painting.
const SESSION_END: Duration = Duration::from_secs(20);

/// The X server as a window manager sees it: the app's top-level windows,
/// their places and sizes, and the close request a window manager sends.
pub struct WindowManager {
    display: String,
    connection: RustConnection,
    root: Window,
    wm_protocols: u32,
    wm_delete_window: u32,
    net_wm_pid: u32,
}

impl WindowManager {
    /// Connects to the X display `display` (`:N`).
    pub fn connect(display: &str) -> anyhow::Result<Self> {
        let (connection, screen) = x11rb::connect(Some(display))?;
        let root = connection.setup().roots[screen].root;
        let atom = |name: &str| -> anyhow::Result<u32> {
            Ok(connection.intern_atom(false, name.as_bytes())?.reply()?.atom)
        };
        let (wm_protocols, wm_delete_window, net_wm_pid) =
            (atom("WM_PROTOCOLS")?, atom("WM_DELETE_WINDOW")?, atom("_NET_WM_PID")?);
        Ok(Self { display: display.to_owned(), connection, root, wm_protocols, wm_delete_window, net_wm_pid })
    }

    /// The top-level windows of process `pid` that take part in the
    /// WM_DELETE_WINDOW protocol (GTK's hidden leader and popups do not),
    /// shown or not.
    fn all_windows_of(&self, pid: u32) -> anyhow::Result<Vec<Window>> {
        let mut found = Vec::new();
        for window in self.connection.query_tree(self.root)?.reply()?.children {
            let owner = self
                .connection
                .get_property(false, window, self.net_wm_pid, AtomEnum::CARDINAL, 0, 1)?
                .reply()?;
            if owner.value32().and_then(|mut values| values.next()) != Some(pid) {
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

    /// The shown (mapped and viewable) top-level windows of process `pid`.
    pub fn windows_of(&self, pid: u32) -> anyhow::Result<Vec<Window>> {
        let mut shown = Vec::new();
        for window in self.all_windows_of(pid)? {
            if self.is_shown(window)? {
                shown.push(window);
            }
        }
        Ok(shown)
    }

    /// Whether `window` is shown (mapped and viewable); an error once it is
    /// destroyed.
    pub fn is_shown(&self, window: Window) -> anyhow::Result<bool> {
        Ok(self.connection.get_window_attributes(window)?.reply()?.map_state == MapState::VIEWABLE)
    }

    /// The one shown window of process `pid`.
    pub fn window_of(&self, pid: u32) -> anyhow::Result<Window> {
        let windows = self.windows_of(pid)?;
        anyhow::ensure!(windows.len() == 1, "one shown window of the app, not {windows:?}");
        Ok(windows[0])
    }

    /// Where `window` is on the screen and how big it is: x, y, width, height.
    pub fn geometry(&self, window: Window) -> anyhow::Result<(i32, i32, u32, u32)> {
        let geometry = self.connection.get_geometry(window)?.reply()?;
        let place = self.connection.translate_coordinates(window, self.root, 0, 0)?.reply()?;
        Ok((
            i32::from(place.dst_x),
            i32::from(place.dst_y),
            u32::from(geometry.width),
            u32::from(geometry.height),
        ))
    }

    /// Saves what the X server shows of `window` as a PNG at `path`, with
    /// ImageMagick's `import`: WebKitWebDriver's own screenshot has been
    /// seen to hang. Fails (after `WAIT`) rather than hangs.
    pub fn capture(&self, window: Window, path: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            crate::require_program("import", "to take a screenshot from the X server").is_some(),
            "ImageMagick's `import` is missing"
        );
        let mut import = Command::new("import");
        import
            .args(["-display", &self.display, "-window", &window.to_string()])
            .arg(format!("png:{}", path.display()))
            .stdout(Stdio::null());
        let status = crate::ChildGuard::spawn("import", &mut import)?.wait_timeout(WAIT)?;
        anyhow::ensure!(status.success(), "import of window {window} failed: {status}");
        Ok(())
    }

    /// Asks the one window of process `pid` to close, as a window manager
    /// does when its close button is clicked.
    pub fn ask_to_close(&self, pid: u32) -> anyhow::Result<()> {
        let window = self.window_of(pid)?;
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
