//! The gateway's one door to the engine: decide an event, hold an `ask`
//! in the approvals broker, and put every message on the audit record.

use std::sync::Arc;

use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::correlate::CallGuard;
use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{Event, McpActive};

use crate::report::{ReportGuard, Reporter};

/// A tool call in flight, here and (from a wrapper) in the session's
/// Bridle; it ends when this drops.
#[derive(Debug)]
pub struct InFlight {
    _local: CallGuard,
    _remote: Option<ReportGuard>,
}

/// Decides and records. Cheap to share: everything inside is an `Arc`.
#[derive(Clone, Debug)]
pub struct Enforcer {
    authorizer: Arc<Authorizer>,
    approvals: Arc<Approvals>,
    audit: Option<Arc<AuditLog>>,
    /// The session's Bridle, when this gateway runs outside it (a stdio
    /// wrapper): calls in flight are reported there too.
    reporter: Option<Reporter>,
    /// `mcp-gateway/<server>`, for notices.
    component: String,
}

impl Enforcer {
    pub fn new(
        authorizer: Arc<Authorizer>,
        approvals: Arc<Approvals>,
        audit: Option<Arc<AuditLog>>,
        server: &str,
    ) -> Self {
        Enforcer { authorizer, approvals, audit, reporter: None, component: format!("mcp-gateway/{server}") }
    }

    /// Reports calls in flight to the session's Bridle as well.
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Reports tool call `active` of `session` in flight until the guard
    /// drops, so what happens meanwhile carries `context.mcp`.
    pub fn begin_call(&self, session: &str, active: McpActive, server_pid: Option<u32>) -> InFlight {
        let remote = self.reporter.as_ref().map(|reporter| reporter.begin(&active, server_pid));
        let local = self.authorizer.correlator().begin(session, active, server_pid);
        InFlight { _local: local, _remote: remote }
    }

    /// The engine's decision, not yet held or recorded.
    pub fn decide(&self, event: &Event) -> Decision {
        self.authorizer.decide(event)
    }

    /// Waits for a person on an `ask` (or the broker's timeout) and records
    /// the answer; other decisions are recorded as they are.
    /// A wrapper inside a session asks the session's broker, which a person
    /// can reach (`bridle approve`); its own is the fallback.
    pub async fn settle(&self, event: Event, decision: Decision) -> Decision {
        let decision = match (&self.reporter, decision.effect) {
            (Some(reporter), Effect::Ask) => match reporter.ask(&event, decision.clone()).await {
                Some(answered) => answered,
                None => self.approvals.ask(&event, decision).await,
            },
            (None, Effect::Ask) => self.approvals.ask(&event, decision).await,
            _ => decision,
        };
        self.record(event, decision.clone());
        decision
    }

    /// Records a decision made for `event`.
    pub fn record(&self, event: Event, decision: Decision) {
        self.append(AuditEntry::Decision { event, decision });
    }

    /// Records a message no policy governs.
    pub fn observe(&self, event: Event) {
        let decision = Decision::observation(self.authorizer.generation());
        self.append(AuditEntry::Decision { event, decision });
    }

    /// Records a message no policy governs once `finish` has completed its
    /// event (with the findings of a scan of the message, say): both run
    /// when the record is appended, after the message went on
    /// (`AuditLog::append_later_with`).
    pub fn observe_later(&self, event: Event, finish: impl FnOnce(&mut Event) + Send + 'static) {
        let Some(audit) = &self.audit else { return };
        let decision = Decision::observation(self.authorizer.generation());
        audit.append_later_with(move || {
            let mut event = event;
            finish(&mut event);
            AuditEntry::Decision { event, decision }
        });
    }

    /// Records something a person should know (bad input, pins, hidden
    /// tools) at `level` (`info`, `warn`, `error`); warnings also go to stderr.
    pub fn notice(&self, level: &str, message: String) {
        match level {
            "error" => tracing::error!(component = %self.component, "{message}"),
            "warn" => tracing::warn!(component = %self.component, "{message}"),
            _ => tracing::info!(component = %self.component, "{message}"),
        }
        self.append(AuditEntry::Notice { component: self.component.clone(), level: level.to_string(), message });
    }

    /// Every record is made on a message's path: appended once the task
    /// yields, after the message went on (the log keeps the order, and
    /// logs and counts what it could not write; the gateway keeps going
    /// rather than take the agent's tools down with it).
    fn append(&self, entry: AuditEntry) {
        if let Some(audit) = &self.audit {
            audit.append_later(entry);
        }
    }
}
