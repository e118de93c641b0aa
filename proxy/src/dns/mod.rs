//! Bridle's policy-checked DNS resolver: every guarded query is decided by
//! the engine as `Dns::Action::"Resolve"`, audited, then refused or
//! forwarded to the configured upstreams and cached.
//!
//! Built on `hickory-proto` for the wire format with its own tokio UDP and
//! TCP loops (no `hickory-server`): the resolver needs the raw packet to
//! answer malformed queries with FORMERR and to see every query before any
//! library logic runs. Stages, composed in [`server`]: [`wire`] (parse and
//! validate) → [`exfil`] (flag exfiltration-shaped names) → [`resolve`]
//! (decide, audit, answer from [`cache`] or [`upstream`]) → [`names`] (the
//! IP → name map the proxy uses to name raw-IP connects); [`notice`]
//! bounds the audit notices that bad packets produce.
//!
//! Must never: forward a query without a permitting decision, answer a
//! packet that is itself a response (reflection loops), or use a resolver
//! the configuration or `/etc/resolv.conf` did not name.

pub mod cache;
pub mod config;
pub mod exfil;
pub mod names;
pub mod notice;
pub mod resolv_conf;
pub mod resolve;
pub mod server;
pub mod upstream;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::ResolverConfig;
pub use exfil::ExfilThresholds;
pub use names::{NameMap, WithDnsNames};
pub use server::DnsServer;

/// What can go wrong in the resolver. Per-query problems never surface
/// here: they become DNS response codes and audit notices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The UDP or TCP listener could not be bound.
    #[error("cannot bind the DNS resolver on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// `/etc/resolv.conf` (or the given file) could not be read.
    #[error("cannot read {path}: {source}")]
    ResolvConf { path: PathBuf, source: std::io::Error },
    /// Neither the configuration nor resolv.conf named an upstream: the
    /// resolver refuses to start rather than guess a public resolver.
    #[error("no DNS upstream configured and none found in {path}")]
    NoUpstreams { path: PathBuf },
    /// A query or answer could not be encoded or decoded.
    #[error("DNS wire format: {0}")]
    Wire(String),
    /// Every upstream failed or timed out.
    #[error("no upstream answered: {0}")]
    Upstream(String),
}
