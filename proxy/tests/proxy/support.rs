//! The harness: a running proxy, its audit log, and upstream stand-ins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridle_engine::audit::{AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::policy::{PolicyFile, load_files};
use bridle_proxy::intercept::{Inspector, UpstreamTls};
use bridle_proxy::tls::{CertificateAuthority, LeafCache};
use bridle_proxy::{Proxy, ProxyConfig, StaticOrigins};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OPENSSL_HELLO: &[u8] = include_bytes!("../../testdata/openssl-api.example.test.bin");
pub const ALLOWED_HELLO: &[u8] = include_bytes!("../../testdata/python-ssl-allowed.test.bin");
pub const DENIED_HELLO: &[u8] = include_bytes!("../../testdata/python-ssl-denied.test.bin");

/// The policy most tests use: allowed.test and banner.test in, denied.test
/// out with a reason, everything else default-denied.
pub const POLICY: &str = r#"
@id("allow-test-hosts")
@reason("test hosts are fine")
permit (principal, action == Net::Action::"Connect", resource)
when { resource in Net::Domain::"allowed.test" || resource in Net::Domain::"banner.test" };

@id("forbid-denied")
@reason("denied.test is off limits")
forbid (principal, action == Net::Action::"Connect", resource)
when { resource in Net::Domain::"denied.test" };
"#;

/// How long a test waits for something that should be immediate.
pub const PROMPT: Duration = Duration::from_secs(3);

pub struct Harness {
    pub addr: SocketAddr,
    pub origins: Arc<StaticOrigins>,
    pub audit: Arc<AuditLog>,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Harness {
    /// Starts a proxy on `policy` with the default config changed by `tune`.
    pub async fn start(policy: &str, tune: impl FnOnce(&mut ProxyConfig)) -> Harness {
        Self::start_with(policy, tune, None).await
    }

    /// As [`Harness::start`], with asks held in `approvals`.
    pub async fn start_with(
        policy: &str,
        tune: impl FnOnce(&mut ProxyConfig),
        approvals: Option<Arc<bridle_engine::approvals::Approvals>>,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(policy, dir, tune, approvals, None).await
    }

    /// A proxy that intercepts TLS and inspects HTTP: Bridle's CA lives in
    /// the harness's temp dir (`ca/ca.pem`, see [`Harness::agent_roots`]),
    /// and upstreams are verified against `public_ca` only, the test's
    /// stand-in for the system roots. `tune` adjusts the inspector.
    pub async fn start_inspecting(
        policy: &str,
        public_ca: CertificateDer<'static>,
        tune: impl FnOnce(&mut Inspector),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_create(&dir.path().join("ca")).expect("Bridle's CA");
        let leaves = Arc::new(LeafCache::new(Arc::new(ca), 64));
        let mut roots = RootCertStore::empty();
        roots.add(public_ca).expect("the test's public CA");
        let mut inspector = Inspector::new(leaves, UpstreamTls::new(roots));
        tune(&mut inspector);
        Self::launch(policy, dir, |_| {}, None, Some(Arc::new(inspector))).await
    }

    async fn launch(
        policy: &str,
        dir: tempfile::TempDir,
        tune: impl FnOnce(&mut ProxyConfig),
        approvals: Option<Arc<bridle_engine::approvals::Approvals>>,
        inspector: Option<Arc<Inspector>>,
    ) -> Harness {
        let files = vec![PolicyFile { name: "test.cedar".into(), text: policy.into() }];
        let authorizer = Arc::new(Authorizer::new(load_files("test", files).expect("valid policy"), 100));
        let options = AuditOptions { fsync_interval: Duration::ZERO, index: false, redact: Vec::new() };
        let audit = Arc::new(AuditLog::open(dir.path().join("audit.jsonl"), options).expect("audit log"));
        let mut config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"));
        config.peek_timeout = Duration::from_millis(300);
        config.connect_timeout = Duration::from_secs(2);
        tune(&mut config);
        let origins = Arc::new(StaticOrigins::new());
        let proxy =
            Proxy::bind(config, origins.clone(), authorizer, Some(audit.clone()), "s1", "claude").await.expect("bind");
        if let Some(approvals) = approvals {
            proxy.decider().hold_asks_with(approvals);
        }
        let proxy = match inspector {
            Some(inspector) => proxy.inspect(inspector),
            None => proxy,
        };
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(proxy.run(async move {
            let _ = stopped.await;
        }));
        Harness { addr, origins, audit, dir, stop: Some(stop), task: Some(task) }
    }

    /// A client whose original destination is recorded as `dst`, as the
    /// redirector would have done on its `connect()`.
    pub async fn connect_to(&self, dst: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind client");
        self.origins.insert(socket.local_addr().expect("local addr"), dst);
        socket.connect(self.addr).await.expect("connect to proxy")
    }

    /// A client with no recorded original destination (dialled directly).
    pub async fn connect_unrecorded(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect to proxy")
    }

    /// What an agent trusts to accept Bridle's leaves: the `ca.pem` Bridle
    /// wrote (as `bridle ca export` would print it).
    pub fn agent_roots(&self) -> RootCertStore {
        let pem = std::fs::read(self.dir.path().join("ca/ca.pem")).expect("Bridle's ca.pem");
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&pem).expect("a certificate")).expect("Bridle's CA");
        roots
    }

    /// Every audit record so far, parsed.
    pub fn records(&self) -> Vec<Value> {
        self.audit.sync().expect("sync audit");
        let text = std::fs::read_to_string(self.audit.path()).expect("read audit");
        text.lines().map(|line| serde_json::from_str(line).expect("json record")).collect()
    }

    /// The last decision record.
    pub fn last_decision(&self) -> Value {
        self.records().into_iter().rev().find(|r| r["type"] == "decision").expect("a decision record")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PROMPT, task).await.expect("proxy stops").expect("proxy task");
        }
    }
}

/// Records that Bridle's resolver answered allowed.test and denied.test
/// with `dst`'s IP, as the test DNS authority of the end-to-end tests does:
/// a spliced connection is named by its SNI only then.
pub fn resolved(h: &Harness, dst: SocketAddr) {
    h.origins.insert_name(dst.ip(), "denied.test");
    h.origins.insert_name(dst.ip(), "allowed.test");
}

/// An upstream that optionally writes `banner` first, echoes everything
/// until the client's EOF, then writes `trailer` and closes: proves both
/// directions and half-close.
pub async fn upstream(banner: &'static [u8], trailer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(banner).await.expect("banner");
                let mut buf = [0u8; 4096];
                loop {
                    let n = stream.read(&mut buf).await.expect("upstream read");
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).await.expect("echo");
                }
                stream.write_all(trailer).await.expect("trailer");
                stream.shutdown().await.expect("shutdown");
            });
        }
    });
    addr
}

/// True when the proxy closed the connection (EOF or reset) promptly,
/// without sending a byte.
pub async fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(PROMPT, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// True when the proxy reset the connection promptly: what a refused
/// connection looks like to the agent.
pub async fn reset_at_once(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(PROMPT, stream.read(&mut buf)).await {
        Ok(Err(error)) => error.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Reads to EOF within [`PROMPT`].
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(PROMPT, stream.read_to_end(&mut out)).await.expect("in time").expect("read");
    out
}
