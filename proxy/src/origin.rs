//! Where a redirected connection was originally going.
//!
//! The redirector rewrites a guarded `connect()` to the proxy listener and
//! records the original destination keyed by the client's local address,
//! which is what the proxy's `accept()` returns as the peer. The proxy asks
//! an [`OriginalDestinations`] source for it; tests use [`StaticOrigins`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use bridle_redirector_ebpf::{OrigDst, Proto, Redirector};

/// Where a redirected connection was going, and who made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub dst: SocketAddr,
    /// The process that called `connect()` (as the kernel saw it), where known.
    pub pid: Option<u32>,
}

/// A source of original destinations (and of names learned for IPs).
pub trait OriginalDestinations: Send + Sync {
    /// The original destination of the connection whose client address is
    /// `peer`, or `None` when nothing was recorded (the connection did not
    /// come through the redirector and must be refused).
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr>;

    /// [`OriginalDestinations::lookup`] with the connecting process, for
    /// sources that know it.
    fn origin(&self, peer: SocketAddr) -> Option<Origin> {
        self.lookup(peer).map(|dst| Origin { dst, pid: None })
    }

    /// The name Bridle's resolver answered with `ip`, if one is known and
    /// still valid. Used to name connections that carry no SNI or Host.
    fn name_for(&self, ip: IpAddr) -> Option<String> {
        let _ = ip;
        None
    }

    /// Whether Bridle's resolver answered `name` with `ip` (recently): the
    /// only proof that a name the agent claims for an address it dialled
    /// (a Host header, an SNI no upstream certificate will be checked
    /// against) belongs to it.
    fn resolved(&self, ip: IpAddr, name: &str) -> bool {
        let _ = (ip, name);
        false
    }

    /// Policy generation `generation` denies every TCP connect to `dst`
    /// whatever its name or process: a source backed by the kernel makes it
    /// refuse such connects itself (`ECONNREFUSED`) while that generation
    /// is live. Best effort: the proxy still decides whatever arrives.
    fn cache_deny(&self, dst: SocketAddr, generation: u64) {
        let _ = (dst, generation);
    }
}

/// Whether `name` (a host as the agent wrote it, lowercase, no port)
/// belongs to `ip`: an IP literal when it is that IP, a DNS name when
/// Bridle's resolver answered it with `ip`.
pub fn names_address(origins: &dyn OriginalDestinations, ip: IpAddr, name: &str) -> bool {
    match name.parse::<IpAddr>() {
        Ok(literal) => literal.to_canonical() == ip.to_canonical(),
        Err(_) => origins.resolved(ip, name),
    }
}

impl OriginalDestinations for Redirector {
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.origin(peer).map(|origin| origin.dst)
    }

    fn origin(&self, peer: SocketAddr) -> Option<Origin> {
        let orig = self.original_destination_by_peer(peer)?;
        let pid = (orig.pid != 0).then_some(orig.pid);
        tcp_destination(orig).map(|dst| Origin { dst, pid })
    }
}

/// The address to splice to for a recorded destination.
fn tcp_destination(orig: OrigDst) -> Option<SocketAddr> {
    // Only TCP entries belong to this listener; a UDP entry for the same
    // peer would be a DNS socket, never something to splice.
    if orig.proto != Proto::Tcp {
        return None;
    }
    // An IPv6 socket's v4-mapped destination is the IPv4 host it reaches.
    Some(SocketAddr::new(orig.addr.ip().to_canonical(), orig.addr.port()))
}

/// A fixed table of original destinations and names: the fake source the
/// tests use instead of the kernel.
#[derive(Debug, Default)]
pub struct StaticOrigins {
    destinations: Mutex<HashMap<SocketAddr, SocketAddr>>,
    names: Mutex<HashMap<IpAddr, Vec<String>>>,
}

impl StaticOrigins {
    /// An empty table: every lookup fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the client at `peer` was originally going to `dst`.
    pub fn insert(&self, peer: SocketAddr, dst: SocketAddr) {
        self.destinations.lock().unwrap_or_else(PoisonError::into_inner).insert(peer, dst);
    }

    /// Records that the resolver answered `name` with `ip`; the last name
    /// inserted names the IP.
    pub fn insert_name(&self, ip: IpAddr, name: impl Into<String>) {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).entry(ip).or_default().push(name.into());
    }

    /// Forgets every name of `ip`, as when the resolver's answers expire.
    pub fn forget_names(&self, ip: IpAddr) {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).remove(&ip);
    }
}

impl OriginalDestinations for StaticOrigins {
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.destinations.lock().unwrap_or_else(PoisonError::into_inner).get(&peer).copied()
    }

    fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner).get(&ip)?.last().cloned()
    }

    fn resolved(&self, ip: IpAddr, name: &str) -> bool {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.get(&ip).is_some_and(|names| names.iter().any(|known| known.eq_ignore_ascii_case(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orig(addr: &str, proto: Proto) -> OrigDst {
        OrigDst { addr: addr.parse().expect("addr"), proto, pid: 1, cgroup_id: 1 }
    }

    #[test]
    fn redirector_entries_become_canonical_tcp_destinations() {
        let mapped = orig("[::ffff:198.51.100.7]:443", Proto::Tcp);
        assert_eq!(tcp_destination(mapped), Some("198.51.100.7:443".parse().expect("addr")));
        let v6 = orig("[2001:db8::7]:22", Proto::Tcp);
        assert_eq!(tcp_destination(v6), Some("[2001:db8::7]:22".parse().expect("addr")));
        assert_eq!(tcp_destination(orig("198.51.100.7:53", Proto::Udp)), None);
    }

    #[test]
    fn static_origins_answer_what_was_inserted() {
        let origins = StaticOrigins::new();
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(origins.lookup(peer), None);
        origins.insert(peer, "198.51.100.7:443".parse().expect("addr"));
        origins.insert_name("198.51.100.7".parse().expect("ip"), "a.test");
        assert_eq!(origins.lookup(peer), Some("198.51.100.7:443".parse().expect("addr")));
        assert_eq!(origins.name_for("198.51.100.7".parse().expect("ip")).as_deref(), Some("a.test"));
        assert!(origins.resolved("198.51.100.7".parse().expect("ip"), "A.test"));
        assert!(!origins.resolved("198.51.100.7".parse().expect("ip"), "b.test"));
    }
}
