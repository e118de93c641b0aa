//! Truncated, garbage and slow first bytes: decided, closed, no crash, and
//! the proxy keeps serving.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// Proves the proxy still serves: an allowed connection round-trips.
async fn still_serving(h: &Harness) {
    let dst = upstream(b"", b"").await;
    // Spliced TLS is named by its SNI only if the resolver answered it.
    h.origins.insert_name(dst.ip(), "allowed.test");
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    tokio::time::timeout(PROMPT, client.read_exact(&mut echoed)).await.expect("in time").expect("echo");
}

#[tokio::test]
async fn truncated_client_hello_is_malformed_and_decided_on_the_ip() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(&OPENSSL_HELLO[..60]).await.expect("partial hello");
    client.shutdown().await.expect("eof");
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["tls"], true);
    assert_eq!(decision["event"]["detail"]["named_by"], "ip");
    assert_eq!(decision["decision"]["effect"], "deny");
    still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn garbage_is_opaque_and_the_proxy_keeps_serving() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    for garbage in [&b"\x16\x03\x01\xff\xff\x01\x00\x00\x05junk"[..], b"\x16\x03\x01\x00\x00", b"\xff\xfe\x00garbage"] {
        let mut client = h.connect_to(dst).await;
        client.write_all(garbage).await.expect("garbage");
        assert!(closed_at_once(&mut client).await);
        assert_eq!(h.last_decision()["event"]["detail"]["named_by"], "ip");
    }
    still_serving(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn slowloris_hello_is_decided_within_the_window() {
    let window = Duration::from_millis(300);
    let h = Harness::start(POLICY, |c| c.peek_timeout = window).await;
    let dst = upstream(b"", b"").await;
    let client = h.connect_to(dst).await;
    let started = Instant::now();
    let (mut read, mut write) = client.into_split();
    // One byte every 50 ms: the whole hello would take ~25 s.
    let trickle = tokio::spawn(async move {
        for byte in ALLOWED_HELLO {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 16];
    let outcome = tokio::time::timeout(PROMPT, read.read(&mut buf)).await.expect("closed, not held");
    assert!(matches!(outcome, Ok(0) | Err(_)), "nothing relayed");
    assert!(started.elapsed() < window + Duration::from_secs(1), "closed within the window");
    trickle.abort();
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["tls"], true);
    assert_eq!(decision["event"]["detail"]["named_by"], "ip");
    still_serving(&h).await;
    h.stop().await;
}

/// An agent opening connections without end meets the limit: past
/// `max_connections` a new one is refused at once and said in the audit
/// log; those open are untouched, and once they close the next is served.
#[tokio::test]
async fn connections_past_the_limit_are_refused_and_said() {
    let h = Harness::start(POLICY, |c| {
        c.max_connections = 2;
        c.peek_timeout = Duration::from_secs(5);
    })
    .await;
    let dst = upstream(b"", b"").await;
    let held = [h.connect_to(dst).await, h.connect_to(dst).await];
    // Accepted, and waiting in detection (they send nothing).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut past = h.connect_to(dst).await;
    assert!(closed_at_once(&mut past).await, "a third connection was served");
    let notices: Vec<String> = h
        .records()
        .into_iter()
        .filter(|r| r["type"] == "notice")
        .filter_map(|r| r["message"].as_str().map(str::to_owned))
        .collect();
    assert!(notices.iter().any(|n| n.starts_with("1 connection(s) refused: 2 are open")), "{notices:?}");
    for mut open in held {
        let mut buf = [0u8; 1];
        let still = tokio::time::timeout(Duration::from_millis(100), open.read(&mut buf)).await;
        assert!(still.is_err(), "a connection within the limit was closed");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serving(&h).await;
    h.stop().await;
}
