//! The legacy HTTP+SSE transport (MCP 2024-11-05) seen inside proxied
//! HTTP. Its server answers on an event stream the agent opened with a
//! GET, not in the responses to the agent's POSTs, so both halves go
//! through one core:
//!
//! - an event stream whose first event is `endpoint` is MCP: from then on
//!   every `message` event goes through the core before the agent sees it
//!   (results matched and scanned, tool lists pinned and filtered), and a
//!   denied call's JSON-RPC error reaches the agent there, where a legacy
//!   client reads its answers;
//! - a POST to the endpoint that stream named is decided message by
//!   message, and only what the core lets through goes on to the server.
//!
//! Any other event stream passes through untouched, once its first event
//! (or [`SNIFF_WAIT`]) has shown it is not MCP.
//!
//! Must never: let a stream's server messages reach the agent uninspected
//! once it named an endpoint; forward a POSTed message the core has not
//! let through.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::body::{self, ClientBody};
use super::endpoint::Endpoint;
use super::events::{self, EventReader};
use super::exchange::{Collected, EventBody, OnDrop};
use super::route::{Route, RouteBody};
use super::sse;
use crate::framing::Line;
use crate::gateway::{Gateway, Outbox, ToServer};

/// How long a GET's event stream may take to show its first event before
/// it is passed on as not MCP (a legacy server names its endpoint at once).
pub(crate) const SNIFF_WAIT: Duration = Duration::from_secs(2);

/// Legacy streams inspected at once, over all hosts.
const MAX_STREAMS: usize = 1024;

/// Messages queued for the server before the core waits.
const QUEUE: usize = 256;

/// Bytes beyond the message bound kept while a stream's first event is
/// awaited (its field names, other fields).
const SNIFF_BYTES: usize = 64 << 10;

/// The open legacy streams, by the endpoint they named (`"<host> <path>"`).
pub(crate) type Streams = Arc<Mutex<HashMap<String, Arc<Stream>>>>;

/// One legacy session: its core, and the route of the latest POST (the
/// way to the server for what the core sends later, such as a call
/// approved after a wait).
#[derive(Debug)]
pub(crate) struct Stream {
    gateway: Arc<Gateway>,
    route: Mutex<Option<Arc<dyn Route>>>,
}

/// The key a POST to `host` at `target` (path and query) is filed under.
pub(crate) fn key(host: &str, target: &str) -> String {
    format!("{} {target}", host.to_ascii_lowercase())
}

/// A GET's event stream from `host` (requested at `path`): relayed through
/// a core if its first event names an endpoint, else passed on as it is.
/// `endpoint` gives the core for `host`, `None` when no more hosts may be
/// inspected.
pub(crate) async fn event_stream(
    streams: &Streams,
    host: &str,
    path: &str,
    body: RouteBody,
    endpoint: impl FnOnce() -> Option<Arc<Endpoint>>,
    max_message_bytes: usize,
) -> RouteBody {
    let mut events = EventReader::new(Tap::new(body, max_message_bytes + SNIFF_BYTES), max_message_bytes);
    let first = match tokio::time::timeout(SNIFF_WAIT, events.next()).await {
        Ok(Ok(Some(event))) if event.name == "endpoint" => event.data,
        _ => return pass_through(events),
    };
    let Line::Message(data) = first else { return pass_through(events) };
    let data = String::from_utf8_lossy(&data).trim().to_string();
    let Some((target_host, target)) = resolve(host, path, &data) else { return pass_through(events) };
    // From here on it is MCP: what cannot be inspected is not relayed.
    let Some(endpoint) = endpoint() else {
        tracing::warn!(%host, "an MCP event stream was closed: too many hosts inspected at once");
        return unsync(body::empty());
    };
    let (to_client, receiver) = mpsc::channel(64);
    let (to_server, queue) = mpsc::channel(QUEUE);
    let gateway = match endpoint.gateway(to_client, to_server) {
        Ok(gateway) => gateway,
        Err(error) => {
            endpoint.enforcer.notice("error", format!("closed an MCP event stream from {host}: {error}"));
            return unsync(body::empty());
        }
    };
    let key = key(&target_host, &target);
    let stream = Arc::new(Stream { gateway: Arc::clone(&gateway), route: Mutex::new(None) });
    {
        let mut open = lock(streams);
        if open.len() >= MAX_STREAMS && !open.contains_key(&key) {
            drop(open);
            let message = format!("closed an MCP event stream from {host}: {MAX_STREAMS} are open already");
            endpoint.enforcer.notice("warn", message);
            return unsync(body::empty());
        }
        open.insert(key.clone(), Arc::clone(&stream));
    }
    endpoint.enforcer.notice(
        "info",
        format!("MCP event stream (HTTP+SSE) from {host} seen in proxied HTTP; its messages to {target_host}{target} are inspected"),
    );
    events.body_mut().stop();
    tokio::spawn(pump(Arc::downgrade(&stream), queue));
    let reader = tokio::spawn(read(Arc::clone(streams), key.clone(), Arc::clone(&stream), events));
    let owner = Arc::downgrade(streams);
    let on_drop = OnDrop::new(move || {
        reader.abort();
        gateway.client_closed();
        if let Some(streams) = owner.upgrade() {
            forget(&streams, &key, &stream);
        }
    });
    unsync(EventBody::new(Some(events::endpoint(&data)), receiver, false, on_drop).boxed())
}

