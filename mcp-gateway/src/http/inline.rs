//! MCP inside proxied HTTP: an agent that talks streamable HTTP to a
//! server Bridle was not told about (a remote MCP endpoint, an API that
//! speaks JSON-RPC) is caught by the transparent proxy, which hands each
//! such request here after its HTTP-level decision. From here on it is
//! the same code as the reverse proxy: one [`Endpoint`] per host, one core
//! per MCP session, every message classified, decided and recorded, tool
//! lists pinned and filtered, results scanned.
//!
//! The server is named by its host (`Mcp::Server::"mcp.example.com"`);
//! its sessions are routed over the agent's own intercepted connection
//! ([`Route`]), so the agent's headers, credentials Bridle injects and the
//! upstream's verified TLS all stay as the proxy made them.
//!
//! Must never: forward a governed message undecided; hold a session
//! nobody uses past the idle limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Response, header};

use super::body::ClientBody;
use super::endpoint::Endpoint;
use super::route::Route;
use super::streamable::{self, Unknown};
use super::{Limits, PROTOCOL_VERSION, SESSION_ID, Shared};
use crate::framing::Line;

/// How far into a body `"jsonrpc"` must appear for it to count as JSON-RPC.
const SNIFF: usize = 256;

/// Streamable-HTTP MCP seen by the proxy, for every host.
#[derive(Debug)]
pub struct Inline {
    shared: Shared,
    limits: Limits,
    session_idle: Duration,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    swept: Mutex<Instant>,
}

/// What an agent's request is, as MCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpRequest {
    /// A JSON-RPC message or batch: through the core.
    Message,
    /// The server's own event stream of a session.
    Stream,
    /// The end of a session.
    End,
    /// Not MCP.
    None,
}

impl Inline {
    /// `max_message_bytes` bounds one message either way; sessions unused
    /// for `session_idle` are forgotten.
    pub fn new(shared: Shared, max_message_bytes: usize, session_idle: Duration) -> Self {
        // The proxy has already connected upstream: the connect bound is
        // the proxy's, not this one's.
        let limits = Limits { max_message_bytes, connect_timeout: Duration::from_secs(10) };
        Inline {
            shared,
            limits,
            session_idle,
            endpoints: Mutex::new(HashMap::new()),
            swept: Mutex::new(Instant::now()),
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_message_bytes
    }

    /// Sorts a request by its head and the first bytes of its body. A POST
    /// is MCP when it carries MCP's headers, or when it is JSON that names
    /// `"jsonrpc"` up front (an `initialize` has no MCP header yet).
    pub fn classify(method: &Method, headers: &HeaderMap, prefix: &[u8]) -> McpRequest {
        let mcp_headers = headers.contains_key(SESSION_ID) || headers.contains_key(PROTOCOL_VERSION);
        match *method {
            Method::POST if mcp_headers || (is_json(headers) && names_jsonrpc(prefix)) => McpRequest::Message,
            Method::GET if headers.contains_key(SESSION_ID) && accepts_events(headers) => McpRequest::Stream,
            Method::DELETE if headers.contains_key(SESSION_ID) => McpRequest::End,
            _ => McpRequest::None,
        }
    }

    /// The name policies see for the server at `host`: the host itself,
    /// with characters a server name cannot hold (an IPv6 literal's `:`)
    /// made `-`.
    pub fn server_name(host: &str) -> String {
        let mut name: String = host
            .trim_matches(|c| c == '[' || c == ']')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
            .take(64)
            .collect();
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            name.insert(0, 'x');
            name.truncate(64);
        }
        name
    }

    /// One POSTed body for the server at `host`, reached by `route`.
    pub async fn post(
        &self,
        host: &str,
        headers: &HeaderMap,
        body: Line,
        route: Arc<dyn Route>,
    ) -> Response<ClientBody> {
        let endpoint = self.endpoint(host);
        streamable::post_line(&endpoint, headers, body, route, Unknown::Adopt).await
    }

    /// The server's own event stream for the session `headers` name.
    pub async fn stream(&self, host: &str, headers: &HeaderMap, route: Arc<dyn Route>) -> Response<ClientBody> {
        let endpoint = self.endpoint(host);
        streamable::get_stream(&endpoint, headers, route, Unknown::Adopt).await
    }

