//! What one gateway needs to know, fixed at start.

use crate::GatewayError;

/// Default bound on one JSON-RPC message (a line), either direction.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How the gateway reaches the server (named in notices).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// A child process on pipes (`bridle mcp wrap`).
    #[default]
    Stdio,
    /// Streamable HTTP: POSTs answered with JSON or an event stream.
    StreamableHttp,
    /// The legacy HTTP+SSE transport: one event stream, POSTs to an endpoint.
    Sse,
}

/// One gateway's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The server's configured name: `Mcp::Server::"<server>"`, and the
    /// `server` of every `Mcp::Tool`.
    pub server: String,
    /// The session events are recorded under.
    pub session: String,
    /// The agent: `Agent::"<principal>"`.
    pub principal: String,
    /// Longest message accepted from either side, in bytes.
    pub max_message_bytes: usize,
    /// How the server is reached.
    pub transport: Transport,
    /// The stdio server's process, once started: its descendants act for
    /// its calls (correlation).
    pub server_pid: Option<u32>,
}

impl GatewayConfig {
    /// Settings for `server`, checking its name.
    pub fn new(server: &str, session: &str, principal: &str) -> Result<Self, GatewayError> {
        if !valid_server_name(server) {
            return Err(GatewayError::InvalidServerName { name: server.to_string() });
        }
        Ok(GatewayConfig {
            server: server.to_string(),
            session: session.to_string(),
            principal: principal.to_string(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            transport: Transport::Stdio,
            server_pid: None,
        })
    }
}

/// 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit: safe as a
/// file name in the pins directory, in a URL path, and readable in policies.
/// (The rule lives in the engine, which checks `[[mcp.servers]]` names too.)
pub fn valid_server_name(name: &str) -> bool {
    bridle_engine::names::valid_mcp_server_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_file_safe() {
        for good in ["fs", "github", "my-server_2.0", "A"] {
            assert!(valid_server_name(good), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_server_name(bad), "{bad}");
        }
        assert!(matches!(GatewayConfig::new("../x", "s", "p"), Err(GatewayError::InvalidServerName { .. })));
    }
}
