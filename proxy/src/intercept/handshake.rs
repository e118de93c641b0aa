//! The two TLS handshakes of an intercepted connection: upstream first
//! (real verification, ALPN narrowed to what the client offered), then the
//! agent's, with a leaf for its SNI (or the original IP) and exactly the
//! protocol the upstream chose. An agent that offers only HTTP/1.1 speaks
//! it whatever the upstream chooses: then both handshakes run at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::server::{Acceptor, ServerConfig};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::readahead::ReadAhead;

use super::exchange;
use super::pool::{Key, Sender};
use super::upstream::{Start, Upstream};
use super::{Conn, Prefixed};
use crate::forward::connect_upstream;
use crate::tls::LeafName;

pub(crate) const H2: &[u8] = b"h2";
pub(crate) const HTTP11: &[u8] = b"http/1.1";

/// Upstream verification: one client config per ALPN offer Bridle makes.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    both: Arc<ClientConfig>,
    http11: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Verifies upstream certificates against `roots` (the system bundle,
    /// or a configured one).
    pub fn new(roots: RootCertStore) -> Self {
        let roots = Arc::new(roots);
        let config = |alpn: &[&[u8]]| {
            let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(Arc::clone(&roots)).with_no_client_auth())
                // The ring provider supports the default versions; a failure
                // here is a build defect, so fall back to rustls' defaults.
                .unwrap_or_else(|_| {
                    ClientConfig::builder().with_root_certificates(Arc::clone(&roots)).with_no_client_auth()
                });
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        UpstreamTls { both: config(&[H2, HTTP11]), http11: config(&[HTTP11]), h2: config(&[H2]) }
    }

    fn for_offer(&self, offer: &Offer) -> Arc<ClientConfig> {
        match offer {
            Offer::Both => Arc::clone(&self.both),
            Offer::Http11 => Arc::clone(&self.http11),
            Offer::H2 => Arc::clone(&self.h2),
            // Rare (IMAPS, SMTPS, databases): a config of its own.
            Offer::Other(alpn) => {
                let mut config = (*self.http11).clone();
                config.alpn_protocols.clone_from(alpn);
                Arc::new(config)
            }
        }
    }
}

/// What Bridle offers upstream: the client's HTTP offers, nothing else;
/// or, for TLS that offers no HTTP protocol, exactly the client's list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Offer {
    Both,
    Http11,
    H2,
    /// Not declared HTTP: decrypted anyway, then looked at (see `serve`).
    Other(Vec<Vec<u8>>),
}

/// The client's ALPN offer, narrowed to HTTP where it names HTTP.
fn offer(alpn: Option<Vec<Vec<u8>>>, port: u16) -> Offer {
    let Some(alpn) = alpn else {
        // No ALPN at all: HTTPS clients on 443 that predate ALPN; anything
        // else may or may not be HTTP (decrypted, then looked at).
        return if port == 443 { Offer::Http11 } else { Offer::Other(Vec::new()) };
    };
    let h2 = alpn.iter().any(|p| p == H2);
    let h1 = alpn.iter().any(|p| p == HTTP11);
    match (h2, h1) {
        (true, true) => Offer::Both,
        (true, false) => Offer::H2,
        (false, true) => Offer::Http11,
        (false, false) => Offer::Other(alpn),
    }
}

/// The ALPN list of a complete ClientHello, read with a throwaway rustls
/// acceptor (detection already proved the hello complete and well formed).
fn client_alpn(hello: &[u8]) -> Result<Option<Vec<Vec<u8>>>, String> {
    let mut acceptor = Acceptor::default();
    let mut bytes = hello;
    while !bytes.is_empty() {
        acceptor.read_tls(&mut bytes).map_err(|e| e.to_string())?;
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            Ok(accepted.client_hello().alpn().map(|protocols| protocols.map(<[u8]>::to_vec).collect()))
        }
        Ok(None) => Err("incomplete ClientHello".into()),
        Err((error, _)) => Err(error.to_string()),
    }
}

