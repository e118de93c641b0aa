//! One client ↔ server connection, transport-independent: lines in from
//! either side, lines out through two channels. The stdio wrapper feeds it
//! pipes; an HTTP transport can feed it request bodies.
//!
//! Client → server ([`client`]): every request is classified and, when a
//! policy governs it, decided before it may leave; a deny is answered here
//! and never forwarded; an `ask` is held in its own task so other traffic
//! keeps moving. Server → client ([`server`]): responses are matched to
//! their request, `tools/list` results are pinned, scanned and filtered,
//! results are scanned, and everything is recorded.

mod client;
mod flight;
mod server;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bridle_engine::decision::Decision;
use bridle_engine::event::{Event, EventKind, McpDirection, McpMessage, McpPayload};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::GatewayConfig;
use crate::enforce::Enforcer;
use crate::jsonrpc::{self, Id};
use crate::tools::ToolBook;
use flight::Flight;

/// What goes out to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// One message, without its newline.
    Line(Vec<u8>),
    /// Nothing more will come: flush and stop.
    Close,
}

/// One connection's inspection and enforcement.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    enforcer: Enforcer,
    tools: Mutex<ToolBook>,
    flight: Mutex<Flight>,
    to_client: mpsc::Sender<Out>,
    /// `None` once the client has closed its side.
    to_server: Mutex<Option<mpsc::Sender<Out>>>,
    /// Non-JSON lines the server wrote (only the first few are audited).
    garbage: Mutex<u64>,
}

impl Gateway {
    pub fn new(
        config: GatewayConfig,
        enforcer: Enforcer,
        tools: ToolBook,
        to_client: mpsc::Sender<Out>,
        to_server: mpsc::Sender<Out>,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            config,
            enforcer,
            tools: Mutex::new(tools),
            flight: Mutex::new(Flight::default()),
            to_client,
            to_server: Mutex::new(Some(to_server)),
            garbage: Mutex::new(0),
        })
    }

    /// The server is gone (`why` says how): every request still awaiting
    /// an answer gets a JSON-RPC error, and later ones are answered at once.
    pub async fn server_closed(&self, why: &str) {
        let (pending, held) = {
            let mut flight = lock(&self.flight);
            flight.closed = Some(why.to_string());
            let pending: Vec<_> = flight.inflight.drain().map(|(id, p)| (id, p.batch)).collect();
            let held: Vec<_> = flight.held.drain().collect();
            (pending, held)
        };
        let held = held.into_iter().map(|(id, held)| {
            if let Some(task) = held.task {
                task.abort();
            }
            (id, held.batch)
        });
        let message = format!("the MCP server {why} before answering");
        for (id, batch) in pending.into_iter().chain(held) {
            self.answer(Some(&id), batch, jsonrpc::CONNECTION_CLOSED, &message, None).await;
        }
        let garbage = *lock(&self.garbage);
        if garbage > server::AUDITED_GARBAGE {
            self.enforcer.notice("warn", format!("the server wrote {garbage} non-JSON lines to stdout in all"));
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
        let _ = self.to_client.send(Out::Close).await;
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

    /// An error response for `id`, sent now or filed into its batch.
    async fn answer(&self, id: Option<&Id>, batch: Option<u64>, code: i64, message: &str, data: Option<Value>) {
        self.deliver(batch, jsonrpc::error_response(id, code, message, data)).await;
    }

    async fn deliver(&self, batch: Option<u64>, response: Value) {
        let ready = lock(&self.flight).deliver(batch, response);
        if let Some(value) = ready {
            self.send_client_value(&value).await;
        }
    }

    async fn send_client_value(&self, value: &Value) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.send_client(bytes).await,
            Err(error) => tracing::error!(%error, "cannot encode a message for the client"),
        }
    }

    async fn send_client(&self, bytes: Vec<u8>) {
        // A client that stopped reading has gone away; nothing to tell it.
        let _ = self.to_client.send(Out::Line(bytes)).await;
    }

    /// Sends to the server; false if its side is closed.
    async fn send_server(&self, bytes: Vec<u8>) -> bool {
        let sender = lock(&self.to_server).clone();
        match sender {
            Some(sender) => sender.send(Out::Line(bytes)).await.is_ok(),
            None => false,
        }
    }
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
