//! One `bridle run` session, start to finish.
//!
//! Order matters for failing closed: the resolver and the proxy are
//! listening before the programs are attached, the programs are attached
//! before the command exists, and on the way out the command's whole cgroup is killed before
//! the programs are detached, so no guarded process ever runs unredirected.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::sync::Arc;

use anyhow::{Context, bail};
use bridle_engine::audit::{AuditEntry, AuditError, AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_proxy::http::secrets::Secrets;
use bridle_proxy::tls::CertificateAuthority;
use bridle_redirector_ebpf::{BPFFS_ROOT, Cgroup, RedirectConfig, Redirector, Selection, cgroup2_mount};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::calls::{self, Scope};
use super::control;
use super::egress::{Egress, Guards, LateOrigins, Ports, follow_generations, watch_policies};
use super::user::{self, Target};
use super::warnings::{self, Warnings};
use super::{admin, persistence, reachable, services, tamper, trust};
use crate::cli::settings::DecideArgs;

/// `bridle run [OPTIONS] -- CMD ARGS…`
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub decide: DecideArgs,
    /// Run the command as this user (name or uid). Default: the user who
    /// invoked sudo (SUDO_UID/SUDO_GID).
    #[arg(long)]
    pub user: Option<String>,
    /// Allow the command to run as root (it could then undo the guardrail).
    #[arg(long)]
    pub allow_root: bool,
    /// Start the command even where this kernel cannot confine it fully
    /// (no Landlock, or Landlock without scoping: Linux before 6.12), with a
    /// warning; without it, Bridle refuses to start there.
    #[arg(long)]
    pub degraded: bool,
    /// Audit log (default: the config's [audit] path).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// The command to guard, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs the command under guard and returns its exit status.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "bridle run needs root to attach its eBPF programs to a cgroup (CAP_BPF, CAP_NET_ADMIN, \
             CAP_SYS_ADMIN); run it with sudo: the command itself then runs as you, not as root"
        );
    }
    let found = args.decide.config_at()?;
    let config_file = found.as_ref().map(|(file, _)| file.clone());
    let config = found.map(|(_, config)| config).unwrap_or_default();
    let policy_dir = args.decide.policy_dir()?;
    let authorizer = Arc::new(Authorizer::new(args.decide.load()?, config.engine.decision_cache_size));
    let target = user::target(args.user.as_deref(), args.allow_root)?;
    if let Some(target) = &target {
        let mut inputs: Vec<(&str, PathBuf)> = Vec::new();
        inputs.extend(config_file.map(|path| ("the config", path)));
        inputs.extend(policy_dir.clone().map(|dir| ("the policy directory", dir)));
        inputs.extend(config.policies.overrides.clone().map(|dir| ("the policy overrides", dir)));
        inputs.extend(config.tls.upstream_ca_bundle.clone().map(|file| ("the upstream CA bundle", file)));
        inputs.push(("Bridle's CA directory", config.tls.ca_dir.clone()));
        // Root writes there, the log and the files beside it (checkpoint,
        // index): a directory the command could swap, or make files in
        // (sticky or not), would have Bridle write through its links, and
        // keep a log it forged.
        tamper::refuse_changeable(target, &inputs)?;
        let log = args.audit.clone().unwrap_or_else(|| config.audit.path.clone());
        let dir = log.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let stem = log.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        tamper::refuse_changeable_files_in(target, "the audit log's directory", dir, &stem)?;
    }
    let open_files = super::raise_open_files()?;
    let secrets = Guards::secrets(&config)?;
    let audit = open_audit(&config, args.audit.as_deref(), &secrets)?;
    let guards = Guards::new(&config, secrets, &audit);
    let runtime = super::runtime()?;
    let session = Session {
        config,
        authorizer,
        audit,
        guards,
        policy_dir,
        target,
        degraded: args.degraded,
        open_files,
        command: args.command,
    };
    runtime.block_on(session.run())
}

