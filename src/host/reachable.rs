//! The sockets served outside the session that the guarded command can
//! still connect to, said before it starts. What is served there acts for
//! the command outside Bridle's guard (an ssh `ControlMaster` runs commands
//! on its host, gpg's dirmngr fetches keys, an IDE's IPC runs what it is
//! told), and no kernel hook this side of BPF LSM or Landlock's
//! `RESOLVE_UNIX` can decide a connect by what it reaches: a path is
//! whatever its symlinks make it. So by default the command is not
//! stopped, but the person running it is told, by name, with the ways out
//! (`--user`, `[host] private_tmp` for those in `/tmp`, `[host]
//! cover_sockets`), and the session's audit log keeps it
//! ([`super::warnings`]). With `[host] cover_sockets`, [`cover`] puts a
//! mount over each socket found (on the socket itself, so every path to
//! it is covered) before the report, which then names none of them; and
//! the session covers those served later within a period ([`later`]).
//!
//! Asked in the command's own mount namespace (its covers in place) with
//! its user's file system ids, just before it starts: a socket it cannot
//! see or may not open is not named.
//!
//! Never: connect to what is found, or (without `cover_sockets`) stop the
//! command for it.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;

use super::warnings::Warnings;

mod diag;
pub mod later;

/// How many sockets are named before the rest are counted.
const NAMED: usize = 8;

/// A Unix socket's `Flags` in `/proc/net/unix`: listening (`__SO_ACCEPTCON`).
const LISTENING: u32 = 0x10000;

/// `Type` in `/proc/net/unix`: a datagram socket, served by whoever bound
/// it (syslog) while it is not connected (`St` 1) to another.
const DATAGRAM: u32 = 2;
const UNCONNECTED: u32 = 1;

