//! Requests between the client and the server: forwarded and awaiting
//! the server's response, or held awaiting a person; and client batches
//! being reassembled from their members' responses.

use std::collections::{HashMap, VecDeque};

use bridle_engine::event::McpPayload;
use serde_json::Value;
use tokio::task::AbortHandle;

use super::Reply;
use crate::enforce::InFlight;
use crate::jsonrpc::Id;

/// Late responses to this many recently cancelled requests are dropped
/// quietly (the client asked for them not to come).
const CANCELLED_MEMORY: usize = 256;

/// Where a request's answer is due: into a batch being reassembled, and
/// to the client exchange the request (or its batch) came in.
#[derive(Clone, Debug)]
pub(crate) struct Due {
    pub batch: Option<u64>,
    pub reply: Reply,
}

/// A request forwarded to the server.
#[derive(Debug)]
pub(crate) struct Pending {
    pub payload: McpPayload,
    pub due: Due,
    /// A tool call is in flight for correlation until this drops (with
    /// the entry: answered, undeliverable, cancelled, or the server gone).
    #[expect(dead_code, reason = "held for its Drop: the call ends with the entry")]
    pub call: Option<InFlight>,
}

/// A request held for approval.
#[derive(Debug)]
pub(crate) struct Held {
    pub due: Due,
    pub task: Option<AbortHandle>,
}

/// A client batch: the answers so far, how many are still due, and the
/// exchange it came in.
#[derive(Debug)]
struct Batch {
    remaining: usize,
    responses: Vec<Value>,
    exchange: u64,
}

/// What a batch member that ends leaves to send.
#[derive(Debug, PartialEq)]
pub(crate) enum Settled {
    /// Other members are still due.
    Waiting,
    /// The exchange's answer: a response, or a completed batch's array.
    Answer(Value),
    /// No answer will come (a cancelled request, or a batch whose members
    /// were all cancelled).
    Nothing,
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
    pub fn open_batch(&mut self, expected: usize, exchange: u64) -> Option<u64> {
        if expected == 0 {
            return None;
        }
        self.next_batch += 1;
        self.batches.insert(self.next_batch, Batch { remaining: expected, responses: Vec::new(), exchange });
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

    /// A request that ends without a response (cancelled).
    pub fn skip(&mut self, batch: Option<u64>) -> Settled {
        let Some(number) = batch else { return Settled::Nothing };
        if !self.batches.contains_key(&number) {
            return Settled::Nothing;
        }
        match self.settle(number) {
            Some(answer) => Settled::Answer(answer),
            None if self.batches.contains_key(&number) => Settled::Waiting,
            None => Settled::Nothing,
        }
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

    /// Drops everything owed to client exchange `exchange` (its client went
    /// away): held requests are aborted, forwarded ones remembered as
    /// cancelled. Returns the ids of the forwarded ones.
    pub fn drop_exchange(&mut self, exchange: u64) -> Vec<Id> {
        let held: Vec<Id> =
            self.held.iter().filter(|(_, h)| h.due.reply.exchange() == exchange).map(|(id, _)| id.clone()).collect();
        for id in held {
            if let Some(task) = self.held.remove(&id).and_then(|held| held.task) {
                task.abort();
            }
        }
        let forwarded: Vec<Id> = self
            .inflight
            .iter()
            .filter(|(_, p)| p.due.reply.exchange() == exchange)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &forwarded {
            self.inflight.remove(id);
            self.remember_cancelled(id.clone());
        }
        self.batches.retain(|_, batch| batch.exchange != exchange);
        forwarded
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
        let batch = flight.open_batch(3, 0);
        assert!(batch.is_some());
        assert_eq!(flight.deliver(batch, json!(1)), None);
        assert_eq!(flight.skip(batch), Settled::Waiting);
        assert_eq!(flight.deliver(batch, json!(2)), Some(json!([1, 2])));
        assert_eq!(flight.deliver(None, json!(3)), Some(json!(3)));
    }

    #[test]
    fn a_batch_whose_members_all_vanish_sends_nothing() {
        let mut flight = Flight::default();
        assert_eq!(flight.open_batch(0, 0), None);
        let batch = flight.open_batch(1, 0);
        assert_eq!(flight.skip(batch), Settled::Nothing);
        assert_eq!(flight.skip(None), Settled::Nothing);
    }

    #[test]
    fn a_closed_exchange_takes_its_requests_and_batches_along() {
        let (sender, _receiver) = tokio::sync::mpsc::channel(1);
        let (mine, theirs) = (Reply::new(sender.clone(), 7), Reply::new(sender, 8));
        let mut flight = Flight::default();
        let batch = flight.open_batch(2, 7);
        let id = |n: u64| Id::from_value(&json!(n)).expect("id");
        let pending = |reply: &Reply, batch| Pending {
            payload: McpPayload::Other { name: "ping".into() },
            due: Due { batch, reply: reply.clone() },
            call: None,
        };
        flight.inflight.insert(id(1), pending(&mine, batch));
        flight.inflight.insert(id(2), pending(&theirs, None));
        flight.held.insert(id(3), Held { due: Due { batch, reply: mine.clone() }, task: None });
        assert_eq!(flight.drop_exchange(7), vec![id(1)]);
        assert!(flight.in_use(&id(2)) && !flight.in_use(&id(3)));
        assert!(flight.was_cancelled(&id(1)), "a late answer is dropped quietly");
        assert_eq!(flight.deliver(batch, json!(1)), Some(json!(1)), "the batch is gone");
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
