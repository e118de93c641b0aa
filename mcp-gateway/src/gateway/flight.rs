//! Requests between the client and the server: forwarded and awaiting
//! the server's response, or held awaiting a person; and client batches
//! being reassembled from their members' responses.

use std::collections::{HashMap, VecDeque};

use bridle_engine::event::McpPayload;
use serde_json::Value;
use tokio::task::AbortHandle;

use crate::jsonrpc::Id;

/// Late responses to this many recently cancelled requests are dropped
/// quietly (the client asked for them not to come).
const CANCELLED_MEMORY: usize = 256;

/// A request forwarded to the server.
#[derive(Debug)]
pub(crate) struct Pending {
    pub payload: McpPayload,
    pub batch: Option<u64>,
}

/// A request held for approval.
#[derive(Debug)]
pub(crate) struct Held {
    pub batch: Option<u64>,
    pub task: Option<AbortHandle>,
}

/// A client batch: the answers so far and how many are still due.
#[derive(Debug)]
struct Batch {
    remaining: usize,
    responses: Vec<Value>,
}

/// Everything in flight on one connection.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    pub inflight: HashMap<Id, Pending>,
    pub held: HashMap<Id, Held>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    cancelled: VecDeque<Id>,
    /// Set once the server is gone: new requests are answered at once.
    pub closed: Option<String>,
}

impl Flight {
    /// Whether `id` names a request still awaiting an answer.
    pub fn in_use(&self, id: &Id) -> bool {
        self.inflight.contains_key(id) || self.held.contains_key(id)
    }

    /// A batch awaiting `expected` answers (`None` when none are due:
    /// a batch of notifications gets no response at all).
    pub fn open_batch(&mut self, expected: usize) -> Option<u64> {
        if expected == 0 {
            return None;
        }
        self.next_batch += 1;
        self.batches.insert(self.next_batch, Batch { remaining: expected, responses: Vec::new() });
        Some(self.next_batch)
    }

    /// Files `response`; returns what to send the client now: the response
    /// itself, a completed batch, or nothing while the batch is incomplete.
    pub fn deliver(&mut self, batch: Option<u64>, response: Value) -> Option<Value> {
        let Some(number) = batch else { return Some(response) };
        let Some(open) = self.batches.get_mut(&number) else { return Some(response) };
        open.responses.push(response);
        self.settle(number)
    }

    /// A batch member that ends without a response (cancelled).
    pub fn skip(&mut self, batch: Option<u64>) -> Option<Value> {
        let number = batch?;
        self.settle(number)
    }

    fn settle(&mut self, number: u64) -> Option<Value> {
        let open = self.batches.get_mut(&number)?;
        open.remaining = open.remaining.saturating_sub(1);
        if open.remaining > 0 {
            return None;
        }
        let done = self.batches.remove(&number)?;
        (!done.responses.is_empty()).then_some(Value::Array(done.responses))
    }

    /// Remembers a cancelled request whose late response should be dropped.
    pub fn remember_cancelled(&mut self, id: Id) {
        if self.cancelled.len() == CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(id);
    }

    /// Whether `id` was cancelled (forgetting it: one late response each).
    pub fn was_cancelled(&mut self, id: &Id) -> bool {
        let found = self.cancelled.iter().position(|c| c == id);
        found.and_then(|i| self.cancelled.remove(i)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_batch_is_sent_once_every_member_is_answered() {
        let mut flight = Flight::default();
        let batch = flight.open_batch(3);
        assert!(batch.is_some());
        assert_eq!(flight.deliver(batch, json!(1)), None);
        assert_eq!(flight.skip(batch), None);
        assert_eq!(flight.deliver(batch, json!(2)), Some(json!([1, 2])));
        assert_eq!(flight.deliver(None, json!(3)), Some(json!(3)));
    }

    #[test]
    fn a_batch_whose_members_all_vanish_sends_nothing() {
        let mut flight = Flight::default();
        assert_eq!(flight.open_batch(0), None);
        let batch = flight.open_batch(1);
        assert_eq!(flight.skip(batch), None);
    }

    #[test]
    fn cancelled_ids_are_remembered_boundedly() {
        let mut flight = Flight::default();
        for n in 0..(CANCELLED_MEMORY + 5) {
            flight.remember_cancelled(Id::from_value(&json!(n)).expect("id"));
        }
        assert!(!flight.was_cancelled(&Id::from_value(&json!(0)).expect("id")));
        let last = Id::from_value(&json!(CANCELLED_MEMORY + 4)).expect("id");
        assert!(flight.was_cancelled(&last));
        assert!(!flight.was_cancelled(&last), "forgotten after one response");
    }
}
