use std::sync::Arc;

use super::*;
use crate::audit::{AuditEntry, AuditLog, AuditOptions};
use crate::event::{Connect, EventKind, ProcessExit};
use crate::policy::{PolicyFile, load_files};

fn authz(text: &str) -> Authorizer {
    let files = vec![PolicyFile { name: "p.cedar".into(), text: text.into() }];
    Authorizer::new(load_files("t", files).expect("valid"), 100)
}

fn connect(name: &str) -> Event {
    Event::now("s", "agent", EventKind::Connect(Connect::tls_to(name, 443)))
}

#[test]
fn replay_reports_what_a_draft_would_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let live = authz("@id(\"all\") permit(principal, action, resource);");
    {
        let log =
            Arc::new(AuditLog::open(&path, AuditOptions { index: false, ..AuditOptions::default() }).expect("open"));
        for name in ["a.test", "b.test", "b.test", "api.github.com"] {
            let event = connect(name);
            let decision = live.decide(&event);
            log.append(AuditEntry::Decision { event, decision }).expect("append");
        }
        let exit =
            Event::now("s", "agent", EventKind::ProcessExit(ProcessExit { pid: 1, code: Some(0), signal: None }));
        let decision = live.decide(&exit);
        log.append(AuditEntry::Decision { event: exit, decision }).expect("append");
        log.sync().expect("sync");
    }
    let draft = authz(
        "@id(\"gh\") permit(principal, action, resource in Net::Domain::\"github.com\");\n\
         @id(\"no-b\") @reason(\"b is bad\") forbid(principal, action, resource in Net::Domain::\"b.test\");",
    );
    let report = replay(&path, &draft, 10).expect("replay");
    assert_eq!((report.decisions, report.changed, report.skipped), (4, 3, 1));
    let connect_counts = &report.transitions["Net::Action::\"Connect\""];
    assert_eq!(connect_counts["allow -> deny"], 3);
    assert_eq!(connect_counts["allow -> allow"], 1);
    let b = report.examples.iter().find(|c| c.resource == "b.test:443").expect("b example");
    assert_eq!((b.to, b.policies.as_slice()), (Effect::Deny, &["no-b".to_string()][..]));
}

#[test]
fn missing_log_is_an_error_naming_the_path() {
    let err = replay(Path::new("/nonexistent/audit.jsonl"), &authz("permit(principal, action, resource);"), 1)
        .expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/audit.jsonl"), "{err}");
}
