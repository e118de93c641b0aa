//! Bridle's engine: the event model, the Cedar authorizer, the policy
//! toolchain and the audit store.
//!
//! Every capture point (redirector/proxy, DNS resolver, MCP gateway, file
//! hooks) turns what it sees into an [`event::Event`], asks an
//! [`authorizer::Authorizer`] for a [`decision::Decision`] and enforces it;
//! the pair is appended to the [`audit`] log. Only this crate talks to Cedar.
//!
//! Entry points: [`authorizer::Authorizer::decide`], [`policy::load_dir`],
//! [`audit::AuditLog`], [`config::Config::load`].
//!
//! This crate never does networking and never blocks on I/O in the decision
//! path.

pub mod approvals;
pub mod audit;
pub mod authorizer;
pub mod config;
pub mod correlate;
pub mod decision;
pub mod dlp;
pub mod event;
pub mod names;
pub mod policy;
pub mod reload;
pub mod replay;
pub mod request;
pub mod schema;
