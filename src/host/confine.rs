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
//!   socket files); where the kernel lacks it, the command is not started
//!   (an enforcement part missing), unless `--degraded`: then a warning;
//! - seccomp filters that fail `TIOCSTI` and `TIOCLINUX` ioctls,
//!   `io_uring_setup`, every call that changes what is mounted where
//!   ([`MOUNT_CALLS`]) and the key calls ([`KEY_CALLS`]) with EPERM, and
//!   sockets of every family but Unix, IPv4, IPv6, netlink and the
//!   kernel's crypto with EAFNOSUPPORT. The
//!   cgroup hooks see inet sockets only, and the other families reach out
//!   without them: `AF_VSOCK` to the hypervisor host, Bluetooth and CAN
//!   over their radios and buses, `AF_XDP` with whole frames (with
//!   `CAP_NET_RAW`), and RDS, RxRPC, SMC or TIPC through sockets of the
//!   kernel's own, made in workers outside the session's cgroup, where a
//!   host has their modules. io_uring makes sockets without the `socket`
//!   system call, past the filters (runtimes fall back to threads, as
//!   under Docker's default profile). Everything else is allowed. A
//!   system call of another architecture (an i386 program) or an x32 one
//!   kills the process: its numbers would slip past the filters. Failing
//!   to install them refuses to run.
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
/// Where the kernel cannot scope the command to its own processes, refuses
/// (an enforcement part missing), unless `degraded`: then it is said.
pub fn confine(degraded: bool, warnings: &Warnings) -> anyhow::Result<()> {
    if let Some(missing) = scope_to_own_processes() {
        anyhow::ensure!(
            degraded,
            "{missing}; Bridle refuses to start the command without it. Pass --degraded to run it anyway, with this \
             said in the audit log, or use a kernel with Landlock's scoping (Linux 6.12+, lsm=landlock)"
        );
        warnings.warn(format_args!("{missing}, outside Bridle's guard (--degraded)"));
    }
    deny_injection_and_vsock()
}

/// What a command without a Landlock domain can do.
const UNCONFINED: &str = ": the command can ptrace and signal your other processes, reach the services Bridle \
                          covers from it (your session's, and system ones that look names up) through \
                          /proc/<pid>/root of processes outside, and connect to the abstract sockets they serve";

/// The Landlock part: what the command can do for want of it, if any.
fn scope_to_own_processes() -> Option<String> {
    let status = Ruleset::default()
        // A right no unprivileged process has (making block devices),
        // handled with no rule: it makes a Landlock domain on every ABI, and
        // a domain alone keeps ptrace and `/proc/<pid>/root` of processes
        // outside it out of reach (where the scopes below are missing too).
        .handle_access(AccessFs::MakeBlock)
        .and_then(|ruleset| ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.restrict_self());
    match status {
        Ok(status) if status.ruleset == RulesetStatus::FullyEnforced => None,
        Ok(status) if status.ruleset == RulesetStatus::PartiallyEnforced => Some(
            "this kernel's Landlock has no scoping (ABI 6, Linux 6.12): the command can signal your other \
             processes and connect to the abstract sockets they serve"
                .to_owned(),
        ),
        Ok(_) => Some("this kernel has no Landlock".to_owned() + UNCONFINED),
        Err(error) => Some(format!("Landlock failed ({error})") + UNCONFINED),
    }
}

/// The calls that change what is mounted where, failed with EPERM. The
/// Landlock domain refuses `mount(2)`, `umount2` and `pivot_root` already
/// (where the kernel has it), but not the new mount API, and in a user and
/// mount namespace of its own the command would hold `CAP_SYS_ADMIN` over
/// its mounts: with `open_tree(OPEN_TREE_CLONE)` or `mount_setattr` it
/// could keep a copy of a directory that covers made later (`[host]
/// cover_sockets`) never reach. `open_tree_attr` (Linux 6.15) is 467 on
/// every architecture, and not in `libc` yet.
const MOUNT_CALLS: [libc::c_long; 10] = [
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    467,
];

/// The kernel's key management: `request_key` with callout data makes the
/// kernel run `/sbin/request-key` as root, outside the session's cgroup,
/// and keyutils' stock rules resolve a `dns_resolver` key's name (any name
/// the command chose) through the host's resolver: a DNS channel out past
/// Bridle. Keyrings are not namespaced either (the user's Kerberos tickets
/// sit there). Docker's default profile denies the three too.
const KEY_CALLS: [libc::c_long; 3] = [libc::SYS_add_key, libc::SYS_request_key, libc::SYS_keyctl];

