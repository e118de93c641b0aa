//! `[host] cover_sockets` for the sockets served after the command
//! started: an ssh `ControlMaster` opened meanwhile, a service started, one
//! bound again at the same path (its cover went with the old file).
//!
//! The session holds the command's mount namespace from the moment the
//! sandbox has set it up and waits to exec ([`Namespace`]), before the
//! command could make another, and looks at the sockets table every
//! [`PERIOD_MS`] ([`watch`]). When a socket served outside the session
//! appears there that it has not seen (a new path or inode, or a bound
//! name gone, as ssh removes a `ControlMaster`'s first name), and it is
//! not one of the command's own (a socket a process of the session's
//! cgroup holds: its tmux, its `ssh -M`), it runs `bridle
//! __cover-sockets` ([`cover_in`]): a fresh single-threaded process
//! (`setns` into a mount namespace refuses a threaded one) that lists the
//! socket files where their owners bound them, enters the held namespace
//! and covers there each that is the same file (not the command's own
//! copy at that path) and not yet covered, as the sandbox did at the
//! start. The sandbox made that namespace's mounts
//! shared among its own ([`share_later_covers`]), so a cover reaches the
//! mount namespaces the command makes itself (`unshare -Urm`) as well
//! (where it cannot make them private or clone a directory out of reach:
//! the mount calls are denied it, [`crate::host::confine`]). So
//! a socket served later is out of the command's reach within about a
//! period; until then it is in reach, which is what the warning says.
//!
//! Fail closed: a socket that cannot be covered, or a namespace that could
//! not be held, ends the session (its processes killed, said, audited),
//! as a covered directory replaced on the host does.
//!
//! Never: mount anything in a namespace other than the one the sandbox
//! set up (held before the command runs, and checked to be another than
//! Bridle's own), cover a socket of the command's own, or read what a
//! socket serves.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use super::{names, served_sockets};
use crate::host::services::Watch;
use crate::host::warnings::Warnings;

/// How often the sockets table is read.
pub const PERIOD_MS: u16 = 250;

/// How long `__cover-sockets` may take (it takes milliseconds).
const HELPER_DEADLINE: Duration = Duration::from_secs(10);

/// Arguments of the internal `__cover-sockets` step.
#[derive(Debug, Clone, clap::Args)]
pub struct CoverArgs {
    /// The command's mount namespace (a `/proc/<pid>/fd/<n>` of the
    /// session's, which holds it).
    #[arg(long)]
    pub namespace: PathBuf,
    /// The session's cgroup v2 directory: the sockets its processes hold
    /// are the command's own, and left alone.
    #[arg(long)]
    pub cgroup: PathBuf,
    /// A directory whose sockets are left alone (repeated).
    #[arg(long)]
    pub allowed: Vec<PathBuf>,
}

/// Covers, in the mount namespace `--namespace`, every socket served
/// outside `--allowed` and not the command's own that is not covered yet,
/// and prints each covered path on a line of its own.
pub fn cover_in(args: CoverArgs) -> anyhow::Result<ExitCode> {
    let namespace = File::open(&args.namespace)
        .with_context(|| format!("opening the command's mount namespace ({})", args.namespace.display()))?;
    ensure!(!is_own(&namespace)?, "{} is Bridle's own mount namespace, not the command's", args.namespace.display());
    // Listed here, where paths lead where the sockets' owners bound them:
    // the table first, then the command's own sockets (one bound between
    // the two is found as its own), then each file's identity, so that a
    // path that leads to another file in the command's view (its own copy
    // of a directory) is not covered there.
    let table = std::fs::read("/proc/self/net/unix").context("reading /proc/self/net/unix")?;
    let own = session_sockets(&args.cgroup);
    let bound = super::bound_files();
    let files: Vec<(PathBuf, Option<(u64, u64)>)> = super::socket_files(&table, bound.as_ref(), &args.allowed, &own)
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some((path, Some((meta.dev(), meta.ino()))))
        })
        .collect();
    nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
        .context("entering the command's mount namespace")?;
    let covered = super::cover_files(files)?;
    let mut out = std::io::stdout().lock();
    for path in covered {
        out.write_all(path.as_os_str().as_bytes()).and_then(|()| out.write_all(b"\n")).context("writing stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `namespace` is this process's own mount namespace.
fn is_own(namespace: &File) -> anyhow::Result<bool> {
    let own = std::fs::metadata("/proc/self/ns/mnt").context("reading Bridle's mount namespace")?;
    let theirs = namespace.metadata().context("reading the command's mount namespace")?;
    Ok((own.dev(), own.ino()) == (theirs.dev(), theirs.ino()))
}

/// The inodes of the sockets the processes of `cgroup` (and the cgroups
/// below it) hold: the command's own, which it may serve itself.
fn session_sockets(cgroup: &Path) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
            let links = fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok());
            inodes.extend(links.filter_map(|link| socket_inode(&link)));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        dirs.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
    }
    inodes
}

