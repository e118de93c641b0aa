//! Real TLS handshakes on loopback: a tokio-rustls server presenting minted
//! leaves, a client that trusts only the `ca.pem` on disk.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::ca::CERT_FILE;
use crate::tls::{CertificateAuthority, LeafCache, LeafName, client_config, upstream_roots};

/// Leaf by SNI, else by the address the client dialled.
#[derive(Debug)]
struct BySni {
    leaves: LeafCache,
    local_ip: IpAddr,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map_or(LeafName::Ip(self.local_ip), |sni| LeafName::Dns(sni.to_owned()));
        self.leaves.certified_key(&name).ok()
    }
}

/// Serves one echo per connection; returns the address and the resolver.
async fn server(ca: Arc<CertificateAuthority>) -> (SocketAddr, Arc<BySni>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let resolver = Arc::new(BySni { leaves: LeafCache::new(ca, 16), local_ip: addr.ip() });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, resolver)
}

async fn ping(config: Arc<ClientConfig>, addr: SocketAddr, name: ServerName<'static>) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec).unwrap_or_default();
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    Ok(alpn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trusting_ca_pem_accept_minted_leaves_by_sni_and_by_ip() {
    let temp = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::load_or_create(temp.path()).expect("created");
    // The server uses a CA loaded back from disk, the client only ca.pem.
    let ca = Arc::new(CertificateAuthority::load_or_create(temp.path()).expect("loaded"));
    let (addr, resolver) = server(ca).await;
    let roots = upstream_roots(Some(&temp.path().join(CERT_FILE))).expect("roots");
    let client = client_config(roots, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

    let sni = ServerName::try_from("api.allowed.test").expect("name");
    let alpn = ping(client.clone(), addr, sni.clone()).await.expect("handshake by SNI");
    assert_eq!(alpn, b"h2");
    ping(client.clone(), addr, sni).await.expect("second handshake, cached leaf");
    // An IP server name sends no SNI: the leaf is minted for the address.
    ping(client.clone(), addr, ServerName::IpAddress(addr.ip().into())).await.expect("handshake by IP");
    assert_eq!(resolver.leaves.minted(), 2);

    let http1 =
        client_config(upstream_roots(Some(&temp.path().join(CERT_FILE))).expect("roots"), vec![b"http/1.1".to_vec()]);
    let alpn = ping(http1, addr, ServerName::try_from("api.allowed.test").expect("name")).await.expect("http/1.1");
    assert_eq!(alpn, b"http/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_bridle_refuse_its_leaves() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(CertificateAuthority::load_or_create(temp.path()).expect("created"));
    let (addr, _) = server(ca).await;
    let system = client_config(upstream_roots(None).expect("system roots"), Vec::new());
    let error = ping(system, addr, ServerName::try_from("api.allowed.test").expect("name")).await;
    let error = error.expect_err("the system roots do not include Bridle's CA");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}
