//! The proxy's one error type. Errors stay data so the edge (the connection
//! task) can sort them into a log line, a metric and an audit reason.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What can go wrong while proxying. Every variant names the address involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound.
    #[error("cannot bind the proxy listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Reading the client's first bytes failed (not a timeout: that is a
    /// detection result, not an error).
    #[error("cannot read the first bytes from {peer}: {source}")]
    Peek {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The original destination refused or could not be reached.
    #[error("cannot connect to the original destination {dst}: {source}")]
    Connect {
        dst: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The original destination did not answer within the connect timeout.
    #[error("connecting to the original destination {dst} timed out after {timeout:?}")]
    ConnectTimeout { dst: SocketAddr, timeout: Duration },
    /// Relaying bytes between the client and the destination failed.
    #[error("relay with {dst} failed: {source}")]
    Relay {
        dst: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Neither side sent anything for the idle timeout.
    #[error("relay with {dst} idle for {idle:?}; closed")]
    Idle { dst: SocketAddr, idle: Duration },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
