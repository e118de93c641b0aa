//! Listening sockets with a backlog sized for bursts.
//!
//! `TcpListener::bind` listens with a backlog of 128: a burst of more guarded
//! connects than that before the proxy accepts them overflowed the queue, and
//! each dropped SYN cost the agent a one-second retransmit (measured by
//! `scripts/bench-egress.sh` at 1,000 connections). The kernel caps the
//! backlog at `net.core.somaxconn`.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Backlog asked of the kernel (capped by `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds and listens on `addr` with [`LISTEN_BACKLOG`].
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    listen(addr, false)
}

/// Like [`tcp_listener`], with `TCP_NODELAY` set on the listener: Linux
/// copies it to every accepted socket, which saves a `setsockopt` per
/// connection on the relay's accept path. A relay mirrors its peer's writes
/// one for one, and Nagle would hold a small one (a prompt, the end of a
/// response) behind an unacknowledged segment for up to a delayed-ACK
/// interval.
pub fn relay_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    listen(addr, true)
}

fn listen(addr: SocketAddr, nodelay: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if nodelay {
        socket.set_nodelay(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepted_nodelay(listener: TcpListener) -> bool {
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        drop(dialed.expect("connect"));
        accepted.expect("accept").0.nodelay().expect("TCP_NODELAY")
    }

    #[tokio::test]
    async fn relay_listener_hands_out_sockets_with_nodelay() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert!(accepted_nodelay(relay_listener(loopback).expect("bind")).await);
        assert!(!accepted_nodelay(tcp_listener(loopback).expect("bind")).await);
    }
}
