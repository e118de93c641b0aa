//! The command's own `/run`: a tmpfs mounted over the host's, holding what
//! the host's held when the session started, except the sockets of the
//! services that act for whoever connects.
//!
//! - Directories and files are the host's, bind-mounted (recursively, with
//!   what is mounted below them), so `/run/lock`, `/run/netns` and the pid
//!   files stay live; symlinks are copied.
//! - Sockets directly in `/run` and `/run/systemd` are left out (snapd's,
//!   which forwards store searches; Docker's; systemd's Varlink services),
//!   with pipes and devices.
//! - The directories of services that look names up or connect out for
//!   anyone (`dbus`, `nscd`, `avahi-daemon`, `tor`, `cups`, and
//!   `systemd/resolve`) are copies of their files, without their sockets
//!   (`/etc/resolv.conf` often links to `systemd/resolve/stub-resolv.conf`).
//! - `/run/systemd` is made again one level down, for `resolve`; `user`
//!   holds only the user's own empty `<uid>`; `screen` is empty and shared.
//!
//! Nothing of `/run` itself depends on the host's directories staying as
//! they were: a service that starts later, or is restarted with its
//! runtime directory, makes a directory the command never sees (a bind
//! mount on a directory the host removes goes with it).
//!
//! Never: follow a symlink to what to mount, or leave a file descriptor of
//! the host's `/run` open across the exec.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};

use super::snapshot::Snapshot;

/// Directories of `/run` whose services act for any caller: the system bus
/// (systemd-resolved's `resolve1`, Avahi, NetworkManager), nscd, Avahi's
/// own socket, Debian's Tor (SOCKS on a world-writable socket), CUPS
/// (printers made on request connect out).
const COPIED: [&str; 5] = ["dbus", "nscd", "avahi-daemon", "tor", "cups"];

/// The same in `/run/systemd`: systemd-resolved's Varlink API.
const COPIED_SYSTEMD: [&str; 1] = ["resolve"];

/// Which directory of the host's `/run` is being placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Run,
    Systemd,
}

/// What an entry of the host's directory becomes in the command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Becomes {
    /// The host's, bind-mounted: a directory (with what is mounted below
    /// it) or a regular file.
    Bound,
    /// A symlink, copied.
    Link,
    /// A service's directory, copied without its sockets.
    Copied,
    /// `/run/systemd`: made again, its entries placed one by one.
    Rebuilt,
    /// Left out: sockets, pipes, devices, and what the command gets its own
    /// of (`user`, `screen`).
    Left,
}

fn becomes(level: Level, name: &OsStr, kind: SFlag) -> Becomes {
    if kind == SFlag::S_IFLNK {
        return Becomes::Link;
    }
    if kind == SFlag::S_IFREG {
        return Becomes::Bound;
    }
    if kind != SFlag::S_IFDIR {
        return Becomes::Left;
    }
    match (level, name.to_str()) {
        (Level::Run, Some("user" | "screen")) => Becomes::Left,
        (Level::Run, Some("systemd")) => Becomes::Rebuilt,
        (Level::Run, Some(name)) if COPIED.contains(&name) => Becomes::Copied,
        (Level::Systemd, Some(name)) if COPIED_SYSTEMD.contains(&name) => Becomes::Copied,
        _ => Becomes::Bound,
    }
}

/// Mounts the command's `/run` over the host's, in the private mount
/// namespace [`super::hide`] entered. An entry that cannot be placed is
/// left out with a warning (the command gets less, not more); an error
/// means the command must not start.
pub(super) fn rebuild(uid: u32, gid: u32) -> anyhow::Result<()> {
    let run = Path::new("/run");
    let host = open_dir(run).context("opening /run")?;
    let meta = host.metadata().context("reading /run")?;
    let options = format!("mode={:o},uid={},gid={},size=64m", meta.mode() & 0o7777, meta.uid(), meta.gid());
    // Onto the directory opened: `/run` may have been swapped for a link.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), fd_path(&host).as_path(), Some("tmpfs"), flags, Some(options.as_str()))
        .context("giving the command a /run of its own")?;
    let cover = super::open_cover(run, &host)?;
    fill(&host, &cover, run, Level::Run);
    own_dir(&cover, OsStr::new("user"), 0o755, (0, 0))
        .and_then(|user| own_dir(&user, OsStr::new(&uid.to_string()), 0o700, (uid, gid)))
        .context("making /run/user/<uid> for the command")?;
    own_dir(&cover, OsStr::new("screen"), 0o1777, (0, 0)).context("making /run/screen for the command")?;
    Ok(())
}

