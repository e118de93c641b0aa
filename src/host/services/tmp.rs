//! The command's own `/tmp` (`[host] private_tmp`): an empty tmpfs over
//! the host's, so that no socket another process of the user's serves
//! there (an `ssh-agent`'s `/tmp/ssh-*`, an IDE's IPC) and none of the
//! user's files there are in its reach, and nothing it leaves there
//! outlives the session.
//!
//! It keeps the host's `noexec` where the host's `/tmp` has it, and makes
//! the command's `TMPDIR` when that names a directory in it (Debian's
//! `libpam-tmpdir` sets `/tmp/user/<uid>`). What it cannot cover is the
//! host's `/tmp` under another name: the same files mounted elsewhere too
//! (a bind mount, the root file system mounted a second time). Those are
//! named in a warning.
//!
//! Never: follow a symlink to `/tmp` (the session then does not start),
//! or touch the host's `/tmp`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::mount::{MsFlags, mount};

use super::mountinfo::Mount;
use super::{fd_path, open_cover, open_dir};
use crate::host::warnings::Warnings;

/// Mounts the command's `/tmp` over the host's, in the private mount
/// namespace [`super::hide`] entered, and makes `TMPDIR` in it for
/// `uid`:`gid`.
pub(super) fn own(uid: u32, gid: u32, warnings: &Warnings) -> anyhow::Result<()> {
    let tmp = Path::new("/tmp");
    let host = open_dir(tmp).context("opening /tmp (for [host] private_tmp it must be a directory)")?;
    let meta = host.metadata().context("reading /tmp")?;
    let mounts = super::mountinfo::read();
    if let Err(error) = &mounts {
        warnings.warn(format_args!(
            "cannot read /proc/self/mountinfo ({error}): the host's /tmp under another name is not looked for"
        ));
    }
    if let (Ok(mounts), Some(mount_id)) = (mounts, mount_id(&host)) {
        // Only where the command sees them: one under a cover (/run's) is
        // not there for it.
        let seen = |path: &PathBuf| std::fs::symlink_metadata(path).is_ok_and(|seen| seen.dev() == meta.dev());
        for elsewhere in elsewhere(&mounts, tmp, mount_id).iter().filter(|path| seen(path)) {
            warnings.warn(format_args!(
                "{} holds the host's /tmp under another name: [host] private_tmp covers /tmp only, and what is served \
                 there is in the command's reach",
                elsewhere.display()
            ));
        }
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let host_flags = nix::sys::statvfs::fstatvfs(&host).context("reading /tmp's mount flags")?.flags();
    if host_flags.contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) {
        flags |= MsFlags::MS_NOEXEC;
    }
    mount(Some("tmpfs"), fd_path(&host).as_path(), Some("tmpfs"), flags, Some("mode=1777"))
        .context("giving the command a /tmp of its own")?;
    open_cover(tmp, &host)?;
    make_tmpdir(uid, gid)
}

/// Makes `TMPDIR` (the command's, since this process has its environment)
/// when it names a directory in `/tmp`: the leaf the user's, 0700, as
/// `libpam-tmpdir` makes it; anything above it root's. The tmpfs is new
/// and nothing but this process has written to it, so no link is in the
/// way.
fn make_tmpdir(uid: u32, gid: u32) -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os("TMPDIR").map(PathBuf::from) else { return Ok(()) };
    let inside = dir.strip_prefix("/tmp").ok().filter(|rest| !rest.as_os_str().is_empty());
    let Some(inside) = inside else { return Ok(()) };
    if !inside.components().all(|part| matches!(part, std::path::Component::Normal(_))) {
        return Ok(());
    }
    // Modes set, not left to the umask (`sudo` may pass on 077).
    let mut made = PathBuf::from("/tmp");
    for part in inside.components() {
        made.push(part);
        std::fs::create_dir(&made).with_context(|| format!("making {} in the command's /tmp", made.display()))?;
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("opening {} in the command's /tmp", made.display()))?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .and_then(|()| std::os::unix::fs::chown(&dir, Some(uid), Some(gid)))
        .with_context(|| format!("giving TMPDIR {} to the command's user", dir.display()))
}

/// The id of the mount `file` is on (`mnt_id` in its fdinfo): unlike its
/// `st_dev`, always the one mountinfo shows (btrfs subvolumes differ).
fn mount_id(file: &std::fs::File) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    fdinfo.lines().find_map(|line| line.strip_prefix("mnt_id:")).and_then(|id| id.trim().parse().ok())
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
