//! Load the embedded object, write the config, attach every program to a
//! cgroup, pin programs, maps and links, and read the original destinations.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, include_bytes_aligned,
    maps::{Array, HashMap, Map, MapData},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, SockOps, links::FdLink,
        links::PinnedLink,
    },
};

use crate::{
    Error, OrigDst, Proto, RedirectConfig, Result, Selection,
    abi::{ABI_VERSION, CONFIG_MAGIC, RawConfig, RawDestKey, RawOrigDst, RawPeerKey, RawVerdict, SELECT_NETNS},
    error::Step,
    maps::{dest_key, peer_key},
    mounts::ensure_bpffs,
};

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

/// Map names in redirect.bpf.c, in the order of [`Maps`].
const MAPS: [&str; 5] = ["orig_dst", "orig_by_peer", "config", "guarded_netns", "verdicts"];

#[derive(Clone, Copy, Debug)]
enum Kind {
    SockAddr,
    Sock,
    SockOps,
    Skb(CgroupSkbAttachType),
}

/// (function name in redirect.bpf.c, short name for steps and pins, kind).
/// sock_create first: raw sockets are refused before connects are
/// redirected; the packet filters next, before any address is rewritten.
const PROGRAMS: [(&str, &str, Kind); 14] = [
    ("bridle_sock_create", "sock_create", Kind::Sock),
    ("bridle_egress", "egress", Kind::Skb(CgroupSkbAttachType::Egress)),
    ("bridle_ingress", "ingress", Kind::Skb(CgroupSkbAttachType::Ingress)),
    ("bridle_egress_ns", "egress_ns", Kind::Skb(CgroupSkbAttachType::Egress)),
    ("bridle_ingress_ns", "ingress_ns", Kind::Skb(CgroupSkbAttachType::Ingress)),
    ("bridle_getpeername4", "getpeername4", Kind::SockAddr),
    ("bridle_getpeername6", "getpeername6", Kind::SockAddr),
    ("bridle_recvmsg4", "recvmsg4", Kind::SockAddr),
    ("bridle_recvmsg6", "recvmsg6", Kind::SockAddr),
    ("bridle_sockops", "sockops", Kind::SockOps),
    ("bridle_sendmsg4", "sendmsg4", Kind::SockAddr),
    ("bridle_sendmsg6", "sendmsg6", Kind::SockAddr),
    ("bridle_connect4", "connect4", Kind::SockAddr),
    ("bridle_connect6", "connect6", Kind::SockAddr),
];

/// The programs attached for a config: the packet filters of its mode
/// (appliance mode's, at the cgroup root, select packets by their socket's
/// namespace and cgroup; see redirect.bpf.c), and every other program.
fn programs(appliance: bool) -> impl Iterator<Item = (&'static str, &'static str, Kind)> {
    PROGRAMS.into_iter().filter(move |(func, _, kind)| !matches!(kind, Kind::Skb(_)) || optional(func) == appliance)
}

/// Programs whose refusal by the kernel leaves the rest attached (see
/// [`Redirector::packet_filter`]).
fn optional(func: &str) -> bool {
    func.ends_with("_ns")
}

/// What a set of pins steers to and guards ([`Redirector::inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The config carries this Bridle's magic and ABI version.
    pub configured: bool,
    /// Where guarded TCP goes.
    pub proxy: std::net::SocketAddrV4,
    /// Where guarded DNS goes.
    pub dns: std::net::SocketAddrV4,
    /// Whether IPv6 is steered to [::1] (else refused).
    pub ipv6: bool,
    /// Guarded network namespaces (appliance mode).
    pub guarded_netns: Vec<u64>,
}

/// The maps, whether this process created them or opened their pins.
#[derive(Debug)]
struct Maps {
    orig_dst: Map,
    orig_by_peer: Map,
    config: Map,
    guarded_netns: Map,
    verdicts: Map,
}

