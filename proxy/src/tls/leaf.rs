//! Leaf certificates for intercepted names, minted on demand by Bridle's CA
//! and kept in a bounded cache (quick_cache: S3-FIFO, close to LRU).
//!
//! A leaf is ECDSA P-256, names exactly one DNS name or IP (as SAN, and as
//! CN when it fits), is for serverAuth only, and is short-lived: valid from
//! an hour ago (clients whose clocks lag) for seven days, and re-minted a
//! day before it expires. Concurrent first requests for one name mint once:
//! quick_cache's placeholder makes the others wait for the first.
//!
//! Must never: mint for a name that is not a valid DNS name or IP, mint a
//! CA certificate, or Debug-print a leaf's private key.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use quick_cache::sync::Cache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::ca::{CertificateAuthority, set_validity};
use super::error::TlsError;

/// Clock skew tolerated for clients whose clock is behind ours.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Short on purpose: a leaf that leaks is useful for a week at most.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A cached leaf is replaced once it has this little validity left.
const RENEW_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// X.509's upper bound for a CN; longer names go in the SAN only.
const MAX_CN: usize = 64;

/// What a leaf certifies: the TLS SNI, or the destination IP when the
/// client sent none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeafName {
    /// A DNS name; compared lowercase, without a trailing dot.
    Dns(String),
    /// An IP address, certified as an IP SAN.
    Ip(IpAddr),
}

impl LeafName {
    /// An IP if `text` is one (some clients put IP literals in SNI), else a
    /// DNS name.
    pub fn parse(text: &str) -> Self {
        text.parse::<IpAddr>().map_or_else(|_| Self::Dns(text.to_owned()), Self::Ip)
    }

    /// The form cached and certified: DNS names lowercase without a
    /// trailing dot and checked to be valid DNS names; an IP written as a
    /// DNS name becomes an IP.
    fn normalized(&self) -> Result<Self, TlsError> {
        let Self::Dns(name) = self else { return Ok(self.clone()) };
        let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if DnsName::try_from(bare.as_str()).is_err() {
            return Err(TlsError::InvalidName { name: name.clone() });
        }
        Ok(Self::Dns(bare))
    }
}

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A cached leaf and when to replace it.
#[derive(Clone)]
struct Leaf {
    key: Arc<CertifiedKey>,
    renew_at: SystemTime,
}

/// Minted leaves by name, bounded; see the module doc.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    cache: Cache<LeafName, Leaf>,
    minted: AtomicU64,
}

impl LeafCache {
    /// A cache of at most `capacity` leaves (at least 1) signed by `ca`.
    pub fn new(ca: Arc<CertificateAuthority>, capacity: usize) -> Self {
        Self { ca, cache: Cache::new(capacity.max(1)), minted: AtomicU64::new(0) }
    }

    /// The leaf for `name` with the chain `[leaf, ca]`, minted if it is not
    /// cached or is due for renewal. Blocks for the ~millisecond of a mint
    /// (or while another thread mints the same name).
    pub fn certified_key(&self, name: &LeafName) -> Result<Arc<CertifiedKey>, TlsError> {
        let name = name.normalized()?;
        let now = SystemTime::now();
        // Only a stale entry is removed, so a fresh one another thread just
        // minted survives.
        self.cache.remove_if(&name, |leaf| now >= leaf.renew_at);
        let leaf = self.cache.get_or_insert_with(&name, || self.mint(&name))?;
        Ok(leaf.key)
    }

    /// How many leaves this cache has minted (renewals included).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// How many leaves are cached.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether no leaf is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    fn mint(&self, name: &LeafName) -> Result<Leaf, TlsError> {
        let (leaf, key) = mint(&self.ca, name)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&der)
            .map_err(|source| TlsError::Rustls { step: "loading a leaf key", source })?;
        let key = Arc::new(CertifiedKey::new(vec![leaf, self.ca.cert_der()], signer));
        self.minted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%name, "minted a leaf certificate");
        let renew_at = SystemTime::now() + LEAF_VALIDITY - RENEW_BEFORE;
        Ok(Leaf { key, renew_at })
    }
}

impl fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCache")
            .field("ca", &self.ca)
            .field("cached", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .field("minted", &self.minted())
            .finish()
    }
}

/// A new key and a leaf for `name` (already normalized) signed by `ca`.
pub(super) fn mint(ca: &CertificateAuthority, name: &LeafName) -> Result<(CertificateDer<'static>, KeyPair), TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { step: "generating a leaf key", source })?;
    let mut params = CertificateParams::default();
    let (san, cn) = match name {
        LeafName::Dns(dns) => {
            let ia5 = dns.clone().try_into().map_err(|_| TlsError::InvalidName { name: dns.clone() })?;
            (SanType::DnsName(ia5), dns.clone())
        }
        LeafName::Ip(ip) => (SanType::IpAddress(*ip), ip.to_string()),
    };
    params.subject_alt_names = vec![san];
    let mut subject = DistinguishedName::new();
    if cn.len() <= MAX_CN {
        subject.push(DnType::CommonName, cn);
    }
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // The AKI is the CA's key id, which lets OpenSSL-based clients pick the
    // right issuer when several Bridle CAs (old and rotated) are trusted.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, BACKDATE, LEAF_VALIDITY);
    // No serial set: rcgen derives it from the fresh key's hash, so every
    // leaf's serial is unique and unpredictable.
    let leaf = ca.issue(&params, &key)?;
    Ok((leaf, key))
}
