//! Running Bridle on a Linux host: `bridle run -- CMD` (host mode) and
//! `bridle up` (the appliance daemon), plus `bridle status` / `bridle down`.
//!
//! Host mode is one session: a cgroup v2 for the command, the eBPF
//! redirector attached to it, the transparent proxy and resolver listening
//! for what it redirects, and the command started inside the cgroup as an
//! unprivileged user with `no_new_privs`. Everything is torn down when the
//! command exits; the command's exit status is returned.
//!
//! Appliance mode guards every process in Bridle's network namespace
//! instead (see [`appliance`]).

mod access;
mod admin;
mod appliance;
mod calls;
mod confine;
pub(crate) mod control;
mod egress;
mod mcp;
mod persistence;
mod raw_capable;
mod reachable;
mod sandbox;
mod services;
mod session;
mod tamper;
mod trust;
mod user;
mod warnings;

pub use admin::{down, ready, status};
pub use appliance::{UpArgs, up};
pub(crate) use egress::watch_policies;
pub(crate) use mcp::gateway_runtime;
pub use reachable::later::{CoverArgs, cover_in as cover_sockets_in};
pub use sandbox::{SandboxArgs, exec as sandbox_exec};
pub use session::{RunArgs, run};

/// The async runtime a session or the appliance runs on: two workers are
/// plenty for a proxy that splices in the kernel, and leave the agent room.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
