//! The command's own `/tmp` and `/var/tmp` (`[host] private_tmp`, as
//! systemd's `PrivateTmp=`): an empty tmpfs over each of the host's, so
//! that no socket another process of the user's serves there (an
//! `ssh-agent`'s `/tmp/ssh-*`, an IDE's IPC) and none of the user's files
//! there are in its reach, and nothing it leaves there outlives the
//! session.
//!
//! Each keeps the host's `noexec` where the host's has it, and the
//! command's `TMPDIR` is made when it names a directory in one (Debian's
//! `libpam-tmpdir` sets `/tmp/user/<uid>`). What it cannot cover is the
//! host's `/tmp` or `/var/tmp` under another name: the same files mounted
//! elsewhere too (a bind mount, the root file system mounted a second
//! time). Those are named in a warning.
//!
//! Never: follow a symlink to `/tmp` (the session then does not start) or
//! from `/var/tmp` (one that leads out of `/tmp` is named, and left), or
//! touch the host's directories.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::mount::{MsFlags, mount};

use super::mountinfo::Mount;
use super::{fd_path, mount_id, open_cover, open_dir};
use crate::host::warnings::Warnings;

/// The directories given a tmpfs of the command's own.
const PRIVATE: [&str; 2] = ["/tmp", "/var/tmp"];

/// Mounts the command's `/tmp` and `/var/tmp` over the host's, in the
/// private mount namespace [`super::hide`] entered, and makes `TMPDIR` in
/// them for `uid`:`gid`. Returns the directories covered.
pub(super) fn own(uid: u32, gid: u32, warnings: &Warnings) -> anyhow::Result<Vec<PathBuf>> {
    let mut covered = Vec::new();
    // Where each leads, read before /tmp is covered (a /var/tmp that links
    // into it could not be followed after).
    let targets = PRIVATE.map(|dir| std::fs::canonicalize(dir).ok());
    for (dir, target) in PRIVATE.map(Path::new).into_iter().zip(targets) {
        let required = dir == Path::new("/tmp");
        let host = match open_dir(dir) {
            Ok(host) => host,
            Err(error) if required => {
                return Err(error).context("opening /tmp (for [host] private_tmp it must be a directory)");
            }
            // A host without /var/tmp has nothing to cover.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => continue,
            // A /var/tmp that links into /tmp is covered with it.
            Err(_) if target.is_some_and(|target| target.starts_with("/tmp")) => continue,
            Err(error) => {
                warnings.warn(format_args!(
                    "{} cannot be given a tmpfs of the command's own ({error}; a symlink is not followed): the \
                     host's is in its reach",
                    dir.display()
                ));
                continue;
            }
        };
        cover(dir, &host, warnings)?;
        covered.push(dir.to_path_buf());
    }
    make_tmpdir(&covered, uid, gid)?;
    Ok(covered)
}

/// Mounts a tmpfs over `dir` (opened as `host`), naming where the host's
/// files of `dir` are mounted again.
fn cover(dir: &Path, host: &std::fs::File, warnings: &Warnings) -> anyhow::Result<()> {
    let meta = host.metadata().with_context(|| format!("reading {}", dir.display()))?;
    let mounts = super::mountinfo::read();
    if let Err(error) = &mounts {
        warnings.warn(format_args!(
            "cannot read /proc/self/mountinfo ({error}): the host's {} under another name is not looked for",
            dir.display()
        ));
    }
    if let (Ok(mounts), Some(mount_id)) = (mounts, mount_id(host)) {
        // Only where the command sees them (one under a cover, /run's, is
        // not there for it), and not one given a tmpfs of its own here (a
        // /var/tmp that is a bind of /tmp).
        let seen = |path: &PathBuf| {
            !PRIVATE.iter().any(|private| path.starts_with(private))
                && std::fs::symlink_metadata(path).is_ok_and(|seen| seen.dev() == meta.dev())
        };
        for elsewhere in elsewhere(&mounts, dir, mount_id).iter().filter(|path| seen(path)) {
            warnings.warn(format_args!(
                "{} holds the host's {} under another name: [host] private_tmp covers /tmp and /var/tmp only, and \
                 what is served there is in the command's reach",
                elsewhere.display(),
                dir.display()
            ));
        }
    }
    let host_flags =
        nix::sys::statvfs::fstatvfs(host).with_context(|| format!("reading {}'s mount flags", dir.display()))?.flags();
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | super::kept_flags(host_flags);
    mount(Some("tmpfs"), fd_path(host).as_path(), Some("tmpfs"), flags, Some("mode=1777"))
        .with_context(|| format!("giving the command a {} of its own", dir.display()))?;
    open_cover(dir, host)?;
    Ok(())
}

