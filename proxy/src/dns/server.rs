//! The listeners: UDP and TCP on one address, each query handed to the
//! [`Resolver`] on its own task so a slow upstream never stalls the rest.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridle_engine::audit::AuditLog;
use bridle_engine::authorizer::Authorizer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::DnsError;
use super::config::ResolverConfig;
use super::names::NameMap;
use super::resolve::{Resolver, Via};

/// Queries in flight at once over UDP; past this, datagrams are dropped
/// (clients retry) instead of growing memory without bound.
const MAX_UDP_IN_FLIGHT: usize = 1024;
/// Client TCP connections at once; past this, new ones are closed.
const MAX_TCP_CONNECTIONS: usize = 256;
/// Attempts to find a port free for both UDP and TCP when binding port 0.
const BIND_ATTEMPTS: usize = 8;

/// A bound resolver, ready to [`run`](DnsServer::run).
#[derive(Debug)]
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    addr: SocketAddr,
    resolver: Arc<Resolver>,
    tcp_idle_timeout: Duration,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.bind` (the same port for both).
    pub async fn bind(
        config: ResolverConfig,
        authorizer: Arc<Authorizer>,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, DnsError> {
        let (udp, tcp) = bind_pair(config.bind).await?;
        let addr = tcp.local_addr().map_err(|source| DnsError::Bind { addr: config.bind, source })?;
        let resolver = Arc::new(Resolver::new(&config, authorizer, audit));
        Ok(DnsServer { udp: Arc::new(udp), tcp, addr, resolver, tcp_idle_timeout: config.tcp_idle_timeout })
    }

    /// Another pair of listeners on `addr` (e.g. the IPv6 loopback) that
    /// answers from this server's resolver: one cache, one IP → name map.
    pub async fn bind_alongside(&self, addr: SocketAddr) -> Result<Self, DnsError> {
        let (udp, tcp) = bind_pair(addr).await?;
        let addr = tcp.local_addr().map_err(|source| DnsError::Bind { addr, source })?;
        Ok(DnsServer {
            udp: Arc::new(udp),
            tcp,
            addr,
            resolver: Arc::clone(&self.resolver),
            tcp_idle_timeout: self.tcp_idle_timeout,
        })
    }

    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IP → name map the proxy should consult (see [`super::WithDnsNames`]).
    pub fn names(&self) -> Arc<NameMap> {
        self.resolver.names()
    }

    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::clone(&self.resolver)
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let udp = serve_udp(Arc::clone(&self.udp), Arc::clone(&self.resolver));
        let tcp = serve_tcp(self.tcp, Arc::clone(&self.resolver), self.tcp_idle_timeout);
        tokio::select! {
            () = shutdown => {}
            () = udp => {}
            () = tcp => {}
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_error = |source| DnsError::Bind { addr, source };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(addr).await.map_err(bind_error)?;
        let port = udp.local_addr().map_err(bind_error)?.port();
        match crate::listen::tcp_listener(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            // Port 0 picked a UDP port whose TCP twin is taken: try another.
            Err(e) if addr.port() == 0 && attempt < BIND_ATTEMPTS && e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(bind_error(e)),
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let permits = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors from earlier sends surface here on some kernels;
            // they concern one client, not the listener.
            Err(error) => {
                tracing::debug!(%error, "DNS UDP receive failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%client, "DNS UDP query dropped: too many in flight");
            continue;
        };
        let packet = buf[..n].to_vec();
        let (socket, resolver) = (Arc::clone(&socket), Arc::clone(&resolver));
        tokio::spawn(async move {
            if let Some(reply) = resolver.handle(&packet, client, Via::Udp).await
                && let Err(error) = socket.send_to(&reply, client).await
            {
                tracing::debug!(%error, %client, "DNS UDP reply failed");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, idle: Duration) {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(got) => got,
            Err(error) => {
                tracing::warn!(%error, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%client, "DNS TCP connection refused: too many open");
            continue;
        };
        let resolver = Arc::clone(&resolver);
        tokio::spawn(async move {
            if let Err(error) = tcp_connection(stream, client, &resolver, idle).await {
                tracing::debug!(%error, %client, "DNS TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// Length-prefixed queries until EOF, idleness or an unanswerable packet.
async fn tcp_connection(
    mut stream: TcpStream,
    client: SocketAddr,
    resolver: &Resolver,
    idle: Duration,
) -> std::io::Result<()> {
    loop {
        let Ok(len) = tokio::time::timeout(idle, stream.read_u16()).await else { return Ok(()) };
        let len = match len {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut packet = vec![0u8; usize::from(len)];
        // A client that announces a length and then stalls is slowloris.
        tokio::time::timeout(idle, stream.read_exact(&mut packet)).await.map_err(std::io::Error::other)??;
        let Some(reply) = resolver.handle(&packet, client, Via::Tcp).await else { return Ok(()) };
        let reply_len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
