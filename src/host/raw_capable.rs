//! Guarded processes of the appliance that could get around it.
//!
//! A process that holds `CAP_NET_RAW` can open an `AF_PACKET` socket and
//! write whole frames to the network: the kernel runs cgroup `sock_create`
//! hooks for inet sockets only, so no program of Bridle's sees it. One that
//! holds `CAP_NET_ADMIN` can change the namespace's routes and filters. In
//! host mode the guarded command never has either; in appliance mode the
//! agent's container decides (Docker's default set includes `CAP_NET_RAW`),
//! so `bridle up` looks every few seconds (at every thread: capabilities
//! are per thread) and says so, loudly, once per process: a warning and an
//! audit notice naming it.
//!
//! A process that does not hold them can still gain them: with
//! `no_new_privs` off, a setuid-root or file-capability program (`sudo`
//! without a password in a dev container, a `ping` with `cap_net_raw+ep`)
//! gives it whatever its bounding set keeps, and Docker's default keeps
//! `CAP_NET_RAW` for a non-root user too. That is said once per container
//! (cgroup), with the first such process as the example.
//!
//! Never: count Bridle's own processes (its cgroup, or its binary run by
//! `docker compose exec`), or act on a process; this only reports.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// `CAP_NET_ADMIN` and `CAP_NET_RAW`, as bits of `/proc/PID/status` sets.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// A guarded process that holds one of the capabilities, or can gain it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub pid: i32,
    pub comm: String,
    /// `CAP_NET_RAW`, `CAP_NET_ADMIN` or both, joined by `+`.
    pub caps: String,
    /// `Some(cgroup)` when it does not hold them but can gain them, said
    /// for its whole cgroup.
    pub can_gain_in: Option<String>,
}

impl Holder {
    pub fn message(&self) -> String {
        match &self.can_gain_in {
            None => format!(
                "guarded process {} ({}) holds {}: it can send packets no hook of Bridle's sees (drop the agent \
                 container's capabilities: cap_drop: [ALL])",
                self.pid, self.comm, self.caps
            ),
            Some(cgroup) => format!(
                "guarded processes of {} (e.g. {} ({})) can gain {} through a setuid or file-capability program, \
                 since their bounding set keeps it and no_new_privs is off: then they can send packets no hook of \
                 Bridle's sees (cap_drop: [ALL], or security_opt: [no-new-privileges:true])",
                container_of(cgroup),
                self.pid,
                self.comm,
                self.caps
            ),
        }
    }
}

/// A process as reported: its pid, its start time (a reused pid is a new
/// process) and the program it runs (`/proc/PID/exe`).
type Reported = (i32, u64, Option<(u64, u64)>);

/// Remembers which processes, and which cgroups for what they can gain,
/// were reported.
#[derive(Debug, Default)]
pub(super) struct Watch {
    reported: HashSet<Reported>,
    reported_cgroups: HashSet<String>,
}

impl Watch {
    /// The holders in this process's network namespace not reported yet,
    /// `own_cgroup`'s processes and Bridle's binary left out.
    pub fn new_holders(&mut self, own_cgroup: &Path) -> Vec<Holder> {
        let (Some(netns), Some(exe)) = (identity("/proc/self/ns/net"), identity("/proc/self/exe")) else {
            return Vec::new();
        };
        let own = super::admin::procs(own_cgroup);
        let mut seen = HashSet::new();
        let mut seen_cgroups = HashSet::new();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else { return found };
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
            if own.contains(&pid) || identity(&format!("/proc/{pid}/ns/net")) != Some(netns) {
                continue;
            }
            let program = identity(&format!("/proc/{pid}/exe"));
            if program == Some(exe) {
                continue;
            }
            let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
            let caps = caps(pid);
            // Any process keeps its cgroup's report (a root container's
            // later `docker exec -u user` is not news).
            let cgroup = cgroup_of(pid);
            seen_cgroups.extend(cgroup.clone());
            if let Some(held) = network_caps(caps.held) {
                // Caught before its exec (a container's `runc init`), a
                // process is said again under the program it then runs.
                let key = (pid, start_time(pid).unwrap_or(0), program);
                seen.insert(key);
                if self.reported.insert(key) {
                    found.push(Holder { pid, comm: comm(), caps: held, can_gain_in: None });
                }
            } else if let (Some(gainable), Some(cgroup)) = (network_caps(caps.gainable), cgroup) {
                // `runc init` is the user already, before it execs what
                // the container runs: that names the container better.
                if comm().starts_with("runc:[") {
                    continue;
                }
                if self.reported_cgroups.insert(cgroup.clone()) {
                    found.push(Holder { pid, comm: comm(), caps: gainable, can_gain_in: Some(cgroup) });
                }
            }
        }
        self.reported.retain(|key| seen.contains(key));
        // A container started again (another cgroup) is said again.
        self.reported_cgroups.retain(|cgroup| seen_cgroups.contains(cgroup));
        found
    }
}

