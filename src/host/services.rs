//! What the guarded command may not reach of the services around it: the
//! Unix sockets of services that act for whoever connects, outside the
//! session's cgroup and so outside Bridle's guard. The command runs as the
//! invoking user, and file permissions let it connect to:
//! - its user's desktop session: the D-Bus session bus and the systemd user
//!   manager in `/run/user/<uid>` (`systemd-run --user curl …`), with
//!   gpg-agent, editor servers (`emacsclient --eval`, `nvim --server`), IDE
//!   IPC, podman and rootless Docker beside them; tmux (`/tmp/tmux-<uid>`:
//!   `tmux new-window 'curl …'`), screen (`/run/screen`), Emacs's and
//!   Neovim's servers where the user has no runtime directory
//!   (`/tmp/emacs<uid>`, `/tmp/nvim.<user>`); the X server and session
//!   manager (`/tmp/.X11-unix`, `/tmp/.ICE-unix`), which take keystrokes for
//!   the user's terminals;
//! - system services that look names up or connect out for any caller, so
//!   that what Bridle never decides leaves the host: systemd-resolved, the
//!   system bus, nscd, Avahi, Tor, CUPS, snapd, journald (see [`run`]).
//!
//! So the command gets a mount namespace of its own with a `/run` of its
//! own ([`run`]: a copy of the host's without a single socket, and an
//! empty `/run/user/<uid>`), and with the user's
//! directories in `/tmp` covered by empty tmpfs mounts, writable as the
//! user's own were: the command's own tmux or D-Bus works there. A missing
//! one is made on the host first, so that a service started later binds
//! under the cover rather than beside it. Paths, symlinks and
//! `/proc/<pid>/root` of a process outside (refused by the Landlock domain,
//! [`super::confine`]) all lead to the command's copies. The mounts come
//! from a more privileged namespace, so a user namespace the command makes
//! cannot unmount them. The rest of the file system is the host's as
//! before.
//!
//! With `[host] private_tmp`, all of `/tmp` is covered instead, and
//! `/var/tmp` too, each by an empty tmpfs of the command's own ([`tmp`]):
//! no socket any process of the user's serves there is in reach (an
//! `ssh-agent`'s, an IDE's). Only root can replace `/tmp` or `/var/tmp`
//! itself, so they need no watch.
//!
//! A cover in `/tmp` lasts as long as the directory it was mounted on: one
//! removed and made again on the host (a tmux server started again after
//! its directory was cleaned up) is the host's new directory in the
//! command's namespace too. So `bridle run` records what each covered
//! directory was when the session started ([`prepare`]) and watches their
//! parents with inotify ([`Covered::watch`]): if one becomes another
//! directory, the session is ended, loudly, as soon as that is seen (a
//! service makes its directory before it binds a socket in it). The
//! command's `/run` needs no watch: it is a file system of its own.
//!
//! Never: follow a symlink to what to cover (a directory swapped for a link
//! would move the cover elsewhere), or let a cover propagate to the host's
//! mounts.

mod copy;
mod mountinfo;
mod run;
mod tmp;

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::Context as _;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use super::warnings::Warnings;

/// How a cover in `/tmp` is owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// `/tmp/tmux-<uid>` and the like: the user's, mode 0700.
    User,
    /// `/tmp/.X11-unix` and the like: root's, sticky and world-writable.
    Shared,
}

/// The directories in `/tmp` to cover for `uid` (named `user`), whether
/// they exist or not.
fn candidates(uid: u32, user: &str) -> Vec<(PathBuf, Owner)> {
    vec![
        (PathBuf::from(format!("/tmp/tmux-{uid}")), Owner::User),
        // Emacs's and Neovim's servers where no XDG_RUNTIME_DIR is set.
        (PathBuf::from(format!("/tmp/emacs{uid}")), Owner::User),
        (PathBuf::from(format!("/tmp/nvim.{user}")), Owner::User),
        (PathBuf::from("/tmp/.X11-unix"), Owner::Shared),
        (PathBuf::from("/tmp/.ICE-unix"), Owner::Shared),
    ]
}

