//! The `bridle` command line: one module per subcommand group.

pub mod audit;
pub mod policy;
pub mod settings;
