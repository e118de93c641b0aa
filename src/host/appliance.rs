//! `bridle up`: the appliance daemon. Every socket of every process in this
//! network namespace is guarded, except Bridle's own: agents join the
//! namespace (`network_mode: "service:bridle"` in compose, `ip netns exec`,
//! `nsenter --net`) and need nothing else.
//!
//! Selection: the programs sit on the cgroup v2 root and act only on sockets
//! whose network namespace is listed in their `guarded_netns` map, skipping
//! tasks under `<cgroup2>/bridle/up`, the cgroup this daemon moves itself
//! into before it creates any socket. A startup self-check proves the
//! exemption works (a loop through its own proxy would otherwise hang).
//!
//! In a container (compose.yaml): it joins the host's cgroup namespace when
//! it can see PID 1's, exempts dockerd's process (Docker's embedded DNS
//! answers from inside the namespace), and writes Bridle's CA and the
//! agents' trust bundle to `--trust-dir`, the volume agents mount.
//!
//! Start: the programs are armed (attached, this namespace guarded, pointed
//! at listener ports nothing listens on yet) before anything that can fail,
//! so an agent that joined early is refused, never let through; a start
//! that fails later detaches them only if no guarded process is there.
//!
//! Lifecycle: the programs are pinned under `/sys/fs/bpf/bridle/up`. If the
//! daemon dies they stay, and guarded connects go to a port where nothing
//! listens: fail closed. The next `bridle up` re-adopts the pins and writes
//! its listener ports into them. A clean stop (SIGTERM/SIGINT) detaches only
//! when no guarded process is left; otherwise the pins stay, failing closed,
//! until `bridle down`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_proxy::tls::{SYSTEM_BUNDLE, export_trust};
use bridle_redirector_ebpf::{BPFFS_ROOT, Cgroup, RedirectConfig, Redirector, Selection, cgroup2_mount, netns_cookie};
use tokio::signal::unix::{SignalKind, signal};

use super::calls::{self, Scope};
use super::control;
use super::egress::{Egress, Guards, LateOrigins, Ports, follow_generations, watch_policies};
use super::session::open_audit;
use super::{admin, raw_capable};
use crate::cli::settings::DecideArgs;

/// The appliance's session id: its cgroup is `<cgroup2>/bridle/up`, its pins
/// `/sys/fs/bpf/bridle/up`.
pub(super) const APPLIANCE: &str = "up";

/// `bridle up [OPTIONS]`
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub decide: DecideArgs,
    /// Audit log (default: the config's [audit] path).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// The proxy's port on 127.0.0.1 of this network namespace.
    #[arg(long, default_value_t = 15001, value_name = "PORT")]
    pub proxy_port: u16,
    /// The resolver's port (UDP and TCP) on 127.0.0.1.
    #[arg(long, default_value_t = 15053, value_name = "PORT")]
    pub dns_port: u16,
    /// A directory shared read-only with agents (compose's `bridle-ca`
    /// volume): Bridle writes `ca.pem` and `bundle.pem` (the roots agents
    /// trust) there at start. It must exist and must not be the CA's own
    /// directory, which holds the key.
    #[arg(long, value_name = "DIR")]
    pub trust_dir: Option<PathBuf>,
}

/// Runs the appliance until SIGTERM or SIGINT.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "bridle up needs root to attach its eBPF programs to the cgroup root (CAP_BPF, CAP_NET_ADMIN, \
             CAP_SYS_ADMIN); run it with sudo, or as a privileged container with the host's cgroup2 and bpffs"
        );
    }
    refuse_host_netns()?;
    let config = args.decide.config()?.unwrap_or_default();
    if let Some(dir) = &args.trust_dir {
        check_trust_dir(dir, &config.tls.ca_dir)?;
    }
    let policy_dir = args.decide.policy_dir()?;
    let authorizer = Arc::new(Authorizer::new(args.decide.load()?, config.engine.decision_cache_size));
    let secrets = Guards::secrets(&config)?;
    super::raise_open_files()?;
    join_host_cgroup_namespace()?;
    // Before any socket exists and before any thread: everything this
    // process does from here is exempt from redirection.
    let own = Cgroup::create(&format!("bridle/{APPLIANCE}")).context("creating Bridle's own cgroup")?;
    own.add_pid(std::process::id()).context("moving bridle into its own cgroup")?;
    let (runtime_pid, runtime_cgroup) = container_runtime();
    let selection = Selection::Netns {
        exempt_cgroup: own.id().context("reading Bridle's cgroup id")?,
        exempt_level: own.level().context("locating Bridle's cgroup")?,
        runtime_pid,
        runtime_cgroup,
    };
    // Armed before anything else can fail: an agent that joined this
    // namespace early is refused until the proxy is up, never let through.
    let own_path = own.path().to_path_buf();
    let redirector = match arm(&args, selection) {
        Ok(redirector) => redirector,
        Err(error) => return Err(after_failed_start(&own_path, error)),
    };
    let started = (|| {
        let audit = open_audit(&config, args.audit.as_deref(), &secrets)?;
        let guards = Guards::new(&config, secrets, &audit);
        let runtime = super::runtime()?;
        Ok::<_, anyhow::Error>((
            runtime,
            Daemon { config, authorizer, audit, guards, policy_dir, own, selection, args },
        ))
    })();
    let (runtime, daemon) = match started {
        Ok(started) => started,
        Err(error) => return Err(after_failed_start(&own_path, error)),
    };
    runtime.block_on(daemon.run(redirector)).map_err(|error| after_failed_start(&own_path, error))
}

