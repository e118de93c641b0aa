//! `bridle approvals`, `bridle approve <ID>`, `bridle deny <ID>`: answering
//! the requests `@ask` policies hold, through the control socket of every
//! running Bridle (`/run/bridle/<session>.sock`, root only; see
//! `host::control`).
//!
//! Exit codes: 0 ok; 1 no pending approval has that id; 2 no running
//! Bridle, or not root.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bridle_engine::approvals::PendingView;
use chrono::Utc;

use crate::host::control::{ErrorCode, Request, Response, SOCKET_DIR};

const UNKNOWN_ID: u8 = 1;
const UNREACHABLE: u8 = 2;

/// How long one socket may take to answer (a wedged Bridle must not hang the CLI).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `bridle approvals [--json]`
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array (id, since, session, principal, summary, reason,
    /// policies, waiters) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `bridle approve|deny <ID> [--by NAME]`
#[derive(Debug, Clone, clap::Args)]
pub struct AnswerArgs {
    /// The approval id, as `bridle approvals` lists it.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Who answers, for the audit log and the agent's reason (default:
    /// $SUDO_USER, else $USER, else root).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

/// Why a command could not do what it was asked, with its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
}

/// Lists every pending approval.
pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let listing = match pending_in(Path::new(SOCKET_DIR)) {
        Ok(listing) => listing,
        Err(failure) => return Ok(report("bridle approvals", failure)),
    };
    for problem in &listing.problems {
        eprintln!("bridle approvals: warning: {problem}");
    }
    let pending = &listing.pending;
    let text = if args.json { serde_json::to_string(pending)? + "\n" } else { table(pending) };
    io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Approves (`approve`) or denies one pending approval.
pub fn answer(args: AnswerArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let by = args.by.or_else(|| std::env::var("SUDO_USER").ok()).or_else(|| std::env::var("USER").ok());
    let by = by.unwrap_or_else(|| "root".into());
    let (verb, done) = if approve { ("approve", "approved") } else { ("deny", "denied") };
    match answer_in(Path::new(SOCKET_DIR), &args.id, approve, &by) {
        Ok(session) => {
            println!("{done} {} (session {session})", args.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => Ok(report(&format!("bridle {verb}"), failure)),
    }
}

fn report(command: &str, failure: Failure) -> ExitCode {
    eprintln!("{command}: {}", failure.message);
    ExitCode::from(failure.code)
}

/// What the reachable Bridles hold, and what went wrong with the others.
#[derive(Debug)]
pub(crate) struct Listing {
    pub pending: Vec<PendingView>,
    pub problems: Vec<String>,
}

/// Every approval pending in the Bridles whose sockets are in `dir`; an
/// error only when none of them answered.
pub(crate) fn pending_in(dir: &Path) -> Result<Listing, Failure> {
    let mut all = Vec::new();
    let mut failures = Vec::new();
    let sockets = sockets(dir)?;
    for (_, path) in &sockets {
        match call(path, &Request::List {}) {
            Ok(Response { ok: true, pending: Some(pending), .. }) => all.extend(pending),
            Ok(response) => failures.push(refused(path, &response)),
            Err(error) => failures.push(unreachable(path, &error)),
        }
    }
    if failures.len() == sockets.len() {
        return Err(summarize(failures));
    }
    all.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
    Ok(Listing { pending: all, problems: failures })
}

/// Answers approval `id` in whichever Bridle in `dir` holds it; returns
/// that Bridle's session.
pub(crate) fn answer_in(dir: &Path, id: &str, approve: bool, by: &str) -> Result<String, Failure> {
    let request = match approve {
        true => Request::Approve { id: id.to_string(), by: Some(by.to_string()) },
        false => Request::Deny { id: id.to_string(), by: Some(by.to_string()) },
    };
    let mut failures = Vec::new();
    let mut asked = 0;
    for (session, path) in sockets(dir)? {
        match call(&path, &request) {
            Ok(Response { ok: true, .. }) => return Ok(session),
            Ok(Response { code: Some(ErrorCode::UnknownId), .. }) => asked += 1,
            Ok(response) => failures.push(refused(&path, &response)),
            Err(error) => failures.push(unreachable(&path, &error)),
        }
    }
    if asked > 0 {
        let message = format!("no pending approval {id:?} (see `bridle approvals`)");
        return Err(Failure { code: UNKNOWN_ID, message });
    }
    Err(summarize(failures))
}

/// `(session, socket)` for every `*.sock` in `dir`.
fn sockets(dir: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => no_bridle(dir),
        _ => Failure { code: UNREACHABLE, message: format!("cannot read {}: {error} (run as root)", dir.display()) },
    })?;
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let session = path.file_name()?.to_str()?.strip_suffix(".sock")?.to_string();
            Some((session, path))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(no_bridle(dir));
    }
    Ok(found)
}

