//! Guarded processes of the appliance that could get around it.
//!
//! A process that holds `CAP_NET_RAW` can open an `AF_PACKET` socket and
//! write whole frames to the network: the kernel runs cgroup `sock_create`
//! hooks for inet sockets only, so no program of Bridle's sees it. One that
//! holds `CAP_NET_ADMIN` can change the namespace's routes and filters. In
//! host mode the guarded command never has either; in appliance mode the
//! agent's container decides (Docker's default set includes `CAP_NET_RAW`),
//! so `bridle up` looks every few seconds and says so, loudly, once per
//! process: a warning and an audit notice naming it.
//!
//! Never: count Bridle's own processes (its cgroup, or its binary run by
//! `docker compose exec`), or act on a process; this only reports.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// `CAP_NET_ADMIN` and `CAP_NET_RAW`, as bits of `/proc/PID/status` sets.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// A guarded process that holds one of the capabilities.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub pid: i32,
    pub comm: String,
    /// `CAP_NET_RAW`, `CAP_NET_ADMIN` or both, joined by `+`.
    pub caps: String,
}

impl Holder {
    pub fn message(&self) -> String {
        format!(
            "guarded process {} ({}) holds {}: it can send packets no hook of Bridle's sees (drop the agent \
             container's capabilities: cap_drop: [ALL])",
            self.pid, self.comm, self.caps
        )
    }
}

/// Remembers which processes were reported.
#[derive(Debug, Default)]
pub(super) struct Watch {
    reported: HashSet<(i32, u64)>,
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
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else { return found };
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
            if own.contains(&pid)
                || identity(&format!("/proc/{pid}/ns/net")) != Some(netns)
                || identity(&format!("/proc/{pid}/exe")) == Some(exe)
            {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
            let Some(caps) = network_caps(&status) else { continue };
            // The pid and its start time: a reused pid is a new process.
            let key = (pid, start_time(pid).unwrap_or(0));
            seen.insert(key);
            if self.reported.insert(key) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                found.push(Holder { pid, comm: comm.trim().to_string(), caps });
            }
        }
        self.reported.retain(|key| seen.contains(key));
        found
    }
}

/// `(device, inode)`: what a namespace or executable is.
fn identity(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `CAP_NET_RAW` / `CAP_NET_ADMIN` in the effective or permitted set of a
/// `/proc/PID/status` text.
fn network_caps(status: &str) -> Option<String> {
    let set = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0)
    };
    let held = set("CapEff:") | set("CapPrm:");
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
        // Docker's default set: NET_RAW among others.
        assert_eq!(network_caps(&status("00000000a80425fb", "00000000a80425fb")).as_deref(), Some("CAP_NET_RAW"));
        assert_eq!(network_caps(&status("0", "0000000000003000")).as_deref(), Some("CAP_NET_RAW+CAP_NET_ADMIN"));
        assert_eq!(network_caps(&status("0", "0")), None, "a plain user");
        assert_eq!(network_caps("Name:\tx\n"), None);
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
