use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::mode;
use crate::tls::roots::{SYSTEM_BUNDLE, upstream_roots, write_trust_bundle};
use crate::tls::{CertificateAuthority, TlsError};

/// A second, unrelated CA standing in for "the system roots".
fn other_ca(dir: &Path) -> CertificateAuthority {
    CertificateAuthority::load_or_create(dir).expect("other ca")
}

#[test]
fn a_configured_bundle_is_used_alone() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = other_ca(&temp.path().join("test-ca"));
    let bundle = temp.path().join("upstream.pem");
    std::fs::write(&bundle, ca.cert_pem()).expect("write bundle");
    let roots = upstream_roots(Some(&bundle)).expect("roots");
    assert_eq!(roots.len(), 1);
}

#[test]
fn the_default_is_the_system_bundle() {
    assert!(Path::new(SYSTEM_BUNDLE).exists(), "tests need `apt-get install ca-certificates`");
    let roots = upstream_roots(None).expect("system roots");
    assert!(roots.len() > 50, "{} roots", roots.len());
}

#[test]
fn bad_bundles_are_errors_naming_the_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let missing = temp.path().join("missing.pem");
    let error = upstream_roots(Some(&missing)).expect_err("missing");
    assert!(matches!(error, TlsError::Read { .. }) && error.to_string().contains("missing.pem"), "{error:?}");

    let empty = temp.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").expect("write");
    let error = upstream_roots(Some(&empty)).expect_err("empty");
    assert!(matches!(error, TlsError::NoCertificates { .. }) && error.to_string().contains("empty.pem"), "{error}");

    let broken = temp.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").expect("write");
    let error = upstream_roots(Some(&broken)).expect_err("broken");
    assert!(matches!(error, TlsError::Pem { .. }) && error.to_string().contains("broken.pem"), "{error}");
}

#[test]
fn the_missing_system_bundle_names_the_package() {
    let error = TlsError::MissingSystemBundle { path: SYSTEM_BUNDLE.into() };
    assert!(error.to_string().contains("apt-get install ca-certificates"), "{error}");
}

#[test]
fn trust_bundle_is_the_roots_then_bridles_ca() {
    let temp = tempfile::tempdir().expect("tempdir");
    let system = other_ca(&temp.path().join("system"));
    let system_file = temp.path().join("system.pem");
    std::fs::write(&system_file, system.cert_pem().trim_end()).expect("write, without a final newline");
    let bridle = CertificateAuthority::load_or_create(&temp.path().join("bridle")).expect("ca");
    let out = temp.path().join("bridle/bundle.pem");
    write_trust_bundle(&bridle, &system_file, &out).expect("bundle");
    assert_eq!(mode(&out), 0o644);
    let certs: Vec<_> = CertificateDer::pem_file_iter(&out).expect("open").collect::<Result<_, _>>().expect("parse");
    assert_eq!(certs, [system.cert_der(), bridle.cert_der()]);
    write_trust_bundle(&bridle, &system_file, &out).expect("rewriting is fine");
    let error = write_trust_bundle(&bridle, &out, &out).expect_err("its own input");
    assert!(error.to_string().contains("bundle.pem"), "{error}");
}
