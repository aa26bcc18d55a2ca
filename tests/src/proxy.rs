//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for upload tests: a share
//! of the requests it forwards is reset, stalled, cut short mid-body, or
//! answered `503` with `Retry-After` instead of reaching the server.
//!
//! Run with a [`Hold`] instead, it passes every request through except one
//! chosen request, which it stops at a chosen [`HoldPoint`] — half its body
//! sent, or answered by the server with the answer kept back — and tells the
//! test, so the test can kill the client at exactly that moment.
//!
//! It adds `Connection: close` to every request, so each connection carries
//! one request and the fault rate applies per request, not per kept-alive
//! connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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

    /// Starts passing every request through to `upstream` except the one
    /// `hold` picks, which is held at its point.
    pub fn run_holding(self, upstream: SocketAddr, hold: Hold) -> HoldingProxy {
        let addr = self.listener.local_addr().expect("bound");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (caught, held) = mpsc::channel();
        let shared = requests.clone();
        let task = tokio::spawn(async move {
            let hold = Arc::new(hold);
            let matched = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((client, _)) = self.listener.accept().await else { continue };
                let (hold, matched, requests, caught) =
                    (hold.clone(), matched.clone(), shared.clone(), caught.clone());
                tokio::spawn(async move {
                    let _ = pass_or_hold(client, upstream, &hold, &matched, &requests, &caught).await;
                });
            }
        });
        HoldingProxy { addr, requests, held, task }
    }
}

/// Where a held request stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPoint {
    /// Half the request's body reached the server; the rest never does.
    MidBody,
    /// The whole request reached the server and it answered; the answer
    /// never reaches the client.
    Answered,
}

/// Which request to hold: the `nth` (from 1) whose method is `method` and
/// whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Hold {
    /// `GET`, `PUT`, `POST`…
    pub method: &'static str,
    /// A part of the path (with its query), e.g. `/parts/3?`.
    pub path: String,
    /// Which matching request, counting from 1.
    pub nth: usize,
    /// Where it stops.
    pub at: HoldPoint,
}

/// The request a [`Hold`] caught.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its request line, e.g. `PUT /storage/uploads/…/parts/3?… HTTP/1.1`.
    pub request_line: String,
    /// The server's whole answer (head and body), for [`HoldPoint::Answered`].
    pub answer: Vec<u8>,
}

/// A running holding proxy; it stops when dropped (its task is aborted).
#[derive(Debug)]
pub struct HoldingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    held: mpsc::Receiver<Held>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HoldingProxy {
    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the held request reached its point, for at most `timeout`.
    pub fn wait_held(&self, timeout: Duration) -> anyhow::Result<Held> {
        self.held.recv_timeout(timeout).map_err(|_| anyhow::anyhow!("no request was held within {timeout:?}"))
    }

    /// The request line of every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
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

fn request_line(head: &[u8]) -> String {
    String::from_utf8_lossy(head).lines().next().unwrap_or_default().to_owned()
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

async fn pass_or_hold(
    mut client: TcpStream,
    upstream: SocketAddr,
    hold: &Hold,
    matched: &AtomicUsize,
    requests: &Mutex<Vec<String>>,
    caught: &mpsc::Sender<Held>,
) -> std::io::Result<()> {
    let Some((head, early_body)) = read_head(&mut client).await? else { return Ok(()) };
    let request_line = request_line(&head);
    requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(request_line.clone());
    let mut words = request_line.split(' ');
    let chosen = words.next() == Some(hold.method)
        && words.next().is_some_and(|path| path.contains(&hold.path))
        && matched.fetch_add(1, Ordering::SeqCst) + 1 == hold.nth;
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&head).await?;
    if !chosen {
        server.write_all(&early_body).await?;
        return tokio::io::copy_bidirectional(&mut client, &mut server).await.map(|_| ());
    }
    let body_len = content_length(&head);
    let sent = match hold.at {
        HoldPoint::MidBody => body_len / 2,
        HoldPoint::Answered => body_len,
    };
    let early = early_body.len().min(sent as usize);
    server.write_all(&early_body[..early]).await?;
    tokio::io::copy(&mut (&mut client).take(sent - early as u64), &mut server).await?;
    let mut answer = Vec::new();
    if hold.at == HoldPoint::Answered {
        // The request said `Connection: close`, so the answer ends with the connection.
        server.read_to_end(&mut answer).await?;
    }
    let _ = caught.send(Held { request_line, answer });
    // Hold until the client goes away; only then does the server see the
    // connection end.
    tokio::io::copy(&mut client, &mut tokio::io::sink()).await.map(|_| ())
}
