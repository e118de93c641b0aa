//! The user-space half of egress capture, shared by `bridle run` and
//! `bridle up`: the policy-checked resolver and the transparent proxy, bound
//! before any program is attached, and the redirector slot they read.
//!
//! Order matters for failing closed: the listeners exist before the programs
//! steer anything to them, and until the redirector is installed the proxy
//! finds no original destination and refuses every connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use bridle_engine::approvals::Approvals;
use bridle_engine::audit::AuditLog;
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_engine::reload::{DEFAULT_DEBOUNCE, Reloader, WatchHandle};
use bridle_mcp_gateway::http::Inline;
use bridle_proxy::dns::{DnsServer, NameMap, ResolverConfig};
use bridle_proxy::http::scan::Canaries;
use bridle_proxy::http::secrets::Secrets;
use bridle_proxy::intercept::{Inspector, UpstreamTls};
use bridle_proxy::origin::Origin;
use bridle_proxy::tls::{CertificateAuthority, LeafCache, upstream_roots};
use bridle_proxy::{OriginalDestinations, Proxy, ProxyConfig};
use bridle_redirector_ebpf::{Proto, RedirectConfig, Redirector, Selection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the listeners bind (port 0: any free port).
#[derive(Clone, Copy, Debug)]
pub(super) struct Ports {
    pub proxy: u16,
    pub dns: u16,
}

/// The bound resolver and proxy of one session or daemon, on 127.0.0.1 and,
/// where the namespace has IPv6, on [::1] at the same ports.
pub(super) struct Egress {
    dns: DnsServer,
    proxy: Proxy,
    dns6: Option<DnsServer>,
    proxy6: Option<Proxy>,
    origins: Arc<LateOrigins>,
    /// Bridle's CA, loaded once: the proxy mints with it, and host mode
    /// builds the command's trust bundle from it.
    ca: Arc<CertificateAuthority>,
}

impl Egress {
    /// Binds the resolver and the proxy on loopback.
    pub async fn bind(
        config: &Config,
        authorizer: &Arc<Authorizer>,
        audit: &Arc<AuditLog>,
        session: &str,
        ports: Ports,
        guards: &Guards,
    ) -> anyhow::Result<Self> {
        let principal = config.project.name.clone();
        let dir = &config.tls.ca_dir;
        let ca = Arc::new(
            CertificateAuthority::load_or_create(dir)
                .with_context(|| format!("loading Bridle's CA from {}", dir.display()))?,
        );
        let mut inspector = inspector(config, &ca, guards)?;
        // MCP the proxy finds in the agent's HTTP is decided in the same
        // timeline, with the same pins, as the configured servers'.
        let shared = super::mcp::shared(config, authorizer, &guards.approvals, audit, session)?;
        let (max, idle) = (config.mcp.max_message_bytes, config.mcp.session_idle());
        let configured = config.mcp.servers.iter().map(|server| server.name.clone()).collect();
        inspector.mcp = Some(Arc::new(Inline::new(shared, max, idle, configured)));
        let inspector = Arc::new(inspector);
        let dns_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.dns));
        let mut resolver_config =
            ResolverConfig::from_dns_config(dns_listen, &config.dns, Path::new("/etc/resolv.conf"))
                .context("configuring the DNS resolver")?;
        resolver_config.session = session.to_string();
        resolver_config.principal.clone_from(&principal);
        let dns = DnsServer::bind(resolver_config, Arc::clone(authorizer), Some(Arc::clone(audit)))
            .await
            .with_context(|| format!("starting the DNS resolver on {dns_listen}"))?;
        let origins = Arc::new(LateOrigins { slot: RwLock::new(None), names: dns.names() });
        let bind_proxy = |listen: SocketAddr| {
            let mut proxy_config = ProxyConfig::new(listen);
            proxy_config.peek_timeout = config.proxy.peek_timeout();
            proxy_config.connect_timeout = config.proxy.connect_timeout();
            proxy_config.idle_timeout = config.proxy.idle_timeout();
            proxy_config.max_connections = super::connection_limit(config.proxy.max_connections);
            let origins = Arc::clone(&origins) as Arc<dyn OriginalDestinations>;
            let inspector = Arc::clone(&inspector);
            let approvals = Arc::clone(&guards.approvals);
            let bound = Proxy::bind(
                proxy_config,
                origins,
                Arc::clone(authorizer),
                Some(Arc::clone(audit)),
                session,
                &principal,
            );
            async move {
                let proxy = bound.await?.inspect(inspector);
                proxy.decider().hold_asks_with(approvals);
                Ok::<_, bridle_proxy::Error>(proxy)
            }
        };
        let proxy_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.proxy));
        let proxy = bind_proxy(proxy_listen).await.with_context(|| format!("starting the proxy on {proxy_listen}"))?;
        // IPv6 on the ports IPv4 got (the kernel config has one port each).
        // Without it the programs refuse IPv6 TCP and DNS: closed, not open.
        let dns6_listen = SocketAddr::from((Ipv6Addr::LOCALHOST, dns.local_addr().port()));
        let proxy6_listen = SocketAddr::from((Ipv6Addr::LOCALHOST, proxy.local_addr().port()));
        let (dns6, proxy6) = match (dns.bind_alongside(dns6_listen).await, bind_proxy(proxy6_listen).await) {
            (Ok(dns6), Ok(proxy6)) => (Some(dns6), Some(proxy6.alongside(&proxy))),
            (dns6, proxy6) => {
                let why = [dns6.err().map(|e| e.to_string()), proxy6.err().map(|e| e.to_string())];
                let why: Vec<String> = why.into_iter().flatten().collect();
                tracing::warn!(why = %why.join("; "), "no IPv6 listeners: guarded IPv6 connects and DNS are refused");
                (None, None)
            }
        };
        Ok(Egress { dns, proxy, dns6, proxy6, origins, ca })
    }

    /// What the programs need to steer guarded sockets here. Bridle's own
    /// ports (the console's, and the listeners', which the redirector adds)
    /// are refused to guarded sockets; the MCP gateway's is open to them.
    pub fn redirect_config(&self, config: &Config, selection: Selection) -> RedirectConfig {
        RedirectConfig {
            selection,
            proxy_v4: SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.proxy.local_addr().port()),
            proxy_ip6: self.proxy6.as_ref().map(|_| Ipv6Addr::LOCALHOST),
            dns_v4: SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.dns.local_addr().port()),
            dns_ip6: self.dns6.as_ref().map(|_| Ipv6Addr::LOCALHOST),
            own_ports: vec![config.console.bind.port()],
            // Agents reach the MCP gateway on loopback directly: it decides
            // every message itself, and the proxy would only add a hop.
            gateway_ports: match config.mcp.servers.is_empty() || !config.mcp.listen.ip().is_loopback() {
                true => Vec::new(),
                false => vec![config.mcp.listen.port()],
            },
        }
    }

    /// Bridle's CA.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        Arc::clone(&self.ca)
    }

    /// The slot the proxy reads the redirector from.
    pub fn origins(&self) -> Arc<LateOrigins> {
        Arc::clone(&self.origins)
    }

    /// Serves until `stop` turns true.
    pub fn spawn(self, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let proxies = std::iter::once(self.proxy).chain(self.proxy6);
        let resolvers = std::iter::once(self.dns).chain(self.dns6);
        let mut tasks: Vec<JoinHandle<()>> = proxies.map(|p| tokio::spawn(p.run(until(stop.clone())))).collect();
        tasks.extend(resolvers.map(|d| tokio::spawn(d.run(until(stop.clone())))));
        tasks
    }
}

