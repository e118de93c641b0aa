//! The agent's side of the interception tests: TLS clients that trust
//! Bridle's CA and nothing else (as a guarded process does), hyper on top
//! for well-formed requests, raw writes for the malformed ones.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{Harness, PROMPT};

/// A client config trusting `roots`, offering `alpn`.
pub fn config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `dst` (as the redirector recorded it) for `sni`,
/// trusting Bridle's CA: the handshake completes only if Bridle
/// intercepted it with a leaf for `sni`.
pub async fn tls(h: &Harness, dst: SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = h.connect_to(dst).await;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let connect = TlsConnector::from(config(h.agent_roots(), alpn)).connect(name, tcp);
    tokio::time::timeout(PROMPT, connect).await.expect("handshake in time").expect("handshake with Bridle")
}

/// The first flight rustls sends for `sni` offering `alpn`: a real
/// ClientHello, to be followed by whatever a test wants.
pub fn client_hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut client = ClientConnection::new(config(RootCertStore::empty(), alpn), name).expect("client");
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).expect("write hello");
    }
    hello
}

/// An HTTP/1.1 client on `io`.
pub async fn h1<IO>(io: IO) -> http1::SendRequest<Empty<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.expect("h1 handshake");
    tokio::spawn(connection);
    sender
}

/// An h2 client on `io`.
pub async fn h2<IO>(io: IO) -> http2::SendRequest<Empty<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

/// One response: status, `x-bridle-reason` (if any) and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub reason_header: Option<String>,
    pub body: String,
}

impl Answer {
    /// The JSON body Bridle answers with (403, 502).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A `GET` for `https://allowed.test{path}` (the h1 client sends `Host`).
pub fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "allowed.test").body(Empty::new()).expect("request")
}

/// Sends `request` on an HTTP/1.1 connection and reads the whole answer.
pub async fn send_h1(sender: &mut http1::SendRequest<Empty<Bytes>>, request: Request<Empty<Bytes>>) -> Answer {
    let sent = async {
        sender.ready().await.expect("connection usable");
        sender.send_request(request).await.expect("response")
    };
    read(tokio::time::timeout(PROMPT, sent).await.expect("answer in time")).await
}

/// Reads a response head and body into an [`Answer`].
pub async fn read(response: http::Response<hyper::body::Incoming>) -> Answer {
    let status = response.status();
    let reason_header =
        response.headers().get("x-bridle-reason").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = tokio::time::timeout(PROMPT, response.into_body().collect()).await.expect("body in time");
    let body = String::from_utf8_lossy(&body.expect("body").to_bytes()).into_owned();
    Answer { status, reason_header, body }
}

/// Everything the proxy sends until it closes the connection (EOF, reset,
/// or TLS ending without close_notify all count as closed); panics if it
/// is still open after [`PROMPT`].
pub async fn until_closed<IO: AsyncRead + Unpin>(io: &mut IO) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PROMPT, read_all).await.expect("the proxy closes the connection");
    out
}

/// The status codes of the HTTP/1.1 responses in `raw`, in order, each
/// head followed past its `content-length` body (Bridle's and the test
/// upstreams' answers all carry one).
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let Some(status) = head.strip_prefix("http/1.1 ").and_then(|s| s.get(..3)?.parse().ok()) else { break };
        found.push(status);
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:")?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        rest = rest.get(end + 4 + length..).unwrap_or_default();
    }
    found
}