/// What of the host the command sees beyond what is always hidden (the
/// `[host]` config).
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    /// Directories of `/run` that are the host's (`live_run_dirs`).
    pub live_run: &'a [PathBuf],
    /// A `/tmp` and `/var/tmp` of its own rather than the host's
    /// (`private_tmp`).
    pub private_tmp: bool,
}

/// Enters a mount namespace of this process's own (inherited by the exec
/// and its children), its cgroup file systems read-only
/// ([`cgroups_read_only`]), with a `/run` of its own and, in `/tmp`, either the
/// user's directories covered or (`view.private_tmp`) all of it, and of
/// `/var/tmp`; `user` is
/// the name of `uid`. A user's directory in `/tmp` that does not exist yet
/// is made first, on the host, as its service would make it. Needs
/// `CAP_SYS_ADMIN`: call it before dropping root.
pub fn hide(uid: u32, gid: u32, user: &str, view: HostView<'_>, warnings: &Warnings) -> anyhow::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("entering a mount namespace of the command's own")?;
    // Private from here down: nothing mounted below reaches the host's
    // namespace (on systemd hosts `/` is shared by default).
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making the command's mounts private")?;
    cgroups_read_only()?;
    // The user's groups from here on (as `drop_to` sets them again): the
    // copy of /run asks the kernel what the user may read. (Root, when it
    // is the target, keeps its own.)
    if uid != 0 {
        nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(gid)]).context("clearing supplementary groups")?;
    }
    run::rebuild(uid, gid, view.live_run, warnings)?;
    let mut covered = vec![PathBuf::from("/run")];
    if view.private_tmp {
        covered.extend(tmp::own(uid, gid, warnings)?);
    } else {
        covered.extend(cover_in_tmp(uid, gid, user, warnings)?);
    }
    // A working directory inside a covered one would still reach what is
    // under the cover by relative paths: resolve it again, through them.
    if let Ok(cwd) = std::env::current_dir()
        && covered.iter().any(|dir| cwd.starts_with(dir))
        && std::env::set_current_dir(&cwd).is_err()
    {
        std::env::set_current_dir("/").context("leaving a covered working directory")?;
        warnings
            .warn(format_args!("the working directory {} is covered from the command; it starts in /", cwd.display()));
    }
    Ok(())
}

/// Makes every cgroup file system read-only for the command. Where the
/// user owns cgroups (a desktop's systemd user slices, in one of which
/// `bridle run` itself may have been started), the command could move
/// Bridle into a cgroup of its own and kill or freeze it (`cgroup.kill`,
/// `cgroup.freeze`: cgroup v2 asks who may write those files, not who
/// owns the processes moved), or the user's other programs. Its own
/// cgroup is root's, and nothing it runs needs to write cgroups.
fn cgroups_read_only() -> anyhow::Result<()> {
    let mounts = mountinfo::read().context("reading the command's mounts")?;
    for cgroups in mounts.iter().filter(|mount| mount.kind == b"cgroup2" || mount.kind == b"cgroup") {
        let point = cgroups.point.as_path();
        // A remount sets every flag of the bind: keep the ones it has.
        let had = nix::sys::statvfs::statvfs(point).map(|fs| kept_flags(fs.flags())).unwrap_or(MsFlags::empty());
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | had;
        mount(None::<&str>, point, None::<&str>, flags, None::<&str>).with_context(|| {
            format!("making the cgroup file system at {} read-only for the command", point.display())
        })?;
    }
    Ok(())
}

/// The restrictions (`nosuid`, `nodev`, `noexec`) a mount has, as flags a
/// mount made over it, or a remount of it, keeps: a remount sets every
/// flag anew, and a home mounted `noexec` must stay so under a cover.
pub(super) fn kept_flags(had: nix::sys::statvfs::FsFlags) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let mut kept = MsFlags::empty();
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if had.contains(has) {
            kept |= keep;
        }
    }
    kept
}

