//! The smallest Tauri app: one window, one static paragraph, no commands.
//! `tests/benches/app.rs` measures Opptak's window against it (memory
//! after launch, launch to first paint).
//!
//! Build: `cargo build --release -p opptak-desktop --example minimal_window`.

fn main() {
    tauri::Builder::default()
        .run(tauri::generate_context!("examples/minimal_window/tauri.conf.json"))
        .expect("the minimal window runs");
}
