//! One streamable-HTTP MCP session: its core ([`Gateway`]) and its link to
//! the server ([`Link`]): the session id the server gave, the client
//! headers passed on, and one upstream POST per message the core lets
//! through.
//!
//! A forwarded request's upstream response (JSON or an event stream) is
//! read here and every message in it goes through the core, on the
//! exchange of the client POST that carried the request. What can go wrong
//! upstream (unreachable, an HTTP error, HTML instead of JSON-RPC, a stream
//! that ends without the answer, a crash mid-call) becomes a JSON-RPC error
//! for that request, and a status for the client's POST ([`Head`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::body::{self, read_bounded};
use super::endpoint::Endpoint;
use super::events::EventReader;
use super::exchange::Carried;
use super::route::{Route, RouteBody};
use super::{PROTOCOL_VERSION, SESSION_ID};
use crate::GatewayError;
use crate::gateway::{Gateway, Reply, ToServer};
use crate::jsonrpc::Id;

/// Messages queued for the server before the core waits.
const QUEUE: usize = 256;

/// Longest excerpt of a non-JSON-RPC answer quoted back.
const EXCERPT: usize = 200;

/// What the client's POST should carry of the server's response: its
/// status (when not a plain 200) and the headers worth passing back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Head {
    pub status: Option<StatusCode>,
    pub headers: HeaderMap,
}

/// A session: the core and its link upstream.
#[derive(Debug)]
pub(crate) struct Session {
    pub gateway: Arc<Gateway>,
    pub link: Arc<Link>,
}

/// The session's side facing the server.
#[derive(Debug)]
pub(crate) struct Link {
    endpoint: Arc<Endpoint>,
    /// How the server is reached: the configured client, or (inline) the
    /// agent connection that carried the latest request.
    route: Mutex<Arc<dyn Route>>,
    /// The server's `Mcp-Session-Id`, once it gave one.
    id: Mutex<Option<HeaderValue>>,
    /// The client headers the server needs too (protocol version, credentials).
    forwarded: Mutex<HeaderMap>,
    heads: Mutex<HashMap<u64, Head>>,
    /// Upstream answer streams by request, to close when the client leaves.
    streams: Mutex<HashMap<Id, AbortHandle>>,
    next: AtomicU64,
    last_used: Mutex<Instant>,
}

impl Session {
    /// A new session reaching the server by `route` (not yet known by id:
    /// the server names it in its answer to `initialize`).
    pub fn start(endpoint: &Arc<Endpoint>, route: Arc<dyn Route>) -> Result<Arc<Session>, GatewayError> {
        let (to_server, queue) = mpsc::channel(QUEUE);
        // Nothing reads the session's own exchange: an answer whose POST is
        // gone has nowhere to go, and is dropped.
        let (to_client, _) = mpsc::channel(1);
        let gateway = endpoint.gateway(to_client, to_server)?;
        let link = Arc::new(Link {
            endpoint: Arc::clone(endpoint),
            route: Mutex::new(route),
            id: Mutex::new(None),
            forwarded: Mutex::new(HeaderMap::new()),
            heads: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            last_used: Mutex::new(Instant::now()),
        });
        tokio::spawn(pump(Arc::clone(&link), Arc::downgrade(&gateway), queue));
        Ok(Arc::new(Session { gateway, link }))
    }

    /// Client exchange `exchange` went away unanswered: the core drops
    /// what it owed, and the server's streams for it close too (which is
    /// how the current protocol cancels a request).
    pub fn abandon(&self, exchange: u64) {
        let forwarded = self.gateway.exchange_closed(exchange);
        let mut streams = lock(&self.link.streams);
        for id in forwarded {
            if let Some(task) = streams.remove(&id) {
                task.abort();
            }
        }
        drop(streams);
        lock(&self.link.heads).remove(&exchange);
    }
}

impl Link {
    pub fn next_exchange(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A client request arrived: the session is in use, and its headers
    /// are what the server gets from now on.
    pub fn touch(&self, client: &HeaderMap) {
        *lock(&self.last_used) = Instant::now();
        let mut forwarded = HeaderMap::new();
        for name in [header::AUTHORIZATION.as_str(), PROTOCOL_VERSION] {
            if let Some(value) = client.get(name) {
                forwarded.insert(name, value.clone());
            }
        }
        *lock(&self.forwarded) = forwarded;
    }

    /// The session's id is `id` already (a session Bridle first sees
    /// mid-way, inline).
    pub fn adopt(&self, id: HeaderValue) {
        *lock(&self.id) = Some(id);
    }

    /// The route the session started with: for what no request carried.
    pub fn route(&self) -> Arc<dyn Route> {
        Arc::clone(&lock(&self.route))
    }

    /// The route of the request that carried `message`, else the session's.
    fn route_of(&self, message: &ToServer) -> Arc<dyn Route> {
        message.reply.carried::<Carried>().map_or_else(|| self.route(), |carried| Arc::clone(&carried.0))
    }

    pub fn idle_since(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*lock(&self.last_used))
    }

