//! PostgreSQL (Debian's `postgresql` package) as a test's private database
//! server: `initdb` into a temp folder, `postgres` listening on 127.0.0.1 at
//! a free port (its Unix socket in the same folder), stopped by PID with
//! SIGINT (PostgreSQL's "fast" shutdown) when the guard drops.
//!
//! PostgreSQL refuses to run as root, and CI runs as root. Then both
//! programs run as the `postgres` user the package creates: the folder is
//! given to that user and the child processes drop to its uid and gid
//! (`std::os::unix::process::CommandExt::{uid, gid}`, which also clears the
//! supplementary groups) before `exec`, so the PID the guard holds is
//! PostgreSQL's own. Authentication is `trust`, on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::process::{ChildGuard, wait_until};
use crate::{free_port, in_ci};

/// The superuser `initdb` creates; tests connect as it.
const SUPERUSER: &str = "opptak";
/// From start until `pg_isready` says yes (measured: under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the guard kills it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running private PostgreSQL.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    databases: std::sync::atomic::AtomicUsize,
    // Fields drop in order: the server stops before its folder is removed.
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

/// The folder holding `initdb`, `postgres`, `pg_isready`, `createdb` and
/// `psql`: the newest version under Debian's
/// `/usr/lib/postgresql/<version>/bin` (the package puts none of them on
/// PATH), else a PATH folder that has them all.
fn bin_dir() -> Option<PathBuf> {
    const PROGRAMS: [&str; 5] = ["initdb", "postgres", "pg_isready", "createdb", "psql"];
    let complete = |dir: &Path| PROGRAMS.iter().all(|program| dir.join(program).is_file());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).find(|dir| complete(dir)))
    })
}

/// The uid and gid to run PostgreSQL as: ours, or the `postgres` user's
/// when we are root.
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    // /proc/self belongs to this process's effective uid.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?);
    if euid != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output()?;
        anyhow::ensure!(
            output.status.success(),
            "running as root, and there is no `postgres` user to run PostgreSQL as (the postgresql package creates it)"
        );
        Ok(String::from_utf8(output.stdout)?.trim().parse()?)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Postgres {
    /// Starts a fresh server and waits until it accepts connections, or
    /// returns `None` (skip) when PostgreSQL is not installed outside CI.
    pub fn start() -> anyhow::Result<Option<Self>> {
        let Some(bin) = bin_dir() else {
            let message = "PostgreSQL (`initdb`, `postgres`) is not installed; it is needed for the PostgreSQL metadata store. `bash .ci/run` installs it.";
            assert!(!in_ci(), "{message}");
            eprintln!("SKIPPED: {message}");
            return Ok(None);
        };
        let started = Instant::now();
        let user = run_as()?;
        let dir = tempfile::Builder::new().prefix("opptak-postgres-").tempdir()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let initdb = as_user(&mut Command::new(bin.join("initdb")), user)
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            initdb.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let mut command = Command::new(bin.join("postgres"));
        as_user(&mut command, user)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(dir.path())
            // A test database: durability across power loss is not tested here.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("postgres.err"))?));
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))?;
        }
        let mut process = ChildGuard::spawn("postgres", &mut command)?;
        let ready = wait_until("PostgreSQL", READY_TIMEOUT, || {
            let accepting = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER])
                .status()
                .is_ok_and(|status| status.success());
            accepting || process.ensure_running().is_err()
        });
        let logs = || format!("{}\n{}", tail(&dir.path().join("postgres.err")), tail(&log));
        process.ensure_running().map_err(|err| err.context(logs()))?;
        ready.map_err(|err| err.context(logs()))?;
        eprintln!("PostgreSQL ready on 127.0.0.1:{port} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(Some(Self { port, bin, databases: 0.into(), process, _dir: dir }))
    }

    /// The server's PID (for a test that kills it).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> anyhow::Result<String> {
        let index = self.databases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("test_{index}");
        let output = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER, &name])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(self.url(&name))
    }

    /// Runs `sql` in database `name` with `psql` and returns what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8(output.stdout)?)
    }
}

impl Drop for Postgres {
    /// SIGINT is PostgreSQL's fast shutdown: clients are disconnected
    /// rather than waited for (SIGTERM would wait for every pool to close).
    fn drop(&mut self) {
        if self.process.signal(Signal::SIGINT).is_ok() && self.process.wait_timeout(STOP_GRACE).is_err() {
            eprintln!("PostgreSQL did not stop within {STOP_GRACE:?}; killing it");
        }
        // ChildGuard's own drop kills what is left.
    }
}
