//! TLS for interception: Bridle's certificate authority, the leaf
//! certificates it mints per name, and the upstream trust roots.
//!
//! [`CertificateAuthority`] owns `ca.pem` / `ca.key` on disk (made on first
//! use, replaced by `rotate`); [`LeafCache`] mints and caches a leaf per SNI
//! (or IP) signed by it; [`roots`] loads the roots upstream servers are
//! verified against and writes the bundle guarded processes trust.
//!
//! Must never: log, Debug-print or emit in events the CA's private key;
//! trust Bridle's own CA upstream; leave the key readable by anyone but its
//! owner, even for an instant.

pub mod ca;
pub mod error;
mod files;
pub mod leaf;
mod pem;
pub mod provider;
pub mod roots;

#[cfg(test)]
mod tests;

pub use ca::CertificateAuthority;
pub use error::TlsError;
pub use leaf::{LeafCache, LeafName};
pub use provider::provider;
pub use roots::{
    BUNDLE_FILE, CA_CERT_FILE, SYSTEM_BUNDLE, TRUST_ENV_VARS, client_config, export_trust, upstream_roots,
    write_trust_bundle,
};