/// Intercepts one TLS connection; returns it untouched when it is not HTTP.
pub(super) async fn serve(conn: Conn, client: TcpStream, first: Vec<u8>) -> Option<(TcpStream, Vec<u8>)> {
    let alpn = match client_alpn(&first) {
        Ok(alpn) => alpn,
        Err(error) => {
            // Detection's parser accepted it, rustls does not (duplicate
            // extensions, say): the connection was permitted and would
            // otherwise just vanish from the record.
            tracing::debug!(%error, "ClientHello rustls refuses");
            conn.decider.notice("warn", format!("ClientHello to {} refused by rustls: {error}; closed", conn.dst));
            return None;
        }
    };
    let offer = offer(alpn, conn.dst.port());
    let opaque = matches!(offer, Offer::Other(_));
    let limit = conn.inspector.handshake_timeout;
    let name = upstream_name(conn.sni.as_deref(), conn.dst);
    // A connection verified for this destination and name before saves
    // the upstream handshake; the agent is offered its protocol.
    if let Some((sender, h2)) = from_pool(&conn, &name, &offer) {
        let chosen = if h2 { H2 } else { HTTP11 };
        let agent = accept_agent(&conn, client, first, Some(chosen.to_vec()), limit).await?;
        let upstream = upstream_tls(&conn, Start::Pooled(sender), h2, name, limit);
        exchange::serve(conn, agent, upstream, h2).await;
        return None;
    }
    let (upstream, agent, h2) = if offer == Offer::Http11 {
        // The agent speaks HTTP/1.1 whatever the upstream answers, so its
        // handshake (and the leaf's mint) need not wait for the upstream's.
        let upstream = connect(&conn, name.clone(), &offer, limit);
        let agent = accept_agent(&conn, client, first, Some(HTTP11.to_vec()), limit);
        let (upstream, agent) = tokio::join!(upstream, agent);
        (upstream, agent?, false)
    } else {
        let upstream = connect(&conn, name.clone(), &offer, limit).await;
        let chosen = match &upstream {
            Ok(tls) => tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
            // Not HTTP and no upstream: nothing to answer with.
            Err(reason) if opaque => {
                conn.decider.notice("warn", format!("TLS to {}: {reason}; closed", conn.dst));
                return None;
            }
            // The agent still gets a handshake, and then a 502 with the reason.
            Err(_) => Some(HTTP11.to_vec()),
        };
        let agent = accept_agent(&conn, client, first, chosen.clone(), limit).await?;
        if opaque && let Ok(tls) = upstream {
            return not_declared_http(conn, agent, tls, name, limit).await;
        }
        (upstream, agent, chosen.as_deref() == Some(H2))
    };
    let upstream = match upstream {
        Ok(tls) => upstream_tls(&conn, Start::Handshake(Box::new(tls)), h2, name, limit),
        Err(reason) => Upstream::failed(reason),
    };
    exchange::serve(conn, agent, upstream, h2).await;
    None
}

/// The upstream side of an intercepted TLS connection, speaking `h2` or
/// HTTP/1.1. Reconnects (an upstream closing a keep-alive connection) ask
/// for the protocol the agent already speaks, nothing else.
fn upstream_tls(conn: &Conn, start: Start, h2: bool, name: ServerName<'static>, limit: Duration) -> Upstream {
    let again = conn.inspector.upstream.for_offer(if h2 { &Offer::H2 } else { &Offer::Http11 });
    Upstream::tls(start, h2, conn.dst, name, again, limit, Arc::clone(&conn.inspector.pool))
}

/// An HTTP connection in the pool for this destination, name and a
/// protocol the agent offered (HTTP/2 preferred, as upstreams choose).
fn from_pool(conn: &Conn, name: &ServerName<'static>, offer: &Offer) -> Option<(Sender, bool)> {
    let take = |h2: bool| {
        let key = Key { dst: conn.dst, name: Some(name.to_str().into_owned()), h2 };
        conn.inspector.pool.take(&key).map(|sender| (sender, h2))
    };
    match offer {
        Offer::Both => take(true).or_else(|| take(false)),
        Offer::H2 => take(true),
        Offer::Http11 => take(false),
        Offer::Other(_) => None,
    }
}

