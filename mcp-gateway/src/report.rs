//! Telling the session's Bridle which tool calls a stdio wrapper has in
//! flight, so what the server's processes (and the agent) do meanwhile is
//! decided with `context.mcp`. `bridle mcp wrap` runs as the agent's user
//! inside the guarded session, in its own process: its calls are only
//! known to the session's Bridle (which decides the session's
//! connections) if it says so.
//!
//! The same socket carries the wrapper's `@ask` decisions: the session's
//! approvals broker holds them, so `bridle approve` (run as root, which the
//! wrapper is not) answers them like any other ask in the session.
//!
//! Transport: a Unix socket named for the session, which checks each
//! peer's process (SO_PEERCRED). A host session serves it at
//! [`socket_path`], in a root-owned directory anyone may traverse: its
//! command's Landlock domain reaches no abstract socket bound outside it.
//! The appliance serves the abstract [`socket_name`] in the guarded network
//! namespace (its agents' containers share no directory with it); a
//! wrapper tries the path, then the name.
//! One JSON [`Report`] per line up, one [`Answer`] per line down; a
//! connection's calls end when it closes.
//!
//! What it is not: a boundary against the agent. The wrapper is the
//! agent's code and may say nothing; a report can only add `context.mcp`
//! to events, for policies that narrow what a server does during its calls,
//! and ask a person about an MCP message the wrapper itself enforces.

use std::collections::HashMap;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bridle_engine::decision::Decision;
use bridle_engine::event::{Event, McpActive};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

/// The longest report line a session reads (an ask carries the call's
/// arguments; a longer one is asked about in the wrapper alone).
pub const MAX_REPORT_LINE: usize = 1 << 20;

/// One line from a wrapper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Report {
    /// Call `call_id` of `tool` on `server` was forwarded; `server_pid` is
    /// the server's process, whose descendants act for it.
    Begin { server: String, tool: String, call_id: String, server_pid: Option<u32> },
    /// It was answered (or will never be).
    End { server: String, call_id: String },
    /// Hold `event` for a person: the wrapper's `@ask` `decision` on an MCP
    /// message. Answered by an [`Answer`] with the same `id`.
    Ask { id: u64, event: Box<Event>, decision: Decision },
}

/// The session's answer to an [`Report::Ask`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub id: u64,
    pub decision: Decision,
}

/// The abstract socket the appliance serves reports on.
pub fn socket_name(session: &str) -> String {
    format!("bridle/{session}/mcp-calls")
}

/// The directory of host sessions' report sockets.
pub const SOCKET_DIR: &str = "/run/bridle-mcp";

/// The socket a host session serves reports on.
pub fn socket_path(session: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{session}.sock"))
}

/// The `bridle run` session this process runs in, from its cgroup v2 path
/// (`…/bridle/run-<pid>/…`), else the appliance's (`up`).
pub fn own_session() -> String {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    session_of(&cgroups).unwrap_or_else(|| "up".to_string())
}

fn session_of(cgroups: &str) -> Option<String> {
    let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mut parts = path.split('/').skip_while(|part| *part != "bridle").skip(1);
    parts.next().filter(|id| id.starts_with("run-")).map(str::to_string)
}

/// Asks waiting for the session's answer, by id; `None` once the session
/// hung up (no answer can come any more).
type Waiting = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Decision>>>>>;

/// A connection to the session's report socket.
#[derive(Clone, Debug)]
pub struct Reporter {
    lines: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Waiting,
    next: Arc<AtomicU64>,
}