    /// The agent ended the session `headers` name (its DELETE goes on as
    /// ordinary HTTP).
    pub fn end(&self, host: &str, headers: &HeaderMap) {
        let name = Inline::server_name(host);
        let endpoint = lock(&self.endpoints).get(&name).cloned();
        if let (Some(endpoint), Some(id)) = (endpoint, streamable::header_text(headers, SESSION_ID)) {
            endpoint.forget(&id, "ended by the client");
        }
    }

    fn endpoint(&self, host: &str) -> Arc<Endpoint> {
        self.sweep();
        let name = Inline::server_name(host);
        let mut endpoints = lock(&self.endpoints);
        let endpoint = endpoints.entry(name).or_insert_with_key(|name| {
            let endpoint = Endpoint::inline(name, &self.shared, &self.limits);
            endpoint
                .enforcer
                .notice("info", format!("MCP traffic to {host} seen in proxied HTTP; inspected as server {name}"));
            Arc::new(endpoint)
        });
        Arc::clone(endpoint)
    }

    /// Forgets idle sessions, at most every quarter of the idle limit (no
    /// task of its own: the proxy's requests drive it).
    fn sweep(&self) {
        let every = (self.session_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        {
            let mut swept = lock(&self.swept);
            if swept.elapsed() < every {
                return;
            }
            *swept = Instant::now();
        }
        let endpoints: Vec<Arc<Endpoint>> = lock(&self.endpoints).values().cloned().collect();
        for endpoint in endpoints {
            endpoint.sweep(self.session_idle);
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A JSON object or array with a `"jsonrpc"` key near the start.
fn names_jsonrpc(prefix: &[u8]) -> bool {
    const KEY: &[u8] = b"\"jsonrpc\"";
    let head = &prefix[..prefix.len().min(SNIFF)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    let is_key = |at: usize| {
        let rest = &head[at + KEY.len()..];
        rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
    };
    start.is_some_and(|i| matches!(head[i], b'{' | b'['))
        && head.windows(KEY.len()).enumerate().any(|(at, window)| window == KEY && is_key(at))
}

fn accepts_events(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().expect("value"));
        }
        headers
    }

    #[test]
    fn json_rpc_posts_and_mcp_headers_are_mcp() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let initialize = br#" {"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(Inline::classify(&Method::POST, &json, initialize), McpRequest::Message);
        assert_eq!(Inline::classify(&Method::POST, &json, br#"[{"jsonrpc":"2.0","method":"x"}]"#), McpRequest::Message);
        assert_eq!(Inline::classify(&Method::POST, &json, br#"{"query":"jsonrpc"}"#), McpRequest::None);
        assert_eq!(Inline::classify(&Method::POST, &json, br#"{"a":1}"#), McpRequest::None);
        let form = headers(&[("content-type", "text/plain")]);
        assert_eq!(Inline::classify(&Method::POST, &form, initialize), McpRequest::None);
        // Past initialize the header says it, whatever the body looks like.
        let versioned = headers(&[("mcp-protocol-version", "2025-11-25")]);
        assert_eq!(Inline::classify(&Method::POST, &versioned, b"not json"), McpRequest::Message);
    }

    #[test]
    fn session_streams_and_ends_are_recognised_by_their_session_id() {
        let stream = headers(&[("mcp-session-id", "s1"), ("accept", "text/event-stream")]);
        assert_eq!(Inline::classify(&Method::GET, &stream, b""), McpRequest::Stream);
        assert_eq!(Inline::classify(&Method::GET, &headers(&[("accept", "text/event-stream")]), b""), McpRequest::None);
        assert_eq!(Inline::classify(&Method::DELETE, &headers(&[("mcp-session-id", "s1")]), b""), McpRequest::End);
        assert_eq!(Inline::classify(&Method::GET, &headers(&[]), b""), McpRequest::None);
    }

    #[test]
    fn hosts_become_valid_server_names() {
        assert_eq!(Inline::server_name("mcp.example.test"), "mcp.example.test");
        assert_eq!(Inline::server_name("[2001:db8::1]"), "2001-db8--1");
        assert_eq!(Inline::server_name("_svc.test"), "x_svc.test");
        let long = "a".repeat(80);
        assert_eq!(Inline::server_name(&long).len(), 64);
        for host in ["mcp.example.test", "[2001:db8::1]", "_svc.test", long.as_str()] {
            assert!(crate::config::valid_server_name(&Inline::server_name(host)), "{host}");
        }
    }
}
