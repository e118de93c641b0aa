//! The gateway's client for one configured server: where it is (its URL,
//! parsed once), how to reach it (TCP, or TLS verified against the roots
//! the process was given), the headers the configuration adds, and a small
//! pool of idle keep-alive HTTP/1.1 connections.
//!
//! A connection goes back to the pool only once its response body has been
//! read to the end ([`Pooled`]), so a pooled connection is always idle; a
//! long event stream simply keeps its own connection.
//!
//! A connection has no task of its own: whoever waits on it (the request,
//! then the reader of its response body) drives it. A call then runs in
//! the client's task from its request to its answer; a hand-off to a
//! connection task and back cost more than the rest of the call.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::GatewayError;

/// Idle connections kept per server.
const MAX_IDLE: usize = 32;

type Sender = SendRequest<Full<Bytes>>;
type Idle = Arc<Mutex<Vec<Connection>>>;

/// One server's endpoint and connections.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// `scheme://authority`, for messages.
    origin: String,
    authority: HeaderValue,
    host: String,
    port: u16,
    path: PathAndQuery,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    headers: HeaderMap,
    connect_timeout: Duration,
    idle: Idle,
}

/// Why a request did not get a response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to {origin}: {reason}")]
    Connect { origin: String, reason: String },
    #[error("{origin} did not accept the connection within {timeout:?}")]
    Timeout { origin: String, timeout: Duration },
    #[error("{origin} broke off the request: {reason}")]
    Request { origin: String, reason: String },
}

impl Upstream {
    /// Parses `url` (already checked by the config) and the configured
    /// headers; `roots` verify an `https` server.
    pub fn new(
        name: &str,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        roots: Option<&RootCertStore>,
        connect_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let bad = |reason: String| GatewayError::ServerUrl { server: name.to_string(), url: url.to_string(), reason };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let authority = uri.authority().ok_or_else(|| bad("no host".into()))?.clone();
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(bad("the scheme must be http or https".into())),
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots = roots.ok_or_else(|| bad("https needs trust roots, and none were loaded".into()))?;
            let name = ServerName::try_from(host.clone()).map_err(|e| bad(e.to_string()))?;
            Some((client_config(roots), name))
        } else {
            None
        };
        let mut extra = HeaderMap::new();
        for (key, value) in headers {
            let key = HeaderName::try_from(key.as_str()).map_err(|e| bad(format!("header {key}: {e}")))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| bad(format!("header {key}: {e}")))?;
            extra.insert(key, value);
        }
        Ok(Upstream {
            origin: format!("{}://{authority}", if https { "https" } else { "http" }),
            authority: HeaderValue::try_from(authority.as_str()).map_err(|e| bad(e.to_string()))?,
            host,
            port,
            path: uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
            tls,
            headers: extra,
            connect_timeout,
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// `scheme://authority` of the server.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The configured URL's path and query.
    pub fn path(&self) -> &PathAndQuery {
        &self.path
    }

    /// Sends one request to `path` (the configured one when `None`) with
    /// `headers` plus the configured ones (which win); the body streams.
    pub async fn send(
        &self,
        method: Method,
        path: Option<&PathAndQuery>,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Pooled>, UpstreamError> {
        for (key, value) in &self.headers {
            headers.insert(key.clone(), value.clone());
        }
        headers.insert(header::HOST, self.authority.clone());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = Uri::from(path.unwrap_or(&self.path).clone());
        *request.headers_mut() = headers;
        let broke = |e: hyper::Error| UpstreamError::Request { origin: self.origin.clone(), reason: e.to_string() };
        let (mut connection, pooled) = self.connection().await?;
        let response = match connection.send(request).await {
            Ok(response) => response,
            // A pooled connection the server closed just as it was taken:
            // the request never left, so a new connection may carry it.
            Err(mut failed) if pooled && failed.message().is_some() => {
                let Some(request) = failed.take_message() else { return Err(broke(failed.into_error())) };
                connection = self.fresh().await?;
                connection.send(request).await.map_err(TrySendError::into_error).map_err(broke)?
            }
            Err(failed) => return Err(broke(failed.into_error())),
        };
        let pool = Arc::downgrade(&self.idle);
        Ok(response.map(|body| Pooled { body, connection: Some(connection), pool }))
    }

    /// An idle pooled connection that is still open (and `true`), else a new one.
    async fn connection(&self) -> Result<(Connection, bool), UpstreamError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut connection) = idle else { break };
            // The server may have closed it while it sat idle.
            if connection.ready().await {
                return Ok((connection, true));
            }
        }
        Ok((self.fresh().await?, false))
    }

    async fn fresh(&self) -> Result<Connection, UpstreamError> {
        match tokio::time::timeout(self.connect_timeout, self.dial()).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { origin: self.origin.clone(), timeout: self.connect_timeout }),
        }
    }

    async fn dial(&self) -> Result<Connection, UpstreamError> {
        let failed = |reason: String| UpstreamError::Connect { origin: self.origin.clone(), reason };
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| failed(e.to_string()))?;
        // Small JSON-RPC messages must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let (sender, driver) = match &self.tls {
            None => {
                let (sender, driver) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| failed(e.to_string()))?;
                (sender, Driver::Plain(Box::new(driver)))
            }
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| failed(e.to_string()))?;
                let (sender, driver) = http1::handshake(TokioIo::new(tls)).await.map_err(|e| failed(e.to_string()))?;
                (sender, Driver::Tls(Box::new(driver)))
            }
        };
        Ok(Connection::open(sender, driver))
    }
}

