use std::path::Path;

use super::*;
use crate::audit::{AuditOptions, Query};
use crate::event::{EventKind, HttpRequest};

const LONG: Duration = Duration::from_secs(60);

fn get(path: &str) -> Event {
    let request = HttpRequest {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.test".into(),
        port: 443,
        path: path.into(),
        query: String::new(),
        headers: vec![],
        body_size: Some(0),
        dlp: vec![],
        inspected: true,
        git: None,
        publish: None,
    };
    Event::now("s1", "claude", EventKind::HttpRequest(request))
}

fn ask_decision() -> Decision {
    Decision {
        effect: Effect::Ask,
        policies: vec!["ask-writes".into()],
        reason: Some("writes need a person".into()),
        generation: 3,
        errors: vec![],
        decided: true,
    }
}

/// Starts `ask` in the background and waits until it is pending.
async fn held(approvals: &Arc<Approvals>, event: Event, pending: usize) -> tokio::task::JoinHandle<Decision> {
    held_merging(approvals, event, Merge::OnEvent, pending).await
}

/// [`held`], sharing an approval only as `merge` allows.
async fn held_merging(
    approvals: &Arc<Approvals>,
    event: Event,
    merge: Merge,
    pending: usize,
) -> tokio::task::JoinHandle<Decision> {
    let broker = Arc::clone(approvals);
    let task = tokio::spawn(async move { broker.ask_merging(&event, ask_decision(), merge).await });
    for _ in 0..1000 {
        if approvals.pending().iter().map(|p| p.waiters).sum::<usize>() >= pending {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the ask never became pending");
}

fn audit_log(dir: &Path) -> Arc<AuditLog> {
    let options = AuditOptions { fsync_interval: Duration::ZERO, ..AuditOptions::default() };
    Arc::new(AuditLog::open(dir.join("audit.jsonl"), options).expect("open audit log"))
}

fn records(log: &AuditLog) -> Vec<serde_json::Value> {
    log.sync().expect("sync");
    let text = std::fs::read_to_string(log.path()).expect("read log");
    text.lines().map(|line| serde_json::from_str(line).expect("json")).collect()
}

#[tokio::test]
async fn approval_allows_with_the_approver_and_keeps_the_policies() {
    let approvals = Arc::new(Approvals::new(LONG, None));
    let task = held(&approvals, get("/v1/items"), 1).await;
    let pending = approvals.pending();
    assert_eq!(pending.len(), 1);
    let view = &pending[0];
    assert_eq!((view.session.as_str(), view.principal.as_str()), ("s1", "claude"));
    assert_eq!(view.summary, r#"Http::Action::"Request" GET https://api.example.test/v1/items"#);
    assert_eq!(view.reason.as_deref(), Some("writes need a person"));
    assert_eq!(view.id.len(), 10);
    approvals.resolve(&view.id, true, "alice").expect("resolve");
    let decision = task.await.expect("task");
    assert_eq!(decision.effect, Effect::Allow);
    assert_eq!(decision.reason.as_deref(), Some("approved by alice"));
    assert_eq!((decision.policies, decision.generation), (vec!["ask-writes".to_string()], 3));
    assert!(approvals.pending().is_empty());
}

#[tokio::test]
async fn denial_denies_with_the_approver() {
    let approvals = Arc::new(Approvals::new(LONG, None));
    let task = held(&approvals, get("/v1/items"), 1).await;
    let id = approvals.pending()[0].id.clone();
    approvals.resolve(&id, false, "bob\n\u{1b}[31m").expect("resolve");
    let decision = task.await.expect("task");
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason.as_deref(), Some("denied by bob[31m"));
}

#[tokio::test]
async fn nobody_answering_denies_after_the_timeout() {
    let approvals = Approvals::new(Duration::from_millis(50), None);
    let decision = approvals.ask(&get("/v1/items"), ask_decision()).await;
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason.as_deref(), Some("no approval within 50ms"));
    assert!(approvals.pending().is_empty());
    assert_eq!(text::within(Duration::from_secs(120)), "120s");
}

#[tokio::test]
async fn a_dropped_waiter_withdraws_its_approval_on_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = audit_log(dir.path());
    let approvals = Arc::new(Approvals::new(LONG, Some(Arc::clone(&log))));
    let task = held(&approvals, get("/v1/items"), 1).await;
    let id = approvals.pending()[0].id.clone();
    task.abort();
    let _ = task.await;
    assert!(approvals.pending().is_empty());
    assert_eq!(approvals.resolve(&id, true, "late"), Err(ApprovalError::Unknown { id: id.clone() }));
    let records = records(&log);
    let types: Vec<&str> = records.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types, ["approval_requested", "approval_resolved"]);
    assert_eq!(records[0]["id"], id.as_str());
    assert_eq!(records[0]["decision"]["effect"], "ask");
    assert_eq!(records[1]["outcome"], "cancelled");
    assert_eq!(records[1]["decision"]["effect"], "deny");
    assert!(records[1].get("by").is_none());
}

