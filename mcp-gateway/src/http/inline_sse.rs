//! The legacy HTTP+SSE transport (MCP 2024-11-05) seen inside proxied
//! HTTP. Its server answers on an event stream the agent opened with a
//! GET, not in the responses to the agent's POSTs, so both halves go
//! through one core:
//!
//! - every event stream a GET gets is read event by event before the agent
//!   sees it. Until an event names an `endpoint`, each event goes on byte
//!   for byte once it is whole. From that event on, however late it comes,
//!   the stream is MCP: every `message` event goes through the core first
//!   (results matched and scanned, tool lists pinned and filtered), and a
//!   denied call's JSON-RPC error reaches the agent there, where a legacy
//!   client reads its answers;
//! - a POST to the endpoint that stream named is decided message by
//!   message, and only what the core lets through goes on to the server.
//!
//! A stream is closed instead when, before naming an endpoint, it sends a
//! JSON-RPC `message` (a server answering the agent uninspected), an event
//! too long to read whole, or an endpoint that cannot be resolved.
//!
//! Must never: let a stream's server messages reach the agent uninspected
//! once it named an endpoint, nor pass on a JSON-RPC message before it;
//! forward a POSTed message the core has not let through.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::body::{self, ClientBody};
use super::endpoint::Endpoint;
use super::events::{self, Event, EventReader, Step};
use super::exchange::{Collected, EventBody, OnDrop};
use super::route::{Route, RouteBody, RouteError};
use super::{inline, sse};
use crate::framing::Line;
use crate::gateway::{Gateway, Outbox, ToServer};

/// Legacy streams inspected at once, over all hosts.
const MAX_STREAMS: usize = 1024;

/// Messages queued for the server before the core waits.
const QUEUE: usize = 256;

/// The longest event a stream may send before it names an endpoint (the
/// bytes of one event are held until it is whole); a longer one closes it.
const BEFORE_ENDPOINT: usize = 1 << 20;

/// Pieces of a watched stream on their way to the agent: with
/// [`BEFORE_ENDPOINT`], what a stream the agent does not read holds.
const PIECES: usize = 2;

/// Event streams watched at once, over all hosts; past it a GET's event
/// stream is closed.
const MAX_WATCHED: usize = 1024;

/// Event streams being watched now.
static WATCHED: AtomicUsize = AtomicUsize::new(0);

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

/// Where a watched stream came from, its bound, and where its notices go.
struct Origin {
    streams: Streams,
    host: String,
    path: String,
    max_message_bytes: usize,
    notice: Box<dyn Fn(String) + Send>,
}

/// A GET's event stream from `host` (requested at `path`), watched: passed
/// on event by event, and relayed through a core from the event that
/// names an endpoint on. `endpoint` gives the core for `host`, `None` when
/// no more hosts may be inspected; `notice` audits why a stream was closed.
pub(crate) fn event_stream(
    streams: &Streams,
    (host, path): (&str, &str),
    body: RouteBody,
    endpoint: impl FnOnce() -> Option<Arc<Endpoint>> + Send + 'static,
    notice: impl Fn(String) + Send + 'static,
    max_message_bytes: usize,
) -> RouteBody {
    if WATCHED.fetch_add(1, Ordering::AcqRel) >= MAX_WATCHED {
        WATCHED.fetch_sub(1, Ordering::AcqRel);
        notice(format!("closed an event stream from {host}{path}: {MAX_WATCHED} are watched already"));
        return body::empty().map_err(|never| match never {}).boxed_unsync();
    }
    let origin = Origin {
        streams: Arc::clone(streams),
        host: host.to_string(),
        path: path.to_string(),
        max_message_bytes,
        notice: Box::new(notice),
    };
    let (pieces, receiver) = mpsc::channel(PIECES);
    let task = tokio::spawn(watch(origin, body, endpoint, pieces));
    let on_drop = OnDrop::new(move || {
        task.abort();
        WATCHED.fetch_sub(1, Ordering::AcqRel);
    });
    Watched { pieces: receiver, inspected: None, _on_drop: on_drop }.boxed_unsync()
}

/// What the watching task sends the agent's body.
enum Piece {
    Raw(Bytes),
    Broken(String),
    /// The stream is MCP: the rest comes from its core.
    Inspected(EventBody),
}

