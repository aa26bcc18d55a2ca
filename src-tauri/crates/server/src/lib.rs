//! Opptak's server for the native upload API (start, parts, listparts,
//! abort, finish, recordings): the "embedded equivalent" of the LMS's
//! endpoints. It runs inside the desktop app (the default destination), as
//! `opptak serve` for a school, and in tests.
//!
//! Media lives in a [`MediaStore`](store::MediaStore) — a local folder by
//! default, or any S3-compatible store — and metadata plus a durable
//! verification queue in a [`MetaStore`]: the server's own SQLite file by
//! default, or (feature `postgres`, `ServerBuilder::database_url`) a
//! PostgreSQL database that several server instances share.
//!
//! One server owns a data folder at a time (an OS file lock held while it
//! runs): a second start on the same folder fails with
//! [`Error::FolderInUse`], and [`running_server`] gives the URL of the one
//! that runs, so a second process can upload through it.
//!
//! ```no_run
//! # async fn demo() -> opptak_server::Result<()> {
//! let server = opptak_server::Server::builder()
//!     .data_dir("/var/lib/opptak")
//!     .user("teacher:a-long-secret-token".parse().unwrap())
//!     .start()
//!     .await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// Handlers answer early with a whole `Response` as their error, as axum does.
#![allow(clippy::result_large_err)]

mod api_error;
mod app;
pub mod auth;
pub mod db;
mod failpoint;
mod jobs;
mod media;
pub mod meta;
mod metrics;
mod openapi;
mod server;
pub mod store;
mod sweeper;

pub use app::{AppState, Traffic, app};
pub use auth::UserToken;
pub use jobs::JobPolicy;
pub use media::probe_duration;
pub use meta::{MetaStore, PoolStats, SessionLocks, SqliteMeta};
pub use server::{Limits, Server, ServerBuilder, ServerHandle, StoreConfig, host_name, running_server};

/// Everything that can stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address is taken or not allowed.
    #[error(
        "cannot listen on {addr}: {source}. Choose another address with --listen (port 0 picks a free one) or stop the program using it."
    )]
    Bind {
        /// The address that was tried.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The data directory cannot be used.
    #[error(
        "the data directory {path} cannot be used: {source}. Choose another with --data-dir or fix its permissions."
    )]
    DataDir {
        /// The directory that was tried.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another server already runs on this data folder.
    #[error("{}", folder_in_use(path, url.as_deref(), *pid))]
    FolderInUse {
        /// The data folder.
        path: std::path::PathBuf,
        /// Where the running server answers, when it has said so.
        url: Option<String>,
        /// The running server's process id, when it has said so.
        pid: Option<u32>,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// The media store cannot be used.
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// Another request held the upload session for longer than the lock
    /// timeout (a finish or abort still running, on this or another instance).
    #[error("another request is still working on this upload session")]
    SessionBusy,
    /// Another server instance on the same database rules this one out.
    #[error("{0}")]
    DatabaseShared(String),
}

fn folder_in_use(path: &std::path::Path, url: Option<&str>, pid: Option<u32>) -> String {
    let who = pid.map_or_else(
        || "Another Opptak server".to_owned(),
        |pid| format!("Another Opptak server (process {pid})"),
    );
    match url {
        Some(url) => format!(
            "{who} is already using the folder {} and answers at {url}. Use that server, or stop it before starting another on this folder.",
            path.display()
        ),
        None => format!(
            "{who} is starting on the folder {}. Wait a moment and use that server, or stop it before starting another on this folder.",
            path.display()
        ),
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
