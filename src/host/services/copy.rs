//! The copy of the host's `/run` that the command's `/run` holds (see
//! [`super::run`]): directories, regular files and symlinks, owners and
//! modes kept, and no socket, pipe or device at any depth; a symlink that
//! leads to a socket (outside `/run`: one into it leads into the copy) is
//! left out too. Directories named live are bind mounts of the host's
//! instead, sockets and all.
//!
//! Bounded: [`MAX_ENTRIES`] entries, [`MAX_BYTES`] bytes of file contents,
//! [`MAX_FILE`] bytes per file (larger ones are left out), [`MAX_DEPTH`]
//! levels; the live binds are outside the bounds. What the command's user
//! could not read or enter on the host (as the kernel decides it for that
//! user) is made empty, with its owner and mode: it gets nothing from the
//! copy that it could not have read. So are the file systems mounted below
//! (a container's root, a USB drive, a bind mount, found by device or in
//! mountinfo), which are not `/run`'s to copy.
//!
//! Never: follow a symlink while reading or writing (one is only looked
//! through to see whether it leads to a socket), or write anywhere but
//! into the cover it is given.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{AccessFlags, Gid, Uid, fchownat, symlinkat};

use super::fd_path;
use crate::host::warnings::Warnings;

/// What the copy stops at: `/run` holds pid files, small state files and
/// sockets; a host with more (a volatile journal in `/run/log`, which is
/// not the user's to read) loses the rest, with a warning.
pub(super) const MAX_ENTRIES: usize = 4096;
pub(super) const MAX_BYTES: u64 = 16 << 20;
pub(super) const MAX_FILE: u64 = 1 << 20;
pub(super) const MAX_DEPTH: usize = 16;

/// One copy under way.
#[derive(Debug)]
pub(super) struct Copier<'a> {
    /// Who the command runs as (its only group is `gid`).
    uid: u32,
    gid: u32,
    /// Paths relative to the top of the copy that are bound, not copied.
    live: &'a [PathBuf],
    /// The top on the host, which `live` is relative to.
    top: PathBuf,
    /// The `live` paths bound so far.
    pub(super) bound: Vec<PathBuf>,
    entries: usize,
    bytes: u64,
    stopped: bool,
    /// Files left out for their size.
    too_big: usize,
    /// The mount points below the top: one on the same device (a bind
    /// mount) has the same `st_dev` as its parent.
    mounts: HashSet<PathBuf>,
    warnings: &'a Warnings,
}

