//! The Linux packages as a school's IT uses them: the real `.deb` that
//! `bash .ci/package` built (`OPPTAK_DEB`) installed with `apt-get`, its
//! programs run from `/usr/bin` (the CLI, the server, the window), then
//! removed, leaving the user's data; and the `.rpm`'s metadata
//! (`OPPTAK_RPM`), which cannot be installed on Debian.
//!
//! Installing changes the machine, so it needs root and happens once per
//! run, under a lock other runs wait for; a drop guard always removes it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use opptak_tests::desktop::{WAIT, WindowManager, app_env, brightness, connect_to, testid};
use opptak_tests::{
    ChildGuard, PulseAudio, TauriDriver, Xvfb, free_port, in_ci, repo_root, screenshots_dir, sha256_hex,
    wav_of_len,
};
use serde_json::Value;

/// The package's name, as teachers' IT types it in `apt-get remove opptak`.
const PACKAGE: &str = "opptak";
const INSTALLED_CLI: &str = "/usr/bin/opptak";
const INSTALLED_APP: &str = "/usr/bin/opptak-desktop";
const UNIT: &str = "/usr/lib/systemd/system/opptak-serve.service";
const SERVE_EXAMPLE: &str = "/usr/share/doc/opptak/serve.toml.example";
const TOKEN: &str = "package-test-token";

