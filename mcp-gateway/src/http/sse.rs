//! The legacy HTTP+SSE transport (MCP 2024-11-05) as a reverse proxy.
//!
//! `GET /mcp/<name>` opens the server's event stream. Its first event
//! names the endpoint messages are POSTed to; the client is told a URL on
//! the gateway instead (`/mcp/<name>/messages?session=<token>`), so every
//! message it sends comes here, is decided, and only then goes to the
//! server's endpoint. Everything the server sends arrives on the stream
//! and goes through the same core before the client's stream carries it.
//! One core per stream: the stream is the session.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::body::{self, ClientBody, read_bounded};
use super::endpoint::Endpoint;
use super::events::{self, EventReader};
use super::exchange::{self, EventBody, OnDrop};
use super::streamable::{is_event_stream, unreachable};
use super::upstream::{Pooled, Upstream};
use crate::framing::Line;
use crate::gateway::{Expect, Gateway, ToServer};
use crate::jsonrpc::Id;

/// Messages queued for the server before the core waits.
const QUEUE: usize = 256;

/// Longest excerpt of a refusal quoted back.
const EXCERPT: usize = 200;

/// One legacy stream: its core and where the server takes messages.
#[derive(Debug)]
pub(crate) struct Legacy {
    gateway: Arc<Gateway>,
    /// The server's message endpoint, on its own origin.
    endpoint: PathAndQuery,
    /// The client's credentials, passed on with every message.
    authorization: Option<http::HeaderValue>,
}

/// `GET /mcp/<name>`: opens the server's stream and relays it.
pub(crate) async fn open(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let Some(upstream) = endpoint.upstream.clone() else {
        let message = format!("MCP server {} has no configured URL", endpoint.name);
        return body::error(StatusCode::INTERNAL_SERVER_ERROR, &message);
    };
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let (events, target) = match connect(endpoint, &upstream, authorization.as_ref()).await {
        Ok(connected) => connected,
        Err(response) => return response,
    };
    let (to_client, receiver) = mpsc::channel(64);
    let (to_server, queue) = mpsc::channel(QUEUE);
    let gateway = match endpoint.gateway(to_client, to_server) {
        Ok(gateway) => gateway,
        Err(error) => return body::error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot start: {error}")),
    };
    let token = token();
    let legacy = Arc::new(Legacy { gateway: Arc::clone(&gateway), endpoint: target, authorization });
    endpoint.register_legacy(&token, &legacy);
    endpoint.enforcer.notice("info", format!("MCP event stream {token} opened"));
    tokio::spawn(pump(Arc::clone(endpoint), upstream, Arc::downgrade(&legacy), queue));
    let reader = tokio::spawn(read(Arc::clone(endpoint), gateway, events, token.clone()));
    let owner = Arc::clone(endpoint);
    let closing = token.clone();
    let on_drop = OnDrop::new(move || {
        reader.abort();
        if let Some(stream) = owner.legacy(&closing) {
            stream.gateway.client_closed();
        }
        owner.forget_legacy(&closing);
    });
    let first = events::endpoint(&format!("/mcp/{}/messages?session={token}", endpoint.name));
    exchange::event_stream_response(EventBody::new(Some(first), receiver, false, on_drop))
}

/// Opens the server's event stream and reads up to its `endpoint` event;
/// the error is the response for the client.
async fn connect(
    endpoint: &Endpoint,
    upstream: &Upstream,
    authorization: Option<&http::HeaderValue>,
) -> Result<(EventReader<Pooled>, PathAndQuery), Response<ClientBody>> {
    let mut headers = http::HeaderMap::new();
    headers.insert(header::ACCEPT, http::HeaderValue::from_static("text/event-stream"));
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, value.clone());
    }
    let response = match upstream.send(Method::GET, None, headers, Bytes::new()).await {
        Ok(response) => response,
        Err(error) => return Err(unreachable(endpoint, &error.to_string())),
    };
    let status = response.status();
    if status != StatusCode::OK || !is_event_stream(response.headers()) {
        body::drain(response.into_body(), 64 << 10).await;
        let status = if status.is_success() { StatusCode::BAD_GATEWAY } else { status };
        let message =
            format!("the MCP server answered the event-stream request with HTTP {status}, not an event stream");
        endpoint.enforcer.notice("warn", message.clone());
        return Err(body::error(status, &message));
    }
    let mut events = EventReader::new(response.into_body(), endpoint.max_message_bytes);
    let target = match tokio::time::timeout(endpoint.connect_timeout, first_endpoint(&mut events)).await {
        Ok(Ok(data)) => resolve(upstream, &data),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!("its event stream named no endpoint within {:?}", endpoint.connect_timeout)),
    };
    match target {
        Ok(target) => Ok((events, target)),
        Err(why) => Err(unreachable(endpoint, &why)),
    }
}

/// `POST /mcp/<name>/messages?session=<token>`: one message for the stream's server.
pub(crate) async fn post(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let token = request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("session=")));
    let Some(legacy) = token.and_then(|token| endpoint.legacy(token)) else {
        let message = format!("no open event stream of server {} has that session: GET /mcp/{0} first", endpoint.name);
        return body::error(StatusCode::NOT_FOUND, &message);
    };
    let line = match read_bounded(request.into_body(), endpoint.max_message_bytes).await {
        Ok(line) => line,
        Err(error) => {
            return body::error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {}", error.0));
        }
    };
    let oversized = matches!(line, Line::Oversized { .. });
    posted(legacy.gateway.from_client(line).await, oversized, StatusCode::ACCEPTED)
}

