//! Event → authorization requests. Telemetry events give none; a rename
//! gives two (Delete of the source, Create of the target).

use super::{Action, AuthzRequest, CallCtx, Ctx, Detail, HttpCtx, Principal, ProcessCtx, Resource};
use crate::event::{
    Connect, DnsQuery, Event, EventKind, FileAccess, FileOp, HttpRequest, McpDirection, McpMessage, McpPayload,
    Transport,
};
use crate::names::{normalize_domain, normalize_path};

impl AuthzRequest {
    /// The requests an event asks; empty for telemetry.
    pub fn from_event(event: &Event, principal: &Principal) -> Vec<AuthzRequest> {
        AuthzRequest::from_event_as(event, principal.clone())
    }

    /// [`AuthzRequest::from_event`] with the principal given: the last
    /// request takes it and its context, so an event that asks one request
    /// (nearly all do) copies neither.
    pub fn from_event_as(event: &Event, principal: Principal) -> Vec<AuthzRequest> {
        let asked: Vec<(Action, Resource, Detail)> = match &event.kind {
            EventKind::Connect(c) => vec![(Action::NetConnect, connect_resource(c), connect_detail(c))],
            EventKind::DnsQuery(q) => vec![(Action::DnsResolve, dns_resource(q), dns_detail(q))],
            EventKind::HttpRequest(h) => vec![(Action::HttpRequest, http_resource(h), http_detail(h))],
            EventKind::Mcp(m) => mcp_request(m).into_iter().collect(),
            EventKind::File(f) => file_requests(f, &principal.workdir)
                .into_iter()
                .map(|(action, resource)| {
                    let in_project = in_project(&resource, &principal.workdir);
                    (action, resource, Detail::File { in_project })
                })
                .collect(),
            EventKind::ProcessExec(_) | EventKind::ProcessExit(_) => Vec::new(),
        };
        let process = event.process.as_ref().map(|p| ProcessCtx {
            exe: p.exe.clone(),
            lineage: p.parents.iter().map(|parent| parent.exe.clone()).collect(),
        });
        let mut shared = Some((principal, process, event.mcp.clone()));
        let last = asked.len().saturating_sub(1);
        asked
            .into_iter()
            .enumerate()
            .filter_map(|(i, (action, resource, detail))| {
                let (principal, process, mcp) = if i == last { shared.take()? } else { shared.clone()? };
                Some(AuthzRequest { principal, action, resource, context: Ctx { process, mcp, detail } })
            })
            .collect()
    }
}

fn connect_resource(c: &Connect) -> Resource {
    let name = match (&c.name, c.ip) {
        (Some(name), _) => normalize_domain(name),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => String::new(),
    };
    Resource::Host { name, ip: c.ip, port: c.port, proto: c.proto }
}

fn connect_detail(c: &Connect) -> Detail {
    Detail::Net { named_by: c.named_by, sni: c.sni.as_deref().map(normalize_domain), tls: c.tls }
}

fn dns_resource(q: &DnsQuery) -> Resource {
    Resource::Domain { name: normalize_domain(&q.qname) }
}

fn dns_detail(q: &DnsQuery) -> Detail {
    let mut flags = q.flags.clone();
    flags.sort();
    flags.dedup();
    Detail::Dns { qtype: q.qtype.to_ascii_uppercase(), flags }
}

fn http_resource(h: &HttpRequest) -> Resource {
    let name = normalize_domain(&h.host);
    let ip = name.parse().ok();
    Resource::Host { name, ip, port: h.port, proto: Transport::Tcp }
}

fn http_detail(h: &HttpRequest) -> Detail {
    let mut headers: Vec<String> = h.headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    headers.sort();
    headers.dedup();
    let mut dlp = h.dlp.clone();
    dlp.sort();
    dlp.dedup();
    Detail::Http(HttpCtx {
        method: h.method.to_ascii_uppercase(),
        scheme: h.scheme.to_ascii_lowercase(),
        path: h.path.clone(),
        query: h.query.clone(),
        headers,
        body_size: h.body_size.and_then(|size| i64::try_from(size).ok()).unwrap_or(-1),
        dlp,
        inspected: h.inspected,
        git: h.git.clone(),
        publish: h.publish.clone(),
    })
}

/// The action an event is decided as (for a rename: the Delete of its
/// source; its Create of the target is a second request). `None` for
/// telemetry.
pub fn primary_action(kind: &EventKind) -> Option<Action> {
    match kind {
        EventKind::Connect(_) => Some(Action::NetConnect),
        EventKind::DnsQuery(_) => Some(Action::DnsResolve),
        EventKind::HttpRequest(_) => Some(Action::HttpRequest),
        EventKind::Mcp(m) => mcp_action(m),
        EventKind::File(f) => Some(file_action(f.op)),
        EventKind::ProcessExec(_) | EventKind::ProcessExit(_) => None,
    }
}

fn mcp_action(m: &McpMessage) -> Option<Action> {
    if m.direction != McpDirection::ToServer {
        return None;
    }
    match &m.message {
        McpPayload::ToolsCall { .. } => Some(Action::McpCallTool),
        McpPayload::PromptsGet { .. } => Some(Action::McpGetPrompt),
        McpPayload::ResourcesRead { .. } => Some(Action::McpReadResource),
        McpPayload::ToolsList => Some(Action::McpListTools),
        McpPayload::Initialize { .. } | McpPayload::Other { .. } => None,
    }
}

fn file_action(op: FileOp) -> Action {
    match op {
        FileOp::Read => Action::FileRead,
        FileOp::Write => Action::FileWrite,
        FileOp::Create => Action::FileCreate,
        FileOp::Delete | FileOp::Rename => Action::FileDelete,
        FileOp::Exec => Action::FileExec,
    }
}

fn mcp_request(m: &McpMessage) -> Option<(Action, Resource, Detail)> {
    let action = mcp_action(m)?;
    let server = m.server.clone();
    let call = |arguments: &serde_json::Value| {
        let mut ctx = CallCtx::from_arguments(arguments);
        ctx.tool_changed = m.tool_changed;
        ctx.findings = m.findings.clone();
        ctx.findings.sort();
        ctx.findings.dedup();
        Detail::Call(ctx)
    };
    let (resource, detail) = match &m.message {
        McpPayload::ToolsCall { name, arguments } => (Resource::Tool { server, name: name.clone() }, call(arguments)),
        McpPayload::PromptsGet { name, arguments } => {
            (Resource::Prompt { server, name: name.clone() }, call(arguments))
        }
        McpPayload::ResourcesRead { uri } => (Resource::McpResource { server, uri: uri.clone() }, Detail::Plain),
        McpPayload::ToolsList | McpPayload::Initialize { .. } | McpPayload::Other { .. } => {
            (Resource::Server { name: server }, Detail::Plain)
        }
    };
    Some((action, resource, detail))
}

fn file_requests(f: &FileAccess, workdir: &str) -> Vec<(Action, Resource)> {
    let cwd = if workdir.is_empty() { "/" } else { workdir };
    let path = |p: &str| Resource::Path { path: normalize_path(p, cwd) };
    let mut out = vec![(file_action(f.op), path(&f.path))];
    if let (FileOp::Rename, Some(target)) = (f.op, &f.target) {
        out.push((Action::FileCreate, path(target)));
    }
    out
}

fn in_project(resource: &Resource, workdir: &str) -> bool {
    matches!(resource, Resource::Path { path } if crate::names::is_within(path, workdir))
}