fn unsync(body: ClientBody) -> RouteBody {
    body.map_err(|never| match never {}).boxed_unsync()
}

/// One POSTed body for the legacy stream filed under `key`, its server
/// reached by `route`: decided, and what may go on sent there; answers
/// (refusals included) come on the stream.
pub(crate) async fn post(streams: &Streams, key: &str, line: Line, route: Arc<dyn Route>) -> Response<ClientBody> {
    let Some(stream) = lock(streams).get(key).cloned() else {
        return body::error(StatusCode::NOT_FOUND, "the event stream of this MCP session is closed; open a new one");
    };
    *lock(&stream.route) = Some(Arc::clone(&route));
    let oversized = matches!(line, Line::Oversized { .. });
    let outbox = Collected(Outbox::new());
    let reply = stream.gateway.connection_reply().collecting(&outbox.0);
    let expect = stream.gateway.from_client_via(line, &reply).await;
    drop(reply);
    let mut status = StatusCode::ACCEPTED;
    for message in outbox.0.take() {
        status = send(&stream.gateway, route.as_ref(), message).await;
    }
    sse::posted(expect, oversized, status)
}

/// POSTs one message the core let through; the server's status.
async fn send(gateway: &Gateway, route: &dyn Route, message: ToServer) -> StatusCode {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let sent = route.send(Method::POST, headers, Bytes::from(message.bytes)).await;
    let sent = sent.map_err(|error| format!("Bridle could not reach the MCP server: {error}"));
    sse::settle(gateway, message.request.as_ref(), sent).await
}

/// Sends what the core lets through after its POST was answered (a held
/// call approved later) by the latest POST's route.
async fn pump(stream: Weak<Stream>, mut queue: mpsc::Receiver<ToServer>) {
    while let Some(message) = queue.recv().await {
        let Some(stream) = stream.upgrade() else { return };
        let route = lock(&stream.route).clone();
        match route {
            Some(route) => {
                send(&stream.gateway, route.as_ref(), message).await;
            }
            None => {
                if let Some(id) = &message.request {
                    stream.gateway.undeliverable(id, "no request of the session is left to carry it").await;
                }
            }
        }
    }
}

/// Relays the server's stream through the core until it ends; then every
/// call still waiting is answered and the agent's stream closes.
async fn read(streams: Streams, key: String, stream: Arc<Stream>, mut events: EventReader<Tap>) {
    let gateway = &stream.gateway;
    let why = loop {
        match events.next().await {
            Ok(Some(event)) if event.name == "message" => gateway.from_server(event.data).await,
            Ok(Some(event)) => tracing::debug!(event = %event.name, "ignored an MCP stream event"),
            Ok(None) => break "closed its event stream".to_string(),
            Err(error) => break format!("broke off its event stream ({})", error.0),
        }
    };
    forget(&streams, &key, &stream);
    gateway.server_closed(&why).await;
    gateway.close_client().await;
}

