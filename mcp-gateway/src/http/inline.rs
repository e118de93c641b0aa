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
//! The legacy HTTP+SSE transport, whose answers come on a GET's event
//! stream, is handled in [`super::inline_sse`].
//!
//! Must never: forward a governed message undecided; hold a session
//! nobody uses past the idle limit.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, Response, header};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::body::ClientBody;
use super::endpoint::Endpoint;
use super::inline_sse::{self, Streams};
use super::route::{Route, RouteBody};
use super::streamable::{self, Unknown, accepts_events};
use super::{Limits, PROTOCOL_VERSION, SESSION_ID, Shared};
use crate::framing::Line;

/// Host and path pairs remembered as carrying MCP.
const MAX_SEEN: usize = 4096;

/// Hosts whose MCP is inspected at once (each holds its sessions).
const MAX_ENDPOINTS: usize = 512;

/// Streamable-HTTP MCP seen by the proxy, for every host.
#[derive(Debug)]
pub struct Inline {
    shared: Shared,
    limits: Limits,
    session_idle: Duration,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    swept: Mutex<Instant>,
    /// `"<host> <path>"` that carried MCP: later POSTs there are MCP too.
    seen: Mutex<HashSet<String>>,
    /// `[[mcp.servers]]` names: no host may be named like one of them.
    configured: Vec<String>,
    /// Legacy event streams by the endpoint they named.
    legacy: Streams,
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
    /// A message to the endpoint a legacy (HTTP+SSE) event stream named:
    /// through that stream's core.
    Legacy,
    /// Not MCP.
    None,
}

impl Inline {
    /// `max_message_bytes` bounds one message either way; sessions unused
    /// for `session_idle` are forgotten.
    /// `configured` are the `[[mcp.servers]]` names.
    pub fn new(shared: Shared, max_message_bytes: usize, session_idle: Duration, configured: Vec<String>) -> Self {
        // The proxy has already connected upstream: the connect bound is
        // the proxy's, not this one's.
        let limits = Limits { max_message_bytes, connect_timeout: Duration::from_secs(10) };
        Inline {
            shared,
            limits,
            session_idle,
            endpoints: Mutex::new(HashMap::new()),
            swept: Mutex::new(Instant::now()),
            seen: Mutex::new(HashSet::new()),
            configured,
            legacy: Streams::default(),
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_message_bytes
    }

    /// Whether a POST whose body starts with `prefix` (the rest not read
    /// yet) must be read whole, up to [`Inline::max_message_bytes`], before
    /// [`Inline::classify`] can tell: it starts like JSON (in any encoding a
    /// lenient JSON parser accepts), or nothing but whitespace came yet, and
    /// its first bytes do not already name `jsonrpc`. Padding before the
    /// key, or holding the body back, must not turn an MCP message into
    /// plain HTTP.
    pub fn needs_whole_body(&self, headers: &HeaderMap, prefix: &[u8]) -> bool {
        needs_whole_body(headers, prefix)
    }

    /// Sorts a request by its head and the first bytes of its body
    /// (`complete` when that is the whole body). A POST is MCP when it
    /// carries MCP's headers, when its body is JSON with a `jsonrpc` member
    /// (parsed when whole, so escapes do not hide it; else `"jsonrpc":`
    /// anywhere in the bytes read), whatever its content type, or when it
    /// goes to a host and path that carried MCP before.
    /// A POST to the endpoint an open legacy event stream named (`query`
    /// included) is [`McpRequest::Legacy`], whatever it looks like.
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        host: &str,
        path: &str,
        query: &str,
        method: &Method,
        headers: &HeaderMap,
        prefix: &[u8],
        complete: bool,
    ) -> McpRequest {
        if method == Method::POST {
            // Most proxies see no legacy stream: no key is built then.
            let open = lock(&self.legacy);
            if !open.is_empty() && open.contains_key(&legacy_key(host, path, query)) {
                return McpRequest::Legacy;
            }
        }
        let kind = sniff(method, headers, prefix, complete);
        // Built only for the two cases that use it: not for every GET.
        let place = || format!("{host} {path}");
        match (kind, method) {
            (McpRequest::Message, _) => {
                let mut seen = lock(&self.seen);
                if seen.len() < MAX_SEEN {
                    seen.insert(place());
                }
                kind
            }
            (McpRequest::None, &Method::POST) if lock(&self.seen).contains(&place()) => McpRequest::Message,
            _ => kind,
        }
    }

