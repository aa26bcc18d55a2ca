use std::{env, path::Path};

/// Functions the app runs from launch until it sits idle, listed by
/// `.ci/startup-order` from a profiled launch of a release build.
const STARTUP_ORDER: &str = "startup-order.txt";

fn main() {
    // The window's files are embedded when the crate compiles
    // (`generate_context!`): a new UI build must recompile it, or the app
    // would keep the old UI.
    println!("cargo:rerun-if-changed=../ui/dist");
    link_startup_code_together();
    tauri_build::build();
}

/// Linux maps a program's code 64 kB around each page it first runs, and the
/// code a launch runs is scattered over the whole 20 MB `.text`: placing it
/// together at the front keeps most of the rest unmapped
/// (tests/BENCHMARKS.md, "Desktop app"). A name the file lists that the
/// build no longer has is skipped, so a stale list costs memory, never a
/// build. Only LLD reads the list, and only Rust's x86_64 Linux toolchain
/// links with LLD by default.
fn link_startup_code_together() {
    println!("cargo:rerun-if-changed={STARTUP_ORDER}");
    println!("cargo:rerun-if-env-changed=OPPTAK_LINK_MAP");
    let target = |key: &str| env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if (target("OS"), target("ARCH"), target("ENV")) != ("linux".into(), "x86_64".into(), "gnu".into()) {
        return;
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join(STARTUP_ORDER);
    if order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    // Where each function landed, so .ci/startup-order can name the
    // addresses a profiled launch ran.
    if let Ok(map) = env::var("OPPTAK_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
    }
}
