//! `bridle status` and `bridle down`: what Bridle has in the kernel, and
//! removing it.
//!
//! A session leaves two things in the kernel: its cgroup
//! (`<cgroup2>/bridle/run-<pid>`) and its pinned programs and links
//! (`/sys/fs/bpf/bridle/run-<pid>`). While the owning `bridle run` lives it
//! removes both itself. If it dies, both stay on purpose: the pinned
//! programs keep redirecting the session's processes to a proxy that is
//! gone, so they fail closed. `bridle down` is how an operator ends that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bridle_redirector_ebpf::{BPFFS_ROOT, Redirector, cgroup2_mount};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One session found in the kernel.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub cgroup: Option<PathBuf>,
    pub pins: Option<PathBuf>,
}

impl Found {
    fn processes(&self) -> Vec<i32> {
        self.cgroup.as_deref().map(procs).unwrap_or_default()
    }
}

/// The pid that owns a session id (`run-<pid>`), if it is still a bridle.
fn owner_alive(id: &str) -> Option<u32> {
    let pid: u32 = id.strip_prefix("run-")?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "bridle").then_some(pid)
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
    println!("{:<16} {:<10} {:>9} {:>6}  cgroup", "SESSION", "STATE", "PROCESSES", "LINKS");
    for (id, session) in &found {
        let state = if owner_alive(id).is_some() { "running" } else { "orphaned" };
        let links = session.pins.as_deref().map_or(0, |p| children_files(p, "link"));
        let cgroup = session.cgroup.as_deref().map_or("-".to_string(), |p| p.display().to_string());
        println!("{id:<16} {state:<10} {:>9} {links:>6}  {cgroup}", session.processes().len());
    }
    Ok(ExitCode::SUCCESS)
}

fn children_files(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
        .unwrap_or(0)
}

/// `bridle down`: removes orphaned sessions (or all, with `all`): kills their
/// processes, detaches their programs, removes pins and cgroups.
pub fn down(all: bool) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bridle down needs root to kill guarded processes and detach eBPF programs; run it with sudo");
    }
    let mut removed = 0;
    for (id, session) in sessions()? {
        if let Some(owner) = owner_alive(&id) {
            if !all {
                println!("{id}: running (bridle pid {owner}); left alone (use --all)");
                continue;
            }
            let _ = kill(Pid::from_raw(i32::try_from(owner).unwrap_or(0)), Signal::SIGTERM);
        }
        remove(&id, &session)?;
        println!("{id}: removed");
        removed += 1;
    }
    println!("{removed} session(s) removed");
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
