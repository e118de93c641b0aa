//! One configured server as the gateway serves it at `/mcp/<name>`: its
//! upstream client, what every session of it shares (the enforcer, the
//! pin store, the limits), and the sessions it knows, by id.
//!
//! A session is one [`Gateway`] with its own in-flight map and tool book,
//! so everything the stdio transport does per connection happens per MCP
//! session here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bridle_engine::config::{McpServer, McpTransport};
use tokio::sync::mpsc;

use super::Shared;
use super::route::Route;
use super::session::Session;
use super::sse::Legacy;
use super::upstream::Upstream;
use crate::GatewayError;
use crate::config::{GatewayConfig, Transport};
use crate::enforce::Enforcer;
use crate::gateway::{Gateway, Out, ToServer};
use crate::tools::ToolBook;

/// One server behind the gateway.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub name: String,
    pub transport: McpTransport,
    /// The configured server's client; `None` inline.
    pub upstream: Option<Arc<Upstream>>,
    pub enforcer: Enforcer,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    shared: Shared,
    /// Streamable-HTTP sessions by the id the server gave them.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Legacy event streams by the token in their endpoint URL.
    legacy: Mutex<HashMap<String, Arc<Legacy>>>,
}

impl Endpoint {
    pub fn new(
        server: &McpServer,
        shared: &Shared,
        limits: &super::Limits,
        roots: Option<&rustls::RootCertStore>,
    ) -> Result<Self, GatewayError> {
        let upstream = Upstream::new(&server.name, &server.url, &server.headers, roots, limits.connect_timeout)?;
        Ok(Endpoint::with(&server.name, server.transport, Some(Arc::new(upstream)), shared, limits))
    }

    /// A streamable-HTTP server seen inside proxied HTTP, named `name`.
    pub fn inline(name: &str, shared: &Shared, limits: &super::Limits) -> Self {
        Endpoint::with(name, McpTransport::StreamableHttp, None, shared, limits)
    }

    fn with(
        name: &str,
        transport: McpTransport,
        upstream: Option<Arc<Upstream>>,
        shared: &Shared,
        limits: &super::Limits,
    ) -> Self {
        let enforcer =
            Enforcer::new(Arc::clone(&shared.authorizer), Arc::clone(&shared.approvals), shared.audit.clone(), name);
        Endpoint {
            name: name.to_string(),
            transport,
            upstream,
            enforcer,
            max_message_bytes: limits.max_message_bytes,
            connect_timeout: limits.connect_timeout,
            shared: shared.clone(),
            sessions: Mutex::new(HashMap::new()),
            legacy: Mutex::new(HashMap::new()),
        }
    }

    /// The configured server's client as a session route.
    pub fn route(&self) -> Option<Arc<dyn Route>> {
        self.upstream.clone().map(|upstream| upstream as Arc<dyn Route>)
    }

    /// A fresh core for one session, with the server's pinned tools.
    pub fn gateway(
        &self,
        to_client: mpsc::Sender<Out>,
        to_server: mpsc::Sender<ToServer>,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let mut config = GatewayConfig::new(&self.name, &self.shared.session, &self.shared.principal)?;
        config.max_message_bytes = self.max_message_bytes;
        config.transport = match self.transport {
            McpTransport::StreamableHttp => Transport::StreamableHttp,
            McpTransport::Sse => Transport::Sse,
        };
        let tools = ToolBook::open(self.shared.pins.clone(), &self.name)?;
        Ok(Gateway::new(config, self.enforcer.clone(), tools, to_client, to_server))
    }

    /// Sessions known by id now.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Files `session` under the id the server gave it.
    pub fn register(&self, id: &str, session: &Arc<Session>) {
        lock(&self.sessions).insert(id.to_string(), Arc::clone(session));
        self.enforcer.notice("info", format!("MCP session {id} started"));
    }

    pub fn forget(&self, id: &str, why: &str) {
        if let Some(session) = lock(&self.sessions).remove(id) {
            session.gateway.client_closed();
            self.enforcer.notice("info", format!("MCP session {id} ended: {why}"));
        }
    }

    /// Forgets sessions no client used for `idle`: a client that never
    /// ends its session must not hold memory. One still in use (a GET
    /// stream or a call open: something besides this map holds it) stays.
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<String> = lock(&self.sessions)
            .iter()
            .filter(|(_, session)| Arc::strong_count(session) == 1 && session.link.idle_since(now) > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.forget(&id, &format!("no request for {}s", idle.as_secs()));
        }
    }

    pub fn legacy(&self, token: &str) -> Option<Arc<Legacy>> {
        lock(&self.legacy).get(token).cloned()
    }

    pub fn register_legacy(&self, token: &str, stream: &Arc<Legacy>) {
        lock(&self.legacy).insert(token.to_string(), Arc::clone(stream));
    }

    pub fn forget_legacy(&self, token: &str) {
        lock(&self.legacy).remove(token);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
