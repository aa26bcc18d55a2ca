//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for upload tests: a share
//! of the requests it forwards is reset, stalled, cut short mid-body, or
//! answered `503` with `Retry-After` instead of reaching the server.
//!
//! Run with a [`Hold`] instead, it passes every request through except one
//! chosen request, which it stops at a chosen [`HoldPoint`] — half its body
//! sent, or answered by the server with the answer kept back — and tells the
//! test, so the test can kill the client at exactly that moment.
//!
//! Run with a [`Shaping`] instead, it is a slow link: one token bucket for
//! every byte of every connection in both directions, a rate that can
//! change while it runs (0 freezes it), and small socket buffers, so the
//! queue is a real uplink's and not loopback's megabytes; optionally it also
//! answers 404 for `/storage/`, rewrites or drops part ETags, holds status
//! polls, or answers every presign "upload expired".
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

    /// Binds 127.0.0.1 on a free port with small socket buffers, as a
    /// [`ShapingProxy`] needs: the bytes queued in the proxy's sockets are
    /// the queue of the link it plays, and a real uplink's router queues a
    /// fraction of a second, not the megabytes loopback sockets grow to.
    pub async fn bind_as_link() -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(LINK_QUEUE_BYTES)?;
        socket.set_send_buffer_size(LINK_QUEUE_BYTES)?;
        socket.bind("127.0.0.1:0".parse()?)?;
        Ok(Self { listener: socket.listen(64)? })
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

/// What a [`ShapingProxy`] does besides limiting the rate.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// The link's rate in bits per second, shared by every connection in
    /// both directions; 0 freezes it (no byte passes).
    pub bits_per_second: u64,
    /// Answer `404` to every request whose path starts with `/storage/`,
    /// as a reverse proxy that routes only the API would.
    pub storage_not_found: bool,
    /// What to do with the `ETag` header of answers to `PUT /storage/…`.
    pub etag: EtagRewrite,
    /// Never answer `GET …/recordings/…` (the status a client polls after
    /// finish): the request is held until the client gives up.
    pub hold_status_polls: bool,
    /// Answer every `parts` call (presigning) `409 upload_expired`, as a
    /// server that ends every session at once would.
    pub expire_sessions: bool,
}

/// What a [`ShapingProxy`] does to the `ETag` of part PUT answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EtagRewrite {
    /// Pass it on.
    #[default]
    Keep,
    /// Replace it with an opaque value that is not the part's MD5, as a
    /// bucket with SSE-KMS or a gateway would answer.
    Opaque,
    /// Remove the header, as some proxies do.
    Drop,
}

/// What a [`ShapingProxy`] did so far.
#[derive(Debug, Default)]
pub struct ShapingCounts {
    /// Bytes passed from clients to the server.
    pub up_bytes: AtomicU64,
    /// Bytes passed from the server to clients.
    pub down_bytes: AtomicU64,
    /// Requests passed on, by request line.
    pub requests: Mutex<Vec<String>>,
    /// Requests for `/storage/` answered 404 by the proxy itself.
    pub storage_refused: AtomicU64,
    /// Part PUT answers whose ETag was changed or removed.
    pub etags_rewritten: AtomicU64,
    /// Status polls held without an answer.
    pub polls_held: AtomicU64,
    /// `parts` calls answered "upload expired" by the proxy itself.
    pub sessions_expired: AtomicU64,
}

