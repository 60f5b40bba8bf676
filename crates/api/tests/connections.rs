//! Connections that never finish are closed: one that sends nothing, one that
//! sends half a request head and one whose body stops arriving are each
//! closed by the server within its configured timeout, while other clients
//! are served all along; and no more than `max_connections` are served at
//! once.

mod support;

use std::time::{Duration, Instant};

use scoria_api::HttpLimits;
use support::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD: Duration = Duration::from_millis(800);
const BODY: Duration = Duration::from_millis(800);

async fn start(t: &TestApp, max_connections: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = HttpLimits {
        header_read_timeout: HEAD,
        body_read_timeout: BODY,
        max_connections,
    };
    let app = t.app.clone();
    tokio::spawn(scoria_api::serve(
        app,
        listener,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Read until the server closes; what it sent and when it closed.
async fn until_closed(mut s: TcpStream, started: Instant) -> (String, Duration) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    (
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    )
}

/// One whole request on a fresh connection; the status line of its answer.
async fn served(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /v3/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_connections_are_closed_while_others_are_served() {
    let t = TestApp::new().await;
    let addr = start(&t, 64).await;
    let started = Instant::now();
    let silent = TcpStream::connect(addr).await.expect("connect");
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /v3/ HTTP/1.1\r\nHost: x\r\nX-Aut")
        .await
        .expect("write");
    // A body declared as 100 MB of which 10 bytes arrive, on a route that
    // reads it before anything else (a login).
    let mut slow_body = TcpStream::connect(addr).await.expect("connect");
    slow_body
        .write_all(
            b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{\"auth\": {",
        )
        .await
        .expect("write");
    let closed = tokio::spawn(async move {
        let a = until_closed(silent, started).await;
        let b = until_closed(half, started).await;
        let c = until_closed(slow_body, started).await;
        (a, b, c)
    });
    // Others are served meanwhile, promptly.
    while !closed.is_finished() {
        let t0 = Instant::now();
        assert_eq!(served(addr).await, "HTTP/1.1 200 OK");
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ((silent, t_silent), (half, t_half), (slow, t_slow)) = closed.await.expect("join");
    // Closed after the timeout, not long after; the silent connection gets no
    // answer at all, the half-sent head at most an error status, the stalled
    // body an answer saying so.
    for (what, at, timeout) in [
        ("silent", t_silent, HEAD),
        ("half head", t_half, HEAD),
        ("stalled body", t_slow, BODY),
    ] {
        assert!(
            at >= timeout && at < timeout * 3,
            "{what} closed at {at:?} (timeout {timeout:?})"
        );
    }
    assert_eq!(silent, "");
    assert!(
        half.is_empty() || half.starts_with("HTTP/1.1 408"),
        "{half}"
    );
    assert!(slow.starts_with("HTTP/1.1 4"), "{slow}");
    assert!(!slow.starts_with("HTTP/1.1 413"), "{slow}");
    // And the server still serves.
    assert_eq!(served(addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_connections_are_served_at_once() {
    let t = TestApp::new().await;
    let addr = start(&t, 2).await;
    let started = Instant::now();
    // Two idle connections take both slots...
    let a = TcpStream::connect(addr).await.expect("connect");
    let b = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a third client waits until the header timeout frees one.
    let answer = served(addr).await;
    let waited = started.elapsed();
    assert_eq!(answer, "HTTP/1.1 200 OK");
    assert!(
        waited >= HEAD && waited < HEAD * 3,
        "served after {waited:?} (header timeout {HEAD:?})"
    );
    drop((a, b));
}
