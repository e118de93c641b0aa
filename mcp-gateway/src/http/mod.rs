//! The HTTP transports: a reverse proxy serving each `[[mcp.servers]]`
//! entry at `/mcp/<name>`, streamable HTTP ([`streamable`]) or the legacy
//! HTTP+SSE transport ([`sse`]), every message through the same core as
//! stdio ([`crate::gateway`]).
//!
//! Owns: the listener and routing (here), one [`endpoint::Endpoint`] per
//! server with its upstream client ([`upstream`]) and sessions
//! ([`session`]), bounded bodies and event streams ([`body`], [`events`]),
//! and the client side of each exchange ([`exchange`]). The same sessions
//! serve MCP the transparent proxy finds in an agent's HTTP ([`Inline`]),
//! routed over the agent's own connection ([`Route`]), the legacy
//! transport's event streams too ([`inline_sse`]).
//!
//! Not relayed: SSE event ids and retry hints. A stream that ends before
//! its answer gets a JSON-RPC error for the request instead of being
//! resumed; a client's `Last-Event-ID` on the GET stream is passed on.
//!
//! Must never: forward a message the core has not let through, accept a
//! body or an event larger than `max_message_bytes` into memory, or let a
//! browser page (a foreign `Origin`) drive a server.

mod body;
mod endpoint;
mod events;
mod exchange;
mod inline;
mod inline_sse;
mod route;
mod session;
mod sse;
mod streamable;
mod upstream;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::{McpSection, McpTransport};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::GatewayError;
use crate::pins::PinStore;
pub use body::{ClientBody, read_bounded_after};
use endpoint::Endpoint;
pub use inline::{Inline, McpRequest};
pub use route::{Route, RouteBody, RouteError, RouteFuture};
pub use streamable::{content_coding, is_event_stream};

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const LAST_EVENT_ID: &str = "last-event-id";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// What every session of every server shares with the rest of the
/// process: one decision path, one audit log, one pin store.
#[derive(Clone, Debug)]
pub struct Shared {
    pub authorizer: Arc<Authorizer>,
    pub approvals: Arc<Approvals>,
    pub audit: Option<Arc<AuditLog>>,
    pub pins: PinStore,
    /// The session events are recorded under (`mcp-serve-<pid>`, `run-<pid>`, `up`).
    pub session: String,
    /// The agent: `Agent::"<principal>"`.
    pub principal: String,
}

/// The limits of `[mcp]`.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
}

/// The gateway's HTTP side, bound and ready to serve.
#[derive(Debug)]
pub struct HttpGateway {
    listener: TcpListener,
    routes: Arc<Routes>,
    session_idle: Duration,
}

#[derive(Debug)]
struct Routes {
    endpoints: BTreeMap<String, Arc<Endpoint>>,
    audit: Option<Arc<AuditLog>>,
}

impl HttpGateway {
    /// Binds `[mcp] listen` for the servers of `[[mcp.servers]]`; `roots`
    /// verify `https` servers (required only if there is one).
    pub async fn bind(
        section: &McpSection,
        shared: Shared,
        roots: Option<&rustls::RootCertStore>,
    ) -> Result<Self, GatewayError> {
        let limits =
            Limits { max_message_bytes: section.max_message_bytes, connect_timeout: section.connect_timeout() };
        let mut endpoints = BTreeMap::new();
        for server in &section.servers {
            endpoints.insert(server.name.clone(), Arc::new(Endpoint::new(server, &shared, &limits, roots)?));
        }
        let listener = TcpListener::bind(section.listen)
            .await
            .map_err(|source| GatewayError::Listen { addr: section.listen, source })?;
        let routes = Arc::new(Routes { endpoints, audit: shared.audit.clone() });
        Ok(HttpGateway { listener, routes, session_idle: section.session_idle() })
    }

