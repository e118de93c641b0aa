//! Typed views of the map contents: the config the loader writes and the
//! original destinations the programs record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{
    Error, Result,
    abi::{
        ABI_VERSION, CONFIG_MAGIC, MAX_GATEWAY_PORTS, MAX_OWN_PORTS, RawConfig, RawDestKey, RawOrigDst, RawPeerKey,
        SELECT_NETNS,
    },
};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const DNS_PORT: u16 = 53;

/// Which sockets the programs guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// Host mode: every socket of the cgroup the programs are attached to.
    #[default]
    Cgroup,
    /// Appliance mode: programs on the cgroup root guard sockets in the
    /// network namespaces added with `Redirector::guard_netns`, except those
    /// of tasks under Bridle's own cgroup.
    Netns {
        /// Bridle's own cgroup id (its directory's inode).
        exempt_cgroup: u64,
        /// Its depth below the cgroup root (the root is 0).
        exempt_level: u32,
        /// One more exempt process, by pid in the initial pid namespace:
        /// the container runtime (dockerd answers DNS from inside the
        /// namespace); 0 = none.
        runtime_pid: u32,
        /// `runtime_pid`'s cgroup v2 id: exempt only while it is there.
        runtime_cgroup: u64,
    },
}

/// Where guarded traffic goes, and what it may never reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectConfig {
    /// Which sockets are guarded.
    pub selection: Selection,
    /// The transparent proxy's IPv4 listener (guarded IPv4 and v4-mapped TCP).
    pub proxy_v4: std::net::SocketAddrV4,
    /// The proxy's IPv6 address (same port); `None` refuses IPv6 TCP.
    pub proxy_ip6: Option<Ipv6Addr>,
    /// The resolver's IPv4 listener (guarded UDP/53).
    pub dns_v4: std::net::SocketAddrV4,
    /// The resolver's IPv6 address (same port); `None` refuses IPv6 DNS.
    pub dns_ip6: Option<Ipv6Addr>,
    /// Bridle's own ports (console, API, metrics, proxy admin). The proxy
    /// port, and the resolver port unless it is 53, are added automatically.
    /// A connect to one of these ports, on any address, is refused (EPERM):
    /// the programs cannot enumerate every local address an own port is bound
    /// on, so the port alone decides.
    pub own_ports: Vec<u16>,
    /// Bridle's agent-facing ports (the MCP gateway's): a guarded TCP
    /// connect to one of them on a loopback address reaches it directly,
    /// unredirected; on any other address it is an ordinary destination.
    pub gateway_ports: Vec<u16>,
}

impl RedirectConfig {
    /// The kernel struct, or an error if it does not fit (too many ports,
    /// zero ports).
    pub fn to_raw(&self, verdict_generation: u64) -> Result<RawConfig> {
        if self.proxy_v4.port() == 0 || self.dns_v4.port() == 0 {
            return Err(Error::Config("proxy and resolver ports must not be 0".into()));
        }
        let mut ports: Vec<u16> = self.own_ports.clone();
        ports.push(self.proxy_v4.port());
        if self.dns_v4.port() != DNS_PORT {
            ports.push(self.dns_v4.port());
        }
        ports.retain(|&p| p != 0);
        ports.sort_unstable();
        ports.dedup();
        if ports.contains(&DNS_PORT) {
            return Err(Error::Config("port 53 cannot be an own port: DNS would be refused".into()));
        }
        if ports.len() > MAX_OWN_PORTS {
            return Err(Error::Config(format!(
                "{} own ports (with the proxy and resolver ports) exceed the kernel's {MAX_OWN_PORTS}",
                ports.len()
            )));
        }
        let mut gateway = self.gateway_ports.clone();
        gateway.sort_unstable();
        gateway.dedup();
        if let Some(port) = gateway.iter().find(|p| **p == 0 || **p == DNS_PORT || ports.contains(p)) {
            return Err(Error::Config(format!(
                "gateway port {port} cannot be 0, 53, or one of Bridle's own ports (they are refused)"
            )));
        }
        if gateway.len() > MAX_GATEWAY_PORTS {
            return Err(Error::Config(format!(
                "{} gateway ports exceed the kernel's {MAX_GATEWAY_PORTS}",
                gateway.len()
            )));
        }
        let mut gateway_ports = [0u16; MAX_GATEWAY_PORTS];
        gateway_ports[..gateway.len()].copy_from_slice(&gateway);
        let mut own_ports = [0u16; MAX_OWN_PORTS];
        own_ports[..ports.len()].copy_from_slice(&ports);
        let (flags, exempt_cgroup, exempt_level, exempt_tgid, exempt_tgid_cgroup) = match self.selection {
            Selection::Cgroup => (0, 0, 0, 0, 0),
            Selection::Netns { exempt_cgroup, exempt_level, runtime_pid, runtime_cgroup } => {
                (SELECT_NETNS, exempt_cgroup, exempt_level, runtime_pid, runtime_cgroup)
            }
        };
        Ok(RawConfig {
            magic: CONFIG_MAGIC,
            abi_version: ABI_VERSION,
            proxy_ip4: ip4_word(*self.proxy_v4.ip()),
            proxy_ip6: self.proxy_ip6.map(ip6_words).unwrap_or_default(),
            dns_ip4: ip4_word(*self.dns_v4.ip()),
            dns_ip6: self.dns_ip6.map(ip6_words).unwrap_or_default(),
            proxy_port: self.proxy_v4.port(),
            dns_port: self.dns_v4.port(),
            own_ports,
            flags,
            exempt_level,
            _pad: 0,
            exempt_cgroup,
            verdict_generation,
            gateway_ports,
            exempt_tgid,
            _pad2: 0,
            exempt_tgid_cgroup,
        })
    }
}