impl Maps {
    fn from_fn(mut open: impl FnMut(&'static str) -> Result<Map>) -> Result<Self> {
        let [orig_dst, orig_by_peer, config, guarded_netns, verdicts] = MAPS;
        Ok(Self {
            orig_dst: open(orig_dst)?,
            orig_by_peer: open(orig_by_peer)?,
            config: open(config)?,
            guarded_netns: open(guarded_netns)?,
            verdicts: open(verdicts)?,
        })
    }

    fn iter(&self) -> [(&'static str, &Map); 5] {
        let [a, b, c, d, e] = MAPS;
        [(a, &self.orig_dst), (b, &self.orig_by_peer), (c, &self.config), (d, &self.guarded_netns), (e, &self.verdicts)]
    }
}

/// The loaded and attached redirector. Dropping it leaves the programs
/// attached (the links are pinned): guarded sockets keep going to the proxy
/// port and fail there if Bridle is gone — fail closed. A later Bridle
/// re-adopts the pins ([`Redirector::attach_or_adopt`]); [`Redirector::detach`]
/// or [`Redirector::remove_pins`] detach.
#[derive(Debug)]
pub struct Redirector {
    maps: Maps,
    cgroup: PathBuf,
    pin_dir: PathBuf,
    links: Vec<PinnedLink>,
    config: RawConfig,
    adopted: bool,
    /// The packet filters are attached (appliance mode's need Linux 6.15).
    packet_filter: bool,
}

impl Redirector {
    /// Load the programs (verifier), write `config`, attach every program to
    /// the cgroup v2 directory `cgroup`, and pin programs, maps and links
    /// under `pin_dir` (which must be on bpffs; `/sys/fs/bpf` is mounted if
    /// needed). Fails if `pin_dir` already holds pins.
    pub fn attach(config: &RedirectConfig, cgroup: &Path, pin_dir: &Path) -> Result<Self> {
        let raw = config.to_raw(1)?;
        let cgroup_fd = File::open(cgroup).step(|| format!("open cgroup {}", cgroup.display()))?;
        ensure_bpffs(pin_dir)?;
        if has_pins(pin_dir)? {
            return Err(Error::AlreadyPinned { path: pin_dir.to_owned() });
        }
        // Half an attachment is worse than none: whatever got pinned (and
        // attached) before a failure goes again.
        Self::attach_fresh(raw, cgroup, &cgroup_fd, pin_dir).inspect_err(|_| {
            if let Err(error) = Self::remove_pins(pin_dir) {
                tracing::error!(%error, "cleaning up a failed attach");
            }
        })
    }

    fn attach_fresh(raw: RawConfig, cgroup: &Path, cgroup_fd: &File, pin_dir: &Path) -> Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).step(|| "load the embedded redirect.bpf.o (maps)".into())?;
        let maps = Maps::from_fn(|name| ebpf.take_map(name).ok_or(Error::MissingMap(name)))?;
        let mut this = Self {
            maps,
            cgroup: cgroup.to_owned(),
            pin_dir: pin_dir.to_owned(),
            links: Vec::new(),
            config: raw,
            adopted: false,
            packet_filter: true,
        };
        // Config before attaching; until then every guarded connect is refused.
        this.write_config(raw)?;
        for (name, map) in this.maps.iter() {
            let path = pin_dir.join(format!("map_{name}"));
            map.pin(&path).step(|| format!("pin map {name} at {}", path.display()))?;
        }
        for (func, short, kind) in programs(raw.flags & SELECT_NETNS != 0) {
            let link = match load_and_attach(&mut ebpf, func, short, kind, cgroup, cgroup_fd, pin_dir) {
                Ok(link) => link,
                // Appliance mode's packet filters are a second line behind
                // the address hooks: where the kernel refuses them, the
                // rest still fails closed; the caller says what is missing.
                Err(error) if optional(func) => {
                    tracing::warn!(%error, "this kernel refuses the appliance packet filter (Linux 6.15+)");
                    this.packet_filter = false;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let path = pin_dir.join(format!("link_{short}"));
            let pinned = link.pin(&path).step(|| format!("pin {short} link at {}", path.display()))?;
            this.links.push(pinned);
        }
        tracing::info!(cgroup = %cgroup.display(), pins = %pin_dir.display(), "redirector attached");
        Ok(this)
    }

    /// Re-adopt the pins a previous Bridle left under `pin_dir` (its
    /// programs stayed attached, failing guarded connects closed), and write
    /// `config` into them (new listener ports take effect at once). With no
    /// pins there, attach afresh. Pins from an incompatible Bridle (another
    /// ABI version, missing maps or links) are an error, never replaced
    /// silently: replacing would leave a window with nothing attached.
    pub fn attach_or_adopt(config: &RedirectConfig, cgroup: &Path, pin_dir: &Path) -> Result<Self> {
        ensure_bpffs(pin_dir)?;
        if !has_pins(pin_dir)? {
            return Self::attach(config, cgroup, pin_dir);
        }
        let cannot = |why: String| Error::CannotAdopt { path: pin_dir.to_owned(), why };
        let maps = Maps::from_fn(|name| {
            let path = pin_dir.join(format!("map_{name}"));
            let data = MapData::from_pin(&path).map_err(|e| cannot(format!("map {name}: {e}")))?;
            Map::from_map_data(data).map_err(|e| cannot(format!("map {name}: {e}")))
        })?;
        let mut links = Vec::new();
        let mut packet_filter = true;
        for (func, short, _) in programs(matches!(config.selection, Selection::Netns { .. })) {
            let path = pin_dir.join(format!("link_{short}"));
            if optional(func) && !path.exists() {
                packet_filter = false;
                continue;
            }
            links.push(PinnedLink::from_pin(&path).map_err(|e| cannot(format!("link {short}: {e}")))?);
        }
        let mut this = Self {
            maps,
            cgroup: cgroup.to_owned(),
            pin_dir: pin_dir.to_owned(),
            links,
            config: RawConfig::default(),
            adopted: true,
            packet_filter,
        };
        let old = this.read_config().map_err(|e| cannot(format!("config map: {e}")))?;
        if old.magic != CONFIG_MAGIC || old.abi_version != ABI_VERSION {
            return Err(cannot(format!("ABI version {} (this bridle: {ABI_VERSION})", old.abi_version)));
        }
        // A new generation: what the previous Bridle cached was decided by
        // policies this one may not have.
        let raw = config.to_raw(old.verdict_generation.wrapping_add(1))?;
        this.write_config(raw)?;
        tracing::info!(cgroup = %cgroup.display(), pins = %pin_dir.display(), "redirector re-adopted");
        Ok(this)
    }

    /// Whether the packet filters are attached: always in host mode; in
    /// appliance mode where the kernel takes them (Linux 6.15+).
    pub fn packet_filter(&self) -> bool {
        self.packet_filter
    }

    /// Whether [`Redirector::attach_or_adopt`] found existing pins.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Replace the config the programs read (e.g. a new proxy port).
    pub fn write_config_from(&mut self, config: &RedirectConfig) -> Result<()> {
        self.write_config(config.to_raw(self.config.verdict_generation)?)
    }

    fn write_config(&mut self, raw: RawConfig) -> Result<()> {
        let mut array: Array<&mut MapData, RawConfig> =
            Array::try_from(&mut self.maps.config).step(|| "open config map".into())?;
        array.set(0, raw, 0).step(|| "write config map".into())?;
        self.config = raw;
        Ok(())
    }

    fn read_config(&self) -> Result<RawConfig> {
        let array: Array<&MapData, RawConfig> = Array::try_from(&self.maps.config).step(|| "open config map".into())?;
        array.get(&0, 0).step(|| "read config map".into())
    }

    /// Guard the sockets of a network namespace (appliance mode), by its
    /// cookie ([`crate::netns_cookie`]). Namespaces stay guarded until the
    /// pins are removed: one left behind by an earlier start keeps failing
    /// closed.
    pub fn guard_netns(&mut self, cookie: u64) -> Result<()> {
        let mut map: HashMap<&mut MapData, u64, u8> =
            HashMap::try_from(&mut self.maps.guarded_netns).step(|| "open guarded_netns map".into())?;
        map.insert(cookie, 1, 0).step(|| format!("add netns {cookie} to guarded_netns"))
    }

    /// The network namespaces guarded (appliance mode).
    pub fn guarded_netns(&self) -> Vec<u64> {
        netns_keys(&self.maps.guarded_netns)
    }

    /// What the pins under `pin_dir` steer to and guard, read without
    /// adopting them (`bridle status`, `bridle down`).
    pub fn inspect(pin_dir: &Path) -> Result<Pinned> {
        let open = |name: &str| -> Result<Map> {
            let path = pin_dir.join(format!("map_{name}"));
            let data = MapData::from_pin(&path).step(|| format!("open {}", path.display()))?;
            Map::from_map_data(data).step(|| format!("open {}", path.display()))
        };
        let config_map = open("config")?;
        let array: Array<&MapData, RawConfig> = Array::try_from(&config_map).step(|| "open config map".into())?;
        let raw = array.get(&0, 0).step(|| "read config map".into())?;
        let ip4 = |word: u32| std::net::Ipv4Addr::from(word.to_ne_bytes());
        Ok(Pinned {
            configured: raw.magic == CONFIG_MAGIC && raw.abi_version == ABI_VERSION,
            proxy: std::net::SocketAddrV4::new(ip4(raw.proxy_ip4), raw.proxy_port),
            dns: std::net::SocketAddrV4::new(ip4(raw.dns_ip4), raw.dns_port),
            ipv6: raw.proxy_ip6 != [0; 4],
            guarded_netns: netns_keys(&open("guarded_netns")?),
        })
    }

    /// Make the kernel refuse (`ECONNREFUSED`) every guarded connect to
    /// `dst` until [`Redirector::forget_verdicts`]. Only for a deny that
    /// holds whatever name, process or content a connection carries.
    pub fn refuse(&mut self, dst: SocketAddr, proto: Proto) -> Result<()> {
        let generation = self.config.verdict_generation;
        let mut map: HashMap<&mut MapData, RawDestKey, RawVerdict> =
            HashMap::try_from(&mut self.maps.verdicts).step(|| "open verdicts map".into())?;
        map.insert(dest_key(dst, proto), RawVerdict { generation }, 0).step(|| format!("cache the deny of {dst}"))
    }

    /// Every cached deny stops refusing at once (a policy reload): the
    /// config's generation moves on and old entries no longer match.
    pub fn forget_verdicts(&mut self) -> Result<()> {
        let mut raw = self.config;
        raw.verdict_generation = raw.verdict_generation.wrapping_add(1);
        self.write_config(raw)
    }

    /// The original destination recorded for the socket with this cookie
    /// (`SO_COOKIE` of the *guarded* socket).
    pub fn original_destination(&self, cookie: u64) -> Option<OrigDst> {
        let hash: HashMap<&MapData, u64, RawOrigDst> = HashMap::try_from(&self.maps.orig_dst).ok()?;
        OrigDst::try_from(hash.get(&cookie, 0).ok()?).ok()
    }

    /// The original destination of the guarded socket whose local address is
    /// `peer`, i.e. what the proxy's `accept()` returned as the peer. This is
    /// the lookup the proxy uses: its accepted socket has its own cookie.
    pub fn original_destination_by_peer(&self, peer: SocketAddr) -> Option<OrigDst> {
        let hash: HashMap<&MapData, RawPeerKey, RawOrigDst> = HashMap::try_from(&self.maps.orig_by_peer).ok()?;
        OrigDst::try_from(hash.get(&peer_key(peer), 0).ok()?).ok()
    }

    /// The cgroup the programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Detach every program (unpin the links) and remove all pins.
    pub fn detach(mut self) -> Result<()> {
        for link in self.links.drain(..) {
            drop(link.unpin().step(|| "unpin link".into())?);
        }
        Self::remove_pins(&self.pin_dir)
    }

    /// Remove every pin under `pin_dir` and the directory: the links go away
    /// with their last reference, which detaches the programs. Works on the
    /// pins of a Bridle that died (`bridle down`). A missing dir is fine.
    pub fn remove_pins(pin_dir: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(pin_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).step(|| format!("read pin directory {}", pin_dir.display())),
        };
        for entry in entries {
            let path = entry.step(|| format!("read pin directory {}", pin_dir.display()))?.path();
            std::fs::remove_file(&path).step(|| format!("remove pin {}", path.display()))?;
        }
        std::fs::remove_dir(pin_dir).step(|| format!("remove pin directory {}", pin_dir.display()))
    }
}

fn netns_keys(map: &Map) -> Vec<u64> {
    HashMap::<&MapData, u64, u8>::try_from(map)
        .map(|map| map.keys().filter_map(std::result::Result::ok).collect())
        .unwrap_or_default()
}

/// Whether `pin_dir` exists and holds anything.
fn has_pins(pin_dir: &Path) -> Result<bool> {
    match std::fs::read_dir(pin_dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).step(|| format!("read pin directory {}", pin_dir.display())),
    }
}

