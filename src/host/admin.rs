//! `bridle status` and `bridle down`: what Bridle has in the kernel, and
//! removing it.
//!
//! A `bridle run` session leaves two things in the kernel: its cgroup
//! (`<cgroup2>/bridle/run-<pid>`, holding the guarded processes) and its
//! pinned programs and links (`/sys/fs/bpf/bridle/run-<pid>`). The appliance
//! (`bridle up`) has `<cgroup2>/bridle/up`, holding Bridle itself, and
//! `/sys/fs/bpf/bridle/up`; its guarded processes are those in the network
//! namespaces its `guarded_netns` map lists. While the owner lives it
//! removes its state itself. If it dies, the state stays on purpose: the
//! pinned programs keep redirecting guarded processes to a proxy that is
//! gone, so they fail closed. `bridle down` is how an operator ends that:
//! guarded processes first, then programs, so none ever runs unredirected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bridle_redirector_ebpf::{BPFFS_ROOT, Redirector, cgroup2_mount, netns_cookie};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::appliance::APPLIANCE;
use super::control;

/// One session found in the kernel.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub cgroup: Option<PathBuf>,
    pub pins: Option<PathBuf>,
}

impl Found {
    /// The guarded processes: the session cgroup's, or for the appliance
    /// those in its guarded network namespaces (Bridle itself excluded).
    fn processes(&self, id: &str) -> Vec<i32> {
        let in_cgroup = self.cgroup.as_deref().map(procs).unwrap_or_default();
        if id != APPLIANCE {
            return in_cgroup;
        }
        let pinned = self.pins.as_deref().and_then(|p| Redirector::inspect(p).ok());
        let cookies = pinned.map(|p| p.guarded_netns).unwrap_or_default();
        let mut exclude = in_cgroup;
        exclude.extend(i32::try_from(std::process::id()));
        guarded_processes(&cookies, &exclude)
    }
}

/// The bridle that owns a session, if it still runs: `run-<pid>` names it;
/// the appliance is whatever bridle sits in its own cgroup.
fn owner_alive(id: &str, session: &Found) -> Option<u32> {
    let is_bridle =
        |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "bridle");
    if id == APPLIANCE {
        let procs = session.cgroup.as_deref().map(procs).unwrap_or_default();
        return procs.into_iter().filter_map(|pid| u32::try_from(pid).ok()).find(|&pid| is_bridle(pid));
    }
    let pid: u32 = id.strip_prefix("run-")?.parse().ok()?;
    is_bridle(pid).then_some(pid)
}

/// Processes (minus `exclude`) whose network namespace has one of
/// `cookies`. A namespace's cookie is read from inside it, on a throwaway
/// thread that joins it (setns affects only the calling thread).
pub(super) fn guarded_processes(cookies: &[u64], exclude: &[i32]) -> Vec<i32> {
    scan(cookies, exclude).guarded
}

/// What a look through `/proc` found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Processes in a guarded network namespace.
    pub guarded: Vec<i32>,
    /// Processes whose network namespace could not be read (ptrace access:
    /// in a container, Bridle needs CAP_SYS_PTRACE): possibly guarded.
    pub unreadable: Vec<i32>,
}

impl Scan {
    /// Whether detaching could let a guarded process out: someone is still
    /// guarded, or might be.
    pub fn keeps_programs(&self) -> Option<String> {
        if let Some(pid) = self.guarded.first() {
            return Some(format!("{} guarded process(es) remain (e.g. pid {pid})", self.guarded.len()));
        }
        self.unreadable.first().map(|pid| {
            format!(
                "the network namespace of {} process(es) (e.g. pid {pid}) cannot be read, so they may be guarded \
                 (in a container, grant CAP_SYS_PTRACE)",
                self.unreadable.len()
            )
        })
    }
}

