//! The session's report socket: `bridle mcp wrap` processes inside the
//! session say which tool calls they have in flight
//! ([`bridle_mcp_gateway::report`]), and the session's correlator
//! attributes what happens meanwhile, above all what the server's own
//! processes do, to the call (`context.mcp`).
//!
//! Where: in host mode a socket file in a root-owned directory anyone may
//! traverse ([`socket_path`]; the command's Landlock domain reaches no
//! abstract socket bound outside it), and a process inside the session's
//! cgroup may report; in the appliance an abstract socket (no file to share
//! with the agents' containers), and any process of the guarded network
//! namespace may report (the socket exists only there). A reported server
//! process must be the reporter itself or one of its descendants. Reports are advisory: they come from the agent's
//! side and can only add `context.mcp` to events.
//!
//! A wrapper's `@ask` on an MCP message comes here too and waits in the
//! session's approvals broker, where `bridle approve` reaches it; asks
//! about anything else are refused.

use std::collections::HashMap;
use std::os::linux::net::SocketAddrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::correlate::{CallGuard, Correlator};
use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{Event, EventKind, McpActive};
use bridle_engine::names::valid_mcp_server_name;
use bridle_mcp_gateway::report::{Answer, MAX_REPORT_LINE, Report, socket_name, socket_path};
use bridle_proxy::lineage::descendant_as_seen_by;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Calls one reporter may have open at once (a bound on its memory here).
const MAX_OPEN: usize = 1024;

/// Wrappers connected at once.
const MAX_REPORTERS: usize = 64;

/// Asks one wrapper may have waiting at once; more are denied at once.
const MAX_ASKS: usize = 8;

/// Calls in flight in the whole correlator past which reports are ignored:
/// every decision scans the calls in flight, and reporters are the agent's
/// code, so they must not be able to make that scan long. The gateways'
/// own calls are not held to it.
const REPORTED_CEILING: usize = 2048;

/// Who may report.
#[derive(Clone, Debug)]
pub(super) enum Scope {
    /// Processes in this cgroup (a full path under the cgroup2 mount) or below.
    Cgroup { mount: PathBuf, session: PathBuf },
    /// Any process that can reach the socket (the guarded namespace).
    Namespace,
}

/// Serves `session`'s report socket until `stop` turns true. Without it
/// (the name is taken) the session runs on, its stdio servers' calls
/// unknown to it; the audit log says so.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    session: &str,
    principal: &str,
    scope: Scope,
    authorizer: &Arc<Authorizer>,
    approvals: &Arc<Approvals>,
    audit: &Arc<AuditLog>,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let bound = match bind(session, &scope) {
        Ok(listener) => listener,
        Err(error) => {
            let message = format!("{error:#}: stdio MCP servers' tool calls are not correlated");
            tracing::warn!("{message}");
            notice(audit, "warn", message);
            return None;
        }
    };
    let shared = Shared {
        authorizer: Arc::clone(authorizer),
        correlator: Arc::clone(authorizer.correlator()),
        approvals: Arc::clone(approvals),
        session: session.to_string(),
        principal: principal.to_string(),
        scope,
        audit: Arc::clone(audit),
    };
    Some(spawn(bound, shared, stop.clone()))
}

/// A bound report socket, and its file if it has one (removed when done).
struct Bound {
    listener: UnixListener,
    file: Option<PathBuf>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Binds `session`'s report socket: a file for a host session (Scope::Cgroup),
/// an abstract name in the appliance.
fn bind(session: &str, scope: &Scope) -> anyhow::Result<Bound> {
    let (listener, file) = match scope {
        Scope::Cgroup { .. } => {
            let path = socket_path(session);
            // The agent's user connects (the directory is root's, anyone
            // may traverse it); who may report is checked per peer.
            let listener = super::control::bind_file(&path, 0o755, 0o666, "the MCP report socket")?;
            (listener, Some(path))
        }
        Scope::Namespace => {
            let name = socket_name(session);
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)
                .with_context(|| format!("naming the MCP report socket @{name}"))?;
            let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
                .with_context(|| format!("binding the MCP report socket @{name}"))?;
            (listener, None)
        }
    };
    listener.set_nonblocking(true).context("making the MCP report socket non-blocking")?;
    let listener = UnixListener::from_std(listener).context("registering the MCP report socket")?;
    Ok(Bound { listener, file })
}

