use super::*;

fn sample(kind: EventKind) -> Event {
    let mut event = Event::now("s1", "claude", kind);
    event.process = Some(ProcessInfo {
        pid: 42,
        exe: "/usr/bin/curl".into(),
        parents: vec![ParentProcess { pid: 1, exe: "/bin/bash".into() }],
    });
    event
}

#[test]
fn connect_event_has_the_documented_json_shape() {
    let event = sample(EventKind::Connect(Connect {
        proto: Transport::Tcp,
        ip: Some("198.51.100.7".parse().expect("ip")),
        port: 443,
        name: Some("api.github.com".into()),
        named_by: NamedBy::Sni,
        sni: Some("api.github.com".into()),
        tls: true,
    }));
    let json = serde_json::to_value(&event).expect("serialize");
    assert_eq!(json["kind"], "net.connect");
    assert_eq!(json["detail"]["named_by"], "sni");
    assert_eq!(json["detail"]["ip"], "198.51.100.7");
    assert_eq!(json["process"]["parents"][0]["exe"], "/bin/bash");
    assert_eq!(json["principal"], "claude");
}

#[test]
fn every_kind_round_trips_through_json() {
    let kinds = vec![
        EventKind::DnsQuery(DnsQuery { qname: "x.test".into(), qtype: "A".into(), flags: vec!["long-label".into()] }),
        EventKind::HttpRequest(HttpRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: "git.test".into(),
            port: 443,
            path: "/repo.git/git-receive-pack".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "x".into())],
            body_size: Some(10),
            dlp: vec![],
            inspected: true,
            git: Some(GitOp {
                service: "git-receive-pack".into(),
                op: "push".into(),
                refs: vec!["refs/heads/main".into()],
            }),
            publish: None,
        }),
        EventKind::Mcp(McpMessage {
            server: "fs".into(),
            direction: McpDirection::ToServer,
            id: Some("1".into()),
            message: McpPayload::ToolsCall { name: "write_file".into(), arguments: serde_json::json!({"path": "/a"}) },
            tool_changed: true,
            findings: vec!["zero-width".into()],
        }),
        EventKind::Mcp(McpMessage {
            server: "fs".into(),
            direction: McpDirection::ToClient,
            id: None,
            message: McpPayload::Initialize {
                server_name: Some("s".into()),
                server_version: None,
                protocol_version: Some("2025-06-18".into()),
            },
            tool_changed: false,
            findings: vec![],
        }),
        EventKind::File(FileAccess { op: FileOp::Rename, path: "/a".into(), target: Some("/b".into()) }),
        EventKind::ProcessExec(ProcessExec { pid: 3, exe: "/bin/sh".into(), argv: vec!["sh".into()] }),
        EventKind::ProcessExit(ProcessExit { pid: 3, code: Some(0), signal: None }),
    ];
    for kind in kinds {
        let event = sample(kind);
        let text = serde_json::to_string(&event).expect("serialize");
        let back: Event = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, event, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(json["kind"], event.kind_name());
    }
}
