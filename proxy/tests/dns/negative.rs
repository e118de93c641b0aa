//! NXDOMAIN and NODATA answers are cached for their SOA's negative TTL
//! (RFC 2308), served with their code and SOA, and fetched again once it
//! runs out; without an SOA they are not cached.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::{BRIEF_NEGATIVE_TTL, Harness, NEGATIVE_TTL, tcp_query, udp_query};

/// The TTL of the answer's SOA, which must be its only authority record.
fn soa_ttl(message: &Message) -> u32 {
    assert_eq!(message.authorities.len(), 1, "{message:?}");
    let soa = &message.authorities[0];
    assert!(matches!(soa.data, RData::SOA(_)), "{soa:?}");
    soa.ttl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_nxdomain_is_answered_from_the_cache_with_its_soa() {
    let mut h = Harness::start(|_| {}).await;
    let first = udp_query(h.addr, "missing.test.", RecordType::A).await;
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&first), NEGATIVE_TTL, "served with min(SOA TTL, MINIMUM)");
    assert_eq!(h.authority.count(), 1);
    // Stopped, the authority could not answer: the next answer is the cache's.
    h.authority.stop().await;
    let again = tcp_query(h.addr, "Missing.Test.", RecordType::A).await;
    assert_eq!(again.metadata.response_code, ResponseCode::NXDomain);
    assert!(again.answers.is_empty());
    assert!(soa_ttl(&again) <= NEGATIVE_TTL);
    assert_eq!(h.authority.count(), 1, "the upstream saw one query");
    // Every repeat is still decided and audited.
    let decisions = h.records().into_iter().filter(|r| r["event"]["detail"]["qname"] == "missing.test").count();
    assert_eq!(decisions, 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata_is_cached_as_noerror_with_its_soa() {
    let h = Harness::start(|_| {}).await;
    for _ in 0..2 {
        let answer = udp_query(h.addr, "allowed.test.", RecordType::AAAA).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert!(soa_ttl(&answer) <= NEGATIVE_TTL);
    }
    assert_eq!(h.authority.count(), 1);
    // The empty AAAA answer says nothing about A.
    let a = udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(a.answers.len(), 1);
    assert_eq!(h.authority.count(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_answer_expires_with_its_soa_ttl() {
    let h = Harness::start(|_| {}).await;
    let first = udp_query(h.addr, "brief.missing.test.", RecordType::A).await;
    assert_eq!((first.metadata.response_code, soa_ttl(&first)), (ResponseCode::NXDomain, BRIEF_NEGATIVE_TTL));
    let cached = udp_query(h.addr, "brief.missing.test.", RecordType::A).await;
    assert_eq!(cached.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(h.authority.count(), 1, "answered from the cache");
    tokio::time::sleep(Duration::from_secs(u64::from(BRIEF_NEGATIVE_TTL)) + Duration::from_millis(200)).await;
    let fresh = udp_query(h.addr, "brief.missing.test.", RecordType::A).await;
    assert_eq!(fresh.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(h.authority.count(), 2, "expired, so asked upstream again");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_without_an_soa_is_not_cached() {
    let h = Harness::start(|_| {}).await;
    for _ in 0..2 {
        let answer = udp_query(h.addr, "nosoa.missing.test.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer.authorities.is_empty());
    }
    assert_eq!(h.authority.count(), 2, "each query went upstream");
    h.stop().await;
}
