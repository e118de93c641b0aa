//! The harness: a running resolver, its audit log, a test authority, and
//! clients (hickory-built queries over UDP/TCP, and `dig`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bridle_engine::audit::{AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::policy::{PolicyFile, load_files};
use bridle_proxy::dns::{DnsServer, NameMap, ResolverConfig};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// allowed.test, txt.test, big.test and missing.test resolve; denied.test is
/// forbidden with a reason; long labels are forbidden anywhere.
pub const POLICY: &str = r#"
@id("allow-test-names")
@reason("test names are fine")
permit (principal, action == Dns::Action::"Resolve", resource)
when { resource in Net::Domain::"allowed.test" || resource in Net::Domain::"txt.test" || resource in Net::Domain::"missing.test"
       || resource in Net::Domain::"big.test" };

@id("forbid-denied")
@reason("denied.test is off limits")
forbid (principal, action == Dns::Action::"Resolve", resource)
when { resource in Net::Domain::"denied.test" };

@id("forbid-long-labels")
@reason("long labels look like DNS exfiltration")
forbid (principal, action == Dns::Action::"Resolve", resource)
when { context.flags.contains("long-label") };
"#;

pub const TTL: u32 = 300;
/// The SOA MINIMUM of the authority's zone: how long its NXDOMAIN and
/// NODATA answers may be cached (smaller than [`TTL`], so it is the one
/// RFC 2308 picks).
pub const NEGATIVE_TTL: u32 = 60;
/// The negative TTL of `brief.missing.test`, short enough to watch expire.
pub const BRIEF_NEGATIVE_TTL: u32 = 2;
pub const PROMPT: Duration = Duration::from_secs(5);

/// A tiny authoritative server for `*.test` on 127.0.0.1, UDP and TCP on
/// one port. Over UDP it truncates answers past 512 bytes (its clients send
/// no EDNS), so `big.test` can only be fetched over TCP. Its NXDOMAIN and
/// NODATA answers carry the zone's SOA, except `nosoa.missing.test`'s.
pub struct Authority {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Authority {
    pub async fn start() -> Authority {
        let (socket, listener) = loop {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind authority");
            let addr = socket.local_addr().expect("authority addr");
            if let Ok(listener) = TcpListener::bind(addr).await {
                break (socket, listener);
            }
        };
        let addr = socket.local_addr().expect("authority addr");
        let (udp_queries, tcp_queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop, mut stopped) = oneshot::channel();
        let (udp_count, tcp_count) = (Arc::clone(&udp_queries), Arc::clone(&tcp_queries));
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    got = socket.recv_from(&mut buf) => {
                        let (n, peer) = got.expect("authority recv");
                        udp_count.fetch_add(1, Ordering::SeqCst);
                        let request = Message::from_vec(&buf[..n]).expect("resolver sends valid queries");
                        let mut reply = authoritative_answer(&request).to_vec().expect("encode answer");
                        if reply.len() > 512 {
                            reply = authoritative_answer(&request).truncate().to_vec().expect("encode truncated");
                        }
                        socket.send_to(&reply, peer).await.expect("authority send");
                    }
                    got = listener.accept() => {
                        let (mut stream, _) = got.expect("authority accept");
                        tcp_count.fetch_add(1, Ordering::SeqCst);
                        let len = stream.read_u16().await.expect("query length");
                        let mut query = vec![0u8; usize::from(len)];
                        stream.read_exact(&mut query).await.expect("query");
                        let request = Message::from_vec(&query).expect("resolver sends valid queries");
                        let reply = authoritative_answer(&request).to_vec().expect("encode answer");
                        stream.write_all(&(reply.len() as u16).to_be_bytes()).await.expect("reply length");
                        stream.write_all(&reply).await.expect("reply");
                    }
                }
            }
        });
        Authority { addr, udp_queries, tcp_queries, stop: Some(stop), task: Some(task) }
    }

    /// Queries received over UDP and TCP together.
    pub fn count(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }

    /// Stops answering and closes both sockets.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("authority task");
        }
    }
}

/// The TXT strings of `big.test`: about 800 bytes, more than 512, less
/// than dig's 1232-byte EDNS buffer.
pub fn big_txt() -> Vec<String> {
    (0..8).map(|i| format!("{i}{}", "x".repeat(99))).collect()
}