/// The agent's handshake: a leaf for its SNI (or the original IP),
/// offering exactly `chosen`.
async fn accept_agent(
    conn: &Conn,
    client: TcpStream,
    first: Vec<u8>,
    chosen: Option<Vec<u8>>,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>> {
    let leaf_name = conn.sni.clone().map_or(LeafName::Ip(conn.dst.ip()), LeafName::Dns);
    let leaf = match conn.inspector.leaves.certified_key(&leaf_name) {
        Ok(leaf) => leaf,
        Err(error) => {
            tracing::error!(%error, "cannot mint a leaf certificate");
            return None;
        }
    };
    let mut server = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(leaf)));
    // Exactly the upstream's choice; none when it chose none (HTTP/1.1).
    server.alpn_protocols = chosen.iter().cloned().collect();
    let accepted = timeout(limit, async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), Prefixed::new(first, client)).await?;
        server.ignore_client_order = crate::tls::provider::prefers_own_order(start.client_hello().cipher_suites());
        start.into_stream(Arc::new(server)).await
    })
    .await;
    match accepted {
        Ok(Ok(agent)) => Some(agent),
        Ok(Err(error)) => {
            // Typically a client that does not trust Bridle's CA.
            tracing::info!(%error, "agent TLS handshake failed");
            conn.decider.notice("warn", format!("TLS handshake with the agent failed for {}: {error}", conn.dst));
            None
        }
        Err(_) => {
            // A client that stalls mid-handshake (or sends bytes rustls
            // waits on forever) is cut off here; say so, as for a failure.
            conn.decider
                .notice("warn", format!("TLS handshake with the agent for {} timed out after {limit:?}", conn.dst));
            None
        }
    }
}

/// TLS that named no HTTP protocol is still decrypted (an agent must not
/// get past per-request policy by leaving ALPN out): HTTP inside is served
/// like any intercepted HTTP/1.1; anything else (IMAPS, SMTPS, databases) is
/// relayed between the two TLS sessions, audited as not inspected.
async fn not_declared_http(
    conn: Conn,
    mut agent: tokio_rustls::server::TlsStream<Prefixed<TcpStream>>,
    mut upstream: UpstreamStream,
    name: ServerName<'static>,
    limit: Duration,
) -> Option<(TcpStream, Vec<u8>)> {
    use crate::detect::{Protocol, detect, detect_after};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let limits = crate::detect::DetectLimits { window: conn.inspector.body_wait, max_bytes: 64 * 1024 };
    let Ok(mut inside) = detect(&mut agent, limits).await else { return None };
    let mut greeting = Vec::new();
    if inside.protocol == Protocol::ServerSpeaksFirst {
        // Silence is no proof of a protocol whose server speaks first
        // (IMAPS, SMTPS): the agent may wait out the window and then send
        // HTTP. Whoever speaks first says which (both reads are cancel
        // safe: what the other side sent stays in its TLS session).
        let (mut theirs, mut ours) = (vec![0; 16 * 1024], vec![0; 16 * 1024]);
        let idle = conn.inspector.idle_timeout;
        let first = timeout(crate::forward::idle_wait(idle), async {
            tokio::select! {
                read = upstream.read(&mut theirs) => read.map(|n| (true, n)),
                read = agent.read(&mut ours) => read.map(|n| (false, n)),
            }
        })
        .await;
        match first {
            Ok(Ok((true, n))) if n > 0 => greeting = theirs[..n].to_vec(),
            Ok(Ok((false, n))) if n > 0 => match detect_after(ours[..n].to_vec(), &mut agent, limits).await {
                Ok(late) => inside = late,
                Err(_) => return None,
            },
            _ => {
                let message = format!("TLS to {}: neither side spoke within {idle:?}; closed", conn.dst);
                conn.decider.notice("info", message);
                return None;
            }
        }
    }
    match inside.protocol {
        Protocol::Http { .. } => {
            let upstream = upstream_tls(&conn, Start::Handshake(Box::new(upstream)), false, name, limit);
            let mut first = inside.bytes;
            first.drain(..crate::detect::leading_blank_lines(&first));
            exchange::serve(conn, Prefixed::new(first, agent), upstream, false).await;
        }
        // The upstream took no h2 by ALPN: nothing to carry it on.
        Protocol::H2c => {
            conn.decider.notice("warn", format!("TLS to {}: HTTP/2 without ALPN inside; closed", conn.dst));
        }
        // A first line that could still become a request: not relayed
        // blind between the two sessions.
        Protocol::FirstLine => {
            let message = format!("TLS to {}: a first line inside that could start a request; closed", conn.dst);
            conn.decider.notice("warn", message);
        }
        Protocol::Malformed { reason, .. } => {
            conn.decider.notice("warn", format!("TLS to {}: malformed data inside ({reason}); closed", conn.dst));
        }
        _ => {
            let name = conn.sni.as_deref().unwrap_or("no SNI");
            conn.decider.notice(
                "info",
                format!(
                    "TLS to {} ({name}) decrypted, not HTTP: relayed between the two TLS sessions, not inspected",
                    conn.dst
                ),
            );
            if agent.write_all(&greeting).await.is_ok() && upstream.write_all(&inside.bytes).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await;
            }
        }
    }
    None
}

