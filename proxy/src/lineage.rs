//! A process's ancestry, read from procfs, for correlation: a stdio MCP
//! server's descendants act for its tool calls. The redirector reports
//! pids as the initial pid namespace sees them, which is Bridle's own view
//! in host mode and in the appliance (`pid: host`).

/// Deeper than any real process tree; also stops a cycle of reused pids.
const MAX_DEPTH: usize = 64;

/// `pid`, then its parent, grandparent, … (nearest first, without PID 1).
/// A process that is gone yields what could be read.
pub fn lineage(pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    let mut current = pid;
    while chain.len() < MAX_DEPTH {
        match parent(current) {
            Some(parent) if parent > 1 && !chain.contains(&parent) => {
                chain.push(parent);
                current = parent;
            }
            _ => break,
        }
    }
    chain
}

/// Processes a descendant search visits at most: a wrapper's tree is small,
/// and the search runs once per reported call.
const MAX_VISITED: usize = 4096;

/// The process that `reporter`'s own pid namespace calls `pid`, as this
/// process sees it, if it is `reporter` or one of its descendants.
///
/// A wrapper in a container with a pid namespace of its own (the appliance
/// runs with `pid: host`, its agents do not) reports its server's pid as
/// the container numbers it, while the kernel gives Bridle the wrapper's
/// own pid in Bridle's numbering (`SO_PEERCRED`). In the same namespace the
/// number is taken as it is; across namespaces the wrapper's descendants
/// are searched for the one numbered `pid` in the wrapper's own namespace
/// (its `NSpid` at the wrapper's depth: a server in a namespace nested
/// further still has a number there).
pub fn descendant_as_seen_by(reporter: u32, pid: u32) -> Option<u32> {
    let depth = ns_pids(reporter)?.len().checked_sub(1)?;
    if depth == 0 {
        return lineage(pid).contains(&reporter).then_some(pid);
    }
    let mut queue = std::collections::VecDeque::from([reporter]);
    let mut visited = 0usize;
    while let Some(current) = queue.pop_front() {
        if ns_pids(current).and_then(|pids| pids.get(depth).copied()) == Some(pid) {
            return Some(current);
        }
        visited += 1;
        if visited >= MAX_VISITED {
            return None;
        }
        queue.extend(children(current));
    }
    None
}

/// `pid`'s number in each pid namespace it is in, outermost first (the
/// `NSpid` line of `/proc/<pid>/status`).
fn ns_pids(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|field| field.parse().ok()).collect()
}

/// `pid`'s children, from every thread's `/proc/<pid>/task/<tid>/children`
/// (a child belongs to the thread that forked it).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else { continue };
        found.extend(list.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
    }
    found
}

/// The parent of `pid` from `/proc/<pid>/stat` (field 4, after the
/// parenthesised command name, which may itself hold spaces and `)`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_lineage_starts_with_itself_then_its_parent() {
        let chain = lineage(std::process::id());
        assert_eq!(chain[0], std::process::id());
        let parent = std::os::unix::process::parent_id();
        if parent > 1 {
            assert_eq!(chain.get(1), Some(&parent), "{chain:?}");
        }
        assert!(!chain.contains(&1));
    }

    #[test]
    fn a_gone_process_is_just_itself() {
        assert_eq!(lineage(u32::MAX - 1), vec![u32::MAX - 1]);
    }

    #[test]
    fn in_one_namespace_a_reported_pid_counts_only_below_its_reporter() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let (me, pid) = (std::process::id(), child.id());
        assert_eq!(descendant_as_seen_by(me, pid), Some(pid));
        assert_eq!(descendant_as_seen_by(me, me), Some(me));
        assert_eq!(descendant_as_seen_by(pid, me), None, "a parent is not a descendant");
        assert_eq!(descendant_as_seen_by(me, u32::MAX - 1), None);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `sh -c script` as pid 1 of a new pid namespace (root only): the
    /// shell's host pid, the first line it printed, and a guard that kills
    /// the namespace (its init going takes every process in it along).
    struct Namespace {
        unshare: std::process::Child,
        shell: u32,
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.shell as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.unshare.wait();
        }
    }

    fn in_pid_namespace(script: &str) -> Option<(Namespace, String)> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating a pid namespace needs root");
            return None;
        }
        use std::io::BufRead as _;
        let mut unshare = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let stdout = unshare.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read what the shell printed");
        let shell = children(unshare.id()).into_iter().next().expect("unshare's child");
        Some((Namespace { unshare, shell }, line.trim().to_string()))
    }

    /// A wrapper in a pid namespace of its own numbers its server 2 or so;
    /// Bridle must find that process under the wrapper's host pid.
    #[test]
    fn across_pid_namespaces_the_reporters_numbering_is_translated() {
        // sh, pid 1 inside → sleep, printed by sh.
        let Some((ns, line)) = in_pid_namespace("sleep 30 & echo $!; wait") else { return };
        let inner: u32 = line.parse().expect("inner pid");
        let sleep = children(ns.shell).into_iter().next().expect("the shell's child");
        assert_eq!(ns_pids(ns.shell).map(|pids| pids.len()), Some(2), "the shell is in a nested namespace");
        assert_eq!(descendant_as_seen_by(ns.shell, inner), Some(sleep), "inner pid {inner}");
        assert_eq!(descendant_as_seen_by(ns.shell, 1), Some(ns.shell), "the reporter itself");
        assert_eq!(descendant_as_seen_by(ns.shell, inner + 1000), None);
    }

    /// A server in a namespace nested one level further still has a number
    /// in the wrapper's namespace, and that is the number it reports.
    #[test]
    fn a_server_in_a_deeper_namespace_is_found_by_the_wrappers_number() {
        // sh (namespace 1) → unshare → sleep (namespace 2).
        let Some((ns, line)) = in_pid_namespace("unshare --pid --fork sleep 30 & echo $!; wait") else { return };
        let inner_unshare = children(ns.shell).into_iter().next().expect("the shell's child");
        let mut sleep = None;
        for _ in 0..100 {
            sleep = children(inner_unshare).into_iter().next();
            if sleep.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let sleep = sleep.expect("the inner unshare's child");
        let numbers = ns_pids(sleep).expect("NSpid");
        assert_eq!(numbers.len(), 3, "host, namespace 1, namespace 2: {numbers:?}");
        assert_eq!(descendant_as_seen_by(ns.shell, numbers[1]), Some(sleep), "{numbers:?}");
        assert_eq!(descendant_as_seen_by(ns.shell, line.parse().expect("pid")), Some(inner_unshare));
    }
}
