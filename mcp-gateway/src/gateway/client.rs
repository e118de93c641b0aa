//! Client → server: decide, then forward or answer.

use std::sync::Arc;

use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{EventKind, McpDirection, McpPayload};
use bridle_engine::request::primary_action;
use serde_json::{Value, json};

use super::flight::{Due, Held, Pending};
use super::{Expect, Gateway, Reply, denied, encode, lock};
use crate::classify;
use crate::framing::{self, Line};
use crate::jsonrpc::{self, Frame, Id, Message, Parsed};

/// Messages one batch may hold: each request in it may open its own
/// upstream request, so a batch must not be able to open thousands.
const MAX_BATCH: usize = 256;

/// A request on its way: what it is, and the bytes to forward. Those are
/// the message as parsed, re-encoded, never the client's own bytes: a
/// server whose JSON parser reads duplicate keys differently (first wins)
/// must still get exactly what was decided.
struct Outbound {
    id: Id,
    payload: McpPayload,
    due: Due,
    bytes: Vec<u8>,
}

impl Gateway {
    /// One line from the client, in the connection's own exchange (stdio).
    pub async fn from_client(self: &Arc<Self>, line: Line) -> Expect {
        let reply = self.to_client.clone();
        self.from_client_via(line, &reply).await
    }

    /// One message (or batch) from the client, in exchange `reply`: its
    /// answers go there. Returns what the transport should wait for.
    pub async fn from_client_via(self: &Arc<Self>, line: Line, reply: &Reply) -> Expect {
        let unbatched = Due { batch: None, reply: reply.clone() };
        let bytes = match line {
            Line::Message(bytes) => bytes,
            Line::Oversized { prefix, size } => {
                self.oversized_from_client(&prefix, size, &unbatched).await;
                return Expect::Refused;
            }
        };
        match jsonrpc::parse(&bytes) {
            Err(error) => {
                self.enforcer
                    .notice("warn", format!("the client sent a message that is not JSON-RPC ({error}); not forwarded"));
                let code = if matches!(error, jsonrpc::FrameError::Json(_)) {
                    jsonrpc::PARSE_ERROR
                } else {
                    jsonrpc::INVALID_REQUEST
                };
                self.answer(None, &unbatched, code, &error.to_string(), None).await;
                Expect::Refused
            }
            Ok(Frame::Single(parsed)) => {
                let expect = match parsed.message {
                    Message::Request { .. } => Expect::Answer,
                    Message::Invalid { .. } => Expect::Refused,
                    Message::Notification { .. } | Message::Response { .. } => Expect::Nothing,
                };
                self.client_message(parsed, &unbatched).await;
                expect
            }
            Ok(Frame::Batch(items)) if items.len() > MAX_BATCH => {
                let message = format!("a batch of {} messages exceeds Bridle's limit of {MAX_BATCH}", items.len());
                self.enforcer.notice("warn", format!("the client sent {message}; not forwarded"));
                self.answer(None, &unbatched, jsonrpc::INVALID_REQUEST, &message, None).await;
                Expect::Refused
            }
            Ok(Frame::Batch(items)) => {
                let expected = items
                    .iter()
                    .filter(|p| matches!(p.message, Message::Request { .. } | Message::Invalid { .. }))
                    .count();
                let batch = lock(&self.flight).open_batch(expected, reply.exchange());
                let due = Due { batch, reply: reply.clone() };
                for parsed in items {
                    self.client_message(parsed, &due).await;
                }
                if expected == 0 { Expect::Nothing } else { Expect::Answer }
            }
        }
    }

    async fn oversized_from_client(&self, prefix: &[u8], size: usize, due: &Due) {
        let id = framing::scan_id(prefix).as_ref().and_then(Id::from_value);
        let limit = self.config.max_message_bytes;
        self.enforcer.notice(
            "warn",
            format!(
                "the client sent a {size}-byte message (id {}), over the {limit}-byte limit; not forwarded",
                show(id.as_ref())
            ),
        );
        let message = format!("message of {size} bytes exceeds Bridle's {limit}-byte limit");
        let data = json!({"limit": limit, "size": size});
        self.answer(id.as_ref(), due, jsonrpc::TOO_LARGE, &message, Some(data)).await;
    }

    async fn client_message(self: &Arc<Self>, parsed: Parsed, due: &Due) {
        let bytes = encode(&parsed.value);
        match parsed.message {
            Message::Invalid { id, reason } => {
                self.enforcer.notice(
                    "warn",
                    format!("the client sent an invalid message (id {}): {reason}; not forwarded", show(id.as_ref())),
                );
                self.answer(id.as_ref(), due, jsonrpc::INVALID_REQUEST, &reason, None).await;
            }
            Message::Request { id, method, params } => self.client_request(id, &method, &params, due, bytes).await,
            Message::Notification { method, params } => {
                self.enforcer.observe(self.event(McpDirection::ToServer, None, classify::other(&method)));
                let forward = method != "notifications/cancelled" || self.cancel(&params).await;
                if forward {
                    self.send_server(bytes, None, &due.reply).await;
                }
            }
            Message::Response { id } => {
                self.enforcer.observe(self.event(McpDirection::ToServer, Some(&id), classify::other("response")));
                self.send_server(bytes, None, &due.reply).await;
            }
        }
    }