#[tokio::test]
async fn identical_requests_share_one_approval_and_its_answer() {
    let approvals = Arc::new(Approvals::new(LONG, None));
    let first = held(&approvals, get("/v1/items"), 1).await;
    let retry = held(&approvals, get("/v1/items"), 2).await;
    let other = held(&approvals, get("/v1/other"), 3).await;
    let pending = approvals.pending();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let shared = pending.iter().find(|p| p.waiters == 2).expect("coalesced");
    approvals.resolve(&shared.id.clone(), true, "alice").expect("resolve");
    for task in [first, retry] {
        assert_eq!(task.await.expect("task").effect, Effect::Allow);
    }
    assert_eq!(approvals.pending().len(), 1);
    // One waiter of a shared approval leaving does not withdraw it for the other.
    let again = held(&approvals, get("/v1/other"), 2).await;
    again.abort();
    let _ = again.await;
    assert_eq!(approvals.pending()[0].waiters, 1);
    let id = approvals.pending()[0].id.clone();
    approvals.resolve(&id, false, "alice").expect("resolve");
    assert_eq!(other.await.expect("task").effect, Effect::Deny);
}

#[tokio::test]
async fn requests_whose_events_agree_share_an_approval_only_as_the_capture_point_allows() {
    let approvals = Arc::new(Approvals::new(LONG, None));
    // The same event twice: a different digest (another query value, another
    // body) is another approval; the same digest joins.
    let one = Merge::on_digest_of([b"POST".as_slice(), b"/paste?q=harmless"]);
    let two = Merge::on_digest_of([b"POST".as_slice(), b"/paste?q=secrets"]);
    assert_ne!(one, two);
    assert_ne!(Merge::on_digest_of([b"ab".as_slice(), b"c"]), Merge::on_digest_of([b"a".as_slice(), b"bc"]));
    let first = held_merging(&approvals, get("/paste"), one, 1).await;
    let other = held_merging(&approvals, get("/paste"), two, 2).await;
    let retry = held_merging(&approvals, get("/paste"), one, 3).await;
    assert_eq!(approvals.pending().len(), 2);
    // A request whose body streams after the approval never joins one.
    let streamed = held_merging(&approvals, get("/paste"), Merge::Never, 4).await;
    let again = held_merging(&approvals, get("/paste"), Merge::Never, 5).await;
    let pending = approvals.pending();
    assert_eq!(pending.len(), 4, "{pending:?}");
    assert_eq!(pending.iter().map(|p| p.waiters).collect::<Vec<_>>(), [2, 1, 1, 1]);
    let first_id = pending[0].id.clone();
    approvals.resolve(&first_id, true, "alice").expect("resolve");
    assert_eq!(first.await.expect("task").effect, Effect::Allow);
    assert_eq!(retry.await.expect("task").effect, Effect::Allow);
    for id in approvals.pending().into_iter().map(|p| p.id) {
        approvals.resolve(&id, false, "alice").expect("resolve");
    }
    for task in [other, streamed, again] {
        assert_eq!(task.await.expect("task").effect, Effect::Deny);
    }
    assert!(approvals.state.lock().expect("lock").by_key.is_empty(), "nothing left filed");
}