/// Attaches (or re-adopts) the programs with this namespace guarded,
/// pointing at the listeners' ports before they listen: until they do,
/// guarded connects find nothing there and fail.
fn arm(args: &UpArgs, selection: Selection) -> anyhow::Result<Redirector> {
    let early = RedirectConfig {
        selection,
        proxy_v4: SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.proxy_port),
        proxy_ip6: None,
        dns_v4: SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.dns_port),
        dns_ip6: None,
        own_ports: Vec::new(),
        gateway_ports: Vec::new(),
    };
    let root = cgroup2_mount().context("finding the cgroup v2 mount")?;
    let pins = pin_dir();
    let mut redirector = Redirector::attach_or_adopt(&early, &root, &pins)
        .with_context(|| format!("attaching the redirector to {}", root.display()))?;
    let cookie = netns_cookie().context("reading this network namespace's cookie")?;
    redirector.guard_netns(cookie)?;
    Ok(redirector)
}

/// A start that failed after the programs were armed: they stay (failing
/// closed) if a guarded process is there to be kept out, else they are
/// detached and Bridle's cgroup removed, so a refused start leaves nothing.
fn after_failed_start(own: &Path, error: anyhow::Error) -> anyhow::Error {
    let pins = pin_dir();
    let cookies = Redirector::inspect(&pins).map(|p| p.guarded_netns).unwrap_or_default();
    if let Some(why) = admin::scan(&cookies, &admin::procs(own)).keeps_programs() {
        eprintln!(
            "bridle: start failed; {why}: the programs stay attached, failing their connects, until `bridle up` \
             succeeds or `bridle down`"
        );
        return error;
    }
    if let Err(cleanup) = Redirector::remove_pins(&pins) {
        eprintln!("bridle: could not remove {}: {cleanup}", pins.display());
    }
    if let Err(cleanup) = leave_cgroup(own) {
        eprintln!("bridle: {cleanup:#}");
    }
    error
}

struct Daemon {
    config: Config,
    authorizer: Arc<Authorizer>,
    audit: Arc<AuditLog>,
    guards: Guards,
    policy_dir: Option<PathBuf>,
    own: Cgroup,
    selection: Selection,
    args: UpArgs,
}

