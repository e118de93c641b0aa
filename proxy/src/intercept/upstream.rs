//! The upstream side of an intercepted connection: one HTTP connection to
//! the original destination (TLS verified, or plain), taken from the
//! [`Pool`] or opened on first use, reopened when the upstream closes a
//! keep-alive connection, and given back to the pool when the agent's
//! connection ends. A request that a reused connection could not even
//! start sending (the upstream closed it meanwhile) is sent once more on a
//! fresh connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::sync::Mutex;

use super::ProxyBody;
use super::handshake::{UpstreamStream, tls_connect};
use super::pool::{Key, Pool, Sender};
use crate::forward::connect_upstream;

type Response = http::Response<Incoming>;

#[derive(Clone)]
enum Dial {
    /// HTTP/1.1, or HTTP/2 with prior knowledge (`h2`), in the clear.
    Plain {
        h2: bool,
    },
    Tls {
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
        h2: bool,
    },
    /// The first TLS connection failed verification or could not be made:
    /// every request gets a 502 with this reason.
    Failed(String),
}

/// Where requests of one agent connection go.
pub(super) struct Upstream {
    dst: SocketAddr,
    limit: Duration,
    dial: Dial,
    /// The TLS connection made during the handshake, until first use.
    first: SyncMutex<Option<UpstreamStream>>,
    sender: Mutex<Option<Sender>>,
    /// Where connections come from and go back to, and under which key.
    pool: Option<(Arc<Pool>, Key)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("dst", &self.dst).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Plain HTTP to `dst` (HTTP/2 with prior knowledge when `h2`, as the
    /// agent speaks it): a pooled connection, else one connected on the
    /// first request policy allows.
    pub fn plain(dst: SocketAddr, limit: Duration, pool: Arc<Pool>, h2: bool) -> Self {
        let key = Key { dst, name: None, h2 };
        let pooled = pool.take(&key);
        Upstream {
            dst,
            limit,
            dial: Dial::Plain { h2 },
            first: SyncMutex::new(None),
            sender: Mutex::new(pooled),
            pool: Some((pool, key)),
        }
    }

    /// TLS to `dst` for `name`, starting with `start`: the connection the
    /// handshake made, or one from the pool.
    pub fn tls(
        start: Start,
        h2: bool,
        dst: SocketAddr,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
        limit: Duration,
        pool: Arc<Pool>,
    ) -> Self {
        let key = Key { dst, name: Some(name.to_str().into_owned()), h2 };
        let (first, sender) = match start {
            Start::Handshake(tls) => (Some(*tls), None),
            Start::Pooled(sender) => (None, Some(sender)),
        };
        Upstream {
            dst,
            limit,
            dial: Dial::Tls { name, config, h2 },
            first: SyncMutex::new(first),
            sender: Mutex::new(sender),
            pool: Some((pool, key)),
        }
    }

    /// How to make another upstream like this one, for requests that must
    /// not queue behind this connection's (MCP the gateway routes itself).
    pub fn recipe(&self) -> Recipe {
        Recipe { dst: self.dst, limit: self.limit, dial: self.dial.clone(), pool: self.pool.clone() }
    }

    /// Every request fails with `reason` (a `502`).
    pub fn failed(reason: String) -> Self {
        let dst = SocketAddr::from(([0, 0, 0, 0], 0));
        Upstream {
            dst,
            limit: Duration::ZERO,
            dial: Dial::Failed(reason),
            first: SyncMutex::new(None),
            sender: Mutex::new(None),
            pool: None,
        }
    }

    /// Why every request fails, if it does.
    pub fn failure(&self) -> Option<&str> {
        match &self.dial {
            Dial::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Sends one request and returns the response head (the body streams).
    /// The error is the reason for the agent's `502`.
    pub async fn send(&self, request: Request<ProxyBody>) -> Result<Response, String> {
        let mut slot = self.sender.lock().await;
        let mut fresh = false;
        if slot.as_ref().is_none_or(Sender::is_closed) {
            *slot = Some(self.open().await?);
            fresh = true;
        }
        let request = match self.try_send(&mut slot, request).await {
            Ok(response) => return Ok(response),
            // Never started on a connection that had been idle: the
            // upstream closed it in the meantime. Once more, fresh.
            Err(Failed { unsent: Some(request), .. }) if !fresh => request,
            Err(Failed { why, .. }) => return Err(why),
        };
        *slot = Some(self.open().await?);
        self.try_send(&mut slot, request).await.map_err(|failed| failed.why)
    }

    async fn try_send(
        &self,
        slot: &mut tokio::sync::MutexGuard<'_, Option<Sender>>,
        request: Request<ProxyBody>,
    ) -> Result<Response, Failed> {
        let failed = |mut e: TrySendError<Request<ProxyBody>>| {
            let why = self.error(e.error());
            Failed { unsent: e.take_message(), why }
        };
        match slot.as_mut() {
            Some(Sender::H1(sender)) => {
                // HTTP/1.1 is one request at a time: hold the slot until the
                // response head is back (the agent's side is sequential too).
                if let Err(e) = sender.ready().await {
                    return Err(Failed { why: self.error(&e), unsent: Some(request) });
                }
                sender.try_send_request(request).await.map_err(failed)
            }
            Some(Sender::H2(sender)) => {
                let mut sender = sender.clone();
                if let Err(e) = sender.ready().await {
                    return Err(Failed { why: self.error(&e), unsent: Some(request) });
                }
                sender.try_send_request(request).await.map_err(failed)
            }
            None => Err(Failed { why: format!("no connection to {}", self.dst), unsent: None }),
        }
    }

    fn error(&self, error: &hyper::Error) -> String {
        format!("upstream {}: {error}", self.dst)
    }

    async fn open(&self) -> Result<Sender, String> {
        let sender = match &self.dial {
            Dial::Failed(reason) => return Err(reason.clone()),
            Dial::Plain { h2 } => {
                let tcp = connect_upstream(self.dst, self.limit).await.map_err(|e| e.to_string())?;
                handshake(TokioIo::new(tcp), *h2).await?
            }
            Dial::Tls { name, config, h2 } => {
                let first = self.first.lock().ok().and_then(|mut first| first.take());
                let tls = match first {
                    Some(tls) => tls,
                    None => tls_connect(Arc::clone(config), name.clone(), self.dst, self.limit).await?,
                };
                handshake(TokioIo::new(tls), *h2).await?
            }
        };
        // HTTP/2 is shared from the start: other agent connections to the
        // same host multiplex onto it.
        if let (Sender::H2(h2), Some((pool, key))) = (&sender, &self.pool) {
            pool.put(key.clone(), Sender::H2(h2.clone()));
        }
        Ok(sender)
    }
}

impl Drop for Upstream {
    /// An HTTP/1.1 connection whose last response was read to the end goes
    /// back to the pool for the next agent connection.
    fn drop(&mut self) {
        if let (Some(sender), Some((pool, key))) = (self.sender.get_mut().take(), self.pool.take()) {
            pool.put(key, sender);
        }
    }
}

/// An upstream's destination, verification and protocol, without its
/// connection.
#[derive(Clone)]
pub(super) struct Recipe {
    dst: SocketAddr,
    limit: Duration,
    dial: Dial,
    pool: Option<(Arc<Pool>, Key)>,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe").field("dst", &self.dst).finish_non_exhaustive()
    }
}

impl Recipe {
    /// A connection from the pool, else one dialled on first use.
    pub fn upstream(&self) -> Upstream {
        let pooled = self.pool.as_ref().and_then(|(pool, key)| pool.take(key));
        Upstream {
            dst: self.dst,
            limit: self.limit,
            dial: self.dial.clone(),
            first: SyncMutex::new(None),
            sender: Mutex::new(pooled),
            pool: self.pool.clone(),
        }
    }
}

/// Why a request failed, with the request itself when none of it was sent.
struct Failed {
    unsent: Option<Request<ProxyBody>>,
    why: String,
}

/// How a TLS upstream starts.
pub(super) enum Start {
    /// The connection the upstream-first handshake made.
    Handshake(Box<UpstreamStream>),
    /// A connection from the pool, already verified for the same name.
    Pooled(Sender),
}

async fn handshake<IO>(io: TokioIo<IO>, h2: bool) -> Result<Sender, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream h2 connection ended");
            }
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(Sender::H1(sender))
    }
}
