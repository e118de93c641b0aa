//! The approvals broker: where an `ask` decision waits for a person.
//!
//! A capture point that gets [`Effect::Ask`] awaits [`Approvals::ask`]: the
//! request is registered under a short random id, recorded as an
//! `approval_requested` audit entry and held until someone resolves it
//! ([`Approvals::resolve`]: `bridle approve` / `bridle deny` through the
//! control socket, later the console) or the timeout passes. The answer is
//! an ordinary [`Decision`]: Allow "approved by <who>", Deny "denied by
//! <who>" or Deny "no approval within <n>s". Every end is an
//! `approval_resolved` entry.
//!
//! Identical requests (same session, same authorization requests as Cedar
//! sees them) share one pending approval, so an agent that retries does not
//! flood the queue, and every waiter gets the same outcome. The full request
//! is the key, not just action and resource: a person who approved a `GET`
//! must not have approved the `POST` beside it. Where the event does not
//! show all a request carries, the capture point says how far it may be
//! merged ([`Merge`]): an HTTP request only with requests of the same head
//! (query and header values) and body, by their digest, and one whose body
//! streams past what was read before the decision not at all (what a
//! person approved must not carry out a different payload that joined it). A waiter that goes away (its
//! client disconnected, so its future was dropped) leaves; when the last one
//! leaves, the approval is withdrawn and audited as cancelled.
//!
//! Memory is bounded: past the limit ([`MAX_PENDING`] by default) of
//! distinct pending approvals, `ask` denies at once. `ask` needs a tokio
//! runtime with the time driver; the broker does no I/O besides appending
//! audit records.

mod text;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{AuditEntry, AuditLog, Redactor};
use crate::decision::{Decision, Effect};
use crate::event::Event;
use crate::request::{AuthzRequest, Principal};
use text::{IdSource, clean_name, cut, summary, within};

/// Default bound on distinct pending approvals.
pub const MAX_PENDING: usize = 1024;

/// How a pending approval ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalOutcome {
    Approved,
    Denied,
    /// Nobody answered before the timeout: denied.
    TimedOut,
    /// Every waiter went away before an answer.
    Cancelled,
}

/// One pending approval, as `bridle approvals` and the console show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    /// What `bridle approve <id>` takes.
    pub id: String,
    /// When the first waiter asked.
    pub since: DateTime<Utc>,
    pub session: String,
    pub principal: String,
    /// What is asked, e.g. `Http::Action::"Request" GET https://x.test/y`
    /// (query values and token-shaped strings redacted).
    pub summary: String,
    /// The `@reason` of the policy that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `@ask` policies that held it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// How many identical requests wait on it (retries coalesce).
    pub waiters: usize,
}

/// Why [`Approvals::resolve`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No approval with this id is pending: a typo, or it was already
    /// approved, denied, timed out or withdrawn.
    #[error("no pending approval {id:?} (unknown, or already resolved)")]
    Unknown { id: String },
}

/// The broker. Share it as `Arc<Approvals>`: every method takes `&self`.
pub struct Approvals {
    timeout: Duration,
    limit: usize,
    audit: Option<Arc<AuditLog>>,
    /// Scrubs summaries like audit records are scrubbed (URL queries, tokens).
    redactor: Redactor,
    ids: IdSource,
    state: Mutex<State>,
}

/// Identical requests: the session, what Cedar was asked, and the digest
/// of what it was not shown.
type Key = (String, Vec<AuthzRequest>, Option<[u8; 32]>);

/// Which other asks one may share a pending approval with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Asks whose events ask Cedar the same: the event shows all the
    /// request carries (a connect, a DNS query, an MCP call and its
    /// arguments).
    OnEvent,
    /// Asks whose events ask Cedar the same and whose digests of what the
    /// event leaves out (an HTTP request's query and header values) agree.
    OnDigest([u8; 32]),
    /// None: what the request carries cannot be compared before the
    /// approval (an HTTP body, streamed after it).
    Never,
}

impl Merge {
    /// [`Merge::OnDigest`] of `pieces`, each length-prefixed so that no
    /// two different sequences collide by where they split.
    pub fn on_digest_of<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Merge {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        for piece in pieces {
            hasher.update((piece.len() as u64).to_le_bytes());
            hasher.update(piece);
        }
        Merge::OnDigest(hasher.finalize().into())
    }
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    by_key: HashMap<Key, String>,
}