impl Daemon {
    async fn run(self, mut redirector: Redirector) -> anyhow::Result<ExitCode> {
        let ports = Ports { proxy: self.args.proxy_port, dns: self.args.dns_port };
        let egress = Egress::bind(&self.config, &self.authorizer, &self.audit, APPLIANCE, ports, &self.guards).await?;
        let control = control::bind(&control::socket_path(APPLIANCE))?;
        if let Some(dir) = &self.args.trust_dir {
            let roots = self.config.tls.upstream_ca_bundle.as_deref().unwrap_or(Path::new(SYSTEM_BUNDLE));
            export_trust(&egress.ca(), roots, dir)
                .with_context(|| format!("writing the agents' trust files to {}", dir.display()))?;
        }
        let redirect = egress.redirect_config(&self.config, self.selection);
        redirector.write_config_from(&redirect).context("pointing the programs at the listeners")?;
        let cookie = netns_cookie().context("reading this network namespace's cookie")?;
        let pins = pin_dir();
        let adopted = redirector.adopted();
        if !redirector.packet_filter() {
            let message = "this kernel refuses the appliance packet filter (Linux 6.15+): guarded containers can \
                           accept connections from their network and send source-routed packets; connects and \
                           DNS are still redirected"
                .to_string();
            eprintln!("bridle: warning: {message}");
            self.notice("warn", message);
        }
        let origins = egress.origins();
        origins.install(redirector, self.authorizer.generation())?;
        // Without a working exemption every upstream connect of the proxy
        // would come back to the proxy. Stop here; the programs stay
        // attached, so guarded processes fail closed.
        tokio::task::spawn_blocking(exemption_self_check).await.context("self-check task")??;

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let _watch = watch_policies(self.policy_dir.as_deref(), &self.authorizer, &self.audit)?;
        let mut tasks = egress.spawn(&stopped);
        tasks.push(control::spawn(control, Arc::clone(&self.guards.approvals), stopped.clone()));
        let (scope, approvals) = (Scope::Namespace, &self.guards.approvals);
        let principal = &self.config.project.name;
        tasks.extend(calls::start(APPLIANCE, principal, scope, &self.authorizer, approvals, &self.audit, &stopped));
        let mcp =
            super::mcp::spawn(&self.config, &self.authorizer, &self.guards.approvals, &self.audit, APPLIANCE, &stopped);
        tasks.extend(mcp.await?);
        let own = self.own.path().to_path_buf();
        tasks.push(tokio::spawn(report_raw_capable(Arc::clone(&self.audit), own, stopped.clone())));
        let follow = tokio::spawn(follow_generations(Arc::clone(&self.authorizer), Arc::clone(&origins), stopped));
        let started = format!(
            "appliance started: netns cookie {cookie}, proxy 127.0.0.1:{}, resolver 127.0.0.1:{}, {} pins {}",
            self.args.proxy_port,
            self.args.dns_port,
            if adopted { "re-adopted" } else { "attached" },
            pins.display()
        );
        self.notice("info", started.clone());
        eprintln!("bridle: {started}");

        wait_for_stop().await?;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        let _ = follow.await;
        self.stop(&origins)?;
        self.audit.sync().context("syncing the audit log")?;
        Ok(ExitCode::SUCCESS)
    }

    /// Detaches only when nothing guarded is left to fail closed for.
    fn stop(&self, origins: &LateOrigins) -> anyhow::Result<()> {
        let Some(redirector) = origins.take() else { return Ok(()) };
        // A container stopped just before us may still be exiting (its
        // processes die after its init): give them a moment to go.
        let scan = || admin::scan(&redirector.guarded_netns(), &admin::procs(self.own.path())).keeps_programs();
        let mut keeps = scan();
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        while keeps.is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            keeps = scan();
        }
        if let Some(why) = keeps {
            let message = format!(
                "appliance stopped; {why}: the programs stay attached and their connects fail until `bridle up` \
                 or `bridle down`"
            );
            self.notice("warn", message.clone());
            eprintln!("bridle: {message}");
            return Ok(());
        }
        redirector.detach().context("detaching the redirector")?;
        leave_cgroup(self.own.path())?;
        self.notice("info", "appliance stopped; programs detached".into());
        eprintln!("bridle: appliance stopped; no guarded process left, programs detached");
        Ok(())
    }

    fn notice(&self, level: &str, message: String) {
        let entry = AuditEntry::Notice { component: "up".into(), level: level.into(), message };
        if let Err(error) = self.audit.append(entry) {
            tracing::error!(%error, "could not audit an appliance notice");
        }
    }
}