/// Covers the user's directories in `/tmp` ([`candidates`]), made first
/// where missing; returns those covered.
fn cover_in_tmp(uid: u32, gid: u32, user: &str, warnings: &Warnings) -> anyhow::Result<Vec<PathBuf>> {
    let mut covered = Vec::new();
    for (dir, owner) in candidates(uid, user) {
        let Some(opened) = open_or_make(&dir, owner, uid, gid)? else {
            if std::fs::symlink_metadata(&dir).is_ok() {
                // Not what a service makes: say so, since what may be
                // served there is not covered.
                warnings.warn(format_args!("{} is not a directory; it is not covered from the command", dir.display()));
            }
            continue;
        };
        let options = match owner {
            Owner::User => format!("mode=0700,uid={uid},gid={gid},size=64m"),
            Owner::Shared => "mode=1777,size=16m".to_owned(),
        };
        // Onto the directory opened, not onto its path again: the path may
        // have been swapped for a symlink since.
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(Some("tmpfs"), fd_path(&opened).as_path(), Some("tmpfs"), flags, Some(options.as_str()))
            .with_context(|| format!("covering {} from the command", dir.display()))?;
        covered.push(dir);
    }
    Ok(covered)
}

/// The covered directories as the session found them on the host, each
/// held open (`O_PATH`) so that its inode number cannot be reused for
/// another; `None` for one that was missing.
#[derive(Debug)]
pub struct Covered {
    dirs: Vec<(PathBuf, Option<File>)>,
}

/// Before the command starts: makes the user's directories in `/tmp` that
/// are missing (as [`hide`] would, so that the record starts from them)
/// and records what every one of them is.
pub fn prepare(uid: u32, gid: u32, user: &str, warnings: &Warnings) -> anyhow::Result<Covered> {
    let mut dirs = Vec::new();
    for (dir, owner) in candidates(uid, user) {
        open_or_make(&dir, owner, uid, gid)?;
        let held = hold(&dir).ok();
        let expected = if owner == Owner::User { uid } else { 0 };
        if let Some(meta) = held.as_ref().and_then(|held| held.metadata().ok())
            && meta.uid() != expected
        {
            // Someone else's directory where the user's service would make
            // its own: covered all the same, and watched.
            warnings.warn(format_args!(
                "{} belongs to uid {}, not {expected}; it is covered from the command, and a change to it ends the \
                 session",
                dir.display(),
                meta.uid()
            ));
        }
        dirs.push((dir, held));
    }
    Ok(Covered { dirs })
}

/// How often the watch looks again even without an event (a parent that
/// was missing, an event queue that overflowed, no inotify at all).
const WATCH_PERIOD_MS: u16 = 250;

impl Covered {
    /// The first covered directory whose path now leads to another
    /// directory than the one recorded (one removed leads nowhere, and
    /// exposes nothing until one is made there).
    pub fn changed(&self) -> Option<&Path> {
        self.dirs.iter().find(|(dir, held)| another(dir, held.as_ref())).map(|(dir, _)| dir.as_path())
    }

    /// The first covered directory that `events` say was made in its parent.
    fn made(
        &self,
        watches: &[(nix::sys::inotify::WatchDescriptor, PathBuf)],
        events: &[nix::sys::inotify::InotifyEvent],
    ) -> Option<PathBuf> {
        events.iter().find_map(|event| {
            let (_, parent) = watches.iter().find(|(watch, _)| *watch == event.wd)?;
            let path = parent.join(event.name.as_ref()?);
            self.dirs.iter().any(|(dir, _)| *dir == path).then_some(path)
        })
    }