/// Serves reports until `stop` turns true.
fn spawn(bound: Bound, shared: Shared, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let shared = Arc::new(shared);
    tokio::spawn(async move {
        let listener = &bound.listener;
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    // Beyond the bound a reporter is hung up on: its wrapper
                    // carries on without reporting.
                    Ok((stream, _)) if connections.len() < MAX_REPORTERS => {
                        connections.spawn(reporter(Arc::clone(&shared), stream));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "MCP report socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    })
}

struct Shared {
    /// Asks are decided again here, by the session's own policies.
    authorizer: Arc<Authorizer>,
    correlator: Arc<Correlator>,
    /// Where a wrapper's asks wait for a person (`bridle approve`).
    approvals: Arc<Approvals>,
    session: String,
    principal: String,
    scope: Scope,
    audit: Arc<AuditLog>,
}

impl Shared {
    fn notice(&self, level: &str, message: String) {
        notice(&self.audit, level, message);
    }
}

fn notice(audit: &AuditLog, level: &str, message: String) {
    let entry = AuditEntry::Notice { component: "mcp-report".into(), level: level.into(), message };
    if let Err(error) = audit.append(entry) {
        tracing::error!(%error, "could not audit an MCP report notice");
    }
}

/// One wrapper's connection: its calls, until it closes.
async fn reporter(shared: Arc<Shared>, stream: UnixStream) {
    let Some(pid) = stream.peer_cred().ok().and_then(|cred| cred.pid()).and_then(|pid| u32::try_from(pid).ok()) else {
        return;
    };
    if let Err(why) = admitted(&shared.scope, pid) {
        shared.notice("warn", format!("refused MCP call reports from pid {pid}: {why}"));
        return;
    }
    let mut open: HashMap<(String, String), CallGuard> = HashMap::new();
    let (read, write) = stream.into_split();
    let answers = answer_writer(write);
    let mut asks = JoinSet::new();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = MAX_REPORT_LINE as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_REPORT_LINE => {
                shared.notice(
                    "warn",
                    format!("MCP call reports from pid {pid}: a line over {MAX_REPORT_LINE} bytes; hung up"),
                );
                return;
            }
            Ok(_) => {}
        }
        let report = match serde_json::from_slice::<Report>(&line) {
            Ok(report) => report,
            Err(error) => {
                shared.notice("warn", format!("MCP call reports from pid {pid}: {error}; hung up"));
                return;
            }
        };
        match report {
            Report::Begin { server, tool, call_id, server_pid } => {
                let full = open.len() >= MAX_OPEN || shared.correlator.in_flight() >= REPORTED_CEILING;
                if !valid_mcp_server_name(&server) || full {
                    continue;
                }
                // Only the reporter's own descendants act for its calls; a
                // wrapper in a container numbers its server as the container does.
                let server_pid = server_pid.and_then(|child| descendant_as_seen_by(pid, child));
                let active = McpActive { server: server.clone(), tool, call_id: call_id.clone() };
                let guard = shared.correlator.begin_reported(&shared.session, active, server_pid);
                open.insert((server, call_id), guard);
            }
            Report::End { server, call_id } => {
                open.remove(&(server, call_id));
            }
            // Only MCP messages: a wrapper must not put a connect or a
            // request of its choosing before the person who approves.
            Report::Ask { id, event, decision } if matches!(&event.kind, EventKind::Mcp(message) if valid_mcp_server_name(&message.server)) =>
            {
                while asks.try_join_next().is_some() {}
                let event = Event { session: shared.session.clone(), principal: shared.principal.clone(), ..*event };
                let held = hold(&shared, pid, &event, decision);
                if asks.len() >= MAX_ASKS {
                    let reason = format!("the MCP wrapper has {MAX_ASKS} asks waiting already");
                    let _ = answers
                        .send(Answer { id, decision: Decision { effect: Effect::Deny, reason: Some(reason), ..held } });
                    continue;
                }
                let (approvals, answers) = (Arc::clone(&shared.approvals), answers.clone());
                asks.spawn(async move {
                    let decision = match held.effect {
                        Effect::Ask => approvals.ask(&event, held).await,
                        _ => held,
                    };
                    let _ = answers.send(Answer { id, decision });
                });
            }
            Report::Ask { id, .. } => {
                let what = "something not an MCP message of a validly named server";
                shared.notice("warn", format!("MCP wrapper pid {pid} asked about {what} (ask {id}); hung up"));
                return;
            }
        }
    }
}

/// What a wrapper's ask becomes here: the session's policies decide the
/// message again (a deny stands); what they would not hold for a person is
/// held anyway, since the wrapper's policies asked, with the wrapper's
/// reason marked as its own.
fn hold(shared: &Shared, pid: u32, event: &Event, theirs: Decision) -> Decision {
    let ours = shared.authorizer.decide(event);
    match ours.effect {
        Effect::Deny | Effect::Ask => ours,
        _ => {
            let why = theirs.reason.unwrap_or_else(|| "its policies ask".into());
            Decision { effect: Effect::Ask, reason: Some(format!("the MCP wrapper (pid {pid}) asks: {why}")), ..ours }
        }
    }
}

/// Writes answers to the wrapper as they are decided.
fn answer_writer(mut write: OwnedWriteHalf) -> mpsc::UnboundedSender<Answer> {
    let (answers, mut queue) = mpsc::unbounded_channel::<Answer>();
    tokio::spawn(async move {
        while let Some(answer) = queue.recv().await {
            let mut line = serde_json::to_vec(&answer).unwrap_or_default();
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    answers
}

/// Whether process `pid` may report for this session.
fn admitted(scope: &Scope, pid: u32) -> Result<(), String> {
    let Scope::Cgroup { mount, session } = scope else { return Ok(()) };
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| format!("its cgroup: {e}"))?;
    let relative = cgroups.lines().find_map(|line| line.strip_prefix("0::")).ok_or("it has no cgroup v2 path")?;
    let path = mount.join(relative.trim_start_matches('/'));
    if in_session(&path, session) { Ok(()) } else { Err(format!("it is not in the session (cgroup {relative})")) }
}

fn in_session(path: &Path, session: &Path) -> bool {
    path.starts_with(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_session_cgroup_and_below_may_report() {
        let session = Path::new("/sys/fs/cgroup/bridle/run-7");
        assert!(in_session(Path::new("/sys/fs/cgroup/bridle/run-7"), session));
        assert!(in_session(Path::new("/sys/fs/cgroup/bridle/run-7/x"), session));
        assert!(!in_session(Path::new("/sys/fs/cgroup/bridle/run-71"), session));
        assert!(!in_session(Path::new("/sys/fs/cgroup/user.slice"), session));
        assert!(admitted(&Scope::Namespace, 1).is_ok());
        let ours = Scope::Cgroup { mount: PathBuf::from("/nonexistent"), session: session.to_path_buf() };
        assert!(admitted(&ours, std::process::id()).is_err(), "a process outside the session is refused");
    }
}
