//! The crypto provider of every TLS connection the proxy accepts from the
//! agent or makes upstream: ring's, with AES-128-GCM ahead of AES-256-GCM.
//!
//! Everything intercepted is opened and sealed again, on both legs, so the
//! cipher is a large part of what a downloaded byte costs the proxy.
//! AES-256 runs 14 rounds per block to AES-128's 10: ring seals a 16 KiB
//! record at 8.8 GiB/s with AES-128-GCM against 7.5 with AES-256-GCM on
//! the AMD EPYC this was measured on (`cargo bench -p bridle-proxy --bench
//! cipher`), and OpenSSL's code (`openssl speed -evp`) at 3.42 against
//! 1.90 GB/s there. Both are TLS 1.3's own suites and AES-128-GCM is the
//! one it requires; Go's `crypto/tls` and BoringSSL put it first too.
//!
//! Upstream, Bridle is the client and its order is its offer (a server
//! that keeps its own order, as Python's and OpenSSL's defaults do, still
//! chooses). Towards the agent, Bridle's order is used
//! ([`prefers_own_order`]) unless the agent puts ChaCha20-Poly1305 first,
//! the sign of a client without AES instructions (as Go's servers read
//! it).

use std::sync::{Arc, LazyLock};

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

/// The suites moved to the front of the offer, TLS 1.3's and TLS 1.2's.
const AES_128_GCM: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| {
    let mut provider = rustls::crypto::ring::default_provider();
    // TLS 1.3's suites before TLS 1.2's, as ring has them; stable, so
    // the rest keep ring's order.
    provider.cipher_suites.sort_by_key(|suite| (suite.tls13().is_none(), !AES_128_GCM.contains(&suite.suite())));
    Arc::new(provider)
});

/// ring's provider with AES-128-GCM first (shared: made once).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::clone(&PROVIDER)
}

/// Whether a server should pick by Bridle's order rather than the
/// client's, given the suites of its ClientHello: yes, unless the client
/// asks for ChaCha20-Poly1305 before any AES-GCM suite.
pub fn prefers_own_order(offered: &[CipherSuite]) -> bool {
    let chacha = [
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let first = offered.iter().find(|suite| chacha.contains(suite) || is_aes_gcm(**suite));
    !first.is_some_and(|suite| chacha.contains(suite))
}

fn is_aes_gcm(suite: CipherSuite) -> bool {
    AES_128_GCM.contains(&suite)
        || matches!(
            suite,
            CipherSuite::TLS13_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_comes_first_for_each_version_and_no_suite_is_lost() {
        let ours: Vec<CipherSuite> = provider().cipher_suites.iter().map(|suite| suite.suite()).collect();
        let ring: Vec<CipherSuite> =
            rustls::crypto::ring::default_provider().cipher_suites.iter().map(|suite| suite.suite()).collect();
        assert_eq!(ours.len(), ring.len());
        assert!(ring.iter().all(|suite| ours.contains(suite)));
        let position = |suite| ours.iter().position(|ours| *ours == suite).expect("offered");
        assert!(position(CipherSuite::TLS13_AES_128_GCM_SHA256) < position(CipherSuite::TLS13_AES_256_GCM_SHA384));
        assert!(
            position(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
                < position(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        );
        // TLS 1.3's before TLS 1.2's, as ring has them.
        assert_eq!(ours[0], CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    #[test]
    fn a_client_that_asks_for_chacha20_first_gets_its_own_order() {
        use CipherSuite::*;
        // OpenSSL's default TLS 1.3 order: AES-256-GCM first.
        assert!(prefers_own_order(&[
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256
        ]));
        assert!(!prefers_own_order(&[TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256]));
        // Signalling values and other suites before them do not count.
        assert!(!prefers_own_order(&[TLS_EMPTY_RENEGOTIATION_INFO_SCSV, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]));
        assert!(prefers_own_order(&[]));
    }
}