impl Reporter {
    /// Connects to `session`'s socket; the error says why there is none
    /// (not under Bridle, or a Bridle without it). Needs a Tokio runtime.
    pub fn connect(session: &str) -> io::Result<Reporter> {
        let path = socket_path(session);
        let (stream, shown) = match std::os::unix::net::UnixStream::connect(&path) {
            Ok(stream) => (stream, path.display().to_string()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket_name(session))?;
                (std::os::unix::net::UnixStream::connect_addr(&addr)?, format!("@{}", socket_name(session)))
            }
            Err(error) => return Err(error),
        };
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        // Anyone may bind an abstract name: only root's is the session's.
        let uid = stream.peer_cred()?.uid();
        if uid != 0 {
            return Err(io::Error::other(format!("{shown} is served by uid {uid}, not by Bridle")));
        }
        let (read, mut write) = stream.into_split();
        let (lines, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(line) = queue.recv().await {
                if let Err(error) = write.write_all(&line).await {
                    tracing::debug!(%error, "the session's report socket closed");
                    return;
                }
            }
        });
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(read_answers(read, Arc::clone(&waiting)));
        Ok(Reporter { lines, waiting, next: Arc::new(AtomicU64::new(1)) })
    }

    /// Holds `event` in the session's approvals broker; `None` when the
    /// session cannot be asked (it went away).
    pub async fn ask(&self, event: &Event, decision: Decision) -> Option<Decision> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let line = encode(&Report::Ask { id, event: Box::new(event.clone()), decision });
        if line.len() > MAX_REPORT_LINE {
            return None;
        }
        let (answer, answered) = oneshot::channel();
        lock(&self.waiting).as_mut()?.insert(id, answer);
        if self.lines.send(line).is_err() {
            lock(&self.waiting).as_mut().map(|waiting| waiting.remove(&id));
            return None;
        }
        answered.await.ok()
    }

    /// Reports `active` in flight until the guard drops.
    pub fn begin(&self, active: &McpActive, server_pid: Option<u32>) -> ReportGuard {
        let _ = self.lines.send(encode(&Report::Begin {
            server: active.server.clone(),
            tool: active.tool.clone(),
            call_id: active.call_id.clone(),
            server_pid,
        }));
        ReportGuard { lines: self.lines.clone(), server: active.server.clone(), call_id: active.call_id.clone() }
    }
}

/// Reads the session's answers until it hangs up; then every ask still
/// waiting learns there is no answer.
async fn read_answers(read: tokio::net::unix::OwnedReadHalf, waiting: Waiting) {
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Answer>(&line) {
            Ok(answer) => {
                if let Some(waiter) = lock(&waiting).as_mut().and_then(|waiting| waiting.remove(&answer.id)) {
                    let _ = waiter.send(answer.decision);
                }
            }
            Err(error) => tracing::warn!(%error, "the session sent an answer that cannot be read"),
        }
    }
    lock(&waiting).take();
}

/// One report line, newline included.
fn encode(report: &Report) -> Vec<u8> {
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.push(b'\n');
    line
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reported call; dropping it reports the end.
#[derive(Debug)]
pub struct ReportGuard {
    lines: mpsc::UnboundedSender<Vec<u8>>,
    server: String,
    call_id: String,
}

impl Drop for ReportGuard {
    fn drop(&mut self) {
        let end = Report::End { server: std::mem::take(&mut self.server), call_id: std::mem::take(&mut self.call_id) };
        let _ = self.lines.send(encode(&end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_read_from_the_cgroup_path() {
        assert_eq!(session_of("0::/bridle/run-4242\n").as_deref(), Some("run-4242"));
        assert_eq!(session_of("12:pids:/x\n0::/bridle/run-7/agent\n").as_deref(), Some("run-7"));
        assert_eq!(session_of("0::/user.slice/session-3.scope\n"), None);
        assert_eq!(session_of("0::/bridle/up\n"), None);
        assert_eq!(session_of(""), None);
    }

    #[test]
    fn reports_are_one_json_object_per_line() {
        let begin =
            Report::Begin { server: "fs".into(), tool: "search".into(), call_id: "7".into(), server_pid: Some(9) };
        let text = serde_json::to_string(&begin).expect("json");
        assert_eq!(text, r#"{"op":"begin","server":"fs","tool":"search","call_id":"7","server_pid":9}"#);
        assert_eq!(serde_json::from_str::<Report>(&text).expect("parse"), begin);
        assert!(serde_json::from_str::<Report>(r#"{"op":"end","server":"fs","call_id":"7","x":1}"#).is_err());
    }
}
