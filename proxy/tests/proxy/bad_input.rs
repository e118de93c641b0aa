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