/// [`guarded_processes`], also naming the processes it could not inspect.
/// PID 1 of the initial pid namespace is the host's init, in the host's
/// network namespace, which is never guarded: it is not counted.
pub(super) fn scan(cookies: &[u64], exclude: &[i32]) -> Scan {
    let mut found = Scan::default();
    if cookies.is_empty() {
        return found;
    }
    let host_pids = super::appliance::in_initial_pid_namespace();
    let mut by_netns: BTreeMap<PathBuf, Vec<i32>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if exclude.contains(&pid) || (pid == 1 && host_pids) {
            continue;
        }
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(netns) => by_netns.entry(netns).or_default().push(pid),
            // Gone meanwhile: nothing to keep out.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => found.unreadable.push(pid),
        }
    }
    for pids in by_netns.into_values() {
        match cookie_of(pids[0]) {
            Some(cookie) if cookies.contains(&cookie) => found.guarded.extend(pids),
            Some(_) => {}
            None => found.unreadable.extend(pids),
        }
    }
    found
}

fn cookie_of(pid: i32) -> Option<u64> {
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    std::thread::spawn(move || {
        setns(&netns, CloneFlags::CLONE_NEWNET).ok()?;
        netns_cookie().ok()
    })
    .join()
    .ok()?
}

fn sessions() -> anyhow::Result<BTreeMap<String, Found>> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let cgroups = cgroup2_mount().context("finding the cgroup v2 mount")?.join("bridle");
    for (id, path) in children(&cgroups) {
        found.entry(id).or_default().cgroup = Some(path);
    }
    for (id, path) in children(&Path::new(BPFFS_ROOT).join("bridle")) {
        found.entry(id).or_default().pins = Some(path);
    }
    Ok(found)
}

