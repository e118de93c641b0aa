//! What names a connection: SNI, else Host, else the DNS-learned name, else the IP.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

#[tokio::test]
async fn sni_decides_not_the_ip() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    // The IP has no name and no policy permits it: without SNI, denied.
    let mut client = h.connect_to(dst).await;
    client.write_all(b"\x00\x01opaque bytes").await.expect("write");
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    assert_eq!(
        (decision["event"]["detail"]["named_by"].as_str(), decision["decision"]["effect"].as_str()),
        (Some("ip"), Some("deny"))
    );
    // Same IP and port, SNI allowed.test, which the resolver answered with
    // this IP: allowed.
    resolved(&h, dst);
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    client.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(h.last_decision()["decision"]["effect"], "allow");
    h.stop().await;
}

#[tokio::test]
async fn host_header_names_plain_http() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    resolved(&h, dst);
    let request = b"GET / HTTP/1.1\r\nHost: allowed.test:8080\r\nAccept: */*\r\n\r\n";
    let mut client = h.connect_to(dst).await;
    client.write_all(request).await.expect("request");
    let mut echoed = vec![0u8; request.len()];
    client.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, request);
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["named_by"], "host-header");
    assert_eq!(decision["event"]["detail"]["name"], "allowed.test");
    assert_eq!(decision["event"]["detail"]["tls"], false);
    let mut client = h.connect_to(dst).await;
    client.write_all(b"GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n").await.expect("request");
    assert!(closed_at_once(&mut client).await);
    assert_eq!(h.last_decision()["decision"]["reason"], "denied.test is off limits");
    h.stop().await;
}

#[tokio::test]
async fn a_host_header_the_resolver_never_answered_for_the_address_names_nothing() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    // An allowed name in the Host header of a request to an address it
    // never resolved to: decided on the address, which no policy permits.
    let mut client = h.connect_to(dst).await;
    client.write_all(b"GET /?d=secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n").await.expect("request");
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["named_by"], "ip");
    assert_eq!(decision["decision"]["effect"], "deny");
    let notice = h.records().into_iter().rev().find(|r| r["type"] == "notice").expect("a notice");
    let message = notice["message"].as_str().unwrap_or_default();
    assert!(message.contains(r#"Host header "allowed.test""#) && message.contains("not a name"), "{message}");
    // The resolver answered another name with it: that name decides.
    h.origins.insert_name(dst.ip(), "banner.test");
    let mut client = h.connect_to(dst).await;
    let request = b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    client.write_all(request).await.expect("request");
    let mut echoed = vec![0u8; request.len()];
    client.read_exact(&mut echoed).await.expect("echo");
    let decision = h.last_decision();
    assert_eq!(
        (decision["event"]["detail"]["named_by"].as_str(), decision["event"]["detail"]["name"].as_str()),
        (Some("dns"), Some("banner.test"))
    );
    h.stop().await;
}

#[tokio::test]
async fn a_spliced_connection_is_not_named_by_an_sni_the_resolver_never_answered() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    let detail = &decision["event"]["detail"];
    assert_eq!((detail["named_by"].as_str(), detail["sni"].as_str()), (Some("ip"), Some("allowed.test")));
    assert_eq!(decision["decision"]["effect"], "deny");
    let notices: Vec<String> = h.records().iter().filter_map(|r| r["message"].as_str().map(str::to_owned)).collect();
    assert!(notices.iter().any(|n| n.contains(r#"TLS server name "allowed.test""#)), "{notices:?}");
    h.stop().await;
}

#[tokio::test]
async fn server_speaks_first_is_decided_on_the_dns_name_after_the_window() {
    let h = Harness::start(POLICY, |c| c.peek_timeout = Duration::from_millis(200)).await;
    let dst = upstream(b"220 banner.test ESMTP\r\n", b"").await;
    h.origins.insert_name(dst.ip(), "banner.test");
    let started = Instant::now();
    let mut client = h.connect_to(dst).await;
    let mut banner = [0u8; 23];
    tokio::time::timeout(PROMPT, client.read_exact(&mut banner)).await.expect("in time").expect("banner");
    assert_eq!(&banner, b"220 banner.test ESMTP\r\n");
    assert!(started.elapsed() >= Duration::from_millis(200), "decided only after the window");
    client.write_all(b"EHLO x\r\n").await.expect("write");
    let mut echo = [0u8; 8];
    client.read_exact(&mut echo).await.expect("echo");
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["named_by"], "dns");
    assert_eq!(decision["event"]["detail"]["name"], "banner.test");
    h.stop().await;
}

#[tokio::test]
async fn server_speaks_first_without_a_name_is_decided_on_the_ip() {
    let h = Harness::start(POLICY, |c| c.peek_timeout = Duration::from_millis(100)).await;
    let dst = upstream(b"SSH-2.0-test\r\n", b"").await;
    let mut client = h.connect_to(dst).await;
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["named_by"], "ip");
    assert_eq!(decision["event"]["detail"]["ip"], "127.0.0.1");
    h.stop().await;
}

/// A `@passthrough` permit splices TLS without checking any certificate
/// against its SNI, so with interception on, an SNI the resolver never
/// answered for the address is decided again without it.
#[tokio::test]
async fn a_passthrough_sni_must_be_a_name_of_the_address() {
    const PINNED: &str = r#"
        @id("pinned") @passthrough @reason("allowed.test pins its certificate")
        permit (principal, action, resource in Net::Domain::"allowed.test");
    "#;
    let h = Harness::start_inspecting(PINNED, crate::upstreams::PublicCa::new().der, |_| {}).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    assert!(closed_at_once(&mut client).await);
    let decisions: Vec<_> = h.records().into_iter().filter(|r| r["type"] == "decision").collect();
    let named: Vec<(&str, &str)> = decisions
        .iter()
        .map(|d| {
            (d["event"]["detail"]["named_by"].as_str().unwrap_or(""), d["decision"]["effect"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(named, [("sni", "allow"), ("ip", "deny")]);
    // Answered by the resolver: the SNI holds and the bytes pass untouched.
    resolved(&h, dst);
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    tokio::time::timeout(PROMPT, client.read_exact(&mut echoed)).await.expect("in time").expect("echo");
    assert_eq!(echoed, ALLOWED_HELLO);
    h.stop().await;
}
