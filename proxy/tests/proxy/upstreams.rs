//! The "internet" of the interception tests, all on loopback: a test
//! public CA (the stand-in for the system roots Bridle verifies upstreams
//! against), certificates it signs or that fail verification on purpose
//! (expired, self-signed, for another name), and HTTP upstreams (TLS or
//! plain) that record every request they parse, so a test can prove what
//! was forwarded and, above all, what was not.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A server certificate chain and its key.
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The test's public CA: what Bridle's upstream roots hold.
pub struct PublicCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

impl PublicCa {
    pub fn new() -> PublicCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Bridle test public CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let der = params.self_signed(&key).expect("CA cert").der().clone();
        PublicCa { issuer: Issuer::new(params, key), der }
    }

    /// A certificate for `names` that verifies.
    pub fn leaf(&self, names: &[&str]) -> ServerCert {
        self.sign(params(names))
    }

    /// A certificate for `names` that expired years ago.
    pub fn expired(&self, names: &[&str]) -> ServerCert {
        let mut params = params(names);
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        ServerCert { chain: vec![cert.der().clone(), self.der.clone()], key: private(&key) }
    }
}

/// A certificate for `names` that signs itself: no root vouches for it.
pub fn self_signed(names: &[&str]) -> ServerCert {
    let key = KeyPair::generate().expect("server key");
    let cert = params(names).self_signed(&key).expect("self-signed cert");
    ServerCert { chain: vec![cert.der().clone()], key: private(&key) }
}

fn params(names: &[&str]) -> CertificateParams {
    CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params")
}

fn private(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// What an upstream saw: TLS handshakes it completed and the requests it
/// parsed, as `METHOD path body-length host(s)`.
#[derive(Debug, Default)]
pub struct Seen {
    pub handshakes: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

impl Seen {
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// HTTPS (h2 and HTTP/1.1 by ALPN) on `addr` with `cert`.
pub async fn https(addr: SocketAddr, cert: ServerCert) -> (SocketAddr, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.expect("bind the HTTPS upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let seen = Arc::new(Seen::default());
    let recorder = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&recorder));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                seen.handshakes.fetch_add(1, Ordering::SeqCst);
                serve(TokioIo::new(tls), seen).await;
            });
        }
    });
    (addr, seen)
}

/// A TLS server that speaks first (as IMAPS does): it writes `greeting`,
/// then echoes what it is sent. No ALPN.
pub async fn greeting(addr: SocketAddr, cert: ServerCert, greeting: &'static [u8]) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.expect("bind the greeting upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                if tokio::io::AsyncWriteExt::write_all(&mut tls, greeting).await.is_err() {
                    return;
                }
                let _ = tokio::io::AsyncWriteExt::flush(&mut tls).await;
                let (mut read, mut write) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Plain HTTP/1.1 on 127.0.0.1.
pub async fn http() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the HTTP upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let seen = Arc::new(Seen::default());
    let recorder = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(TokioIo::new(tcp), Arc::clone(&recorder)));
        }
    });
    (addr, seen)
}

async fn serve<IO>(io: TokioIo<IO>, seen: Arc<Seen>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let seen = Arc::clone(&seen);
        async move { Ok::<_, Infallible>(answer(request, &seen).await) }
    });
    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(io, service).await;
}

/// Records the request, answers `ok <path> <version>`.
async fn answer(request: Request<Incoming>, seen: &Seen) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let length = body.collect().await.map_or(0, |b| b.to_bytes().len());
    let hosts: Vec<String> = parts
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let path = parts.uri.path().to_owned();
    let record = format!("{} {path} {length} {}", parts.method, hosts.join(","));
    seen.requests.lock().expect("not poisoned").push(record.trim_end().to_owned());
    Response::new(Full::new(Bytes::from(format!("ok {path} {:?}", parts.version))))
}
