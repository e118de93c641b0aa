//! The MCP gateway's HTTP side inside `bridle run` and `bridle up`: when
//! the config lists `[[mcp.servers]]`, the session serves them at
//! `http://<[mcp] listen>/mcp/<name>` with its own authorizer, approvals
//! broker and audit log, so MCP decisions sit in the same timeline as the
//! session's connections and `bridle approve` answers them too.
//!
//! The gateway decides every message itself, so a loopback listener is
//! meant to be reached by agents directly rather than through the proxy
//! (the redirect configuration in `egress` is where that is arranged).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_mcp_gateway::PinStore;
use bridle_mcp_gateway::http::Shared;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::mcp::pins_dir;
use crate::cli::mcp_serve;

/// Where pins go when the environment names no state directory (a
/// service started without `HOME`).
const SERVICE_PINS: &str = "/var/lib/bridle/mcp-pins";

/// What the session's MCP gateways (configured servers and MCP the proxy
/// finds inline) decide and record with: the session's own authorizer,
/// approvals, audit log, and the user's pins.
pub(super) fn shared(
    config: &Config,
    authorizer: &Arc<Authorizer>,
    approvals: &Arc<Approvals>,
    audit: &Arc<AuditLog>,
    session: &str,
) -> anyhow::Result<Shared> {
    Ok(Shared {
        authorizer: Arc::clone(authorizer),
        approvals: Arc::clone(approvals),
        audit: Some(Arc::clone(audit)),
        pins: PinStore::new(pins_dir(None).unwrap_or_else(|_| PathBuf::from(SERVICE_PINS))),
        session: session.to_string(),
        principal: config.project.name.clone(),
    })
}

/// Serves `[[mcp.servers]]` until `stop` turns true; `None` when there are none.
pub(super) async fn spawn(
    config: &Config,
    authorizer: &Arc<Authorizer>,
    approvals: &Arc<Approvals>,
    audit: &Arc<AuditLog>,
    session: &str,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if config.mcp.servers.is_empty() {
        return Ok(None);
    }
    let shared = shared(config, authorizer, approvals, audit, session)?;
    let gateway = mcp_serve::bind(config, shared).await?.context("no [[mcp.servers]]")?;
    let addr = gateway.local_addr()?;
    let names: Vec<&str> = config.mcp.servers.iter().map(|s| s.name.as_str()).collect();
    let message = format!("MCP gateway on http://{addr}/mcp/<name> for {}", names.join(", "));
    if let Err(error) =
        audit.append(AuditEntry::Notice { component: "mcp-gateway".into(), level: "info".into(), message })
    {
        tracing::error!(%error, "could not audit the MCP gateway's start");
    }
    let mut stop = stop.clone();
    Ok(Some(tokio::spawn(gateway.run(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }))))
}
