//! The gateway on 127.0.0.1:0 in front of a scripted upstream on
//! 127.0.0.1:0: sessions, decisions, filtering and bad upstream answers
//! over real sockets, in milliseconds. (tests/mcp_http_cli.rs does the same
//! with the MCP Python SDK on both sides.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::{McpSection, McpServer, McpTransport};
use bridle_engine::policy::{PolicyFile, load_files};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::super::upstream::Upstream;
use super::super::{HttpGateway, Shared};
use crate::pins::PinStore;

const POLICY: &str = r#"
@id("mcp-allow") @reason("MCP allowed")
permit(principal, action in [Mcp::Action::"CallTool", Mcp::Action::"ListTools"], resource);

@id("no-drop") @reason("dropping databases is not allowed")
forbid(principal, action == Mcp::Action::"CallTool", resource) when { resource.name == "drop_database" };
"#;

/// What the scripted upstream received: (session header, message).
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Answers by method: `initialize` assigns session `s-1`, `tools/list`
/// comes as an event stream, the `html` tool gets a login page, other
/// calls `ok <name>`, notifications 202.
async fn upstream(seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(Arc::clone(&seen), request));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(seen: Seen, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let session = request.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("seen").push((session, message.clone()));
    let id = message["id"].clone();
    let reply = |content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert("content-type", HeaderValue::from_str(content_type).expect("type"));
        response
    };
    let result = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    Ok(match (message["method"].as_str(), message["params"]["name"].as_str()) {
        (Some("initialize"), _) => {
            let mut response = reply(
                "application/json",
                result(json!({"protocolVersion": "2025-11-25",
                "capabilities": {}, "serverInfo": {"name": "scripted", "version": "1"}})),
            );
            response.headers_mut().insert("mcp-session-id", HeaderValue::from_static("s-1"));
            response
        }
        (Some("tools/list"), _) => {
            let tools = json!({"tools": [{"name": "add", "inputSchema": {"type": "object"}},
                                         {"name": "drop_database", "inputSchema": {"type": "object"}}]});
            reply("text/event-stream", format!("event: message\ndata: {}\n\n", result(tools)))
        }
        (Some("tools/call"), Some("html")) => reply("text/html", "<html><body>Please log in</body></html>".into()),
        (Some("tools/call"), Some(name)) => {
            reply("application/json", result(json!({"content": [{"type": "text", "text": format!("ok {name}")}]})))
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
    })
}

struct Harness {
    client: Upstream,
    seen: Seen,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    harness_with(McpSection::default()).await
}

async fn harness_with(base: McpSection) -> Harness {
    let seen: Seen = Arc::default();
    let upstream = upstream(Arc::clone(&seen)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = vec![PolicyFile { name: "t.cedar".into(), text: POLICY.into() }];
    let authorizer = Arc::new(Authorizer::new(load_files("test", files).expect("policy"), 1000));
    let options = AuditOptions { fsync_interval: Duration::ZERO, index: false, redact: Vec::new() };
    let audit = Arc::new(AuditLog::open(dir.path().join("audit.jsonl"), options).expect("audit"));
    let shared = Shared {
        authorizer,
        approvals: Arc::new(Approvals::new(Duration::from_secs(5), Some(Arc::clone(&audit)))),
        audit: Some(audit),
        pins: PinStore::new(dir.path().join("pins")),
        session: "s".into(),
        principal: "agent".into(),
    };
    let section = McpSection {
        listen: "127.0.0.1:0".parse().expect("addr"),
        servers: vec![McpServer {
            name: "demo".into(),
            url: format!("http://{upstream}/mcp"),
            transport: McpTransport::StreamableHttp,
            headers: BTreeMap::new(),
        }],
        ..base
    };
    let gateway = HttpGateway::bind(&section, shared, None).await.expect("bind");
    let addr = gateway.local_addr().expect("addr");
    tokio::spawn(gateway.run(std::future::pending()));
    let client =
        Upstream::new("gateway", &format!("http://{addr}/mcp/demo"), &BTreeMap::new(), None, Duration::from_secs(5))
            .expect("client");
    Harness { client, seen, _dir: dir }
}

impl Harness {
    async fn post(&self, session: Option<&str>, message: Value) -> (StatusCode, HeaderMap, Value) {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("accept", HeaderValue::from_static("application/json, text/event-stream"));
        if let Some(session) = session {
            headers.insert("mcp-session-id", HeaderValue::from_str(session).expect("header"));
        }
        let body = Bytes::from(message.to_string());
        let response = self.client.send(Method::POST, None, headers, body).await.expect("answered");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") };
        (parts.status, parts.headers, value)
    }

    fn upstream_saw(&self, method: &str) -> Vec<(Option<String>, Value)> {
        self.seen.lock().expect("seen").iter().filter(|(_, m)| m["method"] == method).cloned().collect()
    }
}

fn call(id: u64, name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

#[tokio::test]
async fn a_session_is_filed_by_id_and_its_calls_decided() {
    let h = harness().await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
    let (status, headers, answer) = h.post(None, init).await;
    assert_eq!((status, answer["result"]["serverInfo"]["name"].clone()), (StatusCode::OK, json!("scripted")));
    assert_eq!(headers.get("mcp-session-id").and_then(|v| v.to_str().ok()), Some("s-1"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(h.post(Some("s-1"), initialized).await.0, StatusCode::ACCEPTED);

    // The event-stream answer comes back as JSON, filtered.
    let (status, headers, listed) =
        h.post(Some("s-1"), json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(1), "{listed}");

    let (_, _, denied) = h.post(Some("s-1"), call(2, "drop_database")).await;
    assert_eq!(denied["error"]["code"], crate::jsonrpc::DENIED, "{denied}");
    let (_, _, allowed) = h.post(Some("s-1"), call(3, "add")).await;
    assert_eq!(allowed["result"]["content"][0]["text"], "ok add", "{allowed}");
    let calls = h.upstream_saw("tools/call");
    assert_eq!(calls.len(), 1, "the denied call never left: {calls:?}");
    assert_eq!(calls[0].0.as_deref(), Some("s-1"), "the session id went along");

    let (status, _, page) = h.post(Some("s-1"), call(4, "html")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(page["error"]["code"], crate::jsonrpc::CONNECTION_CLOSED);
    let message = page["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("text/html, not JSON-RPC") && message.contains("Please log in"), "{message}");
}

#[tokio::test]
async fn unknown_sessions_and_bad_bodies_are_refused_here() {
    let h = harness().await;
    let (status, _, answer) = h.post(Some("made-up"), call(1, "add")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(h.upstream_saw("tools/call").is_empty());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let response = h.client.send(Method::POST, None, headers, Bytes::from_static(b"[1, 2")).await.expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["error"]["code"], crate::jsonrpc::PARSE_ERROR);
    assert!(h.seen.lock().expect("seen").is_empty(), "nothing reached the server");
}

#[tokio::test]
async fn an_idle_session_is_forgotten_and_its_client_told_to_start_over() {
    let h = harness_with(McpSection { session_idle_secs: 1, ..McpSection::default() }).await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
    assert_eq!(h.post(None, init).await.0, StatusCode::OK);
    assert_eq!(h.post(Some("s-1"), call(1, "add")).await.0, StatusCode::OK, "in use, kept");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, answer) = h.post(Some("s-1"), call(2, "add")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(h.upstream_saw("tools/call").len(), 1);
}
