//! How the resolver is set up: built once from `[dns]` in `bridle.toml`
//! (plus the listen address and session), never read again on the hot path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bridle_engine::config::{DenyResponse, DnsConfig};

use super::exfil::ExfilThresholds;
use super::{DnsError, resolv_conf};

/// Everything the resolver needs besides the engine and the audit log.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// Where to listen (UDP and TCP on the same port; port 0 picks one).
    pub bind: SocketAddr,
    /// Upstream servers, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// What a denied query gets.
    pub deny_response: DenyResponse,
    /// Maximum cached answers.
    pub cache_size: usize,
    /// Maximum IP → name entries.
    pub names_size: usize,
    /// How long one upstream gets before the next is tried.
    pub upstream_timeout: Duration,
    /// How long an idle client TCP connection is kept.
    pub tcp_idle_timeout: Duration,
    /// Exfiltration heuristics.
    pub exfil: ExfilThresholds,
    /// Session and principal the events are attributed to.
    pub session: String,
    pub principal: String,
}

impl ResolverConfig {
    /// A config for `bind` with explicit upstreams and defaults elsewhere.
    pub fn new(bind: SocketAddr, upstreams: Vec<SocketAddr>) -> Self {
        ResolverConfig {
            bind,
            upstreams,
            deny_response: DenyResponse::default(),
            cache_size: DnsConfig::default().cache_size,
            names_size: 65_536,
            upstream_timeout: Duration::from_secs(2),
            tcp_idle_timeout: Duration::from_secs(10),
            exfil: ExfilThresholds::default(),
            session: "default".into(),
            principal: "agent".into(),
        }
    }

    /// A config from `[dns]`; empty upstreams fall back to the servers in
    /// `resolv_conf` (normally `/etc/resolv.conf`). Never a public default.
    pub fn from_dns_config(bind: SocketAddr, dns: &DnsConfig, resolv_conf: &Path) -> Result<Self, DnsError> {
        let upstreams = if dns.upstreams.is_empty() { resolv_conf::read(resolv_conf)? } else { dns.upstreams.clone() };
        if upstreams.is_empty() {
            return Err(DnsError::NoUpstreams { path: resolv_conf.to_path_buf() });
        }
        let mut config = ResolverConfig::new(bind, upstreams);
        config.deny_response = dns.deny_response;
        config.cache_size = dns.cache_size;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolv_conf(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write resolv.conf");
        file
    }

    #[test]
    fn configured_upstreams_win_else_resolv_conf_else_error() {
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let file = resolv_conf("nameserver 192.0.2.53\n");
        let from_file = ResolverConfig::from_dns_config(bind, &DnsConfig::default(), file.path()).expect("config");
        assert_eq!(from_file.upstreams, ["192.0.2.53:53".parse::<SocketAddr>().expect("addr")]);
        let dns = DnsConfig { upstreams: vec!["192.0.2.1:5353".parse().expect("addr")], ..DnsConfig::default() };
        let configured = ResolverConfig::from_dns_config(bind, &dns, file.path()).expect("config");
        assert_eq!(configured.upstreams, dns.upstreams);
        let empty = resolv_conf("search example\n");
        let error = ResolverConfig::from_dns_config(bind, &DnsConfig::default(), empty.path());
        assert!(matches!(error, Err(DnsError::NoUpstreams { .. })));
        let missing =
            ResolverConfig::from_dns_config(bind, &DnsConfig::default(), Path::new("/nonexistent/resolv.conf"));
        assert!(matches!(missing, Err(DnsError::ResolvConf { .. })));
    }
}
