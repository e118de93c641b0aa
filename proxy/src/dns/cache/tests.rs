use super::*;
use hickory_proto::op::{MessageType, OpCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::{A, CNAME, SOA};

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

fn a_record(ttl: u32) -> Record {
    Record::from_rdata(name("allowed.test."), ttl, RData::A(A::new(198, 51, 100, 10)))
}

fn answer(ttl: u32) -> CachedAnswer {
    CachedAnswer { response_code: ResponseCode::NoError, answers: vec![a_record(ttl)], authorities: vec![] }
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let data = SOA::new(name("ns.test."), name("admin.test."), 1, 3600, 600, 86_400, minimum);
    Record::from_rdata(name("test."), ttl, RData::SOA(data))
}

/// An upstream response with these sections.
fn upstream(code: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Message {
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.metadata.response_code = code;
    message.insert_answers(answers);
    message.insert_authorities(authorities);
    message
}

fn key(name: &str) -> CacheKey {
    (name.to_string(), RecordType::A, DNSClass::IN)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn ttl_counts_down_and_expires() {
    let cache = AnswerCache::new(10, secs(3600));
    let now = Instant::now();
    cache.insert(key("allowed.test"), answer(60), secs(60), now);
    let later = cache.get(&key("allowed.test"), now + secs(10)).expect("cached");
    assert_eq!(later.answers[0].ttl, 50);
    assert!(cache.get(&key("allowed.test"), now + secs(61)).is_none());
}

#[test]
fn bounded_and_zero_ttl_not_cached() {
    let cache = AnswerCache::new(2, secs(3600));
    let now = Instant::now();
    cache.insert(key("zero.test"), answer(0), Duration::ZERO, now);
    assert!(cache.is_empty());
    for (i, name) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
        cache.insert(key(name), answer(60), secs(60 + i as u64), now);
    }
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&key("a.test"), now).is_none(), "soonest-expiring evicted");
}

#[test]
fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum_capped() {
    assert_eq!(negative_ttl(&[soa(300, 60)]), Some(secs(60)));
    assert_eq!(negative_ttl(&[soa(30, 600)]), Some(secs(30)));
    assert_eq!(negative_ttl(&[soa(86_400, 86_400)]), Some(MAX_NEGATIVE_TTL));
    assert_eq!(negative_ttl(&[]), None);
    assert_eq!(negative_ttl(&[a_record(60)]), None, "only an SOA says how long a name is missing");
}

#[test]
fn positive_answers_live_as_long_as_their_shortest_record() {
    let (served, ttl) = CachedAnswer::from_upstream(upstream(ResponseCode::NoError, vec![a_record(90)], vec![]));
    assert_eq!((served.response_code, served.answers.len(), ttl), (ResponseCode::NoError, 1, Some(secs(90))));
}

#[test]
fn nxdomain_and_nodata_are_cached_only_with_an_soa() {
    for code in [ResponseCode::NXDomain, ResponseCode::NoError] {
        let (served, ttl) = CachedAnswer::from_upstream(upstream(code, vec![], vec![soa(300, 60)]));
        assert_eq!(ttl, Some(secs(60)), "{code:?}");
        assert_eq!((served.response_code, served.authorities[0].ttl), (code, 60), "SOA served with the negative TTL");
        let (_, without) = CachedAnswer::from_upstream(upstream(code, vec![], vec![]));
        assert_eq!(without, None, "{code:?} without an SOA is not cached");
    }
    let (_, servfail) = CachedAnswer::from_upstream(upstream(ResponseCode::ServFail, vec![], vec![soa(300, 60)]));
    assert_eq!(servfail, None);
}

#[test]
fn a_cname_chain_before_nxdomain_bounds_the_negative_ttl() {
    let chain = Record::from_rdata(name("alias.test."), 20, RData::CNAME(CNAME(name("gone.test."))));
    let (served, ttl) = CachedAnswer::from_upstream(upstream(ResponseCode::NXDomain, vec![chain], vec![soa(300, 60)]));
    assert_eq!((ttl, served.authorities[0].ttl), (Some(secs(20)), 20));
}

#[test]
fn a_cached_negative_answer_keeps_its_code_and_counts_its_soa_down() {
    let cache = AnswerCache::new(10, secs(86_400));
    let now = Instant::now();
    let (served, ttl) = CachedAnswer::from_upstream(upstream(ResponseCode::NXDomain, vec![], vec![soa(300, 60)]));
    cache.insert(key("missing.test"), served, ttl.expect("cacheable"), now);
    let hit = cache.get(&key("missing.test"), now + secs(15)).expect("cached");
    assert_eq!((hit.response_code, hit.answers.len()), (ResponseCode::NXDomain, 0));
    assert!(matches!(hit.authorities[0].data, RData::SOA(_)));
    assert_eq!(hit.authorities[0].ttl, 45);
    assert!(cache.get(&key("missing.test"), now + secs(61)).is_none(), "expired with the SOA's TTL");
}
