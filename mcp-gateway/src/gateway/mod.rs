//! One client ↔ server connection, transport-independent: messages in from
//! either side, messages out through channels. The stdio wrapper feeds it
//! pipes; the HTTP transports feed it request bodies and event streams.
//!
//! Client → server ([`client`]): every request is classified and, when a
//! policy governs it, decided before it may leave; a deny is answered here
//! and never forwarded; an `ask` is held in its own task so other traffic
//! keeps moving. Server → client ([`server`]): responses are matched to
//! their request, `tools/list` results are pinned, scanned and filtered,
//! results are scanned, and everything is recorded.
//!
//! Routing: what comes from the client arrives in an *exchange* (a
//! [`Reply`]): stdio has one for the whole connection, streamable HTTP one
//! per POST and per GET stream. A request's answer goes back to the
//! exchange it came in; what the server sends while answering goes to the
//! exchange whose stream carried it. Messages for the server carry their
//! exchange along ([`ToServer`]), so an HTTP transport knows where the
//! server's answer stream belongs.

mod client;
mod flight;
mod server;

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bridle_engine::decision::Decision;
use bridle_engine::event::{Event, EventKind, McpActive, McpDirection, McpMessage, McpPayload};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::GatewayConfig;
use crate::enforce::{Enforcer, InFlight};
use crate::jsonrpc::{self, Id};
use crate::tools::ToolBook;
use flight::{Due, Flight, Settled};

/// What goes out to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// One message, without its newline: a message the server sent on its
    /// own (a notification, a request), or an answer whose exchange is gone.
    Line(Vec<u8>),
    /// The answer the exchange waits for: the response (or error) to its
    /// request, or its batch's array. Nothing else is due on it afterwards.
    Answer(Vec<u8>),
    /// The exchange's answer will not come: its request was cancelled.
    Abandoned,
    /// Nothing more will come: flush and stop.
    Close,
}

/// A client exchange: where its answers go, the number its transport gave
/// it (0 for stdio's single exchange), and what the transport needs to send
/// the exchange's messages on (opaque here: the HTTP transports keep the
/// route of the request that carried them).
#[derive(Clone)]
pub struct Reply {
    sender: mpsc::Sender<Out>,
    exchange: u64,
    carried: Option<Arc<dyn Any + Send + Sync>>,
    outbox: Option<Outbox>,
}

/// Where an exchange's messages for the server collect while its
/// transport feeds the core, so the transport can send them itself, in
/// the same task, instead of through the connection's queue (a hand-off to
/// another task costs more than the rest of a call). Once taken, later
/// messages (a held request approved afterwards) use the queue.
#[derive(Clone, Debug, Default)]
pub struct Outbox(Arc<Mutex<Option<Vec<ToServer>>>>);

