//! `TlsError`: what can go wrong with the CA, leaf minting and trust roots.
//! Every variant names the file or the step, so an operator can act on the
//! message alone. No variant ever carries key material.

use std::io;
use std::path::PathBuf;

/// Errors of [`crate::tls`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A directory could not be created or inspected.
    #[error("cannot create the directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The CA directory can be written by others, who could swap the CA.
    #[error(
        "{} is writable by group or others (mode {mode:04o}); fix it with `chmod 755 {}`",
        .path.display(), .path.display()
    )]
    DirPermissions { path: PathBuf, mode: u32 },
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file could not be written (or renamed into place).
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The CA directory's lock could not be taken.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The CA private key can be read (or written) by group or others.
    #[error(
        "{} is accessible by group or others (mode {mode:04o}); the CA private key must be mode 0600: \
         run `chmod 600 {}`, and `bridle ca rotate` if it may have been copied",
        .path.display(), .path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// Only one of `ca.pem` / `ca.key` exists.
    #[error(
        "{} exists but {} does not; restore it, or run `bridle ca rotate` to make a new CA",
        .present.display(), .missing.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    /// The private key file is not a usable PKCS#8 PEM key.
    #[error("{} is not a usable PKCS#8 private key: {source}", .path.display())]
    KeyParse {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// A PEM file holds no (or a malformed) certificate.
    #[error("{} holds no valid PEM certificate: {source}", .path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A bundle parsed but rustls accepted none of its certificates.
    #[error("{} holds no usable CA certificate ({ignored} rejected)", .path.display())]
    NoCertificates { path: PathBuf, ignored: usize },
    /// `ca.key` is not the key of the certificate in `ca.pem`.
    #[error(
        "{} does not belong to the certificate in {} ({reason}); restore the matching pair or run `bridle ca rotate`",
        .key.display(), .cert.display()
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf, reason: String },
    /// A leaf minted with the stored key does not chain to the stored
    /// certificate (its subject was not made by this version of Bridle).
    #[error(
        "leaves signed with {} do not verify against {}: {source}; run `bridle ca rotate`",
        .key.display(), .cert.display()
    )]
    SelfCheck {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rcgen failed to generate a key or sign a certificate.
    #[error("{step}: {source}")]
    Generate {
        step: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused a key or configuration.
    #[error("{step}: {source}")]
    Rustls {
        step: &'static str,
        #[source]
        source: rustls::Error,
    },
    /// A name a leaf cannot be minted for (not a valid DNS name).
    #[error("cannot mint a certificate for `{name}`: not a valid DNS name")]
    InvalidName { name: String },
    /// No system CA bundle to trust upstreams with.
    #[error("no system CA bundle at {}: install it with `apt-get install ca-certificates`", .path.display())]
    MissingSystemBundle { path: PathBuf },
}

impl TlsError {
    /// The I/O error kind behind this error, if it is an I/O error; lets a
    /// caller turn "permission denied" into "run this as root".
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::CreateDir { source, .. }
            | Self::Read { source, .. }
            | Self::Write { source, .. }
            | Self::Lock { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
