//! Starting and stopping the server: [`Server::builder`] → [`ServerHandle`].
//!
//! One server owns a data folder: it holds an exclusive OS file lock on
//! `server.lock` there from before it opens the database until it stops, so
//! the desktop app and an `opptak` command can never both run the job queue
//! and the expiry sweep on one folder (each would re-queue the other's
//! running jobs at start). The operating system drops the lock when the
//! process dies, however it dies. While it serves, the server names its URL
//! and process id in `server.json` (written atomically, removed when it
//! stops), so a second process can use the running server
//! ([`running_server`]) instead of failing with [`Error::FolderInUse`].
//! The lock file is never deleted: a process about to lock it would
//! otherwise lock a file nobody else sees.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::{AppState, app};
use crate::auth::UserToken;
use crate::jobs::{JobPolicy, Jobs};
use crate::store::S3Config;
use crate::{Error, Result};

/// Where media is kept.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// A folder (`media/`) in the data directory.
    #[default]
    Local,
    /// An S3-compatible service.
    S3(S3Config),
}

/// The protocol's tunable numbers, with the defaults a school needs.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The size of every part but the last (≥ 5 MiB). Default 8 MiB.
    pub part_size: u64,
    /// How long an upload session stays open. Default 7 days, so a
    /// recording made offline on Friday can still finish on Monday.
    pub session_ttl: Duration,
    /// How long a presigned part URL works. Default 1 hour.
    pub presign_ttl: Duration,
    /// How long a recording's `mediaUrl` works. Default 1 hour.
    pub media_url_ttl: Duration,
    /// Verification jobs run at once. Default 2.
    pub job_workers: usize,
    /// Leases, heartbeats and retries of verification jobs.
    pub verification: JobPolicy,
    /// How often expired upload sessions are looked for. Default 60 s.
    pub sweep_interval: Duration,
    /// On [`ServerHandle::shutdown`], how long the server keeps serving
    /// (with `/readyz` saying 503 `draining`) for requests in flight to
    /// finish before it stops. Default 30 s.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            presign_ttl: Duration::from_secs(3600),
            media_url_ttl: Duration::from_secs(3600),
            job_workers: 2,
            verification: JobPolicy::default(),
            sweep_interval: crate::sweeper::SWEEP_INTERVAL,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Entry point: `Server::builder()…start().await`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with defaults: `127.0.0.1:0`, local store, no users.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from("opptak-server-data"),
            users: Vec::new(),
            store: StoreConfig::Local,
            limits: Limits::default(),
            public_url: None,
            instance_id: None,
            #[cfg(feature = "postgres")]
            database_url: None,
        }
    }
}

/// Configures and starts a server.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerBuilder {
    listen: SocketAddr,
    data_dir: PathBuf,
    users: Vec<UserToken>,
    store: StoreConfig,
    limits: Limits,
    public_url: Option<String>,
    instance_id: Option<String>,
    #[cfg(feature = "postgres")]
    database_url: Option<String>,
}

/// This machine's host name: the default instance id.
pub fn host_name() -> String {
    // Linux's own answer; elsewhere the shells' variables.
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "opptak".into())
}

/// A server's membership of a shared database (nothing with SQLite).
#[cfg(feature = "postgres")]
type InstanceLock = Option<crate::meta::postgres::InstanceLock>;
#[cfg(not(feature = "postgres"))]
type InstanceLock = ();

impl ServerBuilder {
    /// Address to listen on; port 0 picks a free port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Folder for the database and (with the local store) the media.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Adds a user who may sign in with their token.
    pub fn user(mut self, user: UserToken) -> Self {
        self.users.push(user);
        self
    }

    /// Where media is kept.
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// Protocol numbers (part size, expiries, workers).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The base URL clients reach this server at, when it differs from the
    /// listen address (e.g. behind a reverse proxy). Local-store part URLs use it.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Names this server among the instances sharing a database: in
    /// `/metrics` (`opptak_instance_info`) and as the owner of the jobs it
    /// claims. Default: the host name ([`host_name`]).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// Keeps metadata and the job queue in the PostgreSQL database at `url`
    /// (`postgres://…`) instead of the data folder's SQLite file, so that
    /// several servers can share them. Each server still needs a data
    /// folder of its own (scratch space). With the local store only one
    /// server may use the database: a second one fails to start with
    /// [`Error::DatabaseShared`] (every server holds a PostgreSQL advisory
    /// lock, exclusive with the local store and shared with S3).
    #[cfg(feature = "postgres")]
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Opens the metadata store this builder names, and joins the
    /// database's instances when it is shared.
    async fn open_state(&self, url: &str) -> Result<(AppState, InstanceLock)> {
        #[cfg(feature = "postgres")]
        if let Some(database_url) = &self.database_url {
            let meta = crate::meta::PostgresMeta::connect(database_url).await?;
            let instance = meta.join_instances(matches!(self.store, StoreConfig::Local)).await?;
            let state = AppState::with_meta(
                &self.data_dir,
                std::sync::Arc::new(meta),
                &self.store,
                self.users.clone(),
                self.limits.clone(),
                url,
            )
            .await?;
            return Ok((state, Some(instance)));
        }
        let state =
            AppState::open(&self.data_dir, &self.store, self.users.clone(), self.limits.clone(), url).await?;
        #[cfg(feature = "postgres")]
        return Ok((state, None));
        #[cfg(not(feature = "postgres"))]
        Ok((state, ()))
    }