/// Every [`RAW_CAPABLE_EVERY`], warns about guarded processes new since
/// the last look that hold `CAP_NET_RAW` or `CAP_NET_ADMIN` (see
/// [`raw_capable`]), until `stopped`.
async fn report_raw_capable(audit: Arc<AuditLog>, own: PathBuf, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut watch = raw_capable::Watch::default();
    loop {
        let own = own.clone();
        let looked = tokio::task::spawn_blocking(move || {
            let holders = watch.new_holders(&own);
            (watch, holders)
        });
        let Ok((kept, holders)) = looked.await else { return };
        watch = kept;
        for holder in holders {
            let message = holder.message();
            eprintln!("bridle: warning: {message}");
            let entry = AuditEntry::Notice { component: "up".into(), level: "warn".into(), message };
            if let Err(error) = audit.append(entry) {
                tracing::error!(%error, "could not audit a capability warning");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RAW_CAPABLE_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// How often [`report_raw_capable`] looks.
const RAW_CAPABLE_EVERY: Duration = Duration::from_secs(5);

/// How long a stop waits for guarded processes that are already exiting
/// before it keeps the programs attached for them.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// `PROC_NET_INIT_INO` and `PROC_PID_INIT_INO`: the fixed inode numbers of
/// the host's initial network (Linux 6.x) and pid namespaces.
const INIT_NET_INO: u64 = 0xEFFF_FFF9;
const INIT_PID_INO: u64 = 0xEFFF_FFFC;

/// The inode of a namespace file (`/proc/self/ns/net`, …): its identity.
fn ns_ino(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).ok()
}

/// Whether this process shares the host's (initial) pid namespace, so
/// PID 1 is the host's init.
pub(super) fn in_initial_pid_namespace() -> bool {
    ns_ino("/proc/self/ns/pid") == Some(INIT_PID_INO)
}

/// Whether the network namespace file `path` is the host's (initial) one.
/// Older kernels number init_net dynamically: then it is compared with
/// PID 1's, when PID 1 is the host's init (we share the initial pid
/// namespace).
fn is_host_netns(path: &str) -> bool {
    let netns = ns_ino(path);
    netns == Some(INIT_NET_INO) || (in_initial_pid_namespace() && netns == ns_ino("/proc/1/ns/net"))
}

/// Guarding the host's own network namespace would guard (and `bridle down`
/// would kill) every process on the host: refuse.
fn refuse_host_netns() -> anyhow::Result<()> {
    if is_host_netns("/proc/self/ns/net") {
        bail!(
            "bridle up guards every process in its network namespace, and this is the host's: run it in a \
             container (docker compose up) or a namespace of its own (`ip netns exec NAME bridle up`); to guard \
             one command on the host use `bridle run -- CMD`"
        );
    }
    Ok(())
}

/// The trust directory is where agents look for Bridle's CA: a missing one
/// means the volume was not mounted, and agents would fail every TLS
/// handshake without saying why. The key's directory is never shared.
fn check_trust_dir(dir: &Path, ca_dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!(
            "the trust directory {} does not exist: mount the volume agents read Bridle's CA from there \
             (compose.yaml: `bridle-ca:{}`)",
            dir.display(),
            dir.display()
        );
    }
    let (trust, ca) = (resolved(dir), resolved(ca_dir));
    if trust.starts_with(&ca) || ca.starts_with(&trust) {
        bail!(
            "the trust directory {} and the CA's own directory ({}), which holds its private key, are one or \
             nested: agents must get a directory of their own, apart from it",
            dir.display(),
            ca_dir.display()
        );
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists (the CA directory may
/// not exist yet), the rest joined on.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for base in absolute.ancestors() {
        if let Ok(real) = std::fs::canonicalize(base) {
            return absolute.strip_prefix(base).map_or(real.clone(), |rest| real.join(rest));
        }
    }
    absolute
}

/// In a container with its own cgroup namespace Bridle could not move into
/// `<cgroup2>/bridle/up` (outside its namespace), and its cgroup paths
/// would not name the hierarchy the programs attach to. Seeing the host's
/// PID 1 (`pid: host`), it joins PID 1's cgroup namespace instead, which
/// `cgroup: host` would have given it (docker-compose v1 lacks the key).
fn join_host_cgroup_namespace() -> anyhow::Result<()> {
    let (ours, host) = (ns_ino("/proc/self/ns/cgroup"), ns_ino("/proc/1/ns/cgroup"));
    if !in_initial_pid_namespace() || ours.is_none() || ours == host {
        return Ok(());
    }
    // PID 1 may be out of reach (another user namespace, a sandbox's init):
    // then stay; if that leaves Bridle unable to exempt itself, creating its
    // cgroup or the exemption self-check says so.
    let joined = std::fs::File::open("/proc/1/ns/cgroup")
        .and_then(|ns| nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(std::io::Error::from));
    match joined {
        Ok(()) => tracing::info!("joined the host's cgroup namespace"),
        Err(error) => tracing::warn!(%error, "could not join PID 1's cgroup namespace; staying in this one"),
    }
    Ok(())
}

/// In a Docker container whose DNS server is Docker's embedded one
/// (127.0.0.11: what Bridle's resolver forwards to, and how it finds
/// compose services), that server is dockerd itself, answering from a
/// socket in this namespace: guarded, its replies would be refused. The
/// dockerd process is exempt from the address hooks by pid, and only while
/// it is in the cgroup it was found in (a process that reuses its pid
/// after a restart is not); the packet filter exempts sockets of that
/// cgroup. Needs
/// `pid: host` to see it; `(0, 0)` (none) otherwise.
fn container_runtime() -> (u32, u64) {
    let embedded_dns = std::fs::read_to_string("/etc/resolv.conf")
        .is_ok_and(|conf| conf.lines().any(|line| line.split_whitespace().eq(["nameserver", "127.0.0.11"])));
    if !embedded_dns || !Path::new("/.dockerenv").exists() {
        return (0, 0);
    }
    let dockerd = std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        Some((pid, is_dockerd(pid)?))
    });
    match dockerd {
        Some((pid, cgroup)) => {
            tracing::info!(pid, cgroup, "dockerd is exempt: its embedded DNS answers from this namespace");
        }
        None => tracing::warn!(
            "Docker's embedded DNS is this namespace's resolver but dockerd is not visible (pid: host?): it cannot \
             answer Bridle"
        ),
    }
    dockerd.unwrap_or((0, 0))
}

/// `pid`'s cgroup v2 id if it is the real dockerd: named so, running a
/// binary named so, as root, in the host's network namespace. Any process
/// can call itself `dockerd`; a guarded one is in the appliance's
/// namespace, not the host's.
fn is_dockerd(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let root = status.lines().find_map(|line| line.strip_prefix("Uid:"))?.split_whitespace().all(|id| id == "0");
    let host_netns = is_host_netns(&format!("/proc/{pid}/ns/net"));
    if comm.trim() != "dockerd" || exe.file_name()? != "dockerd" || !root || !host_netns {
        return None;
    }
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = cgroup2_mount().ok()?.join(path.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

/// `/sys/fs/bpf/bridle/up`.
pub(super) fn pin_dir() -> PathBuf {
    Path::new(BPFFS_ROOT).join("bridle").join(APPLIANCE)
}

/// Connects to a listener of our own on loopback: with the exemption
/// working the connection arrives there; redirected, it would land in the
/// proxy's backlog instead and never arrive.
fn exemption_self_check() -> anyhow::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("self-check: binding a loopback listener")?;
    let addr = listener.local_addr().context("self-check: listener address")?;
    listener.set_nonblocking(true).context("self-check: listener mode")?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    let local = stream.and_then(|s| s.local_addr()).context("self-check: connecting to our own listener")?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((_, peer)) if peer == local => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e).context("self-check: accepting"),
        }
    }
    bail!(
        "Bridle's own connections are being redirected: the cgroup exemption does not match. In a container, \
         run Bridle with the host's cgroup namespace (`cgroup: host` in compose)"
    )
}