/// The audit log: `path`, else the config's `[audit] path`. Configured
/// literals and the real values of `[[secrets]]` are redacted from every
/// record.
pub(super) fn open_audit(config: &Config, path: Option<&Path>, secrets: &Secrets) -> anyhow::Result<Arc<AuditLog>> {
    let path = path.unwrap_or(&config.audit.path);
    let mut redact: Vec<(String, String)> =
        config.audit.redact.iter().map(|value| ("audit.redact".to_string(), value.clone())).collect();
    redact.extend(secrets.audit_redactions());
    let options = AuditOptions { fsync_interval: config.audit.fsync_interval(), index: config.audit.index, redact };
    // A log has one writer (it is a hash chain): a session beside another
    // that writes the same log gets a log of its own beside it, as `mcp
    // wrap` does.
    let mut opened = AuditLog::open(path, options.clone());
    // Another name each time one is in use too (appliances in containers
    // are all pid 1).
    let mut own = path.to_path_buf();
    for n in 0..16 {
        if !matches!(opened, Err(AuditError::InUse { .. })) {
            break;
        }
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        own = path.with_extension(format!("{}{suffix}.jsonl", std::process::id()));
        opened = AuditLog::open(&own, options.clone());
    }
    let log = opened.with_context(|| format!("opening the audit log {}", own.display()))?;
    if own != path {
        eprintln!("bridle: {} is in use by another session; auditing to {}", path.display(), own.display());
        let message = format!("{} was in use by another session: this one is audited here", path.display());
        let notice = AuditEntry::Notice { component: "run".into(), level: "warn".into(), message };
        log.append(notice).with_context(|| format!("writing the audit log {}", own.display()))?;
    }
    Ok(Arc::new(log))
}

struct Session {
    degraded: bool,
    /// The open-files limit Bridle was started with, which the command
    /// gets back ([`super::raise_open_files`]).
    open_files: u64,
    config: Config,
    authorizer: Arc<Authorizer>,
    audit: Arc<AuditLog>,
    guards: Guards,
    policy_dir: Option<PathBuf>,
    target: Option<Target>,
    command: Vec<String>,
}

