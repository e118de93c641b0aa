//! `[host] cover_sockets` for the sockets served after the command
//! started: an ssh `ControlMaster` opened meanwhile, a service started, one
//! bound again at the same path (its cover went with the old file).
//!
//! The session looks at the command's `/proc/<pid>/net/unix` every
//! [`PERIOD_MS`] ([`watch`]); when a socket served outside the session
//! appears there that it has not seen, it runs `bridle __cover-sockets`
//! ([`cover_in`]): a fresh single-threaded process (`setns` into a mount
//! namespace refuses a threaded one) that enters the command's mount
//! namespace and covers there what is served and not yet covered, as the
//! sandbox did at the start. So a socket served later is out of the
//! command's reach within about a period; until then it is in reach,
//! which is what the warning says.
//!
//! Fail closed: a socket that cannot be covered ends the session (its
//! processes killed, said, audited), as a covered directory replaced on
//! the host does ([`super::super::services`]).
//!
//! Never: mount anything in a namespace that is not the command's (the
//! pid is checked to be in the session's cgroup, and its namespace to be
//! another than Bridle's own), or read what a socket serves.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};

use super::{names, served_sockets};
use crate::host::services::Watch;
use crate::host::warnings::Warnings;

/// How often the command's sockets table is read.
pub const PERIOD_MS: u16 = 250;

/// `__cover-sockets`' exit code when the command's namespace is not there
/// to enter (not made yet, or the command gone): nothing done, try again.
const NOT_READY: u8 = 3;

/// Arguments of the internal `__cover-sockets` step.
#[derive(Debug, Clone, clap::Args)]
pub struct CoverArgs {
    /// A process of the session: its mount namespace is entered.
    #[arg(long)]
    pub pid: u32,
    /// The session's cgroup v2 directory, which `--pid` must be in.
    #[arg(long)]
    pub cgroup: PathBuf,
    /// A directory whose sockets are left alone (repeated).
    #[arg(long)]
    pub allowed: Vec<PathBuf>,
}

/// Covers, in the mount namespace of `--pid`, every socket served outside
/// `--allowed` that is not covered yet, and prints each covered path on a
/// line of its own. Exits [`NOT_READY`] when `--pid` is not a process of
/// the session's cgroup or has not left Bridle's mount namespace yet.
pub fn cover_in(args: CoverArgs) -> anyhow::Result<ExitCode> {
    let not_ready = Ok(ExitCode::from(NOT_READY));
    let Ok(namespace) = std::fs::File::open(format!("/proc/{}/ns/mnt", args.pid)) else { return not_ready };
    // Checked after the namespace is held: a pid taken again since by a
    // process outside the session is not let through.
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{}/cgroup", args.pid)) else { return not_ready };
    if !in_cgroup(&cgroups, &args.cgroup) {
        return not_ready;
    }
    let own = std::fs::metadata("/proc/self/ns/mnt").context("reading Bridle's mount namespace")?;
    let theirs = namespace.metadata().context("reading the command's mount namespace")?;
    if (own.dev(), own.ino()) == (theirs.dev(), theirs.ino()) {
        return not_ready;
    }
    nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
        .context("entering the command's mount namespace")?;
    let covered = super::cover_served(&args.allowed)?;
    let mut out = std::io::stdout().lock();
    for path in covered {
        out.write_all(path.as_os_str().as_bytes()).and_then(|()| out.write_all(b"\n")).context("writing stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `/proc/<pid>/cgroup` (`cgroups`) puts the process in the cgroup
/// v2 directory `dir` (its path below the mount ends `dir`).
fn in_cgroup(cgroups: &str, dir: &Path) -> bool {
    cgroups.lines().filter_map(|line| line.strip_prefix("0::/")).any(|below| !below.is_empty() && dir.ends_with(below))
}

/// Watches the sockets served in the network namespace of the command
/// (`pid`, in `cgroup`) until the returned [`Watch`] drops, and has each
/// one served outside `allowed` that was not there at the last look
/// covered in the command's mount namespace; those covered are said and
/// audited through `warnings`. When one cannot be covered, calls `failed`
/// with why, and again every period after.
pub fn watch(
    pid: u32,
    cgroup: &Path,
    allowed: Vec<PathBuf>,
    warnings: Warnings,
    mut failed: impl FnMut(String) + Send + 'static,
) -> anyhow::Result<Watch> {
    let exe = std::env::current_exe().context("locating the bridle executable")?;
    let cgroup = cgroup.to_path_buf();
    let canonical: Vec<PathBuf> =
        allowed.iter().map(|dir| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())).collect();
    let outside = move |path: &Path| !canonical.iter().any(|dir| path.starts_with(dir));
    let mut seen = BTreeSet::new();
    Watch::every(PERIOD_MS, "bridle-sockets", move || {
        // Gone: the session is ending.
        let Ok(table) = std::fs::read(format!("/proc/{pid}/net/unix")) else { return };
        let now: BTreeSet<(PathBuf, u64)> =
            served_sockets(&table).into_iter().filter(|(path, _)| outside(path)).collect();
        if now.is_subset(&seen) {
            seen = now;
            return;
        }
        match cover_later(&exe, pid, &cgroup, &allowed) {
            Ok(Some(covered)) => {
                if !covered.is_empty() {
                    warnings.warn(format_args!(
                        "{} socket(s) served outside the session since it started are covered for the command \
                         ([host] cover_sockets): {}",
                        covered.len(),
                        names(&covered)
                    ));
                }
                seen = now;
            }
            Ok(None) => {}
            Err(error) => failed(format!("{error:#}")),
        }
    })
}

/// Runs `__cover-sockets` for the command `pid`: the paths it covered, or
/// `None` when the command's namespace was not there to enter.
fn cover_later(exe: &Path, pid: u32, cgroup: &Path, allowed: &[PathBuf]) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let mut command = Command::new(exe);
    command.arg("__cover-sockets").arg("--pid").arg(pid.to_string()).arg("--cgroup").arg(cgroup);
    for dir in allowed {
        command.arg("--allowed").arg(dir);
    }
    let output = command
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .context("running bridle __cover-sockets to cover sockets served since the session started")?;
    match output.status.code() {
        Some(0) => Ok(Some(
            output
                .stdout
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| PathBuf::from(std::ffi::OsStr::from_bytes(line)))
                .collect(),
        )),
        Some(code) if code == i32::from(NOT_READY) => Ok(None),
        _ => {
            let said = String::from_utf8_lossy(&output.stderr);
            bail!(
                "a socket served since the session started could not be covered for the command ({}): {}",
                output.status,
                said.trim()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_process_of_the_sessions_cgroup_is_entered() {
        let session = Path::new("/sys/fs/cgroup/bridle/run-42");
        assert!(in_cgroup("0::/bridle/run-42\n", session));
        // Hybrid hosts list v1 hierarchies too; only v2's line counts.
        assert!(in_cgroup(
            "12:pids:/user.slice\n0::/bridle/run-42\n",
            Path::new("/sys/fs/cgroup/unified/bridle/run-42")
        ));
        assert!(!in_cgroup("0::/user.slice/session-3.scope\n", session));
        assert!(!in_cgroup("0::/bridle/run-4\n", session), "component by component, not a prefix");
        assert!(!in_cgroup("0::/\n", session));
        assert!(!in_cgroup("", session));
    }
}