/// `(device, inode)`: what a namespace or executable is.
fn identity(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Capability sets of a process, over all its threads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Caps {
    /// Effective or permitted in some thread.
    held: u64,
    /// In the bounding set of some thread without `no_new_privs`: what an
    /// exec of a setuid-root or file-capability program gives it.
    gainable: u64,
}

/// The capabilities of any thread of `pid`: they are per thread, and one
/// thread that kept them can use them however the main thread dropped its
/// own.
fn caps(pid: i32) -> Caps {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Caps::default() };
    tasks.filter_map(Result::ok).filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok()).fold(
        Caps::default(),
        |all, status| {
            let one = status_caps(&status);
            Caps { held: all.held | one.held, gainable: all.gainable | one.gainable }
        },
    )
}

/// The sets of one thread's `/proc/PID/task/TID/status` text.
fn status_caps(status: &str) -> Caps {
    let field = |name: &str, radix: u32| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| u64::from_str_radix(value.trim(), radix).ok())
    };
    let set = |name: &str| field(name, 16).unwrap_or(0);
    // Without the field (kernels before 4.10) it may be off.
    let no_new_privs = field("NoNewPrivs:", 10) == Some(1);
    Caps { held: set("CapEff:") | set("CapPrm:"), gainable: if no_new_privs { 0 } else { set("CapBnd:") } }
}

/// A cgroup as a person knows it: the container whose id (64 hex digits,
/// as Docker and containerd name their cgroups) it holds, else the path
/// (which Bridle's cgroup namespace may show relative, `/../…`).
fn container_of(cgroup: &str) -> String {
    let id = cgroup
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|part| part.len() == 64)
        .map(|id| format!("container {}", &id[..12]));
    id.unwrap_or_else(|| format!("cgroup {cgroup}"))
}

/// `pid`'s cgroup v2 path (`0::/PATH` in `/proc/PID/cgroup`).
fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_owned)
}

