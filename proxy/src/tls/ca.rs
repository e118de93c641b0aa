//! Bridle's certificate authority: `ca.pem` (certificate, 0644) and
//! `ca.key` (PKCS#8 private key, 0600) in one directory, made on first use
//! and replaced by `rotate`.
//!
//! rcgen 0.14 (without x509-parser) cannot read a certificate back, so the
//! issuer is rebuilt from the stored key and parameters derived from that
//! key alone: the subject is `CN=Bridle CA <first 4 bytes of the key id>,
//! O=Bridle` and the key id is SHA-256 of the public key, exactly as when the
//! certificate was made. Loading proves it: the key must match `ca.pem`, and
//! a probe leaf signed by the rebuilt issuer must verify against `ca.pem`.
//!
//! Must never: let the private key be Debug-printed, logged or written with
//! loose permissions; load a key that group or others can read; hand out an
//! issuer whose leaves do not chain to the certificate on disk.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::error::TlsError;
use super::leaf::{self, LeafName};
use super::{files, pem, roots};

/// The certificate's file name inside the CA directory.
pub const CERT_FILE: &str = "ca.pem";
/// The private key's file name inside the CA directory.
pub const KEY_FILE: &str = "ca.key";

/// Clock skew tolerated for clients whose clock is behind ours.
const BACKDATE: Duration = Duration::from_secs(3600);
/// About ten years: the CA is trusted by hand, so it should not expire often.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The probe leaf's name; `.invalid` can never be a real host.
const PROBE_NAME: &str = "bridle-self-check.invalid";

/// Bridle's CA: signs leaf certificates for intercepted names.
pub struct CertificateAuthority {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl CertificateAuthority {
    /// The CA in `dir`, made there (with `dir`, mode 0755) if neither file
    /// exists yet. Holds `dir/.lock` throughout, so two Bridles starting at
    /// once end up with the same CA.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        files::ensure_dir(dir)?;
        let _lock = files::lock(dir)?;
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (exists(&cert)?, exists(&key)?) {
            (true, true) => Self::load(dir),
            (false, false) => {
                let ca = Self::generate(dir)?;
                ca.store()?;
                Ok(ca)
            }
            (true, false) => Err(TlsError::Incomplete { present: cert, missing: key }),
            (false, true) => Err(TlsError::Incomplete { present: key, missing: cert }),
        }
    }

    /// Replaces the CA in `dir` with a new key and certificate. The previous
    /// files, if any, are kept as `ca.pem.old` / `ca.key.old` (both 0600).
    /// Each file is replaced atomically; the lock keeps other Bridles from
    /// loading the pair halfway through.
    pub fn rotate(dir: &Path) -> Result<Self, TlsError> {
        files::ensure_dir(dir)?;
        let _lock = files::lock(dir)?;
        let ca = Self::generate(dir)?;
        for name in [CERT_FILE, KEY_FILE] {
            let current = dir.join(name);
            if exists(&current)? {
                let old = dir.join(format!("{name}.old"));
                files::write_atomic(&old, &files::read(&current)?, 0o600)?;
            }
        }
        ca.store()?;
        Ok(ca)
    }

