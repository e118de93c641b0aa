//! The gateway's one error type, sorted at the edge: the CLI prints it and
//! exits 2; nothing here is ever shown to the MCP client (protocol problems
//! become JSON-RPC errors, see [`crate::jsonrpc`]).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What can stop the gateway from starting or running, or a pins command
/// from completing. Each variant names the file, command or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// `--name` must be usable as a file name and a Cedar entity id.
    #[error(
        "invalid MCP server name {name:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidServerName { name: String },
    /// `bridle mcp wrap` was given no command.
    #[error("no MCP server command given (bridle mcp wrap --name NAME -- CMD ARGS...)")]
    NoCommand,
    /// The server process could not be started.
    #[error("cannot start the MCP server {command:?}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// Waiting for the server process failed.
    #[error("cannot wait for the MCP server: {source}")]
    Wait {
        #[source]
        source: io::Error,
    },
    /// Installing a signal handler failed.
    #[error("cannot handle {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    /// An I/O call on the pins directory failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Pins {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A pin file exists but is not one Bridle wrote (or was damaged).
    #[error("{}: invalid pin file: {source}", path.display())]
    PinFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `--accept` named a server or tool that has no pin.
    #[error("no pinned tools for {what} (see `bridle mcp tools`)")]
    UnknownPin { what: String },
    /// A `[[mcp.servers]]` URL or header the HTTP client cannot use.
    #[error("MCP server {server}: cannot use {url:?}: {reason}")]
    ServerUrl { server: String, url: String, reason: String },
    /// The HTTP gateway's listener could not be bound.
    #[error("cannot listen for MCP clients on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

impl GatewayError {
    pub(crate) fn pins(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> GatewayError {
        let path = path.into();
        move |source| GatewayError::Pins { path, op, source }
    }
}