    /// Headers for a request to the server: what the client sent that it
    /// needs, the session id, `accept`, and for a POST the JSON it carries.
    pub fn headers(&self, accept: &'static str, post: bool) -> HeaderMap {
        let mut headers = lock(&self.forwarded).clone();
        if let Some(id) = lock(&self.id).clone() {
            headers.insert(SESSION_ID, id);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        if post {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers
    }

    /// A client POST waits on `exchange`: what the server's responses say
    /// about it is kept until [`Link::take_head`].
    pub fn expect_head(&self, exchange: u64) {
        lock(&self.heads).insert(exchange, Head::default());
    }

    /// The head recorded for `exchange`, removed: later responses for it
    /// (another member of its batch) are no longer noted.
    pub fn take_head(&self, exchange: u64) -> Head {
        lock(&self.heads).remove(&exchange).unwrap_or_default()
    }

    fn set_status(&self, exchange: u64, status: StatusCode) {
        if let Some(head) = lock(&self.heads).get_mut(&exchange) {
            head.status = Some(status);
        }
    }

    /// Notes the server's response head for `exchange` (a status other than
    /// 200, the session id it assigns, how to authenticate).
    fn record<B>(&self, exchange: u64, response: &Response<B>) {
        if let Some(id) = response.headers().get(SESSION_ID) {
            lock(&self.id).get_or_insert_with(|| id.clone());
        }
        let mut heads = lock(&self.heads);
        let Some(head) = heads.get_mut(&exchange) else { return };
        if response.status() != StatusCode::OK {
            head.status = Some(response.status());
        }
        for name in [SESSION_ID, header::WWW_AUTHENTICATE.as_str(), header::RETRY_AFTER.as_str()] {
            if let Some(value) = response.headers().get(name) {
                head.headers.insert(name, value.clone());
            }
        }
    }

    /// Removes `id`'s stream if it is `task` (the id may be in use again).
    fn untrack(&self, id: &Id, task: tokio::task::Id) {
        let mut streams = lock(&self.streams);
        if streams.get(id).is_some_and(|handle| handle.id() == task) {
            streams.remove(id);
        }
    }

    fn name(&self) -> &str {
        &self.endpoint.name
    }
}

/// Sends what the core lets through, in order: notifications and
/// responses one after another (so `notifications/initialized` reaches the
/// server before the requests that follow it), each request in its own task
/// (its answer may stream for a long time).
async fn pump(link: Arc<Link>, gateway: Weak<Gateway>, mut queue: mpsc::Receiver<ToServer>) {
    while let Some(message) = queue.recv().await {
        let Some(gateway) = gateway.upgrade() else { return };
        match message.request.clone() {
            None => notify(&link, &gateway, message).await,
            Some(id) => track(&link, id.clone(), Box::pin(request(Arc::clone(&link), gateway, id, message))),
        }
    }
}

/// Sends what one client POST let through while `respond` waits for the
/// answer: notifications and responses in order, before the client hears
/// back; a lone request driven right here, in the client's task, so a
/// call needs no hand-off between tasks; the requests of a batch each in
/// a task of their own. A request still streaming when `respond` is done
/// (its answer is an event stream) moves to a task of its own too.
pub(crate) async fn deliver<T>(
    link: &Arc<Link>,
    gateway: &Arc<Gateway>,
    messages: Vec<ToServer>,
    respond: impl Future<Output = T>,
) -> T {
    let requests = messages.iter().filter(|message| message.request.is_some()).count();
    let mut lone = None;
    for message in messages {
        let Some(id) = message.request.clone() else {
            notify(link, gateway, message).await;
            continue;
        };
        let run: Forwarding = Box::pin(request(Arc::clone(link), Arc::clone(gateway), id.clone(), message));
        if requests == 1 {
            lone = Some((id, run));
        } else {
            track(link, id, run);
        }
    }
    let Some((id, mut run)) = lone else { return respond.await };
    tokio::pin!(respond);
    tokio::select! {
        biased;
        () = &mut run => respond.await,
        out = &mut respond => {
            track(link, id, run);
            out
        }
    }
}

/// A forwarded request on its way, until its answer is relayed.
type Forwarding = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a forwarded request in its own task, filed under its id so a
/// client that goes away can close its upstream stream.
fn track(link: &Arc<Link>, id: Id, run: Forwarding) {
    let task = tokio::spawn(run);
    lock(&link.streams).insert(id.clone(), task.abort_handle());
    // It may have ended before it was filed.
    if task.is_finished() {
        link.untrack(&id, task.id());
    }
}

/// A notification or a response to the server: it owes nothing back.
async fn notify(link: &Link, gateway: &Gateway, message: ToServer) {
    let headers = link.headers(super::ACCEPT_BOTH, true);
    let why = match link.route_of(&message).send(Method::POST, headers, Bytes::from(message.bytes)).await {
        Ok(response) if response.status().is_success() => {
            body::drain(response.into_body(), EXCERPT).await;
            return;
        }
        Ok(response) => {
            let status = response.status();
            let text = body::excerpt(response.into_body(), EXCERPT).await;
            format!("the MCP server refused a notification with HTTP {status}: {text}")
        }
        Err(error) => format!("a notification could not be delivered: {error}"),
    };
    gateway.enforcer().notice("warn", why);
}

/// One forwarded request: POST it, relay its answer (JSON or a stream)
/// through the core, and make sure the client gets an answer either way.
async fn request(link: Arc<Link>, gateway: Arc<Gateway>, id: Id, message: ToServer) {
    let route = link.route_of(&message);
    let reply = message.reply;
    let exchange = reply.exchange();
    let headers = link.headers(super::ACCEPT_BOTH, true);
    let why = match route.send(Method::POST, headers, Bytes::from(message.bytes)).await {
        Err(error) => {
            link.set_status(exchange, StatusCode::BAD_GATEWAY);
            format!("Bridle could not reach the MCP server {}: {error}", link.name())
        }
        Ok(response) => {
            link.record(exchange, &response);
            match relay(&link, &gateway, response, &reply).await {
                Ok(()) => format!("the MCP server ended its response without answering request {id}"),
                Err(why) => why,
            }
        }
    };
    // A no-op when the answer came: only a request still waiting is answered.
    gateway.undeliverable(&id, &why).await;
    if let Some(task) = tokio::task::try_id() {
        link.untrack(&id, task);
    }
}

/// Relays the messages of one upstream response; `Err` says why it could
/// not be read as JSON-RPC.
async fn relay(
    link: &Link,
    gateway: &Arc<Gateway>,
    response: Response<RouteBody>,
    reply: &Reply,
) -> Result<(), String> {
    let status = response.status();
    let kind = Kind::of(response.headers());
    let body = response.into_body();
    if status == StatusCode::ACCEPTED {
        return Err("the MCP server accepted the request but sent no answer (HTTP 202)".into());
    }
    let max = link.endpoint.max_message_bytes;
    match kind {
        Kind::Json => {
            let line =
                read_bounded(body, max).await.map_err(|e| format!("the MCP server broke off its answer: {}", e.0))?;
            gateway.from_server_via(line, reply).await;
        }
        Kind::Events => {
            let mut events = EventReader::new(body, max);
            loop {
                match events.next().await {
                    Ok(Some(event)) if event.name == "message" => gateway.from_server_via(event.data, reply).await,
                    Ok(Some(event)) => tracing::debug!(event = %event.name, "ignored an upstream event"),
                    Ok(None) => break,
                    Err(error) => {
                        return Err(format!("the MCP server's event stream broke off before answering: {}", error.0));
                    }
                }
            }
        }
        Kind::Other(_) if !status.is_success() => {
            let text = body::excerpt(body, EXCERPT).await;
            return Err(format!("the MCP server answered HTTP {status}: {text:?}"));
        }
        Kind::Other(what) => {
            link.set_status(reply.exchange(), StatusCode::BAD_GATEWAY);
            let text = body::excerpt(body, EXCERPT).await;
            return Err(format!("the MCP server answered with {what}, not JSON-RPC: {text:?}"));
        }
    }
    if !status.is_success() {
        return Err(format!("the MCP server answered HTTP {status}"));
    }
    Ok(())
}

/// What a response body holds, by its content type.
enum Kind {
    Json,
    Events,
    Other(String),
}

impl Kind {
    fn of(headers: &HeaderMap) -> Kind {
        if let Some(coding) = super::content_coding(headers) {
            return Kind::Other(format!("content encoded as {coding:?}"));
        }
        let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Kind::Json,
            "text/event-stream" => Kind::Events,
            "" => Kind::Other("no content type".into()),
            other => Kind::Other(other.to_string()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
