//! Stage 4, inspected: terminate the agent's TLS with a leaf minted by
//! Bridle's CA (or read its plain HTTP), connect to the original destination
//! with real certificate verification, and decide every HTTP request on its
//! own before it is forwarded.
//!
//! Per connection: the ClientHello's ALPN offer is narrowed to what Bridle
//! speaks (h2, http/1.1) and offered upstream first; the client is then
//! offered exactly what the upstream chose, so both sides speak the same
//! HTTP version and requests map one to one. A client that offers no HTTP
//! ALPN (and is not on 443) is not HTTP: its connection stays spliced.
//!
//! Upstream connections ([`pool`]) are kept across agent connections,
//! keyed by destination, verified name and protocol, so a new agent
//! connection to a known host skips the upstream handshake.
//!
//! Per request ([`exchange`]): host agreement (SNI = Host = :authority, else
//! domain fronting), the first bytes of the body (bounded) for git
//! receive-pack refs, package publishing and leak scanning, one
//! `http.request` decision, then `403` or forwarding with the body streamed
//! (scanned as it goes) and the response streamed back. A request that
//! carries MCP ([`mcp`]) goes on through the MCP gateway's inline
//! sessions, which decide each JSON-RPC message in it. After an allowed
//! upgrade ([`upgraded`]), what the agent sends is scanned for leaks
//! (WebSocket frames unmasked) before it is forwarded.
//!
//! Must never: connect anywhere but the original destination, accept an
//! upstream certificate that does not verify (that is a `502`, never a
//! downgrade), buffer a whole body, or let a real secret value reach an
//! event or a log.

mod body;
mod exchange;
mod handshake;
mod mcp;
mod partial;
mod pool;
mod prefixed;
mod readahead;
mod reflected;
mod respond;
mod upgraded;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridle_mcp_gateway::http::Inline;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpStream;

use crate::decide::Decider;
use crate::http::scan::Canaries;
use crate::http::secrets::Secrets;
use crate::origin::{OriginalDestinations, names_address};
use crate::tls::LeafCache;

pub use handshake::UpstreamTls;
pub use pool::Pool;
pub(crate) use prefixed::Prefixed;

/// Errors inside bodies (ours and hyper's), boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body this stage sends either way.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// What inspection needs, shared by every connection of a proxy.
#[derive(Debug)]
pub struct Inspector {
    /// Leaves for the agent, minted by Bridle's CA.
    pub leaves: Arc<LeafCache>,
    /// Verification of upstream certificates.
    pub upstream: UpstreamTls,
    /// Credentials injected per host; their placeholders are policed.
    pub secrets: Option<Arc<Secrets>>,
    /// Honeytoken values that must never leave.
    pub canaries: Canaries,
    /// How much of a request body is read before the decision.
    pub body_window: usize,
    /// How long the decision waits for that much body.
    pub body_wait: Duration,
    /// Upstream TCP connect and TLS handshake bound; also the client's
    /// handshake bound.
    pub handshake_timeout: Duration,
    /// An HTTP/1.1 request head must arrive within this (slowloris); it
    /// runs from when the connection is ready for the next request, so it
    /// also bounds how long an idle keep-alive connection is held.
    pub header_timeout: Duration,
    /// How long decrypted TLS that is not HTTP waits for either side to
    /// speak first (zero: as long as it takes), as the plain relay does.
    pub idle_timeout: Duration,
    /// Upstream connections reused across agent connections.
    pub pool: Arc<Pool>,
    /// MCP found in requests is decided message by message here; without
    /// it such requests are decided as HTTP only.
    pub mcp: Option<Arc<Inline>>,
}

impl Inspector {
    /// Defaults: 64 KiB body window, 2 s to fill it, 10 s handshakes, 30 s
    /// for a request head, 10 min for a first word.
    pub fn new(leaves: Arc<LeafCache>, upstream: UpstreamTls) -> Self {
        Inspector {
            leaves,
            upstream,
            secrets: None,
            canaries: Canaries::none(),
            body_window: 64 * 1024,
            body_wait: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            pool: Arc::new(Pool::default()),
            mcp: None,
        }
    }
}

