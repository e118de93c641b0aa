//! What the guarded command may not reach of its user's desktop session:
//! the Unix sockets of services that run commands for that user, outside
//! the session's cgroup and so outside Bridle's guard. The command runs as
//! the invoking user, and file permissions let it connect to any of them:
//! - the D-Bus session bus and the systemd user manager in
//!   `/run/user/<uid>` (`systemd-run --user curl …`), with gpg-agent,
//!   editor servers (`emacsclient --eval`, `nvim --server`), IDE IPC,
//!   podman and rootless Docker beside them;
//! - tmux (`/tmp/tmux-<uid>`: `tmux new-window 'curl …'`) and screen
//!   (`/run/screen`);
//! - the X server and session manager (`/tmp/.X11-unix`, `/tmp/.ICE-unix`),
//!   which take keystrokes for the user's terminals.
//!
//! So the command gets a mount namespace of its own in which each of those
//! directories that exists is covered by an empty tmpfs: its own copy,
//! writable as the user's own was (the command's own tmux or D-Bus works
//! there), with none of the user's sockets in it. Paths, symlinks and
//! `/proc/<pid>/root` of a process outside (refused by the Landlock domain,
//! [`super::confine`]) all lead to the covered directory. The mounts come
//! from a more privileged namespace, so a user namespace the command makes
//! cannot unmount them. The rest of the file system is the user's as
//! before.
//!
//! Never: follow a symlink to decide what to cover (a directory planted as
//! a link would move the cover elsewhere), or let a cover propagate to the
//! host's mounts.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// How a cover is owned: the user's own directories, or shared ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// `/run/user/<uid>`, `/tmp/tmux-<uid>`: the user's, mode 0700.
    User,
    /// `/tmp/.X11-unix` and the like: root's, sticky and world-writable.
    Shared,
}

/// The directories to cover for `uid`, whether they exist or not.
fn candidates(uid: u32) -> Vec<(PathBuf, Owner)> {
    vec![
        (PathBuf::from(format!("/run/user/{uid}")), Owner::User),
        (PathBuf::from(format!("/tmp/tmux-{uid}")), Owner::User),
        (PathBuf::from("/run/screen"), Owner::Shared),
        (PathBuf::from("/tmp/.X11-unix"), Owner::Shared),
        (PathBuf::from("/tmp/.ICE-unix"), Owner::Shared),
    ]
}

/// Enters a mount namespace of this process's own (inherited by the exec
/// and its children) with the user's service directories covered; returns
/// what was covered. Needs `CAP_SYS_ADMIN`: call it before dropping root.
pub fn hide(uid: u32, gid: u32) -> anyhow::Result<Vec<PathBuf>> {
    unshare(CloneFlags::CLONE_NEWNS).context("entering a mount namespace of the command's own")?;
    // Private from here down: nothing mounted below reaches the host's
    // namespace (on systemd hosts `/` is shared by default).
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making the command's mounts private")?;
    let mut covered = Vec::new();
    for (dir, owner) in candidates(uid) {
        if !is_plain_dir(&dir) {
            continue;
        }
        let options = match owner {
            Owner::User => format!("mode=0700,uid={uid},gid={gid},size=64m"),
            Owner::Shared => "mode=1777,size=16m".to_owned(),
        };
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(Some("tmpfs"), &dir, Some("tmpfs"), flags, Some(options.as_str()))
            .with_context(|| format!("covering {} from the command", dir.display()))?;
        covered.push(dir);
    }
    // A working directory inside a covered one would still reach what is
    // under the cover by relative paths: resolve it again, through them.
    let cwd = std::env::current_dir().context("reading the working directory")?;
    if std::env::set_current_dir(&cwd).is_err() {
        std::env::set_current_dir("/").context("leaving a covered working directory")?;
        eprintln!(
            "bridle: warning: the working directory {} is covered from the command; it starts in /",
            cwd.display()
        );
    }
    Ok(covered)
}

/// A directory, not a symlink to one.
fn is_plain_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_missing_paths_are_not_covered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(is_plain_dir(&real));
        assert!(!is_plain_dir(&link));
        assert!(!is_plain_dir(&dir.path().join("missing")));
    }
}
