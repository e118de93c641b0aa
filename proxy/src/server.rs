//! The proxy: one accept loop, one task per connection, and the stages of a
//! connection composed top to bottom in [`handle`]:
//! accept (original destination) → detect → decide → forward.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridle_engine::audit::AuditLog;
use bridle_engine::authorizer::Authorizer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument as _, field};

use crate::decide::{Decider, Naming, Verdict};
use crate::detect::{DetectLimits, Protocol, classify, detect};
use crate::error::{Error, Result};
use crate::forward::{PipePool, connect_upstream, idle_wait, splice};
use crate::intercept::{self, Conn, Inspector, Names};
use crate::origin::{Origin, OriginalDestinations, names_address};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How the proxy listens and how long each stage may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The listener the redirector sends guarded connections to.
    pub listen: SocketAddr,
    /// How long to wait for the client's first bytes (SNI/Host) before
    /// deciding as server-speaks-first; one deadline for the whole read.
    pub peek_timeout: Duration,
    /// How long connecting to the original destination may take.
    pub connect_timeout: Duration,
    /// Close a spliced connection when neither side sent anything this long
    /// (zero: never).
    pub idle_timeout: Duration,
    /// The most bytes read while detecting (ClientHello or HTTP head).
    pub max_header_bytes: usize,
    /// The most connections open at once (shared with the proxies bound
    /// [`alongside`](Proxy::alongside)); past it a new one is refused at
    /// once, so an agent opening connections without end exhausts neither
    /// Bridle's descriptors nor its memory, and the others are still served.
    pub max_connections: usize,
}

impl ProxyConfig {
    /// Defaults on `listen`: 1 s detection window (short, because
    /// server-speaks-first clients wait it out), 10 s connect, 10 min idle,
    /// 64 KiB of first bytes, 10,000 connections.
    pub fn new(listen: SocketAddr) -> Self {
        ProxyConfig {
            listen,
            peek_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
        }
    }
}

/// A bound proxy, ready to [`run`](Proxy::run).
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
}

/// What every connection task reads.
struct Shared {
    config: ProxyConfig,
    local: SocketAddr,
    session: String,
    origins: Arc<dyn OriginalDestinations>,
    decider: Arc<Decider>,
    pipes: PipePool,
    /// TLS interception and HTTP inspection; `None`: every permitted
    /// connection is spliced as it is.
    inspector: Option<Arc<Inspector>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).field("local", &self.local).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds the listener. Connections are decided as `Agent::"<principal>"`
    /// in `session` and audited to `audit` when given.
    pub async fn bind(
        config: ProxyConfig,
        origins: Arc<dyn OriginalDestinations>,
        authorizer: Arc<Authorizer>,
        audit: Option<Arc<AuditLog>>,
        session: &str,
        principal: &str,
    ) -> Result<Proxy> {
        let listener = crate::listen::relay_listener(config.listen)
            .map_err(|source| Error::Bind { addr: config.listen, source })?;
        let local = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;
        let decider = Arc::new(Decider::new(authorizer, audit, session, principal));
        let shared = Arc::new(Shared {
            config,
            local,
            session: session.to_string(),
            origins,
            decider,
            pipes: PipePool::new(),
            inspector: None,
        });
        let connections = Arc::new(Semaphore::new(shared.config.max_connections.min(Semaphore::MAX_PERMITS)));
        Ok(Proxy { listener, shared, connections })
    }

    /// Counts this proxy's connections against `other`'s limit: the IPv4
    /// and IPv6 listeners of one session hold one budget.
    pub fn alongside(mut self, other: &Proxy) -> Self {
        self.connections = Arc::clone(&other.connections);
        self
    }

    /// The address actually bound (the port, when `listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Intercepts TLS and inspects HTTP with `inspector`: every request is
    /// decided on its own (see [`crate::intercept`]).
    #[must_use]
    pub fn inspect(mut self, inspector: Arc<Inspector>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.inspector = Some(inspector);
        }
        self
    }

    /// The decider, for its counters.
    pub fn decider(&self) -> Arc<Decider> {
        Arc::clone(&self.shared.decider)
    }

    /// Accepts until `shutdown` resolves, then aborts the connections still
    /// open (their sockets close; nothing is left half-proxied).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        let mut over = Overflow::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((client, peer)) => match Arc::clone(&self.connections).try_acquire_owned() {
                        Ok(permit) => {
                            let shared = Arc::clone(&self.shared);
                            tasks.spawn(async move {
                                serve(shared, client, peer).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            refuse(client);
                            over.refused(&self.shared);
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(error) = joined {
                        tracing::error!(%error, "connection task failed");
                    }
                }
            }
        }
        tasks.shutdown().await;
    }
}