    /// The name policies see for the server at `host`: the host itself.
    /// A host a server name cannot hold as it is (an IPv6 literal's `:`,
    /// over 64 characters), or one that a configured server is named,
    /// gets a `-<hash>` suffix: two hosts must never share one name's
    /// policies and pins.
    pub fn server_name(&self, host: &str) -> String {
        let bare = host.trim_matches(|c| c == '[' || c == ']');
        let plain = bare.len() <= 64
            && bare.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bare.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if plain && !self.configured.iter().any(|name| name.eq_ignore_ascii_case(bare)) {
            return bare.to_string();
        }
        let digest = hex::encode(Sha256::digest(host.as_bytes()));
        let mut name: String = bare
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
            .take(64 - 9)
            .collect();
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            name.insert(0, 'x');
            name.truncate(64 - 9);
        }
        format!("{name}-{}", &digest[..8])
    }

    /// One POSTed body for the server at `host`, reached by `route`.
    pub async fn post(
        &self,
        host: &str,
        headers: &HeaderMap,
        body: Line,
        route: Arc<dyn Route>,
    ) -> Response<ClientBody> {
        let Some(endpoint) = self.endpoint(host) else { return too_many() };
        streamable::post_line(&endpoint, headers, body, route, Unknown::Adopt).await
    }

    /// The server's own event stream for the session `headers` name.
    pub async fn stream(&self, host: &str, headers: &HeaderMap, route: Arc<dyn Route>) -> Response<ClientBody> {
        let Some(endpoint) = self.endpoint(host) else { return too_many() };
        streamable::get_stream(&endpoint, headers, route, Unknown::Adopt).await
    }

    /// Whether the response to this request is watched for a legacy MCP
    /// event stream: a GET that names no session (the server's answer, not
    /// the agent's headers, says whether it is an event stream). One that
    /// asks for events asks for them uncompressed: an encoded stream
    /// cannot be read on the way.
    pub fn watch_request(&self, method: &Method, headers: &mut HeaderMap) -> bool {
        let watched = method == Method::GET && !headers.contains_key(SESSION_ID);
        if watched && accepts_events(headers) {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        watched
    }

    /// The event stream a watched GET to `host` at `path` got: passed on
    /// event by event, relayed through a core once it names an MCP
    /// endpoint (see [`inline_sse`]).
    pub fn event_stream(self: &Arc<Self>, host: &str, path: &str, body: RouteBody) -> RouteBody {
        let (inline, named) = (Arc::clone(self), host.to_string());
        let endpoint = move || inline.endpoint(&named);
        let audit = self.shared.audit.clone();
        let notice = move |message: String| super::warn(audit.as_deref(), "mcp-gateway/inline", message);
        let max = self.limits.max_message_bytes;
        inline_sse::event_stream(&self.legacy, (host, path), body, endpoint, notice, max)
    }

    /// One POSTed body for the legacy stream whose endpoint is `host`,
    /// `path` and `query`, reached by `route`.
    pub async fn legacy_post(
        &self,
        host: &str,
        path: &str,
        query: &str,
        body: Line,
        route: Arc<dyn Route>,
    ) -> Response<ClientBody> {
        inline_sse::post(&self.legacy, &legacy_key(host, path, query), body, route).await
    }

    /// The agent ended the session `headers` name (its DELETE goes on as
    /// ordinary HTTP).
    pub fn end(&self, host: &str, headers: &HeaderMap) {
        let name = self.server_name(host);
        let endpoint = lock(&self.endpoints).get(&name).cloned();
        if let (Some(endpoint), Some(id)) = (endpoint, streamable::header_text(headers, SESSION_ID)) {
            endpoint.forget(&id, "ended by the client");
        }
    }

    /// The endpoint for `host`; `None` when [`MAX_ENDPOINTS`] hosts have
    /// one already.
    fn endpoint(&self, host: &str) -> Option<Arc<Endpoint>> {
        self.sweep();
        let name = self.server_name(host);
        let mut endpoints = lock(&self.endpoints);
        if !endpoints.contains_key(&name) && endpoints.len() >= MAX_ENDPOINTS {
            return None;
        }
        let endpoint = endpoints.entry(name).or_insert_with_key(|name| {
            let endpoint = Endpoint::inline(name, &self.shared, &self.limits);
            endpoint
                .enforcer
                .notice("info", format!("MCP traffic to {host} seen in proxied HTTP; inspected as server {name}"));
            Arc::new(endpoint)
        });
        Some(Arc::clone(endpoint))
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

fn legacy_key(host: &str, path: &str, query: &str) -> String {
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    inline_sse::key(host, &target)
}

/// See [`Inline::needs_whole_body`].
fn needs_whole_body(headers: &HeaderMap, prefix: &[u8]) -> bool {
    if mcp_headers(headers) {
        return false;
    }
    let text = json_text(prefix);
    // Nothing but whitespace yet (a sender that held the body back past the
    // first look, or padded its start) says nothing either.
    let nothing_yet = text.iter().all(u8::is_ascii_whitespace);
    (nothing_yet || starts_like_json(&text)) && !names_jsonrpc(&text)
}

/// The head says MCP, whatever the body looks like (past `initialize`).
fn mcp_headers(headers: &HeaderMap) -> bool {
    headers.contains_key(SESSION_ID) || headers.contains_key(PROTOCOL_VERSION)
}

/// What the request's own head and bytes say.
fn sniff(method: &Method, headers: &HeaderMap, prefix: &[u8], complete: bool) -> McpRequest {
    match *method {
        Method::POST if mcp_headers(headers) || is_jsonrpc(&json_text(prefix), complete) => McpRequest::Message,
        Method::GET if headers.contains_key(SESSION_ID) && accepts_events(headers) => McpRequest::Stream,
        Method::DELETE if headers.contains_key(SESSION_ID) => McpRequest::End,
        _ => McpRequest::None,
    }
}

/// The body as UTF-8 JSON text, as lenient parsers (Python's `json`)
/// read it: a UTF-8 byte order mark dropped; UTF-16 and UTF-32 (told by
/// their BOM or by the NULs of an ASCII first character, RFC 4627 §3)
/// transcoded. Anything else is returned as it is.
fn json_text(bytes: &[u8]) -> Cow<'_, [u8]> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return Cow::Borrowed(rest);
    }
    let units = |width: usize, big: bool, skip: usize| {
        let chunks = bytes[skip..].chunks_exact(width);
        let word = move |c: &[u8]| {
            let mut word = [0u8; 4];
            word[4 - width..].copy_from_slice(c);
            let value = u32::from_be_bytes(word);
            if big { value } else { value.swap_bytes() >> (8 * (4 - width)) }
        };
        chunks.map(word)
    };
    let text: Option<String> = match bytes {
        [0, 0, 0xFE, 0xFF, ..] => Some(utf32(units(4, true, 4))),
        [0xFF, 0xFE, 0, 0, ..] => Some(utf32(units(4, false, 4))),
        [0, 0, 0, _, ..] => Some(utf32(units(4, true, 0))),
        [_, 0, 0, 0, ..] => Some(utf32(units(4, false, 0))),
        [0xFE, 0xFF, ..] => Some(utf16(units(2, true, 2))),
        [0xFF, 0xFE, ..] => Some(utf16(units(2, false, 2))),
        [0, _, ..] => Some(utf16(units(2, true, 0))),
        [_, 0, ..] => Some(utf16(units(2, false, 0))),
        _ => None,
    };
    text.map_or(Cow::Borrowed(bytes), |text| Cow::Owned(text.into_bytes()))
}