impl Session {
    async fn run(self) -> anyhow::Result<ExitCode> {
        let id = format!("run-{}", std::process::id());
        let ports = Ports { proxy: 0, dns: 0 };
        let egress = Egress::bind(&self.config, &self.authorizer, &self.audit, &id, ports, &self.guards).await?;
        // Before the command exists: `bridle approve` must reach this session.
        let control = control::bind(&control::socket_path(&id))?;
        let guard = Guard::new(&id, egress.origins())?;
        guard.attach(egress.redirect_config(&self.config, Selection::Cgroup), self.authorizer.generation())?;
        self.notice(format!("session {id} started: {:?}", self.command));
        if self.target.is_none() {
            let warnings = Warnings::to_audit(&self.audit, &id);
            warnings.warn("the command runs as root and could detach the guardrail; use --user");
            warnings.all_kept().context("the command is not started")?;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let _watch = watch_policies(self.policy_dir.as_deref(), &self.authorizer, &self.audit)?;
        let follow = tokio::spawn(follow_generations(Arc::clone(&self.authorizer), egress.origins(), stopped.clone()));
        let ca = egress.ca();
        let mut tasks = egress.spawn(&stopped);
        tasks.push(control::spawn(control, Arc::clone(&self.guards.approvals), stopped.clone()));
        let scope = Scope::Cgroup { mount: cgroup2_mount()?, session: guard.cgroup.path().to_path_buf() };
        let approvals = &self.guards.approvals;
        let principal = &self.config.project.name;
        tasks.extend(calls::start(&id, principal, scope, &self.authorizer, approvals, &self.audit, &stopped));
        let mcp = super::mcp::spawn(&self.config, &self.authorizer, &self.guards.approvals, &self.audit, &id, &stopped);
        tasks.extend(mcp.await?);
        let home = self.home();
        let repo = std::env::current_dir().ok().and_then(|cwd| persistence::repository_of(&cwd));
        let watched = home.clone();
        let before = tokio::task::spawn_blocking(move || persistence::Snapshot::take(&watched, repo.as_deref()));
        let before = before.await.context("recording what runs code outside the guard")?;
        let status = self.run_command(&id, guard.cgroup.path(), &ca).await;
        let emptied = guard.kill_all().await;
        // Once nothing of the session is left to change them further.
        let changes = match tokio::task::spawn_blocking(move || before.changed()).await {
            Ok(changes) => changes,
            Err(error) => {
                eprintln!("bridle: error: could not look at the files that run code outside the guard: {error}");
                Vec::new()
            }
        };
        if let Some(message) = persistence::warning(&changes, &home) {
            let warnings = Warnings::to_audit(&self.audit, &id);
            warnings.warn(message);
            if let Err(error) = warnings.all_kept() {
                eprintln!("bridle: error: {error:#}");
            }
        }
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        let _ = follow.await;
        if !emptied {
            // Detached, they would run on unguarded: the pinned programs
            // stay, and keep their connects failing (no proxy answers).
            let cgroup = guard.cgroup.path().display().to_string();
            self.notice_at(
                "error",
                format!(
                    "session {id}: processes remain in {cgroup} after SIGKILL; its programs stay attached, so their \
                 connects keep failing; `bridle down` removes them once the processes are gone"
                ),
            );
            self.audit.sync().context("syncing the audit log")?;
            // Dropped, the guard tries once more, and keeps the pins
            // unless the processes are gone by then.
            drop(guard);
            bail!(
                "processes of the session remain in {cgroup} after SIGKILL; the guard stays attached (`bridle down`)"
            );
        }
        guard.teardown()?;
        let status = status?;
        self.notice(format!("session {id} ended: {status}"));
        self.audit.sync().context("syncing the audit log")?;
        Ok(exit_code(status))
    }

    fn notice(&self, message: String) {
        self.notice_at("info", message);
    }

    fn notice_at(&self, level: &str, message: String) {
        let entry = AuditEntry::Notice { component: "run".into(), level: level.into(), message };
        if let Err(error) = self.audit.append(entry) {
            tracing::error!(%error, "could not audit a session notice");
        }
    }

    /// The home of the command's user, whose startup files are watched.
    fn home(&self) -> PathBuf {
        PathBuf::from(self.target.as_ref().map_or("/root", |target| target.home.as_str()))
    }

    /// Starts the command through `bridle __sandbox-exec` (its warnings
    /// kept in the audit log) and waits for it.
    async fn run_command(&self, id: &str, cgroup: &Path, ca: &CertificateAuthority) -> anyhow::Result<ExitStatus> {
        let exe = std::env::current_exe().context("locating the bridle executable")?;
        let mut command = tokio::process::Command::new(exe);
        command.arg("__sandbox-exec").arg("--cgroup").arg(cgroup);
        if let Some(target) = &self.target {
            command.arg("--uid").arg(target.uid.to_string()).arg("--gid").arg(target.gid.to_string());
            command.arg(format!("--user-name={}", target.name));
        }
        for dir in &self.config.host.live_run_dirs {
            let mut arg = std::ffi::OsString::from("--live-run=");
            arg.push(dir);
            command.arg(arg);
        }
        if self.config.host.private_tmp {
            command.arg("--private-tmp");
        }
        if self.config.host.cover_sockets {
            command.arg("--cover-sockets");
        }
        if self.degraded {
            command.arg("--degraded");
        }
        command.arg(format!("--open-files={}", self.open_files));
        if self.config.host.lock_startup_files {
            let mut arg = std::ffi::OsString::from("--lock-startup-files=");
            arg.push(self.home());
            command.arg(arg);
        }
        // Held once the sandbox is set up, before the command runs.
        let namespace = Arc::new(reachable::later::Namespace::default());
        let set_up = {
            let (namespace, wanted) = (Arc::clone(&namespace), self.config.host.cover_sockets);
            move || {
                if wanted {
                    namespace.hold();
                }
            }
        };
        let (inherited, collector) = warnings::for_sandbox(&self.audit, id, set_up)?;
        inherited.pass_to(&mut command);
        command.arg("--").args(&self.command).env_clear().envs(self.environment(ca)?);
        if self.config.host.private_tmp {
            refuse_hidden_bundle(&self.config.tls.ca_dir)?;
        }
        let warnings = Warnings::to_audit(&self.audit, id);
        // A private /tmp covers everything in it whatever the host does.
        let _watch = if self.config.host.private_tmp { None } else { Some(self.watch_covers(cgroup, &warnings)?) };
        warnings.all_kept().context("the command is not started")?;
        let spawned = command.spawn().context("starting the command");
        // Only the sandbox may hold its end, or the collector never sees
        // the end of its warnings.
        drop(inherited);
        let status = match spawned {
            Ok(mut child) => {
                if let Some(pid) = child.id() {
                    namespace.spawned(pid);
                }
                let sockets = match self.config.host.cover_sockets {
                    true => self.watch_sockets(namespace, cgroup, id).map(Some),
                    false => Ok(None),
                };
                match sockets {
                    Ok(_sockets) => self.wait_forwarding_signals(child).await,
                    // Sockets served later would be in its reach unsaid.
                    Err(error) => {
                        admin::kill_cgroup(cgroup);
                        let _ = child.wait().await;
                        Err(error.context("[host] cover_sockets: the command was stopped"))
                    }
                }
            }
            Err(error) => Err(error),
        };
        // Every warning in the audit log before the session says it ended.
        let _ = tokio::task::spawn_blocking(move || collector.finish()).await;
        status
    }

    /// Waits for the command, forwarding the signals a terminal sends.
    async fn wait_forwarding_signals(&self, mut child: tokio::process::Child) -> anyhow::Result<ExitStatus> {
        let pid = child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
        let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
        loop {
            let forward = tokio::select! {
                status = child.wait() => return status.context("waiting for the command"),
                _ = interrupt.recv() => Signal::SIGINT,
                _ = terminate.recv() => Signal::SIGTERM,
                _ = hangup.recv() => Signal::SIGHUP,
            };
            if let Some(pid) = pid {
                let _ = kill(pid, forward);
            }
        }
    }

    /// Records the directories the command's namespace covers and watches
    /// them until the returned watch drops: one that becomes another
    /// directory on the host (see [`services`]) ends the session.
    fn watch_covers(&self, cgroup: &Path, warnings: &Warnings) -> anyhow::Result<services::Watch> {
        let (uid, gid, user) =
            self.target.as_ref().map_or((0, 0, "root"), |target| (target.uid, target.gid, target.name.as_str()));
        let covered = services::prepare(uid, gid, user, warnings)?;
        let mut end = self.ending(cgroup);
        covered.watch(warnings, move |dir| {
            end(format!(
                "{} is another directory on the host than when the session started (a service made it, or made it \
                 again): what it serves would be in the command's reach, so the session is ended",
                dir.display()
            ));
        })
    }

    /// `[host] cover_sockets` for sockets served after the command started
    /// (in `namespace`, [`reachable::later`]).
    fn watch_sockets(
        &self,
        namespace: Arc<reachable::later::Namespace>,
        cgroup: &Path,
        id: &str,
    ) -> anyhow::Result<services::Watch> {
        let allowed = reachable::allowed(&self.config.host.live_run_dirs);
        let mut end = self.ending(cgroup);
        let failed = move |reason: String| end(format!("{reason}; the session is ended"));
        reachable::later::watch(namespace, cgroup, allowed, Warnings::to_audit(&self.audit, id), failed)
    }

    /// Ends the session for a watch: each call kills its processes (and
    /// again while the watch runs, for one that joins the cgroup after the
    /// first kill); the first also says why, on stderr and in the audit log.
    fn ending(&self, cgroup: &Path) -> impl FnMut(String) + Send + 'static {
        let audit = Arc::clone(&self.audit);
        let cgroup = cgroup.to_path_buf();
        let mut said = false;
        move |message| {
            if !admin::kill_cgroup(&cgroup) {
                tracing::error!(cgroup = %cgroup.display(), "processes remain in the session cgroup");
            }
            if std::mem::replace(&mut said, true) {
                return;
            }
            eprintln!("bridle: error: {message}");
            let entry = AuditEntry::Notice { component: "run".into(), level: "error".into(), message };
            if let Err(error) = audit.append(entry) {
                tracing::error!(%error, "could not audit the end of a session");
            }
        }
    }

