//! The `bridle` command line: one module per subcommand group.

pub mod approvals;
pub mod audit;
pub mod ca;
pub mod mcp;
pub mod mcp_serve;
pub mod policy;
pub mod settings;
