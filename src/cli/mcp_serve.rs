//! `bridle mcp serve`: the MCP gateway's HTTP side alone, in the
//! foreground, for the servers of `[[mcp.servers]]`; and [`bind`], which
//! `bridle run` and `bridle up` use to run the same gateway in-process.
//!
//! Exit codes: 0 after SIGINT/SIGTERM, 2 when it cannot start (bad config,
//! no servers configured, the port taken).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use bridle_engine::approvals::Approvals;
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_engine::request::Principal;
use bridle_mcp_gateway::PinStore;
use bridle_mcp_gateway::http::{HttpGateway, Shared};
use tokio::signal::unix::{SignalKind, signal};

use super::mcp::{open_audit, pins_dir};
use super::settings::DecideArgs;
use crate::host::control;

/// `bridle mcp serve [OPTIONS]`
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub decide: DecideArgs,
    /// Where to listen (default: the config's [mcp] listen, 127.0.0.1:18090).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Audit log. Default: `mcp-http.jsonl` beside the config's [audit] path.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Tool pins directory (default as for `wrap`).
    #[arg(long, value_name = "DIR")]
    pub pins: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.decide.config()?.unwrap_or_default();
    if config.mcp.servers.is_empty() {
        bail!("no [[mcp.servers]] in the config: nothing to serve (see bridle.example.toml)");
    }
    if let Some(listen) = args.listen {
        config.mcp.listen = listen;
    }
    let session = format!("mcp-serve-{}", std::process::id());
    let authorizer = Arc::new(Authorizer::new(args.decide.load()?, config.engine.decision_cache_size));
    authorizer.register_session(&session, principal(&config, &session));
    let audit_path = args.audit.unwrap_or_else(|| config.audit.path.with_file_name("mcp-http.jsonl"));
    let (audit, _lock) = open_audit(&config, &audit_path)?;
    let approvals = Arc::new(Approvals::new(config.engine.ask_timeout(), Some(Arc::clone(&audit))));
    let _watch = crate::host::watch_policies(args.decide.policy_dir()?.as_deref(), &authorizer, &audit)?;
    let shared = Shared {
        authorizer,
        approvals: Arc::clone(&approvals),
        audit: Some(Arc::clone(&audit)),
        pins: PinStore::new(pins_dir(args.pins)?),
        session: session.clone(),
        principal: config.project.name.clone(),
    };
    // One thread, as the gateway runs under `bridle run` and `bridle up`, so
    // the numbers of one hold for the others.
    let runtime = crate::host::gateway_runtime()?;
    runtime.block_on(async {
        let gateway = bind(&config, shared).await?.context("no [[mcp.servers]]")?;
        let addr = gateway.local_addr()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // `bridle approve` reaches a held call through the control socket;
        // it needs root, and without it an ask can only time out.
        let approvals_task = match control::bind(&control::socket_path(&session)) {
            Ok(socket) => Some(control::spawn(socket, approvals, stopped)),
            Err(error) => {
                eprintln!("bridle: no approvals socket ({error:#}); held MCP calls can only time out");
                None
            }
        };
        let names: Vec<String> = config.mcp.servers.iter().map(|s| format!("http://{addr}/mcp/{}", s.name)).collect();
        eprintln!("bridle: MCP gateway listening: {}", names.join(" "));
        gateway.run(wait_for_stop()).await;
        let _ = stop.send(true);
        if let Some(task) = approvals_task {
            let _ = task.await;
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_background();
    audit.sync().with_context(|| format!("writing the audit log {}", audit_path.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// The HTTP gateway for the config's `[[mcp.servers]]`, bound; `None` when
/// there are none. `https` servers are verified against `[tls]
/// upstream_ca_bundle` (else the system roots).
pub(crate) async fn bind(config: &Config, shared: Shared) -> anyhow::Result<Option<HttpGateway>> {
    if config.mcp.servers.is_empty() {
        return Ok(None);
    }
    let roots = if config.mcp.servers.iter().any(|s| s.url.starts_with("https://")) {
        let bundle = config.tls.upstream_ca_bundle.as_deref();
        Some(
            bridle_proxy::tls::upstream_roots(bundle)
                .context("loading the roots HTTPS MCP servers are verified with")?,
        )
    } else {
        None
    };
    let gateway = HttpGateway::bind(&config.mcp, shared, roots.as_ref()).await?;
    Ok(Some(gateway))
}

pub(crate) fn principal(config: &Config, session: &str) -> Principal {
    Principal {
        name: config.project.name.clone(),
        session: session.to_string(),
        image: config.project.image.clone(),
        workdir: config.project.workdir.display().to_string(),
    }
}

async fn wait_for_stop() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // Without handlers the default action (exit) applies anyway.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
