//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for upload tests: a share
//! of the requests it forwards is reset, stalled, cut short mid-body, or
//! answered `503` with `Retry-After` instead of reaching the server.
//!
//! It adds `Connection: close` to every request, so each connection carries
//! one request and the fault rate applies per request, not per kept-alive
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy did, per kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Connections passed through untouched.
    pub clean: AtomicU64,
    /// Connections closed right after the client's first bytes.
    pub resets: AtomicU64,
    /// Connections held for a while before being passed through.
    pub stalls: AtomicU64,
    /// Connections whose request was cut off part-way.
    pub truncations: AtomicU64,
    /// Connections answered `503` with `Retry-After: 1`.
    pub unavailable: AtomicU64,
}

/// A running proxy; it stops when dropped (its task is aborted).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    /// What it did so far.
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bound listener, so a server can be told the proxy's URL before the
/// proxy knows its upstream.
#[derive(Debug)]
pub struct BoundProxy {
    listener: TcpListener,
}

impl BoundProxy {
    /// Binds 127.0.0.1 on a free port.
    pub async fn bind() -> anyhow::Result<Self> {
        Ok(Self { listener: TcpListener::bind("127.0.0.1:0").await? })
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().expect("bound"))
    }

    /// Starts forwarding to `upstream`, faulting `fault_rate` (0..1) of the
    /// connections; `seed` makes the sequence of faults repeatable.
    pub fn run(self, upstream: SocketAddr, fault_rate: f64, seed: u64) -> FaultProxy {
        let addr = self.listener.local_addr().expect("bound");
        let counts = Arc::new(FaultCounts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            let mut state = seed | 1;
            loop {
                let Ok((client, _)) = self.listener.accept().await else { continue };
                let roll = next(&mut state);
                let faulty = (roll % 10_000) as f64 / 10_000.0 < fault_rate;
                let kind = if faulty { (next(&mut state) % 4) as u8 } else { u8::MAX };
                let cut_after = 1 + next(&mut state) % 200_000;
                let counts = shared.clone();
                tokio::spawn(async move {
                    let _ = handle(client, upstream, kind, cut_after, &counts).await;
                });
            }
        });
        FaultProxy { addr, counts, task }
    }
}

impl FaultProxy {
    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Reads the request head (through the blank line); returns it with any
/// `Connection` header replaced by `Connection: close`, and the bytes read
/// past it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = client.read(&mut chunk).await?;
        if read == 0 || buffer.len() > 64 * 1024 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]);
    let mut rewritten: String = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    Ok(Some((rewritten.into_bytes(), buffer[end + 4..].to_vec())))
}

fn content_length(head: &[u8]) -> u64 {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    kind: u8,
    cut_after: u64,
    counts: &FaultCounts,
) -> std::io::Result<()> {
    let Some((head, early_body)) = read_head(&mut client).await? else { return Ok(()) };
    match kind {
        0 => {
            counts.resets.fetch_add(1, Ordering::Relaxed);
            // Closing with the body unread makes the kernel send a reset.
            Ok(())
        }
        2 => {
            counts.truncations.fetch_add(1, Ordering::Relaxed);
            // Cut inside the body, never after it: a request sent whole
            // would just wait for an answer that does not come.
            let body_len = content_length(&head);
            let cut_after = cut_after.min(body_len / 2);
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(&head).await?;
            let early = early_body.len().min(cut_after as usize);
            server.write_all(&early_body[..early]).await?;
            let mut limited = (&mut client).take(cut_after.saturating_sub(early as u64));
            tokio::io::copy(&mut limited, &mut server).await?;
            // Both sides see the connection end mid-request.
            Ok(())
        }
        3 => {
            counts.unavailable.fetch_add(1, Ordering::Relaxed);
            client
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            client.shutdown().await
        }
        _ => {
            if kind == 1 {
                counts.stalls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1500)).await;
            } else {
                counts.clean.fetch_add(1, Ordering::Relaxed);
            }
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(&head).await?;
            server.write_all(&early_body).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server).await.map(|_| ())
        }
    }
}