/// Connections refused at the limit, said at most once a minute.
#[derive(Default)]
struct Overflow {
    refused: u64,
    said: Option<tokio::time::Instant>,
}

impl Overflow {
    const EVERY: Duration = Duration::from_secs(60);

    fn refused(&mut self, shared: &Shared) {
        self.refused += 1;
        if self.said.is_some_and(|said| said.elapsed() < Self::EVERY) {
            return;
        }
        self.said = Some(tokio::time::Instant::now());
        let (max, refused) = (shared.config.max_connections, std::mem::take(&mut self.refused));
        shared.decider.notice(
            "warn",
            format!(
                "{refused} connection(s) refused: {max} are open ([proxy] max_connections); \
                 an agent opening connections without end, or a limit too low"
            ),
        );
    }
}

/// One connection, inside its span (peer, original destination, SNI).
async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let span =
        tracing::info_span!("conn", %peer, session = %shared.session, orig_dst = field::Empty, sni = field::Empty);
    handle(&shared, client, peer).instrument(span).await;
}

/// The stages of one connection, top to bottom.
async fn handle(shared: &Shared, mut client: TcpStream, peer: SocketAddr) {
    // accept: where was it going?
    let Some(Origin { dst, pid }) = original_destination(shared, peer) else {
        return refuse(client);
    };
    tracing::Span::current().record("orig_dst", field::display(dst));
    // detect: what does it say first?
    let limits = DetectLimits { window: shared.config.peek_timeout, max_bytes: shared.config.max_header_bytes };
    let detected = match detect(&mut client, limits).await {
        Ok(detected) => detected,
        Err(source) => {
            tracing::debug!(error = %Error::Peek { peer, source }, "client gone before detection");
            return refuse(client);
        }
    };
    if let Protocol::Tls { sni: Some(sni) } = &detected.protocol {
        tracing::Span::current().record("sni", sni.as_str());
    }
    // decide: may it go there?
    let verdict = decide_connection(shared, dst, &detected.protocol, pid).await;
    if !verdict.permits() {
        tracing::info!(reason = verdict.decision.reason.as_deref().unwrap_or("default deny"), "connection denied");
        if let Some(generation) = verdict.kernel_refusal {
            shared.origins.cache_deny(dst, generation);
        }
        return refuse(client);
    }
    let (mut verdict, mut protocol, mut first) = (verdict, detected.protocol, detected.bytes);
    let mut early_upstream = None;
    if shared.inspector.is_some() {
        // With inspection on, nothing HTTP-shaped may be spliced blind.
        if let Protocol::Malformed { reason, .. } = &protocol {
            shared.decider.notice("warn", format!("connection to {dst} refused: malformed first bytes ({reason})"));
            return refuse(client);
        }
        if protocol == Protocol::ServerSpeaksFirst {
            match who_speaks_first(shared, &mut client, dst, limits).await {
                FirstWord::Server(upstream) => early_upstream = Some(upstream),
                FirstWord::Client(late) => {
                    // Silence, then TLS or HTTP: decide again on what it said.
                    verdict = decide_connection(shared, dst, &late.protocol, pid).await;
                    if !verdict.permits() || matches!(late.protocol, Protocol::Malformed { .. }) {
                        return refuse(client);
                    }
                    (protocol, first) = (late.protocol, late.bytes);
                }
                FirstWord::Nobody => return refuse(client),
            }
        }
        // After the first bytes, or after a silence (then its upstream is
        // another: the guard makes its own).
        if protocol == Protocol::FirstLine {
            match first_line(shared, &mut client, dst, first, limits.max_bytes).await {
                Ok((upstream, rest)) => (early_upstream, protocol, first) = (Some(upstream), Protocol::Opaque, rest),
                Err(why) => {
                    shared.decider.notice("warn", format!("connection to {dst} refused: {why}"));
                    return refuse(client);
                }
            }
        }
    }
    // inspect: HTTP, in the clear or intercepted, is decided per request.
    let (client, first) = match inspect(shared, &verdict, &protocol, Origin { dst, pid }, client, first).await {
        Some(spliceable) => spliceable,
        None => return,
    };
    // forward: to the original destination only.
    let upstream = match early_upstream {
        Some(upstream) => upstream,
        None => match connect_upstream(dst, shared.config.connect_timeout).await {
            Ok(upstream) => upstream,
            Err(error) => {
                tracing::info!(%error, "upstream unreachable");
                return refuse(client);
            }
        },
    };
    match splice(client, upstream, dst, &first, shared.config.idle_timeout, &shared.pipes).await {
        Ok(relayed) => tracing::debug!(relayed.to_upstream, relayed.to_client, "connection closed"),
        Err(error) => tracing::debug!(%error, "connection ended"),
    }
}

