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

/// Descriptors one proxied connection may hold: the agent's socket, the
/// upstream's, and a pipe each way while splicing.
const FILES_PER_CONNECTION: u64 = 6;
/// Descriptors kept for everything else (resolver, audit, console,
/// helpers): a quarter of the limit, at most this many.
const FILES_KEPT: u64 = 1024;

/// Raises this process's soft limit on open files to its hard limit (a
/// proxy holds several per connection; sudo on a desktop leaves 1024), and
/// returns the soft limit it had, which the command gets back. A limit that
/// cannot be raised stays as it was (the proxy then holds fewer
/// connections, [`connection_limit`]).
pub(crate) fn raise_open_files() -> anyhow::Result<u64> {
    use anyhow::Context as _;
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading the open-files limit")?;
    if soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(%error, soft, hard, "cannot raise the open-files limit; the proxy holds fewer connections");
    }
    Ok(soft)
}

/// `configured`, or fewer connections where the open-files limit would run
/// out before them.
pub(crate) fn connection_limit(configured: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else { return configured };
    let kept = FILES_KEPT.min(soft / 4);
    let fits = usize::try_from(soft.saturating_sub(kept) / FILES_PER_CONNECTION).unwrap_or(usize::MAX).max(1);
    if fits < configured {
        tracing::warn!(
            configured,
            fits,
            open_files = soft,
            "[proxy] max_connections lowered to what the open-files limit allows"
        );
    }
    configured.min(fits)
}

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