    /// The command's environment: only the forwarded variables, plus who it
    /// runs as and the CA trust variables (which win over forwarded ones).
    /// Nothing else of Bridle's environment reaches the agent.
    fn environment(&self, ca: &CertificateAuthority) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = self
            .config
            .env
            .forward
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect();
        if let Some(target) = &self.target {
            env.retain(|(name, _)| !matches!(name.as_str(), "HOME" | "USER" | "LOGNAME"));
            env.push(("HOME".into(), target.home.clone()));
            env.push(("USER".into(), target.name.clone()));
            env.push(("LOGNAME".into(), target.name.clone()));
        }
        // Trust variables and secret placeholders win over forwarded ones.
        let mut ours = trust::trust_env(&self.config, ca)?;
        ours.extend(self.guards.secrets.agent_env());
        env.retain(|(name, _)| !ours.iter().any(|(set, _)| set == name));
        env.extend(ours);
        Ok(env)
    }
}

/// With `[host] private_tmp` the CA bundle the trust variables name must
/// not be in the `/tmp` or `/var/tmp` the command no longer sees: every TLS
/// client in it would fail, none saying why.
fn refuse_hidden_bundle(ca_dir: &Path) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(ca_dir).unwrap_or_else(|_| ca_dir.to_path_buf());
    if let Some(hidden) = ["/tmp", "/var/tmp"].into_iter().find(|hidden| dir.starts_with(hidden)) {
        bail!(
            "[tls] ca_dir {} is in {hidden}, which [host] private_tmp hides from the command: its tools could not \
             read Bridle's CA bundle there; put ca_dir elsewhere",
            ca_dir.display()
        );
    }
    Ok(())
}

