//! The desktop app, measured in its real window (Xvfb, tauri-driver,
//! WebKitWebDriver) against baselines run in the same run; the tables go to
//! `tests/BENCHMARKS.md`.
//!
//! It measures the binaries of its own build. The release build, which
//! README's `bash .ci/app` runs and the installers ship:
//! `cargo build --release --workspace --bins && cargo build --release -p opptak-desktop --example minimal_window && cargo bench -p opptak-tests --bench app`;
//! the debug build, which the end-to-end tests run: the same without
//! `--release`, and `cargo test -p opptak-tests --bench app`.
//! `OPPTAK_BENCH_LONG_SECONDS` shortens the long recording (default 600).
//!
//! 1. Launch: first paint and memory 10 s after launch, of the app and of
//!    the smallest Tauri app (one window, one paragraph), 3 launches each,
//!    interleaved.
//! 2. CPU of recording 60 s through the app (the Record screen with its
//!    level meter on screen, uploading to the server inside the app): the
//!    app's process and its whole tree (WebKit's web and network
//!    processes), against `opptak record` recording the same microphone at
//!    the same time, to its own embedded server.
//! 3. Stop → "Safe on server" shown in the window, after 1 minute and after
//!    the long recording, against `opptak record`'s stop → ready.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::{Client, Locator};
use opptak_tests::bench::{
    CliRecorder, cpu_time, measured_line, median, program_code_mib, pss_mib, rss_mib, write_section,
};
use opptak_tests::desktop::{WAIT, button, connect_to, poll, testid};
use opptak_tests::{PulseAudio, TauriDriver, Xvfb, descendants, workspace_bin};

const BUILD: &str = if cfg!(debug_assertions) { "debug" } else { "release" };
const CPU_WINDOW: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(10);
const LAUNCHES: usize = 3;
/// The memory goal's 40 MB (10^6 bytes) in the MiB the tables use.
const FORTY_MB_IN_MIB: f64 = 40e6 / (1024.0 * 1024.0);

/// What one launch of a window measured.
struct Launch {
    first_paint: Duration,
    main_rss: f64,
    tree_pss: f64,
    program_code: f64,
}

/// The app under WebDriver: the session and the app's process id.
struct Window {
    client: Client,
    pid: u32,
    _driver: TauriDriver,
}

