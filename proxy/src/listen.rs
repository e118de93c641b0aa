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
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