    /// Binds the address, opens the database and the store, and starts
    /// serving, verifying and sweeping in the background.
    ///
    /// Fails with [`Error::FolderInUse`] while another server (in this or
    /// another process) runs on the same data folder.
    pub async fn start(self) -> Result<ServerHandle> {
        let mut folder = FolderLock::take(&self.data_dir).await?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| Error::Bind { addr: self.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: self.listen, source })?;
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let (state, instance) = self.open_state(&url).await?;
        let instance_id = self.instance_id.clone().unwrap_or_else(host_name);
        state.metrics.set_instance_id(&instance_id);
        let (meta, store, wake) = (state.meta.clone(), state.store.clone(), state.wake_jobs.clone());
        meta.requeue_interrupted().await?;
        let scratch = self.data_dir.join("scratch");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let jobs = Jobs {
            meta,
            store,
            wake,
            scratch,
            policy: self.limits.verification.clone(),
            owner: instance_id.clone(),
            metrics: state.metrics.clone(),
        };
        for _ in 0..self.limits.job_workers.max(1) {
            tasks.spawn(jobs.clone().run_worker(stopped.clone()));
        }
        tasks.spawn(crate::sweeper::run(state.clone(), stopped.clone()));
        folder.announce(&url).map_err(|source| Error::DataDir { path: self.data_dir.clone(), source })?;
        let mut serve_stop = stopped;
        let traffic = state.traffic.clone();
        let drain_timeout = self.limits.drain_timeout;
        let router = app(state);
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = serve_stop.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %err, "server stopped with an error");
            }
        });
        tracing::info!(%url, instance_id, "server listening");
        Ok(ServerHandle {
            url,
            addr,
            stop,
            tasks,
            traffic,
            drain_timeout,
            _instance: instance,
            _folder: folder,
        })
    }
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown)
/// aborts its tasks at once (in-flight requests are cut); either way the
/// data folder is released (`server.json` removed, then the lock).
#[derive(Debug)]
pub struct ServerHandle {
    url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    traffic: std::sync::Arc<crate::app::Traffic>,
    drain_timeout: Duration,
    // Released after the tasks above are gone.
    _instance: InstanceLock,
    // Last: released only after the tasks above are gone.
    _folder: FolderLock,
}