/// What every request is held against besides policy: the credentials
/// injected per host (their placeholders policed), honeytoken canaries,
/// and the approvals broker an `ask` waits in.
#[derive(Debug, Clone)]
pub(super) struct Guards {
    pub secrets: Arc<Secrets>,
    pub approvals: Arc<Approvals>,
}

impl Guards {
    /// Reads every configured secret's value (a missing one is an error
    /// naming it): before the audit log opens, which must redact them.
    pub fn secrets(config: &Config) -> anyhow::Result<Arc<Secrets>> {
        Ok(Arc::new(Secrets::load(&config.secrets).context("loading [[secrets]]")?))
    }

    /// The guards, with the approvals broker auditing to `audit`.
    pub fn new(config: &Config, secrets: Arc<Secrets>, audit: &Arc<AuditLog>) -> Self {
        let timeout = Duration::from_secs(config.engine.ask_timeout_secs);
        Guards { secrets, approvals: Arc::new(Approvals::new(timeout, Some(Arc::clone(audit)))) }
    }
}

/// TLS interception and HTTP inspection for the proxy: Bridle's CA (made
/// on first use), the roots upstreams are verified against, and the guards.
fn inspector(config: &Config, ca: &Arc<CertificateAuthority>, guards: &Guards) -> anyhow::Result<Inspector> {
    let leaves = Arc::new(LeafCache::new(Arc::clone(ca), config.tls.leaf_cache_size));
    let roots = upstream_roots(config.tls.upstream_ca_bundle.as_deref()).context("loading the upstream trust roots")?;
    let mut inspector = Inspector::new(leaves, UpstreamTls::new(roots));
    inspector.secrets = (!guards.secrets.is_empty()).then(|| Arc::clone(&guards.secrets));
    inspector.canaries = Canaries::new(&config.dlp.canaries).context("[dlp] canaries")?;
    inspector.handshake_timeout = config.proxy.connect_timeout();
    inspector.idle_timeout = config.proxy.idle_timeout();
    Ok(inspector)
}

