//! `opptak serve`: the upload API server for a school, from a TOML config
//! file and flags (flags win); `opptak serve migrate` brings the database up
//! to date and exits (the first step of a rolling upgrade).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use opptak_server::store::S3Config;
use opptak_server::{Limits, Server, StoreConfig, UserToken};
use serde::Deserialize;

/// Flags of `opptak serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Something other than serving.
    #[command(subcommand)]
    action: Option<ServeAction>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A user who may upload, as NAME:TOKEN (repeatable).
    #[arg(long = "user", value_name = "NAME:TOKEN")]
    users: Vec<UserToken>,
    /// Where media is kept [default: local].
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// S3 endpoint URL (for S3-compatible stores; AWS needs none).
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 bucket.
    #[arg(long, value_name = "NAME")]
    s3_bucket: Option<String>,
    /// S3 region [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Address buckets by path (`endpoint/bucket`), as most self-hosted stores need.
    #[arg(long)]
    s3_path_style: bool,
    /// The URL clients reach this server at, when it differs from --listen
    /// (e.g. behind a reverse proxy).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Size of every upload part but the last, in MiB (at least 5) [default: 8].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..=5120))]
    part_size_mib: Option<u64>,
    /// Keep metadata and the job queue in this PostgreSQL database
    /// (postgres://USER:PASSWORD@HOST/DB) instead of a SQLite file in the
    /// data folder, so several servers can share them (each with its own
    /// --data-dir; media in S3, as the local store allows only one server).
    #[arg(long, value_name = "URL", env = "OPPTAK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// This server's name among instances sharing a database (in /metrics
    /// and as the owner of the jobs it claims) [default: the host name].
    #[arg(long, value_name = "NAME", env = "OPPTAK_INSTANCE_ID")]
    instance_id: Option<String>,
    /// How long an upload session stays open, in seconds [default: 7 days].
    #[arg(long, value_name = "SECONDS", hide = true)]
    session_ttl_seconds: Option<u64>,
    /// How often expired sessions are swept, in seconds [default: 60].
    #[arg(long, value_name = "SECONDS", hide = true)]
    sweep_interval_seconds: Option<u64>,
    /// How long a verification job is leased before another instance may
    /// take it over, in seconds [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    job_lease_seconds: Option<u64>,
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

/// What `opptak serve` does instead of serving.
#[derive(Debug, Subcommand)]
enum ServeAction {
    /// Bring the database (--database-url, or the data folder's SQLite file)
    /// up to date and exit: run it once before starting upgraded servers.
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    Local,
    S3,
}

/// The config file. Every field is optional; see README for an example.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    store: Option<StoreKind>,
    s3: Option<S3Section>,
    #[serde(default)]
    users: Vec<UserToken>,
    /// A file of `NAME:TOKEN` lines (blank lines and `#` comments ignored).
    users_file: Option<PathBuf>,
    part_size_mib: Option<u64>,
    /// `postgres://…`; `--database-url` and `OPPTAK_DATABASE_URL` win.
    database_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    #[serde(default)]
    path_style: bool,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the config file {} is not valid", path.display()))
}

