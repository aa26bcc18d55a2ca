//! Starting and stopping the server: [`Server::builder`] → [`ServerHandle`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::{AppState, app};
use crate::auth::UserToken;
use crate::jobs::Jobs;
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            presign_ttl: Duration::from_secs(3600),
            media_url_ttl: Duration::from_secs(3600),
            job_workers: 2,
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
}

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

    /// Binds the address, opens the database and the store, and starts
    /// serving, verifying and sweeping in the background.
    pub async fn start(self) -> Result<ServerHandle> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| Error::Bind { addr: self.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: self.listen, source })?;
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let state =
            AppState::open(&self.data_dir, &self.store, self.users.clone(), self.limits.clone(), &url)
                .await?;
        let (db, store, wake) = (state.db.clone(), state.store.clone(), state.wake_jobs.clone());
        crate::jobs::requeue_interrupted(&db).await?;
        let scratch = self.data_dir.join("scratch");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let jobs = Jobs { db: db.clone(), store: store.clone(), wake, scratch };
        for _ in 0..self.limits.job_workers.max(1) {
            tasks.spawn(jobs.clone().run_worker(stopped.clone()));
        }
        tasks.spawn(crate::sweeper::run(db, store, stopped.clone()));
        let mut serve_stop = stopped;
        let router = app(state);
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = serve_stop.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %err, "server stopped with an error");
            }
        });
        tracing::info!(%url, "server listening");
        Ok(ServerHandle { url, addr, stop, tasks })
    }
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown)
/// aborts its tasks at once (in-flight requests are cut).
#[derive(Debug)]
pub struct ServerHandle {
    url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
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

    /// Stops accepting connections, lets requests in flight and the current
    /// verification job finish, then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