/// Transport protocol of a redirected socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proto {
    /// TCP (or MPTCP falling back to TCP).
    Tcp,
    /// Connected UDP to port 53.
    Udp,
    /// Anything the programs did not expect (never written today).
    Other(u8),
}

/// Where a redirected socket was originally going, and who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrigDst {
    /// The original destination as the application passed it (an IPv6
    /// socket's v4-mapped address stays v4-mapped; use `to_canonical`).
    pub addr: SocketAddr,
    /// TCP or UDP.
    pub proto: Proto,
    /// Process (thread-group) id that called `connect()`.
    pub pid: u32,
    /// cgroup v2 id of that process (the inode of its cgroup directory).
    pub cgroup_id: u64,
}

impl TryFrom<RawOrigDst> for OrigDst {
    type Error = Error;

    fn try_from(raw: RawOrigDst) -> Result<Self> {
        let ip = match raw.family {
            AF_INET => IpAddr::V4(Ipv4Addr::from(raw.ip4.to_ne_bytes())),
            AF_INET6 => IpAddr::V6(words_ip6(raw.ip6)),
            other => return Err(Error::Config(format!("orig_dst entry with family {other}"))),
        };
        let proto = match i32::from(raw.proto) {
            libc::IPPROTO_TCP => Proto::Tcp,
            libc::IPPROTO_UDP => Proto::Udp,
            _ => Proto::Other(raw.proto),
        };
        Ok(Self { addr: SocketAddr::new(ip, raw.port), proto, pid: raw.pid, cgroup_id: raw.cgroup_id })
    }
}

/// The by-peer map key for the address the proxy sees on accept().
pub(crate) fn peer_key(peer: SocketAddr) -> RawPeerKey {
    let ip6 = match peer {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
        SocketAddr::V6(v6) => *v6.ip(),
    };
    RawPeerKey { ip6: ip6_words(ip6), port: peer.port(), _pad: 0 }
}

/// The verdict-cache key for a destination.
pub(crate) fn dest_key(dst: SocketAddr, proto: Proto) -> RawDestKey {
    let ip = match dst.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let proto = match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
        Proto::Other(p) => p,
    };
    RawDestKey { ip6: ip6_words(ip), port: dst.port(), proto, _pad: 0 }
}

/// IPv4 as the u32 the kernel stores (network order in memory).
fn ip4_word(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn ip6_words(ip: Ipv6Addr) -> [u32; 4] {
    let o = ip.octets();
    std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

fn words_ip6(words: [u32; 4]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    for (chunk, w) in o.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    Ipv6Addr::from(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RedirectConfig {
        RedirectConfig {
            selection: Selection::Cgroup,
            proxy_v4: "127.0.0.1:15001".parse().expect("addr"),
            proxy_ip6: Some(Ipv6Addr::LOCALHOST),
            dns_v4: "127.0.0.1:15053".parse().expect("addr"),
            dns_ip6: None,
            own_ports: vec![18080, 18081],
            gateway_ports: vec![18090],
        }
    }

    #[test]
    fn raw_config_is_network_order_and_adds_own_listener_ports() {
        let raw = config().to_raw(0).expect("fits");
        assert_eq!(raw.proxy_ip4.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(raw.proxy_ip6[3].to_ne_bytes(), [0, 0, 0, 1]);
        assert_eq!(raw.dns_ip6, [0; 4]);
        assert_eq!(&raw.own_ports[..5], &[15001, 15053, 18080, 18081, 0]);
        assert_eq!(raw.gateway_ports, [18090, 0, 0, 0]);
        assert_eq!(raw.magic, CONFIG_MAGIC);
    }

    #[test]
    fn rejects_port_53_and_too_many_ports() {
        let mut c = config();
        c.own_ports = vec![53];
        assert!(matches!(c.to_raw(0), Err(Error::Config(_))));
        c.own_ports = (20000..20020).collect();
        assert!(matches!(c.to_raw(0), Err(Error::Config(_))));
    }

    #[test]
    fn a_gateway_port_cannot_be_refused_port_or_dns() {
        for bad in [vec![18080], vec![15001], vec![53], vec![0], vec![1, 2, 3, 4, 5]] {
            let mut c = config();
            c.gateway_ports = bad.clone();
            assert!(matches!(c.to_raw(0), Err(Error::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn orig_dst_round_trips_both_families() {
        let v4 = RawOrigDst {
            ip4: ip4_word(Ipv4Addr::new(198, 51, 100, 7)),
            port: 80,
            family: AF_INET,
            proto: 6,
            ..Default::default()
        };
        assert_eq!(OrigDst::try_from(v4).expect("v4").addr, "198.51.100.7:80".parse().expect("addr"));
        let ip6: Ipv6Addr = "2001:db8::7".parse().expect("ip6");
        let v6 = RawOrigDst { ip6: ip6_words(ip6), port: 443, family: AF_INET6, proto: 17, ..Default::default() };
        let got = OrigDst::try_from(v6).expect("v6");
        assert_eq!(got.addr, "[2001:db8::7]:443".parse().expect("addr"));
        assert_eq!(got.proto, Proto::Udp);
    }

    #[test]
    fn peer_key_maps_ipv4_into_ipv6() {
        let k = peer_key("127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(words_ip6(k.ip6), Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(k.port, 40000);
    }
}