fn no_bridle(dir: &Path) -> Failure {
    Failure { code: UNREACHABLE, message: format!("no running bridle (no control socket in {})", dir.display()) }
}

/// One request, one response line, over a socket root made (not one
/// someone else left where Bridle's would be: a socket belongs to whoever
/// bound it).
pub(crate) fn call(path: &Path, request: &Request) -> io::Result<Response> {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::symlink_metadata(path)?.uid();
    if owner != 0 {
        let message = format!("owned by uid {owner}, not by root: not a Bridle control socket");
        return Err(io::Error::other(message));
    }
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

fn refused(path: &Path, response: &Response) -> String {
    format!("{}: {}", path.display(), response.error.as_deref().unwrap_or("refused"))
}

fn unreachable(path: &Path, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::PermissionDenied => format!("{}: permission denied (run as root)", path.display()),
        // A socket left by a Bridle that died: nothing listens.
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
            format!("{}: no bridle listening (stale socket)", path.display())
        }
        _ => format!("{}: {error}", path.display()),
    }
}

fn summarize(failures: Vec<String>) -> Failure {
    let message = match failures.is_empty() {
        true => "no running bridle answered".to_string(),
        false => failures.join("; "),
    };
    Failure { code: UNREACHABLE, message }
}

/// ID, SESSION, AGE, WHAT, POLICY REASON; agent-chosen text cannot forge lines.
fn table(pending: &[PendingView]) -> String {
    if pending.is_empty() {
        return "no requests await approval\n".into();
    }
    let now = Utc::now();
    let rows: Vec<[String; 5]> = pending
        .iter()
        .map(|p| {
            let age = (now - p.since).num_seconds().max(0);
            let what = if p.waiters > 1 { format!("{} (x{})", p.summary, p.waiters) } else { p.summary.clone() };
            [p.id.clone(), p.session.clone(), format_age(age), what, p.reason.clone().unwrap_or_default()]
                .map(|cell| printable(&cell))
        })
        .collect();
    let header = ["ID", "SESSION", "AGE", "WHAT", "POLICY REASON"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn format_age(seconds: i64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// Agent text made safe for a terminal: control characters escaped, and so
/// are the invisible ones that reorder or hide text (bidi overrides and
/// isolates, zero-width characters, the BOM), or a tool named
/// `\u{202e}elif_daer` would read `read_file`.
fn printable(cell: &str) -> String {
    let hidden = |c: char| {
        matches!(c, '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}')
            || matches!(c, '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
            // Tag characters, variation selectors and the Hangul fillers:
            // invisible, and able to carry text a reader does not see.
            || matches!(c, '\u{e0000}'..='\u{e007f}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}')
            || matches!(c, '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}')
    };
    cell.chars()
        .map(|c| if c.is_control() || hidden(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_escapes_agent_text() {
        let view = PendingView {
            id: "k3x9m2p7qa".into(),
            since: Utc::now() - chrono::Duration::seconds(75),
            session: "run-42".into(),
            principal: "claude".into(),
            summary: "Net::Action::\"Connect\" evil.test\n:443".into(),
            reason: Some("new hosts need a person".into()),
            policies: vec!["ask-new-hosts".into()],
            waiters: 2,
        };
        let text = table(&[view]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID          SESSION  AGE    WHAT"), "{text}");
        assert!(
            lines[1].starts_with("k3x9m2p7qa  run-42   1m15s  Net::Action::\"Connect\" evil.test\\n:443 (x2)"),
            "{text}"
        );
        assert!(lines[1].ends_with("new hosts need a person"));
        assert_eq!(table(&[]), "no requests await approval\n");
        assert_eq!(printable("\u{202e}elif_daer\u{200b}"), "\\u{202e}elif_daer\\u{200b}");
        assert_eq!(printable("café ünïcode"), "café ünïcode", "visible text stays as it is");
        assert_eq!(printable("a\u{e0041}b\u{3164}"), "a\\u{e0041}b\\u{3164}");
        assert_eq!((format_age(5), format_age(3725)), ("5s".to_string(), "1h02m".to_string()));
    }
}
