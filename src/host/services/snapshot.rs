//! Copies of system services' directories without their sockets: what
//! the command's `/run` holds in place of `/run/dbus` and the like (see
//! [`super::run`]).
//!
//! Never: follow a symlink while reading or writing, or write anywhere but
//! into the cover it is given.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read as _;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};

/// Files larger than this are left out of a system directory's copy, and
/// the copy stops at [`COPY_BUDGET`] bytes or [`COPY_ENTRIES`] entries: what
/// those directories hold besides sockets is a few small files
/// (`resolv.conf`, pid files).
const COPY_LIMIT: u64 = 1 << 20;
const COPY_BUDGET: u64 = 8 << 20;
const COPY_ENTRIES: usize = 256;

/// A system directory's regular files and symlinks, read before it is
/// covered, to be written into the cover. Its sockets (what the cover is
/// for), pipes, devices and subdirectories are left out.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    entries: Vec<(OsString, Copied)>,
}

#[derive(Debug)]
enum Copied {
    File { bytes: Vec<u8>, mode: u32, owner: (u32, u32) },
    Link { target: OsString, owner: (u32, u32) },
}

impl Snapshot {
    /// What `dir` (opened) holds now. Unreadable entries are left out with
    /// a warning: a copy short of a file gives the command less, not more.
    pub(super) fn of(dir: &File, path: &Path) -> Snapshot {
        let mut snapshot = Snapshot::default();
        // The directory opened (not its path again), before it is covered.
        let listing = match std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) {
            Ok(listing) => listing,
            Err(error) => {
                eprintln!("bridle: warning: cannot list {}: {error}", path.display());
                return snapshot;
            }
        };
        let mut bytes = 0;
        for entry in listing.flatten() {
            if snapshot.entries.len() == COPY_ENTRIES || bytes > COPY_BUDGET {
                eprintln!("bridle: warning: the command's copy of {} stops at {bytes} bytes", path.display());
                break;
            }
            let name = entry.file_name();
            match copy_entry(dir, &name) {
                Ok(Some(copied)) => {
                    if let Copied::File { bytes: ref content, .. } = copied {
                        bytes += content.len() as u64;
                    }
                    snapshot.entries.push((name, copied));
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!(
                        "bridle: warning: {} is left out of the command's copy: {error:#}",
                        path.join(&name).display()
                    );
                }
            }
        }
        snapshot
    }

    /// Writes the copy into `cover` (a directory of a cover the caller
    /// checked, see [`super::open_cover`]; `dir` names it in warnings). An
    /// entry that cannot be written is left out with a warning.
    pub(super) fn restore(self, cover: &File, dir: &Path) {
        for (name, copied) in self.entries {
            if let Err(error) = copied.write(cover, &name) {
                eprintln!(
                    "bridle: warning: {} is left out of the command's copy: {error:#}",
                    dir.join(&name).display()
                );
            }
        }
    }
}

impl Copied {
    fn write(self, cover: &File, name: &OsString) -> anyhow::Result<()> {
        match self {
            Copied::File { bytes, mode, owner } => {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let mut file = File::from(openat(cover, name.as_os_str(), flags, Mode::from_bits_truncate(mode))?);
                file.write_all(&bytes)?;
                // The umask may have taken bits off.
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))?;
            }
            Copied::Link { target, owner } => {
                symlinkat(target.as_os_str(), cover, name.as_os_str())?;
                let (uid, gid) = (Some(Uid::from_raw(owner.0)), Some(Gid::from_raw(owner.1)));
                fchownat(cover, name.as_os_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
        }
        Ok(())
    }
}

/// One entry of `dir` as it will be copied; `None` for what is not copied.
fn copy_entry(dir: &File, name: &OsString) -> anyhow::Result<Option<Copied>> {
    let stat = fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let owner = (stat.st_uid, stat.st_gid);
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFLNK {
        let target = readlinkat(dir, name.as_os_str())?;
        return Ok(Some(Copied::Link { target, owner }));
    }
    if kind != SFlag::S_IFREG {
        return Ok(None);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(dir, name.as_os_str(), flags, Mode::empty())?);
    let meta = file.metadata()?;
    anyhow::ensure!(meta.is_file(), "replaced while read");
    anyhow::ensure!(meta.len() <= COPY_LIMIT, "larger than {COPY_LIMIT} bytes");
    let mut bytes = Vec::new();
    std::io::Read::by_ref(&mut file).take(COPY_LIMIT + 1).read_to_end(&mut bytes)?;
    anyhow::ensure!(bytes.len() as u64 <= COPY_LIMIT, "larger than {COPY_LIMIT} bytes");
    Ok(Some(Copied::File { bytes, mode: meta.mode() & 0o7777, owner }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_directory_is_copied_without_its_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("stub-resolv.conf");
        std::fs::write(&file, "nameserver 127.0.0.53\n").expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).expect("chown");
        std::os::unix::fs::symlink("stub-resolv.conf", dir.path().join("resolv.conf")).expect("symlink");
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("io.systemd.Resolve")).expect("socket");
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
        std::fs::create_dir(dir.path().join("subdir")).expect("subdir");
        std::fs::write(dir.path().join("big"), vec![0u8; COPY_LIMIT as usize + 1]).expect("big file");
        let opened = File::open(dir.path()).expect("opened");
        let snapshot = Snapshot::of(&opened, dir.path());
        let mut names: Vec<_> = snapshot.entries.iter().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["resolv.conf", "stub-resolv.conf"]);
        let cover = tempfile::tempdir().expect("tempdir");
        // An entry that cannot be written is left out, not the rest.
        std::fs::write(cover.path().join("resolv.conf"), "in the way").expect("in the way");
        snapshot.restore(&File::open(cover.path()).expect("cover"), cover.path());
        let copy = cover.path().join("stub-resolv.conf");
        assert_eq!(std::fs::read_to_string(&copy).expect("copied"), "nameserver 127.0.0.53\n");
        let meta = std::fs::metadata(&copy).expect("copied");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (65534, 65534, 0o640));
        assert_eq!(std::fs::read_to_string(cover.path().join("resolv.conf")).expect("left"), "in the way");
        let again = tempfile::tempdir().expect("tempdir");
        Snapshot::of(&opened, dir.path()).restore(&File::open(again.path()).expect("cover"), again.path());
        let link = std::fs::read_link(again.path().join("resolv.conf")).expect("link copied");
        assert_eq!(link, Path::new("stub-resolv.conf"));
    }
}
