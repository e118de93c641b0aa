//! `#[repr(C)]` mirror of `src/bpf/bridle.h`: the structs that cross the
//! kernel boundary. Field meanings and byte orders are documented in the
//! header; the layout test below fails if the two drift apart.

/// `BRIDLE_CONFIG_MAGIC`: a config slot without it makes every connect fail.
pub const CONFIG_MAGIC: u32 = 0x4252_444c;
/// `BRIDLE_ABI_VERSION`.
pub const ABI_VERSION: u32 = 5;
/// `BRIDLE_SELECT_NETNS`: appliance mode (guard by network namespace).
pub const SELECT_NETNS: u32 = 1;
/// `BRIDLE_MAX_OWN_PORTS`.
pub const MAX_OWN_PORTS: usize = 16;

/// `BRIDLE_MAX_GATEWAY_PORTS`.
pub const MAX_GATEWAY_PORTS: usize = 4;

/// `struct bridle_orig_dst`: where a redirected socket was going.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawOrigDst {
    /// IPv4 address, network order (family AF_INET).
    pub ip4: u32,
    /// IPv6 address words, network order (family AF_INET6; may be v4-mapped).
    pub ip6: [u32; 4],
    /// Port, host order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// Thread-group id of the process that called `connect()`.
    pub pid: u32,
    /// cgroup v2 id of that process.
    pub cgroup_id: u64,
}

/// `struct bridle_peer_key`: the redirected socket's local address (v4 as
/// v4-mapped IPv6), i.e. the peer the proxy sees on accept.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawPeerKey {
    /// IPv6 address words, network order.
    pub ip6: [u32; 4],
    /// Port, host order.
    pub port: u16,
    /// Explicit padding.
    pub _pad: u16,
}

/// `struct bridle_config`: the single entry of the `config` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// [`CONFIG_MAGIC`].
    pub magic: u32,
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// Proxy IPv4, network order.
    pub proxy_ip4: u32,
    /// Proxy IPv6, network order; zero = no IPv6 proxy (IPv6 TCP refused).
    pub proxy_ip6: [u32; 4],
    /// Resolver IPv4, network order.
    pub dns_ip4: u32,
    /// Resolver IPv6, network order; zero = IPv6 DNS refused.
    pub dns_ip6: [u32; 4],
    /// Proxy port, host order.
    pub proxy_port: u16,
    /// Resolver port, host order.
    pub dns_port: u16,
    /// Ports guarded sockets may never reach, host order, 0 = unused.
    pub own_ports: [u16; MAX_OWN_PORTS],
    /// [`SELECT_NETNS`] or 0.
    pub flags: u32,
    /// Depth of `exempt_cgroup` below the cgroup root.
    pub exempt_level: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Bridle's own cgroup id (appliance mode), 0 = none.
    pub exempt_cgroup: u64,
    /// The live generation of the verdict cache.
    pub verdict_generation: u64,
    /// Bridle's agent-facing ports, reached on loopback unredirected, host
    /// order, 0 = unused.
    pub gateway_ports: [u16; MAX_GATEWAY_PORTS],
    /// One more exempt process, by its pid in the initial pid namespace
    /// (the container runtime's embedded DNS), 0 = none.
    pub exempt_tgid: u32,
    /// Explicit padding.
    pub _pad2: u32,
    /// `exempt_tgid`'s cgroup v2 id: the pid is exempt only in it (a
    /// process that reuses the pid of a restarted runtime is not).
    pub exempt_tgid_cgroup: u64,
}

/// `struct bridle_dest_key`: a destination in the verdict cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawDestKey {
    /// IPv6 address words, network order (IPv4 as v4-mapped).
    pub ip6: [u32; 4],
    /// Port, host order.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// `struct bridle_verdict`: a cached deny, live while its generation is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawVerdict {
    /// Compared with `RawConfig::verdict_generation`.
    pub generation: u64,
}

#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
mod pod {
    use super::{RawConfig, RawDestKey, RawOrigDst, RawPeerKey, RawVerdict};
    // SAFETY: all three are #[repr(C)], contain only integers and integer
    // arrays, have explicit padding fields (no uninitialised bytes), and are
    // valid for every bit pattern, which is what aya::Pod requires.
    unsafe impl aya::Pod for RawOrigDst {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RawPeerKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RawConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RawDestKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RawVerdict {}
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, mem::offset_of};

    use super::*;

    /// What the host C compiler measured (build.rs runs layout_probe.c).
    fn c_layout() -> HashMap<String, usize> {
        include_str!(concat!(env!("OUT_DIR"), "/layout.txt"))
            .lines()
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    fn check(c: &HashMap<String, usize>, key: &str, rust: usize) {
        assert_eq!(c.get(key).copied(), Some(rust), "bridle.h vs abi.rs: {key}");
    }

    #[test]
    fn layout_matches_bridle_h() {
        let c = c_layout();
        macro_rules! strukt {
            ($c_name:literal, $ty:ty, [$($field:ident),*]) => {
                check(&c, concat!($c_name, " size"), size_of::<$ty>());
                check(&c, concat!($c_name, " align"), align_of::<$ty>());
                $(check(&c, concat!($c_name, ".", stringify!($field)), offset_of!($ty, $field));)*
            };
        }
        strukt!("bridle_orig_dst", RawOrigDst, [ip4, ip6, port, family, proto, pid, cgroup_id]);
        strukt!("bridle_peer_key", RawPeerKey, [ip6, port]);
        strukt!(
            "bridle_config",
            RawConfig,
            [
                magic,
                abi_version,
                proxy_ip4,
                proxy_ip6,
                dns_ip4,
                dns_ip6,
                proxy_port,
                dns_port,
                own_ports,
                flags,
                exempt_level,
                exempt_cgroup,
                verdict_generation,
                gateway_ports,
                exempt_tgid,
                exempt_tgid_cgroup
            ]
        );
        strukt!("bridle_dest_key", RawDestKey, [ip6, port, proto]);
        strukt!("bridle_verdict", RawVerdict, [generation]);
        check(&c, "BRIDLE_CONFIG_MAGIC", CONFIG_MAGIC as usize);
        check(&c, "BRIDLE_ABI_VERSION", ABI_VERSION as usize);
        check(&c, "BRIDLE_MAX_OWN_PORTS", MAX_OWN_PORTS);
        check(&c, "BRIDLE_MAX_GATEWAY_PORTS", MAX_GATEWAY_PORTS);
        check(&c, "BRIDLE_SELECT_NETNS", SELECT_NETNS as usize);
    }
}