struct Pending {
    /// `None` for an ask that merges with none.
    key: Option<Key>,
    view: PendingView,
    /// Shared by every waiter, so coalesced requests time out together.
    deadline: Instant,
    /// The first waiter's ask decision, for the `approval_resolved` record.
    decision: Decision,
    answer: watch::Sender<Option<Answer>>,
}

#[derive(Clone, Debug)]
struct Answer {
    outcome: ApprovalOutcome,
    by: Option<String>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .field("limit", &self.limit)
            .field("pending", &self.lock().pending.len())
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// A broker whose approvals time out (deny) after `timeout` (the
    /// config's `[engine] ask_timeout_secs`), recording to `audit`.
    pub fn new(timeout: Duration, audit: Option<Arc<AuditLog>>) -> Self {
        Self::with_limit(timeout, audit, MAX_PENDING)
    }

    /// [`Approvals::new`] with at most `limit` distinct pending approvals.
    pub fn with_limit(timeout: Duration, audit: Option<Arc<AuditLog>>, limit: usize) -> Self {
        Approvals {
            timeout,
            limit,
            audit,
            redactor: Redactor::default(),
            ids: IdSource::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// Holds `event` until a person answers or the timeout passes, and
    /// returns the decision to enforce. A `decision` that is not
    /// [`Effect::Ask`] is returned unchanged. Dropping the future withdraws
    /// this waiter (see the module docs).
    pub async fn ask(&self, event: &Event, decision: Decision) -> Decision {
        self.ask_merging(event, decision, Merge::OnEvent).await
    }

    /// [`ask`](Self::ask), sharing an approval only as `merge` allows.
    pub async fn ask_merging(&self, event: &Event, decision: Decision, merge: Merge) -> Decision {
        if decision.effect != Effect::Ask {
            return decision;
        }
        let (id, deadline, mut answer) = match self.join(event, &decision, merge) {
            Ok(joined) => joined,
            Err(full) => return full,
        };
        let mut waiter = Waiter { approvals: self, id, done: false };
        // The `Ref` wait_for returns holds the channel's read lock: drop it
        // here, before `finish` may need to write.
        let timed_out = tokio::time::timeout_at(deadline, answer.wait_for(Option::is_some)).await.is_err();
        if timed_out {
            // Whoever reaches the deadline first ends it for every waiter;
            // an answer that raced in first wins (then this is a no-op).
            let _ = self.finish(&waiter.id, Answer { outcome: ApprovalOutcome::TimedOut, by: None });
        }
        waiter.done = true;
        let answer = answer.borrow().clone();
        self.answer_to_decision(answer.as_ref(), decision)
    }

    /// The pending approvals, oldest first.
    pub fn pending(&self) -> Vec<PendingView> {
        let mut views: Vec<PendingView> = self.lock().pending.values().map(|p| p.view.clone()).collect();
        views.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        views
    }

    /// Approves (`approve`) or denies approval `id` on behalf of `by`; every
    /// waiter gets the answer.
    pub fn resolve(&self, id: &str, approve: bool, by: &str) -> Result<(), ApprovalError> {
        let outcome = if approve { ApprovalOutcome::Approved } else { ApprovalOutcome::Denied };
        self.finish(id, Answer { outcome, by: Some(clean_name(by)) })
    }

    /// Adds a waiter to the identical pending approval, or registers a new
    /// one; `Err` is the deny to return when the queue is full.
    fn join(
        &self,
        event: &Event,
        decision: &Decision,
        merge: Merge,
    ) -> Result<(String, Instant, watch::Receiver<Option<Answer>>), Decision> {
        let principal =
            Principal { name: event.principal.clone(), session: event.session.clone(), ..Principal::default() };
        let requests = AuthzRequest::from_event(event, &principal);
        let summary = cut(self.redactor.redact_str(&summary(event, &requests)));
        let key = match merge {
            Merge::OnEvent => Some((event.session.clone(), requests, None)),
            Merge::OnDigest(digest) => Some((event.session.clone(), requests, Some(digest))),
            Merge::Never => None,
        };
        let mut state = self.lock();
        let joined = key.as_ref().and_then(|key| state.by_key.get(key).cloned());
        if let Some(pending) = joined.and_then(|id| state.pending.get_mut(&id)) {
            pending.view.waiters += 1;
            return Ok((pending.view.id.clone(), pending.deadline, pending.answer.subscribe()));
        }
        if state.pending.len() >= self.limit {
            let reason = format!("{} requests already await approval; denied without asking", self.limit);
            return Err(deny(decision.clone(), reason));
        }
        let id = loop {
            let id = self.ids.next();
            if !state.pending.contains_key(&id) {
                break id;
            }
        };
        let view = PendingView {
            id: id.clone(),
            since: Utc::now(),
            session: event.session.clone(),
            principal: event.principal.clone(),
            summary,
            reason: decision.reason.clone(),
            policies: decision.policies.clone(),
            waiters: 1,
        };
        // A huge configured timeout must not overflow the clock: a year is forever here.
        let deadline = Instant::now()
            .checked_add(self.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let (answer, receiver) = watch::channel(None);
        // Recorded under the lock, so no `approval_resolved` can precede it.
        self.record(AuditEntry::ApprovalRequested { id: id.clone(), event: event.clone(), decision: decision.clone() });
        if let Some(key) = &key {
            state.by_key.insert(key.clone(), id.clone());
        }
        state.pending.insert(id.clone(), Pending { key, view, deadline, decision: decision.clone(), answer });
        Ok((id, deadline, receiver))
    }

    /// Ends approval `id` with `answer`: removed, audited, then every waiter woken.
    fn finish(&self, id: &str, answer: Answer) -> Result<(), ApprovalError> {
        self.finish_locked(&mut self.lock(), id, answer)
    }

    fn finish_locked(&self, state: &mut State, id: &str, answer: Answer) -> Result<(), ApprovalError> {
        let pending = state.pending.remove(id).ok_or_else(|| ApprovalError::Unknown { id: id.to_string() })?;
        if let Some(key) = &pending.key {
            state.by_key.remove(key);
        }
        let decision = self.answer_to_decision(Some(&answer), pending.decision);
        self.record(AuditEntry::ApprovalResolved {
            id: id.to_string(),
            outcome: answer.outcome,
            by: answer.by.clone(),
            decision,
        });
        pending.answer.send_replace(Some(answer));
        Ok(())
    }

    /// A waiter went away before the answer; the last one withdraws it
    /// (under the same lock, so no new waiter can join a withdrawn approval).
    fn leave(&self, id: &str) {
        let mut state = self.lock();
        let Some(pending) = state.pending.get_mut(id) else { return };
        pending.view.waiters = pending.view.waiters.saturating_sub(1);
        if pending.view.waiters == 0 {
            let _ = self.finish_locked(&mut state, id, Answer { outcome: ApprovalOutcome::Cancelled, by: None });
        }
    }

    fn answer_to_decision(&self, answer: Option<&Answer>, decision: Decision) -> Decision {
        let by = |answer: &Answer| answer.by.clone().unwrap_or_else(|| "unknown".into());
        match answer {
            Some(answer @ Answer { outcome: ApprovalOutcome::Approved, .. }) => {
                Decision { effect: Effect::Allow, reason: Some(format!("approved by {}", by(answer))), ..decision }
            }
            Some(answer @ Answer { outcome: ApprovalOutcome::Denied, .. }) => {
                deny(decision, format!("denied by {}", by(answer)))
            }
            Some(Answer { outcome: ApprovalOutcome::TimedOut, .. }) => {
                deny(decision, format!("no approval within {}", within(self.timeout)))
            }
            // Only recorded once nobody waits; a live waiter cannot see it.
            Some(Answer { outcome: ApprovalOutcome::Cancelled, .. }) | None => {
                deny(decision, "approval withdrawn".into())
            }
        }
    }

    fn record(&self, entry: AuditEntry) {
        let Some(audit) = &self.audit else { return };
        if let Err(error) = audit.append(entry) {
            tracing::error!(%error, "could not audit an approval");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere
        // must not take approvals down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `decision` as a deny with `reason`, its policies kept.
fn deny(decision: Decision, reason: String) -> Decision {
    Decision { effect: Effect::Deny, reason: Some(reason), ..decision }
}

/// One `ask` in flight; dropped before its answer, it leaves the approval.
struct Waiter<'a> {
    approvals: &'a Approvals,
    id: String,
    done: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.approvals.leave(&self.id);
        }
    }
}

#[cfg(test)]
mod tests;