impl Window {
    async fn open(env: &[(&str, String)], application: &Path, ready: &str) -> Self {
        let driver = TauriDriver::start(env).unwrap().expect("tauri-driver: bash .ci/setup installs it");
        let client = connect_to(&driver, application).await;
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid(ready))).await.unwrap();
        let program = application.file_name().unwrap().to_string_lossy();
        let pid = driver.launched(&program).expect("the app runs under tauri-driver");
        Self { client, pid, _driver: driver }
    }

    /// The process and its descendants (WebKit's processes).
    fn tree(&self) -> Vec<u32> {
        let mut tree = descendants(self.pid);
        tree.insert(0, self.pid);
        tree
    }

    fn tree_cpu(&self) -> Duration {
        self.tree().into_iter().map(cpu_time).sum()
    }

    /// From the process's start to the page's first contentful paint, by
    /// the Paint Timing API: both ends are clocks the measurement itself
    /// does not move.
    async fn first_paint(&self) -> Duration {
        let script = "const paints = performance.getEntriesByType('paint');
                      const first = paints.find((entry) => entry.name === 'first-contentful-paint') || paints[0];
                      return first ? performance.timeOrigin + first.startTime : null;";
        // The entry is recorded a moment after the paint itself.
        let deadline = Instant::now() + WAIT;
        let painted_ms = loop {
            if let Some(painted) = self.client.execute(script, vec![]).await.unwrap().as_f64() {
                break painted;
            }
            assert!(Instant::now() < deadline, "no paint entry");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let painted = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(painted_ms / 1000.0);
        painted.duration_since(process_start(self.pid)).expect("painted after the process started")
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// When `pid` started, on the wall clock: its age from `/proc` (10 ms
/// ticks since boot against the uptime now) taken from the time now.
fn process_start(pid: u32) -> SystemTime {
    let now = SystemTime::now();
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // starttime is field 22 of stat(5): index 19 after the command name.
    let ticks: f64 = fields[19].parse().unwrap();
    let per_second =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    now - Duration::from_secs_f64(uptime - ticks / per_second)
}

async fn launch(env: &[(&str, String)], application: &Path, ready: &str) -> Launch {
    let window = Window::open(env, application, ready).await;
    let first_paint = window.first_paint().await;
    tokio::time::sleep(IDLE).await;
    let main_rss = rss_mib(window.pid);
    let tree_pss = window.tree().into_iter().map(pss_mib).sum();
    let program_code = program_code_mib(window.pid);
    window.close().await;
    Launch { first_paint, main_rss, tree_pss, program_code }
}

/// Clicks Stop and returns how long until the window says "Safe on server".
async fn stop_to_safe(client: &Client) -> Duration {
    let stopped = Instant::now();
    button(client, "Stop recording").await.unwrap().click().await.unwrap();
    let status =
        client.wait().at_most(WAIT).for_element(Locator::Css(&testid("record-status"))).await.unwrap();
    poll("Safe on server", Duration::from_secs(120), || async {
        Ok(status.text().await?.contains("Safe on server"))
    })
    .await
    .unwrap();
    stopped.elapsed()
}

fn data_dir_env(env: &[(&'static str, String)], dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = env.to_vec();
    env.push(("OPPTAK_DATA_DIR", dir.display().to_string()));
    env
}

#[tokio::main]
async fn main() {
    let long = Duration::from_secs(
        std::env::var("OPPTAK_BENCH_LONG_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(600),
    );
    let xvfb = Xvfb::start().unwrap().expect("Xvfb: bash .ci/setup installs it");
    let mut pulse = PulseAudio::start().unwrap().expect("PulseAudio: bash .ci/setup installs it");
    pulse.keep_source_warm().unwrap();
    let scratch = tempfile::Builder::new().prefix("opptak-bench-app-").tempdir().unwrap();
    let mut env = vec![("DISPLAY", xvfb.display().to_owned())];
    env.extend(pulse.env());
    let app = workspace_bin("opptak-desktop");
    let minimal: PathBuf = app.parent().unwrap().join("examples/minimal_window");
    assert!(
        minimal.exists(),
        "{} is missing: cargo build -p opptak-desktop --example minimal_window (with --release for cargo bench)",
        minimal.display()
    );

    // The app turns WebKit's compositing off by itself (see its main.rs);
    // the minimal window runs both as Tauri ships it and the same way.
    let with_compositing = |on: bool| {
        let mut env = env.clone();
        env.push(("WEBKIT_DISABLE_COMPOSITING_MODE", if on { "0" } else { "1" }.to_owned()));
        env
    };
    let (mut app_launches, mut shipped_launches, mut alike_launches) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..LAUNCHES {
        let dir = scratch.path().join(format!("launch-{round}"));
        app_launches.push(launch(&data_dir_env(&env, &dir), &app, "screen-record").await);
        shipped_launches.push(launch(&with_compositing(true), &minimal, "minimal").await);
        alike_launches.push(launch(&with_compositing(false), &minimal, "minimal").await);
        for (what, launched) in [
            ("app", &app_launches),
            ("minimal", &shipped_launches),
            ("minimal, no compositing", &alike_launches),
        ] {
            let launched = &launched[round];
            println!(
                "launch {round}, {what}: paint {:?}, RSS {:.0} MiB, tree PSS {:.0} MiB, program code {:.1} MiB",
                launched.first_paint, launched.main_rss, launched.tree_pss, launched.program_code
            );
        }
    }
    let medians = |launches: &[Launch]| {
        (
            median(&mut launches.iter().map(|l| l.first_paint.as_secs_f64()).collect::<Vec<_>>()),
            median(&mut launches.iter().map(|l| l.main_rss).collect::<Vec<_>>()),
            median(&mut launches.iter().map(|l| l.tree_pss).collect::<Vec<_>>()),
            median(&mut launches.iter().map(|l| l.program_code).collect::<Vec<_>>()),
        )
    };
    let (app_paint, app_rss, app_pss, app_code) = medians(&app_launches);
    let (shipped_paint, shipped_rss, shipped_pss, shipped_code) = medians(&shipped_launches);
    let (minimal_paint, minimal_rss, minimal_pss, minimal_code) = medians(&alike_launches);

    let _tone =
        pulse.play_tone_in_background(scratch.path(), CPU_WINDOW.as_secs() + long.as_secs() + 120).unwrap();
    let window = Window::open(&data_dir_env(&env, &scratch.path().join("app")), &app, "screen-record").await;
    button(&window.client, "Start recording").await.unwrap().click().await.unwrap();
    button(&window.client, "Stop recording").await.unwrap();
    let (cli, _) = CliRecorder::start(&scratch.path().join("cli"), &pulse, &[]);
    let per_process_before: Vec<(u32, Duration)> =
        window.tree().into_iter().map(|pid| (pid, cpu_time(pid))).collect();
    let (app_main_before, app_tree_before, cli_before) =
        (cpu_time(window.pid), window.tree_cpu(), cpu_time(cli.child.pid()));
    tokio::time::sleep(CPU_WINDOW).await;
    let app_main_cpu = cpu_time(window.pid) - app_main_before;
    let app_tree_cpu = window.tree_cpu() - app_tree_before;
    let cli_cpu = cpu_time(cli.child.pid()) - cli_before;
    for (pid, before) in per_process_before {
        let program = opptak_tests::program_of(pid).unwrap_or_default();
        println!("{program} ({pid}): {:?} CPU in {CPU_WINDOW:?}", cpu_time(pid) - before);
    }
    let short_app = stop_to_safe(&window.client).await;
    let short_cli = cli.stop_to_ready();
    println!("1 min: app stop→safe {short_app:?}, cli stop→ready {short_cli:?}");

    button(&window.client, "Record another lesson").await.unwrap().click().await.unwrap();
    button(&window.client, "Start recording").await.unwrap().click().await.unwrap();
    button(&window.client, "Stop recording").await.unwrap();
    let (cli, _) = CliRecorder::start(&scratch.path().join("cli-long"), &pulse, &[]);
    tokio::time::sleep(long).await;
    let long_app = stop_to_safe(&window.client).await;
    let long_cli = cli.stop_to_ready();
    println!("{long:?}: app stop→safe {long_app:?}, cli stop→ready {long_cli:?}");
    window.close().await;

    let percent = |cpu: Duration| 100.0 * cpu.as_secs_f64() / CPU_WINDOW.as_secs_f64();
    let goal = |met: bool| if met { "met" } else { "**not met**" };
    let minutes = long.as_secs_f64() / 60.0;
    let (tree, main, cli_percent) = (percent(app_tree_cpu), percent(app_main_cpu), percent(cli_cpu));
    let section = format!(
        "## Desktop app (`--bench app`), {BUILD} build\n\n{}\n\n\
         ### Launch: first paint and memory 10 s after launch (median of {LAUNCHES} launches each, interleaved)\n\n\
         | | launch → first paint s | main process RSS MiB | process tree PSS MiB | of which the program's own code MiB |\n|---|---|---|---|---|\n\
         | Opptak (opens its journal, starts the server inside the app, resumes uploads) | {app_paint:.2} | {app_rss:.0} | {app_pss:.0} | {app_code:.1} |\n\
         | baseline: the smallest Tauri app (`src-tauri/examples/minimal_window.rs`), compositing off like Opptak | {minimal_paint:.2} | {minimal_rss:.0} | {minimal_pss:.0} | {minimal_code:.1} |\n\
         | the smallest Tauri app as Tauri ships it (WebKit compositing on) | {shipped_paint:.2} | {shipped_rss:.0} | {shipped_pss:.0} | {shipped_code:.1} |\n\n\
         Goals: first paint ≤ 1.5 s: {}; memory ≤ the minimal window with the same settings + 40 MB, i.e. 38.1 MiB \
         (RSS +{:.1} MiB, PSS +{:.1} MiB): {}. The program's own code is what `.ci/startup-order` keeps \
         small: it grows back towards 13 MiB as `src-tauri/startup-order.txt` goes stale.\n\n\
         ### CPU of recording 60 s, the level meter on screen, uploading as it records (both at once, same microphone)\n\n\
         | | CPU, % of one core |\n|---|---|\n\
         | the app's process tree (app + WebKit's web and network processes) | {tree:.2} |\n\
         | the app's own process | {main:.2} |\n\
         | baseline: `opptak record` (to its own embedded server) | {cli_percent:.2} |\n\n\
         Goals: the tree ≤ 8 % of a core: {}; the app's process within 2 points of the CLI: {}.\n\n\
         ### Stop → \"Safe on server\" shown in the window\n\n\
         | recording length | the app: stop → \"Safe on server\" s | baseline: `opptak record` stop → ready s |\n|---|---|---|\n\
         | 1 min | {:.2} | {:.2} |\n| {minutes:.0} min | {:.2} | {:.2} |\n\n\
         Goal ≤ 3 s and not growing with length: {}.\n\n",
        measured_line(),
        goal(app_paint <= 1.5),
        app_rss - minimal_rss,
        app_pss - minimal_pss,
        goal(app_rss - minimal_rss <= FORTY_MB_IN_MIB && app_pss - minimal_pss <= FORTY_MB_IN_MIB),
        goal(tree <= 8.0),
        goal(main <= cli_percent + 2.0),
        short_app.as_secs_f64(),
        short_cli.as_secs_f64(),
        long_app.as_secs_f64(),
        long_cli.as_secs_f64(),
        goal(short_app.as_secs_f64() <= 3.0 && long_app.as_secs_f64() <= 3.0),
    );
    println!("{section}");
    // The debug build (the end-to-end tests) and the release build (README's
    // `bash .ci/app` and the installers) each keep their own table.
    write_section(if BUILD == "debug" { "app" } else { "app-release" }, &section);
}
