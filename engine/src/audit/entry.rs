//! What one audit record says, and the summary columns the index keeps.
//!
//! The entry's fields sit at the top level of the record beside `seq`,
//! `time`, `prev` and `hash`, tagged by `type` (`decision`, `policy_reload`,
//! `recovery`, `notice`, `approval_requested`, `approval_resolved`); no
//! variant may use those four names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approvals::ApprovalOutcome;
use crate::decision::{Decision, Effect};
use crate::event::{Event, EventKind, McpPayload};

/// One audit log entry. Nearly every entry is a Decision, so its event is
/// not boxed (that would cost an allocation per decision and save nothing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEntry {
    /// An event and what the engine decided for it.
    Decision { event: Event, decision: Decision },
    /// A policy set was (re)loaded, or a reload failed and the last good set stayed.
    PolicyReload {
        ok: bool,
        generation: u64,
        source: String,
        policies: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Written by the log itself after it repaired a damaged tail on open.
    Recovery {
        message: String,
        /// Byte offset in the log where the damage started.
        offset: u64,
        /// Where the damaged bytes were moved, if there were any.
        preserved_to: Option<String>,
        /// Records the checkpoint vouched for are gone or were rewritten
        /// (or there was no checkpoint to tell): the log is not whole, and
        /// `bridle audit verify` fails on this record from now on. A
        /// partial last line (a crash mid-write) is not a loss.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lost: bool,
    },
    /// Something a component wants on the record (start, stop, degraded mode…).
    Notice { component: String, level: String, message: String },
    /// An `ask` decision was held for a person under approval `id`
    /// (identical requests coalesce: one record per pending approval).
    ApprovalRequested { id: String, event: Event, decision: Decision },
    /// Approval `id` ended; `decision` is what its waiters were given.
    ApprovalResolved {
        id: String,
        outcome: ApprovalOutcome,
        /// Who approved or denied (absent for a timeout or a cancellation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        decision: Decision,
    },
}

impl AuditEntry {
    /// The `type` tag as it appears in JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            AuditEntry::Decision { .. } => "decision",
            AuditEntry::PolicyReload { .. } => "policy_reload",
            AuditEntry::Recovery { .. } => "recovery",
            AuditEntry::Notice { .. } => "notice",
            AuditEntry::ApprovalRequested { .. } => "approval_requested",
            AuditEntry::ApprovalResolved { .. } => "approval_resolved",
        }
    }

    /// When it happened, if the entry knows better than the record's
    /// append time (a decision carries its event's time).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            AuditEntry::Decision { event, .. } => Some(event.time),
            _ => None,
        }
    }

    /// The event kind (`net.connect`, `file`…) of a decision, else the type
    /// (approval records keep their type, so a kind filter finds decisions only).
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEntry::Decision { event, .. } => event.kind_name(),
            other => other.type_name(),
        }
    }

    /// The Cedar action a decision (or an approval request) was asked as,
    /// e.g. `Net::Action::"Connect"`.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            AuditEntry::Decision { event, .. } | AuditEntry::ApprovalRequested { event, .. } => {
                cedar_action(&event.kind)
            }
            _ => None,
        }
    }

    /// A decision's effect: `ask` for an approval request, the answer
    /// (`allow`/`deny`) for its resolution.
    pub fn effect(&self) -> Option<Effect> {
        match self {
            AuditEntry::Decision { decision, .. }
            | AuditEntry::ApprovalRequested { decision, .. }
            | AuditEntry::ApprovalResolved { decision, .. } => Some(decision.effect),
            _ => None,
        }
    }

    /// The agent of a decision or an approval request.
    pub fn principal(&self) -> Option<&str> {
        match self {
            AuditEntry::Decision { event, .. } | AuditEntry::ApprovalRequested { event, .. } => Some(&event.principal),
            _ => None,
        }
    }

    /// A short name for what was acted on: `host:port`, a DNS name, a file
    /// path, `server/tool`; the source or component for other entries.
    pub fn resource(&self) -> Option<String> {
        match self {
            AuditEntry::Decision { event, .. } | AuditEntry::ApprovalRequested { event, .. } => {
                Some(resource(&event.kind))
            }
            AuditEntry::PolicyReload { source, .. } => Some(source.clone()),
            AuditEntry::Recovery { preserved_to, .. } => preserved_to.clone(),
            AuditEntry::Notice { component, .. } => Some(component.clone()),
            // The id links it to its request, whose resource is indexed.
            AuditEntry::ApprovalResolved { id, .. } => Some(format!("approval {id}")),
        }
    }

    /// Why: the decision's reason, a reload error, the message.
    pub fn reason(&self) -> Option<&str> {
        match self {
            AuditEntry::Decision { decision, .. }
            | AuditEntry::ApprovalRequested { decision, .. }
            | AuditEntry::ApprovalResolved { decision, .. } => decision.reason.as_deref(),
            AuditEntry::PolicyReload { error, .. } => error.as_deref(),
            AuditEntry::Recovery { message, .. } | AuditEntry::Notice { message, .. } => Some(message),
        }
    }
}

/// The Cedar action text for an event; `None` for telemetry no policy sees.
/// A rename is decided as Delete on its path (and Create on its target).
pub fn cedar_action(kind: &EventKind) -> Option<&'static str> {
    crate::request::primary_action(kind).map(crate::request::Action::cedar_str)
}

fn resource(kind: &EventKind) -> String {
    match kind {
        EventKind::Connect(c) => {
            let host = match (&c.name, c.ip) {
                (Some(name), _) => name.clone(),
                (None, Some(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
                (None, Some(ip)) => ip.to_string(),
                (None, None) => "?".to_string(),
            };
            format!("{host}:{}", c.port)
        }
        EventKind::DnsQuery(q) => q.qname.clone(),
        EventKind::HttpRequest(r) => format!("{}:{}", r.host, r.port),
        EventKind::File(f) => match &f.target {
            Some(target) => format!("{} -> {target}", f.path),
            None => f.path.clone(),
        },
        EventKind::Mcp(m) => match &m.message {
            McpPayload::ToolsCall { name, .. } | McpPayload::PromptsGet { name, .. } => {
                format!("{}/{name}", m.server)
            }
            McpPayload::ResourcesRead { uri } => format!("{}/{uri}", m.server),
            _ => m.server.clone(),
        },
        EventKind::ProcessExec(p) => p.exe.clone(),
        EventKind::ProcessExit(p) => format!("pid {}", p.pid),
    }
}

#[cfg(test)]
mod tests;
