//! The IP → name map filled from answers, so the proxy can name a raw-IP
//! connect by the query that produced the IP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::origin::OriginalDestinations;

/// IP → (name, expiry), bounded. The name is the one the client asked for
/// (not a CNAME target), lowercase, without trailing dot, because that is
/// what the agent meant to reach and what policy names.
#[derive(Debug)]
pub struct NameMap {
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, (String, Instant)>>,
}

impl NameMap {
    pub fn new(capacity: usize) -> Self {
        NameMap { capacity: capacity.max(1), entries: Mutex::new(HashMap::new()) }
    }

    /// Records that `name` resolved to `ip` for `ttl` from `now`.
    pub fn insert(&self, ip: IpAddr, name: &str, ttl: Duration, now: Instant) {
        let ip = canonical(ip);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&ip) {
            entries.retain(|_, (_, expiry)| *expiry > now);
            // Still full: drop the entry closest to expiring; the O(n) scan
            // only happens when the map is full of live entries.
            if entries.len() >= self.capacity
                && let Some(victim) = entries.iter().min_by_key(|(_, (_, expiry))| *expiry).map(|(ip, _)| *ip)
            {
                entries.remove(&victim);
            }
        }
        entries.insert(ip, (name.to_string(), now + ttl));
    }

    /// The name `ip` was last answered for, if that answer is still valid.
    pub fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.name_at(ip, Instant::now())
    }

    /// [`NameMap::name_for`] as of `now`.
    pub fn name_at(&self, ip: IpAddr, now: Instant) -> Option<String> {
        let ip = canonical(ip);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&ip).filter(|(_, expiry)| *expiry > now).map(|(name, _)| name.clone())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An IPv4-mapped IPv6 address names the same host as its IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
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
        map.insert(ip("198.51.100.10"), "allowed.test", Duration::from_secs(5), now);
        assert_eq!(map.name_at(ip("::ffff:198.51.100.10"), now).as_deref(), Some("allowed.test"));
        assert_eq!(map.name_at(ip("198.51.100.10"), now + Duration::from_secs(6)), None);
    }

    #[test]
    fn full_map_evicts_the_soonest_expiring() {
        let map = NameMap::new(2);
        let now = Instant::now();
        map.insert(ip("192.0.2.1"), "short.test", Duration::from_secs(1), now);
        map.insert(ip("192.0.2.2"), "long.test", Duration::from_secs(100), now);
        map.insert(ip("192.0.2.3"), "new.test", Duration::from_secs(50), now);
        assert_eq!(map.len(), 2);
        assert_eq!(map.name_at(ip("192.0.2.1"), now), None);
        assert_eq!(map.name_at(ip("192.0.2.2"), now).as_deref(), Some("long.test"));
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
