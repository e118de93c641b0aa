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
        let base = Ctx {
            process: event.process.as_ref().map(|p| ProcessCtx {
                exe: p.exe.clone(),
                lineage: p.parents.iter().map(|parent| parent.exe.clone()).collect(),
            }),
            mcp: event.mcp.clone(),
            detail: Detail::Plain,
        };
        let make = |action, resource, detail| AuthzRequest {
            principal: principal.clone(),
            action,
            resource,
            context: Ctx { detail, ..base.clone() },
        };
        match &event.kind {
            EventKind::Connect(c) => vec![make(Action::NetConnect, connect_resource(c), connect_detail(c))],
            EventKind::DnsQuery(q) => vec![make(Action::DnsResolve, dns_resource(q), dns_detail(q))],
            EventKind::HttpRequest(h) => vec![make(Action::HttpRequest, http_resource(h), http_detail(h))],
            EventKind::Mcp(m) => {
                mcp_request(m).map(|(action, resource, detail)| make(action, resource, detail)).into_iter().collect()
            }
            EventKind::File(f) => file_requests(f, &principal.workdir)
                .into_iter()
                .map(|(action, resource)| {
                    let in_project = in_project(&resource, &principal.workdir);
                    make(action, resource, Detail::File { in_project })
                })
                .collect(),
            EventKind::ProcessExec(_) | EventKind::ProcessExit(_) => Vec::new(),
        }
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

fn mcp_request(m: &McpMessage) -> Option<(Action, Resource, Detail)> {
    if m.direction != McpDirection::ToServer {
        return None;
    }
    let server = m.server.clone();
    let call = |arguments: &serde_json::Value| {
        let mut ctx = CallCtx::from_arguments(arguments);
        ctx.tool_changed = m.tool_changed;
        ctx.findings = m.findings.clone();
        ctx.findings.sort();
        ctx.findings.dedup();
        Detail::Call(ctx)
    };
    match &m.message {
        McpPayload::ToolsCall { name, arguments } => {
            Some((Action::McpCallTool, Resource::Tool { server, name: name.clone() }, call(arguments)))
        }
        McpPayload::PromptsGet { name, arguments } => {
            Some((Action::McpGetPrompt, Resource::Prompt { server, name: name.clone() }, call(arguments)))
        }
        McpPayload::ResourcesRead { uri } => {
            Some((Action::McpReadResource, Resource::McpResource { server, uri: uri.clone() }, Detail::Plain))
        }
        McpPayload::ToolsList => Some((Action::McpListTools, Resource::Server { name: server }, Detail::Plain)),
        McpPayload::Initialize { .. } | McpPayload::Other { .. } => None,
    }
}

fn file_requests(f: &FileAccess, workdir: &str) -> Vec<(Action, Resource)> {
    let cwd = if workdir.is_empty() { "/" } else { workdir };
    let path = |p: &str| Resource::Path { path: normalize_path(p, cwd) };
    let single = |action| vec![(action, path(&f.path))];
    match f.op {
        FileOp::Read => single(Action::FileRead),
        FileOp::Write => single(Action::FileWrite),
        FileOp::Create => single(Action::FileCreate),
        FileOp::Delete => single(Action::FileDelete),
        FileOp::Exec => single(Action::FileExec),
        FileOp::Rename => {
            let mut out = vec![(Action::FileDelete, path(&f.path))];
            if let Some(target) = &f.target {
                out.push((Action::FileCreate, path(target)));
            }
            out
        }
    }
}

fn in_project(resource: &Resource, workdir: &str) -> bool {
    matches!(resource, Resource::Path { path } if crate::names::is_within(path, workdir))
}