impl<'a> Copier<'a> {
    pub(super) fn new(uid: u32, gid: u32, top: &Path, live: &'a [PathBuf], warnings: &'a Warnings) -> Copier<'a> {
        Copier {
            uid,
            gid,
            live,
            top: top.to_path_buf(),
            bound: Vec::new(),
            entries: 0,
            bytes: 0,
            stopped: false,
            too_big: 0,
            mounts: match super::mountinfo::read() {
                Ok(mounts) => super::mountinfo::points_below(&mounts, top),
                Err(error) => {
                    let unread = format_args!(
                        "cannot read /proc/self/mountinfo ({error}): bind mounts below {} are copied",
                        top.display()
                    );
                    warnings.warn(unread);
                    HashSet::new()
                }
            },
            warnings,
        }
    }

    /// Copies what `host` (the host's `dir`, opened) holds into `cover`,
    /// except the names in `skip`. An entry that cannot be copied is left
    /// out with a warning: the command gets less, not more.
    pub(super) fn tree(&mut self, host: &File, cover: &File, dir: &Path, skip: &[&str], depth: usize) {
        let listing = std::fs::read_dir(fd_path(host));
        let (listing, dev) = match (listing, host.metadata()) {
            (Ok(listing), Ok(meta)) => (listing, meta.dev()),
            (Err(error), _) | (_, Err(error)) => {
                self.warnings.warn(format_args!("cannot list {}; the command's is empty: {error}", dir.display()));
                return;
            }
        };
        for entry in listing.flatten() {
            let name = entry.file_name();
            if skip.iter().any(|skipped| name == *skipped) {
                continue;
            }
            match self.place(host, cover, dir, &name, dev, depth) {
                Ok(()) => {}
                // Removed or replaced since it was listed (a namespace
                // deleted, a pid file rewritten): nothing to say.
                Err(error)
                    if error.downcast_ref::<nix::errno::Errno>().is_some_and(|errno| {
                        matches!(
                            errno,
                            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP
                        )
                    }) => {}
                Err(error) => {
                    let path = dir.join(&name);
                    let left_out = format_args!("{} is left out of the command's copy: {error:#}", path.display());
                    self.warnings.warn(left_out);
                }
            }
        }
    }

    fn place(
        &mut self,
        host: &File,
        cover: &File,
        dir: &Path,
        name: &OsStr,
        dev: u64,
        depth: usize,
    ) -> anyhow::Result<()> {
        let stat = fstatat(host, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        let path = dir.join(name);
        if !matches!(kind, SFlag::S_IFDIR | SFlag::S_IFREG | SFlag::S_IFLNK) {
            return Ok(());
        }
        if kind == SFlag::S_IFDIR
            && let Some(live) = self.live_path(&path)
        {
            // Outside the bounds: a full copy must not cost these.
            bind(host, cover, name, &stat)?;
            self.bound.push(live);
            return Ok(());
        }
        if !self.count_entry(&path) {
            return Ok(());
        }
        let owner = (stat.st_uid, stat.st_gid);
        let mode = stat.st_mode & 0o7777;
        // A bind mount, of a directory or of a file.
        let bound = self.mounts.contains(&path);
        if kind == SFlag::S_IFDIR {
            let made = own_dir(cover, name, mode, owner)?;
            // Or another file system mounted here (a container's root, a
            // USB drive). Only a directory's device tells: on overlayfs a
            // file reports the device of the layer it is in.
            if bound || stat.st_dev != dev || !self.may(host, name, AccessFlags::X_OK) {
                // Not /run's to copy, or out of the user's reach on the
                // host.
            } else if depth + 1 >= MAX_DEPTH {
                self.warnings.warn(format_args!("{} is copied empty: deeper than {MAX_DEPTH}", path.display()));
            } else if let Some(opened) = open_dir_at(host, name, &stat)? {
                self.tree(&opened, &made, &path, &[], depth + 1);
            }
        } else if kind == SFlag::S_IFREG {
            let bytes = if bound || !self.may(host, name, AccessFlags::R_OK) {
                Vec::new()
            } else if stat.st_size as u64 > MAX_FILE {
                self.too_big += 1;
                return Ok(());
            } else if let Some(bytes) = read_file(host, name, &stat)? {
                bytes
            } else {
                // A namespace's handle (`/run/netns/<name>`), or a file
                // replaced since it was listed.
                return Ok(());
            };
            if !self.count_bytes(&path, bytes.len() as u64) {
                return Ok(());
            }
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let mut file = File::from(openat(cover, name, flags, Mode::empty())?);
            file.write_all(&bytes)?;
            // Owner first: a chown clears the setuid and setgid bits.
            std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        } else {
            // A symlink. One to a socket outside /run would be one more
            // name for it (one into /run leads into the copy).
            let leads_to = fstatat(host, name, AtFlags::empty());
            if leads_to.is_ok_and(|to| to.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits()) {
                return Ok(());
            }
            let target = readlinkat(host, name)?;
            symlinkat(target.as_os_str(), cover, name)?;
            let (uid, gid) = (Some(Uid::from_raw(owner.0)), Some(Gid::from_raw(owner.1)));
            fchownat(cover, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }

    /// Counts one more entry; false once the copy is full.
    fn count_entry(&mut self, path: &Path) -> bool {
        self.entries += 1;
        self.room(path)
    }

    /// Counts `bytes` of an entry's contents; false once the copy is full.
    fn count_bytes(&mut self, path: &Path, bytes: u64) -> bool {
        self.bytes += bytes;
        self.room(path)
    }

    fn room(&mut self, path: &Path) -> bool {
        if self.stopped {
            return false;
        }
        if self.entries > MAX_ENTRIES || self.bytes > MAX_BYTES {
            self.stopped = true;
            self.warnings.warn(format_args!(
                "the command's copy of {} stops at {}: more than {MAX_ENTRIES} entries or {MAX_BYTES} bytes",
                self.top.display(),
                path.display()
            ));
            return false;
        }
        true
    }

    /// Says what was left out without a warning of its own.
    pub(super) fn finish(&self) {
        if self.too_big > 0 {
            self.warnings.warn(format_args!(
                "the command's copy of {} leaves out {} files larger than {MAX_FILE} bytes",
                self.top.display(),
                self.too_big
            ));
        }
    }

    /// `path` relative to the top, if it is to be bound.
    fn live_path(&self, path: &Path) -> Option<PathBuf> {
        let relative = path.strip_prefix(&self.top).ok()?;
        self.live.iter().any(|live| live == relative).then(|| relative.to_path_buf())
    }

    /// Whether the command's user may `access` `name` in `host`
    /// ([`crate::host::access`]; [`super::hide`] set its groups first).
    fn may(&self, host: &File, name: &OsStr, access: AccessFlags) -> bool {
        crate::host::access::user_may(self.uid, self.gid, host, name, access, false)
    }
}

/// Binds the host's directory `name` (of `host`) onto a directory made for
/// it in `cover`, with what is mounted below it.
fn bind(host: &File, cover: &File, name: &OsStr, stat: &FileStat) -> anyhow::Result<()> {
    // The entry itself is mounted, not its name again: one swapped for a
    // symlink since would mount what the link leads to.
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let opened = File::from(openat(host, name, flags, Mode::empty())?);
    anyhow::ensure!(describes(stat, &opened.metadata()?), "replaced while bound");
    mkdirat(cover, name, Mode::from_bits_truncate(0o700))?;
    let target = fd_path(cover).join(name);
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(fd_path(&opened).as_path()), target.as_path(), None::<&str>, flags, None::<&str>)?;
    Ok(())
}

/// The contents of the regular file `name`; `None` for a namespace file
/// mounted there, another file than `stat` describes, or one that grew
/// past [`MAX_FILE`].
fn read_file(host: &File, name: &OsStr, stat: &FileStat) -> anyhow::Result<Option<Vec<u8>>> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(host, name, flags, Mode::empty())?);
    if nix::sys::statfs::fstatfs(&file)?.filesystem_type() == nix::sys::statfs::NSFS_MAGIC {
        return Ok(None);
    }
    let meta = file.metadata()?;
    if !meta.is_file() || !describes(stat, &meta) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::Read::by_ref(&mut file).take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    // One that grew past the limit while read is left out.
    Ok((bytes.len() as u64 <= MAX_FILE).then_some(bytes))
}