/// `CAP_NET_RAW` / `CAP_NET_ADMIN` among `held`.
fn network_caps(held: u64) -> Option<String> {
    let names: Vec<&str> = [(CAP_NET_RAW, "CAP_NET_RAW"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| held & (1 << bit) != 0)
        .map(|(_, name)| name)
        .collect();
    (!names.is_empty()).then(|| names.join("+"))
}

/// Field 22 of `/proc/PID/stat`, after the parenthesised command name
/// (which may hold spaces and parentheses).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_capabilities_are_read_from_either_set() {
        let status = |eff: &str, prm: &str| format!("Name:\tcurl\nCapInh:\t0\nCapPrm:\t{prm}\nCapEff:\t{eff}\n");
        let caps = |eff: &str, prm: &str| network_caps(status_caps(&status(eff, prm)).held);
        // Docker's default set: NET_RAW among others.
        assert_eq!(caps("00000000a80425fb", "00000000a80425fb").as_deref(), Some("CAP_NET_RAW"));
        assert_eq!(caps("0", "0000000000003000").as_deref(), Some("CAP_NET_RAW+CAP_NET_ADMIN"));
        assert_eq!(caps("0", "0"), None, "a plain user");
        assert_eq!(network_caps(status_caps("Name:\tx\n").held), None);
    }

    #[test]
    fn a_containers_cgroup_is_named_by_its_id() {
        let id = "4f3c2b1a".repeat(8);
        assert_eq!(container_of(&format!("/../docker-{id}.scope")), "container 4f3c2b1a4f3c");
        assert_eq!(container_of(&format!("/system.slice/containerd.service/kubepods/{id}")), "container 4f3c2b1a4f3c");
        assert_eq!(container_of("/user.slice/session-2.scope"), "cgroup /user.slice/session-2.scope");
    }

    #[test]
    fn what_the_bounding_set_keeps_is_gainable_without_no_new_privs() {
        let status = |bnd: &str, nnp: &str| format!("CapPrm:\t0\nCapEff:\t0\nCapBnd:\t{bnd}\nNoNewPrivs:\t{nnp}\n");
        // Docker's default set, a plain user: it holds nothing, and a
        // setuid program would give it CAP_NET_RAW.
        let docker = status_caps(&status("00000000a80425fb", "0"));
        assert_eq!((network_caps(docker.held), network_caps(docker.gainable).as_deref()), (None, Some("CAP_NET_RAW")));
        assert_eq!(status_caps(&status("00000000a80425fb", "1")).gainable, 0, "no_new_privs: nothing to gain");
        assert_eq!(network_caps(status_caps(&status("0", "0")).gainable), None, "cap_drop: [ALL]");
    }

    /// A process whose main thread dropped every capability while another
    /// thread kept them (capabilities are per thread) is still a holder.
    #[test]
    fn a_thread_that_kept_its_capabilities_counts() {
        // As root: the second thread starts with every capability, then the
        // main thread clears its own sets with capset(2).
        let script = "import ctypes, sys, threading, time\n\
                      threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n\
                      header = (ctypes.c_uint32 * 2)(0x20080522, 0)\n\
                      data = (ctypes.c_uint32 * 6)()\n\
                      assert ctypes.CDLL(None).syscall(126, header, data) == 0\n\
                      print('dropped', flush=True)\n\
                      time.sleep(30)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        let pid = i32::try_from(child.id()).expect("pid");
        let main = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let (main_caps, all) = (network_caps(status_caps(&main).held), network_caps(caps(pid).held));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line.trim(), "dropped");
        assert_eq!(main_caps, None, "the main thread dropped them");
        assert_eq!(all.as_deref(), Some("CAP_NET_RAW+CAP_NET_ADMIN"));
    }

    /// A holder caught before its exec (a container's `runc init`) is said
    /// again under the program it then runs, and a process is said once per
    /// program.
    #[test]
    fn a_holder_that_execs_is_reported_again_under_its_new_name() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = i32::try_from(child.id()).expect("pid");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watch = Watch::default();
        let names = |watch: &mut Watch| -> Vec<String> {
            watch.new_holders(dir.path()).into_iter().filter(|h| h.pid == pid).map(|h| h.comm).collect()
        };
        let before = names(&mut watch);
        let again = names(&mut watch);
        let stdin = child.stdin.as_mut().expect("stdin");
        std::io::Write::write_all(stdin, b"go\n").expect("tell it to exec");
        let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let exec = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            comm().trim() == "sleep"
        });
        let after = names(&mut watch);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before, ["sh"]);
        assert!(again.is_empty(), "said once: {again:?}");
        assert!(exec, "the child did not exec");
        assert_eq!(after, ["sleep"]);
    }

    /// Two processes of one cgroup that hold nothing but can gain
    /// `CAP_NET_RAW` (a plain user, `no_new_privs` off, the bounding set
    /// full): said once, for the cgroup, and not again while it lives.
    #[test]
    fn processes_that_can_gain_the_capabilities_are_said_once_for_their_cgroup() {
        struct Cgroup(std::path::PathBuf, Vec<std::process::Child>);
        impl Drop for Cgroup {
            fn drop(&mut self) {
                for child in &mut self.1 {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let name = format!("bridle-test-gain-{}", std::process::id());
        let mount = bridle_redirector_ebpf::cgroup2_mount().expect("cgroup v2");
        let mut cgroup = Cgroup(mount.join(&name), Vec::new());
        std::fs::create_dir(&cgroup.0).expect("a cgroup");
        for _ in 0..2 {
            let child = std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"])
                .spawn()
                .expect("setpriv");
            let pid = child.id().to_string();
            cgroup.1.push(child);
            std::fs::write(cgroup.0.join("cgroup.procs"), pid).expect("into the cgroup");
        }
        // Both have dropped to the user (setpriv runs before sleep).
        let pids: Vec<i32> = cgroup.1.iter().map(|child| i32::try_from(child.id()).expect("pid")).collect();
        let dropped = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            pids.iter().all(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status.lines().any(|line| line.starts_with("Uid:\t65534"))
            })
        });
        assert!(dropped, "the children did not drop to nobody");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watch = Watch::default();
        // As this process's cgroup namespace shows it.
        let wanted = cgroup_of(pids[0]);
        assert!(wanted.as_deref().is_some_and(|path| path.ends_with(&name)), "{wanted:?}");
        let ours = |watch: &mut Watch| -> Vec<Holder> {
            watch.new_holders(dir.path()).into_iter().filter(|h| h.can_gain_in == wanted).collect()
        };
        // What this process's bounding set keeps, the children keep.
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let bounding = status.lines().find_map(|line| line.strip_prefix("CapBnd:")).expect("CapBnd");
        let expected = network_caps(u64::from_str_radix(bounding.trim(), 16).expect("hex")).expect("CAP_NET_RAW");
        let first = ours(&mut watch);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(pids.contains(&first[0].pid), "{first:?}");
        assert_eq!(first[0].caps, expected);
        assert!(first[0].message().contains(&format!("can gain {expected} through")), "{}", first[0].message());
        assert!(ours(&mut watch).is_empty(), "said once");
    }

    #[test]
    fn this_process_is_never_its_own_finding() {
        // The test runs as root with every capability, in its own network
        // namespace: its binary is left out like Bridle's.
        let mut watch = Watch::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let holders = watch.new_holders(dir.path());
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(holders.iter().all(|h| h.pid != me), "{holders:?}");
    }
}
