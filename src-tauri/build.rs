fn main() {
    // The window's files are embedded when the crate compiles
    // (`generate_context!`): a new UI build must recompile it, or the app
    // would keep the old UI.
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build();
}