/// Decides a connection on the name its first bytes claim where that name
/// is proven to belong to `dst` (see [`unproven_claim`]), else on the
/// resolver's name for `dst` or on `dst` itself.
async fn decide_connection(shared: &Shared, dst: SocketAddr, protocol: &Protocol, pid: Option<u32>) -> Verdict {
    let intercepted = shared.inspector.is_some();
    let verdict = decide_named(shared, dst, protocol, intercepted, pid).await;
    // A @passthrough permit splices the TLS untouched: no upstream
    // certificate is ever checked against its SNI, so the SNI must hold on
    // its own or the connection is decided again without it.
    let passthrough = matches!(protocol, Protocol::Tls { .. }) && shared.decider.passthrough(&verdict.decision);
    if intercepted && passthrough && unproven_claim(shared, dst, protocol, false).is_some() {
        return decide_named(shared, dst, protocol, false, pid).await;
    }
    verdict
}

async fn decide_named(
    shared: &Shared,
    dst: SocketAddr,
    protocol: &Protocol,
    verified_upstream: bool,
    pid: Option<u32>,
) -> Verdict {
    let dns_name = shared.origins.name_for(dst.ip());
    let unproven = unproven_claim(shared, dst, protocol, verified_upstream);
    if let Some((what, claimed)) = unproven {
        let instead = dns_name.as_deref().map_or_else(|| "the address".to_owned(), |name| format!("{name} (DNS)"));
        shared.decider.notice(
            "warn",
            format!(
                "{what} {claimed:?} to {dst} is not a name Bridle's resolver answered with {}: decided on {instead}",
                dst.ip()
            ),
        );
    }
    shared.decider.decide(dst, protocol, Naming { dns_name, claim_unproven: unproven.is_some() }, pid).await
}