fn authoritative_answer(request: &Message) -> Message {
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    let Some(query) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(query.clone());
    let table: HashMap<&str, RData> = HashMap::from([
        ("allowed.test.", RData::A(A::new(198, 51, 100, 10))),
        ("denied.test.", RData::A(A::new(198, 51, 100, 11))),
        ("txt.test.", RData::TXT(TXT::new(vec!["bridle test record".into()]))),
        ("big.test.", RData::TXT(TXT::new(big_txt()))),
    ]);
    let name = query.name.to_ascii().to_ascii_lowercase();
    match table.get(name.as_str()) {
        Some(data) if data.record_type() == query.query_type => {
            reply.add_answer(Record::from_rdata(query.name.clone(), TTL, data.clone()));
            return reply;
        }
        Some(_) => {}
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.add_authorities(negative_soa(&name));
    reply
}

/// The SOA a negative answer for `name` carries (RFC 2308 §3), if any.
fn negative_soa(name: &str) -> Option<Record> {
    let (ttl, minimum) = match name {
        "nosoa.missing.test." => return None,
        "brief.missing.test." => (BRIEF_NEGATIVE_TTL, BRIEF_NEGATIVE_TTL),
        _ => (TTL, NEGATIVE_TTL),
    };
    let host = |text: &str| Name::from_ascii(text).expect("name");
    let soa = SOA::new(host("ns.test."), host("hostmaster.test."), 1, 3600, 600, 86_400, minimum);
    Some(Record::from_rdata(host("test."), ttl, RData::SOA(soa)))
}

pub struct Harness {
    pub addr: SocketAddr,
    pub audit: Arc<AuditLog>,
    pub names: Arc<NameMap>,
    pub authority: Authority,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Harness {
    /// A resolver on [`POLICY`] whose only upstream is a fresh authority.
    pub async fn start(tune: impl FnOnce(&mut ResolverConfig)) -> Harness {
        let authority = Authority::start().await;
        let files = vec![PolicyFile { name: "dns.cedar".into(), text: POLICY.into() }];
        let authorizer = Arc::new(Authorizer::new(load_files("test", files).expect("valid policy"), 100));
        let dir = tempfile::tempdir().expect("tempdir");
        let options = AuditOptions { fsync_interval: Duration::ZERO, index: false, redact: Vec::new() };
        let audit = Arc::new(AuditLog::open(dir.path().join("audit.jsonl"), options).expect("audit log"));
        let mut config = ResolverConfig::new("127.0.0.1:0".parse().expect("addr"), vec![authority.addr]);
        config.upstream_timeout = Duration::from_millis(500);
        config.session = "s1".into();
        config.principal = "claude".into();
        tune(&mut config);
        let server = DnsServer::bind(config, authorizer, Some(audit.clone())).await.expect("bind resolver");
        let (addr, names) = (server.local_addr(), server.names());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Harness { addr, audit, names, authority, _dir: dir, stop: Some(stop), task: Some(task) }
    }

    /// Every audit record so far, parsed.
    pub fn records(&self) -> Vec<Value> {
        self.audit.sync().expect("sync audit");
        let text = std::fs::read_to_string(self.audit.path()).expect("read audit");
        text.lines().map(|line| serde_json::from_str(line).expect("json record")).collect()
    }

    /// The last decision record about `qname`.
    pub fn decision_for(&self, qname: &str) -> Value {
        self.records()
            .into_iter()
            .rev()
            .find(|r| r["type"] == "decision" && r["event"]["detail"]["qname"] == qname)
            .unwrap_or_else(|| panic!("a decision record for {qname}"))
    }

    pub fn notices(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["type"] == "notice").collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PROMPT, task).await.expect("resolver stops").expect("resolver task");
        }
        self.authority.stop().await;
    }
}

/// A hickory-built query for `name`/`rtype`.
pub fn query_bytes(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    message.to_vec().expect("encode query")
}

/// Sends raw bytes over UDP and waits for one reply (or `None` on timeout).
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await.ok()?.expect("recv");
    Some(buf[..n].to_vec())
}

/// A hickory-built query over UDP, answered and parsed.
pub async fn udp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let reply = udp_exchange(server, &query_bytes(0x4242, name, rtype), PROMPT).await.expect("an answer");
    let message = Message::from_vec(&reply).expect("valid answer");
    assert_eq!(message.metadata.id, 0x4242);
    message
}

/// A hickory-built query over TCP, answered and parsed.
pub async fn tcp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let bytes = query_bytes(0x4343, name, rtype);
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("write len");
    stream.write_all(&bytes).await.expect("write query");
    let len = tokio::time::timeout(PROMPT, stream.read_u16()).await.expect("in time").expect("read len");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("read answer");
    Message::from_vec(&buf).expect("valid answer")
}

/// The IPv4 addresses in an answer.
pub fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Runs the real `dig` against the resolver and returns its output.
pub async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut command = std::process::Command::new("dig");
    command.arg(format!("@{}", server.ip())).arg("-p").arg(server.port().to_string());
    command.args(["+tries=1", "+time=3"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("dig task")
        .expect("dig is installed (apt-get install dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