impl ServerHandle {
    /// The base URL clients use, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drains, then stops: `/readyz` answers 503 `draining` at once while
    /// the server keeps serving, until no request is in flight (at most
    /// [`Limits::drain_timeout`]); then it stops accepting connections, lets
    /// the requests still running and the current verification job
    /// finish, and returns.
    pub async fn shutdown(mut self) {
        self.traffic.start_draining();
        if !self.traffic.wait_idle(self.drain_timeout).await {
            tracing::warn!(
                in_flight = self.traffic.in_flight(),
                "requests still running after the drain timeout; stopping anyway"
            );
        }
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The lock file in a server's data folder.
const LOCK_FILE: &str = "server.lock";
/// Where a running server names its URL and process.
const RUNNING_FILE: &str = "server.json";

/// What `server.json` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RunningFile {
    url: String,
    pid: u32,
}

/// The server that holds the lock on `data_dir`.
fn holder(data_dir: &Path) -> Option<RunningFile> {
    let text = std::fs::read(data_dir.join(RUNNING_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The URL of the server running on `data_dir` (in this process or
/// another), or `None` when none runs there. A caller that meets
/// [`Error::FolderInUse`] can use this server instead of starting its own.
///
/// `None` also while another server is still starting (it holds the folder
/// but has not yet bound its address); [`Error::FolderInUse`] then has no URL.
pub fn running_server(data_dir: &Path) -> Option<String> {
    let file = File::open(data_dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        // Nobody holds the folder: any `server.json` is from a server that died.
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => holder(data_dir).map(|running| running.url),
        Err(TryLockError::Error(err)) => {
            tracing::warn!(error = %err, "cannot tell whether a server runs on this folder");
            None
        }
    }
}

/// A server's hold on its data folder, for as long as it lives.
#[derive(Debug)]
struct FolderLock {
    running_file: PathBuf,
    announced: bool,
    // Dropped after `Drop::drop` removed `server.json`: the lock goes last.
    _file: File,
}

impl FolderLock {
    /// Creates `data_dir` if needed and locks it, without waiting.
    async fn take(data_dir: &Path) -> Result<Self> {
        let data_dir_error = |source| Error::DataDir { path: data_dir.to_path_buf(), source };
        std::fs::create_dir_all(data_dir).map_err(data_dir_error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join(LOCK_FILE))
            .map_err(data_dir_error)?;
        // A `running_server` probe holds a shared lock for an instant; a
        // few short tries keep it from turning a start into a refusal.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    tokio::time::sleep(LOCK_RETRY_WAIT).await;
                }
                Err(TryLockError::WouldBlock) => {
                    let running = holder(data_dir);
                    return Err(Error::FolderInUse {
                        path: data_dir.to_path_buf(),
                        url: running.as_ref().map(|running| running.url.clone()),
                        pid: running.map(|running| running.pid),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(data_dir_error(source)),
            }
        }
        let running_file = data_dir.join(RUNNING_FILE);
        // Left by a server that was killed: it names an address nobody serves.
        match std::fs::remove_file(&running_file) {
            Ok(()) => tracing::info!("removed server.json left by a server that did not stop cleanly"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(data_dir_error(source)),
        }
        Ok(Self { running_file, announced: false, _file: file })
    }

    /// Writes `server.json` atomically: a reader sees the old file, none, or
    /// the whole new one.
    fn announce(&mut self, url: &str) -> std::io::Result<()> {
        use std::io::Write;
        let body = serde_json::to_vec_pretty(&RunningFile { url: url.to_owned(), pid: std::process::id() })
            .map_err(std::io::Error::other)?;
        let partial = self.running_file.with_extension("json.partial");
        let mut file = File::create(&partial)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&partial, &self.running_file)?;
        self.announced = true;
        Ok(())
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if self.announced
            && let Err(err) = std::fs::remove_file(&self.running_file)
        {
            tracing::warn!(error = %err, "could not remove server.json");
        }
    }
}

/// How often [`FolderLock::take`] tries again when the lock is held.
const LOCK_TRIES: u32 = 5;
/// The wait between those tries.
const LOCK_RETRY_WAIT: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(dir: &Path) -> ServerBuilder {
        Server::builder().data_dir(dir).user("ada:ada-token-0001".parse().unwrap())
    }

    #[tokio::test]
    async fn a_second_server_on_a_folder_is_refused_and_told_where_the_first_runs() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(running_server(temp.path()), None, "an unused folder has no server");
        let first = builder(temp.path()).start().await.unwrap();
        assert_eq!(running_server(temp.path()).as_deref(), Some(first.url()));
        let running: serde_json::Value =
            serde_json::from_slice(&std::fs::read(temp.path().join(RUNNING_FILE)).unwrap()).unwrap();
        assert_eq!(running["pid"], std::process::id());

        let err = builder(temp.path()).start().await.unwrap_err();
        match &err {
            Error::FolderInUse { url, pid, .. } => {
                assert_eq!((url.as_deref(), *pid), (Some(first.url()), Some(std::process::id())));
            }
            other => panic!("expected FolderInUse, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(first.url()) && message.contains("Use that server"), "{message}");

        first.shutdown().await;
        assert!(!temp.path().join(RUNNING_FILE).exists(), "a clean stop removes server.json");
        assert_eq!(running_server(temp.path()), None);
        let second = builder(temp.path()).start().await.unwrap();
        assert_eq!(running_server(temp.path()).as_deref(), Some(second.url()));
        drop(second);
        assert_eq!(running_server(temp.path()), None, "dropping the handle releases the folder too");
    }

    #[tokio::test]
    async fn a_server_json_left_by_a_dead_server_names_no_server() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(LOCK_FILE), b"").unwrap();
        std::fs::write(temp.path().join(RUNNING_FILE), br#"{"url":"http://127.0.0.1:1","pid":1}"#).unwrap();
        assert_eq!(running_server(temp.path()), None);
        let server = builder(temp.path()).start().await.unwrap();
        assert_eq!(running_server(temp.path()).as_deref(), Some(server.url()));
        server.shutdown().await;
    }

    #[test]
    fn folder_in_use_says_who_and_what_to_do() {
        let starting = Error::FolderInUse { path: "/data".into(), url: None, pid: Some(42) }.to_string();
        assert!(starting.contains("process 42") && starting.contains("Wait a moment"), "{starting}");
    }
}
