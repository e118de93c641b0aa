//! `bridle mcp wrap | serve | tools`: the MCP gateway's stdio transport,
//! its HTTP side (see [`super::mcp_serve`]) and its tool pins.
//!
//! `wrap` runs as the agent's user (the agent's MCP config spawns it); it
//! needs no root. Its exit code is the server's (128 + signal if the
//! server was killed), 2 if the gateway could not start. `tools` exits 1
//! when a listed tool is flagged (changed since pinned, or possibly
//! poisoned), 2 on bad input.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::Config;
use bridle_engine::request::Principal;
use bridle_mcp_gateway::pins::PinFile;
use bridle_mcp_gateway::report::{self, Reporter};
use bridle_mcp_gateway::{Enforcer, GatewayConfig, GatewayError, PinStore, ToolBook, stdio};
use clap::Subcommand;
use nix::fcntl::{Flock, FlockArg};

use super::settings::DecideArgs;

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Run a stdio MCP server behind Bridle: put this in the agent's MCP
    /// config in place of the server's command. Every message is
    /// inspected, tool calls, resource reads, prompt gets and tool lists
    /// are decided by policy, tool definitions are pinned and scanned.
    Wrap(WrapArgs),
    /// Serve the HTTP MCP servers of [[mcp.servers]] behind Bridle, at
    /// http://<[mcp] listen>/mcp/NAME (streamable HTTP, or the legacy
    /// HTTP+SSE transport), until SIGINT/SIGTERM. Every message is decided
    /// and pinned as under `wrap`.
    Serve(super::mcp_serve::ServeArgs),
    /// List the tools each wrapped server offered, with pinned hashes and
    /// flags (CHANGED since pinned, possible poisoning); exit 1 if any is flagged.
    Tools(ToolsArgs),
}

/// `bridle mcp wrap --name NAME [OPTIONS] -- CMD ARGS…`
#[derive(Debug, Clone, clap::Args)]
pub struct WrapArgs {
    /// The server's name: policies see its tools as `Mcp::Tool` with
    /// `server == NAME`; its pins are `<pins>/NAME.json`.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub decide: DecideArgs,
    /// Audit log. Default: `mcp-NAME.jsonl` beside the config's [audit]
    /// path as root, else in $XDG_STATE_HOME/bridle (~/.local/state/bridle)
    /// (one log per server, so wrapped servers never share a chain).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Tool pins directory. Default: $XDG_STATE_HOME/bridle/mcp-pins, else
    /// ~/.local/state/bridle/mcp-pins.
    #[arg(long, value_name = "DIR")]
    pub pins: Option<PathBuf>,
    /// Longest JSON-RPC message accepted either way (bytes, or with KiB/MiB/GiB).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_message_size: usize,
    /// Seconds a call held by an @ask policy waits for approval before it
    /// is denied. Default: the config's [engine] ask_timeout_secs.
    #[arg(long, value_name = "SECS")]
    pub ask_timeout: Option<u64>,
    /// The MCP server's command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `bridle mcp tools [--pins DIR] [--accept SERVER[/TOOL]]… [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct ToolsArgs {
    /// Tool pins directory (default as for `wrap`).
    #[arg(long, value_name = "DIR")]
    pub pins: Option<PathBuf>,
    /// Re-pin a server's tools (or one tool) to their latest definition
    /// and accept their current findings. Repeatable.
    #[arg(long, value_name = "SERVER[/TOOL]")]
    pub accept: Vec<String>,
    /// Print the pin files as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: McpCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCmd::Wrap(args) => wrap(args),
        McpCmd::Serve(args) => super::mcp_serve::serve(args),
        McpCmd::Tools(args) => tools(args),
    }
}

fn wrap(args: WrapArgs) -> anyhow::Result<ExitCode> {
    let config = args.decide.config()?.unwrap_or_default();
    let session = format!("mcp-{}-{}", args.name, std::process::id());
    let mut gateway = GatewayConfig::new(&args.name, &session, &config.project.name)?;
    gateway.max_message_bytes = args.max_message_size;
    let authorizer = Arc::new(Authorizer::new(args.decide.load()?, config.engine.decision_cache_size));
    authorizer.register_session(
        &session,
        Principal {
            name: config.project.name.clone(),
            session: session.clone(),
            image: config.project.image.clone(),
            workdir: config.project.workdir.display().to_string(),
        },
    );
    let store = PinStore::new(pins_dir(args.pins)?);
    let tools = ToolBook::open(store, &args.name)?;
    let audit_path = args.audit.unwrap_or_else(|| {
        let state = pins_dir(None).ok().and_then(|pins| pins.parent().map(Path::to_path_buf));
        default_audit(&config, &args.name, nix::unistd::geteuid().is_root(), state.as_deref())
    });
    let (audit, _lock) = open_audit(&config, &audit_path)?;
    let timeout = Duration::from_secs(args.ask_timeout.unwrap_or(config.engine.ask_timeout_secs).max(1));
    let approvals = Arc::new(Approvals::new(timeout, Some(Arc::clone(&audit))));
    // A long-lived wrapper follows policy edits like `bridle run` does.
    let _watch = crate::host::watch_policies(args.decide.policy_dir()?.as_deref(), &authorizer, &audit)?;
    let enforcer = Enforcer::new(authorizer, approvals, Some(Arc::clone(&audit)), &args.name);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let status = runtime.block_on(async {
        // Under Bridle, the session learns which call is in flight, so the
        // server's own connections are decided with `context.mcp`.
        let session = report::own_session();
        let enforcer = match Reporter::connect(&session) {
            Ok(reporter) => {
                enforcer.notice("info", format!("reporting tool calls in flight to Bridle session {session}"));
                enforcer.with_reporter(reporter)
            }
            Err(error) => {
                tracing::debug!(%error, %session, "no Bridle session to report tool calls to");
                enforcer
            }
        };
        stdio::wrap(gateway, enforcer, tools, &args.command).await
    });
    // A client that never closes our stdin leaves a blocking read behind:
    // do not wait for it.
    runtime.shutdown_background();
    audit.sync().with_context(|| format!("writing the audit log {}", audit_path.display()))?;
    Ok(ExitCode::from(stdio::exit_code(status?)))
}

