//! Bridle's MCP gateway: every JSON-RPC message between an agent and an
//! MCP server is inspected, decided by the engine and recorded.
//!
//! Owns: JSON-RPC framing and classification ([`framing`], [`jsonrpc`],
//! [`classify`]), per-message decisions and enforcement ([`gateway`],
//! [`enforce`]), tool pinning ([`pins`], [`tools`]), poisoning heuristics
//! ([`poison`]), the stdio transport ([`stdio`]) and the HTTP transports,
//! streamable HTTP and legacy HTTP+SSE, as a reverse proxy ([`http`]), also
//! for MCP the proxy finds in an agent's HTTP ([`http::Inline`]). Tool calls
//! in flight are reported to the engine's correlator, and from a stdio
//! wrapper to the session's Bridle ([`report`]).
//!
//! Entry points: [`stdio::wrap`] (what `bridle mcp wrap` runs), built from
//! a [`GatewayConfig`], an [`Enforcer`] and a [`ToolBook`];
//! [`http::HttpGateway`] (what `bridle mcp serve`, `run` and `up` run for
//! `[[mcp.servers]]`); [`PinStore`] for `bridle mcp tools`. [`Gateway`] is
//! the transport-independent core both feed messages to.
//!
//! Must never: forward a governed request (`tools/call`, `resources/read`,
//! `prompts/get`, `tools/list`) the engine has not allowed, including one
//! it cannot parse; forward a response the gateway cannot match to a
//! request; or leave a client request unanswered when the server goes away.

pub mod classify;
pub mod config;
pub mod enforce;
mod error;
pub mod framing;
pub mod gateway;
pub mod http;
pub mod jsonrpc;
pub mod pins;
pub mod poison;
pub mod report;
pub mod stdio;
pub mod tools;

pub use config::{DEFAULT_MAX_MESSAGE_BYTES, GatewayConfig};
pub use enforce::Enforcer;
pub use error::GatewayError;
pub use gateway::Gateway;
pub use pins::PinStore;
pub use tools::ToolBook;