/// Reads the server's stream; see the module docs.
async fn watch(
    origin: Origin,
    body: RouteBody,
    endpoint: impl FnOnce() -> Option<Arc<Endpoint>>,
    pieces: mpsc::Sender<Piece>,
) {
    let mut events = EventReader::new(body, origin.max_message_bytes).keeping_raw(BEFORE_ENDPOINT);
    let named = loop {
        let event = match events.step().await {
            Ok(Step::Event(event)) => event,
            Ok(Step::Settled) => {
                if pieces.send(Piece::Raw(events.take_settled())).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Step::End) => {
                let _ = pieces.send(Piece::Raw(events.take_raw())).await;
                return;
            }
            Err(error) => {
                let _ = pieces.send(Piece::Broken(error.0)).await;
                return;
            }
        };
        if let Some(why) = unsafe_to_pass(&event) {
            return refuse(&origin, why);
        }
        if event.name == "endpoint" {
            break event;
        }
        if pieces.send(Piece::Raw(events.take_settled())).await.is_err() {
            return;
        }
    };
    let Line::Message(data) = named.data else { return refuse(&origin, "an endpoint too long to read") };
    let data = String::from_utf8_lossy(&data).trim().to_string();
    let Some((target_host, target)) = resolve(&origin.host, &origin.path, &data) else {
        return refuse(&origin, "an endpoint that does not resolve to a host and path");
    };
    let host = &origin.host;
    let Some(endpoint) = endpoint() else {
        tracing::warn!(%host, "an MCP event stream was closed: too many hosts inspected at once");
        return;
    };
    let (to_client, receiver) = mpsc::channel(64);
    let (to_server, queue) = mpsc::channel(QUEUE);
    let gateway = match endpoint.gateway(to_client, to_server) {
        Ok(gateway) => gateway,
        Err(error) => {
            endpoint.enforcer.notice("error", format!("closed an MCP event stream from {host}: {error}"));
            return;
        }
    };
    let key = key(&target_host, &target);
    let stream = Arc::new(Stream { gateway: Arc::clone(&gateway), route: Mutex::new(None) });
    {
        let mut open = lock(&origin.streams);
        if open.len() >= MAX_STREAMS && !open.contains_key(&key) {
            drop(open);
            let message = format!("closed an MCP event stream from {host}: {MAX_STREAMS} are open already");
            endpoint.enforcer.notice("warn", message);
            return;
        }
        open.insert(key.clone(), Arc::clone(&stream));
    }
    // Filed before the agent learns the endpoint, so its first POST finds
    // the session; unfiled however this task ends (the agent gone aborts it).
    let filed = Filed { streams: Arc::clone(&origin.streams), key, stream };
    endpoint.enforcer.notice(
        "info",
        format!("MCP event stream (HTTP+SSE) from {host} seen in proxied HTTP; its messages to {target_host}{target} are inspected"),
    );
    // The endpoint goes on as it was read and filed, trimmed and re-encoded
    // (the raw event, and anything settled before it, stay behind).
    let named = events::endpoint(&data);
    events.stop_raw();
    let inspected = EventBody::new(None, receiver, false, OnDrop::new(|| {}));
    if pieces.send(Piece::Raw(named)).await.is_err() || pieces.send(Piece::Inspected(inspected)).await.is_err() {
        return;
    }
    tokio::spawn(pump(Arc::downgrade(&filed.stream), queue));
    read(&filed, events).await;
}

/// Why an event on a stream that has not named an endpoint may not go on
/// as it is, if it may not.
fn unsafe_to_pass(event: &Event) -> Option<&'static str> {
    match &event.data {
        Line::Oversized { .. } => Some("an event too long to read whole"),
        Line::Message(data) if event.name == "message" && inline::carries_jsonrpc(data) => {
            Some("a JSON-RPC message before naming its MCP endpoint")
        }
        Line::Message(_) => None,
    }
}

/// Closes a watched stream that cannot go on, and says why.
fn refuse(origin: &Origin, why: &str) {
    (origin.notice)(format!("closed an event stream from {}{}: it sent {why}", origin.host, origin.path));
}

/// A legacy stream filed under its endpoint's key while its task runs.
struct Filed {
    streams: Streams,
    key: String,
    stream: Arc<Stream>,
}

impl Drop for Filed {
    fn drop(&mut self) {
        self.stream.gateway.client_closed();
        forget(&self.streams, &self.key, &self.stream);
    }
}