/// The name the agent's first bytes claim for `dst` (a Host header, an
/// SNI), when nothing proves it belongs there: an intercepted TLS
/// connection's name is checked against the upstream's certificate
/// (`verified_upstream`, for an SNI rustls takes as a DNS name); any other
/// claim holds only if Bridle's resolver answered it with `dst`'s IP.
/// Without this, a Host header of an allowed name would carry a request to
/// any address (and a spliced TLS connection with an allowed SNI, to any
/// server).
fn unproven_claim<'a>(
    shared: &Shared,
    dst: SocketAddr,
    protocol: &'a Protocol,
    verified_upstream: bool,
) -> Option<(&'static str, &'a str)> {
    let (what, claimed) = match protocol {
        Protocol::Http { host: Some(host) } => ("Host header", host.as_str()),
        Protocol::Tls { sni: Some(sni) } if !(verified_upstream && intercept::checked_sni(sni)) => {
            ("TLS server name", sni.as_str())
        }
        _ => return None,
    };
    (!names_address(shared.origins.as_ref(), dst.ip(), claimed)).then_some((what, claimed))
}

/// Who spoke first on a connection whose client was silent through the
/// detection window.
enum FirstWord {
    /// The upstream (SSH, SMTP, databases): splice with this connection.
    Server(TcpStream),
    /// The client after all: what it said, detected anew.
    Client(crate::detect::Detected),
    /// Neither within the idle timeout, or the upstream is unreachable.
    Nobody,
}

/// A silent client is not proof of a server-speaks-first protocol: it may
/// wait out the window and then start TLS or HTTP, which must not pass
/// uninspected. Connect upstream and see who speaks first.
async fn who_speaks_first(shared: &Shared, client: &mut TcpStream, dst: SocketAddr, limits: DetectLimits) -> FirstWord {
    let upstream = match connect_upstream(dst, shared.config.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::info!(%error, "upstream unreachable");
            return FirstWord::Nobody;
        }
    };
    let wait = idle_wait(shared.config.idle_timeout);
    let first = tokio::time::timeout(wait, async {
        tokio::select! {
            biased;
            ready = upstream.readable() => ready.is_ok().then_some(true),
            ready = client.readable() => ready.is_ok().then_some(false),
        }
    })
    .await;
    match first {
        Ok(Some(true)) => FirstWord::Server(upstream),
        Ok(Some(false)) => match detect(client, limits).await {
            Ok(late) => FirstWord::Client(late),
            Err(_) => FirstWord::Nobody,
        },
        _ => FirstWord::Nobody,
    }
}

/// A first line that could still become a request for a lenient server
/// ([`Protocol::FirstLine`]): relayed to the upstream as it comes, all but
/// a line end, since no server acts on a request line before its end. If
/// the upstream speaks first (a client-first protocol's answer), the
/// connection is a relay from there; once the line ends, it is one if the
/// line is no request, and refused if it is HTTP-shaped (the upstream has
/// had only part of a line). Returns the upstream and what is left to send
/// it, or why the connection is refused.
async fn first_line(
    shared: &Shared,
    client: &mut TcpStream,
    dst: SocketAddr,
    mut seen: Vec<u8>,
    max_bytes: usize,
) -> std::result::Result<(TcpStream, Vec<u8>), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut upstream = connect_upstream(dst, shared.config.connect_timeout).await.map_err(|e| e.to_string())?;
    upstream.write_all(&seen).await.map_err(|e| e.to_string())?;
    let wait = idle_wait(shared.config.idle_timeout);
    let mut chunk = [0u8; 4096];
    loop {
        let turn = tokio::time::timeout(wait, async {
            tokio::select! {
                biased;
                ready = upstream.readable() => ready.map(|()| None),
                read = client.read(&mut chunk) => read.map(Some),
            }
        })
        .await
        .map_err(|_| format!("nothing more within {wait:?} of a first line"))?
        .map_err(|e| e.to_string())?;
        let new = match turn {
            // The server answered (or closed): a relay, as with any other.
            None | Some(0) => return Ok((upstream, Vec::new())),
            Some(n) => &chunk[..n],
        };
        seen.extend_from_slice(new);
        match classify(&seen, max_bytes) {
            // No request after all (binary bytes after the word: an upload).
            Some(Protocol::Opaque) => return Ok((upstream, new.to_vec())),
            // Still a line that could become one, without its end.
            Some(Protocol::FirstLine) | None if !new.contains(&b'\n') => {
                if seen.len() > max_bytes {
                    return Err("a first line longer than the detection bound".into());
                }
                upstream.write_all(new).await.map_err(|e| e.to_string())?;
            }
            _ => return Err("its first line, sent in pieces, is one a server could take for an HTTP request".into()),
        }
    }
}

