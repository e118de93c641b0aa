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
}