/// The agent's side of a watched stream.
struct Watched {
    pieces: mpsc::Receiver<Piece>,
    inspected: Option<EventBody>,
    _on_drop: OnDrop,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = RouteError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RouteError>>> {
        loop {
            if let Some(inspected) = self.inspected.as_mut() {
                let frame = ready!(Pin::new(inspected).poll_frame(cx));
                return Poll::Ready(frame.map(|frame| frame.map_err(|never| match never {})));
            }
            match ready!(self.pieces.poll_recv(cx)) {
                Some(Piece::Raw(bytes)) if bytes.is_empty() => {}
                Some(Piece::Raw(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Piece::Broken(why)) => return Poll::Ready(Some(Err(why.into()))),
                Some(Piece::Inspected(body)) => self.inspected = Some(body),
                None => return Poll::Ready(None),
            }
        }
    }
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
async fn read(filed: &Filed, mut events: EventReader<RouteBody>) {
    let gateway = &filed.stream.gateway;
    let why = loop {
        match events.next().await {
            Ok(Some(event)) if event.name == "message" => gateway.from_server(event.data).await,
            Ok(Some(event)) => tracing::debug!(event = %event.name, "ignored an MCP stream event"),
            Ok(None) => break "closed its event stream".to_string(),
            Err(error) => break format!("broke off its event stream ({})", error.0),
        }
    };
    forget(&filed.streams, &filed.key, &filed.stream);
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body_of(chunks: &[&str]) -> RouteBody {
        let pieces: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        super::super::tests::chunked(&pieces).map_err(|never| match never {}).boxed_unsync()
    }

    async fn watched(chunks: &[&str], max: usize) -> (Result<String, String>, Streams) {
        let streams = Streams::default();
        let out = event_stream(&streams, ("feed.test", "/events"), body_of(chunks), || None, |_| {}, max);
        let got = out.collect().await.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
        (got.map_err(|e| e.to_string()), streams)
    }

    #[tokio::test]
    async fn a_stream_that_is_not_mcp_passes_on_byte_for_byte() {
        let chunks =
            [": hello\r\n", "id: 1\nevent: tick\ndata: {\"jsonrpc\":", "\"2.0\"}\n\n", "retry: 5\n", "data: two\n\n"];
        let (got, streams) = watched(&chunks, 1 << 20).await;
        assert_eq!(got.expect("read"), chunks.concat());
        assert!(lock(&streams).is_empty(), "nothing is filed for it");
        // An event the end cut off goes on too: the agent's parser drops it.
        let (got, _) = watched(&["data: one\n\n", "data: cut"], 1 << 20).await;
        assert_eq!(got.expect("read"), "data: one\n\ndata: cut");
    }

    #[tokio::test]
    async fn keep_alives_go_on_at_once_and_events_once_whole() {
        struct Fed(mpsc::Receiver<Bytes>);
        impl Body for Fed {
            type Data = Bytes;
            type Error = RouteError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, RouteError>>> {
                self.0.poll_recv(cx).map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
            }
        }
        let (sender, receiver) = mpsc::channel(4);
        let streams = Streams::default();
        let mut out =
            event_stream(&streams, ("feed.test", "/events"), Fed(receiver).boxed_unsync(), || None, |_| {}, 1 << 20);
        let next = async |out: &mut RouteBody| {
            let frame = tokio::time::timeout(Duration::from_secs(5), out.frame()).await.expect("in time");
            frame.expect("a frame").expect("data").into_data().expect("data")
        };
        sender.send(Bytes::from_static(b": keep-alive\n")).await.expect("send");
        assert_eq!(next(&mut out).await, ": keep-alive\n");
        sender.send(Bytes::from_static(b"event: tick\ndata: 1")).await.expect("send");
        let early = tokio::time::timeout(Duration::from_millis(200), out.frame()).await;
        assert!(early.is_err(), "half an event waits for the rest");
        sender.send(Bytes::from_static(b"\n\n")).await.expect("send");
        assert_eq!(next(&mut out).await, "event: tick\ndata: 1\n\n");
    }

    #[tokio::test]
    async fn json_rpc_before_an_endpoint_closes_the_stream() {
        let answer = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"tools\":[]}}\n\n";
        let (got, _) = watched(&["data: hello\n\n", answer, "data: after\n\n"], 1 << 20).await;
        assert_eq!(got.expect("read"), "data: hello\n\n", "nothing from the JSON-RPC message on");
        // Unnamed events are `message` events too, and a BOM hides nothing.
        let (got, _) = watched(&["data: \u{feff}[{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]\n\n"], 1 << 20).await;
        assert_eq!(got.expect("read"), "");
        // A byte order mark at the start is no field name: the event is read.
        let (got, _) = watched(&["\u{feff}", "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n"], 1 << 20).await;
        assert_eq!(got.expect("read"), "");
        // Another event's JSON-RPC is no answer a client reads.
        let tick = "event: tick\ndata: {\"jsonrpc\":\"2.0\"}\n\n";
        assert_eq!(watched(&[tick], 1 << 20).await.0.expect("read"), tick);
    }

    #[tokio::test]
    async fn an_endpoint_that_cannot_be_inspected_is_not_passed_on() {
        // No core for the host (too many inspected): closed, endpoint unsent.
        let (got, _) = watched(&["data: hi\n\n", "event: endpoint\ndata: /messages?s=1\n\n"], 1 << 20).await;
        assert_eq!(got.expect("read"), "data: hi\n\n");
        let (got, _) = watched(&["event: endpoint\ndata: /bad path\n\n"], 1 << 20).await;
        assert_eq!(got.expect("read"), "", "an endpoint that does not resolve");
    }

    #[tokio::test]
    async fn an_event_too_long_to_read_whole_breaks_the_stream() {
        let long = format!("data: {}\n\n", "x".repeat(100));
        let (got, _) = watched(&["data: ok\n\n", &long], 64).await;
        assert_eq!(got.expect("read"), "data: ok\n\n", "an oversized event is not passed on");
        let endless = "y".repeat(BEFORE_ENDPOINT + 200);
        let (got, _) = watched(&["data: ok\n\n", "data: ", &endless], 64).await;
        assert!(got.expect_err("broken").contains("an event over"));
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
