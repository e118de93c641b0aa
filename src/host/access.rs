//! What the guarded command's user may do to a file, as the kernel decides
//! it for that user (mode bits, ACLs, its one group), asked while still
//! root: with the user's file system ids, which also set root's overrides
//! aside for the question.
//!
//! Only in a single-threaded process about to become the user (the
//! sandbox step): the ids are the calling thread's, and its groups must be
//! the user's already.

use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd};

use nix::NixPath;
use nix::fcntl::AtFlags;
use nix::unistd::{AccessFlags, Gid, Uid, setfsgid, setfsuid};

/// Whether `uid` (with `gid` as its only group) may `access` `path` (at
/// `dir`), symlinks in it followed unless `follow` is false. Root may
/// everything. Any doubt is a no: ids that did not take, a kernel without
/// `faccessat2` (glibc would answer for the effective uid, root, then).
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
    // Each call answers with the ids before it: asking again tells whether
    // the switch took.
    let took = setfsuid(Uid::from_raw(uid)).as_raw() == uid && setfsgid(Gid::from_raw(gid)).as_raw() == gid;
    let may = took && faccessat2(dir.as_fd(), path, access, flags);
    setfsgid(was_gid);
    setfsuid(was_uid);
    may
}

/// `faccessat2(2)` itself: glibc's `faccessat` emulates `AT_EACCESS` with
/// the effective ids where the kernel lacks it, which here are root's.
#[expect(unsafe_code, reason = "faccessat2(2) has no wrapper that does not emulate it")]
fn faccessat2<P: ?Sized + NixPath>(dir: BorrowedFd<'_>, path: &P, access: AccessFlags, flags: AtFlags) -> bool {
    path.with_nix_path(|path| {
        // SAFETY: `path` is a NUL-terminated string that lives for the
        // call, `dir` an open descriptor (or AT_FDCWD); nothing is written.
        let answer =
            unsafe { libc::syscall(libc::SYS_faccessat2, dir.as_raw_fd(), path.as_ptr(), access.bits(), flags.bits()) };
        answer == 0
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_kernel_answers_for_the_user_not_for_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = dir.path().join("root-only");
        std::fs::write(&file, "secret").expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let here = nix::fcntl::AT_FDCWD;
        assert!(!user_may(65534, 65534, here, &file, AccessFlags::R_OK, false));
        assert!(user_may(0, 0, here, &file, AccessFlags::R_OK, false));
        std::os::unix::fs::chown(&file, Some(65534), None).expect("chown");
        assert!(user_may(65534, 65534, here, &file, AccessFlags::R_OK, false));
        assert!(!user_may(65533, 65533, here, &file, AccessFlags::R_OK, false));
        // Root's overrides are back once asked: another's 0600 file opens.
        assert!(std::fs::read(&file).is_ok());
    }
}