    /// Reads `dir/ca.pem` only, checking it holds a certificate: what an
    /// unprivileged `bridle ca export` can print when the key is root's.
    pub fn read_cert_pem(dir: &Path) -> Result<String, TlsError> {
        let path = dir.join(CERT_FILE);
        let der = parse_cert(&path, &files::read(&path)?)?;
        Ok(pem::encode("CERTIFICATE", &der))
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The directory holding the CA.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate's common name, `Bridle CA <id>`.
    pub fn name(&self) -> String {
        ca_common_name(self.issuer.key())
    }

    /// Signs `params` for `public_key` with this CA.
    pub(super) fn issue(
        &self,
        params: &CertificateParams,
        public_key: &KeyPair,
    ) -> Result<CertificateDer<'static>, TlsError> {
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| TlsError::Generate { step: "signing a leaf certificate", source })?;
        Ok(cert.into())
    }

    fn generate(dir: &Path) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|source| TlsError::Generate { step: "generating the CA key", source })?;
        let mut params = ca_params(&key);
        set_validity(&mut params, BACKDATE, CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate { step: "self-signing the CA certificate", source })?;
        Ok(Self::from_parts(dir, key, cert.into()))
    }

    /// Loads an existing pair; the caller holds the lock.
    fn load(dir: &Path) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let key_pem = read_key(&key_path)?;
        let key =
            KeyPair::from_pem(&key_pem).map_err(|source| TlsError::KeyParse { path: key_path.clone(), source })?;
        let cert_der = parse_cert(&cert_path, &files::read(&cert_path)?)?;
        check_pair(&key, &cert_der).map_err(|reason| TlsError::KeyMismatch {
            key: key_path.clone(),
            cert: cert_path.clone(),
            reason,
        })?;
        let ca = Self::from_parts(dir, key, cert_der);
        ca.self_check().map_err(|source| TlsError::SelfCheck { key: key_path, cert: cert_path, source })?;
        Ok(ca)
    }

    fn from_parts(dir: &Path, key: KeyPair, cert_der: CertificateDer<'static>) -> Self {
        let issuer = Issuer::new(ca_params(&key), key);
        let cert_pem = pem::encode("CERTIFICATE", &cert_der);
        Self { dir: dir.to_owned(), issuer, cert_der, cert_pem }
    }

    /// Key first: a crash in between leaves a pair that fails the key check
    /// with a message naming both files, never a silently wrong CA.
    fn store(&self) -> Result<(), TlsError> {
        let key_pem = self.issuer.key().serialize_pem();
        files::write_atomic(&self.dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
        files::write_atomic(&self.dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)
    }

    /// Mints a probe leaf with the rebuilt issuer and verifies it against
    /// the certificate on disk, as a client trusting only `ca.pem` would.
    fn self_check(&self) -> Result<(), rustls::Error> {
        let name = LeafName::Dns(PROBE_NAME.to_owned());
        let (leaf, _) = leaf::mint(self, &name).map_err(|e| rustls::Error::General(e.to_string()))?;
        let server_name = ServerName::try_from(PROBE_NAME).map_err(|e| rustls::Error::General(e.to_string()))?;
        roots::verify_leaf(&self.cert_der, &leaf, &server_name)
    }
}

/// Never shows the key: only where the CA lives and whose it is.
impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("subject", &ca_common_name(self.issuer.key()))
            .field("key", &"[elided]")
            .finish()
    }
}

/// Everything the issuer needs, derived from the key alone (see the module doc).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, ca_common_name(key));
    name.push(DnType::OrganizationName, "Bridle");
    params.distinguished_name = name;
    // Path length 0: the CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// `Bridle CA <8 hex digits>`: distinct per key, so a rotated CA is told
/// apart from its predecessor in trust stores.
fn ca_common_name(key: &KeyPair) -> String {
    let id = CertificateParams::default().key_identifier(key);
    let short: String = id.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("Bridle CA {short}")
}

/// Sets not_before = now − `back` and not_after = now + `ahead`. rcgen's
/// time type is not re-exported, so build from its epoch date plus std durations.
pub(super) fn set_validity(params: &mut CertificateParams, back: Duration, ahead: Duration) {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(back);
    params.not_after = epoch + since_epoch + ahead;
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Reads the key, refusing it if group or others have any access. The mode
/// is taken from the open file, so it is the file actually read.
fn read_key(path: &Path) -> Result<String, TlsError> {
    let read_error = |source| TlsError::Read { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions { path: path.to_owned(), mode });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    Ok(text)
}

fn parse_cert(path: &Path, bytes: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(bytes).map_err(|source| TlsError::Pem { path: path.to_owned(), source })
}

/// The certificate's public key must be the key's: compared by rustls on
/// the parsed certificate's SubjectPublicKeyInfo.
fn check_pair(key: &KeyPair, cert: &CertificateDer<'static>) -> Result<(), String> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    rustls::sign::CertifiedKey::new(vec![cert.clone()], signer).keys_match().map_err(|e| e.to_string())
}
