//! `opptak doctor` and the CLI's basics, run as a real process.

use std::process::{Command, Output};

use opptak_tests::{PulseAudio, Xvfb, workspace_bin};
use serde_json::Value;

fn opptak(data_dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(workspace_bin("opptak"));
    command.args(args).env("OPPTAK_DATA_DIR", data_dir).env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run opptak")
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == id)
        .unwrap_or_else(|| panic!("no {id} check in {report}"))
}

/// Environment in which no sound server answers: PulseAudio's ALSA plugin
/// points at a socket that does not exist.
fn without_sound_server(temp: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("PULSE_SERVER", format!("unix:{}", temp.join("no-such-pulse-socket").display()))]
}

#[test]
fn version_flag_prints_the_package_version() {
    let temp = tempfile::tempdir().unwrap();
    let output = opptak(temp.path(), &["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("opptak {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_flag_gets_clap_message_and_exit_code_2() {
    let temp = tempfile::tempdir().unwrap();
    let output = opptak(temp.path(), &["doctor", "--no-such-flag"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unexpected argument '--no-such-flag'"), "{stderr}");
}

#[test]
fn without_a_microphone_the_doctor_says_so_with_advice_and_exits_1() {
    let temp = tempfile::tempdir().unwrap();
    let env = without_sound_server(temp.path());

    let output = opptak(&temp.path().join("data"), &["doctor", "--json"], &env);
    assert_eq!(output.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("doctor --json prints JSON");
    assert_eq!(report["ok"], false);
    let mic = check(&report, "microphone");
    assert_eq!(mic["status"], "warning");
    assert!(mic["detail"].as_str().unwrap().starts_with("No microphone found"), "{mic}");
    assert!(mic["advice"].as_str().unwrap().contains("Plug in a microphone"), "{mic}");
    assert_eq!(check(&report, "data-dir")["status"], "ok");
    let log_file = report["logFile"].as_str().expect("doctor names its log file");
    assert!(std::path::Path::new(log_file).starts_with(temp.path().join("data/logs")), "{log_file}");

    let text = opptak(&temp.path().join("data"), &["doctor"], &env);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("[WARNING] Microphone: No microphone found"), "{stdout}");
    assert!(stdout.contains("What to do: Plug in a microphone"), "{stdout}");
    assert!(stdout.contains("Log file:"), "{stdout}");
}

#[test]
fn an_unusable_data_dir_is_an_error_finding() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(temp.path().join("a-file"), b"x").unwrap();
    let output =
        opptak(&temp.path().join("a-file/data"), &["doctor", "--json"], &without_sound_server(temp.path()));
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let data_dir = check(&report, "data-dir");
    assert_eq!(data_dir["status"], "error");
    assert!(data_dir["advice"].as_str().unwrap().contains("--data-dir"));
    assert_eq!(report["logFile"], Value::Null);
}

#[test]
fn with_a_virtual_microphone_and_a_display_all_is_well() {
    let Some(pulse) = PulseAudio::start().unwrap() else { return };
    let Some(xvfb) = Xvfb::start().unwrap() else { return };
    let temp = tempfile::tempdir().unwrap();
    let mut env = pulse.env();
    env.push(("DISPLAY", xvfb.display().to_owned()));

    let output = opptak(temp.path(), &["doctor", "--json"], &env);
    let report: Value = serde_json::from_slice(&output.stdout).expect("doctor --json prints JSON");
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    let mic = check(&report, "microphone");
    assert_eq!(mic["status"], "ok");
    assert!(mic["detail"].as_str().unwrap().contains("48000 Hz"), "{mic}");
    assert_eq!(check(&report, "display")["status"], "ok");
    assert_eq!(check(&report, "webview")["status"], "ok");
}

#[test]
fn the_bundle_for_it_holds_the_findings_and_this_runs_log_lines() {
    let temp = tempfile::tempdir().unwrap();
    let bundle = temp.path().join("for-it.zip");
    let bundle_arg = bundle.display().to_string();
    let output = opptak(
        &temp.path().join("data"),
        &["doctor", "--bundle", &bundle_arg],
        &without_sound_server(temp.path()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "no microphone is a finding: {stderr}");
    assert!(
        stderr.contains(&format!("Diagnostics saved to {bundle_arg}"))
            && stderr.contains("Send this file to IT")
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&bundle).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let summary = read("summary.txt");
    assert!(
        summary.contains(env!("CARGO_PKG_VERSION")) && summary.contains("No microphone found"),
        "{summary}"
    );
    let doctor: Value = serde_json::from_str(&read("doctor.json")).unwrap();
    assert_eq!(check(&doctor, "microphone")["status"], "warning");
    assert!(read("log.txt").contains("doctor finished"));
}