    async fn client_request(self: &Arc<Self>, id: Id, method: &str, params: &Value, due: &Due, bytes: Vec<u8>) {
        let refusal = {
            let flight = lock(&self.flight);
            if flight.in_use(&id) {
                Some((jsonrpc::INVALID_REQUEST, format!("request id {id} is already in flight")))
            } else {
                flight.closed.as_ref().map(|why| (jsonrpc::CONNECTION_CLOSED, format!("the MCP server {why}")))
            }
        };
        if let Some((code, message)) = refusal {
            self.enforcer.notice("warn", format!("refused client request {id} ({method}): {message}"));
            self.answer(Some(&id), due, code, &message, None).await;
            return;
        }
        let payload = match classify::client_request(method, params) {
            Ok(payload) => payload,
            Err(reason) => {
                self.enforcer.notice("warn", format!("refused client request {id}: {reason}"));
                self.answer(Some(&id), due, jsonrpc::INVALID_PARAMS, &reason, None).await;
                return;
            }
        };
        let mut event = self.event(McpDirection::ToServer, Some(&id), payload.clone());
        if let (McpPayload::ToolsCall { name, .. }, EventKind::Mcp(message)) = (&payload, &mut event.kind) {
            (message.tool_changed, message.findings) = lock(&self.tools).flags(name);
        }
        let request = Outbound { id, payload, due: due.clone(), bytes };
        if primary_action(&event.kind).is_none() {
            self.enforcer.observe(event);
            self.forward(request).await;
            return;
        }
        let decision = self.enforcer.decide(&event);
        if decision.effect == Effect::Ask {
            self.hold(request, event, decision);
            return;
        }
        let decision = self.enforcer.settle(event, decision).await;
        self.conclude(request, &decision).await;
    }

    /// Holds an `ask` in its own task, so the connection keeps moving;
    /// a cancellation from the client aborts it (withdrawing the approval).
    fn hold(self: &Arc<Self>, request: Outbound, event: bridle_engine::event::Event, decision: Decision) {
        tracing::warn!(
            server = %self.config.server,
            id = %request.id,
            reason = decision.reason.as_deref().unwrap_or(""),
            "MCP request held for approval"
        );
        lock(&self.flight).held.insert(request.id.clone(), Held { due: request.due.clone(), task: None });
        let id = request.id.clone();
        let gateway = Arc::clone(self);
        let task = tokio::spawn(async move {
            let decision = gateway.enforcer.settle(event, decision).await;
            let still_held = lock(&gateway.flight).held.remove(&request.id).is_some();
            if still_held {
                gateway.conclude(request, &decision).await;
            }
        });
        if let Some(held) = lock(&self.flight).held.get_mut(&id) {
            held.task = Some(task.abort_handle());
        }
    }

    async fn conclude(&self, request: Outbound, decision: &Decision) {
        if decision.effect.permits() {
            self.forward(request).await;
        } else {
            let (message, data) = denied(decision);
            self.answer(Some(&request.id), &request.due, jsonrpc::DENIED, &message, Some(data)).await;
        }
    }

    /// Registers the request as awaiting the server, then sends it.
    async fn forward(&self, request: Outbound) {
        let closed = {
            let mut flight = lock(&self.flight);
            let closed = flight.closed.clone();
            if closed.is_none() {
                let call = match &request.payload {
                    McpPayload::ToolsCall { name, .. } => Some(self.begin_call(name, &request.id)),
                    _ => None,
                };
                let pending = Pending { payload: request.payload, due: request.due.clone(), call };
                flight.inflight.insert(request.id.clone(), pending);
            }
            closed
        };
        if let Some(why) = closed {
            let message = format!("the MCP server {why}");
            self.answer(Some(&request.id), &request.due, jsonrpc::CONNECTION_CLOSED, &message, None).await;
            return;
        }
        self.send_server(request.bytes, Some(request.id), &request.due.reply).await;
    }

    /// `notifications/cancelled`: a held request is dropped here (the
    /// server never saw it); false means the notice must not be forwarded.
    async fn cancel(&self, params: &Value) -> bool {
        let Some(target) = params.get("requestId").and_then(Id::from_value) else { return true };
        let (forward, due) = {
            let mut flight = lock(&self.flight);
            if let Some(held) = flight.held.remove(&target) {
                if let Some(task) = held.task {
                    task.abort();
                }
                (false, Some(held.due))
            } else if let Some(pending) = flight.inflight.remove(&target) {
                flight.remember_cancelled(target);
                (true, Some(pending.due))
            } else {
                (true, None)
            }
        };
        if let Some(due) = due {
            self.skip(&due).await;
        }
        forward
    }
}

fn show(id: Option<&Id>) -> String {
    id.map_or_else(|| "unknown".to_string(), ToString::to_string)
}