    /// Watches the covered directories' parents until the returned
    /// [`Watch`] drops. Once one of the directories is made there (an
    /// inotify event) or is found another than recorded (looked at every
    /// [`WATCH_PERIOD_MS`], and after each batch of events, which may have
    /// overflowed), calls `ended` with it, and again every period after
    /// (what it kills may not have started yet). Without inotify it warns
    /// and looks every period only.
    pub fn watch(self, warnings: &Warnings, mut ended: impl FnMut(&Path) + Send + 'static) -> anyhow::Result<Watch> {
        use std::os::fd::AsFd as _;
        let inotify = self.inotify().map_err(|error| {
            warnings.warn(format_args!("{error:#}; covered directories are looked at every {WATCH_PERIOD_MS} ms only"));
        });
        let wakes_on = match &inotify {
            Ok((inotify, _)) => Some(inotify.as_fd().try_clone_to_owned().context("watching the covers' inotify")?),
            Err(()) => None,
        };
        let mut found: Option<PathBuf> = None;
        Watch::every(WATCH_PERIOD_MS, "bridle-covers", wakes_on, move || {
            if let Ok((inotify, watches)) = &inotify {
                while let Ok(events) = inotify.read_events() {
                    if events.is_empty() {
                        break;
                    }
                    found = found.take().or_else(|| self.made(watches, &events));
                }
            }
            found = found.take().or_else(|| self.changed().map(Path::to_path_buf));
            if let Some(dir) = &found {
                ended(dir);
            }
        })
    }

    /// inotify on each covered directory's parent that exists.
    fn inotify(
        &self,
    ) -> anyhow::Result<(nix::sys::inotify::Inotify, Vec<(nix::sys::inotify::WatchDescriptor, PathBuf)>)> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).context("no inotify")?;
        let mut parents: Vec<&Path> = self.dirs.iter().filter_map(|(dir, _)| dir.parent()).collect();
        parents.sort();
        parents.dedup();
        let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR;
        let mut watches = Vec::new();
        for parent in parents.into_iter().filter(|parent| parent.is_dir()) {
            let watch =
                inotify.add_watch(parent, mask).with_context(|| format!("cannot watch {}", parent.display()))?;
            watches.push((watch, parent.to_path_buf()));
        }
        Ok((inotify, watches))
    }
}

/// Whether `dir` now leads to another file than `held` (the directory
/// recorded there, or nothing).
fn another(dir: &Path, held: Option<&File>) -> bool {
    let Ok(now) = std::fs::symlink_metadata(dir) else { return false };
    match held.map(File::metadata) {
        None => true,
        Some(Ok(was)) => (was.dev(), was.ino()) != (now.dev(), now.ino()),
        Some(Err(_)) => true,
    }
}

