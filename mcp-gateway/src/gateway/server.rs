//! Server → client: match responses to requests, pin and filter tool
//! lists, scan results and server-initiated requests, record everything.

use std::collections::BTreeSet;
use std::sync::Arc;

use bridle_engine::decision::Effect;
use bridle_engine::event::{EventKind, McpDirection, McpPayload};
use serde_json::{Map, Value};

use super::{Gateway, Reply, encode, lock};
use crate::classify;
use crate::config::Transport;
use crate::framing::{self, Line};
use crate::jsonrpc::{self, Frame, Id, Message, Parsed};
use crate::poison::{self, Scope};
use crate::tools::Sighted;

/// The largest answer [`Gateway::passed_on`] takes: most results are small,
/// and a large one's parse is not what its time goes to.
const QUICK_ANSWER_BYTES: usize = 64 * 1024;

/// Non-JSON messages from the server audited one by one (the rest are counted).
pub(super) const AUDITED_GARBAGE: u64 = 20;

/// Longest excerpt of a bad line quoted in a notice.
const EXCERPT: usize = 200;

impl Gateway {
    /// One line from the server (stdio: on the connection's own exchange).
    pub async fn from_server(self: &Arc<Self>, line: Line) {
        let via = self.to_client.clone();
        self.from_server_via(line, &via).await;
    }

    /// One message (or batch) from the server, on the stream of exchange
    /// `via`: what the server sends on its own goes back there.
    pub async fn from_server_via(self: &Arc<Self>, line: Line, via: &Reply) {
        let bytes = match line {
            Line::Message(bytes) => bytes,
            Line::Oversized { prefix, size } => return self.oversized_from_server(&prefix, size).await,
        };
        let bytes = match self.passed_on(bytes, via).await {
            Ok(()) => return,
            Err(bytes) => bytes,
        };
        match jsonrpc::parse(&bytes) {
            Err(error) => self.garbage_from_server(&bytes, &error.to_string()),
            Ok(Frame::Single(parsed)) => self.server_message(parsed, Some(bytes), via).await,
            // Clients need not accept batches (MCP dropped them), so each
            // item goes on its own.
            Ok(Frame::Batch(items)) => {
                for parsed in items {
                    self.server_message(parsed, None, via).await;
                }
            }
        }
    }

    /// The common answer, to a call whose result is only scanned, goes on
    /// as the server's bytes once its id is read: the full parse its scan
    /// needs is made with its record, after it went. Anything else comes
    /// back for the long way ([`jsonrpc::parse`]).
    async fn passed_on(&self, bytes: Vec<u8>, via: &Reply) -> Result<(), Vec<u8>> {
        // Past this the copy kept for the scan would cost more than the parse saves.
        if bytes.len() > QUICK_ANSWER_BYTES {
            return Err(bytes);
        }
        let Some(id) = jsonrpc::response_id(&bytes) else { return Err(bytes) };
        let pending = {
            let mut flight = lock(&self.flight);
            let quick = flight.inflight.get(&id).is_some_and(|p| p.due.batch.is_none() && scanned_only(&p.payload));
            match quick {
                true => flight.inflight.remove(&id),
                false => None,
            }
        };
        let Some(pending) = pending else { return Err(bytes) };
        let copy = bytes.clone();
        // The quick reading skips strings unchecked: an answer the full
        // parse refuses (a lone surrogate escape, a stray invalid byte) went
        // on all the same, and its text is scanned as text.
        self.record_result(&id, &pending.payload, move || {
            serde_json::from_slice(&copy)
                .ok()
                .or_else(|| Some(serde_json::json!({ "result": String::from_utf8_lossy(&copy) })))
        });
        self.send_answer(&pending.due.reply, Some(via), bytes).await;
        Ok(())
    }

    async fn oversized_from_server(&self, prefix: &[u8], size: usize) {
        let limit = self.config.max_message_bytes;
        let id = framing::scan_id(prefix).as_ref().and_then(Id::from_value);
        let pending = id.as_ref().and_then(|id| lock(&self.flight).inflight.remove(id));
        self.enforcer
            .notice("warn", format!("the server sent a {size}-byte message, over the {limit}-byte limit; dropped"));
        if let (Some(id), Some(pending)) = (id, pending) {
            let message = format!("the MCP server's response of {size} bytes exceeds Bridle's {limit}-byte limit");
            let data = serde_json::json!({"limit": limit, "size": size});
            self.answer(Some(&id), &pending.due, jsonrpc::TOO_LARGE, &message, Some(data)).await;
        }
    }

