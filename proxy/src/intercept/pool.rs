//! Upstream HTTP connections kept across agent connections. Agents open
//! many short connections to the same hosts (package managers, git, SDKs
//! without keep-alive); each would otherwise cost Bridle a TCP and a
//! verified TLS handshake upstream before the agent's own handshake can
//! finish.
//!
//! Keyed by the original destination, the name the certificate was
//! verified for (none for plain HTTP) and the protocol: a connection is
//! only ever reused for the same destination and name it was verified
//! for. HTTP/2 connections are shared while in use (one per key, requests
//! multiplex); an HTTP/1.1 connection is returned when its agent
//! connection ends with the last response complete, and is handed to one
//! agent connection at a time. Idle connections expire.
//!
//! Must never: hand out a connection for another destination or name, or
//! an HTTP/1.1 connection with a response still in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};

use super::ProxyBody;

/// An HTTP connection's request side.
pub(super) enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// For HTTP/1.1: the previous response has been read to its end.
    fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }

    fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }
}

/// Which connections may serve a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct Key {
    pub dst: SocketAddr,
    /// The name the upstream certificate was verified for; `None` for
    /// plain HTTP.
    pub name: Option<String>,
    pub h2: bool,
}

struct Idle {
    sender: Sender,
    /// When it was pooled (HTTP/1.1) or last handed out (HTTP/2).
    since: Instant,
}

impl Idle {
    fn live(&self, now: Instant, idle_for: Duration) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < idle_for
    }
}

/// The pool of one proxy.
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    per_key: usize,
    idle_for: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.idle.lock().map(|idle| idle.len()).unwrap_or(0);
        f.debug_struct("Pool").field("keys", &keys).field("per_key", &self.per_key).finish()
    }
}

impl Default for Pool {
    /// 8 idle HTTP/1.1 connections per key, kept 60 s.
    fn default() -> Self {
        Pool::new(8, Duration::from_secs(60))
    }
}

impl Pool {
    pub fn new(per_key: usize, idle_for: Duration) -> Self {
        Pool { idle: Mutex::new(HashMap::new()), per_key, idle_for }
    }

    /// A live connection for `key`: HTTP/2 shared (it stays pooled),
    /// HTTP/1.1 taken out.
    pub(super) fn take(&self, key: &Key) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        list.retain(|i| i.live(now, self.idle_for));
        let found = match key.h2 {
            true => list.last_mut().and_then(|i| {
                // Shared: it expires only once nobody took it for a while.
                i.since = now;
                i.sender.share()
            }),
            false => list.pop().map(|i| i.sender),
        };
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Offers `sender` for reuse: an HTTP/2 connection is shared from now
    /// on (if its key has none yet); an HTTP/1.1 one only if its last
    /// response was read to the end.
    pub(super) fn put(&self, key: Key, sender: Sender) {
        if sender.is_closed() || (!key.h2 && !sender.is_ready()) {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else { return };
        let since = Instant::now();
        // Hosts not asked for again are dropped here (their connections close).
        idle.retain(|_, list| {
            list.retain(|i| i.live(since, self.idle_for));
            !list.is_empty()
        });
        let list = idle.entry(key).or_default();
        match &sender {
            Sender::H2(_) => {
                if list.is_empty() {
                    list.push(Idle { sender, since });
                }
            }
            Sender::H1(_) if list.len() < self.per_key => list.push(Idle { sender, since }),
            Sender::H1(_) => {}
        }
    }
}
