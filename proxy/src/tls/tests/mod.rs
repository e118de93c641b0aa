//! Tests of the CA, leaf minting and trust roots. Chains are checked the
//! way clients check them: rustls' WebPki verifier (and OpenSSL, a second
//! implementation that also matches issuers by key id) trusting only the
//! `ca.pem` on disk.

mod ca;
mod handshake;
mod leaf;
mod roots;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::pem;

/// Verifies `chain` (leaf first) for `name` against only the CA file at
/// `ca_pem`, as an upstream client would.
fn verify_against_file(ca_pem: &Path, chain: &[CertificateDer<'static>], name: &str) -> Result<(), rustls::Error> {
    let ca = CertificateDer::from_pem_file(ca_pem).expect("ca.pem parses");
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("ca.pem is a usable root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().expect("verifier");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).map(|_| ())
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// `openssl x509 -text` of a DER certificate: a second parser's view.
fn openssl_text(der: &CertificateDer<'_>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem::encode("CERTIFICATE", der)).expect("write cert");
    openssl(&["x509", "-noout", "-text", "-in", file.to_str().expect("utf-8 path")])
}

/// Runs `openssl ARGS`, returning stdout+stderr; panics if it fails.
fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().expect("run openssl (apt-get install openssl)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openssl {args:?} failed: {text}");
    text
}