    fn garbage_from_server(&self, bytes: &[u8], error: &str) {
        let count = {
            let mut garbage = lock(&self.garbage);
            *garbage += 1;
            *garbage
        };
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT)]).into_owned();
        if count <= AUDITED_GARBAGE {
            let what = match self.config.transport {
                Transport::Stdio => "wrote a line that is not JSON-RPC to stdout",
                Transport::StreamableHttp | Transport::Sse => "sent a message that is not JSON-RPC",
            };
            self.enforcer.notice("warn", format!("the server {what} ({error}); dropped: {text:?}"));
        } else {
            tracing::warn!(server = %self.config.server, "dropped non-JSON server output: {text:?}");
        }
    }

    async fn server_message(self: &Arc<Self>, parsed: Parsed, bytes: Option<Vec<u8>>, via: &Reply) {
        match parsed.message {
            Message::Response { id } => self.server_response(id, parsed.value, bytes, via).await,
            Message::Request { id, method, params } => {
                // Sampling and elicitation put the server's words before
                // the model or the user: scanned like results.
                let findings = poison::scan_value(&params, Scope::Result);
                self.observe(Some(&id), classify::other(&method), false, strings(findings));
                // Re-encoded: what the client reads is what was observed,
                // whatever its parser makes of a key written twice.
                self.send_client(via, encode(&parsed.value)).await;
            }
            Message::Notification { method, .. } => {
                self.observe(None, classify::other(&method), false, BTreeSet::new());
                self.send_client(via, encode(&parsed.value)).await;
            }
            Message::Invalid { id, reason } => {
                let pending = id.as_ref().and_then(|id| lock(&self.flight).inflight.remove(id));
                self.enforcer.notice("warn", format!("the server sent an invalid message: {reason}; dropped"));
                if let (Some(id), Some(pending)) = (id, pending) {
                    let message = format!("the MCP server sent an invalid response: {reason}");
                    self.answer(Some(&id), &pending.due, jsonrpc::CONNECTION_CLOSED, &message, None).await;
                }
            }
        }
    }

    async fn server_response(&self, id: Id, mut value: Value, bytes: Option<Vec<u8>>, via: &Reply) {
        // The server's own bytes go on only when the quick reading agrees
        // with the full parse (no key twice, the same id): a client whose
        // parser keeps the first of two `id`s would otherwise take this
        // answer for another request's.
        let bytes = bytes.filter(|bytes| jsonrpc::response_id(bytes).as_ref() == Some(&id));
        let pending = {
            let mut flight = lock(&self.flight);
            match flight.inflight.remove(&id) {
                Some(pending) => pending,
                None => {
                    let cancelled = flight.was_cancelled(&id);
                    drop(flight);
                    if !cancelled {
                        self.enforcer.notice(
                            "warn",
                            format!("the server answered request {id}, which is not in flight; dropped"),
                        );
                    }
                    return;
                }
            }
        };
        let mut changed = false;
        let mut findings = BTreeSet::new();
        let mut reencode = false;
        if let Some(result) = value.get_mut("result") {
            match &pending.payload {
                // Always re-encoded: a client whose parser reads duplicate
                // keys differently must see the list that was inspected.
                McpPayload::ToolsList => {
                    (changed, findings) = self.tools_listed(result);
                    reencode = true;
                }
                McpPayload::Initialize { .. } => {
                    findings = strings(
                        result
                            .get("instructions")
                            .map(|i| poison::scan_value(i, Scope::Definition))
                            .unwrap_or_default(),
                    );
                }
                _ => {}
            }
        }
        if scanned_only(&pending.payload) {
            // Its findings go on the record and decide nothing: the scan is
            // made with the record, after the answer went on. The answer
            // goes out as the server's bytes unless it joins a batch.
            let passed_on = pending.due.batch.is_none() && bytes.is_some();
            let answer = if passed_on { std::mem::take(&mut value) } else { value.clone() };
            self.record_result(&id, &pending.payload, move || Some(answer));
        } else {
            let payload = classify::response(&pending.payload, value.get("result"));
            self.observe(Some(&id), payload, changed, findings);
        }
        match (pending.due.batch, bytes) {
            (None, Some(bytes)) if !reencode => self.send_answer(&pending.due.reply, Some(via), bytes).await,
            _ => self.deliver(&pending.due, value, Some(via)).await,
        }
    }

    /// Pins, scans and filters one `tools/list` result in place; returns
    /// (any tool changed, findings of all tools).
    fn tools_listed(&self, result: &mut Value) -> (bool, BTreeSet<String>) {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return (false, BTreeSet::new());
        };
        let (sighted, error) = lock(&self.tools).observe(tools);
        if let Some(error) = error {
            self.enforcer.notice("error", format!("cannot save tool pins ({error}); kept in memory for this session"));
        }
        self.report(&sighted);
        let hidden: BTreeSet<&str> =
            sighted.iter().filter(|tool| self.forbidden_outright(tool)).map(|tool| tool.name.as_str()).collect();
        tools.retain(|t| t.get("name").and_then(Value::as_str).is_none_or(|name| !hidden.contains(name)));
        let changed = sighted.iter().any(|s| s.changed);
        let findings = sighted.iter().flat_map(|s| s.findings.iter().cloned()).collect();
        (changed, findings)
    }

    /// Notices for new pins, changed definitions and findings.
    fn report(&self, sighted: &[Sighted]) {
        let new: Vec<&str> = sighted.iter().filter(|s| s.new).map(|s| s.name.as_str()).collect();
        if !new.is_empty() {
            self.enforcer.notice("info", format!("pinned {} new tool(s): {}", new.len(), new.join(", ")));
        }
        for tool in sighted {
            if tool.changed {
                let message = format!(
                    "tool {} changed since it was pinned (now {}); its calls carry context.tool_changed \
                     until `bridle mcp tools --accept {}/{}`",
                    tool.name,
                    short(&tool.hash),
                    self.config.server,
                    tool.name
                );
                self.enforcer.notice("warn", message);
            }
            if !tool.findings.is_empty() {
                let kinds = tool.findings.join(", ");
                self.enforcer.notice("warn", format!("tool {}: possible poisoning: {kinds}", tool.name));
            }
        }
    }

    /// Whether a call to `tool` with no arguments is denied (not asked):
    /// then the agent need not see it at all.
    fn forbidden_outright(&self, tool: &Sighted) -> bool {
        let call = McpPayload::ToolsCall { name: tool.name.clone(), arguments: Value::Object(Map::new()) };
        let mut event = self.event(McpDirection::ToServer, None, call);
        if let EventKind::Mcp(message) = &mut event.kind {
            message.tool_changed = tool.changed;
            message.findings.clone_from(&tool.findings);
        }
        let decision = self.enforcer.decide(&event);
        if decision.effect != Effect::Deny {
            return false;
        }
        let reason = decision.reason.unwrap_or_default();
        let policies = decision.policies.join(", ");
        self.enforcer.notice("info", format!("hid tool {} from tools/list: {reason} ({policies})", tool.name));
        true
    }

    /// Records the answer to `request` (`id`, a call whose result is only
    /// scanned) with the findings of a scan of its result: `value` gives
    /// the answer, and both run once it is on its way
    /// ([`Enforcer::observe_later`](crate::Enforcer::observe_later)).
    fn record_result(&self, id: &Id, request: &McpPayload, value: impl FnOnce() -> Option<Value> + Send + 'static) {
        // Such a request's payload takes nothing from its result.
        let event = self.event(McpDirection::ToClient, Some(id), classify::response(request, None));
        self.enforcer.observe_later(event, move |event| {
            let value = value();
            if let (Some(result), EventKind::Mcp(message)) =
                (value.as_ref().and_then(|v| v.get("result")), &mut event.kind)
            {
                message.findings = strings(poison::scan_value(result, Scope::Result)).into_iter().collect();
            }
        });
    }

    fn observe(&self, id: Option<&Id>, payload: McpPayload, changed: bool, findings: BTreeSet<String>) {
        let mut event = self.event(McpDirection::ToClient, id, payload);
        if let EventKind::Mcp(message) = &mut event.kind {
            message.tool_changed = changed;
            message.findings = findings.into_iter().collect();
        }
        self.enforcer.observe(event);
    }
}

/// Answers whose content is scanned for poisoning, and nothing else.
fn scanned_only(request: &McpPayload) -> bool {
    matches!(request, McpPayload::ToolsCall { .. } | McpPayload::PromptsGet { .. } | McpPayload::ResourcesRead { .. })
}

fn strings(kinds: BTreeSet<&'static str>) -> BTreeSet<String> {
    kinds.into_iter().map(str::to_string).collect()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
