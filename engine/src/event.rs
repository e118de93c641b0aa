//! The one event type every capture point produces.
//!
//! Its JSON shape is the audit format and is stable: fields are only ever
//! added (optional), never renamed. Shape:
//!
//! ```json
//! {"time":"2026-11-27T06:00:00.000000Z","session":"s1","principal":"claude",
//!  "process":{"pid":42,"exe":"/usr/bin/curl","parents":[{"pid":1,"exe":"/bin/bash"}]},
//!  "mcp":{"server":"fs","tool":"write_file","call_id":"7"},
//!  "kind":"net.connect",
//!  "detail":{"proto":"tcp","ip":"198.51.100.7","port":443,"name":"api.github.com",
//!            "named_by":"sni","sni":"api.github.com","tls":true}}
//! ```
//!
//! `kind` is one of `net.connect`, `dns.query`, `http.request`, `mcp.message`,
//! `file`, `process.exec`, `process.exit`; `detail` holds the kind's fields.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One observation from a capture point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the capture point saw it (UTC).
    pub time: DateTime<Utc>,
    /// The guarded session (one `bridle run`, or one appliance workload).
    pub session: String,
    /// The agent's name: the Cedar principal `Agent::"<principal>"`.
    pub principal: String,
    /// The acting process, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    /// The MCP tool call in flight when this happened (correlation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpActive>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The acting process and its ancestry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub exe: String,
    /// Ancestors, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentProcess>,
}

/// One ancestor of the acting process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParentProcess {
    pub pid: u32,
    pub exe: String,
}

/// The MCP tool call in flight when an action happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct McpActive {
    pub server: String,
    pub tool: String,
    pub call_id: String,
}

/// What was observed, tagged by `kind` with the fields in `detail`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail")]
#[non_exhaustive]
pub enum EventKind {
    #[serde(rename = "net.connect")]
    Connect(Connect),
    #[serde(rename = "dns.query")]
    DnsQuery(DnsQuery),
    #[serde(rename = "http.request")]
    HttpRequest(HttpRequest),
    #[serde(rename = "mcp.message")]
    Mcp(McpMessage),
    #[serde(rename = "file")]
    File(FileAccess),
    #[serde(rename = "process.exec")]
    ProcessExec(ProcessExec),
    #[serde(rename = "process.exit")]
    ProcessExit(ProcessExit),
}

/// Transport protocol of a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// How a destination got its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedBy {
    /// TLS ClientHello server name.
    Sni,
    /// HTTP `Host` header.
    HostHeader,
    /// A DNS answer Bridle's resolver gave for this IP.
    Dns,
    /// No name known: the IP itself.
    Ip,
}

impl NamedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            NamedBy::Sni => "sni",
            NamedBy::HostHeader => "host-header",
            NamedBy::Dns => "dns",
            NamedBy::Ip => "ip",
        }
    }
}

/// A TCP or UDP connection attempt (decided as `Net::Action::"Connect"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    pub proto: Transport,
    /// Original destination address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// Destination name (SNI, Host header or DNS-learned); `None` for a bare IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub named_by: NamedBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default)]
    pub tls: bool,
}

impl Connect {
    /// A TLS connection to `name:port`, named by its SNI: what the proxy
    /// records for most connects.
    pub fn tls_to(name: &str, port: u16) -> Connect {
        Connect {
            proto: Transport::Tcp,
            ip: None,
            port,
            name: Some(name.to_string()),
            named_by: NamedBy::Sni,
            sni: Some(name.to_string()),
            tls: true,
        }
    }
}

/// A DNS query (decided as `Dns::Action::"Resolve"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsQuery {
    pub qname: String,
    pub qtype: String,
    /// Exfiltration-shaped markers: `long-label`, `high-entropy`, `txt-flood`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// One HTTP request (decided as `Http::Action::"Request"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Query string; values are redacted before the event is stored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// Header (name, value) pairs, names lowercased; values of sensitive
    /// headers are redacted before the event is stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Body size in bytes, when declared or observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size: Option<u64>,
    /// Secret kinds found in URL, headers or body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dlp: Vec<String>,
    /// False when the request was not decrypted (passthrough).
    #[serde(default = "yes")]
    pub inspected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

fn yes() -> bool {
    true
}

/// Git smart-HTTP details of a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitOp {
    /// `git-upload-pack` or `git-receive-pack`.
    pub service: String,
    /// `fetch` or `push`.
    pub op: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
}

/// A package publish recognised in a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Publish {
    pub ecosystem: String,
    pub package: String,
}

/// One MCP JSON-RPC message between an agent and a tool server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpMessage {
    /// The server's configured name.
    pub server: String,
    /// `to-server` (agent → server) or `to-client`.
    pub direction: McpDirection,
    /// JSON-RPC id, as text, when the message has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub message: McpPayload,
    /// The tool's definition changed since it was pinned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tool_changed: bool,
    /// Poisoning markers on descriptions or results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpDirection {
    ToServer,
    ToClient,
}

/// The JSON-RPC method and the parts of it policies see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
#[non_exhaustive]
pub enum McpPayload {
    #[serde(rename = "initialize")]
    Initialize {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol_version: Option<String>,
    },
    #[serde(rename = "tools/list")]
    ToolsList,
    #[serde(rename = "tools/call")]
    ToolsCall {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    },
    #[serde(rename = "resources/read")]
    ResourcesRead { uri: String },
    #[serde(rename = "prompts/get")]
    PromptsGet {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    },
    /// Notifications, cancellations, responses and everything else.
    #[serde(rename = "other")]
    Other { name: String },
}

/// A file access (decided as `File::Action::…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccess {
    pub op: FileOp,
    pub path: String,
    /// Rename destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    Read,
    Write,
    Create,
    Delete,
    /// Decided as Delete on `path` and Create on `target`.
    Rename,
    Exec,
}

/// A process started (telemetry; not decided).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExec {
    pub pid: u32,
    pub exe: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

/// A process ended (telemetry; not decided).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExit {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl Event {
    /// An event observed now.
    pub fn now(session: impl Into<String>, principal: impl Into<String>, kind: EventKind) -> Self {
        Event { time: Utc::now(), session: session.into(), principal: principal.into(), process: None, mcp: None, kind }
    }

    /// The `kind` tag as it appears in JSON.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            EventKind::Connect(_) => "net.connect",
            EventKind::DnsQuery(_) => "dns.query",
            EventKind::HttpRequest(_) => "http.request",
            EventKind::Mcp(_) => "mcp.message",
            EventKind::File(_) => "file",
            EventKind::ProcessExec(_) => "process.exec",
            EventKind::ProcessExit(_) => "process.exit",
        }
    }
}

#[cfg(test)]
mod tests;
