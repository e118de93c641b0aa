//! Allowed names are answered, denied ones refused with the reason on the
//! record, answers are cached and mapped IP → name.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use bridle_engine::config::DenyResponse;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::{Harness, addresses, big_txt, dig, tcp_query, udp_query};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_name_is_answered_with_the_authority_address_over_udp_and_tcp() {
    let h = Harness::start(|_| {}).await;
    let udp = udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&udp), ["198.51.100.10".parse::<std::net::Ipv4Addr>().expect("ip")]);
    let tcp = tcp_query(h.addr, "Allowed.Test.", RecordType::A).await;
    assert_eq!(addresses(&tcp), addresses(&udp));
    let decision = h.decision_for("allowed.test");
    assert_eq!(decision["decision"]["effect"], "allow");
    assert_eq!(decision["event"]["detail"]["qtype"], "A");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_and_tcp_gets_the_answer() {
    let h = Harness::start(|_| {}).await;
    let udp = dig(h.addr, &["allowed.test", "A"]).await;
    assert!(udp.contains("status: NOERROR"), "{udp}");
    assert!(udp.contains("198.51.100.10"), "{udp}");
    let tcp = dig(h.addr, &["+tcp", "allowed.test", "A"]).await;
    assert!(tcp.contains("status: NOERROR") && tcp.contains("198.51.100.10"), "{tcp}");
    let txt = dig(h.addr, &["+tcp", "txt.test", "TXT"]).await;
    assert!(txt.contains("\"bridle test record\""), "{txt}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_name_is_refused_and_the_audit_record_carries_the_reason() {
    let h = Harness::start(|_| {}).await;
    let out = dig(h.addr, &["denied.test", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(h.addr, &["+tcp", "denied.test", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    let answer = udp_query(h.addr, "denied.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(answer.answers.is_empty());
    assert_eq!(h.authority.count(), 0, "a denied query never reaches the upstream");
    let decision = h.decision_for("denied.test");
    assert_eq!(decision["decision"]["effect"], "deny");
    assert_eq!(decision["decision"]["reason"], "denied.test is off limits");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_config_answers_denied_names_with_nxdomain() {
    let h = Harness::start(|c| c.deny_response = DenyResponse::Nxdomain).await;
    let out = dig(h.addr, &["denied.test", "A"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let answer = tcp_query(h.addr, "denied.test.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    // A real NXDOMAIN from the authority passes through unchanged.
    let missing = udp_query(h.addr, "missing.test.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answer_is_served_after_the_authority_stops() {
    let mut h = Harness::start(|_| {}).await;
    let first = udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(h.authority.count(), 1);
    h.authority.stop().await;
    let again = dig(h.addr, &["allowed.test", "A"]).await;
    assert!(again.contains("198.51.100.10"), "{again}");
    let cached = tcp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(addresses(&cached), addresses(&first));
    assert!(cached.answers[0].ttl <= first.answers[0].ttl);
    assert_eq!(h.authority.count(), 1, "repeat queries were answered locally");
    // Every repeat is still decided and audited.
    let decisions = h.records().into_iter().filter(|r| r["event"]["detail"]["qname"] == "allowed.test").count();
    assert_eq!(decisions, 3);
    // A name never cached now fails (no upstream): SERVFAIL, not a hang.
    let uncached = udp_query(h.addr, "txt.test.", RecordType::TXT).await;
    assert_eq!(uncached.metadata.response_code, ResponseCode::ServFail);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_fill_the_ip_to_name_map() {
    let h = Harness::start(|_| {}).await;
    let ip: IpAddr = "198.51.100.10".parse().expect("ip");
    assert_eq!(h.names.name_for(ip), None);
    udp_query(h.addr, "ALLOWED.test.", RecordType::A).await;
    assert_eq!(h.names.name_for(ip).as_deref(), Some("allowed.test"));
    let denied: IpAddr = "198.51.100.11".parse().expect("ip");
    udp_query(h.addr, "denied.test.", RecordType::A).await;
    assert_eq!(h.names.name_for(denied), None, "refused queries teach nothing");
    // Pushed out of the map by other names of the address, then answered
    // again from the cache: known again.
    let now = std::time::Instant::now();
    for i in 0..32 {
        h.names.insert(ip, &format!("other{i}.test"), std::time::Duration::from_secs(3600), now);
    }
    assert!(!h.names.answered(ip, "allowed.test"));
    udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert!(h.names.answered(ip, "allowed.test"), "a cached answer teaches the map again");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upstream_answer_is_fetched_over_tcp_and_sized_for_each_client() {
    let h = Harness::start(|_| {}).await;
    // dig advertises 1232 bytes of EDNS: the ~800-byte answer fits.
    let out = dig(h.addr, &["big.test", "TXT"]).await;
    assert!(out.contains("status: NOERROR") && out.contains(&big_txt()[7]), "{out}");
    assert!(!out.contains(" tc "), "not truncated for an EDNS client: {out}");
    assert_eq!(h.authority.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(h.authority.tcp_queries.load(Ordering::SeqCst), 1, "TC from upstream → retried over TCP");
    // A plain 512-byte UDP client gets TC (from the cache now) and
    // then the whole answer over TCP, as a stub resolver would.
    let udp = udp_query(h.addr, "big.test.", RecordType::TXT).await;
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    let tcp = tcp_query(h.addr, "big.test.", RecordType::TXT).await;
    assert_eq!(tcp.answers.len(), 1);
    assert_eq!(h.authority.count(), 2, "both later answers came from the cache");
    h.stop().await;
}
