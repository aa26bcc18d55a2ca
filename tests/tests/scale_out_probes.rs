//! The probes of a real `opptak serve` process: `/livez` answers while the
//! process runs; `/readyz` answers 503 with a JSON `code` while the server
//! drains after SIGTERM (kept draining by a request still in flight) and
//! while its PostgreSQL is stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opptak_tests::{OpptakServe, Postgres, TEST_TOKEN};

/// Bounds every wait in these tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// `GET url` over a fresh connection → (status, body), or `None` when
/// nothing answers.
fn get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (address, path) = rest.split_at(rest.find('/')?);
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// Polls `check` every 50 ms until it is true; panics after [`DEADLINE`].
fn poll(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn in_flight(url: &str) -> Option<u64> {
    let (_, text) = get(&format!("{url}/metrics"))?;
    text.lines().find_map(|line| line.strip_prefix("opptak_http_requests_in_flight ")?.parse().ok())
}

#[test]
fn readyz_is_503_draining_while_a_slow_request_finishes_after_sigterm() {
    let temp = tempfile::tempdir().unwrap();
    let mut server = OpptakServe::start(&temp.path().join("serve"), &[], &[]).unwrap();
    let url = server.url.clone();
    assert_eq!(get(&format!("{url}/livez")), Some((200, "ok\n".into())));
    let (status, body) = get(&format!("{url}/readyz")).unwrap();
    assert_eq!(status, 200, "{body}");

    // A start whose body arrives slowly: in flight until the last byte.
    let body = serde_json::json!({
        "recordingName": "slow", "recorderType": "desktop-audio", "isVideoRecording": false,
        "usedInFileUploader": false, "contentType": "audio/wav"
    })
    .to_string();
    let (first, rest) = body.split_at(10);
    let address = url.strip_prefix("http://").unwrap();
    let mut slow = TcpStream::connect(address).unwrap();
    write!(
        slow,
        "POST /restapi/personal/mediarecorder/native/upload/start/v1 HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    slow.flush().unwrap();
    poll("the slow request to be in flight", || in_flight(&url) == Some(1));

    server.process.signal(Signal::SIGTERM).unwrap();
    poll("readyz to say draining", || {
        get(&format!("{url}/readyz")).is_some_and(|(status, body)| {
            status == 503 && serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"] == "draining"
        })
    });
    // Still draining, still alive, for as long as the request runs.
    let (status, body) = get(&format!("{url}/readyz")).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stopping"), "{body}");
    assert_eq!(get(&format!("{url}/livez")), Some((200, "ok\n".into())));
    assert!(server.process.ensure_running().is_ok(), "the server stopped with a request in flight");

    slow.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "the slow request was cut: {answer}");
    let exit = server.process.wait_timeout(DEADLINE).unwrap();
    assert!(exit.success(), "opptak serve exited with {exit}");
    assert_eq!(get(&format!("{url}/livez")), None, "nothing answers once it stopped");
}

#[test]
fn readyz_is_503_database_unavailable_while_postgresql_is_stopped() {
    let Some(postgres) = Postgres::start().unwrap() else { return };
    let database = postgres.fresh_database().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let server = OpptakServe::start(&temp.path().join("serve"), &["--database-url", &database], &[]).unwrap();
    let url = server.url.clone();
    let (status, body) = get(&format!("{url}/readyz")).unwrap();
    assert_eq!(status, 200, "{body}");

    drop(postgres);
    let (status, body) = get(&format!("{url}/readyz")).unwrap();
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert_eq!(get(&format!("{url}/livez")), Some((200, "ok\n".into())), "the process itself is fine");
}
