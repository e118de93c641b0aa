//! What the guarded command must not be able to change: the files Bridle
//! takes its rules and its trust from (the config, the policy directories,
//! the upstream CA bundle, Bridle's CA directory), and the audit log it
//! writes as root. The command runs as a
//! real user; were any of those writable by that user (owned by it, or
//! writable by its group or by everyone, or under a directory it could
//! rename), a compromised agent could rewrite the policies it is held to:
//! the watcher would reload them within a second, and every later session
//! would start from them. `bridle run` refuses to start instead, and says
//! what to change.
//!
//! Only what Bridle reads is checked; `--allow-root` skips it (a root
//! command can undo everything anyway).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::user::Target;

/// Refuses when `target` could change any of `inputs` (what it is, where;
/// a directory with everything under it).
pub fn refuse_changeable(target: &Target, inputs: &[(&str, PathBuf)]) -> anyhow::Result<()> {
    for (what, path) in inputs {
        if let Some(why) = changeable(target, path) {
            return Err(refusal(target, what, path, &why));
        }
    }
    Ok(())
}

/// Refuses when `target` could change the directory `dir` Bridle writes
/// in (`what`), make files there, or write one of Bridle's files in it
/// (those whose names start with `prefix`: a log, its checkpoint and
/// index, another session's log beside it). Not the other programs' files
/// there (an audit log under `/var/log`).
pub fn refuse_changeable_files_in(target: &Target, what: &str, dir: &Path, prefix: &str) -> anyhow::Result<()> {
    let (mut why, canonical) = on_the_way(target, dir);
    if why.is_none()
        && let Some(entries) = canonical.and_then(|dir| std::fs::read_dir(dir).ok())
    {
        let ours = entries.flatten().filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix));
        why = ours.map(|entry| entry.path()).find_map(|path| writable(target, &path, true));
    }
    match why {
        Some(why) => Err(refusal(target, what, dir, &why)),
        None => Ok(()),
    }
}

fn refusal(target: &Target, what: &str, path: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} {} can be changed by {} (uid {}), as whom the command runs: {why}; a compromised agent could \
         rewrite the rules it is held to, or the record of what it did. Keep it where only root can write (e.g. \
         under /etc/bridle or /var/lib/bridle), or run the command as another user (--user)",
        path.display(),
        target.name,
        target.uid,
    )
}

/// Why `target` could change `path` (or what is under it, for a
/// directory), or `None`.
fn changeable(target: &Target, path: &Path) -> Option<String> {
    let (why, canonical) = on_the_way(target, path);
    if why.is_some() {
        return why;
    }
    let root = canonical?;
    if root.is_dir() {
        return walk(target, &root);
    }
    None
}

/// Why `target` could change `path` itself or a directory on the way to
/// it, and where it really is.
fn on_the_way(target: &Target, path: &Path) -> (Option<String>, Option<PathBuf>) {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Both spellings: a symlink on the way is as good as the directory it
    // sits in, and the directory it leads to must hold too.
    let canonical = std::fs::canonicalize(&absolute).ok();
    for spelled in std::iter::once(&absolute).chain(canonical.as_ref()) {
        // What does not exist yet could be made by whoever can write the
        // nearest directory that does.
        let Some(existing) = spelled.ancestors().find(|p| p.symlink_metadata().is_ok()) else { continue };
        // At depth 0: the path's own content or entries, or (not there
        // yet) the entries of the directory it would be made in.
        for (depth, dir) in existing.ancestors().enumerate() {
            if let Some(why) = writable(target, dir, depth == 0) {
                return (Some(why), canonical);
            }
        }
    }
    (None, canonical)
}

/// Everything under a directory Bridle reads (policy files, subdirectories).
fn walk(target: &Target, dir: &Path) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(why) = writable(target, &path, true) {
            return Some(why);
        }
        // A symlink is read through (the loader follows it to a file):
        // where it leads must hold as well.
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
            && let (Some(why), _) = on_the_way(target, &path)
        {
            return Some(format!("{why} (through the link {})", path.display()));
        }
        if path.symlink_metadata().is_ok_and(|m| m.is_dir())
            && let Some(why) = walk(target, &path)
        {
            return Some(why);
        }
    }
    None
}