/// The paths of the sockets bound in this network namespace that take
/// connections (listening) or datagrams (unconnected), each with its
/// socket's inode (another socket bound at the same path has another),
/// from `/proc/net/unix`'s bytes: `Num RefCount Protocol Flags Type St
/// Inode`, then the path after one space, as bound (any bytes but a
/// newline).
fn served_sockets(table: &[u8]) -> BTreeSet<(PathBuf, u64)> {
    let mut paths = BTreeSet::new();
    for line in table.split(|byte| *byte == b'\n').skip(1) {
        let mut fields = Vec::new();
        let mut rest = line;
        while fields.len() < 7 {
            rest = rest.trim_ascii_start();
            let end = rest.iter().position(u8::is_ascii_whitespace).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let [_, _, _, flags, kind, state, inode] = fields.as_slice() else { continue };
        let number = |field: &[u8]| std::str::from_utf8(field).ok().and_then(|text| u32::from_str_radix(text, 16).ok());
        let (Some(flags), Some(kind), Some(state)) = (number(flags), number(kind), number(state)) else { continue };
        let inode = std::str::from_utf8(inode).ok().and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
        let Some(path) = rest.strip_prefix(b" ").filter(|path| path.first() == Some(&b'/')) else { continue };
        if flags & LISTENING != 0 || (kind == DATAGRAM && state == UNCONNECTED) {
            paths.insert((PathBuf::from(std::ffi::OsStr::from_bytes(path)), inode));
        }
    }
    paths
}

/// The directories whose sockets are no news: Bridle's own for the
/// command, and the `live_run` ones of `/run` the config lets it reach.
pub fn allowed(live_run: &[PathBuf]) -> Vec<PathBuf> {
    let mut allowed: Vec<PathBuf> = live_run.iter().map(|dir| Path::new("/run").join(dir)).collect();
    allowed.push(PathBuf::from(bridle_mcp_gateway::report::SOCKET_DIR));
    allowed
}

/// Warns which sockets served outside the session `uid` (whose
/// one group is `gid`) can open here, leaving out those under `allowed`
/// (Bridle's own, the configured live directories).
pub fn report(uid: u32, gid: u32, allowed: &[PathBuf], warnings: &Warnings) {
    let reachable = reachable(uid, gid, allowed);
    if reachable.is_empty() {
        return;
    }
    let named = names(&reachable);
    // The way out for sockets in /tmp (an ssh-agent's, an IDE's) costs
    // less than another account.
    let in_tmp = reachable.iter().any(|path| path.starts_with("/tmp"));
    warnings.warn(format_args!(
        "the command can connect to {} socket(s) served outside the session, and what serves them acts for it \
         unguarded: {}. For an agent you do not trust, run it as an account of its own (--user) that those sockets \
         do not let in{}, or cover them ([host] cover_sockets = true)",
        reachable.len(),
        named,
        if in_tmp { ", give it a /tmp of its own ([host] private_tmp = true)" } else { "" }
    ));
}

/// The sockets served outside the session that `uid` (whose one group is
/// `gid`) can open here, leaving out those under `allowed`.
fn reachable(uid: u32, gid: u32, allowed: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(table) = std::fs::read("/proc/net/unix") else { return Vec::new() };
    let may = |path: &PathBuf| super::access::user_may(uid, gid, nix::fcntl::AT_FDCWD, path, AccessFlags::W_OK, true);
    socket_files(&table, bound_files().as_ref(), allowed, &BTreeSet::new()).into_iter().filter(may).collect()
}

/// The socket files of the sockets `table` (`/proc/net/unix`) lists as
/// served, outside `allowed`, but for those whose inode is in `own` (the
/// command's own sockets, [`later`]). `bound` gives each socket's file
/// ([`diag::bound_files`], read after the table), where it knows. A socket whose bound name
/// leads elsewhere was renamed or hard-linked away: ssh binds its
/// `ControlMaster` under a temporary name, links it to the `ControlPath`
/// and removes the first, so its file is looked for among that name's
/// directory's entries. Without `bound` (a kernel that cannot tell), every
/// socket file in that directory stands for it (one that no longer serves
/// anything costs nothing to name or cover), but a cover of Bridle's at the
/// name, which says the socket there is not renamed.
fn socket_files(
    table: &[u8],
    bound: Option<&HashMap<u64, u32>>,
    allowed: &[PathBuf],
    own: &BTreeSet<u64>,
) -> Vec<PathBuf> {
    let allowed = Allowed::new(allowed);
    let socket_ino = |path: &Path| {
        std::fs::symlink_metadata(path).ok().filter(|meta| meta.file_type().is_socket()).map(|meta| meta.ino())
    };
    // A cover of Bridle's: `/dev/null` itself, which the command cannot
    // make (no device nodes, and a hard link cannot leave /dev's file
    // system); a symlink to it is not one.
    let null = std::fs::metadata("/dev/null").ok().map(|null| null.rdev());
    let is_cover = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|meta| is_null(&meta, null));
    let mut files = BTreeSet::new();
    for (path, inode) in served_sockets(table).into_iter().filter(|(_, inode)| !own.contains(inode)) {
        let Some(parent) = path.parent() else { continue };
        if allowed.holds(&path) {
            continue;
        }
        // Which file is the socket's: that very one, or (not knowing) any.
        // One in the table but not in the dump was closed since, or was
        // skipped by a dump that sockets closing meanwhile shifted (the
        // kernel resumes each batch by position): not knowing, guess wide.
        let file = bound.and_then(|bound| bound.get(&inode)).copied();
        let is_it = |ino: u64| file.is_none_or(|bound| diag::is(bound, ino));
        match std::fs::metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() && is_it(meta.ino()) => {
                files.insert(path);
                continue;
            }
            // Covered: the socket is not renamed, and what else is in its
            // directory is not it (where its file is known, another link to
            // it there is looked for all the same). Anything else at the
            // name (a file made where a renamed socket was bound) does not
            // stop the search.
            Ok(_) if file.is_none() && is_cover(&path) => continue,
            _ => {}
        }
        let Ok(entries) = std::fs::read_dir(parent) else { continue };
        let entries = entries.flatten().map(|entry| entry.path());
        files.extend(entries.filter(|entry| socket_ino(entry).is_some_and(is_it)));
    }
    files.into_iter().collect()
}

/// Each bound socket's file ([`diag::bound_files`]), or `None` where the
/// kernel cannot tell (then [`socket_files`] guesses wider).
fn bound_files() -> Option<HashMap<u64, u32>> {
    diag::bound_files()
        .inspect_err(
            |error| tracing::debug!(%error, "no socket diagnostics: a renamed socket is looked for by directory"),
        )
        .ok()
}

