//! What the guarded command may not do to the invoking user's other
//! processes. It runs as that user (same uid as their shell, editor and
//! terminal multiplexer), so without more than `no_new_privs` it could:
//! - `ptrace` them or signal them (no Yama on many hosts): code runs
//!   outside the session's cgroup, unguarded;
//! - push keystrokes into the terminal it was started from with
//!   `ioctl(TIOCSTI)`, which the shell runs after Bridle exits (as root,
//!   if `sudo bridle run` was typed in a root shell).
//!
//! So, after privileges are dropped and before the exec:
//! - a Landlock domain with signal and abstract Unix socket scoping
//!   (Landlock ABI 6, Linux 6.12): the command and its children can ptrace
//!   and signal only each other, and connect only to abstract sockets one
//!   of them bound (the X server's `@/tmp/.X11-unix/X0`, a D-Bus bus on an
//!   abstract address and any other service of the user's run what they
//!   are sent outside the guard; [`super::services`] covers their
//!   socket files); where the kernel lacks it, a loud warning;
//! - a seccomp filter that fails with EPERM `TIOCSTI` and `TIOCLINUX`
//!   ioctls, sockets of every family but Unix, IPv4, IPv6 and netlink, and
//!   `io_uring_setup`. The cgroup hooks see inet sockets only, and the
//!   other families reach out without them: `AF_VSOCK` to the hypervisor
//!   host, Bluetooth and CAN over their radios and buses, `AF_PACKET` and
//!   `AF_XDP` with whole frames (were the command ever to hold
//!   `CAP_NET_RAW`), and RDS, RxRPC, SMC or TIPC through sockets of the
//!   kernel's own, made in workers outside the session's cgroup, where a
//!   host has their modules. io_uring makes sockets without the `socket`
//!   system call, past this filter (runtimes fall back to threads, as
//!   under Docker's default profile). Everything else is allowed. A system call of another architecture (an i386 program) kills
//!   the process: its numbers would slip past the filter. Failing to
//!   install it refuses to run.
//!
//! Never: restrict the file system or the network here (the redirector and
//! the proxy own the network; files are the file hooks' job).

use super::warnings::Warnings;
use anyhow::Context as _;
use landlock::{AccessFs, Ruleset, RulesetAttr as _, RulesetStatus, Scope};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Applies both to this process (inherited by the exec and every child).
pub fn confine(warnings: &Warnings) -> anyhow::Result<()> {
    scope_to_own_processes(warnings);
    deny_injection_and_vsock()
}

/// What a command without a Landlock domain can do.
const UNCONFINED: &str = ": the command can ptrace and signal your other processes, reach the services Bridle \
                          covers from it (your session's, and system ones that look names up) through \
                          /proc/<pid>/root of processes outside, and connect to the abstract sockets they serve";

/// The Landlock part; never fatal (older kernels lack it), but said.
fn scope_to_own_processes(warnings: &Warnings) {
    let status = Ruleset::default()
        // A right no unprivileged process has (making block devices),
        // handled with no rule: it makes a Landlock domain on every ABI, and
        // a domain alone keeps ptrace and `/proc/<pid>/root` of processes
        // outside it out of reach (where the scopes below are missing too).
        .handle_access(AccessFs::MakeBlock)
        .and_then(|ruleset| ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.restrict_self());
    let warning = match status {
        Ok(status) if status.ruleset == RulesetStatus::FullyEnforced => return,
        Ok(status) if status.ruleset == RulesetStatus::PartiallyEnforced => {
            "this kernel's Landlock has no scoping (ABI 6, Linux 6.12): the command can signal your other \
             processes and connect to the abstract sockets they serve"
                .to_owned()
        }
        Ok(_) => "this kernel has no Landlock".to_owned() + UNCONFINED,
        Err(error) => format!("Landlock failed ({error})") + UNCONFINED,
    };
    warnings.warn(format_args!("{warning}, outside Bridle's guard"));
}

/// The socket families the command may make: Unix sockets stay on the
/// host, inet sockets are the redirector's, and netlink talks to the
/// kernel alone (`getifaddrs`, `ip`).
const SOCKET_FAMILIES: [libc::c_int; 4] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK];

/// The seccomp part: `ioctl(fd, TIOCSTI | TIOCLINUX, …)`, `socket()` of a
/// family not in [`SOCKET_FAMILIES`] and `io_uring_setup` → EPERM.
fn deny_injection_and_vsock() -> anyhow::Result<()> {
    let arg = |index: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).context("building the seccomp filter")
    };
    let rule = |conditions: anyhow::Result<Vec<SeccompCondition>>| {
        conditions.and_then(|conditions| SeccompRule::new(conditions).context("building the seccomp filter"))
    };
    let ioctls =
        [libc::TIOCSTI, libc::TIOCLINUX].map(|request| rule(arg(1, SeccompCmpOp::Eq, request).map(|c| vec![c])));
    let ioctls = ioctls.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    // One rule: a family unlike each allowed one.
    let others = SOCKET_FAMILIES.map(|family| arg(0, SeccompCmpOp::Ne, family as u64));
    let sockets = vec![rule(others.into_iter().collect())?];
    let arch = std::env::consts::ARCH.try_into().context("seccomp: this CPU architecture")?;
    let filter = SeccompFilter::new(
        [(libc::SYS_ioctl, ioctls), (libc::SYS_socket, sockets), (libc::SYS_io_uring_setup, Vec::new())]
            .into_iter()
            .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .context("building the seccomp filter")?;
    let program: BpfProgram = filter.try_into().context("compiling the seccomp filter")?;
    seccompiler::apply_filter(&program).context("installing the seccomp filter (TIOCSTI)")
}