/// Moves this process back to the cgroup root and removes its cgroup.
fn leave_cgroup(own: &Path) -> anyhow::Result<()> {
    let root = cgroup2_mount().context("finding the cgroup v2 mount")?;
    let me = std::process::id().to_string();
    std::fs::write(root.join("cgroup.procs"), me).context("leaving Bridle's cgroup")?;
    std::fs::remove_dir(own).with_context(|| format!("removing {}", own.display()))
}

async fn wait_for_stop() -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appliance_pins_live_beside_session_pins() {
        assert_eq!(super::pin_dir(), std::path::Path::new("/sys/fs/bpf/bridle/up"));
    }

    #[test]
    fn a_trust_directory_apart_from_the_ca_is_the_only_one_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (trust, ca) = (dir.path().join("trust"), dir.path().join("ca"));
        std::fs::create_dir_all(&trust).expect("trust dir");
        check_trust_dir(&trust, &ca).expect("apart: accepted, the CA directory not made yet");
        let refused = |trust: &Path, ca: &Path| check_trust_dir(trust, ca).expect_err("refused").to_string();
        assert!(refused(&trust, &trust).contains("are one or nested"));
        // The CA inside the trust directory: agents would see ca/ca.key.
        assert!(refused(dir.path(), &ca).contains("are one or nested"));
        std::fs::create_dir_all(ca.join("sub")).expect("ca dirs");
        assert!(refused(&ca.join("sub"), &ca).contains("are one or nested"));
        // Through a symlink, and through `..`, it is the same directory.
        std::os::unix::fs::symlink(&ca, dir.path().join("link")).expect("symlink");
        assert!(refused(&dir.path().join("link"), &ca).contains("are one or nested"));
        assert!(refused(&trust.join(".."), &ca).contains("are one or nested"));
    }
}