fn children(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// The processes in a cgroup.
pub(super) fn procs(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `bridle status`: sessions, their owners and what they guard.
pub fn status() -> anyhow::Result<ExitCode> {
    let found = sessions()?;
    if found.is_empty() {
        println!("no bridle sessions");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<10} {:>9} {:>6}  {:<38} cgroup", "SESSION", "STATE", "PROCESSES", "LINKS", "BACKENDS");
    for (id, session) in &found {
        let state = if owner_alive(id, session).is_some() { "running" } else { "orphaned" };
        let links = session.pins.as_deref().map_or(0, |p| children_files(p, "link"));
        let cgroup = session.cgroup.as_deref().map_or("-".to_string(), |p| p.display().to_string());
        let backends = session.pins.as_deref().and_then(|p| Redirector::inspect(p).ok()).map_or_else(
            || "-".to_string(),
            |p| {
                let v6 = if p.ipv6 { "+[::1]" } else { "" };
                let netns = if id == APPLIANCE { format!(" netns:{}", p.guarded_netns.len()) } else { String::new() };
                format!("proxy {}{v6} dns :{}{netns}", p.proxy, p.dns.port())
            },
        );
        println!("{id:<16} {state:<10} {:>9} {links:>6}  {backends:<38} {cgroup}", session.processes(id).len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `bridle status --ready SESSION`: the session's control socket answers a
/// ping, which it does only once its programs are attached and checked.
pub fn ready(session: &str) -> anyhow::Result<ExitCode> {
    let path = control::socket_path(session);
    match crate::cli::approvals::call(&path, &control::Request::Ping {}) {
        Ok(response) if response.ok => {
            println!("{session}: ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => {
            eprintln!("bridle: {session} is not ready: {}", response.error.as_deref().unwrap_or("refused"));
            Ok(ExitCode::from(1))
        }
        Err(error) => {
            eprintln!("bridle: {session} is not ready: {}: {error}", path.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn children_files(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
        .unwrap_or(0)
}

/// `bridle down`: removes orphaned sessions (or running ones too, with
/// `all`), all of them or `only` those: kills their guarded processes,
/// detaches their programs, removes pins and cgroups.
pub fn down(all: bool, only: &[String]) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bridle down needs root to kill guarded processes and detach eBPF programs; run it with sudo");
    }
    let mut removed = 0;
    let found = sessions()?;
    // Sessions left as they are: their sockets are not probed either.
    let mut untouched = std::collections::HashSet::new();
    if let Some(unknown) = only.iter().find(|id| !found.contains_key(*id)) {
        bail!("no session {unknown} (see `bridle status`)");
    }
    for (id, session) in found {
        if !only.is_empty() && !only.contains(&id) {
            untouched.insert(id);
            continue;
        }
        if let Some(owner) = owner_alive(&id, &session) {
            if !all {
                println!("{id}: running (bridle pid {owner}); left alone (use --all)");
                untouched.insert(id);
                continue;
            }
            let owner = Pid::from_raw(i32::try_from(owner).unwrap_or(0));
            let _ = kill(owner, Signal::SIGTERM);
            // The appliance detaches itself when nothing guarded is left;
            // give it the chance before taking over.
            if id == APPLIANCE {
                wait_for_exit(owner, Duration::from_secs(5));
            }
        }
        if id == APPLIANCE {
            remove_appliance(&session)?;
        } else {
            remove(&id, &session)?;
        }
        println!("{id}: removed");
        removed += 1;
    }
    println!("{removed} session(s) removed");
    let candidate = |path: &Path| path.file_stem().is_none_or(|id| !untouched.contains(&*id.to_string_lossy()));
    for (dir, what) in [(super::control::SOCKET_DIR, "control"), (bridle_mcp_gateway::report::SOCKET_DIR, "MCP report")]
    {
        let sockets = super::control::sweep_stale(dir, candidate);
        if sockets > 0 {
            println!("{sockets} stale {what} socket(s) removed from {dir}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Kills every process in a cgroup (`cgroup.kill`, or SIGKILL one by one on
/// kernels without it) and waits up to two seconds for it to empty.
/// Returns whether it is empty.
pub(super) fn kill_cgroup(cgroup: &Path) -> bool {
    if std::fs::write(cgroup.join("cgroup.kill"), "1").is_err() {
        for pid in procs(cgroup) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    for _ in 0..100 {
        if procs(cgroup).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait_for_exit(pid: Pid, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while kill(pid, None).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The appliance's guarded processes are killed (they are in its network
/// namespaces, not in a cgroup of ours), then the programs detached.
fn remove_appliance(session: &Found) -> anyhow::Result<()> {
    let guarded = session.processes(APPLIANCE);
    for &pid in &guarded {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for _ in 0..100 {
        if session.processes(APPLIANCE).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = session.processes(APPLIANCE);
    if !left.is_empty() {
        bail!("{APPLIANCE}: guarded processes remain after SIGKILL: {left:?}");
    }
    if let Some(pins) = &session.pins {
        Redirector::remove_pins(pins).with_context(|| format!("{APPLIANCE}: removing pins {}", pins.display()))?;
    }
    if let Some(cgroup) = &session.cgroup
        && procs(cgroup).is_empty()
    {
        std::fs::remove_dir(cgroup).with_context(|| format!("{APPLIANCE}: removing cgroup {}", cgroup.display()))?;
    }
    Ok(())
}

/// Processes first, then programs: a process never runs unredirected. If
/// processes survive SIGKILL, the pins stay (they keep failing closed).
pub(super) fn remove(id: &str, session: &Found) -> anyhow::Result<()> {
    if let Some(cgroup) = &session.cgroup
        && !kill_cgroup(cgroup)
    {
        bail!("{id}: processes remain in {} after SIGKILL", cgroup.display());
    }
    if let Some(pins) = &session.pins {
        Redirector::remove_pins(pins).with_context(|| format!("{id}: removing pins {}", pins.display()))?;
    }
    if let Some(cgroup) = &session.cgroup {
        std::fs::remove_dir(cgroup).with_context(|| format!("{id}: removing cgroup {}", cgroup.display()))?;
    }
    Ok(())
}
