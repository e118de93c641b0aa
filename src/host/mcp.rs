//! The MCP gateway's HTTP side inside `bridle run` and `bridle up`: when
//! the config lists `[[mcp.servers]]`, the session serves them at
//! `http://<[mcp] listen>/mcp/<name>` with its own authorizer, approvals
//! broker and audit log, so MCP decisions sit in the same timeline as the
//! session's connections and `bridle approve` answers them too.
//!
//! The gateway decides every message itself, so a loopback listener is
//! meant to be reached by agents directly rather than through the proxy
//! (the redirect configuration in `egress` is where that is arranged).
//!
//! The gateway runs on a thread of its own with a single-threaded runtime
//! ([`start`]), here and under `bridle mcp serve` alike. A call is a chain
//! of short steps (client read, decision, upstream write, upstream read,
//! scan, client write) handed between a few tasks; on the session's
//! two-worker runtime each hand-off woke the idle worker through the
//! reactor's eventfd only for it to find nothing to do (measured: 2.5 such
//! wake-ups and about 70 µs more CPU per `tools/call`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_mcp_gateway::PinStore;
use bridle_mcp_gateway::http::Shared;
use tokio::sync::{oneshot, watch};
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
    let mut stop = stop.clone();
    let (addr, thread) = start(config, shared, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
    .await?;
    let names: Vec<&str> = config.mcp.servers.iter().map(|s| s.name.as_str()).collect();
    let message = format!("MCP gateway on http://{addr}/mcp/<name> for {}", names.join(", "));
    if let Err(error) =
        audit.append(AuditEntry::Notice { component: "mcp-gateway".into(), level: "info".into(), message })
    {
        tracing::error!(%error, "could not audit the MCP gateway's start");
    }
    Ok(Some(tokio::task::spawn_blocking(move || {
        if thread.join().is_err() {
            tracing::error!("the MCP gateway's thread panicked");
        }
    })))
}

/// The runtime the HTTP gateway runs on: one thread (see the module doc).
pub(crate) fn gateway_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the MCP gateway's runtime")
}

/// Binds the HTTP gateway for `config`'s `[[mcp.servers]]` on a new thread
/// with its own [`gateway_runtime`] and serves until `stop` resolves.
/// Returns once it listens (its address and the thread), or why it could not.
async fn start(
    config: &Config,
    shared: Shared,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let config = config.clone();
    let (bound_tx, bound_rx) = oneshot::channel::<anyhow::Result<SocketAddr>>();
    let thread = std::thread::Builder::new()
        .name("mcp-gateway".into())
        .spawn(move || {
            let runtime = match gateway_runtime() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = bound_tx.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                let bound = async {
                    let gateway = mcp_serve::bind(&config, shared).await?.context("no [[mcp.servers]]")?;
                    let addr = gateway.local_addr()?;
                    anyhow::Ok((gateway, addr))
                };
                match bound.await {
                    Ok((gateway, addr)) => {
                        if bound_tx.send(Ok(addr)).is_ok() {
                            gateway.run(stop).await;
                        }
                    }
                    Err(error) => {
                        let _ = bound_tx.send(Err(error));
                    }
                }
            });
        })
        .context("starting the MCP gateway's thread")?;
    match bound_rx.await {
        Ok(Ok(addr)) => Ok((addr, thread)),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the MCP gateway's thread ended before it listened")
        }
    }
}
