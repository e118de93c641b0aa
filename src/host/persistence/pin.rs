//! Pins: the names that lead to a locked path stay where they are.
//!
//! A read-only bind stops writes to a locked file, not a rename of a
//! directory above it: `mv .git .git.old; mkdir -p .git/hooks` gives the
//! next `git commit` hooks the lock never saw, and `mv ~/.ssh ~/.ssh.old`
//! frees the name `~/.ssh/authorized_keys`. The kernel refuses to rename
//! or remove a mount point in the namespace it is mounted in (EBUSY), and
//! in every namespace copied from it, so each directory above a locked
//! path that the command's user could rename is bound onto itself,
//! writable: what is in it stays the command's to change, its name does
//! not. (A rename from one pinned directory into another now crosses a
//! mount and fails with EXDEV; `mv` copies instead.)
//!
//! Whether the user could rename a directory is read from its parent's
//! owner and mode bits, leaning to "could": a group-writable parent
//! counts whatever the user's groups, an ACL is not read. A pin too many
//! costs only the EXDEV above.
//!
//! Never: pin through a symlink (it is said instead: the link itself can
//! be replaced), or pin `/`.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::host::warnings::Warnings;

/// The directories above `locked` that `uid` could rename, each once,
/// those nearest `/` first (a pin copies the mounts below it, so the locks
/// and pins made after it land in the tree the command sees). A directory
/// that is already a mount's root is left out: it cannot be renamed.
pub(super) fn renamable_ancestors<'a>(locked: impl IntoIterator<Item = &'a Path>, uid: u32) -> Vec<PathBuf> {
    let (mut seen, mut found) = (BTreeSet::new(), BTreeSet::new());
    for path in locked {
        for dir in path.ancestors().skip(1) {
            let Some(parent) = dir.parent() else { break };
            if parent.as_os_str().is_empty() || !seen.insert(dir.to_path_buf()) {
                continue;
            }
            // The parent as the kernel resolves it (a home that links to
            // another disk is that disk's directory); `dir` itself, a
            // symlink included (it can be replaced: pin says so).
            let (Ok(own), Ok(above)) = (std::fs::symlink_metadata(dir), std::fs::metadata(parent)) else {
                continue;
            };
            if !is_mount_root(dir, parent) && could_rename(&own, &above, uid) {
                found.insert(dir.to_path_buf());
            }
        }
    }
    let mut dirs: Vec<PathBuf> = found.into_iter().collect();
    dirs.sort_by_key(|dir| dir.components().count());
    dirs
}

/// Whether `dir` is the root of a mount other than its parent's (which no
/// rename can move), by mount id: a btrfs subvolume has a device of its
/// own but is no mount, and renames like a directory.
fn is_mount_root(dir: &Path, parent: &Path) -> bool {
    let resolved = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(parent);
    let id = |file: Option<std::fs::File>| file.as_ref().and_then(crate::host::services::mount_id);
    match (id(crate::host::services::hold(dir).ok()), id(resolved.ok())) {
        (Some(own), Some(above)) => own != above,
        // Unknown: pinned, which costs at most a needless mount.
        _ => false,
    }
}

/// Whether `uid` could rename the entry `own` in the directory `parent`,
/// by the mode bits (root always could).
fn could_rename(own: &std::fs::Metadata, parent: &std::fs::Metadata, uid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let mode = parent.permissions().mode();
    let writable = (parent.uid() == uid && mode & 0o300 == 0o300) || mode & 0o022 != 0;
    // A sticky directory (`/tmp`) lets only the entry's or the directory's
    // owner rename the entry.
    let sticky_allows = mode & 0o1000 == 0 || own.uid() == uid || parent.uid() == uid;
    writable && sticky_allows
}

/// Binds each of `dirs` onto itself (writable, with what is mounted below
/// it), so that it cannot be renamed or removed; a symlink among them is
/// said and left. Returns how many were pinned. Needs `CAP_SYS_ADMIN`; an
/// error means the command must not start.
pub(super) fn pin(dirs: &[PathBuf], warnings: &Warnings) -> anyhow::Result<usize> {
    use nix::mount::{MsFlags, mount};
    let mut pinned = 0;
    for dir in dirs {
        let held = match crate::host::services::hold(dir) {
            Ok(held) => held,
            // Gone since it was looked at: nothing left to pin.
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(error) => return Err(error).with_context(|| format!("opening {} to pin it", dir.display())),
        };
        let meta = held.metadata().with_context(|| format!("reading {}", dir.display()))?;
        if !meta.is_dir() {
            warnings.warn(format_args!(
                "{} leads to a locked file but is a symlink, or not a directory: it could be replaced",
                dir.display()
            ));
            continue;
        }
        let at = crate::host::services::fd_path(&held);
        mount(Some(at.as_path()), at.as_path(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .with_context(|| format!("pinning {} (a bind onto itself)", dir.display()))?;
        let bound = crate::host::services::hold(dir).with_context(|| format!("opening {} again", dir.display()))?;
        let again = bound.metadata().with_context(|| format!("reading {}", dir.display()))?;
        anyhow::ensure!(
            (again.dev(), again.ino()) == (meta.dev(), meta.ino()),
            "{} changed while it was being pinned",
            dir.display()
        );
        pinned += 1;
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_mounts_root_is_told_from_a_directory() {
        assert!(is_mount_root(Path::new("/proc"), Path::new("/")));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        assert!(!is_mount_root(&dir.path().join("sub"), dir.path()));
    }

    #[test]
    fn the_directories_a_user_could_rename_are_found_nearest_the_root_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let uid = root.path().metadata().expect("meta").uid();
        let repo = root.path().join("src/proj");
        std::fs::create_dir_all(repo.join(".git/hooks")).expect("dirs");
        let hooks = repo.join(".git/hooks");
        let config = repo.join(".git/config");
        std::fs::write(&config, "").expect("config");
        let found = renamable_ancestors([hooks.as_path(), config.as_path()], uid);
        let want = [root.path().join("src"), repo.clone(), repo.join(".git")];
        assert!(found.ends_with(&want), "{found:?}");
        // Each once, and never `/`.
        assert_eq!(found.iter().filter(|dir| **dir == repo).count(), 1);
        assert!(!found.iter().any(|dir| dir == Path::new("/")));

        // Another user cannot rename what is in a directory only its owner
        // writes, nor another's entry in a sticky one.
        let other = uid + 1;
        chmod(&root.path().join("src"), 0o755);
        chmod(&repo, 0o755);
        chmod(&repo.join(".git"), 0o755);
        let theirs = renamable_ancestors([config.as_path()], other);
        assert!(!theirs.iter().any(|dir| dir.starts_with(root.path().join("src"))), "{theirs:?}");
        chmod(&repo, 0o1777);
        let theirs = renamable_ancestors([config.as_path()], other);
        assert!(!theirs.contains(&repo.join(".git")), "{theirs:?}");
        chmod(&repo, 0o777);
        let theirs = renamable_ancestors([config.as_path()], other);
        assert!(theirs.contains(&repo.join(".git")), "{theirs:?}");
    }
}
