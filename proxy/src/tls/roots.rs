//! Trust on both sides of the proxy. Upstream: the roots Bridle verifies
//! real servers with (the system bundle, or a configured one). Downstream:
//! the bundle guarded processes are told to trust (those same roots plus
//! Bridle's CA) and the environment variables that point tools at it.
//!
//! Must never: add Bridle's own CA to the upstream roots, or fall back to an
//! empty or partial root store when a bundle is missing or malformed.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};

use super::ca::CertificateAuthority;
use super::error::TlsError;
use super::files;

/// Debian's bundle of the system's trusted roots (package `ca-certificates`).
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The trust bundle's file name inside the CA directory.
pub const BUNDLE_FILE: &str = "bundle.pem";

/// Bridle's CA certificate's file name in an exported trust directory.
pub const CA_CERT_FILE: &str = "ca.pem";

/// Variables that point common tools at a CA bundle (OpenSSL, Node, Python
/// requests, curl, git, pip, cargo, the AWS SDKs/CLI, Deno). Host mode sets
/// each to the bundle of system roots + Bridle's CA.
pub const TRUST_ENV_VARS: [&str; 9] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
    "AWS_CA_BUNDLE",
    "DENO_CERT",
];

/// The roots upstream servers are verified against: every certificate in
/// `bundle` if given, else in [`SYSTEM_BUNDLE`]. A bundle with a malformed
/// PEM block or without a usable certificate is an error.
pub fn upstream_roots(bundle: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let path = bundle.unwrap_or(Path::new(SYSTEM_BUNDLE));
    let certs = read_bundle(path)?.1;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCertificates { path: path.to_owned(), ignored });
    }
    Ok(roots)
}

/// A client configuration for upstream connections: rustls with ring
/// ([`super::provider`]: AES-128-GCM first), safe default protocol versions, no client certificate, verifying against `roots`.
pub fn client_config(roots: impl Into<Arc<RootCertStore>>, alpn: Vec<Vec<u8>>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        // ring's default provider supports both default versions; only a
        // hand-made provider without cipher suites could fail here.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// Fills `dir`, a directory shared with agents (the appliance's `bridle-ca`
/// volume): [`CA_CERT_FILE`], Bridle's certificate alone, and
/// [`BUNDLE_FILE`], the roots agents trust. Nothing secret goes there.
pub fn export_trust(ca: &CertificateAuthority, system_bundle: &Path, dir: &Path) -> Result<(), TlsError> {
    files::write_atomic(&dir.join(CA_CERT_FILE), ca.cert_pem().as_bytes(), 0o644)?;
    write_trust_bundle(ca, system_bundle, &dir.join(BUNDLE_FILE))
}

/// Writes `out` (mode 0644, atomically): every certificate of
/// `system_bundle` followed by Bridle's CA, the bundle guarded processes trust.
pub fn write_trust_bundle(ca: &CertificateAuthority, system_bundle: &Path, out: &Path) -> Result<(), TlsError> {
    if same_file(system_bundle, out) {
        // Reading our own output would append Bridle's CA once more per run.
        let source = io::Error::new(io::ErrorKind::InvalidInput, "the roots to trust cannot be the bundle itself");
        return Err(TlsError::Write { path: out.to_owned(), source });
    }
    let (mut text, certs) = read_bundle(system_bundle)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates { path: system_bundle.to_owned(), ignored: 0 });
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(ca.cert_pem().as_bytes());
    files::write_atomic(out, &text, 0o644)
}

/// Verifies `leaf` for `name` as a client trusting only `ca` would.
pub(super) fn verify_leaf(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    name: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier.verify_server_cert(leaf, &[], name, &[], UnixTime::now()).map(|_| ())
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// The file's bytes and the certificates in it.
fn read_bundle(path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsError> {
    let bytes = files::read(path).map_err(|error| match error.io_kind() {
        Some(io::ErrorKind::NotFound) if path == Path::new(SYSTEM_BUNDLE) => {
            TlsError::MissingSystemBundle { path: path.to_owned() }
        }
        _ => error,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: path.to_owned(), source })?;
    Ok((bytes, certs))
}
