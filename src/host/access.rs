//! What the guarded command's user may do to a file, as the kernel decides
//! it for that user (mode bits, ACLs, its one group), asked while still
//! root: with the user's file system ids, which also set root's overrides
//! aside for the question.
//!
//! Only in a single-threaded process about to become the user (the
//! sandbox step): the ids are the calling thread's, and its groups must be
//! the user's already.

use std::os::fd::AsFd;

use nix::NixPath;
use nix::fcntl::AtFlags;
use nix::unistd::{AccessFlags, Gid, Uid, faccessat, setfsgid, setfsuid};

/// Whether `uid` (with `gid` as its only group) may `access` `path` (at
/// `dir`), symlinks in it followed unless `follow` is false. Root may
/// everything.
pub(crate) fn user_may<Fd: AsFd, P: ?Sized + NixPath>(
    uid: u32,
    gid: u32,
    dir: Fd,
    path: &P,
    access: AccessFlags,
    follow: bool,
) -> bool {
    if uid == 0 {
        return true;
    }
    let flags = if follow { AtFlags::AT_EACCESS } else { AtFlags::AT_EACCESS | AtFlags::AT_SYMLINK_NOFOLLOW };
    let was_uid = setfsuid(Uid::from_raw(uid));
    let was_gid = setfsgid(Gid::from_raw(gid));
    let may = faccessat(dir, path, access, flags).is_ok();
    setfsgid(was_gid);
    setfsuid(was_uid);
    may
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_kernel_answers_for_the_user_not_for_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("root-only");
        std::fs::write(&file, "secret").expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let here = nix::fcntl::AT_FDCWD;
        assert!(!user_may(65534, 65534, here, &file, AccessFlags::R_OK, false));
        assert!(user_may(0, 0, here, &file, AccessFlags::R_OK, false));
        std::os::unix::fs::chown(&file, Some(65534), None).expect("chown");
        assert!(user_may(65534, 65534, here, &file, AccessFlags::R_OK, false));
        // Root's own access is back once asked.
        std::os::unix::fs::chown(&file, Some(0), None).expect("chown");
        assert!(std::fs::read(&file).is_ok());
    }
}