/// Makes `TMPDIR` (the command's, since this process has its environment)
/// when it names a directory in one of the `covered` tmpfs: the leaf the
/// user's, 0700, as `libpam-tmpdir` makes it; anything above it root's.
/// The tmpfs is new and nothing but this process has written to it, so no
/// link is in the way.
fn make_tmpdir(covered: &[PathBuf], uid: u32, gid: u32) -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os("TMPDIR").map(PathBuf::from) else { return Ok(()) };
    let inside = covered.iter().find_map(|tmp| {
        let rest = dir.strip_prefix(tmp).ok().filter(|rest| !rest.as_os_str().is_empty())?;
        Some((tmp, rest))
    });
    let Some((tmp, inside)) = inside else { return Ok(()) };
    if !inside.components().all(|part| matches!(part, std::path::Component::Normal(_))) {
        return Ok(());
    }
    // Modes set, not left to the umask (`sudo` may pass on 077).
    let mut made = tmp.clone();
    for part in inside.components() {
        made.push(part);
        std::fs::create_dir(&made)
            .with_context(|| format!("making {} in the command's {}", made.display(), tmp.display()))?;
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("opening {} in the command's {}", made.display(), tmp.display()))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .and_then(|()| std::os::unix::fs::chown(&dir, Some(uid), Some(gid)))
        .with_context(|| format!("giving TMPDIR {} to the command's user", dir.display()))
}

/// The paths where `/proc/self/mountinfo` shows the files of `tmp` (on
/// mount `mount_id`) mounted again, besides `tmp` itself: mounts of the
/// same device whose root holds `tmp`'s directory (the whole file system
/// again) or lies inside it (a bind mount of `/tmp` or of a directory in
/// it).
fn elsewhere(mounts: &[Mount], tmp: &Path, mount_id: u64) -> Vec<PathBuf> {
    let Some(on) = mounts.iter().find(|m| m.id == mount_id) else { return Vec::new() };
    // `tmp`'s directory within the file system.
    let Ok(below) = tmp.strip_prefix(&on.point) else { return Vec::new() };
    let in_fs = on.root.join(below);
    mounts
        .iter()
        .filter(|m| m.dev == on.dev && m.id != on.id && !m.point.starts_with(tmp))
        .filter_map(|m| {
            if let Ok(rest) = in_fs.strip_prefix(&m.root) {
                Some(if rest.as_os_str().is_empty() { m.point.clone() } else { m.point.join(rest) })
            } else if m.root.starts_with(&in_fs) {
                Some(m.point.clone())
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::mountinfo::parse_all;
    use super::*;

    #[test]
    fn the_hosts_tmp_under_another_name_is_found() {
        // /tmp on the root file system (8:1), which is also mounted whole
        // at /mnt/root, with /tmp bound at "/srv/a tmp" and a directory of
        // it at /srv/cache; /home (8:1, another directory) and a tmpfs
        // (0:40) are not /tmp.
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                         30 22 8:1 / /mnt/root rw - ext4 /dev/sda1 rw\n\
                         31 22 8:1 /tmp /srv/a\\040tmp rw - ext4 /dev/sda1 rw\n\
                         32 22 8:1 /tmp/cache /srv/cache rw - ext4 /dev/sda1 rw\n\
                         33 22 8:1 /home /home rw - ext4 /dev/sda1 rw\n\
                         34 22 0:40 / /run rw - tmpfs tmpfs rw\n\
                         garbage\n";
        let found = elsewhere(&parse_all(mountinfo.as_bytes()), Path::new("/tmp"), 22);
        let expected = ["/mnt/root/tmp", "/srv/a tmp", "/srv/cache"].map(PathBuf::from);
        assert_eq!(found, expected);
    }

    #[test]
    fn a_tmp_of_its_own_mounted_once_is_nowhere_else() {
        // The usual systemd host: /tmp is a tmpfs of its own (0:50); a
        // mount below it is not another name for it.
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                         40 22 0:50 / /tmp rw - tmpfs tmpfs rw\n\
                         41 40 0:50 /x /tmp/y rw - tmpfs tmpfs rw\n";
        assert!(elsewhere(&parse_all(mountinfo.as_bytes()), Path::new("/tmp"), 40).is_empty());
        // Bound again elsewhere, it is.
        let bound = format!("{mountinfo}42 22 0:50 / /var/tmp rw - tmpfs tmpfs rw\n");
        assert_eq!(elsewhere(&parse_all(bound.as_bytes()), Path::new("/tmp"), 40), [PathBuf::from("/var/tmp")]);
    }
}