/// Places in `cover` (the command's `dir`) each entry of `host` (the
/// host's `dir`, opened).
fn fill(host: &File, cover: &File, dir: &Path, level: Level) {
    let listing = match std::fs::read_dir(fd_path(host)) {
        Ok(listing) => listing,
        Err(error) => {
            eprintln!("bridle: warning: cannot list {}; the command's is empty: {error}", dir.display());
            return;
        }
    };
    for entry in listing.flatten() {
        let name = entry.file_name();
        if let Err(error) = place(host, cover, dir, &name, level) {
            let path = dir.join(&name);
            eprintln!("bridle: warning: {} is left out of the command's /run: {error:#}", path.display());
        }
    }
}

fn place(host: &File, cover: &File, dir: &Path, name: &OsStr, level: Level) -> anyhow::Result<()> {
    let stat = fstatat(host, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    let owner = (stat.st_uid, stat.st_gid);
    match becomes(level, name, kind) {
        Becomes::Left => {}
        Becomes::Link => {
            let target = readlinkat(host, name)?;
            symlinkat(target.as_os_str(), cover, name)?;
            let (uid, gid) = (Some(Uid::from_raw(owner.0)), Some(Gid::from_raw(owner.1)));
            fchownat(cover, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        }
        Becomes::Bound => {
            // The entry itself is mounted, not its name again: one swapped
            // for a symlink since would mount what the link leads to.
            let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let opened = File::from(openat(host, name, flags, Mode::empty())?);
            let now = opened.metadata()?;
            anyhow::ensure!((now.dev(), now.ino()) == (stat.st_dev, stat.st_ino), "replaced while placed");
            let flags = if kind == SFlag::S_IFDIR {
                mkdirat(cover, name, Mode::from_bits_truncate(0o700))?;
                MsFlags::MS_BIND | MsFlags::MS_REC
            } else {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                drop(openat(cover, name, flags, Mode::empty())?);
                MsFlags::MS_BIND
            };
            let target = fd_path(cover).join(name);
            mount(Some(fd_path(&opened).as_path()), target.as_path(), None::<&str>, flags, None::<&str>)?;
        }
        Becomes::Copied => {
            let opened = open_dir_at(host, name)?;
            let path = dir.join(name);
            let snapshot = Snapshot::of(&opened, &path);
            let made = own_dir(cover, name, stat.st_mode & 0o7777, owner)?;
            snapshot.restore(&made, &path);
        }
        Becomes::Rebuilt => {
            let opened = open_dir_at(host, name)?;
            let made = own_dir(cover, name, stat.st_mode & 0o7777, owner)?;
            fill(&opened, &made, &dir.join(name), Level::Systemd);
        }
    }
    Ok(())
}

/// Makes `name` in `parent` with `mode` and `owner`, and opens it.
fn own_dir(parent: &File, name: &OsStr, mode: u32, owner: (u32, u32)) -> anyhow::Result<File> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700)).with_context(|| format!("making {}", name.display()))?;
    let made = open_dir_at(parent, name)?;
    std::os::unix::fs::fchown(&made, Some(owner.0), Some(owner.1))?;
    // After the owner: the umask took bits off, and a chown may take more.
    made.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(made)
}

fn open_dir(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(path)
}

fn open_dir_at(parent: &File, name: &OsStr) -> anyhow::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(openat(parent, name, flags, Mode::empty())?))
}

/// The path that leads to `file` itself, whatever is mounted over its
/// name since.
fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sockets_and_the_services_directories_are_not_the_hosts() {
        let dir = |level, name: &str| becomes(level, OsStr::new(name), SFlag::S_IFDIR);
        assert_eq!(dir(Level::Run, "lock"), Becomes::Bound);
        assert_eq!(dir(Level::Run, "dbus"), Becomes::Copied);
        assert_eq!(dir(Level::Run, "systemd"), Becomes::Rebuilt);
        assert_eq!(dir(Level::Run, "user"), Becomes::Left);
        assert_eq!(dir(Level::Run, "resolve"), Becomes::Bound);
        assert_eq!(dir(Level::Systemd, "resolve"), Becomes::Copied);
        assert_eq!(dir(Level::Systemd, "journal"), Becomes::Bound);
        assert_eq!(dir(Level::Systemd, "dbus"), Becomes::Bound);
        for level in [Level::Run, Level::Systemd] {
            let name = OsStr::new("snapd.socket");
            assert_eq!(becomes(level, name, SFlag::S_IFSOCK), Becomes::Left);
            assert_eq!(becomes(level, name, SFlag::S_IFIFO), Becomes::Left);
            assert_eq!(becomes(level, name, SFlag::S_IFCHR), Becomes::Left);
            assert_eq!(becomes(level, name, SFlag::S_IFREG), Becomes::Bound);
            assert_eq!(becomes(level, OsStr::new("dbus"), SFlag::S_IFLNK), Becomes::Link);
        }
    }
}
