//! Load the embedded object, write the config, attach every program to a
//! cgroup, pin programs, maps and links, and read the original destinations.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, include_bytes_aligned,
    maps::{Array, HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, SockOps, links::FdLink, links::PinnedLink},
};

use crate::{
    Error, OrigDst, RedirectConfig, Result,
    abi::{RawConfig, RawOrigDst, RawPeerKey},
    error::Step,
    maps::peer_key,
    mounts::ensure_bpffs,
};

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

/// Map names in redirect.bpf.c.
const MAP_ORIG_DST: &str = "orig_dst";
const MAP_ORIG_BY_PEER: &str = "orig_by_peer";
const MAP_CONFIG: &str = "config";
const MAPS: [&str; 3] = [MAP_ORIG_DST, MAP_ORIG_BY_PEER, MAP_CONFIG];

#[derive(Clone, Copy, Debug)]
enum Kind {
    SockAddr,
    Sock,
    SockOps,
}

/// (function name in redirect.bpf.c, short name for steps and pins, kind).
/// sock_create first: raw sockets are refused before connects are redirected.
const PROGRAMS: [(&str, &str, Kind); 8] = [
    ("bridle_sock_create", "sock_create", Kind::Sock),
    ("bridle_getpeername4", "getpeername4", Kind::SockAddr),
    ("bridle_getpeername6", "getpeername6", Kind::SockAddr),
    ("bridle_sockops", "sockops", Kind::SockOps),
    ("bridle_sendmsg4", "sendmsg4", Kind::SockAddr),
    ("bridle_sendmsg6", "sendmsg6", Kind::SockAddr),
    ("bridle_connect4", "connect4", Kind::SockAddr),
    ("bridle_connect6", "connect6", Kind::SockAddr),
];

/// The loaded and attached redirector. Dropping it leaves the programs
/// attached (the links are pinned): guarded sockets keep going to the proxy
/// port and fail there if Bridle is gone — fail closed. [`Redirector::detach`]
/// or [`Redirector::remove_pins`] detach.
#[derive(Debug)]
pub struct Redirector {
    ebpf: Ebpf,
    cgroup: PathBuf,
    pin_dir: PathBuf,
    links: Vec<PinnedLink>,
}

impl Redirector {
    /// Load the programs (verifier), write `config`, attach every program to
    /// the cgroup v2 directory `cgroup`, and pin programs, maps and links
    /// under `pin_dir` (which must be on bpffs; `/sys/fs/bpf` is mounted if
    /// needed).
    pub fn attach(config: &RedirectConfig, cgroup: &Path, pin_dir: &Path) -> Result<Self> {
        let raw = config.to_raw()?;
        ensure_bpffs(pin_dir)?;
        let non_empty =
            std::fs::read_dir(pin_dir).step(|| format!("read pin directory {}", pin_dir.display()))?.next().is_some();
        if non_empty {
            return Err(Error::AlreadyPinned { path: pin_dir.to_owned() });
        }
        let ebpf = Ebpf::load(OBJECT).step(|| "load the embedded redirect.bpf.o (maps)".into())?;
        let mut this = Self { ebpf, cgroup: cgroup.to_owned(), pin_dir: pin_dir.to_owned(), links: Vec::new() };
        // Config before attaching; until then every guarded connect is refused.
        this.write_config(raw)?;
        this.pin_maps()?;
        let cgroup_fd = File::open(cgroup).step(|| format!("open cgroup {}", cgroup.display()))?;
        for (func, short, kind) in PROGRAMS {
            let link = this.load_and_attach(func, short, kind, &cgroup_fd)?;
            let path = pin_dir.join(format!("link_{short}"));
            let pinned = link.pin(&path).step(|| format!("pin {short} link at {}", path.display()))?;
            this.links.push(pinned);
        }
        tracing::info!(cgroup = %cgroup.display(), pins = %pin_dir.display(), "redirector attached");
        Ok(this)
    }

    /// Replace the config the programs read (e.g. a new proxy port).
    pub fn write_config_from(&mut self, config: &RedirectConfig) -> Result<()> {
        self.write_config(config.to_raw()?)
    }

    fn write_config(&mut self, raw: RawConfig) -> Result<()> {
        let map = self.ebpf.map_mut(MAP_CONFIG).ok_or(Error::MissingMap(MAP_CONFIG))?;
        let mut array: Array<&mut MapData, RawConfig> = Array::try_from(map).step(|| "open config map".into())?;
        array.set(0, raw, 0).step(|| "write config map".into())
    }

    fn pin_maps(&mut self) -> Result<()> {
        for name in MAPS {
            let map = self.ebpf.map(name).ok_or(Error::MissingMap(name))?;
            let path = self.pin_dir.join(format!("map_{name}"));
            map.pin(&path).step(|| format!("pin map {name} at {}", path.display()))?;
        }
        Ok(())
    }

    fn load_and_attach(&mut self, func: &'static str, short: &str, kind: Kind, cgroup: &File) -> Result<FdLink> {
        let cg = self.cgroup.display().to_string();
        let pin = self.pin_dir.join(format!("prog_{short}"));
        let program = self.ebpf.program_mut(func).ok_or(Error::MissingProgram(func))?;
        let mode = CgroupAttachMode::Single;
        // Same steps for the three program types; aya gives them no common trait.
        macro_rules! load_attach {
            ($ty:ty) => {{
                let p = <&mut $ty>::try_from(program).step(|| format!("{short} has the expected type"))?;
                p.load().step(|| format!("load {short} (verifier)"))?;
                p.pin(&pin).step(|| format!("pin {short} at {}", pin.display()))?;
                let id = p.attach(cgroup, mode).step(|| format!("attach {short} to {cg}"))?;
                let link = p.take_link(id).step(|| format!("take {short} link"))?;
                FdLink::try_from(link).step(|| format!("{short} link as fd link"))?
            }};
        }
        let link = match kind {
            Kind::SockAddr => load_attach!(CgroupSockAddr),
            Kind::Sock => load_attach!(CgroupSock),
            Kind::SockOps => load_attach!(SockOps),
        };
        Ok(link)
    }

    /// The original destination recorded for the socket with this cookie
    /// (`SO_COOKIE` of the *guarded* socket).
    pub fn original_destination(&self, cookie: u64) -> Option<OrigDst> {
        let map = self.ebpf.map(MAP_ORIG_DST)?;
        let hash: HashMap<&MapData, u64, RawOrigDst> = HashMap::try_from(map).ok()?;
        OrigDst::try_from(hash.get(&cookie, 0).ok()?).ok()
    }

    /// The original destination of the guarded socket whose local address is
    /// `peer`, i.e. what the proxy's `accept()` returned as the peer. This is
    /// the lookup the proxy uses: its accepted socket has its own cookie.
    pub fn original_destination_by_peer(&self, peer: SocketAddr) -> Option<OrigDst> {
        let map = self.ebpf.map(MAP_ORIG_BY_PEER)?;
        let hash: HashMap<&MapData, RawPeerKey, RawOrigDst> = HashMap::try_from(map).ok()?;
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
