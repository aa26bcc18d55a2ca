//! The `opptak` command line. The `opptak` program runs it, and so does the
//! desktop app's program on Linux when `/usr/bin/opptak` starts it as a
//! command (the packages ship one program for both).

mod hints;
mod record;
mod serve;
mod toggle;
mod upload;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use opptak_core::DataDir;
use opptak_core::doctor::{CheckStatus, DoctorReport};
use opptak_core::logging::{self, LogFormat};

/// Opptak records lessons and keeps them safe until the school's server has them.
#[derive(Debug, Parser)]
#[command(name = "opptak", version, about, propagate_version = true)]
struct Cli {
    /// Where recordings, the upload journal and logs live [env: OPPTAK_DATA_DIR]
    /// [default: the folder chosen in the app's Settings, else per OS].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// How log lines on stderr and in the log file are written.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check what Opptak needs on this computer and say what to do about each problem.
    ///
    /// Exits 0 when all is well and 1 when something needs attention.
    Doctor {
        /// Print the findings as one JSON object.
        #[arg(long)]
        json: bool,
        /// Also write a zip for IT: the findings and the last log lines,
        /// with tokens and signatures taken out.
        #[arg(long, value_name = "FILE.zip")]
        bundle: Option<PathBuf>,
    },
    /// Run the upload API server (the embedded destination) for a school.
    ///
    /// Prints `listening on http://HOST:PORT` once it accepts connections and
    /// stops cleanly on SIGTERM or Ctrl-C.
    Serve(serve::ServeArgs),
    /// Upload a recording file; exits 0 only when the server holds it with
    /// the same SHA-256.
    Upload(upload::UploadArgs),
    /// Continue every unfinished upload in the data directory, and retry
    /// failed ones that retrying can fix.
    ///
    /// A failed upload is retried at the next resume, then after pauses that
    /// grow from 1 minute to 1 hour, at most --max-retries times. One that
    /// only you can fix (the file changed or is gone, the server refused the
    /// token, the server says it is not a valid recording) waits for
    /// --failed.
    Resume {
        /// Print one JSON event per line.
        #[arg(long)]
        json: bool,
        /// Also retry every failed upload now, including those that wait
        /// for you and those whose automatic retries are used up.
        #[arg(long)]
        failed: bool,
        /// Automatic retries of one failed upload before it waits for --failed.
        #[arg(long, value_name = "N", default_value_t = opptak_core::RetryPolicy::DEFAULT_MAX_ATTEMPTS)]
        max_retries: u32,
    },
    /// List the screens, cameras and microphones this computer has.
    Devices {
        /// Print JSON (the microphones; with --video, the screens and cameras).
        #[arg(long)]
        json: bool,
        /// With --json: the screens and cameras instead of the microphones.
        #[arg(long, requires = "json")]
        video: bool,
    },
    /// Record a lesson from the microphone, or the screen or a camera with
    /// the microphone, uploading it while it records.
    ///
    /// Stops after --seconds, or on Ctrl-C or SIGTERM, and ends with the
    /// recording's id and state.
    Record(record::RecordArgs),
    /// List the recordings on this computer and where each one is.
    Recordings {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the Opptak app to start recording, or to stop the recording it
    /// makes (opens the app when it is not running). Bind it to a key where
    /// the app's own shortcut cannot work.
    Toggle,
}

/// Runs the command `args` names (the first is the program's name), prints
/// what failed and what to do about it, and returns the exit code.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("opptak: {err:#}");
            if let Some(hint) = hints::command_line_hint(&err) {
                eprintln!("opptak: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(cli.data_dir.clone())?;
    let log_format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    match cli.command {
        Command::Doctor { json, bundle } => {
            // An unusable data directory is one of the doctor's findings, so
            // logging to it is best effort here.
            let log = logging::init(&data_dir, log_format).ok();
            let mut report = opptak_core::doctor::run(&data_dir);
            tracing::info!(ok = report.ok, "doctor finished");
            // The engine's advice names no flag (the app shows it too).
            if let Some(advice) = report
                .checks
                .iter_mut()
                .find(|check| check.id == "data-dir")
                .and_then(|check| check.advice.as_mut())
            {
                advice.push(' ');
                advice.push_str(&hints::data_dir_hint());
            }
            let log_file = log.as_ref().map(|guard| guard.file().to_path_buf());
            if json {
                let value = serde_json::json!({
                    "ok": report.ok,
                    "checks": report.checks,
                    "dataDir": data_dir.path(),
                    "logFile": log_file,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_report(&report, &data_dir, log_file.as_deref());
            }
            if let Some(path) = bundle {
                // The log writer runs behind: flush this run's lines into the file first.
                drop(log);
                let written = opptak_core::Opptak::open(&data_dir)?.write_diagnostics(&path)?;
                eprintln!(
                    "Diagnostics saved to {} ({} log lines, {} secrets taken out). Send this file to IT.",
                    written.path, written.log_lines, written.removed_secrets
                );
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Upload(args) => {
            let _log = logging::init(&data_dir, log_format).ok();
            tokio::runtime::Runtime::new()?.block_on(upload::upload(args, &data_dir))
        }
        Command::Resume { json, failed, max_retries } => {
            let _log = logging::init(&data_dir, log_format).ok();
            let policy = opptak_core::RetryPolicy { max_attempts: max_retries, ..Default::default() };
            tokio::runtime::Runtime::new()?.block_on(upload::resume(json, failed, policy, &data_dir))
        }
        Command::Recordings { json } => upload::recordings(json, &data_dir),
        Command::Toggle => toggle::toggle(cli.data_dir.as_deref()),
        Command::Devices { json, video } => record::devices(json, video),
        Command::Record(args) => {
            let _log = logging::init(&data_dir, log_format).ok();
            tokio::runtime::Runtime::new()?.block_on(record::record(args, &data_dir))
        }
        Command::Serve(args) => {
            data_dir.ensure_writable()?;
            let _log = logging::init(&data_dir, log_format)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve::run(args, cli.data_dir, data_dir.path()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(report: &DoctorReport, data_dir: &DataDir, log_file: Option<&std::path::Path>) {
    println!("Opptak {} on this computer", env!("CARGO_PKG_VERSION"));
    println!("Data directory: {}", data_dir.path().display());
    match log_file {
        Some(path) => println!("Log file:       {}", path.display()),
        None => println!("Log file:       none (the data directory cannot be written)"),
    }
    println!();
    for check in &report.checks {
        let mark = match check.status {
            CheckStatus::Ok => "ok     ",
            CheckStatus::Warning => "WARNING",
            CheckStatus::Error => "ERROR  ",
        };
        println!("[{mark}] {}: {}", check.title, check.detail);
        if let Some(advice) = &check.advice {
            println!("          What to do: {advice}");
        }
    }
    println!();
    let problems = report.checks.iter().filter(|check| check.status != CheckStatus::Ok).count();
    match problems {
        0 => println!("All is well."),
        1 => println!("1 thing needs attention."),
        n => println!("{n} things need attention."),
    }
}
