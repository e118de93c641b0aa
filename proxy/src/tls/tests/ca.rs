use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rcgen::KeyPair;

use super::{mode, openssl_text, verify_against_file};
use crate::tls::ca::{CERT_FILE, KEY_FILE};
use crate::tls::{CertificateAuthority, LeafCache, LeafName, TlsError};

#[test]
fn first_use_creates_the_ca_with_a_private_key() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("var/lib/bridle/ca");
    let ca = CertificateAuthority::load_or_create(&dir).expect("created");
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CERT_FILE)), 0o644);
    let on_disk = std::fs::read_to_string(dir.join(CERT_FILE)).expect("read ca.pem");
    assert_eq!(ca.cert_pem(), on_disk);
    let key = std::fs::read_to_string(dir.join(KEY_FILE)).expect("read ca.key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8 PEM expected");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ca_certificate_is_a_p256_ca_for_leaves_only_valid_ten_years() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(temp.path()).expect("created");
    let text = openssl_text(&ca.cert_der());
    for needle in [
        "Subject: CN = Bridle CA ",
        "O = Bridle",
        "ASN1 OID: prime256v1",
        "ecdsa-with-SHA256",
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let year = |label: &str| -> i32 {
        let line = text.lines().find(|l| l.contains(label)).expect("validity line");
        let year = line.split_whitespace().rev().nth(1).expect("year");
        year.parse().expect("a year")
    };
    let span = year("Not After") - year("Not Before");
    assert!((9..=10).contains(&span), "{text}");
}

#[test]
fn reloaded_ca_signs_leaves_that_chain_to_the_cert_on_disk() {
    let temp = tempfile::tempdir().expect("tempdir");
    let created = CertificateAuthority::load_or_create(temp.path()).expect("created");
    let loaded = Arc::new(CertificateAuthority::load_or_create(temp.path()).expect("loaded"));
    assert_eq!(created.cert_der(), loaded.cert_der(), "loading must not make a new CA");
    drop(created);
    let leaves = LeafCache::new(Arc::clone(&loaded), 16);
    let leaf = leaves.certified_key(&LeafName::Dns("api.allowed.test".into())).expect("minted");
    assert_eq!(leaf.cert.len(), 2, "chain is [leaf, ca]");
    assert_eq!(leaf.cert[1], loaded.cert_der());
    verify_against_file(&temp.path().join(CERT_FILE), &leaf.cert, "api.allowed.test").expect("chains to ca.pem");
    let wrong = verify_against_file(&temp.path().join(CERT_FILE), &leaf.cert, "other.test");
    assert!(wrong.is_err(), "a leaf is only valid for its own name");

    // The leaf's Authority Key Identifier is the CA certificate's Subject Key
    // Identifier (OpenSSL picks issuers by it).
    let key = KeyPair::from_pem(&std::fs::read_to_string(temp.path().join(KEY_FILE)).expect("key")).expect("parses");
    let key_id = rcgen::CertificateParams::default().key_identifier(&key);
    let contains = |der: &[u8]| der.windows(key_id.len()).any(|w| w == key_id.as_slice());
    assert!(contains(&loaded.cert_der()) && contains(&leaf.cert[0]), "SKI of the CA = AKI of the leaf");
}

#[test]
fn openssl_verifies_a_leaf_against_ca_pem() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(CertificateAuthority::load_or_create(temp.path()).expect("created"));
    let leaf =
        LeafCache::new(Arc::clone(&ca), 4).certified_key(&LeafName::Dns("git.allowed.test".into())).expect("leaf");
    let leaf_file = temp.path().join("leaf.pem");
    std::fs::write(&leaf_file, crate::tls::pem::encode("CERTIFICATE", &leaf.cert[0])).expect("write leaf");
    let ca_file = temp.path().join(CERT_FILE);
    let text = super::openssl(&[
        "verify",
        "-CAfile",
        ca_file.to_str().expect("utf-8"),
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "git.allowed.test",
        leaf_file.to_str().expect("utf-8"),
    ]);
    assert!(text.contains(": OK"), "{text}");
}

#[test]
fn a_key_others_can_read_is_refused_naming_the_file_and_the_fix() {
    let temp = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::load_or_create(temp.path()).expect("created");
    let key = temp.path().join(KEY_FILE);
    for loose in [0o644, 0o640, 0o604, 0o602] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).expect("chmod");
        let error = CertificateAuthority::load_or_create(temp.path()).expect_err("refused");
        assert!(matches!(error, TlsError::KeyPermissions { mode, .. } if mode == loose), "{error:?}");
        let shown = error.to_string();
        assert!(shown.contains(&key.display().to_string()) && shown.contains("chmod 600"), "{shown}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    CertificateAuthority::load_or_create(temp.path()).expect("0400 is fine");
}