impl Outbox {
    pub fn new() -> Self {
        Outbox(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// What collected so far, in order; closes the outbox.
    pub fn take(&self) -> Vec<ToServer> {
        lock(&self.0).take().unwrap_or_default()
    }

    /// Keeps `message` if the outbox is still open, else gives it back.
    fn offer(&self, message: ToServer) -> Option<ToServer> {
        match lock(&self.0).as_mut() {
            Some(messages) => {
                messages.push(message);
                None
            }
            None => Some(message),
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("exchange", &self.exchange).finish_non_exhaustive()
    }
}

impl Reply {
    pub fn new(sender: mpsc::Sender<Out>, exchange: u64) -> Self {
        Reply { sender, exchange, carried: None, outbox: None }
    }

    /// This exchange, its messages for the server collected in `outbox`
    /// until the transport takes them.
    pub fn collecting(mut self, outbox: &Outbox) -> Self {
        self.outbox = Some(outbox.clone());
        self
    }

    /// This exchange, carrying `what` for its transport.
    pub fn carrying(mut self, what: Arc<dyn Any + Send + Sync>) -> Self {
        self.carried = Some(what);
        self
    }

    /// What the transport attached, if it is a `T`.
    pub fn carried<T: Any>(&self) -> Option<&T> {
        self.carried.as_deref().and_then(|what| what.downcast_ref::<T>())
    }

    /// The transport's number for this exchange.
    pub fn exchange(&self) -> u64 {
        self.exchange
    }

    /// Whether someone still reads this exchange.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    fn same(&self, other: &Reply) -> bool {
        self.exchange == other.exchange && self.sender.same_channel(&other.sender)
    }
}

/// A message on its way to the server.
#[derive(Debug)]
pub struct ToServer {
    /// The message, without a newline.
    pub bytes: Vec<u8>,
    /// For a request, its id: the server owes an answer to it.
    pub request: Option<Id>,
    /// The client exchange it came in.
    pub reply: Reply,
}

/// What a client message needs from its transport once
/// [`Gateway::from_client_via`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No answer is due (notifications and responses only).
    Nothing,
    /// One [`Out::Answer`] (or [`Out::Abandoned`]) is due on the exchange.
    Answer,
    /// The input was refused whole (not JSON, not a JSON-RPC message, too
    /// large); its error is already on the exchange as the answer.
    Refused,
}

/// One connection's inspection and enforcement.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    enforcer: Enforcer,
    tools: Mutex<ToolBook>,
    flight: Mutex<Flight>,
    /// The connection's own exchange: stdio's stdout, an HTTP session's
    /// last resort for answers whose exchange is gone.
    to_client: Reply,
    /// `None` once the client has closed its side.
    to_server: Mutex<Option<mpsc::Sender<ToServer>>>,
    /// Non-JSON messages the server sent (only the first few are audited).
    garbage: Mutex<u64>,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        enforcer: Enforcer,
        tools: ToolBook,
        to_client: mpsc::Sender<Out>,
        to_server: mpsc::Sender<ToServer>,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            config,
            enforcer,
            tools: Mutex::new(tools),
            flight: Mutex::new(Flight::default()),
            to_client: Reply::new(to_client, 0),
            to_server: Mutex::new(Some(to_server)),
            garbage: Mutex::new(0),
        })
    }

    /// The longest message accepted either way.
    pub fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    /// The connection's own exchange (what stdio and a legacy event
    /// stream answer on), for a transport that wants it collecting.
    pub fn connection_reply(&self) -> Reply {
        self.to_client.clone()
    }

    /// The enforcer, for a transport's own notices (bad HTTP, a server that
    /// cannot be reached).
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// Request `id` was forwarded but its answer cannot come (the server
    /// could not be reached, closed the stream, answered with something
    /// that is not JSON-RPC): the client gets a `-32000` error saying `why`.
    /// False if `id` was not awaiting an answer.
    pub async fn undeliverable(&self, id: &Id, why: &str) -> bool {
        let Some(pending) = lock(&self.flight).inflight.remove(id) else { return false };
        self.enforcer.notice("warn", format!("request {id} was not answered: {why}"));
        self.answer(Some(id), &pending.due, jsonrpc::CONNECTION_CLOSED, why, None).await;
        true
    }

    /// The client stopped reading exchange `exchange` (it hung up, or
    /// closed a response stream to cancel): what it was owed is dropped.
    /// Returns the forwarded requests among them, whose answer streams the
    /// transport should close too.
    pub fn exchange_closed(&self, exchange: u64) -> Vec<Id> {
        let dropped = lock(&self.flight).drop_exchange(exchange);
        if !dropped.is_empty() {
            let ids: Vec<String> = dropped.iter().map(ToString::to_string).collect();
            let message = format!("the client went away before request(s) {} were answered", ids.join(", "));
            self.enforcer.notice("info", message);
        }
        dropped
    }

    /// The server is gone (`why` says how): every request still awaiting
    /// an answer gets a JSON-RPC error, and later ones are answered at once.
    pub async fn server_closed(&self, why: &str) {
        let (pending, held) = {
            let mut flight = lock(&self.flight);
            flight.closed = Some(why.to_string());
            let pending: Vec<_> = flight.inflight.drain().map(|(id, p)| (id, p.due)).collect();
            let held: Vec<_> = flight.held.drain().collect();
            (pending, held)
        };
        let held = held.into_iter().map(|(id, held)| {
            if let Some(task) = held.task {
                task.abort();
            }
            (id, held.due)
        });
        let message = format!("the MCP server {why} before answering");
        for (id, due) in pending.into_iter().chain(held) {
            self.answer(Some(&id), &due, jsonrpc::CONNECTION_CLOSED, &message, None).await;
        }
        let garbage = *lock(&self.garbage);
        if garbage > server::AUDITED_GARBAGE {
            let message = format!("the server sent {garbage} messages that are not JSON-RPC in all");
            self.enforcer.notice("warn", message);
        }
        self.enforcer.notice("info", format!("the MCP server {why}"));
    }

    /// The client closed its side: held requests are dropped and the
    /// server's input is closed, so it can exit.
    pub fn client_closed(&self) {
        let held: Vec<_> = lock(&self.flight).held.drain().collect();
        for (_, held) in held {
            if let Some(task) = held.task {
                task.abort();
            }
        }
        lock(&self.to_server).take();
    }

    /// Tells the client writer to flush and stop.
    pub async fn close_client(&self) {
        let _ = self.to_client.sender.send(Out::Close).await;
    }

    fn event(&self, direction: McpDirection, id: Option<&Id>, message: McpPayload) -> Event {
        Event::now(
            &self.config.session,
            &self.config.principal,
            EventKind::Mcp(McpMessage {
                server: self.config.server.clone(),
                direction,
                id: id.map(Id::text),
                message,
                tool_changed: false,
                findings: Vec::new(),
            }),
        )
    }

    /// Tool call `id` of `tool` is in flight from now until the guard drops.
    fn begin_call(&self, tool: &str, id: &Id) -> InFlight {
        let active = McpActive { server: self.config.server.clone(), tool: tool.to_string(), call_id: id.text() };
        self.enforcer.begin_call(&self.config.session, active, self.config.server_pid)
    }

    /// An error response for `id`, sent now or filed into its batch.
    async fn answer(&self, id: Option<&Id>, due: &Due, code: i64, message: &str, data: Option<Value>) {
        self.deliver(due, jsonrpc::error_response(id, code, message, data), None).await;
    }

    /// Files `response` into its batch, or sends it; `via` is the exchange
    /// whose stream carried it, if any.
    async fn deliver(&self, due: &Due, response: Value, via: Option<&Reply>) {
        let ready = lock(&self.flight).deliver(due.batch, response);
        if let Some(value) = ready {
            self.send_answer(&due.reply, via, encode(&value)).await;
        }
    }

    /// A request ended without an answer (cancelled): completes its batch,
    /// or tells its exchange nothing is coming.
    async fn skip(&self, due: &Due) {
        let settled = lock(&self.flight).skip(due.batch);
        match settled {
            Settled::Waiting => {}
            Settled::Answer(value) => self.send_answer(&due.reply, None, encode(&value)).await,
            Settled::Nothing => {
                let _ = due.reply.sender.send(Out::Abandoned).await;
            }
        }
    }

    /// The answer goes to its exchange; if that is gone, to the exchange
    /// that carried it, else to the connection's own, as a plain message
    /// (it must not end an exchange that waits for something else).
    async fn send_answer(&self, to: &Reply, via: Option<&Reply>, bytes: Vec<u8>) {
        let bytes = match to.sender.send(Out::Answer(bytes)).await {
            Ok(()) => return,
            Err(mpsc::error::SendError(Out::Answer(bytes))) => bytes,
            Err(_) => return,
        };
        let fallback = via.filter(|via| via.is_open() && !via.same(to)).unwrap_or(&self.to_client);
        if fallback.same(to) || fallback.sender.send(Out::Line(bytes)).await.is_err() {
            tracing::debug!(server = %self.config.server, "an answer's client went away; dropped");
        }
    }

    /// A message the server sent on its own: to the exchange whose stream
    /// carried it while someone reads it, else to the connection's own.
    async fn send_client(&self, via: &Reply, bytes: Vec<u8>) {
        let to = if via.is_open() { via } else { &self.to_client };
        if to.sender.send(Out::Line(bytes)).await.is_err() {
            // A client that stopped reading has gone away; nothing to tell it.
            tracing::debug!(server = %self.config.server, "a server message's client went away; dropped");
        }
    }

    /// Sends to the server (into the exchange's outbox while it collects);
    /// false if the server's side is closed.
    async fn send_server(&self, bytes: Vec<u8>, request: Option<Id>, reply: &Reply) -> bool {
        let Some(sender) = lock(&self.to_server).clone() else { return false };
        let mut message = ToServer { bytes, request, reply: reply.clone() };
        if let Some(outbox) = &reply.outbox {
            match outbox.offer(message) {
                None => return true,
                Some(back) => message = back,
            }
        }
        sender.send(message).await.is_ok()
    }
}

fn encode(value: &Value) -> Vec<u8> {
    // A Value always encodes (its map keys are strings).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The JSON-RPC error data for a policy deny: the determining policy, all
/// of them, and the reason shown to the agent.
fn denied(decision: &Decision) -> (String, Value) {
    let reason = decision.reason.clone().unwrap_or_else(|| "denied by policy".to_string());
    let data = json!({
        "policy": decision.policies.first(),
        "policies": decision.policies,
        "reason": reason,
    });
    (format!("denied by Bridle policy: {reason}"), data)
}

/// The state stays consistent between statements, so a panic elsewhere
/// must not wedge the connection.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
