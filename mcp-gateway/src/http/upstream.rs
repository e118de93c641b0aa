//! The gateway's client for one configured server: where it is (its URL,
//! parsed once), how to reach it (TCP, or TLS verified against the roots
//! the process was given), the headers the configuration adds, and a small
//! pool of idle keep-alive HTTP/1.1 connections.
//!
//! A connection goes back to the pool only once its response body has been
//! read to the end ([`Pooled`]), so a pooled connection is always idle; a
//! long event stream simply keeps its own connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use crate::GatewayError;

/// Idle connections kept per server.
const MAX_IDLE: usize = 32;

type Sender = SendRequest<Full<Bytes>>;

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
    idle: Arc<Mutex<Vec<Sender>>>,
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
        let (mut sender, pooled) = self.connection().await?;
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            // A pooled connection the server closed just as it was taken:
            // the request never left, so a new connection may carry it.
            Err(mut failed) if pooled && failed.message().is_some() => {
                let Some(request) = failed.take_message() else { return Err(broke(failed.into_error())) };
                sender = self.fresh().await?;
                sender.send_request(request).await.map_err(broke)?
            }
            Err(failed) => return Err(broke(failed.into_error())),
        };
        let pool = Arc::downgrade(&self.idle);
        Ok(response.map(|body| Pooled { body, sender: Some(sender), pool }))
    }

    /// An idle pooled connection that is still open (and `true`), else a new one.
    async fn connection(&self) -> Result<(Sender, bool), UpstreamError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut sender) = idle else { break };
            // The server may have closed it while it sat idle.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.fresh().await?, false))
    }

    async fn fresh(&self) -> Result<Sender, UpstreamError> {
        match tokio::time::timeout(self.connect_timeout, self.dial()).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { origin: self.origin.clone(), timeout: self.connect_timeout }),
        }
    }

    async fn dial(&self) -> Result<Sender, UpstreamError> {
        let failed = |reason: String| UpstreamError::Connect { origin: self.origin.clone(), reason };
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| failed(e.to_string()))?;
        // Small JSON-RPC messages must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(TokioIo::new(tcp)).await.map_err(failed),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| failed(e.to_string()))?;
                handshake(TokioIo::new(tls)).await.map_err(failed)
            }
        }
    }
}

async fn handshake<IO>(io: TokioIo<IO>) -> Result<Sender, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "MCP upstream connection ended");
        }
    });
    Ok(sender)
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
/// the end. Dropped early, the connection closes with it.
#[derive(Debug)]
pub(crate) struct Pooled {
    body: Incoming,
    sender: Option<Sender>,
    pool: Weak<Mutex<Vec<Sender>>>,
}

impl Pooled {
    fn give_back(&mut self) {
        let (Some(sender), Some(pool)) = (self.sender.take(), self.pool.upgrade()) else { return };
        if let Ok(mut idle) = pool.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(sender);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.sender = None,
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
