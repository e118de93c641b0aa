//! Correlation: which MCP tool call is in flight while something else
//! happens. The MCP gateways report each forwarded `tools/call` here
//! ([`Correlator::begin`]) and drop the returned [`CallGuard`] when its
//! answer comes (or never will); every other capture point asks
//! [`Correlator::attribute`] before deciding, so the event carries
//! `mcp` (`context.mcp` in policies) and the audit record shows it.
//!
//! Which call: one whose server's process tree holds the acting process
//! (a stdio server doing something during its own call), else the latest
//! call of the session still in flight (the agent acting while it waits).
//! The capture point supplies the acting process's ancestry; this module
//! reads nothing itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::event::{Event, EventKind, McpActive};

/// Tool calls in flight, across every session of one Bridle process.
#[derive(Debug, Default)]
pub struct Correlator {
    calls: Mutex<Vec<Call>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Call {
    token: u64,
    session: String,
    active: McpActive,
    /// The stdio server's process: its descendants act for this call.
    server_pid: Option<u32>,
    /// Recorded by a gateway of this process, not reported by the agent's side.
    trusted: bool,
}

/// A call in flight; it ends when this is dropped.
#[derive(Debug)]
pub struct CallGuard {
    correlator: Weak<Correlator>,
    token: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(correlator) = self.correlator.upgrade() {
            lock(&correlator.calls).retain(|call| call.token != self.token);
        }
    }
}

impl Correlator {
    /// Call `active` of `session`, which a gateway of this process forwarded,
    /// is in flight until the guard drops; `server_pid` is its stdio
    /// server's process, when there is one.
    pub fn begin(self: &Arc<Self>, session: &str, active: McpActive, server_pid: Option<u32>) -> CallGuard {
        self.insert(session, active, server_pid, true)
    }

    /// A call reported by a process of the session (a stdio wrapper): the
    /// agent's own word, so it never displaces a call a gateway recorded.
    pub fn begin_reported(self: &Arc<Self>, session: &str, active: McpActive, server_pid: Option<u32>) -> CallGuard {
        self.insert(session, active, server_pid, false)
    }

    fn insert(self: &Arc<Self>, session: &str, active: McpActive, server_pid: Option<u32>, trusted: bool) -> CallGuard {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.calls).push(Call { token, session: session.to_string(), active, server_pid, trusted });
        CallGuard { correlator: Arc::downgrade(self), token }
    }

    /// Whether attribution would use the acting process's ancestry (some
    /// call in flight has a server process): capture points read it only then.
    pub fn wants_lineage(&self) -> bool {
        lock(&self.calls).iter().any(|call| call.server_pid.is_some())
    }

    /// The call `event` happened during, if any, given the acting
    /// process and its ancestors (nearest first; empty when unknown).
    /// MCP messages themselves are not "during" a call.
    pub fn attribute(&self, event: &mut Event, lineage: &[u32]) {
        if event.mcp.is_some() || matches!(event.kind, EventKind::Mcp(_)) {
            return;
        }
        event.mcp = self.during(&event.session, lineage);
    }

    /// The call in flight for an action of `session` by `lineage`: the
    /// latest one a gateway recorded; else a reported one whose server's
    /// process tree holds the actor (nearest server first); else the
    /// latest reported one.
    pub fn during(&self, session: &str, lineage: &[u32]) -> Option<McpActive> {
        let calls = lock(&self.calls);
        let ours = || calls.iter().rev().filter(|call| call.session == session);
        let trusted = ours().find(|call| call.trusted);
        let by_process = || lineage.iter().find_map(|pid| ours().find(|call| call.server_pid == Some(*pid)));
        trusted.or_else(by_process).or_else(|| ours().next()).map(|call| call.active.clone())
    }

    /// Calls in flight now (for status, tests and bounds on reports).
    pub fn in_flight(&self) -> usize {
        lock(&self.calls).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Connect, McpDirection, McpMessage, McpPayload};

    fn active(server: &str, tool: &str, id: &str) -> McpActive {
        McpActive { server: server.into(), tool: tool.into(), call_id: id.into() }
    }

    fn connect(session: &str) -> Event {
        Event::now(session, "agent", EventKind::Connect(Connect::tls_to("a.test", 443)))
    }

    #[test]
    fn events_during_a_call_carry_it_until_the_guard_drops() {
        let correlator = Arc::new(Correlator::default());
        let mut before = connect("s1");
        correlator.attribute(&mut before, &[]);
        assert_eq!(before.mcp, None);
        let guard = correlator.begin("s1", active("fs", "search", "7"), None);
        let mut during = connect("s1");
        correlator.attribute(&mut during, &[]);
        assert_eq!(during.mcp, Some(active("fs", "search", "7")));
        let mut elsewhere = connect("s2");
        correlator.attribute(&mut elsewhere, &[]);
        assert_eq!(elsewhere.mcp, None, "another session's call is not this one's");
        drop(guard);
        let mut after = connect("s1");
        correlator.attribute(&mut after, &[]);
        assert_eq!(after.mcp, None);
        assert_eq!(correlator.in_flight(), 0);
    }

    #[test]
    fn the_server_process_tree_picks_its_own_call_over_the_latest() {
        let correlator = Arc::new(Correlator::default());
        let _fs = correlator.begin_reported("s1", active("fs", "search", "1"), Some(100));
        let _web = correlator.begin_reported("s1", active("web", "fetch", "2"), Some(200));
        assert!(correlator.wants_lineage());
        // A grandchild of the fs server (pids 300 → 250 → 100).
        assert_eq!(correlator.during("s1", &[300, 250, 100, 1]), Some(active("fs", "search", "1")));
        // The agent itself: the latest call.
        assert_eq!(correlator.during("s1", &[400, 1]), Some(active("web", "fetch", "2")));
        assert_eq!(correlator.during("s1", &[]), Some(active("web", "fetch", "2")));
    }

    #[test]
    fn a_reported_call_never_displaces_one_a_gateway_recorded() {
        let correlator = Arc::new(Correlator::default());
        let _real = correlator.begin("s1", active("web", "fetch", "1"), None);
        let _claimed = correlator.begin_reported("s1", active("web", "benign", "2"), Some(300));
        assert_eq!(correlator.during("s1", &[300, 1]), Some(active("web", "fetch", "1")));
        assert_eq!(correlator.during("s1", &[]), Some(active("web", "fetch", "1")));
    }

    #[test]
    fn mcp_messages_are_not_during_a_call() {
        let correlator = Arc::new(Correlator::default());
        let _guard = correlator.begin("s1", active("fs", "search", "1"), None);
        let message = McpMessage {
            server: "fs".into(),
            direction: McpDirection::ToServer,
            id: Some("2".into()),
            message: McpPayload::ToolsList,
            tool_changed: false,
            findings: Vec::new(),
        };
        let mut event = Event::now("s1", "agent", EventKind::Mcp(message));
        correlator.attribute(&mut event, &[]);
        assert_eq!(event.mcp, None);
    }
}
