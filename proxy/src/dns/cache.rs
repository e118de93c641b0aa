//! The answer cache: upstream answers kept for their smallest TTL (bounded
//! in time and in entries) so repeat queries are answered locally.
//!
//! Negative answers (NXDOMAIN, and NOERROR with an empty answer section:
//! NODATA) are cached as RFC 2308 says: for the smaller of the SOA's TTL and
//! its MINIMUM field, taken from the authority section, and not at all when
//! there is no SOA. They are served with their response code and their SOA,
//! whose TTL counts down like any other.
//!
//! Only answers are cached, never decisions: every query is still decided
//! and audited before the cache is consulted, so a policy change applies
//! to the very next query.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

/// Longest time a negative answer is reused, whatever the SOA says. RFC
/// 2308 §5 suggests one to three hours; the low end, because a name an agent
/// gets NXDOMAIN for is often one that is about to exist (a deploy preview,
/// a fresh bucket), while an hour still absorbs its retry loops.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3600);

/// Cache key: lowercase name without trailing dot, type, class.
pub type CacheKey = (String, RecordType, DNSClass);

/// A cached answer: the sections to copy into the client's response.
#[derive(Clone, Debug)]
pub struct CachedAnswer {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

impl CachedAnswer {
    /// The answer to serve for an upstream response, and how long it may
    /// be reused (`None`: not at all). Positive answers live as long as
    /// their shortest record; negative ones as long as their SOA allows
    /// (and no longer than a CNAME chain before it). A negative answer's
    /// SOA is served with that TTL, so a client downstream stops trusting
    /// it when this cache does.
    pub fn from_upstream(message: Message) -> (CachedAnswer, Option<Duration>) {
        let code = message.metadata.response_code;
        let negative = code == ResponseCode::NXDomain || (code == ResponseCode::NoError && message.answers.is_empty());
        let mut answer =
            CachedAnswer { response_code: code, answers: message.answers, authorities: message.authorities };
        if !negative {
            let ttl = if code == ResponseCode::NoError { min_ttl(&answer.answers) } else { None };
            return (answer, ttl);
        }
        let Some(soa_ttl) = negative_ttl(&answer.authorities) else { return (answer, None) };
        let ttl = min_ttl(&answer.answers).map_or(soa_ttl, |chain| chain.min(soa_ttl));
        let secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        for soa in answer.authorities.iter_mut().filter(|r| matches!(r.data, RData::SOA(_))) {
            soa.ttl = soa.ttl.min(secs);
        }
        (answer, Some(ttl))
    }
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

/// How long a negative answer with these authority records may be reused
/// (RFC 2308 §5): the smallest min(SOA TTL, SOA MINIMUM) among its SOAs,
/// at most [`MAX_NEGATIVE_TTL`]; `None` without an SOA.
pub fn negative_ttl(authorities: &[Record]) -> Option<Duration> {
    authorities
        .iter()
        .filter_map(|record| match &record.data {
            RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        })
        .min()
        .map(|secs| Duration::from_secs(u64::from(secs)).min(MAX_NEGATIVE_TTL))
}

#[cfg(test)]
mod tests;
