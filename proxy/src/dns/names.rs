//! The IP → name map filled from answers, so the proxy can name a raw-IP
//! connect by the query that produced the IP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::origin::OriginalDestinations;

/// IP → the names answered with it (each with its expiry), bounded. A name
/// is the one the client asked for (not a CNAME target), lowercase,
/// without trailing dot, because that is what the agent meant to reach and
/// what policy names. One IP serves many names (shared hosting, CDNs), so
/// each is kept: a name the agent claims for an address (a Host header, an
/// SNI Bridle will not verify) counts only if it is among them.
#[derive(Debug)]
pub struct NameMap {
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, Vec<(String, Instant)>>>,
}

/// Names kept per IP; past it the one closest to expiring goes.
const NAMES_PER_IP: usize = 16;

/// How long an answer is remembered at least, whatever its TTL: an agent
/// dials right after it resolves, and answers with a TTL of 0 or a few
/// seconds would otherwise be gone before the connect they led to.
pub const MIN_REMEMBERED: Duration = Duration::from_secs(60);

impl NameMap {
    pub fn new(capacity: usize) -> Self {
        NameMap { capacity: capacity.max(1), entries: Mutex::new(HashMap::new()) }
    }

    /// Records that `name` resolved to `ip` for `ttl` (at least
    /// [`MIN_REMEMBERED`]) from `now`; it becomes the name `ip` is named by.
    pub fn insert(&self, ip: IpAddr, name: &str, ttl: Duration, now: Instant) {
        // An IPv4-mapped IPv6 address names the same host as its IPv4 form.
        let ip = ip.to_canonical();
        let expiry = now + ttl.max(MIN_REMEMBERED);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&ip) {
            entries.retain(|_, names| {
                names.retain(|(_, expiry)| *expiry > now);
                !names.is_empty()
            });
            // Still full: drop the IP whose last name expires first; the
            // O(n) scan only happens when the map is full of live entries.
            if entries.len() >= self.capacity
                && let Some(victim) = entries.iter().min_by_key(|(_, names)| latest_expiry(names)).map(|(ip, _)| *ip)
            {
                entries.remove(&victim);
            }
        }
        let names = entries.entry(ip).or_default();
        names.retain(|(known, expiry)| known != name && *expiry > now);
        if names.len() >= NAMES_PER_IP
            && let Some(soonest) = names.iter().enumerate().min_by_key(|(_, (_, expiry))| *expiry).map(|(i, _)| i)
        {
            names.remove(soonest);
        }
        // Last is newest: that name names the IP.
        names.push((name.to_string(), expiry));
    }

    /// The name `ip` was last answered for, if that answer is still valid.
    pub fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.name_at(ip, Instant::now())
    }

    /// [`NameMap::name_for`] as of `now`.
    pub fn name_at(&self, ip: IpAddr, now: Instant) -> Option<String> {
        let ip = ip.to_canonical();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let names = entries.get(&ip)?;
        names.iter().rev().find(|(_, expiry)| *expiry > now).map(|(name, _)| name.clone())
    }

    /// Whether `name` (any case, trailing dot or not) was answered with
    /// `ip` and that answer is still remembered.
    pub fn answered(&self, ip: IpAddr, name: &str) -> bool {
        self.answered_at(ip, name, Instant::now())
    }

    /// [`NameMap::answered`] as of `now`.
    pub fn answered_at(&self, ip: IpAddr, name: &str, now: Instant) -> bool {
        let ip = ip.to_canonical();
        let name = name.strip_suffix('.').unwrap_or(name);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&ip)
            .is_some_and(|names| names.iter().any(|(known, expiry)| *expiry > now && known.eq_ignore_ascii_case(name)))
    }

    /// IPs with names.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn latest_expiry(names: &[(String, Instant)]) -> Option<Instant> {
    names.iter().map(|(_, expiry)| *expiry).max()
}

/// An [`OriginalDestinations`] source whose names come from the resolver:
/// wrap the redirector (or a test source) with it and hand it to the proxy.
#[derive(Debug)]
pub struct WithDnsNames<O> {
    pub inner: O,
    pub names: Arc<NameMap>,
}