/// The socket families the command may make: Unix sockets stay on the
/// host, inet sockets are the redirector's (its `sock_create` hook refuses
/// every kind but TCP, MPTCP and UDP, an SMC socket asked of `AF_INET`
/// too), netlink talks to the kernel alone (`getifaddrs`, `ip`), and
/// `AF_ALG` is the kernel's crypto (`cryptsetup`, iwd).
const SOCKET_FAMILIES: [libc::c_int; 5] =
    [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK, libc::AF_ALG];

/// The seccomp part, three filters: `ioctl(fd, TIOCSTI | TIOCLINUX, …)`,
/// `io_uring_setup`, [`MOUNT_CALLS`] and [`KEY_CALLS`] → EPERM; `socket()` of
/// a family not in [`SOCKET_FAMILIES`], and `socketpair()` of any but
/// `AF_UNIX` (TIPC makes pairs too) → EAFNOSUPPORT, as if the kernel had no
/// such family, which programs take in their stride; on x86_64, x32 system
/// calls → the process is killed, as any of another architecture is.
fn deny_injection_and_vsock() -> anyhow::Result<()> {
    let arg = |index: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).context("building the seccomp filter")
    };
    let rule = |conditions: Vec<anyhow::Result<SeccompCondition>>| {
        let conditions = conditions.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        SeccompRule::new(conditions).context("building the seccomp filter")
    };
    let ioctls = [libc::TIOCSTI, libc::TIOCLINUX].map(|request| rule(vec![arg(1, SeccompCmpOp::Eq, request)]));
    let ioctls = ioctls.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let mut denied = vec![(libc::SYS_ioctl, ioctls), (libc::SYS_io_uring_setup, Vec::new())];
    denied.extend(MOUNT_CALLS.map(|call| (call, Vec::new())));
    denied.extend(KEY_CALLS.map(|call| (call, Vec::new())));
    install(denied, libc::EPERM)?;
    // One rule each: a family unlike every allowed one.
    let families = SOCKET_FAMILIES.map(|family| arg(0, SeccompCmpOp::Ne, family as u64));
    let pairs = vec![arg(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)];
    install(
        vec![(libc::SYS_socket, vec![rule(families.into())?]), (libc::SYS_socketpair, vec![rule(pairs)?])],
        libc::EAFNOSUPPORT,
    )?;
    deny_x32()
}

/// Installs a filter failing the calls `rules` match with `errno`; any
/// call of another architecture kills the process.
fn install(rules: Vec<(libc::c_long, Vec<SeccompRule>)>, errno: libc::c_int) -> anyhow::Result<()> {
    let arch = std::env::consts::ARCH.try_into().context("seccomp: this CPU architecture")?;
    let filter = SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(errno.unsigned_abs()),
        arch,
    )
    .context("building the seccomp filter")?;
    let program: BpfProgram = filter.try_into().context("compiling the seccomp filter")?;
    seccompiler::apply_filter(&program).context("installing the seccomp filter")
}

/// x32 system calls pass as x86_64 ones, numbered with bit 30 set: a rule
/// for `socket` never sees an x32 `socket`. The kernel runs every filter,
/// and the strictest answer wins, so this one kills on any of them.
#[cfg(target_arch = "x86_64")]
fn deny_x32() -> anyhow::Result<()> {
    use seccompiler::sock_filter;
    // `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE` (linux/audit.h).
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // `struct seccomp_data`: `nr` at 0, `arch` at 4.
    let load = |offset: u32| sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: offset,
    };
    let jump = |test: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: (libc::BPF_JMP | test | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k: u32| sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k };
    let program: BpfProgram = vec![
        load(4),
        // Another architecture: the other filters kill it.
        jump(libc::BPF_JEQ, AUDIT_ARCH_X86_64, 0, 3),
        load(0),
        jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        ret(libc::SECCOMP_RET_ALLOW),
    ];
    seccompiler::apply_filter(&program).context("installing the seccomp filter (x32)")
}

#[cfg(not(target_arch = "x86_64"))]
fn deny_x32() -> anyhow::Result<()> {
    Ok(())
}
