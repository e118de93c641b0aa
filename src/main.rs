//! `bridle`: the runtime guardrail for AI coding agents.
//!
//! Thin on purpose: parse the command line, set up logging, hand off to the
//! subcommand, turn its outcome into an exit code (0 ok, 1 a finding or
//! denial the user asked about, 2 usage or input error).

mod cli;
mod host;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bridle: enforceable guardrails around AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "bridle", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, format, lint, test and replay Cedar policies.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCmd),
    /// Verify and query the tamper-evident audit log.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Bridle's certificate authority: export its certificate, rotate it.
    #[command(subcommand)]
    Ca(cli::ca::CaCmd),
    /// Wrap MCP servers (`mcp wrap -- CMD`) and review their pinned tools.
    #[command(subcommand)]
    Mcp(cli::mcp::McpCmd),
    /// Run a command with every connection it makes redirected to Bridle and
    /// decided by policy (needs root; the command runs as the sudo user).
    Run(host::RunArgs),
    /// The appliance daemon: guard every process in this network namespace
    /// (containers that join it, `ip netns exec`), except Bridle itself.
    Up(host::UpArgs),
    /// List Bridle's sessions in the kernel: cgroups, pinned programs,
    /// guarded processes, and whether their bridle still runs.
    Status {
        /// Only say whether SESSION (default `up`, the appliance) is up and
        /// serving: exit 0 if so, 1 if not (a container health check).
        #[arg(long, value_name = "SESSION", num_args = 0..=1, default_missing_value = "up")]
        ready: Option<String>,
    },
    /// Remove orphaned sessions (their bridle died; their processes were
    /// failing closed): kill their processes, detach programs, remove pins.
    Down {
        /// Also stop running sessions.
        #[arg(long)]
        all: bool,
        /// Only these sessions (as `bridle status` names them; `up` is the
        /// appliance). Default: every session.
        #[arg(value_name = "SESSION")]
        sessions: Vec<String>,
    },
    /// List the requests `@ask` policies hold for a person, in every running
    /// bridle (needs root): ID, SESSION, AGE, WHAT, POLICY REASON.
    Approvals(cli::approvals::ListArgs),
    /// Let a held request proceed (needs root). Exit 1 if no pending
    /// approval has that id, 2 if no bridle runs.
    Approve(cli::approvals::AnswerArgs),
    /// Refuse a held request, as a policy deny would (needs root). Exit 1
    /// if no pending approval has that id, 2 if no bridle runs.
    Deny(cli::approvals::AnswerArgs),
    /// Internal: the last step before a guarded command (join its cgroup,
    /// drop privileges, exec).
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec(host::SandboxArgs),
    /// Internal: cover, in a guarded command's mount namespace, the sockets
    /// served since it started (`[host] cover_sockets`).
    #[command(name = "__cover-sockets", hide = true)]
    CoverSockets(host::CoverArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BRIDLE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // MCP clients read a wrapped server's stderr into their logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Policy(cmd) => cli::policy::run(cmd),
        Command::Audit(cmd) => cli::audit::run(cmd),
        Command::Ca(cmd) => cli::ca::run(cmd),
        Command::Mcp(cmd) => cli::mcp::run(cmd),
        Command::Run(args) => host::run(args),
        Command::Up(args) => host::up(args),
        Command::Status { ready: Some(session) } => host::ready(&session),
        Command::Status { ready: None } => host::status(),
        Command::Down { all, sessions } => host::down(all, &sessions),
        Command::Approvals(args) => cli::approvals::list(args),
        Command::Approve(args) => cli::approvals::answer(args, true),
        Command::Deny(args) => cli::approvals::answer(args, false),
        Command::SandboxExec(args) => host::sandbox_exec(args),
        Command::CoverSockets(args) => host::cover_sockets_in(args),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("bridle: {}", describe(&error));
        ExitCode::from(2)
    })
}

/// The error and its causes on one line, skipping a cause whose text the
/// message already includes (library errors often embed their source).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
