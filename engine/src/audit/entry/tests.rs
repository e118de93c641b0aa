use super::*;
use crate::audit::fixtures::{connect, decision, dns, file, http, notice, tool_call};
use crate::event::FileOp;
use crate::event::{McpDirection, McpMessage};

#[test]
fn decision_entries_are_tagged_and_round_trip() {
    let entry = decision(connect("api.github.com", 443), Effect::Deny);
    let json = serde_json::to_value(&entry).expect("serialize");
    assert_eq!(json["type"], "decision");
    assert_eq!(json["event"]["kind"], "net.connect");
    assert_eq!(json["decision"]["effect"], "deny");
    let back: AuditEntry = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, entry);
}

#[test]
fn policy_reload_omits_a_missing_error() {
    let ok =
        AuditEntry::PolicyReload { ok: true, generation: 3, source: "policies/".into(), policies: 12, error: None };
    let json = serde_json::to_value(&ok).expect("serialize");
    assert_eq!(json["type"], "policy_reload");
    assert!(json.get("error").is_none());
    assert_eq!(ok.reason(), None);
}

#[test]
fn other_entries_use_snake_case_tags() {
    let recovery = AuditEntry::Recovery { message: "m".into(), offset: 9, preserved_to: None, lost: false };
    assert_eq!(serde_json::to_value(&recovery).expect("json")["type"], "recovery");
    assert_eq!(recovery.type_name(), "recovery");
    assert_eq!(serde_json::to_value(notice("hi")).expect("json")["type"], "notice");
}

#[test]
fn actions_follow_the_cedar_schema() {
    let cases = [
        (connect("a.test", 443), "net.connect", Some(r#"Net::Action::"Connect""#), "a.test:443"),
        (dns("b.test"), "dns.query", Some(r#"Dns::Action::"Resolve""#), "b.test"),
        (http("c.test", "", &[]), "http.request", Some(r#"Http::Action::"Request""#), "c.test:443"),
        (file(FileOp::Write, "/etc/x"), "file", Some(r#"File::Action::"Write""#), "/etc/x"),
        (file(FileOp::Exec, "/bin/sh"), "file", Some(r#"File::Action::"Exec""#), "/bin/sh"),
        (
            tool_call("fs", "write_file", serde_json::json!({})),
            "mcp.message",
            Some(r#"Mcp::Action::"CallTool""#),
            "fs/write_file",
        ),
    ];
    for (kind, name, action, resource) in cases {
        let entry = decision(kind, Effect::Allow);
        assert_eq!(entry.kind(), name);
        assert_eq!(entry.action(), action, "{name}");
        assert_eq!(entry.resource().as_deref(), Some(resource));
        assert_eq!(entry.principal(), Some("claude"));
        assert_eq!(entry.effect(), Some(Effect::Allow));
        assert_eq!(entry.reason(), Some("because"));
        assert!(entry.time().is_some());
    }
}

#[test]
fn mcp_methods_map_to_their_actions() {
    let message = |payload| {
        EventKind::Mcp(McpMessage {
            server: "srv".into(),
            direction: McpDirection::ToServer,
            id: None,
            message: payload,
            tool_changed: false,
            findings: vec![],
        })
    };
    let read = message(McpPayload::ResourcesRead { uri: "file:///x".into() });
    assert_eq!(cedar_action(&read), Some(r#"Mcp::Action::"ReadResource""#));
    let prompt = message(McpPayload::PromptsGet { name: "p".into(), arguments: serde_json::Value::Null });
    assert_eq!(cedar_action(&prompt), Some(r#"Mcp::Action::"GetPrompt""#));
    assert_eq!(cedar_action(&message(McpPayload::ToolsList)), Some(r#"Mcp::Action::"ListTools""#));
    assert_eq!(cedar_action(&message(McpPayload::Other { name: "ping".into() })), None);
}

#[test]
fn non_decisions_have_no_effect_or_principal() {
    let entry = notice("started");
    assert_eq!(entry.kind(), "notice");
    assert_eq!(entry.effect(), None);
    assert_eq!(entry.principal(), None);
    assert_eq!(entry.action(), None);
    assert_eq!(entry.resource().as_deref(), Some("test"));
}

#[test]
fn approval_entries_round_trip_with_their_columns() {
    let AuditEntry::Decision { event, decision: asked } = decision(connect("a.test", 443), Effect::Ask) else {
        panic!("the fixture is a decision")
    };
    let requested = AuditEntry::ApprovalRequested { id: "k3x9".into(), event, decision: asked.clone() };
    let json = serde_json::to_value(&requested).expect("serialize");
    assert_eq!((json["type"].as_str(), json["id"].as_str()), (Some("approval_requested"), Some("k3x9")));
    assert_eq!(serde_json::from_value::<AuditEntry>(json).expect("deserialize"), requested);
    assert_eq!((requested.kind(), requested.action()), ("approval_requested", Some(r#"Net::Action::"Connect""#)));
    assert_eq!((requested.principal(), requested.resource().as_deref()), (Some("claude"), Some("a.test:443")));
    let resolved = AuditEntry::ApprovalResolved {
        id: "k3x9".into(),
        outcome: crate::approvals::ApprovalOutcome::TimedOut,
        by: None,
        decision: Decision { effect: Effect::Deny, reason: Some("no approval within 120s".into()), ..asked },
    };
    let json = serde_json::to_value(&resolved).expect("serialize");
    assert_eq!((json["outcome"].as_str(), json.get("by")), (Some("timed-out"), None));
    assert_eq!(serde_json::from_value::<AuditEntry>(json).expect("deserialize"), resolved);
    assert_eq!((resolved.effect(), resolved.reason()), (Some(Effect::Deny), Some("no approval within 120s")));
    assert_eq!((resolved.principal(), resolved.resource().as_deref()), (None, Some("approval k3x9")));
}
