//! What one gateway needs to know, fixed at start.

use crate::GatewayError;

/// Default bound on one JSON-RPC message (a line), either direction.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

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
        })
    }
}

/// 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit: safe as a
/// file name in the pins directory and readable in policies.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
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