impl<O: OriginalDestinations> OriginalDestinations for WithDnsNames<O> {
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.inner.lookup(peer)
    }

    fn origin(&self, peer: SocketAddr) -> Option<crate::origin::Origin> {
        self.inner.origin(peer)
    }

    fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.names.name_for(ip).or_else(|| self.inner.name_for(ip))
    }

    fn resolved(&self, ip: IpAddr, name: &str) -> bool {
        self.names.answered(ip, name) || self.inner.resolved(ip, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn entries_expire_and_mapped_v6_matches_v4() {
        let map = NameMap::new(10);
        let now = Instant::now();
        map.insert(ip("198.51.100.10"), "allowed.test", Duration::from_secs(300), now);
        assert_eq!(map.name_at(ip("::ffff:198.51.100.10"), now).as_deref(), Some("allowed.test"));
        assert_eq!(map.name_at(ip("198.51.100.10"), now + Duration::from_secs(301)), None);
    }

    #[test]
    fn short_ttls_are_remembered_for_the_connect_they_lead_to() {
        let map = NameMap::new(10);
        let now = Instant::now();
        map.insert(ip("198.51.100.10"), "zero.test", Duration::ZERO, now);
        assert!(map.answered_at(ip("198.51.100.10"), "zero.test", now + MIN_REMEMBERED / 2));
        assert!(!map.answered_at(ip("198.51.100.10"), "zero.test", now + MIN_REMEMBERED));
    }

    #[test]
    fn every_name_answered_with_an_ip_is_kept_and_the_last_names_it() {
        let map = NameMap::new(10);
        let now = Instant::now();
        let shared = ip("198.51.100.20");
        map.insert(shared, "a.cdn.test", Duration::from_secs(300), now);
        map.insert(shared, "b.cdn.test", Duration::from_secs(300), now);
        assert_eq!(map.name_at(shared, now).as_deref(), Some("b.cdn.test"));
        assert!(map.answered_at(shared, "a.cdn.test", now));
        assert!(map.answered_at(shared, "A.CDN.test.", now), "any case, trailing dot");
        assert!(!map.answered_at(shared, "c.cdn.test", now));
        assert!(!map.answered_at(ip("198.51.100.21"), "a.cdn.test", now));
        // Answered again: it names the IP once more.
        map.insert(shared, "a.cdn.test", Duration::from_secs(300), now);
        assert_eq!(map.name_at(shared, now).as_deref(), Some("a.cdn.test"));
        for i in 0..2 * NAMES_PER_IP {
            map.insert(shared, &format!("n{i}.test"), Duration::from_secs(300 + i as u64), now);
        }
        assert!(!map.answered_at(shared, "n0.test", now), "the soonest to expire went");
        assert!(map.answered_at(shared, &format!("n{}.test", 2 * NAMES_PER_IP - 1), now));
    }

    #[test]
    fn full_map_evicts_the_soonest_expiring() {
        let map = NameMap::new(2);
        let now = Instant::now();
        map.insert(ip("198.51.100.1"), "short.test", Duration::from_secs(100), now);
        map.insert(ip("198.51.100.2"), "long.test", Duration::from_secs(1000), now);
        map.insert(ip("198.51.100.3"), "new.test", Duration::from_secs(500), now);
        assert_eq!(map.len(), 2);
        assert_eq!(map.name_at(ip("198.51.100.1"), now), None);
        assert_eq!(map.name_at(ip("198.51.100.2"), now).as_deref(), Some("long.test"));
    }

    #[test]
    fn wrapped_origins_take_names_from_the_resolver() {
        let inner = crate::origin::StaticOrigins::new();
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let dst: SocketAddr = "198.51.100.10:443".parse().expect("addr");
        inner.insert(peer, dst);
        let names = Arc::new(NameMap::new(4));
        names.insert(dst.ip(), "allowed.test", Duration::from_secs(60), Instant::now());
        let origins = WithDnsNames { inner, names };
        assert_eq!(origins.lookup(peer), Some(dst));
        assert_eq!(origins.name_for(dst.ip()).as_deref(), Some("allowed.test"));
    }
}