/// Hands HTTP and TLS to the inspector; gives the connection back (with its
/// first bytes) when it is to be spliced: no inspector, not HTTP, or a
/// `@passthrough` permit (clients that pin certificates).
async fn inspect(
    shared: &Shared,
    verdict: &Verdict,
    protocol: &Protocol,
    origin: Origin,
    client: TcpStream,
    first: Vec<u8>,
) -> Option<(TcpStream, Vec<u8>)> {
    let Some(inspector) = &shared.inspector else { return Some((client, first)) };
    let dst = origin.dst;
    let conn = |tls: bool, sni: Option<String>| Conn {
        inspector: Arc::clone(inspector),
        decider: Arc::clone(&shared.decider),
        dst,
        pid: origin.pid,
        sni,
        tls,
        names: Names(Arc::clone(&shared.origins)),
        proven: Arc::new(std::sync::Mutex::new(match protocol {
            Protocol::Http { host: Some(host) } if unproven_claim(shared, dst, protocol, false).is_none() => {
                vec![host.clone()]
            }
            _ => Vec::new(),
        })),
    };
    match protocol {
        Protocol::Http { .. } => {
            // The server side is hyper, which wants the request line first.
            let mut first = first;
            first.drain(..crate::detect::leading_blank_lines(&first));
            intercept::serve_plain(conn(false, None), client, first, false).await;
            None
        }
        // Each stream is a request, decided as plain HTTP's are.
        Protocol::H2c => {
            intercept::serve_plain(conn(false, None), client, first, true).await;
            None
        }
        Protocol::Tls { sni } if !shared.decider.passthrough(&verdict.decision) => {
            intercept::serve_tls(conn(true, sni.clone()), client, first).await
        }
        Protocol::Tls { sni } => {
            uninspected(shared, dst, sni.as_deref(), "a @passthrough policy permits it");
            Some((client, first))
        }
        _ => Some((client, first)),
    }
}

/// Audits that a permitted TLS connection is spliced without inspection.
fn uninspected(shared: &Shared, dst: SocketAddr, sni: Option<&str>, why: &str) {
    let name = sni.unwrap_or("no SNI");
    shared.decider.notice("info", format!("TLS to {dst} ({name}) not inspected: {why}; spliced as it is"));
}

/// The recorded original destination, or `None` (audited) when there is
/// none or it points back at this listener (a loop).
fn original_destination(shared: &Shared, peer: SocketAddr) -> Option<Origin> {
    let Some(origin) = shared.origins.origin(peer) else {
        tracing::warn!("no recorded original destination; refused");
        let message = format!("connection from {peer} has no recorded original destination; refused");
        shared.decider.notice("warn", message);
        return None;
    };
    let dst = origin.dst;
    if is_self(shared.local, dst) {
        tracing::warn!(%dst, "original destination is the proxy itself; refused");
        shared.decider.notice("warn", format!("connection from {peer} to the proxy's own listener {dst}; refused"));
        return None;
    }
    Some(origin)
}

fn is_self(local: SocketAddr, dst: SocketAddr) -> bool {
    let same_ip = dst.ip() == local.ip() || (local.ip().is_unspecified() && dst.ip().is_loopback());
    same_ip && dst.port() == local.port()
}

/// Closes the client at once with a reset, so the agent sees a refused
/// connection rather than an empty answer it might retry or misread.
fn refuse(client: TcpStream) {
    if let Err(error) = client.set_zero_linger() {
        tracing::debug!(%error, "cannot set SO_LINGER 0; closing normally");
    }
    drop(client);
}
