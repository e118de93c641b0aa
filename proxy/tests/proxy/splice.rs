//! Allowed connections are spliced both ways; denied ones close at once.

use std::sync::Arc;
use std::time::Duration;

use bridle_engine::approvals::Approvals;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

#[tokio::test]
async fn allowed_sni_is_spliced_both_ways_with_half_close() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"bye").await;
    resolved(&h, dst);
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    // The echo proves the peeked bytes went upstream first and came back.
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    client.read_exact(&mut echoed).await.expect("echo of hello");
    assert_eq!(echoed, ALLOWED_HELLO);
    client.write_all(b"ping").await.expect("ping");
    client.shutdown().await.expect("half-close");
    // After our write side closed, the rest still arrives.
    assert_eq!(read_to_end(&mut client).await, b"pingbye");
    let decision = h.last_decision();
    assert_eq!(decision["event"]["detail"]["named_by"], "sni");
    assert_eq!(decision["event"]["detail"]["name"], "allowed.test");
    assert_eq!(decision["decision"]["effect"], "allow");
    h.stop().await;
}

#[tokio::test]
async fn denied_sni_closes_at_once_and_audits_the_reason() {
    let h = Harness::start(POLICY, |_| {}).await;
    let dst = upstream(b"", b"").await;
    resolved(&h, dst);
    let mut client = h.connect_to(dst).await;
    client.write_all(DENIED_HELLO).await.expect("hello");
    assert!(reset_at_once(&mut client).await, "the agent sees a reset");
    let decision = h.last_decision();
    assert_eq!(decision["decision"]["effect"], "deny");
    assert_eq!(decision["decision"]["reason"], "denied.test is off limits");
    assert_eq!(decision["event"]["detail"]["sni"], "denied.test");
    assert_eq!(decision["event"]["kind"], "net.connect");
    h.stop().await;
}

const ASK_EVERYTHING: &str = r#"
    @id("ask-everything")
    @ask
    @reason("needs a person")
    permit (principal, action == Net::Action::"Connect", resource);
"#;

async fn first_pending(approvals: &Approvals) -> bridle_engine::approvals::PendingView {
    loop {
        if let Some(pending) = approvals.pending().into_iter().next() {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_ask_waits_for_a_person_and_an_approval_lets_it_through() {
    let approvals = Arc::new(Approvals::new(Duration::from_secs(10), None));
    let h = Harness::start_with(ASK_EVERYTHING, |_| {}, Some(Arc::clone(&approvals))).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let pending = first_pending(&approvals).await;
    assert_eq!(pending.reason.as_deref(), Some("needs a person"));
    approvals.resolve(&pending.id, true, "tester").expect("approve");
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    client.read_exact(&mut echoed).await.expect("spliced after approval");
    let decision = h.last_decision();
    assert_eq!(decision["decision"]["effect"], "allow");
    assert_eq!(decision["decision"]["reason"], "approved by tester");
    h.stop().await;
}

#[tokio::test]
async fn a_denied_ask_is_refused_with_who_denied_it() {
    let approvals = Arc::new(Approvals::new(Duration::from_secs(10), None));
    let h = Harness::start_with(ASK_EVERYTHING, |_| {}, Some(Arc::clone(&approvals))).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let id = first_pending(&approvals).await.id;
    approvals.resolve(&id, false, "tester").expect("deny");
    assert!(closed_at_once(&mut client).await);
    assert_eq!(h.last_decision()["decision"]["reason"], "denied by tester");
    h.stop().await;
}

#[tokio::test]
async fn without_a_broker_an_ask_is_refused_with_the_approval_reason() {
    let policy = r#"
        @id("ask-everything")
        @ask
        @reason("needs a person")
        permit (principal, action == Net::Action::"Connect", resource);
    "#;
    let h = Harness::start(policy, |_| {}).await;
    let dst = upstream(b"", b"").await;
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    assert!(closed_at_once(&mut client).await);
    let decision = h.last_decision();
    assert_eq!(decision["decision"]["effect"], "deny");
    let reason = decision["decision"]["reason"].as_str().expect("reason");
    assert!(reason.starts_with(bridle_proxy::decide::ASK_REASON), "{reason}");
    h.stop().await;
}

#[tokio::test]
async fn no_original_destination_is_refused_and_noted() {
    let h = Harness::start(POLICY, |_| {}).await;
    let mut client = h.connect_unrecorded().await;
    assert!(reset_at_once(&mut client).await, "the agent sees a reset");
    let records = h.records();
    let notice = records.iter().find(|r| r["type"] == "notice").expect("a notice");
    assert_eq!(notice["component"], "proxy");
    assert!(notice["message"].as_str().expect("message").contains("no recorded original destination"));
    assert!(records.iter().all(|r| r["type"] != "decision"));
    h.stop().await;
}

#[tokio::test]
async fn original_destination_pointing_at_the_proxy_is_refused() {
    let h = Harness::start(POLICY, |_| {}).await;
    let mut client = h.connect_to(h.addr).await;
    assert!(closed_at_once(&mut client).await);
    assert!(h.records().iter().any(|r| r["type"] == "notice"));
    h.stop().await;
}

#[tokio::test]
async fn idle_spliced_connection_is_closed_after_the_idle_timeout() {
    let h = Harness::start(POLICY, |c| c.idle_timeout = std::time::Duration::from_millis(200)).await;
    let dst = upstream(b"", b"").await;
    resolved(&h, dst);
    let mut client = h.connect_to(dst).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    let mut echoed = vec![0u8; ALLOWED_HELLO.len()];
    client.read_exact(&mut echoed).await.expect("echo");
    // Nothing moves now: the proxy closes within the idle timeout (plus slack).
    assert!(closed_at_once(&mut client).await);
    h.stop().await;
}

#[tokio::test]
async fn unreachable_original_destination_is_refused() {
    let h = Harness::start(POLICY, |_| {}).await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    resolved(&h, closed);
    let mut client = h.connect_to(closed).await;
    client.write_all(ALLOWED_HELLO).await.expect("hello");
    assert!(closed_at_once(&mut client).await);
    assert_eq!(h.last_decision()["decision"]["effect"], "allow");
    h.stop().await;
}
