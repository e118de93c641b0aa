//! The command's own `/run`: a tmpfs mounted over the host's, holding a
//! copy of what the host's held when the session started ([`super::copy`])
//! without a single socket, so that no service that acts for whoever
//! connects is in reach:
//! - the system bus (`dbus`: systemd-resolved's `resolve1`, Avahi,
//!   NetworkManager), systemd-resolved's Varlink API (`systemd/resolve`),
//!   nscd, Avahi, Tor's SOCKS socket, CUPS, snapd (which sends store
//!   searches out for any user), userdb and nslcd (lookups that may go to
//!   LDAP), journald (which may forward to a remote syslog) and Docker:
//!   they look names up or connect out, and what they send Bridle never
//!   decides;
//! - regular files and symlinks stay (`/etc/resolv.conf` often links to
//!   `systemd/resolve/stub-resolv.conf`), as snapshots;
//! - `user` holds only the user's own empty `<uid>`, and `screen` is empty.
//!
//! Directories that must stay live are bind mounts of the host's, sockets
//! and all: `lock`, Bridle's MCP report sockets, and those the config
//! names (`[host] live_run_dirs`, e.g. a local PostgreSQL's).
//!
//! Nothing of the copy depends on the host's `/run` staying as it was: a
//! service that starts later, or restarts with its runtime directory,
//! makes a socket the command never sees.
//!
//! Never: leave a file descriptor of the host's `/run` open across the
//! exec, or bind what the config did not name.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::mount::{MsFlags, mount};

use super::copy::{Copier, own_dir};
use super::fd_path;
use crate::host::warnings::Warnings;

/// Directories of `/run` always bound, not copied: lock files are shared
/// with the host, and the session's MCP report socket is made there while
/// the command runs.
const LIVE: [&str; 2] = ["lock", "bridle-mcp"];

/// Mounts the command's `/run` over the host's, in the private mount
/// namespace [`super::hide`] entered; `live` names more directories (paths
/// relative to `/run`) to bind. An entry that cannot be placed is left
/// out with a warning (the command gets less, not more); an error means
/// the command must not start.
pub(super) fn rebuild(uid: u32, gid: u32, live: &[PathBuf], warnings: &Warnings) -> anyhow::Result<()> {
    let run = Path::new("/run");
    let host = super::open_dir(run).context("opening /run")?;
    let meta = host.metadata().context("reading /run")?;
    let options = format!("mode={:o},uid={},gid={},size=64m", meta.mode() & 0o7777, meta.uid(), meta.gid());
    // Onto the directory opened: `/run` may have been swapped for a link.
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), fd_path(&host).as_path(), Some("tmpfs"), flags, Some(options.as_str()))
        .context("giving the command a /run of its own")?;
    let cover = super::open_cover(run, &host)?;
    let named = live;
    let live: Vec<PathBuf> = LIVE.iter().map(PathBuf::from).chain(named.iter().cloned()).collect();
    let mut copier = Copier::new(uid, gid, run, &live, warnings);
    copier.tree(&host, &cover, run, &["user", "screen"], 0);
    copier.finish();
    let bound = |dir: &PathBuf| copier.bound.iter().any(|bound| dir.starts_with(bound));
    for dir in named.iter().filter(|dir| !bound(dir)) {
        warnings.warn(format_args!(
            "/run/{} ([host] live_run_dirs) is not a directory the command's user can reach; nothing is bound there",
            dir.display()
        ));
    }
    own_dir(&cover, OsStr::new("user"), 0o755, (0, 0))
        .and_then(|user| own_dir(&user, OsStr::new(&uid.to_string()), 0o700, (uid, gid)))
        .context("making /run/user/<uid> for the command")?;
    own_dir(&cover, OsStr::new("screen"), 0o1777, (0, 0)).context("making /run/screen for the command")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridles_report_sockets_stay_live() {
        let dir = Path::new(bridle_mcp_gateway::report::SOCKET_DIR);
        assert!(LIVE.iter().any(|live| Path::new("/run").join(live) == dir), "{}", dir.display());
    }
}