/// Why `target` could write `path` itself (`leaf`: its content, or a
/// directory's entries) or, for a directory on the way, rename what is in
/// it. A sticky directory (`/tmp`) lets only an entry's owner rename it.
fn writable(target: &Target, path: &Path, leaf: bool) -> Option<String> {
    let meta = path.symlink_metadata().ok()?;
    let at = PathBuf::from(path);
    if meta.uid() == target.uid {
        return Some(format!("{} is owned by uid {}", at.display(), meta.uid()));
    }
    let sticky = meta.is_dir() && meta.mode() & 0o1000 != 0 && !leaf;
    if sticky || meta.file_type().is_symlink() {
        return None;
    }
    if meta.mode() & 0o002 != 0 {
        return Some(format!("{} is writable by everyone (mode {:o})", at.display(), meta.mode() & 0o7777));
    }
    if meta.mode() & 0o020 != 0 && meta.gid() == target.gid {
        return Some(format!("{} is writable by its group, gid {}", at.display(), meta.gid()));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn nobody() -> Target {
        Target { uid: 65534, gid: 65534, name: "nobody".into(), home: "/nonexistent".into() }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn files_only_root_can_change_pass_and_writable_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("pol");
        std::fs::create_dir(&policies).expect("mkdir");
        std::fs::write(policies.join("p.cedar"), "permit(principal, action, resource);").expect("write");
        chmod(dir.path(), 0o755);
        chmod(&policies, 0o755);
        chmod(&policies.join("p.cedar"), 0o644);
        let target = nobody();
        if changeable(&target, dir.path()).is_some() {
            // The temp dir's own ancestors are writable here (a shared
            // /tmp without sticky bit): nothing below can be judged.
            return;
        }
        assert_eq!(changeable(&target, &policies), None);
        chmod(&policies.join("p.cedar"), 0o666);
        assert!(changeable(&target, &policies).is_some_and(|why| why.contains("p.cedar is writable by everyone")));
        chmod(&policies.join("p.cedar"), 0o644);
        chmod(&policies, 0o1777);
        assert!(changeable(&target, &policies).is_some_and(|why| why.contains("writable by everyone")), "sticky");
        chmod(&policies, 0o755);
        std::os::unix::fs::chown(&policies, Some(65534), None).expect("chown");
        assert!(changeable(&target, &policies.join("p.cedar")).is_some_and(|why| why.contains("owned by uid 65534")));
        // A policy file linked from somewhere the user can write.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        chmod(elsewhere.path(), 0o755);
        std::fs::write(elsewhere.path().join("team.cedar"), "").expect("write");
        std::os::unix::fs::chown(elsewhere.path().join("team.cedar"), Some(65534), None).expect("chown");
        std::os::unix::fs::symlink(elsewhere.path().join("team.cedar"), policies.join("team.cedar")).expect("link");
        std::os::unix::fs::chown(&policies, Some(0), None).expect("chown back");
        assert!(
            changeable(&target, &policies).is_some_and(|why| why.contains("through the link")),
            "{:?}",
            changeable(&target, &policies)
        );
        std::fs::remove_file(policies.join("team.cedar")).expect("unlink");
        std::os::unix::fs::chown(&policies, Some(65534), None).expect("chown");
        let missing = policies.join("not-yet");
        assert!(changeable(&target, &missing).is_some(), "could be created by the owner of the directory");
        std::os::unix::fs::chown(&policies, Some(0), None).expect("chown back");
        assert_eq!(changeable(&target, &missing), None);
    }

    /// The audit log's directory: itself and Bridle's files in it, not
    /// another program's; a sticky directory is no exemption there.
    #[test]
    fn a_directory_bridle_writes_in_is_judged_by_itself_and_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        let target = nobody();
        if changeable(&target, dir.path()).is_some() {
            return;
        }
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        std::fs::write(theirs.join("log"), "").expect("write");
        std::os::unix::fs::chown(theirs.join("log"), Some(65534), None).expect("chown");
        // Another program's files there are not Bridle's to judge.
        assert!(refuse_changeable_files_in(&target, "the audit log's directory", dir.path(), "audit").is_ok());
        std::fs::write(dir.path().join("audit.jsonl"), "").expect("write");
        std::os::unix::fs::chown(dir.path().join("audit.jsonl"), Some(65534), None).expect("chown");
        assert!(refuse_changeable_files_in(&target, "the audit log's directory", dir.path(), "audit").is_err());
        std::os::unix::fs::chown(dir.path().join("audit.jsonl"), Some(0), None).expect("chown back");
        chmod(dir.path(), 0o1777);
        assert!(
            refuse_changeable_files_in(&target, "the audit log's directory", dir.path(), "audit").is_err(),
            "sticky"
        );
    }
}
