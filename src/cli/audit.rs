//! `bridle audit`: verify an audit log's hash chain, and search it.
//!
//! Exit codes: 0 ok, 1 verification failed, 2 bad input (unreadable file,
//! bad `--since`…).

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bridle_engine::audit::{self, AuditError, Problem, Query, VerifyReport};
use bridle_engine::decision::Effect;
use chrono::{DateTime, Utc};
use clap::Subcommand;

const VERIFY_FAILED: u8 = 1;
const BAD_INPUT: u8 = 2;

/// `bridle audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check every record's hash, sequence and link, and the checkpoint.
    Verify {
        /// The audit log (JSON lines).
        path: PathBuf,
    },
    /// Search the log (through its index, brought up to date first).
    Query {
        /// The audit log (JSON lines).
        path: PathBuf,
        /// allow, deny, ask or shadow-deny.
        #[arg(long, value_parser = parse_effect)]
        effect: Option<Effect>,
        /// Event kind (net.connect, dns.query, http.request, file, mcp.message,
        /// policy_reload…) or Cedar action (Net::Action::"Connect").
        #[arg(long)]
        action: Option<String>,
        /// Agent name (exact).
        #[arg(long)]
        principal: Option<String>,
        /// Part of the resource: host:port, DNS name, path, server/tool.
        #[arg(long)]
        resource: Option<String>,
        /// Only records since: 90s, 30m, 1h, 2d or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only records until: same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// Show at most this many (the most recent) matches.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the full stored records as JSON lines.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (RFC 4180).
        #[arg(long)]
        csv: bool,
    },
}

fn parse_effect(text: &str) -> Result<Effect, String> {
    Effect::parse(text).ok_or_else(|| format!("unknown effect {text:?}: expected allow, deny, ask or shadow-deny"))
}

/// Runs an audit subcommand; the exit code tells the outcome.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { path } => Ok(verify(&path)),
        AuditCmd::Query { path, effect, action, principal, resource, since, until, limit, json, csv } => {
            let (since, until) = match (time_flag("--since", since), time_flag("--until", until)) {
                (Ok(since), Ok(until)) => (since, until),
                (Err(error), _) | (_, Err(error)) => {
                    eprintln!("bridle audit query: {error}");
                    return Ok(ExitCode::from(BAD_INPUT));
                }
            };
            let query =
                Query { effect, action, principal, resource, since, until, limit: Some(limit), with_lines: json };
            Ok(search(&path, &query, Format::pick(json, csv)))
        }
    }
}

fn time_flag(flag: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    value.map(|text| audit::parse_since(&text).map_err(|error| format!("{flag}: {error}"))).transpose()
}

fn verify(path: &Path) -> ExitCode {
    match audit::verify(path) {
        Ok(report) => {
            let (text, ok) = describe(path, &report);
            emit(&text);
            if ok { ExitCode::SUCCESS } else { ExitCode::from(VERIFY_FAILED) }
        }
        Err(error) => input_error(&error),
    }
}

/// The report as printed, and whether it passed.
fn describe(path: &Path, report: &VerifyReport) -> (String, bool) {
    let name = path.display();
    let Some(failure) = &report.failure else {
        let mut text = match report.last_seq {
            Some(last) => format!("{name}: OK, {} records, last seq {last}\n", report.records),
            None => format!("{name}: OK, 0 records\n"),
        };
        if !report.recoveries.is_empty() {
            let seqs: Vec<String> = report.recoveries.iter().map(u64::to_string).collect();
            text.push_str(&format!(
                "{name}: note: repaired when reopened (recovery record seq {}); see `bridle audit query {name} --action recovery`\n",
                seqs.join(", ")
            ));
        }
        return (text, true);
    };
    let text = match failure.problem {
        Problem::BadCheckpoint(_) => format!("{name}.head: {failure}\n"),
        _ => format!("{name}:{}: {failure}\n{name}: {} good records before it\n", failure.line, report.records),
    };
    (text, false)
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    fn pick(json: bool, csv: bool) -> Format {
        match (json, csv) {
            (true, _) => Format::Json,
            (_, true) => Format::Csv,
            _ => Format::Table,
        }
    }
}

fn search(path: &Path, query: &Query, format: Format) -> ExitCode {
    let rows = match audit::query(path, query) {
        Ok(rows) => rows,
        Err(error) => return input_error(&error),
    };
    let text = match format {
        Format::Table => audit::format_table(&rows),
        Format::Json => audit::format_json_lines(&rows),
        Format::Csv => audit::format_csv(&rows),
    };
    emit(&text);
    ExitCode::SUCCESS
}

fn input_error(error: &AuditError) -> ExitCode {
    eprintln!("bridle audit: {error}");
    ExitCode::from(BAD_INPUT)
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && error.kind() != io::ErrorKind::BrokenPipe
    {
        tracing::warn!(%error, "cannot write audit output");
    }
}
