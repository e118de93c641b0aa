//! What the guarded command may not reach of its user's desktop session:
//! the Unix sockets of services that run commands for that user, outside
//! the session's cgroup and so outside Bridle's guard. The command runs as
//! the invoking user, and file permissions let it connect to any of them:
//! - the D-Bus session bus and the systemd user manager in
//!   `/run/user/<uid>` (`systemd-run --user curl …`), with gpg-agent,
//!   editor servers (`emacsclient --eval`, `nvim --server`), IDE IPC,
//!   podman and rootless Docker beside them;
//! - tmux (`/tmp/tmux-<uid>`: `tmux new-window 'curl …'`), screen
//!   (`/run/screen`), and Emacs's and Neovim's servers where the user has
//!   no runtime directory (`/tmp/emacs<uid>`, `/tmp/nvim.<user>`);
//! - the X server and session manager (`/tmp/.X11-unix`, `/tmp/.ICE-unix`),
//!   which take keystrokes for the user's terminals.
//!
//! So the command gets a mount namespace of its own in which each of those
//! directories (made on the host first where missing, so that a service
//! started later binds under the cover) is covered by an empty tmpfs: its
//! own copy, writable as the user's own was (the command's own tmux or
//! D-Bus works there), with none of the user's sockets in it. Paths, symlinks and
//! `/proc/<pid>/root` of a process outside (refused by the Landlock domain,
//! [`super::confine`]) all lead to the covered directory. The mounts come
//! from a more privileged namespace, so a user namespace the command makes
//! cannot unmount them. The rest of the file system is the user's as
//! before.
//!
//! Never: follow a symlink to what to cover (a directory swapped for a link
//! would move the cover elsewhere), or let a cover propagate to the host's
//! mounts.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
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
    let mut dirs = vec![
        (PathBuf::from(format!("/run/user/{uid}")), Owner::User),
        (PathBuf::from(format!("/tmp/tmux-{uid}")), Owner::User),
        // Emacs's and Neovim's servers where no XDG_RUNTIME_DIR is set.
        (PathBuf::from(format!("/tmp/emacs{uid}")), Owner::User),
        (PathBuf::from("/run/screen"), Owner::Shared),
        (PathBuf::from("/tmp/.X11-unix"), Owner::Shared),
        (PathBuf::from("/tmp/.ICE-unix"), Owner::Shared),
    ];
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        dirs.push((PathBuf::from(format!("/tmp/nvim.{}", user.name)), Owner::User));
    }
    dirs
}

/// Enters a mount namespace of this process's own (inherited by the exec
/// and its children) with the user's service directories covered. A
/// directory that does not exist yet is made first, on the host, as its
/// service would make it: a service started later puts its socket under the
/// cover rather than beside it. Needs `CAP_SYS_ADMIN`: call it before
/// dropping root.
pub fn hide(uid: u32, gid: u32) -> anyhow::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("entering a mount namespace of the command's own")?;
    // Private from here down: nothing mounted below reaches the host's
    // namespace (on systemd hosts `/` is shared by default).
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making the command's mounts private")?;
    let mut covered = Vec::new();
    for (dir, owner) in candidates(uid) {
        let Some(opened) = open_or_make(&dir, owner, uid, gid)? else { continue };
        let options = match owner {
            Owner::User => format!("mode=0700,uid={uid},gid={gid},size=64m"),
            Owner::Shared => "mode=1777,size=16m".to_owned(),
        };
        // Onto the directory opened, not onto its path again: the path may
        // have been swapped for a symlink since.
        let target = format!("/proc/self/fd/{}", opened.as_raw_fd());
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(Some("tmpfs"), target.as_str(), Some("tmpfs"), flags, Some(options.as_str()))
            .with_context(|| format!("covering {} from the command", dir.display()))?;
        covered.push(dir);
    }
    // A working directory inside a covered one would still reach what is
    // under the cover by relative paths: resolve it again, through them.
    if let Ok(cwd) = std::env::current_dir()
        && covered.iter().any(|dir| cwd.starts_with(dir))
        && std::env::set_current_dir(&cwd).is_err()
    {
        std::env::set_current_dir("/").context("leaving a covered working directory")?;
        eprintln!(
            "bridle: warning: the working directory {} is covered from the command; it starts in /",
            cwd.display()
        );
    }
    Ok(())
}

/// `dir` opened without following a symlink, made first if missing (the
/// user's own 0700, shared ones 1777, as their services make them); `None`
/// when it is a symlink or not a directory (nothing a service would use).
fn open_or_make(dir: &Path, owner: Owner, uid: u32, gid: u32) -> anyhow::Result<Option<File>> {
    let made = match std::fs::symlink_metadata(dir) {
        Ok(_) => false,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            // `/run/user` on a host without logind: everyone traverses it
            // (whatever this process's umask).
            if let Some(parent) = dir.parent()
                && !parent.exists()
            {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("opening {} to everyone", parent.display()))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => true,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => false,
                Err(error) => return Err(error).with_context(|| format!("creating {}", dir.display())),
            }
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir);
    let opened = match opened {
        Ok(opened) => opened,
        Err(error) if matches!(error.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)) => {
            return Ok(None);
        }
        Err(error) => return Err(error).with_context(|| format!("opening {}", dir.display())),
    };
    if made {
        let (owner_ids, mode) = match owner {
            Owner::User => ((uid, gid), 0o700),
            Owner::Shared => ((0, 0), 0o1777),
        };
        std::os::unix::fs::fchown(&opened, Some(owner_ids.0), Some(owner_ids.1))
            .with_context(|| format!("handing {} to its owner", dir.display()))?;
        opened
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(Some(opened))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_missing_directory_is_made_as_its_service_would_and_a_symlink_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = dir.path().join("run/user/65534");
        assert!(open_or_make(&mine, Owner::User, 65534, 65534).expect("made").is_some());
        let parent = std::fs::metadata(dir.path().join("run/user")).expect("parent made");
        assert_eq!(parent.mode() & 0o7777, 0o755);
        let meta = std::fs::metadata(&mine).expect("made");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (65534, 65534, 0o700));
        let shared = dir.path().join(".X11-unix");
        assert!(open_or_make(&shared, Owner::Shared, 65534, 65534).expect("made").is_some());
        assert_eq!(std::fs::metadata(&shared).expect("made").mode() & 0o7777, 0o1777);
        // One that exists keeps its owner and mode.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(open_or_make(&shared, Owner::Shared, 0, 0).expect("opened").is_some());
        assert_eq!(std::fs::metadata(&shared).expect("there").mode() & 0o7777, 0o755);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).expect("symlink");
        assert!(open_or_make(&link, Owner::User, 65534, 65534).expect("no error").is_none());
    }
}
