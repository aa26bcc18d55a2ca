//! Opptak's server for the native upload API (start, parts, listparts,
//! abort, finish, recordings): the "embedded equivalent" of the LMS's
//! endpoints. It runs inside the desktop app (the default destination), as
//! `opptak serve` for a school, and in tests.
//!
//! Media lives in a [`MediaStore`](store::MediaStore) — a local folder by
//! default, or any S3-compatible store — and metadata plus a durable
//! verification queue in the server's own SQLite file.
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
mod jobs;
mod media;
mod metrics;
mod openapi;
mod server;
pub mod store;
mod sweeper;

pub use app::{AppState, SessionLocks, app};
pub use auth::UserToken;
pub use server::{Limits, Server, ServerBuilder, ServerHandle, StoreConfig};

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
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// The media store cannot be used.
    #[error("{0}")]
    Store(#[from] store::StoreError),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