/// What a legacy client's POST gets once the core has seen its body:
/// answers, refusals included, go to the event stream, as the server's
/// would; `status` is what the server said to what went on.
pub(crate) fn posted(expect: Expect, oversized: bool, status: StatusCode) -> Response<ClientBody> {
    match expect {
        Expect::Refused if oversized => {
            body::error(StatusCode::PAYLOAD_TOO_LARGE, "message too large (answered on the event stream)")
        }
        Expect::Refused => {
            body::error(StatusCode::BAD_REQUEST, "not a JSON-RPC message (answered on the event stream)")
        }
        Expect::Answer | Expect::Nothing => exchange::status_only(status),
    }
}

/// The outcome of POSTing one message to a legacy server's endpoint: the
/// server's status. A request it refused, or that could not be sent, is
/// answered on the stream with why; for a notification that is a notice.
pub(crate) async fn settle<B>(gateway: &Gateway, request: Option<&Id>, sent: Result<Response<B>, String>) -> StatusCode
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let (status, why) = match sent {
        Ok(response) if response.status().is_success() => {
            let status = response.status();
            body::drain(response.into_body(), EXCERPT).await;
            return status;
        }
        Ok(response) => {
            let status = response.status();
            let text = body::excerpt(response.into_body(), EXCERPT).await;
            (status, format!("the MCP server refused the message with HTTP {status}: {text:?}"))
        }
        Err(why) => (StatusCode::BAD_GATEWAY, why),
    };
    match request {
        Some(id) => {
            gateway.undeliverable(id, &why).await;
        }
        None => gateway.enforcer().notice("warn", why),
    }
    status
}

/// An endpoint event's relative reference (`messages?s=1`) as a path
/// beside `base`, the path its stream was opened at.
pub(crate) fn beside(base: &str, relative: &str) -> String {
    let dir = base.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{relative}")
}

/// Waits for the `endpoint` event; its data.
async fn first_endpoint(events: &mut EventReader<Pooled>) -> Result<String, String> {
    loop {
        match events.next().await {
            Ok(Some(event)) if event.name == "endpoint" => {
                return match event.data {
                    Line::Message(data) => Ok(String::from_utf8_lossy(&data).trim().to_string()),
                    Line::Oversized { size, .. } => Err(format!("its endpoint event is {size} bytes long")),
                };
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("its event stream ended before naming an endpoint".into()),
            Err(error) => return Err(format!("its event stream broke off: {}", error.0)),
        }
    }
}

/// The endpoint as a path on the server's origin. Another origin is
/// refused: the server must not send the client's messages elsewhere.
fn resolve(upstream: &Upstream, data: &str) -> Result<PathAndQuery, String> {
    let origin = upstream.origin();
    let path = if let Some(rest) = data.strip_prefix(origin) {
        rest.to_string()
    } else if data.starts_with('/') {
        data.to_string()
    } else if data.contains("://") {
        return Err(format!("its event stream named an endpoint on another origin: {data:?}"));
    } else {
        beside(upstream.path().path(), data)
    };
    let path = if path.is_empty() { "/".to_string() } else { path };
    path.parse().map_err(|e| format!("its endpoint {data:?} is not a valid path: {e}"))
}

/// Relays the server's stream through the core until it ends; then every
/// request still waiting is answered and the client's stream closes.
async fn read(endpoint: Arc<Endpoint>, gateway: Arc<Gateway>, mut events: EventReader<Pooled>, token: String) {
    let why = loop {
        match events.next().await {
            Ok(Some(event)) if event.name == "message" => gateway.from_server(event.data).await,
            Ok(Some(_)) => {}
            Ok(None) => break "closed its event stream".to_string(),
            Err(error) => break format!("broke off its event stream ({})", error.0),
        }
    };
    endpoint.forget_legacy(&token);
    gateway.server_closed(&why).await;
    gateway.close_client().await;
}

/// Sends what the core lets through to the server's endpoint, in order
/// (the server answers on the stream; its POST answers are only accepted
/// or refused).
async fn pump(
    endpoint: Arc<Endpoint>,
    upstream: Arc<Upstream>,
    legacy: Weak<Legacy>,
    mut queue: mpsc::Receiver<ToServer>,
) {
    while let Some(message) = queue.recv().await {
        let Some(legacy) = legacy.upgrade() else { return };
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        if let Some(value) = &legacy.authorization {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
        let sent = upstream.send(Method::POST, Some(&legacy.endpoint), headers, Bytes::from(message.bytes)).await;
        let sent = sent.map_err(|error| format!("Bridle could not reach the MCP server {}: {error}", endpoint.name));
        settle(&legacy.gateway, message.request.as_ref(), sent).await;
    }
}

/// 128 bits nobody can guess: std's `RandomState` keys come from the OS.
fn token() -> String {
    let a = RandomState::new().hash_one(0u8);
    let b = RandomState::new().hash_one(1u8);
    format!("{a:016x}{b:016x}")
}
