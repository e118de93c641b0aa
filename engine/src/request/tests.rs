use cedar_policy::Entities;

use super::*;
use crate::event::{
    Connect, DnsQuery, Event, EventKind, FileAccess, FileOp, HttpRequest, McpDirection, McpMessage, McpPayload,
    NamedBy, ParentProcess, ProcessInfo, Transport,
};
use crate::schema::schema;

fn principal() -> Principal {
    Principal { name: "claude".into(), session: "s1".into(), image: "img".into(), workdir: "/workspace".into() }
}

fn full_event(kind: EventKind) -> Event {
    let mut event = Event::now("s1", "claude", kind);
    event.process = Some(ProcessInfo {
        pid: 7,
        exe: "/usr/bin/node".into(),
        parents: vec![ParentProcess { pid: 1, exe: "/bin/sh".into() }],
    });
    event.mcp = Some(McpActive { server: "fs".into(), tool: "search".into(), call_id: "3".into() });
    event
}

fn mcp(message: McpPayload) -> EventKind {
    EventKind::Mcp(McpMessage {
        server: "fs".into(),
        direction: McpDirection::ToServer,
        id: Some("1".into()),
        message,
        tool_changed: true,
        findings: vec!["zero-width".into()],
    })
}

/// One event per action, with every optional field the schema has set.
fn one_event_per_action() -> Vec<Event> {
    let args = serde_json::json!({"path": "/workspace/a", "paths": ["/a", "/b"], "url": "https://x.test", "n": 3});
    let mut kinds = vec![
        EventKind::Connect(Connect {
            proto: Transport::Tcp,
            ip: Some("2001:db8::1".parse().expect("ip")),
            port: 443,
            name: Some("API.GitHub.com.".into()),
            named_by: NamedBy::Sni,
            sni: Some("api.github.com".into()),
            tls: true,
        }),
        EventKind::DnsQuery(DnsQuery {
            qname: "x.Test.".into(),
            qtype: "txt".into(),
            flags: vec!["long-label".into()],
        }),
        EventKind::HttpRequest(HttpRequest {
            method: "post".into(),
            scheme: "https".into(),
            host: "registry.npmjs.org".into(),
            port: 443,
            path: "/pkg".into(),
            query: "a=1".into(),
            headers: vec![("Content-Type".into(), "x".into())],
            body_size: Some(12),
            dlp: vec!["aws-access-key-id".into()],
            inspected: true,
            git: Some(crate::event::GitOp {
                service: "git-receive-pack".into(),
                op: "push".into(),
                refs: vec!["refs/heads/main".into()],
            }),
            publish: Some(crate::event::Publish { ecosystem: "npm".into(), package: "left-pad".into() }),
        }),
        mcp(McpPayload::ToolsCall { name: "write_file".into(), arguments: args.clone() }),
        mcp(McpPayload::PromptsGet { name: "p".into(), arguments: args }),
        mcp(McpPayload::ResourcesRead { uri: "file:///etc/hosts".into() }),
        mcp(McpPayload::ToolsList),
    ];
    for op in [FileOp::Read, FileOp::Write, FileOp::Create, FileOp::Delete, FileOp::Exec] {
        kinds.push(EventKind::File(FileAccess { op, path: "src/../.github/workflows/ci.yml".into(), target: None }));
    }
    kinds.into_iter().map(full_event).collect()
}

#[test]
fn every_action_builds_a_request_the_schema_accepts() {
    let mut seen = std::collections::BTreeSet::new();
    for event in one_event_per_action() {
        for request in AuthzRequest::from_event(&event, &principal()) {
            seen.insert(request.action);
            let built = request.cedar_entities().unwrap_or_else(|e| panic!("{:?}: {e}", request.action));
            request.cedar_request(&built, Some(schema())).unwrap_or_else(|e| panic!("{:?}: {e}", request.action));
            Entities::from_entities(built.entities.iter().cloned(), Some(schema()))
                .unwrap_or_else(|e| panic!("{:?} entities: {e}", request.action));
        }
    }
    assert_eq!(seen.len(), Action::ALL.len(), "every action covered: {seen:?}");
}

#[test]
fn names_and_paths_are_canonical_in_requests() {
    let events = one_event_per_action();
    let connect = &AuthzRequest::from_event(&events[0], &principal())[0];
    assert!(matches!(&connect.resource, Resource::Host { name, .. } if name == "api.github.com"));
    let file = &AuthzRequest::from_event(&events[7], &principal())[0];
    assert_eq!(file.resource, Resource::Path { path: "/workspace/.github/workflows/ci.yml".into() });
    assert_eq!(file.context.detail, Detail::File { in_project: true });
}

#[test]
fn rename_is_a_delete_and_a_create_and_telemetry_is_nothing() {
    let rename =
        full_event(EventKind::File(FileAccess { op: FileOp::Rename, path: "/a".into(), target: Some("/b".into()) }));
    let actions: Vec<Action> = AuthzRequest::from_event(&rename, &principal()).iter().map(|r| r.action).collect();
    assert_eq!(actions, [Action::FileDelete, Action::FileCreate]);
    let exit = full_event(EventKind::ProcessExit(crate::event::ProcessExit { pid: 1, code: Some(0), signal: None }));
    assert!(AuthzRequest::from_event(&exit, &principal()).is_empty());
}

#[test]
fn parts_split_the_cedar_spelling() {
    assert_eq!(Action::NetConnect.parts(), ("Net", "Connect"));
    assert_eq!(Action::McpReadResource.parts(), ("Mcp", "ReadResource"));
    let names: std::collections::BTreeSet<_> = Action::ALL.iter().map(|a| a.cedar_str()).collect();
    assert_eq!(names.len(), Action::ALL.len(), "every action spelled differently");
}

#[test]
fn actions_parse_from_cedar_and_short_spellings() {
    assert_eq!("Net::Action::\"Connect\"".parse::<Action>(), Ok(Action::NetConnect));
    assert_eq!("Mcp::CallTool".parse::<Action>(), Ok(Action::McpCallTool));
    let err = "Net::Action::\"Conect\"".parse::<Action>().expect_err("unknown");
    assert!(err.contains("known actions"), "{err}");
}
