//! Sample entries shared by the audit unit tests.

use crate::decision::{Decision, Effect};
use crate::event::{
    Connect, DnsQuery, Event, EventKind, FileAccess, FileOp, HttpRequest, McpDirection, McpMessage, McpPayload,
    NamedBy, Transport,
};

use super::AuditEntry;

pub fn decision(kind: EventKind, effect: Effect) -> AuditEntry {
    AuditEntry::Decision {
        event: Event::now("s1", "claude", kind),
        decision: Decision {
            effect,
            policies: vec!["default".into()],
            reason: Some("because".into()),
            generation: 1,
            errors: vec![],
            decided: true,
        },
    }
}

pub fn http(host: &str, query: &str, headers: &[(&str, &str)]) -> EventKind {
    EventKind::HttpRequest(HttpRequest {
        method: "GET".into(),
        scheme: "https".into(),
        host: host.into(),
        port: 443,
        path: "/v1/items".into(),
        query: query.into(),
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        body_size: None,
        dlp: vec![],
        inspected: true,
        git: None,
        publish: None,
    })
}

pub fn connect(name: &str, port: u16) -> EventKind {
    EventKind::Connect(Connect {
        proto: Transport::Tcp,
        ip: Some(std::net::IpAddr::from([198, 51, 100, 7])),
        port,
        name: Some(name.into()),
        named_by: NamedBy::Sni,
        sni: Some(name.into()),
        tls: true,
    })
}

pub fn dns(qname: &str) -> EventKind {
    EventKind::DnsQuery(DnsQuery { qname: qname.into(), qtype: "A".into(), flags: vec![] })
}

pub fn file(op: FileOp, path: &str) -> EventKind {
    EventKind::File(FileAccess { op, path: path.into(), target: None })
}

pub fn tool_call(server: &str, tool: &str, arguments: serde_json::Value) -> EventKind {
    EventKind::Mcp(McpMessage {
        server: server.into(),
        direction: McpDirection::ToServer,
        id: Some("7".into()),
        message: McpPayload::ToolsCall { name: tool.into(), arguments },
        tool_changed: false,
        findings: vec![],
    })
}

pub fn notice(message: &str) -> AuditEntry {
    AuditEntry::Notice { component: "test".into(), level: "info".into(), message: message.into() }
}