/// The package file that `variable` names. When it is unset: under CI a
/// failure, elsewhere `None` after saying why the test is skipped.
fn package_file(variable: &str, what: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os(variable).filter(|path| !path.is_empty()) else {
        let message = format!(
            "{variable} is not set: it names the {what} that `bash .ci/package` builds. \
             `bash .ci/run` builds the packages and sets it; by hand: \
             {variable}=$(ls $CARGO_TARGET_DIR/debug/bundle/*/*.{}) cargo nextest run -p opptak-tests --test package",
            what.trim_start_matches('.')
        );
        assert!(!in_ci(), "{message}");
        eprintln!("SKIPPED: {message}");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{variable}={} is not a file: run `bash .ci/package` again", path.display());
    Some(std::path::absolute(&path).expect("absolute package path"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|err| panic!("could not run {program}: {err}"))
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn is_root() -> bool {
    stdout_of("id", &["-u"]).trim() == "0"
}

/// Whether dpkg counts `package` as installed.
fn installed(package: &str) -> bool {
    let output = run("dpkg-query", &["-W", "-f=${Status}", package]);
    output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "install ok installed"
}

/// `apt-get` without questions, waiting for dpkg's lock rather than failing
/// when another apt run holds it.
fn apt_get(args: &[&str]) -> Output {
    Command::new("apt-get")
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=120"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run apt-get")
}

fn remove_package(package: &str) -> Duration {
    let started = Instant::now();
    let output = apt_get(&["remove", package]);
    assert!(
        output.status.success(),
        "apt-get remove {package} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// The installed package, removed on drop unless the test removed it.
struct Installation {
    package: String,
}

impl Drop for Installation {
    fn drop(&mut self) {
        if installed(&self.package) {
            eprintln!("removing {} after a failed test", self.package);
            let output = apt_get(&["remove", &self.package]);
            if !output.status.success() {
                eprintln!(
                    "apt-get remove {} failed: {}",
                    self.package,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

/// Holds a lock on a file in /tmp so two test runs on one machine (a
/// developer's and CI's) do not install and remove the package under each
/// other. The lock ends with the process at the latest.
fn machine_lock() -> File {
    let file =
        File::create(std::env::temp_dir().join("opptak-package-test.lock")).expect("create the lock file");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                assert!(Instant::now() < deadline, "another package test held the machine for 5 minutes");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::Error(err)) => panic!("lock the package test's lock file: {err}"),
        }
    }
}

/// The files (not folders) a `.deb` installs, as absolute paths.
fn deb_files(deb: &Path) -> Vec<String> {
    let listing = Command::new("sh")
        .args(["-c", "dpkg-deb --fsys-tarfile \"$1\" | tar -tv", "sh"])
        .arg(deb)
        .output()
        .expect("list the .deb");
    assert!(
        listing.status.success(),
        "listing {}: {}",
        deb.display(),
        String::from_utf8_lossy(&listing.stderr)
    );
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        // Folders (type `d`) stay: other packages share them.
        .filter(|line| !line.starts_with('d'))
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(|path| format!("/{}", path.trim_start_matches("./")))
        .collect()
}

fn control_field(deb: &Path, field: &str) -> String {
    stdout_of("dpkg-deb", &["-f", deb.to_str().unwrap(), field]).trim().to_owned()
}

/// Every file under `dir` with the SHA-256 of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), sha256_hex(&std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}

/// The installed `opptak serve` with the installed example config (the
/// users file pointed at `users`), on a free port of 127.0.0.1.
fn start_installed_server(work: &Path) -> (ChildGuard, String) {
    let users = work.join("users");
    std::fs::write(&users, format!("teacher:{TOKEN}\n")).unwrap();
    let example =
        std::fs::read_to_string(SERVE_EXAMPLE).expect("the package installs the server's example config");
    let config: String = example
        .lines()
        .map(|line| {
            if line.starts_with("users_file") {
                format!("users_file = \"{}\"", users.display())
            } else {
                line.to_owned()
            }
        })
        .map(|line| line + "\n")
        .collect();
    assert!(config.contains(&users.display().to_string()), "the example config names a users_file");
    let config_path = work.join("serve.toml");
    std::fs::write(&config_path, config).unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(INSTALLED_CLI);
    command
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", &listen, "--data-dir"])
        .arg(work.join("server"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut server = ChildGuard::spawn("installed opptak serve", &mut command).unwrap();
    let mut first = String::new();
    BufReader::new(server.take_stdout().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), format!("listening on http://{listen}"), "the installed server's first line");
    (server, format!("http://{listen}"))
}

/// The unit's `ExecStart`: the program must be the installed CLI and every
/// flag one `opptak serve` knows.
fn check_unit_exec_start(unit: &str) {
    let exec_start = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    let words: Vec<&str> = exec_start.split_whitespace().collect();
    assert_eq!(words.first().copied(), Some(INSTALLED_CLI), "{exec_start}");
    assert_eq!(words.get(1).copied(), Some("serve"), "{exec_start}");
    let help = stdout_of(INSTALLED_CLI, &["serve", "--help"]);
    for flag in words.iter().filter(|word| word.starts_with("--")) {
        assert!(help.contains(&format!("{flag} ")), "`opptak serve` has no {flag} (ExecStart: {exec_start})");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deb_installs_runs_and_removes_leaving_the_users_data() {
    let Some(deb) = package_file("OPPTAK_DEB", ".deb") else { return };
    if !is_root() {
        let message = "installing the .deb needs root (apt-get install); run the test as root";
        assert!(!in_ci(), "{message}");
        eprintln!("SKIPPED: {message}");
        return;
    }
    let _lock = machine_lock();
    let version = env!("CARGO_PKG_VERSION");

    assert_eq!(control_field(&deb, "Package"), PACKAGE, "the .deb's package name");
    assert_eq!(control_field(&deb, "Version"), version, "the .deb's version is the workspace's");
    let depends = control_field(&deb, "Depends");
    assert!(depends.contains("libwebkit2gtk-4.1-0"), "the .deb depends on WebKitGTK: {depends}");
    let files = deb_files(&deb);
    for wanted in [INSTALLED_CLI, INSTALLED_APP, UNIT, SERVE_EXAMPLE] {
        assert!(files.iter().any(|file| file == wanted), "the .deb lacks {wanted}: {files:?}");
    }

    // An earlier run that died before its guard ran may have left it installed.
    if installed(PACKAGE) {
        eprintln!("{PACKAGE} is installed from an earlier run: removing it first");
        remove_package(PACKAGE);
    }
    assert!(!Path::new(INSTALLED_CLI).exists(), "{INSTALLED_CLI} exists although {PACKAGE} is not installed");

    let started = Instant::now();
    let installing = apt_get(&["install", deb.to_str().unwrap()]);
    let install_time = started.elapsed();
    let installation = Installation { package: PACKAGE.to_owned() };
    assert!(
        installing.status.success(),
        "apt-get install {} failed: {}{}",
        deb.display(),
        String::from_utf8_lossy(&installing.stdout),
        String::from_utf8_lossy(&installing.stderr)
    );
    eprintln!("apt-get install ./{} took {install_time:?}", deb.file_name().unwrap().to_string_lossy());
    assert!(installed(PACKAGE), "dpkg does not count {PACKAGE} as installed after apt-get install");
    for file in &files {
        assert!(Path::new(file).exists(), "{file} is in the .deb but not on disk after installing");
    }

    assert_eq!(stdout_of(INSTALLED_CLI, &["--version"]).trim(), format!("opptak {version}"));

    // The user's data: the CLI's and the app's folders in a home of their own.
    let home = tempfile::tempdir().unwrap();
    let cli_data = home.path().join("cli-data");
    let app_data = home.path().join("app-data");
    std::fs::create_dir_all(&app_data).unwrap();

    // The installed server, from the installed example config, takes a
    // real upload from the installed CLI.
    let server_work = tempfile::tempdir().unwrap();
    let (server, url) = start_installed_server(server_work.path());
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success(), "/healthz answered {}", health.status());
    let lesson = home.path().join("lesson.wav");
    let wav = wav_of_len(300_044);
    std::fs::write(&lesson, &wav).unwrap();
    let upload = Command::new(INSTALLED_CLI)
        .arg("--data-dir")
        .arg(&cli_data)
        .arg("upload")
        .arg(&lesson)
        .args(["--server", &url, "--token", TOKEN, "--json"])
        .env_remove("OPPTAK_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&upload.stdout);
    assert!(
        upload.status.success(),
        "installed opptak upload: {stdout}{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let done: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("the upload's last line is not JSON: {stdout}"));
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["sha256"], sha256_hex(&wav), "{done}");
    drop(server);

    eprintln!("the installed server took the upload");

    // The service: valid for systemd, and installed disabled.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    check_unit_exec_start(&unit);
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let verify = run("systemd-analyze", &["verify", UNIT]);
        assert!(
            verify.status.success(),
            "systemd-analyze verify {UNIT}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    } else {
        eprintln!(
            "systemd-analyze is not installed: the unit's ExecStart was checked against `opptak serve --help` only"
        );
    }
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/opptak-serve.service").exists(),
        "installing enabled opptak-serve; it must stay disabled until IT writes /etc/opptak/serve.toml"
    );

    // The installed app opens its window on the Record screen.
    let mut app_pid = None;
    if let (Some(xvfb), Some(pulse)) = (Xvfb::start().unwrap(), PulseAudio::start().unwrap()) {
        let env = app_env(&xvfb, &pulse, &app_data);
        if let Some(driver) = TauriDriver::start(&env).unwrap() {
            eprintln!("opening the installed app's window");
            // A WebDriver session that never answers must fail the test, not hang it.
            let client =
                tokio::time::timeout(Duration::from_secs(120), connect_to(&driver, Path::new(INSTALLED_APP)))
                    .await
                    .expect("a WebDriver session with the installed app within 2 minutes");
            let result = tokio::time::timeout(Duration::from_secs(90), async {
                let record =
                    client.wait().at_most(WAIT).for_element(Locator::Css(&testid("screen-record"))).await?;
                assert!(record.is_displayed().await?, "the installed app opens on the Record screen");
                // The page's title names the screen, then the app ("Record · Opptak").
                eprintln!("window: title");
                let title = client.title().await?;
                assert!(title.ends_with("Opptak"), "the window's title: {title}");
                let app = driver.launched("opptak-desktop").expect("tauri-driver launched opptak-desktop");
                app_pid = Some(app);
                assert_eq!(std::fs::read_link(format!("/proc/{app}/exe"))?, Path::new(INSTALLED_APP));
                eprintln!("window: settings");
                client.find(Locator::Css(&testid("nav-settings"))).await?.click().await?;
                let shown = client
                    .wait()
                    .at_most(WAIT)
                    .for_element(Locator::Css(&testid("settings-version")))
                    .await?;
                assert_eq!(shown.text().await?.trim(), version, "the installed app's version");
                // From the X server: in the installed app under Xvfb neither a
                // WebDriver screenshot nor two animation frames came within 90 s.
                let window_manager = WindowManager::connect(xvfb.display())?;
                let path = screenshots_dir().join("installed-app.png");
                window_manager.capture(window_manager.window_of(app)?, &path)?;
                let (mean, spread) = brightness(&path)?;
                eprintln!("{}: mean brightness {mean:.3}, spread {spread:.3}", path.display());
                anyhow::ensure!(
                    spread > 0.02,
                    "the installed app's window shows one colour only: {}",
                    path.display()
                );
                anyhow::Ok(())
            })
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!("the installed app's window did not answer within 90 s"))
            });
            eprintln!("closing the installed app's window");
            let closed = tokio::time::timeout(Duration::from_secs(30), client.close()).await;
            result.unwrap();
            closed.expect("the WebDriver session closed within 30 s").expect("end the WebDriver session");
        }
    }

    // The app writes its data folder until it has exited.
    if let Some(pid) = app_pid {
        let deadline = Instant::now() + WAIT;
        // An orphaned app may stay a zombie until something reaps it: it has exited then too.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        };
        while running() {
            assert!(
                Instant::now() < deadline,
                "the installed app (pid {pid}) did not exit after its session closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    eprintln!("removing the package");
    // Removing leaves no file of the package, and every file of the user's.
    let user_files = snapshot(home.path());
    assert!(
        user_files.keys().any(|path| path.starts_with(&cli_data)),
        "the CLI kept its journal: {user_files:?}"
    );
    let remove_time = remove_package(PACKAGE);
    drop(installation);
    eprintln!("apt-get remove {PACKAGE} took {remove_time:?}");
    assert!(!installed(PACKAGE), "dpkg still counts {PACKAGE} as installed after apt-get remove");
    let left: Vec<&String> = files.iter().filter(|file| Path::new(file).exists()).collect();
    assert!(left.is_empty(), "apt-get remove left the package's files: {left:?}");
    assert_eq!(snapshot(home.path()), user_files, "apt-get remove changed the user's data");
}

#[test]
fn the_rpm_names_the_package_its_version_and_its_dependencies() {
    let Some(rpm) = package_file("OPPTAK_RPM", ".rpm") else { return };
    let rpm = rpm.to_str().unwrap();
    let info = stdout_of("rpm", &["-qip", rpm]);
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("rpm -qip has no {name}: {info}"))
    };
    assert_eq!(field("Name"), PACKAGE, "{info}");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(field("License"), "MIT", "{info}");

    let requires = stdout_of("rpm", &["-qp", "--requires", rpm]);
    let required: Vec<&str> =
        requires.lines().map(|line| line.split_whitespace().next().unwrap_or_default()).collect();
    // The bundler adds WebKitGTK by its library's soname.
    assert!(required.iter().any(|name| name.starts_with("libwebkit2gtk-4.1.so")), "{requires}");
    // Every dependency tauri.conf.json declares for Fedora reaches the .rpm.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tauri.conf.json")).unwrap()).unwrap();
    let declared =
        config["bundle"]["linux"]["rpm"]["depends"].as_array().expect("rpm depends in tauri.conf.json");
    for dependency in declared {
        let dependency = dependency.as_str().unwrap();
        assert!(required.contains(&dependency), "the .rpm does not require {dependency}: {requires}");
    }
}