/// The redirector, known only once the listeners are bound: until it is
/// installed the proxy refuses every connection. Names of raw-IP connects
/// come from what the resolver answered.
pub(super) struct LateOrigins {
    slot: RwLock<Option<Installed>>,
    names: Arc<NameMap>,
}

struct Installed {
    redirector: Redirector,
    /// The policy generation the kernel's cached denies belong to.
    policy_generation: u64,
}

impl LateOrigins {
    /// Installs the attached (or adopted) redirector; its verdict cache
    /// starts on policy generation `policy_generation`.
    pub fn install(&self, redirector: Redirector, policy_generation: u64) -> anyhow::Result<()> {
        let mut slot = self.slot.write().map_err(|_| anyhow::anyhow!("redirector slot poisoned"))?;
        *slot = Some(Installed { redirector, policy_generation });
        Ok(())
    }

    /// Takes the redirector back out (teardown); the proxy refuses from now.
    pub fn take(&self) -> Option<Redirector> {
        self.slot.write().ok().and_then(|mut slot| slot.take()).map(|installed| installed.redirector)
    }

    /// Policy generation `generation` is live: the kernel drops the denies
    /// an older one cached.
    pub fn policy_changed(&self, generation: u64) {
        let Ok(mut slot) = self.slot.write() else { return };
        let Some(installed) = slot.as_mut() else { return };
        if generation > installed.policy_generation {
            installed.policy_generation = generation;
            if let Err(error) = installed.redirector.forget_verdicts() {
                tracing::error!(%error, "could not drop the kernel's cached denies after a policy reload");
            }
        }
    }
}

impl OriginalDestinations for LateOrigins {
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.origin(peer).map(|origin| origin.dst)
    }

    fn origin(&self, peer: SocketAddr) -> Option<Origin> {
        self.slot.read().ok()?.as_ref()?.redirector.origin(peer)
    }

    fn name_for(&self, ip: IpAddr) -> Option<String> {
        self.names.name_for(ip)
    }

    fn resolved(&self, ip: IpAddr, name: &str) -> bool {
        self.names.answered(ip, name)
    }

    fn cache_deny(&self, dst: SocketAddr, generation: u64) {
        self.policy_changed(generation);
        let Ok(mut slot) = self.slot.write() else { return };
        let Some(installed) = slot.as_mut() else { return };
        // A deny decided just before a reload must not outlive it.
        if generation != installed.policy_generation {
            return;
        }
        if let Err(error) = installed.redirector.refuse(dst, Proto::Tcp) {
            tracing::warn!(%error, %dst, "could not cache a deny in the kernel");
        }
    }
}

/// Reloads the policy directory when its files change (a broken set is
/// audited and the last good one stays). `None`: the built-in set, which
/// never changes.
pub(crate) fn watch_policies(
    dir: Option<&Path>,
    authorizer: &Arc<Authorizer>,
    audit: &Arc<AuditLog>,
) -> anyhow::Result<Option<WatchHandle>> {
    let Some(dir) = dir else { return Ok(None) };
    let reloader = Reloader::new(dir, Arc::clone(authorizer), Some(Arc::clone(audit)));
    Ok(Some(reloader.watch(DEFAULT_DEBOUNCE).context("watching the policy directory")?))
}

/// Keeps the kernel verdict cache on the live policy generation: after a
/// reload no deny decided by the old policies refuses anything.
pub(super) async fn follow_generations(
    authorizer: Arc<Authorizer>,
    origins: Arc<LateOrigins>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = authorizer.generation();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let now = authorizer.generation();
        if now != seen {
            seen = now;
            origins.policy_changed(now);
        }
    }
}
