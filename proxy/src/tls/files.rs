//! The few filesystem steps the CA needs, each done so a crash or a
//! concurrent reader never sees a half-written file and a private key is
//! never readable by anyone else, not even for an instant.
//!
//! Must never: create a secret with loose permissions and tighten it later,
//! follow a pre-planted temp file (temp files are `create_new`), or leave a
//! temp file behind on error.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::error::TlsError;

/// Mode of the CA directory: others must be able to read the trust bundle in it.
const DIR_MODE: u32 = 0o755;

/// Creates `dir` (and missing parents) if it does not exist, mode 0755, and
/// refuses a directory others could write to (they could swap the CA).
pub(super) fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    let create_error = |source| TlsError::CreateDir { path: dir.to_owned(), source };
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(create_error)?;
        // The umask may have narrowed it; guarded users need to traverse it.
        fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(create_error)?;
    }
    let mode = fs::metadata(dir).map_err(create_error)?.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TlsError::DirPermissions { path: dir.to_owned(), mode });
    }
    Ok(())
}

/// An exclusive lock on `dir/.lock`, held until dropped: serializes the
/// create-or-load and rotate of two Bridles starting at once, which would
/// otherwise each make a CA and leave one of them holding the wrong one.
pub(super) fn lock(dir: &Path) -> Result<Flock<File>, TlsError> {
    let path = dir.join(".lock");
    let lock_error = |source| TlsError::Lock { path: path.clone(), source };
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(lock_error)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| lock_error(errno.into()))
}

/// Reads `path` whole.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Replaces `path` with `bytes`, mode `mode`: written to a temp file in the
/// same directory that is created with that mode, synced, then renamed over
/// `path`, so readers see the old file or the new one, never a mix.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let temp = temp_path(path);
    let result = write_new(&temp, bytes, mode).and_then(|()| fs::rename(&temp, path));
    if let Err(source) = result {
        let _ = fs::remove_file(&temp);
        return Err(TlsError::Write { path: path.to_owned(), source });
    }
    if let Some(dir) = path.parent() {
        // Best effort: makes the rename durable across a power cut.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn write_new(temp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(temp)?;
    // The umask can only have removed bits; set exactly `mode` (e.g. 0644
    // for the bundle under a 077 umask). Never widens a secret: 0600 stays.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `dir/.name.tmp-<pid>-<n>`: unique per process and call, so concurrent
/// writers of the same file never share a temp file.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}