/// 128 + signal for a command killed by a signal, like a shell.
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The session's kernel state; whatever happens, it is removed.
struct Guard {
    id: String,
    cgroup: Cgroup,
    pins: PathBuf,
    origins: Arc<LateOrigins>,
    torn_down: bool,
}

impl Guard {
    fn new(id: &str, origins: Arc<LateOrigins>) -> anyhow::Result<Guard> {
        let cgroup = Cgroup::create(&format!("bridle/{id}")).context("creating the session cgroup")?;
        let pins = Path::new(BPFFS_ROOT).join("bridle").join(id);
        Ok(Guard { id: id.to_string(), cgroup, pins, origins, torn_down: false })
    }

    fn attach(&self, config: RedirectConfig, policy_generation: u64) -> anyhow::Result<()> {
        let redirector = Redirector::attach(&config, self.cgroup.path(), &self.pins)
            .with_context(|| format!("attaching the redirector to {}", self.cgroup.path().display()))?;
        self.origins.install(redirector, policy_generation)
    }

    /// Kills everything left in the cgroup (double-forked daemons too) and
    /// waits until it is empty: whether it is.
    async fn kill_all(&self) -> bool {
        let path = self.cgroup.path().to_path_buf();
        let emptied = tokio::task::spawn_blocking(move || admin::kill_cgroup(&path)).await.unwrap_or(false);
        if !emptied {
            tracing::error!(cgroup = %self.cgroup.path().display(), "processes remain in the session cgroup");
        }
        emptied
    }

    /// Detaches and removes everything; on error, `Drop` still cleans up.
    fn teardown(mut self) -> anyhow::Result<()> {
        if let Some(redirector) = self.origins.take() {
            redirector.detach().context("detaching the redirector")?;
        }
        std::fs::remove_dir(self.cgroup.path())
            .with_context(|| format!("removing the session cgroup {}", self.cgroup.path().display()))?;
        self.torn_down = true;
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let session = admin::Found { cgroup: Some(self.cgroup.path().to_path_buf()), pins: Some(self.pins.clone()) };
        if let Err(error) = admin::remove(&self.id, &session) {
            tracing::error!(error = %format!("{error:#}"), "cleaning up a failed session; `bridle down` retries");
        }
    }
}
