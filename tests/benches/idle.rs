//! The desktop app idle: 20 s with its window open against 20 s hidden in
//! the tray, in the same run, 3 rounds interleaved, under Xvfb with a
//! private session bus on which a StatusNotifier host name is owned (so
//! the app may hide its window). Measures CPU (% of one core) of the app's
//! process and of its WebKit children, from `/proc`, and the app's RSS;
//! the table goes to `tests/BENCHMARKS.md`.
//!
//! Debug build, as the other app bench: `cargo build --bins && cargo test -p opptak-tests --bench idle`.

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use opptak_tests::bench::{cpu_time, measured_line, median, rss_mib, write_section};
use opptak_tests::desktop::{SessionBus, WAIT, connect, desktop_status, own_tray_host, poll, testid};
use opptak_tests::{PulseAudio, TauriDriver, Xvfb, descendants, workspace_bin};

const IDLE: Duration = Duration::from_secs(20);
const ROUNDS: usize = 3;

/// What one idle period measured.
#[derive(Debug, Clone, Copy)]
struct Idle {
    main_percent: f64,
    children_percent: f64,
    main_rss: f64,
}

/// Idles `IDLE` and measures the app `pid` and its descendants.
async fn measure(pid: u32) -> Idle {
    let children = descendants(pid);
    let before_main = cpu_time(pid);
    let before_children: Duration = children.iter().copied().map(cpu_time).sum();
    tokio::time::sleep(IDLE).await;
    let main = cpu_time(pid) - before_main;
    let children_cpu = children.iter().copied().map(cpu_time).sum::<Duration>() - before_children;
    let percent = |cpu: Duration| 100.0 * cpu.as_secs_f64() / IDLE.as_secs_f64();
    Idle { main_percent: percent(main), children_percent: percent(children_cpu), main_rss: rss_mib(pid) }
}

/// Hides the window into the tray, as the close dialog's "keep recording in
/// the tray" does.
async fn hide_in_tray(client: &Client) {
    let script = "const done = arguments[arguments.length - 1];\
                  window.__TAURI_INTERNALS__.invoke('close_window', { choice: 'keepRecordingInTray' })\
                  .then(() => done(null), (e) => done(String(e)));";
    let answer = client.execute_async(script, vec![]).await.unwrap();
    assert_eq!(answer, serde_json::Value::Null, "the window hides in the tray");
}

#[tokio::main]
async fn main() {
    let xvfb = Xvfb::start().unwrap().expect("Xvfb: bash .ci/setup installs it");
    let pulse = PulseAudio::start().unwrap().expect("PulseAudio: bash .ci/setup installs it");
    let bus = SessionBus::start().expect("dbus-daemon: bash .ci/setup installs it");
    // A tray host's registry on the bus: the app then offers the tray.
    let _tray_host = own_tray_host(&bus.address).await.expect("own the StatusNotifier host's name");
    let scratch = tempfile::Builder::new().prefix("opptak-bench-idle-").tempdir().unwrap();
    let mut env = vec![
        ("DISPLAY", xvfb.display().to_owned()),
        ("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()),
        ("OPPTAK_DATA_DIR", scratch.path().display().to_string()),
    ];
    env.extend(pulse.env());
    let driver = TauriDriver::start(&env).unwrap().expect("tauri-driver: bash .ci/setup installs it");
    let client = connect(&driver).await;
    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await.unwrap();
    let pid = driver.launched("opptak-desktop").expect("the app runs under tauri-driver");
    poll("the app sees the tray host", WAIT, || async {
        Ok(desktop_status(&client).await?["trayShown"] == true)
    })
    .await
    .unwrap();

    let (mut open, mut hidden) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        open.push(measure(pid).await);
        hide_in_tray(&client).await;
        hidden.push(measure(pid).await);
        // A second launch brings the window back (the single-instance plugin).
        let status = Command::new(workspace_bin("opptak-desktop"))
            .envs(env.iter().map(|(key, value)| (*key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the second launch: {status}");
        println!("round {round}: open {:?}, hidden {:?}", open[round], hidden[round]);
    }
    client.close().await.unwrap();

    let med =
        |rows: &[Idle], field: fn(&Idle) -> f64| median(&mut rows.iter().map(field).collect::<Vec<_>>());
    let row = |name: &str, rows: &[Idle]| {
        format!(
            "| {name} | {:.2} | {:.2} | {:.0} |\n",
            med(rows, |idle| idle.main_percent),
            med(rows, |idle| idle.children_percent),
            med(rows, |idle| idle.main_rss)
        )
    };
    let goal = |met: bool| if met { "met" } else { "**not met**" };
    let hidden_cpu = med(&hidden, |idle| idle.main_percent + idle.children_percent);
    let (open_rss, hidden_rss) = (med(&open, |idle| idle.main_rss), med(&hidden, |idle| idle.main_rss));
    let section = format!(
        "## Desktop app idle, window open vs hidden in the tray (`--bench idle`)\n\n{}\n\n\
         Median of {ROUNDS} rounds, interleaved, {}s each; a StatusNotifier host on a private session bus.\n\n\
         | | app process CPU, % of one core | WebKit processes CPU, % of one core | app process RSS MiB |\n|---|---|---|---|\n\
         {}{}\n\
         Goals: hidden ≤ 0.5 % of a core (app + WebKit: {hidden_cpu:.2}): {}; RSS hidden ≤ RSS open: {}.\n\n",
        measured_line(),
        IDLE.as_secs(),
        row("window open", &open),
        row("hidden in the tray", &hidden),
        goal(hidden_cpu <= 0.5),
        goal(hidden_rss <= open_rss),
    );
    println!("{section}");
    write_section("idle", &section);
}
