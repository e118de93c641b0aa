//! The upstream side of an intercepted connection: one HTTP connection to
//! the original destination (TLS verified, or plain), opened on first use
//! and reopened when the upstream closes a keep-alive connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

use super::ProxyBody;
use super::handshake::tls_connect;
use crate::forward::connect_upstream;

type Response = http::Response<Incoming>;

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

enum Dial {
    Plain,
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
    first: SyncMutex<Option<TlsStream<TcpStream>>>,
    sender: Mutex<Option<Sender>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("dst", &self.dst).finish_non_exhaustive()
    }
}

impl Upstream {
    /// Plain HTTP to `dst`, connected on the first request policy allows.
    pub fn plain(dst: SocketAddr, limit: Duration) -> Self {
        Upstream { dst, limit, dial: Dial::Plain, first: SyncMutex::new(None), sender: Mutex::new(None) }
    }

    /// TLS to `dst`, starting with the connection the handshake made.
    pub fn tls(
        stream: TlsStream<TcpStream>,
        h2: bool,
        dst: SocketAddr,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
        limit: Duration,
    ) -> Self {
        Upstream {
            dst,
            limit,
            dial: Dial::Tls { name, config, h2 },
            first: SyncMutex::new(Some(stream)),
            sender: Mutex::new(None),
        }
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
        if slot.as_ref().is_none_or(Sender::is_closed) {
            *slot = Some(self.open().await?);
        }
        match slot.as_mut() {
            Some(Sender::H1(sender)) => {
                // HTTP/1.1 is one request at a time: hold the slot until the
                // response head is back (the agent's side is sequential too).
                sender.ready().await.map_err(|e| self.error(&e))?;
                sender.send_request(request).await.map_err(|e| self.error(&e))
            }
            Some(Sender::H2(sender)) => {
                let mut sender = sender.clone();
                drop(slot);
                sender.ready().await.map_err(|e| self.error(&e))?;
                sender.send_request(request).await.map_err(|e| self.error(&e))
            }
            None => Err(format!("no connection to {}", self.dst)),
        }
    }

    fn error(&self, error: &hyper::Error) -> String {
        format!("upstream {}: {error}", self.dst)
    }

    async fn open(&self) -> Result<Sender, String> {
        match &self.dial {
            Dial::Failed(reason) => Err(reason.clone()),
            Dial::Plain => {
                let tcp = connect_upstream(self.dst, self.limit).await.map_err(|e| e.to_string())?;
                handshake(TokioIo::new(tcp), false).await
            }
            Dial::Tls { name, config, h2 } => {
                let first = self.first.lock().ok().and_then(|mut first| first.take());
                let tls = match first {
                    Some(tls) => tls,
                    None => tls_connect(Arc::clone(config), name.clone(), self.dst, self.limit).await?,
                };
                handshake(TokioIo::new(tls), *h2).await
            }
        }
    }
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