#[test]
fn a_key_of_another_ca_is_refused() {
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    CertificateAuthority::load_or_create(one.path()).expect("created");
    CertificateAuthority::load_or_create(two.path()).expect("created");
    std::fs::copy(two.path().join(KEY_FILE), one.path().join(KEY_FILE)).expect("swap key");
    let error = CertificateAuthority::load_or_create(one.path()).expect_err("mismatch");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    let shown = error.to_string();
    assert!(shown.contains(KEY_FILE) && shown.contains(CERT_FILE) && shown.contains("bridle ca rotate"), "{shown}");
}

#[test]
fn half_a_ca_is_refused_and_rotate_repairs_it() {
    let temp = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::load_or_create(temp.path()).expect("created");
    std::fs::remove_file(temp.path().join(CERT_FILE)).expect("rm ca.pem");
    let error = CertificateAuthority::load_or_create(temp.path()).expect_err("incomplete");
    assert!(matches!(error, TlsError::Incomplete { .. }), "{error:?}");
    assert!(error.to_string().contains("ca.pem does not"), "{error}");
    CertificateAuthority::rotate(temp.path()).expect("rotate makes a new pair");
    CertificateAuthority::load_or_create(temp.path()).expect("loads again");
}

#[test]
fn garbage_files_are_refused_with_their_names() {
    let temp = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::load_or_create(temp.path()).expect("created");
    std::fs::write(temp.path().join(CERT_FILE), "not pem").expect("clobber");
    let error = CertificateAuthority::load_or_create(temp.path()).expect_err("bad cert");
    assert!(matches!(error, TlsError::Pem { .. }) && error.to_string().contains(CERT_FILE), "{error:?}");

    let temp = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::load_or_create(temp.path()).expect("created");
    std::fs::write(temp.path().join(KEY_FILE), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .expect("clobber");
    let error = CertificateAuthority::load_or_create(temp.path()).expect_err("bad key");
    assert!(matches!(error, TlsError::KeyParse { .. }) && error.to_string().contains(KEY_FILE), "{error:?}");
}

#[test]
fn a_directory_others_can_write_is_refused() {
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error = CertificateAuthority::load_or_create(temp.path()).expect_err("refused");
    assert!(matches!(error, TlsError::DirPermissions { mode: 0o777, .. }), "{error:?}");
}

#[test]
fn rotate_replaces_the_pair_and_keeps_the_old_one_private() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let old = CertificateAuthority::load_or_create(dir).expect("created");
    let (old_pem, old_key) = (old.cert_pem().to_owned(), std::fs::read(dir.join(KEY_FILE)).expect("key"));
    let old_leaf = LeafCache::new(Arc::new(old), 4).certified_key(&LeafName::Dns("a.test".into())).expect("leaf");

    let new = Arc::new(CertificateAuthority::rotate(dir).expect("rotated"));
    assert_ne!(new.cert_pem(), old_pem);
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem.old")).expect("old cert"), old_pem);
    assert_eq!(std::fs::read(dir.join("ca.key.old")).expect("old key"), old_key);
    for file in ["ca.pem.old", "ca.key.old", KEY_FILE] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir.join(CERT_FILE)), 0o644);

    let reloaded = CertificateAuthority::load_or_create(dir).expect("loads the new pair");
    assert_eq!(reloaded.cert_der(), new.cert_der());
    let ca_file = dir.join(CERT_FILE);
    assert!(verify_against_file(&ca_file, &old_leaf.cert, "a.test").is_err(), "old leaves stop verifying");
    let new_leaf = LeafCache::new(new, 4).certified_key(&LeafName::Dns("a.test".into())).expect("leaf");
    verify_against_file(&ca_file, &new_leaf.cert, "a.test").expect("new leaves verify");
}

#[test]
fn concurrent_first_starts_agree_on_one_ca() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("ca");
    let barrier = std::sync::Barrier::new(6);
    let certs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    CertificateAuthority::load_or_create(&dir).expect("load or create").cert_der()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(certs.windows(2).all(|pair| pair[0] == pair[1]), "every start must see the same CA");
}

#[test]
fn debug_output_never_shows_the_key() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(CertificateAuthority::load_or_create(temp.path()).expect("created"));
    let key = std::fs::read_to_string(temp.path().join(KEY_FILE)).expect("key");
    let leaves = LeafCache::new(Arc::clone(&ca), 4);
    leaves.certified_key(&LeafName::Dns("a.test".into())).expect("leaf");
    for shown in [format!("{ca:?}"), format!("{ca:#?}"), format!("{leaves:?}")] {
        assert!(shown.contains("[elided]") && shown.contains("Bridle CA "), "{shown}");
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "key material in Debug: {shown}");
        }
    }
}

#[test]
fn read_cert_pem_needs_only_the_certificate() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(temp.path()).expect("created");
    std::fs::remove_file(temp.path().join(KEY_FILE)).expect("rm key");
    assert_eq!(CertificateAuthority::read_cert_pem(temp.path()).expect("read"), ca.cert_pem());
}