fn load_and_attach(
    ebpf: &mut Ebpf,
    func: &'static str,
    short: &str,
    kind: Kind,
    cgroup: &Path,
    cgroup_fd: &File,
    pin_dir: &Path,
) -> Result<FdLink> {
    let cg = cgroup.display().to_string();
    let pin = pin_dir.join(format!("prog_{short}"));
    let program = ebpf.program_mut(func).ok_or(Error::MissingProgram(func))?;
    let mode = CgroupAttachMode::Single;
    // Same steps for the four program types; aya gives them no common trait
    // (and cgroup_skb's attach also takes its direction).
    macro_rules! load_attach {
        ($ty:ty $(, $direction:expr)?) => {{
            let p = <&mut $ty>::try_from(program).step(|| format!("{short} has the expected type"))?;
            p.load().step(|| format!("load {short} (verifier)"))?;
            p.pin(&pin).step(|| format!("pin {short} at {}", pin.display()))?;
            let id = p.attach(cgroup_fd, $($direction,)? mode).step(|| format!("attach {short} to {cg}"))?;
            let link = p.take_link(id).step(|| format!("take {short} link"))?;
            FdLink::try_from(link).step(|| format!("{short} link as fd link"))?
        }};
    }
    let link = match kind {
        Kind::SockAddr => load_attach!(CgroupSockAddr),
        Kind::Sock => load_attach!(CgroupSock),
        Kind::SockOps => load_attach!(SockOps),
        Kind::Skb(direction) => load_attach!(CgroupSkb, direction),
    };
    Ok(link)
}
