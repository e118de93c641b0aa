//! Which file each bound Unix socket was bound at, from the kernel's
//! socket diagnostics (`NETLINK_SOCK_DIAG`, `UDIAG_SHOW_VFS`: the inode
//! `bind(2)` made, which `ss -x` does not show). `/proc/net/unix` gives only
//! the name a socket was bound at; once that name is removed or replaced
//! (ssh binds a `ControlMaster` under a temporary name, links it to the
//! `ControlPath` and removes the first), the socket's file can only be told
//! from its neighbours by this inode.
//!
//! Never: anything but ask the kernel (no socket is connected to).

use std::collections::HashMap;
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket};

/// `SOCK_DIAG_BY_FAMILY`, the request and answer type of `sock_diag(7)`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `UDIAG_SHOW_VFS`: answer with the bound file's `unix_diag_vfs`.
const UDIAG_SHOW_VFS: u32 = 0x2;
/// The attribute that carries it: `{ u32 ino; u32 dev; }`.
const UNIX_DIAG_VFS: u16 = 1;
/// `sizeof(struct nlmsghdr)` and `sizeof(struct unix_diag_msg)`.
const HEADER: usize = 16;
const MESSAGE: usize = 16;

/// Whether the file `ino` (`st_ino`) may be the bound file whose inode
/// number the kernel gave as `bound`: `unix_diag_vfs` carries only its low
/// 32 bits (and the file system's device as the kernel numbers it, which
/// `stat(2)` does not always report: btrfs subvolumes, overlayfs), so a file
/// is matched by inode among the entries of the directory it is looked for
/// in.
pub fn is(bound: u32, ino: u64) -> bool {
    ino as u32 == bound
}

/// The bound file's inode number (low 32 bits) of every socket in this
/// network namespace bound at a path, by the socket's inode (the `Inode` of `/proc/net/unix`). An error
/// if the kernel cannot be asked (a kernel without `CONFIG_UNIX_DIAG`).
pub fn bound_files() -> std::io::Result<HashMap<u64, u32>> {
    let fd = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?;
    sendto(fd.as_raw_fd(), &request(), &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut files = HashMap::new();
    // Large enough for the kernel's dump batches (it fills up to a page or
    // two per read), so no answer is cut short.
    let mut buffer = vec![0_u8; 64 << 10];
    loop {
        let read = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the socket diagnostics ended early"));
        }
        if parse(&buffer[..read], &mut files)? {
            return Ok(files);
        }
    }
}

/// A dump of every Unix socket (all states), with its bound file.
fn request() -> Vec<u8> {
    let mut request = Vec::with_capacity(HEADER + 24);
    request.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&1_u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0_u32.to_ne_bytes()); // port: the kernel's
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie.
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes());
    request.extend_from_slice(&0_u32.to_ne_bytes());
    request.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie: INET_DIAG_NOCOOKIE
    request
}

/// Adds the answers in `batch` (one read's netlink messages) to `files`:
/// whether the dump is done.
fn parse(mut batch: &[u8], files: &mut HashMap<u64, u32>) -> std::io::Result<bool> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("socket diagnostics: {what}"));
    while batch.len() >= HEADER {
        let length = u32_at(batch, 0) as usize;
        let kind = u16::from_ne_bytes([batch[4], batch[5]]);
        if length < HEADER || length > batch.len() {
            return Err(bad("a message's length is out of bounds"));
        }
        let body = &batch[HEADER..length];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body.get(..4).map(|code| i32::from_ne_bytes([code[0], code[1], code[2], code[3]]));
                return match errno {
                    Some(0) => Ok(true),
                    Some(errno) => Err(std::io::Error::from_raw_os_error(errno.saturating_neg())),
                    None => Err(bad("a short error message")),
                };
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= MESSAGE => {
                let socket = u64::from(u32_at(body, 4));
                let mut attributes = &body[MESSAGE..];
                while attributes.len() >= 4 {
                    let size = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
                    let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
                    if size < 4 || size > attributes.len() {
                        return Err(bad("an attribute's length is out of bounds"));
                    }
                    if kind == UNIX_DIAG_VFS && size >= 12 {
                        files.insert(socket, u32_at(attributes, 4));
                    }
                    attributes = attributes.get(align(size)..).unwrap_or_default();
                }
            }
            _ => return Err(bad("an unexpected message")),
        }
        batch = batch.get(align(length)..).unwrap_or_default();
    }
    Ok(false)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Netlink's 4-byte alignment of messages and attributes.
fn align(size: usize) -> usize {
    (size + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// A socket's bound file is found by the socket's inode, as it is
    /// after its name was linked elsewhere and removed.
    #[test]
    fn a_bound_socket_is_told_by_the_file_it_was_bound_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, moved) = (dir.path().join("first"), dir.path().join("moved"));
        let listener = super::super::bound_then_renamed(&first, &moved);
        let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).expect("fd link");
        let socket = super::super::later::socket_inode(&link).expect("inode");
        let files = bound_files().expect("sock_diag");
        let file = files.get(&socket).expect("the listener is listed");
        let meta = std::fs::metadata(&moved).expect("moved");
        assert!(is(*file, meta.ino()), "{file} vs {}", meta.ino());
        let neighbour = dir.path().join("neighbour");
        let _other = std::os::unix::net::UnixListener::bind(&neighbour).expect("bind");
        assert!(!is(*file, std::fs::metadata(&neighbour).expect("neighbour").ino()));
    }

    #[test]
    fn answers_are_parsed_and_bad_lengths_refused() {
        let mut message = Vec::new();
        message.extend_from_slice(&((HEADER + MESSAGE + 12) as u32).to_ne_bytes());
        message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        message.extend_from_slice(&[0; 10]);
        message.extend_from_slice(&[1, 1, 10, 0]);
        message.extend_from_slice(&4242_u32.to_ne_bytes());
        message.extend_from_slice(&[0; 8]);
        message.extend_from_slice(&12_u16.to_ne_bytes());
        message.extend_from_slice(&UNIX_DIAG_VFS.to_ne_bytes());
        message.extend_from_slice(&77_u32.to_ne_bytes());
        message.extend_from_slice(&((8_u32 << 20) | 3).to_ne_bytes());
        let mut done = Vec::new();
        done.extend_from_slice(&(HEADER as u32 + 4).to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        let mut files = HashMap::new();
        assert!(!parse(&message, &mut files).expect("a message"));
        assert_eq!(files.get(&4242), Some(&77));
        assert!(parse(&done, &mut files).expect("done"));
        let mut cut = message.clone();
        cut.truncate(HEADER + MESSAGE + 6);
        assert!(parse(&cut, &mut files).is_err(), "a message longer than the read");
        let mut attribute = message;
        attribute[HEADER + MESSAGE..HEADER + MESSAGE + 2].copy_from_slice(&40_u16.to_ne_bytes());
        assert!(parse(&attribute, &mut files).is_err(), "an attribute longer than its message");
    }
}