/// The inode of a descriptor's link that names a socket (`socket:[N]`).
pub(super) fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The command's mount namespace as the sandbox left it, held by the
/// session from then on: the sandbox's pid once it is spawned
/// ([`Namespace::spawned`]), then the namespace once the sandbox is set up
/// ([`Namespace::hold`], from the warnings' `set_up`).
#[derive(Debug, Default)]
pub struct Namespace {
    pid: OnceLock<u32>,
    /// `None` inside: the sandbox ended before it was set up (its own
    /// error says why, and there is no command to guard).
    held: OnceLock<Result<Option<File>, String>>,
}

impl Namespace {
    pub fn spawned(&self, pid: u32) {
        let _ = self.pid.set(pid);
    }

    /// Holds the sandbox's mount namespace; called once its setup is done
    /// and before it may exec the command.
    pub fn hold(&self) {
        let held = self.open().map_err(|error| format!("{error:#}"));
        let _ = self.held.set(held);
    }

    fn open(&self) -> anyhow::Result<Option<File>> {
        // The pid is set as the spawn returns, long before the sandbox is
        // set up; a moment is waited for all the same.
        let mut pid = self.pid.get();
        for _ in 0..100 {
            if pid.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            pid = self.pid.get();
        }
        let pid = pid.context("the sandbox's pid was not known when it was set up")?;
        let namespace = File::open(format!("/proc/{pid}/ns/mnt"));
        // Its end of the warnings closed because it exited (a zombie until
        // the session reaps it): nothing was set up, nothing will run.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = state.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
        if exited {
            return Ok(None);
        }
        let namespace = namespace.context("opening the sandbox's mount namespace")?;
        ensure!(!is_own(&namespace)?, "the sandbox did not leave Bridle's mount namespace");
        Ok(Some(namespace))
    }
}

/// Makes every mount of this (the command's new, private) namespace
/// shared: a peer group of its own, not the host's, whose copies in the
/// mount namespaces the command makes later are its slaves. So a cover
/// [`watch`] makes here reaches those too; none made there comes back.
pub fn share_later_covers() -> anyhow::Result<()> {
    use nix::mount::{MsFlags, mount};
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SHARED, None::<&str>)
        .context("sharing the command's mounts with the namespaces it makes")
}

/// A served socket as the watch compares it: its bound name, its inode,
/// and whether that name still leads somewhere (ssh removes a
/// `ControlMaster`'s first name once it linked the `ControlPath`).
type Seen = (PathBuf, u64, bool);