/// A running watch of the covered directories; stopped (and joined, at
/// once) when dropped.
#[derive(Debug)]
pub struct Watch {
    wake: Option<std::os::unix::net::UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Calls `tick` every `period_ms`, and as soon as `wakes_on` (an
    /// inotify) is readable, on a thread of its own named `name`, until the
    /// watch drops.
    pub(super) fn every(
        period_ms: u16,
        name: &str,
        wakes_on: Option<std::os::fd::OwnedFd>,
        mut tick: impl FnMut() + Send + 'static,
    ) -> anyhow::Result<Watch> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd as _;
        let (wake, woken) = std::os::unix::net::UnixStream::pair().context("making the watch's stop pipe")?;
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            loop {
                let mut fds = vec![PollFd::new(woken.as_fd(), PollFlags::POLLIN)];
                if let Some(fd) = &wakes_on {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
                let _ = poll(&mut fds, PollTimeout::from(period_ms));
                // The other end closed: the session is over.
                if fds[0].any().unwrap_or(true) {
                    return;
                }
                tick();
            }
        });
        let thread = thread.with_context(|| format!("starting {name}"))?;
        Ok(Watch { wake: Some(wake), thread: Some(thread) })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `dir` opened without following a symlink, made first if missing (the
/// user's own 0700, shared ones 1777, as their services make them); `None`
/// when it is a symlink or not a directory (nothing a service would use).
fn open_or_make(dir: &Path, owner: Owner, uid: u32, gid: u32) -> anyhow::Result<Option<File>> {
    let made = match std::fs::symlink_metadata(dir) {
        Ok(_) => false,
        Err(error) if error.kind() == ErrorKind::NotFound => match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => true,
            Err(error) if error.kind() == ErrorKind::AlreadyExists => false,
            Err(error) => return Err(error).with_context(|| format!("creating {}", dir.display())),
        },
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    let opened = match open_dir(dir) {
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

/// The cover just mounted on `dir`, opened: a tmpfs, and not the directory
/// `under` it (which on `/run` is a tmpfs too). Root writes into it, so
/// never anywhere else.
fn open_cover(dir: &Path, under: &File) -> anyhow::Result<File> {
    let cover = open_dir(dir).context("opening the cover")?;
    let on_tmpfs = nix::sys::statfs::fstatfs(&cover).map(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let other_fs = match (cover.metadata(), under.metadata()) {
        (Ok(cover), Ok(under)) => cover.dev() != under.dev(),
        _ => false,
    };
    anyhow::ensure!(on_tmpfs.unwrap_or(false) && other_fs, "{} does not lead to the cover", dir.display());
    Ok(cover)
}

/// The directory at `dir`, opened for reading, never through a symlink.
fn open_dir(dir: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir)
}

/// What is at `path` itself, held without being opened (`O_PATH`) and
/// never through a last symlink: its identity, and (by [`fd_path`]) a way
/// back to it whatever is mounted over its name later.
pub(super) fn hold(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path)
}

/// The id of the mount `file` is on (`mnt_id` in its fdinfo): unlike its
/// `st_dev`, always the one mountinfo shows (btrfs subvolumes differ).
pub(super) fn mount_id(file: &File) -> Option<u64> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    fdinfo.lines().find_map(|line| line.strip_prefix("mnt_id:")).and_then(|id| id.trim().parse().ok())
}

/// The path that leads to `file` itself, whatever is mounted over its
/// name since.
pub(super) fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_missing_directory_is_made_as_its_service_would_and_a_symlink_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = dir.path().join("tmux-65534");
        assert!(open_or_make(&mine, Owner::User, 65534, 65534).expect("made").is_some());
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
        assert!(open_or_make(&link, Owner::Shared, 0, 0).expect("no error").is_none());
    }

    #[test]
    fn a_covered_directory_made_again_ends_the_watch_and_an_unrelated_one_does_not() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("nscd");
        std::fs::create_dir(&dir).expect("mkdir");
        let late = parent.path().join("avahi-daemon");
        let record = || {
            let held = |path: &Path| hold(path).ok();
            Covered { dirs: vec![(dir.clone(), held(&dir)), (late.clone(), held(&late))] }
        };
        let covered = record();
        assert_eq!(covered.changed(), None);
        let (tx, rx) = std::sync::mpsc::channel();
        let watch = record().watch(&Warnings::said_only(), move |dir| {
            let _ = tx.send(dir.to_path_buf());
        });
        let watch = watch.expect("watching");
        std::fs::create_dir(parent.path().join("other")).expect("mkdir");
        std::fs::remove_dir(&dir).expect("rmdir");
        let period = std::time::Duration::from_millis(u64::from(WATCH_PERIOD_MS));
        assert!(rx.recv_timeout(3 * period).is_err(), "an unrelated directory, or one removed, ends nothing");
        assert_eq!(covered.changed(), None);
        std::fs::create_dir(&dir).expect("made again");
        assert_eq!(rx.recv_timeout(20 * period).expect("seen"), dir);
        // Said again every period until the watch stops, at once.
        assert_eq!(rx.recv_timeout(20 * period).expect("again"), dir);
        let stopping = std::time::Instant::now();
        drop(watch);
        assert!(stopping.elapsed() < period, "stopped at once");
        // The record alone tells too: the inode held cannot be reused.
        assert_eq!(covered.changed(), Some(dir.as_path()));
        // A directory missing at the start and made later counts as well.
        std::fs::create_dir(&late).expect("mkdir");
        assert_eq!(record().changed(), None);
        assert_eq!(Covered { dirs: vec![(late.clone(), None)] }.changed(), Some(late.as_path()));
    }
}
