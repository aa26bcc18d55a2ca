//! What a school downloads: builds the release programs and packs the
//! `.deb` and `.rpm` with `bash .ci/package --release`, timing each, and sets
//! the packages' sizes against baselines compressed the same way in the
//! same run: the smallest Tauri app's program (what any
//! Tauri app costs) and the `opptak` command's own program, which the
//! packages no longer carry beside the app (the app's program runs the
//! command too). The table goes to `tests/BENCHMARKS.md`.
//!
//! `cargo build --release --workspace --bins && cargo build --release -p opptak-desktop --example minimal_window && cargo bench -p opptak-tests --bench packages`.
//! Needs `bash .ci/setup` (the Tauri CLI, dpkg-deb, rpm).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use opptak_tests::bench::{measured_line, write_section};
use opptak_tests::{repo_root, workspace_bin, workspace_bin_dir};

/// The goal for the `.deb`, in MB.
const DEB_GOAL_MB: f64 = 15.0;

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).len()
}

/// The size of `path` compressed with gzip at its best, as Tauri's bundler
/// compresses the `.deb`'s files.
fn gzipped_size(path: &Path) -> u64 {
    let output = Command::new("gzip").args(["-9", "-c"]).arg(path).output().expect("run gzip");
    assert!(output.status.success(), "gzip {}", path.display());
    output.stdout.len() as u64
}

/// The one file with extension `ext` in `dir`.
fn the_package(dir: &Path, ext: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|found| found == ext))
        .collect();
    assert_eq!(found.len(), 1, "one .{ext} in {}: {found:?}", dir.display());
    found.remove(0)
}

/// A field of the `.deb`'s control file.
fn control_field(deb: &Path, field: &str) -> String {
    let output =
        Command::new("dpkg-deb").args(["--field"]).arg(deb).arg(field).output().expect("run dpkg-deb");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The size of each file in the `.deb`, by path.
fn deb_file_sizes(deb: &Path) -> Vec<(String, u64)> {
    let listing = Command::new("dpkg-deb").arg("--contents").arg(deb).output().expect("run dpkg-deb");
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // dpkg-deb writes `./usr/…` or `usr/…`, by version.
            let path = format!("/{}", fields.get(5)?.trim_start_matches("./"));
            Some((path, fields.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Whether `name` was in the environment `cargo bench` was started from:
/// what Cargo adds for the benchmark (its package's `CARGO_*`, the build
/// scripts' `LD_LIBRARY_PATH`) would make the packages' `cargo build`
/// compile the release programs again instead of finding them built.
fn from_the_shell(name: &str) -> bool {
    let added_by_cargo = (name.starts_with("CARGO") && !matches!(name, "CARGO_HOME" | "CARGO_TARGET_DIR"))
        || name.starts_with("RUSTUP_TOOLCHAIN")
        || matches!(name, "LD_LIBRARY_PATH" | "RUST_RECURSION_COUNT");
    !added_by_cargo
}

/// Runs `program` in the repository with the shell's environment; the seconds it took.
fn seconds_to_run(program: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .env_clear()
        .envs(std::env::vars().filter(|(name, _)| from_the_shell(name)))
        .status()
        .unwrap_or_else(|err| panic!("run {program}: {err}"));
    assert!(status.success(), "{program} {args:?} failed");
    started.elapsed().as_secs_f64()
}

fn main() {
    let bin_dir = workspace_bin_dir();
    let app = bin_dir.join("opptak-desktop");
    let command_line = workspace_bin("opptak");
    let minimal = bin_dir.join("examples/minimal_window");
    assert!(
        minimal.exists(),
        "{} is missing: cargo build --release -p opptak-desktop --example minimal_window",
        minimal.display()
    );

    // `.ci/package` builds the release programs, then packs them: timed
    // apart, the build first (nothing to do when they are built already).
    let build_seconds = seconds_to_run("cargo", &["build", "--quiet", "--release", "--workspace", "--bins"]);
    let package_seconds = seconds_to_run("bash", &[".ci/package", "--release"]);

    let bundle = bin_dir.join("bundle");
    let deb = the_package(&bundle.join("deb"), "deb");
    let rpm = the_package(&bundle.join("rpm"), "rpm");
    let (deb_size, rpm_size) = (size_of(&deb), size_of(&rpm));
    let installed_kib: f64 =
        control_field(&deb, "Installed-Size").parse().expect("the .deb's Installed-Size");
    let files = deb_file_sizes(&deb);
    let packaged_app = files
        .iter()
        .find(|(path, _)| path == "/usr/bin/opptak-desktop")
        .map(|(_, size)| *size)
        .expect("the .deb holds /usr/bin/opptak-desktop");
    let row = |what: &str, program: &Path| {
        format!("| {what} | {:.1} | {:.1} |\n", megabytes(size_of(program)), megabytes(gzipped_size(program)))
    };
    let verdict = if megabytes(deb_size) <= DEB_GOAL_MB { "met" } else { "**not met**" };
    let section = format!(
        "## Packages (`cargo bench -p opptak-tests --bench packages`)\n\n\
         {measured}\n\n\
         `cargo build --release --workspace --bins` took {build_seconds:.0} s in this run (little or \
         nothing to do when the programs were built before it; from scratch the release profile's \
         whole-program LTO makes it the longest build here); then `bash .ci/package --release` packed them in {package_seconds:.0} s.\n\n\
         | Package | size MB | installed MB |\n\
         |---|---:|---:|\n\
         | `{deb_name}` | {deb_mb:.1} | {installed_mb:.1} |\n\
         | `{rpm_name}` | {rpm_mb:.1} | |\n\n\
         Of the installed {installed_mb:.1} MB, `/usr/bin/opptak-desktop` is {app_mb:.1} MB; it also runs \
         the `opptak` command (`/usr/bin/opptak` is a script that starts it).\n\n\
         | Program (release build, stripped) | size MB | gzip -9 MB |\n\
         |---|---:|---:|\n\
         {app_row}\
         {minimal_row}\
         {command_row}\n\
         Goal: `.deb` ≤ {DEB_GOAL_MB:.0} MB: {verdict}.\n\n",
        measured = measured_line(),
        deb_name = deb.file_name().unwrap().to_string_lossy(),
        rpm_name = rpm.file_name().unwrap().to_string_lossy(),
        deb_mb = megabytes(deb_size),
        installed_mb = installed_kib * 1024.0 / 1e6,
        rpm_mb = megabytes(rpm_size),
        app_mb = megabytes(packaged_app),
        app_row = row("Opptak: the app and the `opptak` command (`opptak-desktop`)", &app),
        minimal_row =
            row("baseline: the smallest Tauri app (`src-tauri/examples/minimal_window.rs`)", &minimal),
        command_row = row(
            "baseline: the `opptak` command alone (`opptak-cli`), which the packages do not carry",
            &command_line
        ),
    );
    print!("{section}");
    write_section("packages", &section);
}