fn read_users_file(path: &Path) -> anyhow::Result<Vec<UserToken>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the users file {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| (number, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| {
            line.parse::<UserToken>()
                .map_err(|err| anyhow::anyhow!("{}, line {}: {err}", path.display(), number + 1))
        })
        .collect()
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(
    args: ServeArgs,
    flag_data_dir: Option<PathBuf>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let mut users = file.users;
    if let Some(path) = &file.users_file {
        users.extend(read_users_file(path)?);
    }
    users.extend(args.users);
    let data_dir = flag_data_dir.or(file.data_dir).unwrap_or_else(|| default_data_dir.to_path_buf());
    let database_url = args.database_url.or(file.database_url);
    if let Some(url) = &database_url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        bail!(
            "the database URL must start with postgres:// (PostgreSQL is the only shared database Opptak supports)"
        );
    }
    if let Some(ServeAction::Migrate) = args.action {
        return migrate(database_url.as_deref(), &data_dir).await;
    }
    if users.is_empty() {
        tracing::warn!("no users configured: every API call will answer 401; add --user NAME:TOKEN");
    }
    let listen =
        args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let s3_file = file.s3.unwrap_or_default();
    let store = match args.store.or(file.store).unwrap_or(StoreKind::Local) {
        StoreKind::Local => StoreConfig::Local,
        StoreKind::S3 => {
            let Some(bucket) = args.s3_bucket.or(s3_file.bucket) else {
                bail!(
                    "--store s3 needs a bucket: pass --s3-bucket NAME or set [s3] bucket in the config file"
                );
            };
            StoreConfig::S3(S3Config {
                endpoint: args.s3_endpoint.or(s3_file.endpoint),
                bucket,
                region: args.s3_region.or(s3_file.region).unwrap_or_else(|| "us-east-1".into()),
                path_style: args.s3_path_style || s3_file.path_style,
            })
        }
    };
    let mut limits = Limits::default();
    if let Some(mib) = args.part_size_mib.or(file.part_size_mib) {
        if !(5..=5120).contains(&mib) {
            bail!("part_size_mib must be between 5 and 5120; it is {mib}");
        }
        limits.part_size = mib * 1024 * 1024;
    }
    if let Some(seconds) = args.session_ttl_seconds {
        limits.session_ttl = Duration::from_secs(seconds);
    }
    if let Some(seconds) = args.sweep_interval_seconds {
        limits.sweep_interval = Duration::from_secs(seconds.max(1));
    }
    if let Some(seconds) = args.job_lease_seconds {
        limits.verification.lease = Duration::from_secs(seconds);
        // Renewed three times per lease, so one late beat never loses it.
        limits.verification.heartbeat = limits.verification.lease / 3;
    }
    let mut builder = Server::builder().listen(listen).data_dir(&data_dir).store(store).limits(limits);
    for user in users {
        builder = builder.user(user);
    }
    if let Some(url) = args.public_url.or(file.public_url) {
        builder = builder.public_url(url);
    }
    if let Some(url) = database_url {
        builder = builder.database_url(url);
    }
    if let Some(id) = args.instance_id {
        builder = builder.instance_id(id);
    }
    let server = builder.start().await?;
    // The first line on stdout, for scripts and tests that wait for it.
    println!("listening on http://{}", server.local_addr());
    wait_for_stop_signal().await;
    tracing::info!("stopping: finishing requests in flight");
    server.shutdown().await;
    Ok(())
}

/// `opptak serve migrate`: opens the database, which applies every
/// migration this version has (PostgreSQL: under sqlx's advisory lock, so
/// it is safe while older servers run), and exits.
async fn migrate(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<()> {
    match database_url {
        Some(url) => {
            let meta = opptak_server::meta::PostgresMeta::connect(url).await?;
            meta.pool().close().await;
            println!("the PostgreSQL database is up to date");
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
            let path = data_dir.join("server.sqlite3");
            drop(opptak_server::SqliteMeta::open(&path)?);
            println!("the database {} is up to date", path.display());
        }
    }
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_reads_users_store_and_s3() {
        let config: ConfigFile = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            store = "s3"
            users = [{ name = "ada", token = "a-long-token" }]
            [s3]
            endpoint = "http://127.0.0.1:8333"
            bucket = "lessons"
            path_style = true
            "#,
        )
        .unwrap();
        assert_eq!(config.store, Some(StoreKind::S3));
        assert_eq!(config.users[0].name, "ada");
        assert_eq!(config.s3.unwrap().bucket.as_deref(), Some("lessons"));
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        assert!(toml::from_str::<ConfigFile>("lisen = \"x\"").is_err());
    }

    #[test]
    fn users_file_skips_comments_and_names_bad_lines() {
        let temp = std::env::temp_dir().join(format!("opptak-users-{}", std::process::id()));
        std::fs::write(&temp, "# teachers\nada:a-long-token\n\nbad-line\n").unwrap();
        let err = read_users_file(&temp).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        std::fs::write(&temp, "ada:a-long-token\n").unwrap();
        assert_eq!(read_users_file(&temp).unwrap().len(), 1);
        std::fs::remove_file(temp).unwrap();
    }
}