/// Removes `key` if it is still `stream` (a new stream may have the key).
fn forget(streams: &Mutex<HashMap<String, Arc<Stream>>>, key: &str, stream: &Arc<Stream>) {
    let mut open = lock(streams);
    if open.get(key).is_some_and(|filed| Arc::ptr_eq(filed, stream)) {
        open.remove(key);
    }
}

/// The host and path-and-query the endpoint event names, relative to the
/// stream's `host` and `path`.
fn resolve(host: &str, path: &str, data: &str) -> Option<(String, String)> {
    if data.contains("://") {
        let uri: Uri = data.parse().ok()?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        return Some((uri.host()?.trim_matches(|c| c == '[' || c == ']').to_string(), target));
    }
    let target = if data.starts_with('/') { data.to_string() } else { sse::beside(path, data) };
    let target: http::uri::PathAndQuery = target.parse().ok()?;
    Some((host.to_string(), target.as_str().to_string()))
}

/// Passes a stream that is not MCP on: what was read while looking at it,
/// then the rest as it comes. One whose first event outgrew the copy
/// cannot be passed on whole, and is closed.
fn pass_through(events: EventReader<Tap>) -> RouteBody {
    let tap = events.into_body();
    match tap.kept {
        Some(kept) => Replay { kept: Some(Bytes::from(kept)), rest: tap.body }.boxed_unsync(),
        None => {
            tracing::warn!(bound = tap.bound, "closed an event stream whose first event is too long to look at");
            unsync(body::empty())
        }
    }
}

/// A body that keeps a copy of what is read from it (up to `bound`
/// bytes) until told to stop.
struct Tap {
    body: RouteBody,
    /// `None` once stopped, or over the bound.
    kept: Option<Vec<u8>>,
    bound: usize,
}

impl Tap {
    fn new(body: RouteBody, bound: usize) -> Self {
        Tap { body, kept: Some(Vec::new()), bound }
    }

    fn stop(&mut self) {
        self.kept = None;
    }
}

impl Body for Tap {
    type Data = Bytes;
    type Error = super::RouteError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let tap = &mut *self;
        let polled = Pin::new(&mut tap.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(kept) = tap.kept.as_mut()
        {
            if kept.len() + data.len() > tap.bound {
                tap.kept = None;
            } else {
                kept.extend_from_slice(data);
            }
        }
        polled
    }
}

/// What a tap kept, then the rest of its body.
struct Replay {
    kept: Option<Bytes>,
    rest: RouteBody,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = super::RouteError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(kept) = self.kept.take().filter(|kept| !kept.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(kept))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_that_is_not_mcp_passes_on_byte_for_byte() {
        let chunks =
            [": hello\r\n", "id: 1\nevent: tick\ndata: {\"jsonrpc\":", "\"2.0\"}\n\n", "retry: 5\n", "data: two\n\n"];
        let whole: String = chunks.concat();
        let pieces: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        let body = super::super::tests::chunked(&pieces).map_err(|never| match never {}).boxed_unsync();
        let streams = Streams::default();
        let out = event_stream(&streams, "feed.test", "/events", body, || None, 1 << 20).await;
        let got = out.collect().await.expect("read").to_bytes();
        assert_eq!(String::from_utf8_lossy(&got), whole);
        assert!(lock(&streams).is_empty(), "nothing is filed for it");
    }

    #[test]
    fn endpoints_resolve_against_the_stream_they_came_on() {
        let at = |data: &str| resolve("mcp.test", "/sse", data);
        assert_eq!(at("/messages/?session_id=ab"), Some(("mcp.test".into(), "/messages/?session_id=ab".into())));
        assert_eq!(at("messages?s=1"), Some(("mcp.test".into(), "/messages?s=1".into())));
        assert_eq!(
            at("https://other.test:8443/m?s=2"),
            Some(("other.test".into(), "/m?s=2".into())),
            "an absolute endpoint names its own host"
        );
        assert_eq!(at("http://[2001:db8::1]/m"), Some(("2001:db8::1".into(), "/m".into())));
        assert_eq!(at("/bad path"), None);
        assert_eq!(key("MCP.test", "/m?s=1"), "mcp.test /m?s=1");
    }
}
