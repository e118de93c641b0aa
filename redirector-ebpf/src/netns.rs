//! The network namespace cookie, which appliance mode guards by.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Result, error::Step};

/// `SO_NETNS_COOKIE` (Linux 5.14); not every libc crate version names it.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace: the value
/// `bpf_get_netns_cookie()` returns for sockets created in it. Unique for the
/// kernel's lifetime, never reused.
#[expect(unsafe_code, reason = "socket(2) and getsockopt(2) have no safe std wrapper for this option")]
pub fn netns_cookie() -> Result<u64> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).step(|| "create a socket to read the netns cookie".into());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).step(|| "read SO_NETNS_COOKIE (needs Linux 5.14 or later)".into());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_cookie_is_stable_within_a_namespace() {
        let a = netns_cookie().expect("cookie");
        assert_ne!(a, 0);
        assert_eq!(netns_cookie().expect("cookie"), a);
    }
}