    /// Where it listens (the port, when `listen` asked for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, GatewayError> {
        self.listener
            .local_addr()
            .map_err(|source| GatewayError::Listen { addr: SocketAddr::from(([0; 4], 0)), source })
    }

    /// Serves until `stop` completes. Connections already open are not
    /// waited for: they end with the runtime.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let sweeper = tokio::spawn(sweep(Arc::clone(&self.routes), self.session_idle));
        tokio::pin!(stop);
        loop {
            let (stream, _) = tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, most likely: back off instead of spinning.
                        tracing::warn!(%error, "MCP gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let routes = Arc::clone(&self.routes);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let routes = Arc::clone(&routes);
                    async move { Ok::<_, Infallible>(routes.handle(request).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(%error, "MCP gateway connection ended");
                }
            });
        }
        sweeper.abort();
    }
}

impl Routes {
    async fn handle(&self, request: Request<Incoming>) -> Response<ClientBody> {
        if let Some(origin) = request.headers().get(header::ORIGIN)
            && !is_loopback_origin(origin.to_str().unwrap_or(""))
        {
            // A web page must not reach the agent's tools (DNS rebinding).
            let origin = origin.to_str().unwrap_or("(not text)").to_string();
            self.notice(format!("refused a request from web origin {origin:?}"));
            return body::error(StatusCode::FORBIDDEN, &format!("requests from origin {origin:?} are not allowed"));
        }
        let path = request.uri().path().to_string();
        let Some((name, rest)) = path.strip_prefix("/mcp/").map(|p| p.split_once('/').unwrap_or((p, ""))) else {
            return self.not_found(&path);
        };
        let Some(endpoint) = self.endpoints.get(name) else {
            self.notice(format!("refused a request for unknown MCP server {name:?}"));
            let known: Vec<&String> = self.endpoints.keys().collect();
            let message = format!("no MCP server named {name:?} is configured in [[mcp.servers]]");
            return body::json_response(StatusCode::NOT_FOUND, &json!({"error": message, "servers": known}));
        };
        let method = request.method().clone();
        match (endpoint.transport, rest) {
            (McpTransport::StreamableHttp, "") => match method {
                Method::POST => streamable::post(endpoint, request).await,
                Method::GET => streamable::get(endpoint, request).await,
                Method::DELETE => streamable::delete(endpoint, request).await,
                _ => not_allowed("GET, POST, DELETE"),
            },
            (McpTransport::Sse, "" | "sse") if method == Method::GET => sse::open(endpoint, request).await,
            (McpTransport::Sse, "messages") if method == Method::POST => sse::post(endpoint, request).await,
            (McpTransport::Sse, "" | "sse") => not_allowed("GET"),
            (McpTransport::Sse, "messages") => not_allowed("POST"),
            _ => self.not_found(&path),
        }
    }

    fn not_found(&self, path: &str) -> Response<ClientBody> {
        let known: Vec<String> = self.endpoints.keys().map(|name| format!("/mcp/{name}")).collect();
        let message = format!("{path:?} is not an MCP endpoint of this gateway");
        body::json_response(StatusCode::NOT_FOUND, &json!({"error": message, "endpoints": known}))
    }

    fn notice(&self, message: String) {
        warn(self.audit.as_deref(), "mcp-gateway/http", message);
    }
}

/// A warning, logged and (with an audit log) audited as `component`'s.
pub(crate) fn warn(audit: Option<&AuditLog>, component: &str, message: String) {
    tracing::warn!(component, "{message}");
    let Some(audit) = audit else { return };
    let entry = AuditEntry::Notice { component: component.into(), level: "warn".into(), message };
    if let Err(error) = audit.append(entry) {
        tracing::error!(%error, "could not write an MCP audit record");
    }
}

fn not_allowed(allow: &'static str) -> Response<ClientBody> {
    let mut response = body::error(StatusCode::METHOD_NOT_ALLOWED, &format!("use {allow}"));
    response.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// `http(s)://localhost`, `127.x`, `[::1]`, any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Forgets idle sessions now and then.
async fn sweep(routes: Arc<Routes>, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        for endpoint in routes.endpoints.values() {
            endpoint.sweep(idle);
        }
    }
}