/// Watches the sockets served in the session's network namespace until
/// the returned [`Watch`] drops, and has each one served outside `allowed`
/// that was not there at the last look, and is not the command's own,
/// covered in the command's mount namespace (`namespace`, once held);
/// those covered are said and audited through `warnings`. When one cannot
/// be covered or audited, or the namespace could not be held, calls
/// `failed` with why, and again every period after.
pub fn watch(
    namespace: Arc<Namespace>,
    cgroup: &Path,
    allowed: Vec<PathBuf>,
    warnings: Warnings,
    mut failed: impl FnMut(String) + Send + 'static,
) -> anyhow::Result<Watch> {
    let exe = std::env::current_exe().context("locating the bridle executable")?;
    let cgroup = cgroup.to_path_buf();
    let inside = super::Allowed::new(&allowed);
    // Whether each path served is inside `allowed`, resolved once while
    // it is served (a busy desktop serves a thousand sockets); the helper
    // resolves again what it covers.
    let mut resolved: HashMap<PathBuf, bool> = HashMap::new();
    let mut seen: BTreeSet<Seen> = BTreeSet::new();
    Watch::every(PERIOD_MS, "bridle-sockets", None, move || {
        let held = match namespace.held.get() {
            None => return,
            Some(Err(error)) => return failed(format!("cannot hold the command's mount namespace ({error})")),
            Some(Ok(None)) => return,
            Some(Ok(Some(held))) => held,
        };
        let table = match std::fs::read("/proc/self/net/unix") {
            Ok(table) => table,
            Err(error) => return failed(format!("cannot read /proc/self/net/unix ({error})")),
        };
        let served = served_sockets(&table);
        let paths: HashSet<&PathBuf> = served.iter().map(|(path, _)| path).collect();
        resolved.retain(|path, _| paths.contains(path));
        let mut now: BTreeSet<Seen> = BTreeSet::new();
        for (path, inode) in &served {
            if !*resolved.entry(path.clone()).or_insert_with(|| inside.holds(path)) {
                let named = std::fs::symlink_metadata(path).is_ok();
                now.insert((path.clone(), *inode, named));
            }
        }
        let fresh: Vec<u64> = now.difference(&seen).map(|(_, inode, _)| *inode).collect();
        if !fresh.is_empty() {
            let own = session_sockets(&cgroup);
            if !fresh.iter().all(|inode| own.contains(inode)) {
                let at = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd()));
                match cover_later(&exe, &at, &cgroup, &allowed) {
                    Ok(covered) if covered.is_empty() => {}
                    Ok(covered) => warnings.warn(format_args!(
                        "{} socket(s) served outside the session since it started are covered for the command \
                         ([host] cover_sockets): {}",
                        covered.len(),
                        names(&covered)
                    )),
                    Err(error) => return failed(format!("{error:#}")),
                }
                // What was covered must be on record, or the session ends.
                if let Some(error) = warnings.lost() {
                    return failed(format!("a cover could not be kept in the audit log ({error})"));
                }
            }
        }
        seen = now;
    })
}

/// Runs `__cover-sockets` in the mount namespace `namespace` leads to:
/// the paths it covered.
fn cover_later(exe: &Path, namespace: &Path, cgroup: &Path, allowed: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut command = Command::new(exe);
    command.arg("__cover-sockets").arg("--namespace").arg(namespace).arg("--cgroup").arg(cgroup);
    for dir in allowed {
        command.arg("--allowed").arg(dir);
    }
    let mut child = command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running bridle __cover-sockets to cover sockets served since the session started")?;
    // A path on a file system that hangs (NFS, FUSE) must not stop the
    // watch: past the deadline the helper is killed, and that is a failure.
    let deadline = std::time::Instant::now() + HELPER_DEADLINE;
    while child.try_wait().context("waiting for bridle __cover-sockets")?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("covering sockets served since the session started took over {HELPER_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().context("reading bridle __cover-sockets")?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        bail!(
            "a socket served since the session started could not be covered for the command ({}): {}",
            output.status,
            said.trim()
        );
    }
    let lines = output.stdout.split(|byte| *byte == b'\n').filter(|line| !line.is_empty());
    Ok(lines.map(|line| PathBuf::from(std::ffi::OsStr::from_bytes(line))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_names_a_socket_by_its_inode() {
        assert_eq!(socket_inode(Path::new("socket:[123456]")), Some(123_456));
        assert_eq!(socket_inode(Path::new("pipe:[123456]")), None);
        assert_eq!(socket_inode(Path::new("/tmp/socket:[1]")), None);
        assert_eq!(socket_inode(Path::new("socket:[x]")), None);
    }

    #[test]
    fn the_sockets_of_the_sessions_processes_are_found_in_its_cgroups() {
        // This test's own process stands in for a session's: a cgroup
        // tree whose procs file (in a subdirectory, as nested cgroups are)
        // names it.
        let tree = tempfile::tempdir().expect("tempdir");
        let nested = tree.path().join("nested");
        std::fs::create_dir(&nested).expect("nested");
        std::fs::write(tree.path().join("cgroup.procs"), "").expect("procs");
        std::fs::write(nested.join("cgroup.procs"), format!("{}\n", std::process::id())).expect("procs");
        let listener = std::os::unix::net::UnixListener::bind(tree.path().join("s")).expect("bind");
        let fd = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).expect("link");
        let inode = socket_inode(&fd).expect("a socket");
        assert!(session_sockets(tree.path()).contains(&inode));
        assert!(!session_sockets(&tree.path().join("missing")).contains(&inode));
    }
}