/// Makes `name` in `parent` with `mode` and `owner`, and opens it.
pub(super) fn own_dir(parent: &File, name: &OsStr, mode: u32, owner: (u32, u32)) -> anyhow::Result<File> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700))?;
    let made = open(parent, name)?;
    std::os::unix::fs::fchown(&made, Some(owner.0), Some(owner.1))?;
    // After the owner: the umask took bits off, and a chown may take more.
    made.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(made)
}

fn open(parent: &File, name: &OsStr) -> anyhow::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(openat(parent, name, flags, Mode::empty())?))
}

/// The directory `name` that `stat` describes, opened; `None` if another
/// is there now.
fn open_dir_at(parent: &File, name: &OsStr, stat: &FileStat) -> anyhow::Result<Option<File>> {
    let opened = open(parent, name)?;
    Ok(describes(stat, &opened.metadata()?).then_some(opened))
}

/// Whether `stat` (taken by name) is of the file `meta` was read from.
fn describes(stat: &FileStat, meta: &std::fs::Metadata) -> bool {
    (meta.dev(), meta.ino()) == (stat.st_dev, stat.st_ino)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_copy_has_no_socket_at_any_depth_and_nothing_its_user_could_not_read() {
        let host = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let at = |path: &str| host.path().join(path);
        std::fs::create_dir_all(at("systemd/resolve")).expect("dirs");
        std::fs::write(at("systemd/resolve/stub-resolv.conf"), "nameserver 127.0.0.53\n").expect("file");
        std::os::unix::fs::symlink("stub-resolv.conf", at("systemd/resolve/resolv.conf")).expect("symlink");
        let _deep = std::os::unix::net::UnixListener::bind(at("systemd/resolve/io.systemd.Resolve")).expect("sock");
        let _top = std::os::unix::net::UnixListener::bind(at("snapd.socket")).expect("socket");
        std::os::unix::fs::symlink("snapd.socket", at("docker.sock")).expect("a link to a socket");
        std::os::unix::fs::symlink("/dev/shm", at("shm")).expect("a link elsewhere");
        nix::unistd::mkfifo(&at("initctl"), Mode::from_bits_truncate(0o600)).expect("fifo");
        std::fs::write(at("setgid"), "x").expect("file");
        std::os::unix::fs::chown(at("setgid"), Some(0), Some(65534)).expect("chown");
        std::fs::set_permissions(at("setgid"), std::fs::Permissions::from_mode(0o2755)).expect("chmod");
        std::fs::create_dir(at("sudo")).expect("a root-only directory");
        std::fs::set_permissions(at("sudo"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(at("sudo/ts"), "secret").expect("file");
        std::fs::write(at("sshd.pid"), "42\n").expect("file");
        std::fs::set_permissions(at("sshd.pid"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(at("big"), vec![0u8; MAX_FILE as usize + 1]).expect("big file");
        std::fs::create_dir(at("user")).expect("skipped");
        let cover = tempfile::tempdir().expect("tempdir");
        let open = |path: &Path| File::open(path).expect("open");
        let warnings = Warnings::said_only();
        let mut copier = Copier::new(65534, 65534, host.path(), &[], &warnings);
        copier.tree(&open(host.path()), &open(cover.path()), host.path(), &["user"], 0);
        let copy = |path: &str| cover.path().join(path);
        let mut names: Vec<String> = std::fs::read_dir(cover.path())
            .expect("listed")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["setgid", "shm", "sshd.pid", "sudo", "systemd"]);
        let mut resolve: Vec<String> = std::fs::read_dir(copy("systemd/resolve"))
            .expect("listed")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        resolve.sort();
        assert_eq!(resolve, ["resolv.conf", "stub-resolv.conf"]);
        assert_eq!(
            std::fs::read_to_string(copy("systemd/resolve/resolv.conf")).expect("read"),
            "nameserver 127.0.0.53\n"
        );
        let setgid = std::fs::metadata(copy("setgid")).expect("copied");
        assert_eq!((setgid.uid(), setgid.gid(), setgid.mode() & 0o7777), (0, 65534, 0o2755));
        // Root's own: there, as they were, and empty.
        let sudo = std::fs::metadata(copy("sudo")).expect("copied");
        assert_eq!(sudo.mode() & 0o7777, 0o700);
        assert_eq!(std::fs::read_dir(copy("sudo")).expect("listed").count(), 0);
        let pid = std::fs::metadata(copy("sshd.pid")).expect("copied");
        assert_eq!((pid.len(), pid.mode() & 0o7777), (0, 0o600));
        assert_eq!(std::fs::read_link(copy("shm")).expect("link"), Path::new("/dev/shm"));
    }

    #[test]
    fn a_copy_stops_at_its_bounds() {
        let open = |path: &Path| File::open(path).expect("open");
        let copied = |files: usize, size: usize| {
            let host = tempfile::tempdir().expect("tempdir");
            for i in 0..files {
                std::fs::write(host.path().join(format!("{i}.pid")), vec![b'1'; size]).expect("file");
            }
            let cover = tempfile::tempdir().expect("tempdir");
            Copier::new(0, 0, host.path(), &[], &Warnings::said_only()).tree(
                &open(host.path()),
                &open(cover.path()),
                host.path(),
                &[],
                0,
            );
            std::fs::read_dir(cover.path()).expect("listed").count()
        };
        assert_eq!(copied(MAX_ENTRIES + 10, 1), MAX_ENTRIES);
        assert_eq!(copied(20, MAX_FILE as usize), (MAX_BYTES / MAX_FILE) as usize);
    }
}