fn utf32(units: impl Iterator<Item = u32>) -> String {
    units.map(|u| char::from_u32(u).unwrap_or('\u{FFFD}')).collect()
}

fn utf16(units: impl Iterator<Item = u32>) -> String {
    char::decode_utf16(units.map(|u| u as u16)).map(|c| c.unwrap_or('\u{FFFD}')).collect()
}

/// Whether an event's data is a JSON-RPC message (or batch), read as
/// lenient parsers read it.
pub(crate) fn carries_jsonrpc(data: &[u8]) -> bool {
    is_jsonrpc(&json_text(data), true)
}

/// The first non-whitespace byte opens an object or an array.
fn starts_like_json(text: &[u8]) -> bool {
    text.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['))
}

/// A JSON object (or array of them) with a `jsonrpc` member.
fn is_jsonrpc(prefix: &[u8], complete: bool) -> bool {
    if !starts_like_json(prefix) {
        return false;
    }
    // Parsing every JSON body (an LLM API's requests) would cost; the key
    // is either there as text or hidden behind an escape.
    let worth_parsing = contains(prefix, b"jsonrpc") || contains(prefix, b"\\u");
    if complete
        && worth_parsing
        && let Ok(value) = serde_json::from_slice::<Value>(prefix)
    {
        let member = |v: &Value| v.as_object().is_some_and(|o| o.contains_key("jsonrpc"));
        return match &value {
            Value::Array(items) => items.iter().any(member),
            other => member(other),
        };
    }
    names_jsonrpc(prefix)
}

fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// `"jsonrpc"` followed by a colon: the key, in JSON text not parsed whole.
fn names_jsonrpc(bytes: &[u8]) -> bool {
    const KEY: &[u8] = b"\"jsonrpc\"";
    let is_key = |at: usize| {
        let rest = &bytes[at + KEY.len()..];
        rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
    };
    bytes.windows(KEY.len()).enumerate().any(|(at, window)| window == KEY && is_key(at))
}

fn too_many() -> Response<ClientBody> {
    let message = format!("Bridle inspects MCP for at most {MAX_ENDPOINTS} hosts at once");
    super::body::error(http::StatusCode::SERVICE_UNAVAILABLE, &message)
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

    fn classify(method: &Method, headers: &HeaderMap, body: &[u8]) -> McpRequest {
        sniff(method, headers, body, true)
    }

    #[test]
    fn json_rpc_posts_and_mcp_headers_are_mcp() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let initialize = br#" {"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(classify(&Method::POST, &json, initialize), McpRequest::Message);
        assert_eq!(classify(&Method::POST, &json, br#"[{"jsonrpc":"2.0","method":"x"}]"#), McpRequest::Message);
        assert_eq!(classify(&Method::POST, &json, br#"{"query":"jsonrpc"}"#), McpRequest::None);
        assert_eq!(classify(&Method::POST, &json, br#"{"a":1}"#), McpRequest::None);
        // Whatever the content type says, and however the key is written.
        let other = headers(&[("content-type", "application/json-rpc")]);
        assert_eq!(classify(&Method::POST, &other, initialize), McpRequest::Message);
        let escaped = br#"{"\u006asonrpc":"2.0","id":1,"method":"tools/call"}"#;
        assert_eq!(classify(&Method::POST, &json, escaped), McpRequest::Message);
        let padded = format!(r#"{{"pad":"{}","jsonrpc":"2.0","id":1,"method":"x"}}"#, " ".repeat(1000));
        assert_eq!(sniff(&Method::POST, &json, padded.as_bytes(), false), McpRequest::Message);
        // Past initialize the header says it, whatever the body looks like.
        let versioned = headers(&[("mcp-protocol-version", "2025-11-25")]);
        assert_eq!(classify(&Method::POST, &versioned, b"not json"), McpRequest::Message);
    }

    #[test]
    fn json_in_any_encoding_a_lenient_parser_reads_is_sniffed() {
        let json = headers(&[("content-type", "application/json")]);
        let message = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        let utf16le: Vec<u8> = message.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> =
            [0xFE, 0xFF].into_iter().chain(message.encode_utf16().flat_map(u16::to_be_bytes)).collect();
        let utf32le: Vec<u8> = message.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect();
        let bom = [b"\xEF\xBB\xBF".as_slice(), message.as_bytes()].concat();
        for body in [bom, utf16le, utf16be, utf32le] {
            assert_eq!(classify(&Method::POST, &json, &body), McpRequest::Message, "{body:?}");
        }
    }

    #[test]
    fn json_whose_first_bytes_do_not_say_is_read_whole() {
        let json = headers(&[("content-type", "application/json")]);
        let padded = format!(r#"{{"id":1,"method":"tools/call","params":{{"pad":"{}"}}"#, "x".repeat(100));
        assert!(needs_whole_body(&json, padded.as_bytes()));
        assert!(needs_whole_body(&json, br#"{"\u006asonrpc":"2.0""#), "an escaped key");
        assert!(needs_whole_body(&json, b"\xEF\xBB\xBF  [ {"), "after a BOM");
        assert!(!needs_whole_body(&json, br#"{"jsonrpc":"2.0","id":1,"pad":""#), "the key is there");
        assert!(!needs_whole_body(&json, b"--boundary\r\n"), "not JSON");
        assert!(needs_whole_body(&json, b""), "nothing read yet");
        assert!(needs_whole_body(&json, &[b' '; 1000]), "whitespace only");
        let versioned = headers(&[("mcp-protocol-version", "2025-11-25")]);
        assert!(!needs_whole_body(&versioned, padded.as_bytes()), "the header already says MCP");
    }

    fn inline() -> Inline {
        let policies = bridle_engine::policy::load_files("test", Vec::new()).expect("policies");
        let shared = Shared {
            authorizer: Arc::new(bridle_engine::authorizer::Authorizer::new(policies, 100)),
            approvals: Arc::new(bridle_engine::approvals::Approvals::new(Duration::from_secs(1), None)),
            audit: None,
            pins: crate::pins::PinStore::new(std::env::temp_dir().join("bridle-inline-test-pins")),
            session: "s".into(),
            principal: "agent".into(),
        };
        Inline::new(shared, 1 << 20, Duration::from_secs(60), vec!["github".into()])
    }

    #[test]
    fn a_host_and_path_that_carried_mcp_stay_mcp() {
        let inline = inline();
        let json = headers(&[("content-type", "application/json")]);
        let first = br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#;
        let seen = |body: &[u8]| inline.classify("mcp.test", "/mcp", "", &Method::POST, &json, body, false);
        assert_eq!(seen(b""), McpRequest::None, "nothing known yet");
        assert_eq!(seen(first), McpRequest::Message);
        assert_eq!(seen(b""), McpRequest::Message, "a body that arrives late is still MCP there");
        let elsewhere = inline.classify("mcp.test", "/other", "", &Method::POST, &json, b"", false);
        assert_eq!(elsewhere, McpRequest::None);
    }

    #[test]
    fn session_streams_and_ends_are_recognised_by_their_session_id() {
        let stream = headers(&[("mcp-session-id", "s1"), ("accept", "text/event-stream")]);
        assert_eq!(classify(&Method::GET, &stream, b""), McpRequest::Stream);
        assert_eq!(classify(&Method::GET, &headers(&[("accept", "text/event-stream")]), b""), McpRequest::None);
        assert_eq!(classify(&Method::DELETE, &headers(&[("mcp-session-id", "s1")]), b""), McpRequest::End);
        assert_eq!(classify(&Method::GET, &headers(&[]), b""), McpRequest::None);
    }

    #[test]
    fn hosts_become_valid_server_names_that_never_clash() {
        let inline = inline();
        assert_eq!(inline.server_name("mcp.example.test"), "mcp.example.test");
        let v6 = inline.server_name("[2001:db8::1]");
        assert!(v6.starts_with("2001-db8--1-") && v6.len() == "2001-db8--1".len() + 9, "{v6}");
        assert!(inline.server_name("_svc.test").starts_with("x_svc.test-"));
        let long = "a".repeat(80);
        assert_eq!(inline.server_name(&long).len(), 64);
        assert_ne!(inline.server_name(&long), inline.server_name(&format!("{long}b")), "cut names keep apart");
        assert_ne!(inline.server_name("github"), "github", "a configured server's name is not a host's");
        for host in ["mcp.example.test", "[2001:db8::1]", "_svc.test", long.as_str(), "github"] {
            assert!(crate::config::valid_server_name(&inline.server_name(host)), "{host}");
        }
    }
}