/// One HTTP/1.1 connection to the server: the handle requests go in by,
/// and the connection itself, driven by whoever waits on it.
struct Connection {
    sender: Sender,
    driver: Driver,
}

enum Driver {
    Plain(Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>),
    Tls(Box<http1::Connection<TokioIo<TlsStream<TcpStream>>, Full<Bytes>>>),
    /// Closed by the server, or broken. Dropping hyper's connection fails
    /// whatever still waits on it, so nothing hangs.
    Ended,
}

impl Driver {
    /// Reads and writes what it can; `Ready` once the connection ended.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let ended = match self {
            Driver::Plain(driver) => ready!(driver.poll_without_shutdown(cx)),
            Driver::Tls(driver) => ready!(driver.poll_without_shutdown(cx)),
            Driver::Ended => return Poll::Ready(()),
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "MCP upstream connection ended");
        }
        *self = Driver::Ended;
        Poll::Ready(())
    }
}

impl Connection {
    fn open(sender: Sender, driver: Driver) -> Self {
        Connection { sender, driver }
    }

    /// Whether it can take a request (false: the server closed it).
    async fn ready(&mut self) -> bool {
        let Connection { sender, driver } = self;
        let mut want = std::pin::pin!(sender.ready());
        poll_fn(|cx| {
            // First what happened while it sat idle (the server closing it).
            if driver.poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            want.as_mut().poll(cx).map(|result| result.is_ok())
        })
        .await
    }

    /// Sends `request` and waits for the response head, driving the
    /// connection meanwhile.
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Full<Bytes>>>> {
        let Connection { sender, driver } = self;
        let mut sending = std::pin::pin!(sender.try_send_request(request));
        poll_fn(|cx| {
            if let Poll::Ready(result) = sending.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            match driver.poll(cx) {
                Poll::Pending => Poll::Pending,
                // Its end failed the request: that is the answer now.
                Poll::Ready(()) => sending.as_mut().poll(cx),
            }
        })
        .await
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if matches!(self.driver, Driver::Ended) { "Connection(ended)" } else { "Connection" })
    }
}

/// Verifies servers against `roots`, HTTP/1.1 only (what the pool speaks).
fn client_config(roots: &RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots.clone()).with_no_client_auth())
        // The ring provider supports the default versions; failing here is
        // a build defect, so fall back to rustls' defaults.
        .unwrap_or_else(|_| ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A response body that returns its connection to the pool when read to
/// the end, and drives the connection while it is read. Dropped early,
/// the connection closes with it.
#[derive(Debug)]
pub(crate) struct Pooled {
    body: Incoming,
    connection: Option<Connection>,
    pool: Weak<Mutex<Vec<Connection>>>,
}

impl Pooled {
    fn give_back(&mut self) {
        let (Some(connection), Some(pool)) = (self.connection.take(), self.pool.upgrade()) else { return };
        if matches!(connection.driver, Driver::Ended) {
            return;
        }
        if let Ok(mut idle) = pool.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(connection);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(connection) = self.connection.as_mut() {
            // Pending unless it ended; either way the body says what came.
            let _ = connection.driver.poll(cx);
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
