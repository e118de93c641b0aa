//! The last step before the guarded command: join the session's cgroup,
//! set `no_new_privs`, hide the user's session services
//! ([`super::services`]), drop to the target user, confine it to its
//! own processes and terminal ([`super::confine`]), exec.
//!
//! It runs as a fresh `bridle __sandbox-exec` process (not in a `pre_exec`
//! hook) so every step is ordinary safe code, and so the process is inside
//! the cgroup before the command's first instruction: nothing it or its
//! children ever do escapes redirection.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

use super::warnings::Warnings;

/// Arguments of the internal `__sandbox-exec` step.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// The session's cgroup v2 directory.
    #[arg(long)]
    pub cgroup: PathBuf,
    /// Drop to this uid (and `--gid`); absent means stay root.
    #[arg(long, requires = "gid")]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    /// The name of `--uid`, as the session looked it up (root when absent).
    #[arg(long, requires = "uid")]
    pub user_name: Option<String>,
    /// A directory of `/run` the command sees as the host's (repeated).
    #[arg(long)]
    pub live_run: Vec<PathBuf>,
    /// A `/tmp` and `/var/tmp` of the command's own, not the host's.
    #[arg(long)]
    pub private_tmp: bool,
    /// Make the startup files of this home (and of the repository the
    /// command starts in) read-only ([`super::persistence::lock`]).
    #[arg(long, value_name = "HOME")]
    pub lock_startup_files: Option<PathBuf>,
    /// Cover the sockets served outside the session that the command could
    /// connect to ([`super::reachable::cover`]).
    #[arg(long)]
    pub cover_sockets: bool,
    /// Start the command where the kernel cannot confine it fully
    /// ([`super::confine`]), with a warning, instead of refusing.
    #[arg(long)]
    pub degraded: bool,
    /// The soft open-files limit the command gets (Bridle's own was raised).
    #[arg(long)]
    pub open_files: Option<u64>,
    /// The sandbox's end of the session's socket for warnings (see
    /// [`super::warnings`]); absent, they are said on stderr only.
    #[arg(long)]
    pub warnings_fd: Option<i32>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Joins the cgroup, drops privileges and execs; returns only on failure
/// (kept in the session's audit log too, where it happened before the
/// exec).
pub fn exec(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let warnings = match args.warnings_fd {
        Some(fd) => Warnings::to_session(fd)?,
        None => Warnings::said_only(),
    };
    if let Err(error) = set_up(&args, &warnings) {
        return Err(warnings.not_started(error));
    }
    // Every warning is in the session's audit log, or the command does
    // not start; the socket is closed here, before the exec.
    warnings.all_kept().context("the command is not started")?;
    let Some((program, rest)) = args.command.split_first() else { bail!("no command given") };
    let error = std::process::Command::new(program).args(rest).exec();
    bail!("cannot run {program}: {error}")
}

/// What [`exec`] does before the exec.
fn set_up(args: &SandboxArgs, warnings: &Warnings) -> anyhow::Result<()> {
    let procs = args.cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("joining the session cgroup ({})", procs.display()))?;
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    if let Some(soft) = args.open_files {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading the open-files limit")?;
        setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).context("giving the command its open-files limit")?;
    }
    // Root's own services are covered when root is the target.
    let user = args.user_name.as_deref().unwrap_or("root");
    let (uid, gid) = (args.uid.unwrap_or(0), args.gid.unwrap_or(0));
    let view = super::services::HostView { live_run: &args.live_run, private_tmp: args.private_tmp };
    super::services::hide(uid, gid, user, view, warnings)?;
    if let Some(home) = &args.lock_startup_files {
        let repo = std::env::current_dir().ok().and_then(|cwd| super::persistence::repository_of(&cwd));
        super::persistence::lock(home, repo.as_deref(), uid, warnings).context("[host] lock_startup_files")?;
    }
    // Bridle's own sockets for the command, and those the config lets it
    // reach, are not news.
    let allowed = super::reachable::allowed(&args.live_run);
    if args.cover_sockets {
        super::reachable::cover(&allowed, warnings).context("[host] cover_sockets")?;
    }
    super::reachable::report(uid, gid, &allowed, warnings);
    if args.cover_sockets {
        super::reachable::later::share_later_covers()?;
    }
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        drop_to(Uid::from_raw(uid), Gid::from_raw(gid))?;
    }
    super::confine::confine(args.degraded, warnings)?;
    close_inherited_on_exec()?;
    Ok(())
}

/// Marks every descriptor past stdio close-on-exec: one that Bridle
/// inherited from whatever started it (a root shell's open file, a
/// directory) would be the command's too, and reach past every cover. So
/// the command gets stdin, stdout and stderr only (no `3<file`, no
/// `<(…)` from the shell that ran Bridle). Kernels before 5.11 (or a
/// seccomp profile that refuses `close_range`) get each descriptor marked
/// one by one.
#[expect(unsafe_code, reason = "close_range(2) has no safe wrapper in std or nix")]
fn close_inherited_on_exec() -> anyhow::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory is
    // passed, and nothing in this process uses a descriptor past the exec.
    let marked = unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if marked == 0 {
        return Ok(());
    }
    mark_each_close_on_exec()
}

/// [`close_inherited_on_exec`] one descriptor at a time.
#[expect(unsafe_code, reason = "fcntl(2) on raw descriptors has no safe wrapper")]
fn mark_each_close_on_exec() -> anyhow::Result<()> {
    let listing = std::fs::read_dir("/proc/self/fd").context("listing inherited descriptors")?;
    for entry in listing.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<libc::c_int>().ok()) else { continue };
        // SAFETY: F_SETFD only changes the descriptor's flags; no memory is
        // passed. One closed meanwhile (the listing's own) fails with
        // EBADF, which is what it should be at the exec.
        if fd > 2 && unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            let error = std::io::Error::last_os_error();
            anyhow::ensure!(
                error.raw_os_error() == Some(libc::EBADF),
                "marking descriptor {fd} close-on-exec: {error}"
            );
        }
    }
    Ok(())
}

/// Leaves root for good: no supplementary groups, then gid, then uid (the
/// uid change from 0 clears every capability), then proves it cannot return.
fn drop_to(uid: Uid, gid: Gid) -> anyhow::Result<()> {
    setgroups(&[gid]).context("clearing supplementary groups")?;
    setgid(gid).with_context(|| format!("setgid {gid}"))?;
    setuid(uid).with_context(|| format!("setuid {uid}"))?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("still able to regain root after dropping privileges; refusing to run the command");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_marked_close_on_exec_one_by_one_where_close_range_fails() {
        let flags = nix::fcntl::OFlag::O_RDONLY;
        let inherited = nix::fcntl::open("/", flags, nix::sys::stat::Mode::empty()).expect("open");
        let cloexec = |fd| {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        };
        assert!(!cloexec(&inherited));
        mark_each_close_on_exec().expect("marked");
        assert!(cloexec(&inherited));
    }
}
