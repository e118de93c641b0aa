//! Bridle's kernel egress capture: cgroup eBPF programs (C, `src/bpf/`,
//! built by `build.rs` with clang) and the aya loader that attaches them.
//!
//! Owns: the `connect4/6`, `sendmsg4/6`, `recvmsg4/6`, `getpeername4/6`,
//! `sock_create` and `sockops` programs, and in host mode the `cgroup_skb`
//! egress/ingress filters (loopback peers only); guarded-workload selection
//! (a session cgroup in host mode, network namespaces minus Bridle's own
//! cgroup in appliance mode); the kernel verdict cache; the one header for
//! structs crossing the kernel boundary (`src/bpf/bridle.h`) and its
//! `#[repr(C)]` mirror ([`abi`]);
//! loading, attaching, pinning and detaching; reading original destinations.
//!
//! Entry points: [`Redirector::attach`] (load, configure, attach to a cgroup
//! v2 directory, pin under bpffs), [`Redirector::original_destination_by_peer`]
//! (what the proxy calls on accept), [`Redirector::attach_or_adopt`] (re-adopt
//! the pins a previous Bridle left), [`Redirector::refuse`] (verdict cache),
//! [`Redirector::detach`] /
//! [`Redirector::remove_pins`], and [`Cgroup`] / [`cgroup2_mount`] for the
//! session's cgroup.
//!
//! Must never: redirect Bridle's own sockets (attach only to the guarded
//! cgroup), let a guarded socket through unredirected (no config in the map
//! means every connect is refused; links are pinned so a dying Bridle leaves
//! connects failing rather than flowing), or make policy decisions (that is
//! the engine's job; this crate only steers traffic to the proxy/resolver).
//!
//! This is the only crate with `unsafe`: the `aya::Pod` impls, `mount(2)`
//! and `getsockopt(SO_NETNS_COOKIE)`.

pub mod abi;
mod cgroup;
mod error;
mod loader;
mod maps;
mod mounts;
mod netns;

pub use cgroup::Cgroup;
pub use error::{Error, Result};
pub use loader::{Pinned, Redirector};
pub use maps::{OrigDst, Proto, RedirectConfig, Selection};
pub use mounts::{BPFFS_ROOT, cgroup2_mount, ensure_bpffs};
pub use netns::netns_cookie;