/// One intercepted connection's fixed facts.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub inspector: Arc<Inspector>,
    pub decider: Arc<Decider>,
    /// The original destination: the only place requests go.
    pub dst: SocketAddr,
    /// The agent process that connected, where the redirector knows it.
    pub pid: Option<u32>,
    /// The ClientHello's server name (TLS only).
    pub sni: Option<String>,
    pub tls: bool,
    /// The names Bridle's resolver answered: a plain-HTTP request's Host
    /// must be one of `dst`'s (nothing else ties it to the address).
    pub names: Names,
    /// The hosts proven on this connection (the Host it was decided on,
    /// then each request's once proven): later requests naming one need
    /// not be proven again (its DNS answer may expire while the connection
    /// lives: a gRPC channel over h2c). At most [`PROVEN_HOSTS`].
    pub proven: Arc<std::sync::Mutex<Vec<String>>>,
}

/// How many proven hosts one connection remembers.
const PROVEN_HOSTS: usize = 64;

impl Conn {
    /// Why a plain-HTTP request's `host` is not a name of the address the
    /// agent dialled, or `None` when it is.
    pub(crate) fn unproven_host(&self, host: &str) -> Option<String> {
        let ip = self.dst.ip();
        let mut proven = self.proven.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if proven.iter().any(|known| known == host) {
            return None;
        }
        if !names_address(self.names.0.as_ref(), ip, host) {
            return Some(format!("Host {host:?} is not a name Bridle's resolver answered with {ip}"));
        }
        if proven.len() < PROVEN_HOSTS {
            proven.push(host.to_owned());
        }
        None
    }
}

/// Whether an intercepted connection's upstream certificate is checked for
/// `sni` itself: only a name rustls takes as a DNS name is. Any other
/// (`-x.example.com`, a label rustls refuses) has the upstream verified for
/// the bare IP, and then the SNI proves nothing about the host.
pub(crate) fn checked_sni(sni: &str) -> bool {
    matches!(rustls::pki_types::ServerName::try_from(sni), Ok(rustls::pki_types::ServerName::DnsName(_)))
}

/// The proxy's source of destinations and resolved names, as a connection
/// sees it.
#[derive(Clone)]
pub struct Names(pub Arc<dyn OriginalDestinations>);

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names")
    }
}

/// Serves a plain-HTTP connection whose request head detection read.
pub(crate) async fn serve_plain(conn: Conn, client: TcpStream, first: Vec<u8>, h2: bool) {
    let io = Prefixed::new(first, client);
    let pool = Arc::clone(&conn.inspector.pool);
    let upstream = upstream::Upstream::plain(conn.dst, conn.inspector.handshake_timeout, pool, h2);
    exchange::serve(conn, io, upstream, h2).await;
}

/// Serves a TLS connection whose ClientHello detection read. Returns the
/// client back only if it ever has to be spliced as it is (today: never;
/// `@passthrough` is decided before this).
pub(crate) async fn serve_tls(conn: Conn, client: TcpStream, first: Vec<u8>) -> Option<(TcpStream, Vec<u8>)> {
    handshake::serve(conn, client, first).await
}

#[cfg(test)]
mod tests {
    use super::checked_sni;

    #[test]
    fn only_an_sni_rustls_takes_as_a_dns_name_is_checked_upstream() {
        assert!(checked_sni("api.allowed.test"));
        assert!(checked_sni("xn--bcher-kva.example"));
        // Detection accepts these; rustls does not, and would verify the
        // upstream for the bare IP instead.
        assert!(!checked_sni("-x.allowed.test"));
        assert!(!checked_sni("x-.allowed.test"));
        assert!(!checked_sni("198.51.100.7"));
    }
}