/// The directories whose sockets are left alone, compared as the command
/// sees them (`/var/run/postgresql` is `/run/postgresql`).
struct Allowed(Vec<PathBuf>);

impl Allowed {
    fn new(dirs: &[PathBuf]) -> Allowed {
        Allowed(dirs.iter().map(|dir| canonical(dir)).collect())
    }

    /// Whether the socket bound at `path` is in one of them.
    fn holds(&self, path: &Path) -> bool {
        let Some(parent) = path.parent() else { return false };
        let parent = canonical(parent);
        self.0.iter().any(|dir| parent.starts_with(dir))
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `meta` is `/dev/null`'s device (`null`, its `st_rdev`): what a
/// cover of Bridle's is.
fn is_null(meta: &std::fs::Metadata, null: Option<u64>) -> bool {
    meta.file_type().is_char_device() && Some(meta.rdev()) == null
}

/// The first [`NAMED`] paths, then how many more.
fn names(paths: &[PathBuf]) -> String {
    let mut named: Vec<String> = paths.iter().take(NAMED).map(|path| path.display().to_string()).collect();
    if paths.len() > NAMED {
        named.push(format!("and {} more", paths.len() - NAMED));
    }
    named.join(", ")
}

/// `[host] cover_sockets`: overmounts the file of every socket served
/// outside `allowed` ([`socket_files`]: whoever may open it now) with
/// `/dev/null`, read-only and `nodev`, in the command's mount namespace: a
/// connect there finds no socket (`ECONNREFUSED`), and the device cannot
/// be opened. The mount goes onto the socket itself (through a descriptor
/// opened without following a last symlink, checked to be a socket), so
/// the paths and symlinks that lead to it there are covered. A socket
/// bound after this is covered by [`later`]; another hard link to one
/// outside the directory it was bound in is not. An error but a socket
/// gone meanwhile refuses to start the command.
pub fn cover(allowed: &[PathBuf], warnings: &Warnings) -> anyhow::Result<()> {
    let covered = cover_served(allowed)?;
    if !covered.is_empty() {
        warnings.warn(format_args!(
            "{} socket(s) served outside the session are covered for the command ([host] cover_sockets): {}",
            covered.len(),
            names(&covered)
        ));
    }
    Ok(())
}

/// What [`cover`] does, in this process's mount namespace: returns the
/// sockets it covered.
fn cover_served(allowed: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context as _;
    let table = std::fs::read("/proc/net/unix").context("reading /proc/net/unix for the sockets to cover")?;
    let bound = bound_files();
    cover_files(socket_files(&table, bound.as_ref(), allowed, &BTreeSet::new()).into_iter().map(|path| (path, None)))
}

/// Covers each of `files` that is a socket in this process's mount
/// namespace and, where an identity (`st_dev`, `st_ino`) is given, that
/// very file: a path that leads elsewhere here than where it was listed
/// (the command's own copy of a directory) is left alone. One covered
/// already is a `/dev/null` by now, not a socket, and is left alone too:
/// so this is also how sockets served since are covered ([`later`]).
/// Returns those it covered.
fn cover_files(files: impl IntoIterator<Item = (PathBuf, Option<(u64, u64)>)>) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::{Context as _, bail};
    use nix::mount::{MsFlags, mount};

    let null = std::fs::metadata("/dev/null").context("/dev/null")?.rdev();
    // Every one, not only those the command's user may open now: their
    // owner could open them up, and a cover where none was needed costs
    // nothing.
    let mut covered = Vec::new();
    for (path, identity) in files {
        let socket = match super::services::hold(&path) {
            Ok(socket) => socket,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("opening {} to cover it", path.display())),
        };
        // Swapped for something else since it was listed: nothing to cover
        // (and the report after this names it if it is a socket again).
        let is_it = |meta: &std::fs::Metadata| {
            meta.file_type().is_socket() && identity.is_none_or(|identity| identity == (meta.dev(), meta.ino()))
        };
        if !socket.metadata().is_ok_and(|meta| is_it(&meta)) {
            continue;
        }
        let at = super::services::fd_path(&socket);
        mount(Some("/dev/null"), at.as_path(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .with_context(|| format!("covering {}", path.display()))?;
        let cover = super::services::hold(&path).with_context(|| format!("opening the cover of {}", path.display()))?;
        // The path may lead elsewhere by now (the user's processes change
        // their own directories): seal only the cover just made.
        if !cover.metadata().is_ok_and(|meta| is_null(&meta, Some(null))) {
            bail!("{} changed while it was covered", path.display());
        }
        let sealed = MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        mount(None::<&str>, super::services::fd_path(&cover).as_path(), None::<&str>, sealed, None::<&str>)
            .with_context(|| format!("sealing the cover of {}", path.display()))?;
        covered.push(path);
    }
    Ok(covered)
}

/// A socket bound at `first`, linked to `to` and `first` removed, as ssh
/// makes a `ControlMaster`'s.
#[cfg(test)]
fn bound_then_renamed(first: &Path, to: &Path) -> std::os::unix::net::UnixListener {
    let listener = std::os::unix::net::UnixListener::bind(first).expect("bind");
    std::fs::hard_link(first, to).expect("link");
    std::fs::remove_file(first).expect("unlink");
    listener
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ssh binds a `ControlMaster` at a first name, links it to the
    /// `ControlPath` and removes the first: the table names a path that is
    /// gone, or (made again by the command) not the socket. Its file is
    /// found in that directory by its inode, and nothing else there is
    /// taken for it (the command's own socket beside it); not knowing the
    /// inode, every socket file there stands for it.
    #[test]
    fn a_renamed_socket_is_found_in_its_directory_whatever_stands_at_its_first_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, control) = (dir.path().join("cm.Xq3f"), dir.path().join("cm-git@host:22"));
        let _master = bound_then_renamed(&first, &control);
        let own = dir.path().join("own.sock");
        let _own = std::os::unix::net::UnixListener::bind(&own).expect("bind");
        let table = format!(
            "Num RefCount Protocol Flags Type St Inode Path\n\
             0000000000000000: 00000002 00000000 00010000 0001 01 4242 {}\n",
            first.display()
        );
        let ino = std::fs::metadata(&control).expect("control").ino() as u32;
        let bound = HashMap::from([(4242, ino)]);
        let none = BTreeSet::new();
        assert_eq!(socket_files(table.as_bytes(), Some(&bound), &[], &none), std::slice::from_ref(&control));
        assert_eq!(socket_files(table.as_bytes(), None, &[], &none), [control.clone(), own.clone()]);
        std::fs::write(&first, "planted").expect("a file at the first name");
        assert_eq!(socket_files(table.as_bytes(), Some(&bound), &[], &none), std::slice::from_ref(&control));
        assert_eq!(socket_files(table.as_bytes(), None, &[], &none), [control.clone(), own]);
        // Not in the dump (closed since, or skipped): every socket there.
        assert_eq!(socket_files(table.as_bytes(), Some(&HashMap::new()), &[], &none).len(), 2);
        // The command's own socket, and one in an allowed directory: left.
        assert!(socket_files(table.as_bytes(), Some(&bound), &[], &BTreeSet::from([4242])).is_empty());
        assert!(socket_files(table.as_bytes(), Some(&bound), &[dir.path().to_path_buf()], &none).is_empty());
    }

    #[test]
    fn only_bound_paths_that_take_connections_or_datagrams_are_served() {
        let table = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 20921 /home/u/.ssh/cm-git@host:22\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 20922 /home/u/.ssh/cm-git@host:22\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 11111 /run/systemd/journal/dev-log\n\
            0000000000000000: 00000002 00000000 00000000 0002 03 11112 /tmp/a-client.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 22222 @/tmp/.X11-unix/X0\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 33333\n\
            0000000000000000: 00000002 00000000 00010000 0005 01   444 /tmp/a  dir/seq.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 55555 /tmp/\xff.sock\n\
            garbage\n";
        let served = served_sockets(table);
        assert!(served.contains(&(PathBuf::from("/home/u/.ssh/cm-git@host:22"), 20921)), "{served:?}");
        let paths: Vec<PathBuf> = served.into_iter().map(|(path, _)| path).collect();
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff.sock"));
        let expected = ["/home/u/.ssh/cm-git@host:22", "/run/systemd/journal/dev-log", "/tmp/a  dir/seq.sock"];
        let mut expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
        expected.push(odd);
        expected.sort();
        assert_eq!(paths, expected);
    }
}