/// A running shaping proxy: a token bucket on every byte in both directions
/// (one rate for all connections together, as on a school's uplink), a rate
/// that can change while it runs (0 freezes the link), and the faults of
/// [`Shaping`]. It stops when dropped (its task is aborted).
#[derive(Debug)]
pub struct ShapingProxy {
    addr: SocketAddr,
    bucket: Arc<TokenBucket>,
    /// What it did so far.
    pub counts: Arc<ShapingCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShapingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShapingProxy {
    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the link's rate; 0 freezes it.
    pub fn set_bits_per_second(&self, bits_per_second: u64) {
        self.bucket.bytes_per_second.store(bits_per_second / 8, Ordering::SeqCst);
    }
}

impl BoundProxy {
    /// Starts passing every connection to `upstream` through the shaping
    /// of `shaping`. Bind with [`bind_as_link`](Self::bind_as_link).
    pub fn run_shaping(self, upstream: SocketAddr, shaping: Shaping) -> ShapingProxy {
        let addr = self.listener.local_addr().expect("bound");
        let bucket = Arc::new(TokenBucket::new(shaping.bits_per_second / 8));
        let counts = Arc::new(ShapingCounts::default());
        let (shared_bucket, shared_counts) = (bucket.clone(), counts.clone());
        let task = tokio::spawn(async move {
            let shaping = Arc::new(shaping);
            loop {
                let Ok((client, _)) = self.listener.accept().await else { continue };
                let (bucket, counts, shaping) =
                    (shared_bucket.clone(), shared_counts.clone(), shaping.clone());
                tokio::spawn(async move {
                    let _ = shape(client, upstream, &shaping, &bucket, &counts).await;
                });
            }
        });
        ShapingProxy { addr, bucket, counts, task }
    }
}

/// Bytes per second for every connection together, spent as they pass.
/// Connections take turns at it (tokio's `Mutex` queues its waiters in
/// order), as TCP flows through one bottleneck share it: when every waiter
/// woke on the same tick and the first one polled took the tokens, one
/// upload part could pass nothing for 45 s while the others moved, and was
/// sent again from its start.
#[derive(Debug)]
struct TokenBucket {
    bytes_per_second: AtomicU64,
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
}

/// The socket buffer each side of a shaped connection gets (the kernel
/// doubles it): see [`BoundProxy::bind_as_link`].
const LINK_QUEUE_BYTES: u32 = 32 * 1024;

/// How long a burst the bucket lets through after an idle moment: short,
/// so the rate holds over fractions of a second.
const BURST: Duration = Duration::from_millis(50);
/// The smallest burst, so one TCP segment can always pass at once.
const MIN_BURST_BYTES: f64 = 1500.0;

impl TokenBucket {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: AtomicU64::new(bytes_per_second),
            state: tokio::sync::Mutex::new((0.0, tokio::time::Instant::now())),
        }
    }

    /// Waits for this connection's turn and until up to `want` bytes may
    /// pass; returns how many (≥ 1).
    async fn take(&self, want: usize) -> usize {
        // Held while waiting for tokens: the others queue behind this turn.
        let mut state = self.state.lock().await;
        loop {
            let rate = self.bytes_per_second.load(Ordering::SeqCst) as f64;
            let now = tokio::time::Instant::now();
            let capacity = (rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES);
            state.0 = (state.0 + rate * now.duration_since(state.1).as_secs_f64()).min(capacity);
            state.1 = now;
            if state.0 >= 1.0 {
                let granted = (state.0 as usize).min(want).max(1);
                state.0 -= granted as f64;
                return granted;
            }
            let wait = if rate == 0.0 {
                // Frozen: look again soon, the rate may come back.
                Duration::from_millis(20)
            } else {
                Duration::from_secs_f64((1.0 - state.0) / rate).max(Duration::from_millis(1))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Writes `bytes` to `to` as the bucket allows; counts them in `counter`.
async fn write_shaped(
    to: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
    bucket: &TokenBucket,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        let granted = bucket.take(bytes.len() - at).await;
        to.write_all(&bytes[at..at + granted]).await?;
        counter.fetch_add(granted as u64, Ordering::Relaxed);
        at += granted;
    }
    Ok(())
}

/// Copies `from` to `to` as the bucket allows, until `from` ends.
async fn pump_shaped(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    bucket: &TokenBucket,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    // Read first, then wait for tokens: a direction with nothing to send
    // must not hold tokens the others need.
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        write_shaped(to, &buffer[..read], bucket, counter).await?;
    }
}

async fn shape(
    mut client: TcpStream,
    upstream: SocketAddr,
    shaping: &Shaping,
    bucket: &TokenBucket,
    counts: &ShapingCounts,
) -> std::io::Result<()> {
    let Some((head, early_body)) = read_head(&mut client).await? else { return Ok(()) };
    let line = request_line(&head);
    counts.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line.clone());
    let mut words = line.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let storage = path.starts_with("/storage/");
    if shaping.expire_sessions && method == "POST" && path.contains("/native/upload/parts/") {
        counts.sessions_expired.fetch_add(1, Ordering::Relaxed);
        let body = r#"{"code":"upload_expired","message":"This upload expired before it was finished; start a new upload for the recording."}"#;
        let answer = format!(
            "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        write_shaped(&mut client, answer.as_bytes(), bucket, &counts.down_bytes).await?;
        return client.shutdown().await;
    }
    if shaping.hold_status_polls && method == "GET" && path.contains("/recordings/") {
        counts.polls_held.fetch_add(1, Ordering::Relaxed);
        return tokio::io::copy(&mut client, &mut tokio::io::sink()).await.map(|_| ());
    }
    if storage && shaping.storage_not_found {
        counts.storage_refused.fetch_add(1, Ordering::Relaxed);
        let answer = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nNot Found";
        write_shaped(&mut client, answer, bucket, &counts.down_bytes).await?;
        return client.shutdown().await;
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_send_buffer_size(LINK_QUEUE_BYTES)?;
    socket.set_recv_buffer_size(LINK_QUEUE_BYTES)?;
    let mut server = socket.connect(upstream).await?;
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = async {
        write_shaped(&mut server_write, &head, bucket, &counts.up_bytes).await?;
        write_shaped(&mut server_write, &early_body, bucket, &counts.up_bytes).await?;
        pump_shaped(&mut client_read, &mut server_write, bucket, &counts.up_bytes).await
    };
    let down = async {
        let rewrite = storage && method == "PUT" && shaping.etag != EtagRewrite::Keep;
        if rewrite {
            // The answer's head, rewritten before any of it is passed on.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 4096];
            let end = loop {
                if let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") {
                    break end;
                }
                let read = server_read.read(&mut chunk).await?;
                if read == 0 {
                    break answer.len();
                }
                answer.extend_from_slice(&chunk[..read]);
            };
            let (head, rest) = answer.split_at(end.min(answer.len()));
            let mut rewritten = Vec::new();
            for line in String::from_utf8_lossy(head).split("\r\n") {
                if line.to_ascii_lowercase().starts_with("etag:") {
                    counts.etags_rewritten.fetch_add(1, Ordering::Relaxed);
                    if shaping.etag == EtagRewrite::Opaque {
                        rewritten.extend_from_slice(b"ETag: \"opaque-by-the-proxy\"\r\n");
                    }
                } else {
                    rewritten.extend_from_slice(line.as_bytes());
                    rewritten.extend_from_slice(b"\r\n");
                }
            }
            // `rest` starts with the blank line's "\r\n\r\n"; the last head line already ended.
            write_shaped(&mut client_write, &rewritten, bucket, &counts.down_bytes).await?;
            write_shaped(&mut client_write, rest.get(2..).unwrap_or_default(), bucket, &counts.down_bytes)
                .await?;
        }
        pump_shaped(&mut server_read, &mut client_write, bucket, &counts.down_bytes).await
    };
    let (up, down) = tokio::join!(up, down);
    up.and(down)
}
