//! The `opptak` program: the command line of `opptak_cli`.

fn main() -> std::process::ExitCode {
    opptak_cli::run_from(std::env::args_os())
}
