use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use super::{openssl_text, verify_against_file};
use crate::tls::ca::CERT_FILE;
use crate::tls::{CertificateAuthority, LeafCache, LeafName, TlsError};

fn cache(capacity: usize) -> (tempfile::TempDir, LeafCache) {
    let temp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(temp.path()).expect("ca");
    (temp, LeafCache::new(Arc::new(ca), capacity))
}

#[test]
fn dns_leaf_names_the_host_for_server_auth_for_a_week() {
    let (_temp, leaves) = cache(8);
    let leaf = leaves.certified_key(&LeafName::Dns("api.allowed.test".into())).expect("leaf");
    let text = openssl_text(&leaf.cert[0]);
    for needle in [
        "Subject: CN = api.allowed.test",
        "DNS:api.allowed.test",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "Digital Signature",
        "ASN1 OID: prime256v1",
        "Issuer: CN = Bridle CA ",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("IP Address:"), "{text}");
    let date = |label: &str| -> String {
        let line = text.lines().find(|l| l.contains(label)).expect("validity line");
        line.split_once(':').map(|(_, d)| d.trim().to_owned()).expect("date")
    };
    // Not Before = now - 1h, Not After = now + 7d, both from one clock read.
    let (before, after) = (date("Not Before"), date("Not After"));
    let secs = |d: &str| {
        let out = std::process::Command::new("date").args(["-d", d, "+%s"]).output().expect("date");
        String::from_utf8_lossy(&out.stdout).trim().parse::<i64>().expect("epoch seconds")
    };
    assert_eq!(secs(&after) - secs(&before), 7 * 86_400 + 3600, "{before} .. {after}");
}

#[test]
fn ip_leaves_carry_an_ip_san() {
    let (temp, leaves) = cache(8);
    for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
        let leaf = leaves.certified_key(&LeafName::Ip(ip)).expect("leaf");
        let text = openssl_text(&leaf.cert[0]);
        let shown = if ip.is_ipv4() { "IP Address:127.0.0.1" } else { "IP Address:0:0:0:0:0:0:0:1" };
        assert!(text.contains(shown) && !text.contains("DNS:"), "{text}");
        verify_against_file(&temp.path().join(CERT_FILE), &leaf.cert, &ip.to_string()).expect("verifies for the IP");
    }
}

#[test]
fn fifty_concurrent_first_requests_mint_once() {
    let (_temp, leaves) = cache(64);
    let barrier = Barrier::new(50);
    let name = LeafName::Dns("burst.allowed.test".into());
    let keys: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    leaves.certified_key(&name).expect("leaf")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(leaves.minted(), 1);
    assert!(keys.iter().all(|k| Arc::ptr_eq(k, &keys[0])), "all 50 share the one leaf");
}

#[test]
fn names_are_normalized_and_validated() {
    let (_temp, leaves) = cache(8);
    let a = leaves.certified_key(&LeafName::Dns("API.Allowed.Test.".into())).expect("leaf");
    let b = leaves.certified_key(&LeafName::Dns("api.allowed.test".into())).expect("leaf");
    assert!(Arc::ptr_eq(&a, &b) && leaves.minted() == 1);
    let ip = leaves.certified_key(&LeafName::Dns("127.0.0.1".into())).expect("leaf");
    let same = leaves.certified_key(&LeafName::parse("127.0.0.1")).expect("leaf");
    assert!(Arc::ptr_eq(&ip, &same) && leaves.minted() == 2);
    assert_eq!(LeafName::parse("a.test"), LeafName::Dns("a.test".into()));
    leaves.certified_key(&LeafName::Dns("_acme.under_score.test".into())).expect("underscores are allowed");
    for bad in ["", ".", "bad name.test", "a..b", "*.wild.test", "exa\0mple.test"] {
        let error = leaves.certified_key(&LeafName::Dns(bad.into())).expect_err(bad);
        assert!(matches!(error, TlsError::InvalidName { .. }), "{bad:?}: {error:?}");
    }
}

#[test]
fn a_long_name_goes_in_the_san_only() {
    let (temp, leaves) = cache(8);
    let long = format!("{}.{}.allowed.test", "a".repeat(60), "b".repeat(60));
    let leaf = leaves.certified_key(&LeafName::Dns(long.clone())).expect("leaf");
    let text = openssl_text(&leaf.cert[0]);
    assert!(text.contains(&format!("DNS:{long}")) && !text.contains("Subject: CN"), "{text}");
    verify_against_file(&temp.path().join(CERT_FILE), &leaf.cert, &long).expect("verifies");
}

#[test]
fn the_cache_is_bounded() {
    let (_temp, leaves) = cache(4);
    for i in 0..40 {
        leaves.certified_key(&LeafName::Dns(format!("host{i}.test"))).expect("leaf");
    }
    assert_eq!(leaves.minted(), 40);
    assert!(leaves.len() <= 4, "{} cached", leaves.len());
}

/// Not an assertion: prints the cost of one mint for the record.
#[test]
fn mint_time_is_printed() {
    let (_temp, leaves) = cache(256);
    let rounds = 50;
    let start = Instant::now();
    for i in 0..rounds {
        leaves.certified_key(&LeafName::Dns(format!("bench{i}.allowed.test"))).expect("leaf");
    }
    let per_mint = start.elapsed() / rounds;
    let start = Instant::now();
    for i in 0..rounds {
        leaves.certified_key(&LeafName::Dns(format!("bench{i}.allowed.test"))).expect("leaf");
    }
    let per_hit = start.elapsed() / rounds;
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("leaf mint: {per_mint:?} per leaf, cache hit: {per_hit:?} ({profile} build)");
}