/// `mcp-<name>.jsonl` in the directory of the configured audit log, which
/// is root's; run as another user (an agent's, under a session), in that
/// user's `state` directory (the pins' parent).
fn default_audit(config: &Config, name: &str, root: bool, state: Option<&Path>) -> PathBuf {
    let file = format!("mcp-{name}.jsonl");
    match state {
        Some(state) if !root => state.join(file),
        _ => config.audit.path.parent().unwrap_or(Path::new("")).join(file),
    }
}

/// Opens the audit log for this process alone. The log is a hash chain
/// with one writer, so a second gateway for the same server (two agent
/// sessions) gets its own `-<pid>` log instead of breaking the chain.
pub(super) fn open_audit(config: &Config, path: &Path) -> anyhow::Result<(Arc<AuditLog>, Flock<File>)> {
    let redact = config.audit.redact.iter().map(|value| ("audit.redact".to_string(), value.clone())).collect();
    let options = AuditOptions { fsync_interval: config.audit.fsync_interval(), index: config.audit.index, redact };
    let lock = |path: &Path| -> anyhow::Result<Option<Flock<File>>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut name = path.as_os_str().to_os_string();
        name.push(".lock");
        let file = File::create(&name).with_context(|| format!("opening {}", PathBuf::from(&name).display()))?;
        Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).ok())
    };
    let (path, held) = match lock(path)? {
        Some(held) => (path.to_path_buf(), held),
        None => {
            let own = path.with_extension(format!("{}.jsonl", std::process::id()));
            eprintln!("bridle: {} is in use by another bridle; auditing to {}", path.display(), own.display());
            let held = lock(&own)?.with_context(|| format!("locking {}", own.display()))?;
            (own, held)
        }
    };
    let log = AuditLog::open(&path, options).with_context(|| format!("opening the audit log {}", path.display()))?;
    Ok((Arc::new(log), held))
}

fn tools(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let store = PinStore::new(pins_dir(args.pins)?);
    for target in &args.accept {
        let (server, tool) = match target.split_once('/') {
            Some((server, tool)) => (server, Some(tool)),
            None => (target.as_str(), None),
        };
        match store.accept(server, tool) {
            Ok(names) => println!("accepted {server}/{}: now pinned as last seen", names.join(", ")),
            Err(error @ GatewayError::UnknownPin { .. }) => {
                eprintln!("bridle mcp tools: {error}");
                return Ok(ExitCode::from(1));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let files: Vec<PinFile> = store.servers()?.iter().map(|server| store.load(server)).collect::<Result<_, _>>()?;
    let flagged =
        files.iter().flat_map(|f| f.tools.values()).any(|pin| pin.is_changed() || !pin.effective_findings().is_empty());
    let text = if args.json { serde_json::to_string_pretty(&files)? + "\n" } else { table(&files, store.dir()) };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(if flagged { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn table(files: &[PinFile], dir: &Path) -> String {
    let mut rows = vec![["TOOL".to_string(), "PINNED".into(), "STATUS".into(), "FINDINGS".into(), "LAST SEEN".into()]];
    for file in files {
        for (name, pin) in &file.tools {
            let status = match &pin.changed {
                Some(latest) => format!("CHANGED (now {})", &latest.hash[..12.min(latest.hash.len())]),
                None => "ok".into(),
            };
            let findings = pin.effective_findings();
            let findings = if findings.is_empty() { "-".into() } else { findings.join(",") };
            let seen = pin.last_seen.format("%Y-%m-%d %H:%M").to_string();
            rows.push([
                format!("{}/{name}", file.server),
                pin.hash[..12.min(pin.hash.len())].to_string(),
                status,
                findings,
                seen,
            ]);
        }
    }
    if rows.len() == 1 {
        return format!("no pinned MCP tools in {}\n", dir.display());
    }
    let widths: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `--pins`, else the XDG default.
pub(crate) fn pins_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let xdg = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match PinStore::default_dir(xdg.as_deref(), home.as_deref()) {
        Some(dir) => Ok(dir),
        None => bail!("no pins directory: HOME is not set; pass --pins DIR"),
    }
}

/// `16MiB`, `512KiB`, `1GiB`, `1000000`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    let number: usize = digits.parse().map_err(|_| format!("{text:?} is not a size like 16MiB"))?;
    match number.checked_mul(scale) {
        Some(0) => Err("the size must be at least 1 byte".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    /// The configured audit directory is root's: a wrapper run as the
    /// agent's user logs in that user's state directory instead.
    #[test]
    fn a_wrapper_logs_where_its_user_can_write() {
        let config = Config::default();
        let state = Path::new("/home/u/.local/state/bridle");
        assert_eq!(default_audit(&config, "fs", false, Some(state)), state.join("mcp-fs.jsonl"));
        let root_default = Path::new("/var/lib/bridle/audit/mcp-fs.jsonl");
        assert_eq!(default_audit(&config, "fs", true, Some(state)), root_default);
        assert_eq!(default_audit(&config, "fs", false, None), root_default);
    }
}
