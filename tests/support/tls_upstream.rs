//! The "internet" HTTPS server of the interception tests: a hyper server
//! (HTTP/1.1 and HTTP/2, chosen by ALPN) with a certificate from a test CA
//! made here, listening inside the test's network namespace (its thread
//! joins the namespace before binding), plus `git http-backend` as CGI.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Body = BoxBody<Bytes, std::io::Error>;

/// A test CA and a server certificate for `names`, PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Bridle test public CA");
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        TestPki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// The server; stops when dropped.
pub struct TlsUpstream {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves HTTPS on `addrs` inside `/run/netns/<netns>`; `git_root` holds
/// bare repositories served under `/git/`.
pub fn start(netns: &str, addrs: Vec<SocketAddr>, pki: &TestPki, git_root: Option<PathBuf>) -> TlsUpstream {
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).expect("cert")];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let netns_file = std::fs::File::open(format!("/run/netns/{netns}")).expect("open netns");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        nix::sched::setns(&netns_file, nix::sched::CloneFlags::CLONE_NEWNET).expect("join the test netns");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let git_root = Arc::new(git_root);
            let mut listeners = Vec::new();
            for addr in addrs {
                listeners.push(tokio::net::TcpListener::bind(addr).await.expect("bind the test upstream"));
            }
            let _ = ready_tx.send(());
            let mut tasks = tokio::task::JoinSet::new();
            for listener in listeners {
                let acceptor = acceptor.clone();
                let git_root = Arc::clone(&git_root);
                tasks.spawn(async move {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else { continue };
                        let acceptor = acceptor.clone();
                        let git_root = Arc::clone(&git_root);
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let suite = tls.get_ref().1.negotiated_cipher_suite().map(|suite| suite.suite());
                            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                                let git_root = Arc::clone(&git_root);
                                request.extensions_mut().insert(Suite(suite));
                                async move { Ok::<_, Infallible>(route(request, git_root.as_deref()).await) }
                            });
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                .await;
                        });
                    }
                });
            }
            let _ = stopped.await;
            tasks.shutdown().await;
        });
    });
    ready_rx.recv().expect("test upstream ready");
    TlsUpstream { stop: Some(stop), thread: Some(thread) }
}

/// The cipher suite the connection a request came on negotiated.
#[derive(Clone, Copy)]
struct Suite(Option<rustls::CipherSuite>);

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

async fn route(mut request: Request<Incoming>, git_root: Option<&Path>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/ws" || path == "/ws-deflate" {
        return websocket_echo(&mut request, path == "/ws-deflate");
    }
    if let (Some(root), Some(rest)) = (git_root, path.strip_prefix("/git")) {
        return git_cgi(request, root, rest.to_owned()).await;
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let left = total / chunk.len() as u64;
        return Response::new(Repeat { left, chunk }.boxed());
    }
    match path.as_str() {
        "/cipher" => {
            let suite = request.extensions().get::<Suite>().and_then(|suite| suite.0);
            text(StatusCode::OK, format!("cipher={suite:?}\n"))
        }
        // Repeats the x-api-key it got (as echo endpoints and error pages
        // do), with its SHA-256 to prove what arrived; `?encoded` labels
        // the answer gzip.
        "/echo" => {
            let version = format!("{:?}", request.version());
            let key = request.headers().get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            let sha: String = ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let encoded = request.uri().query() == Some("encoded");
            let size = request.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            let mut response =
                text(StatusCode::OK, format!("version={version} x-api-key={key} sha256={sha} body={size}\n"));
            if encoded {
                response.headers_mut().insert("content-encoding", http::HeaderValue::from_static("gzip"));
            }
            response
        }
        _ => {
            let version = format!("{:?}", request.version());
            text(StatusCode::OK, format!("ok {path} {version}\n"))
        }
    }
}

/// `left` chunks, produced lazily (a 1 GiB body is never in memory).
struct Repeat {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Repeat {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left * self.chunk.len() as u64)
    }
}

/// `git http-backend` as CGI: enough of RFC 3875 for smart HTTP.
async fn git_cgi(request: Request<Incoming>, root: &Path, path_info: String) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return text(StatusCode::BAD_REQUEST, "body".into());
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut child = match tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path_info)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "198.51.100.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("git http-backend: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_end(&mut out).await;
    }
    let _ = child.wait().await;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else { return text(StatusCode::BAD_GATEWAY, "cgi output".into()) };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut response =
        Response::new(Full::new(Bytes::copy_from_slice(&out[end + gap..])).map_err(|n| match n {}).boxed());
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(200);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        } else if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// RFC 6455's handshake, then every frame echoed back (unmasked, as a
/// server must). The 101 says in `x-offered-extensions` which extensions
/// the request offered; with `deflate` it accepts permessage-deflate
/// whether or not it was offered.
fn websocket_echo(request: &mut Request<Incoming>, deflate: bool) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a websocket request".into());
    };
    let offered = request.headers().get("sec-websocket-extensions").cloned();
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        loop {
            let mut head = [0u8; 2];
            if io.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    if io.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    if io.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 && io.read_exact(&mut mask).await.is_err() {
                return;
            }
            let mut payload = vec![0u8; usize::try_from(len).unwrap_or(0).min(1 << 20)];
            if io.read_exact(&mut payload).await.is_err() {
                return;
            }
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            let mut frame = vec![head[0]];
            match payload.len() {
                n if n < 126 => frame.push(n as u8),
                n if n <= 0xffff => {
                    frame.push(126);
                    frame.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    frame.push(127);
                    frame.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            frame.extend_from_slice(&payload);
            if io.write_all(&frame).await.is_err() || head[0] & 0x0f == 0x8 {
                return;
            }
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let headers = response.headers_mut();
    headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
    headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = http::HeaderValue::from_str(&base64(digest.as_ref())) {
        headers.insert("sec-websocket-accept", accept);
    }
    headers.insert("x-offered-extensions", offered.unwrap_or(http::HeaderValue::from_static("none")));
    if deflate {
        headers.insert("sec-websocket-extensions", http::HeaderValue::from_static("permessage-deflate"));
    }
    response
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