/// SNI as the agent sent it, else the original IP.
fn upstream_name(sni: Option<&str>, dst: SocketAddr) -> ServerName<'static> {
    sni.and_then(|s| ServerName::try_from(s.to_string()).ok()).unwrap_or_else(|| ServerName::from(dst.ip()))
}

/// TCP to the original destination, then TLS with verification. The error
/// is the reason the agent's `502` carries.
async fn connect(
    conn: &Conn,
    name: ServerName<'static>,
    offer: &Offer,
    limit: Duration,
) -> Result<UpstreamStream, String> {
    let config = conn.inspector.upstream.for_offer(offer);
    tls_connect(config, name, conn.dst, limit).await
}

/// A verified TLS connection upstream; its reads are batched.
pub(super) type UpstreamStream = TlsStream<ReadAhead<TcpStream>>;

/// One verified TLS connection to `dst` for `name`.
pub(super) async fn tls_connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    dst: SocketAddr,
    limit: Duration,
) -> Result<UpstreamStream, String> {
    let tcp = connect_upstream(dst, limit).await.map_err(|e| e.to_string())?;
    let shown = format!("{name:?}");
    match timeout(limit, TlsConnector::from(config).connect(name, ReadAhead::new(tcp))).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(error)) => Err(describe(&error, &shown, dst)),
        Err(_) => Err(format!("TLS handshake with {dst} timed out after {limit:?}")),
    }
}

fn describe(error: &io::Error, name: &str, dst: SocketAddr) -> String {
    let inner = error.get_ref().map_or_else(|| error.to_string(), ToString::to_string);
    format!("upstream {dst} ({name}) failed TLS verification or handshake: {inner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_keeps_only_http_and_passes_other_protocols_on() {
        let alpn = |l: &[&[u8]]| Some(l.iter().map(|p| p.to_vec()).collect());
        assert_eq!(offer(alpn(&[H2, HTTP11]), 443), Offer::Both);
        assert_eq!(offer(alpn(&[HTTP11]), 8443), Offer::Http11);
        assert_eq!(offer(alpn(&[b"h3", H2]), 443), Offer::H2);
        assert_eq!(offer(alpn(&[b"imap"]), 993), Offer::Other(vec![b"imap".to_vec()]));
        assert_eq!(offer(None, 443), Offer::Http11);
        assert_eq!(offer(None, 465), Offer::Other(Vec::new()));
    }

    #[test]
    fn recorded_client_hellos_give_their_alpn() {
        let curl = include_bytes!("../../testdata/curl-allowed.test.bin");
        let alpn = client_alpn(curl).expect("parses");
        assert!(alpn.is_some_and(|a| a.iter().any(|p| p == HTTP11)));
    }
}