#[tokio::test]
async fn a_full_queue_denies_at_once_but_retries_still_join() {
    let approvals = Arc::new(Approvals::with_limit(LONG, None, 2));
    let a = held(&approvals, get("/a"), 1).await;
    let b = held(&approvals, get("/b"), 2).await;
    let refused = approvals.ask(&get("/c"), ask_decision()).await;
    assert_eq!(refused.effect, Effect::Deny);
    assert!(refused.reason.as_deref().is_some_and(|r| r.contains("2 requests already await approval")), "{refused:?}");
    let retry = held(&approvals, get("/a"), 3).await;
    assert_eq!(approvals.pending().len(), 2);
    for view in approvals.pending() {
        approvals.resolve(&view.id, true, "root").expect("resolve");
    }
    for task in [a, b, retry] {
        assert_eq!(task.await.expect("task").effect, Effect::Allow);
    }
}

#[tokio::test]
async fn unknown_and_resolved_ids_are_errors_and_other_effects_pass() {
    let approvals = Arc::new(Approvals::new(LONG, None));
    assert!(matches!(approvals.resolve("nope", true, "x"), Err(ApprovalError::Unknown { .. })));
    let task = held(&approvals, get("/v1/items"), 1).await;
    let id = approvals.pending()[0].id.clone();
    approvals.resolve(&id, true, "x").expect("first");
    assert!(approvals.resolve(&id, false, "x").is_err());
    assert_eq!(task.await.expect("task").effect, Effect::Allow);
    let deny = Decision { effect: Effect::Deny, ..ask_decision() };
    assert_eq!(approvals.ask(&get("/x"), deny.clone()).await, deny);
}

#[tokio::test]
async fn approval_records_verify_and_are_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = audit_log(dir.path());
    let approvals = Arc::new(Approvals::new(LONG, Some(Arc::clone(&log))));
    let mut event = get("/v1/items");
    if let EventKind::HttpRequest(request) = &mut event.kind {
        request.query = "token=hunter2secret".into();
    }
    let task = held(&approvals, event, 1).await;
    let view = approvals.pending().remove(0);
    assert!(view.summary.ends_with("/v1/items?…"), "{}", view.summary);
    approvals.resolve(&view.id, true, "alice").expect("resolve");
    task.await.expect("task");
    let stored = records(&log);
    assert_eq!(stored[0]["event"]["detail"]["query"], "token=[REDACTED]", "typed redaction applies");
    assert_eq!((stored[1]["outcome"].as_str(), stored[1]["by"].as_str()), (Some("approved"), Some("alice")));
    drop(approvals);
    assert!(crate::audit::verify(log.path()).expect("verify").ok());
    let rows = crate::audit::query(log.path(), &Query::default()).expect("query");
    let summary: Vec<_> = rows.iter().map(|r| (r.r#type.as_str(), r.effect.as_deref(), r.reason.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("approval_requested", Some("ask"), Some("writes need a person")),
            ("approval_resolved", Some("allow"), Some("approved by alice")),
        ]
    );
    assert_eq!(rows[0].action.as_deref(), Some(r#"Http::Action::"Request""#));
    assert_eq!(rows[1].resource.as_deref(), Some(format!("approval {}", view.id).as_str()));
    let only = Query { action: Some("approval_resolved".into()), ..Query::default() };
    assert_eq!(crate::audit::query(log.path(), &only).expect("query").len(), 1);
}

#[test]
fn ids_are_short_distinct_and_unambiguous() {
    let ids = text::IdSource::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = ids.next();
        assert_eq!(id.len(), 10);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b.is_ascii_lowercase() && !b"ilou".contains(&b))), "{id}");
        assert!(seen.insert(id));
    }
}

#[test]
fn the_broker_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Approvals>();
    fn sendable<F: std::future::Future + Send>(_: F) {}
    let approvals = Approvals::new(LONG, None);
    let event = get("/");
    sendable(approvals.ask(&event, ask_decision()));
}
