//! The answer cache: positive upstream answers kept for their smallest TTL
//! (bounded in time and in entries) so repeat queries are answered locally.
//!
//! Only answers are cached, never decisions: every query is still decided
//! and audited before the cache is consulted, so a policy change applies
//! to the very next query.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Record, RecordType};

/// Cache key: lowercase name without trailing dot, type, class.
pub type CacheKey = (String, RecordType, DNSClass);

/// A cached answer: the sections to copy into the client's response.
#[derive(Clone, Debug)]
pub struct CachedAnswer {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

#[derive(Debug)]
struct Entry {
    answer: CachedAnswer,
    stored: Instant,
    expiry: Instant,
}

/// Bounded TTL cache.
#[derive(Debug)]
pub struct AnswerCache {
    capacity: usize,
    max_ttl: Duration,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers (0 disables it), none kept
    /// longer than `max_ttl` whatever the upstream said.
    pub fn new(capacity: usize, max_ttl: Duration) -> Self {
        AnswerCache { capacity, max_ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Stores `answer` for `ttl` from `now`. A zero TTL means "do not cache".
    pub fn insert(&self, key: CacheKey, answer: CachedAnswer, ttl: Duration, now: Instant) {
        let ttl = ttl.min(self.max_ttl);
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expiry > now);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.iter().min_by_key(|(_, e)| e.expiry).map(|(k, _)| k.clone())
            {
                entries.remove(&victim);
            }
        }
        entries.insert(key, Entry { answer, stored: now, expiry: now + ttl });
    }

    /// The answer for `key` at `now`, its TTLs lowered by the time it spent
    /// here so clients do not keep it past the upstream's deadline.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedAnswer> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key).filter(|e| e.expiry > now)?;
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for record in answer.answers.iter_mut().chain(answer.authorities.iter_mut()) {
            record.ttl = record.ttl.saturating_sub(age);
        }
        Some(answer)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The smallest TTL among `records`, which bounds how long the set may be
/// reused; `None` when there are none.
pub fn min_ttl(records: &[Record]) -> Option<Duration> {
    records.iter().map(|r| r.ttl).min().map(|ttl| Duration::from_secs(u64::from(ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};

    fn answer(ttl: u32) -> CachedAnswer {
        let name = Name::from_ascii("allowed.test.").expect("name");
        let record = Record::from_rdata(name, ttl, RData::A(A::new(198, 51, 100, 10)));
        CachedAnswer { response_code: ResponseCode::NoError, answers: vec![record], authorities: vec![] }
    }

    fn key(name: &str) -> CacheKey {
        (name.to_string(), RecordType::A, DNSClass::IN)
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let cache = AnswerCache::new(10, Duration::from_secs(3600));
        let now = Instant::now();
        cache.insert(key("allowed.test"), answer(60), Duration::from_secs(60), now);
        let later = cache.get(&key("allowed.test"), now + Duration::from_secs(10)).expect("cached");
        assert_eq!(later.answers[0].ttl, 50);
        assert!(cache.get(&key("allowed.test"), now + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn bounded_and_zero_ttl_not_cached() {
        let cache = AnswerCache::new(2, Duration::from_secs(3600));
        let now = Instant::now();
        cache.insert(key("zero.test"), answer(0), Duration::ZERO, now);
        assert!(cache.is_empty());
        for (i, name) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
            cache.insert(key(name), answer(60), Duration::from_secs(60 + i as u64), now);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("a.test"), now).is_none(), "soonest-expiring evicted");
    }
}
