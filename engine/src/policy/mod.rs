//! Policy sets: loading, the built-in default set, and the toolchain behind
//! `bridle policy validate | fmt | lint | test | replay`.

pub mod diag;
pub mod fmt;
pub mod lint;
pub mod load;
pub mod testfile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cedar_policy::PolicySet;

pub use diag::{Diagnostic, Severity};
pub use load::{load_dir, load_files, read_dir};

/// One policy file's name (as shown in messages) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFile {
    pub name: String,
    pub text: String,
}

/// Where a policy came from and the annotations that change behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMeta {
    /// `@id`, or `file:line` when the policy has none.
    pub id: String,
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Byte offset of the policy in its file.
    pub offset: usize,
    /// Position in the whole set (files sorted, then source order).
    pub order: usize,
    pub forbid: bool,
    pub reason: Option<String>,
    pub ask: bool,
    pub shadow: bool,
    /// `@passthrough` on a permit: a TLS connection it allows is spliced
    /// untouched (decided on SNI only, not inspected), for clients that pin
    /// certificates.
    pub passthrough: bool,
    /// Whether `@id` was written (rather than derived).
    pub has_id: bool,
}

/// A validated policy set.
#[derive(Clone, Debug)]
pub struct LoadedPolicies {
    /// The directory (or `builtin:default`) it came from.
    pub source: String,
    pub set: PolicySet,
    /// By `@id`.
    pub meta: BTreeMap<String, PolicyMeta>,
    pub files: Vec<PolicyFile>,
    /// Validator warnings (the set is still usable).
    pub warnings: Vec<Diagnostic>,
}

impl LoadedPolicies {
    /// Policy ids in set order.
    pub fn ids_in_order(&self) -> Vec<&str> {
        let mut metas: Vec<&PolicyMeta> = self.meta.values().collect();
        metas.sort_by_key(|m| m.order);
        metas.into_iter().map(|m| m.id.as_str()).collect()
    }
}

/// Why a policy set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("cannot read {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a directory (a policy set is a directory of .cedar files)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}", render(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
    /// Files changed while the set was read, every time it was tried: a
    /// half-written set is never installed.
    #[error("{}: its files kept changing while they were read ({tries} tries)", path.display())]
    Unsettled { path: PathBuf, tries: u32 },
    /// A reload found a file empty that held forbid policies of the active
    /// set: what a save looks like between its truncate and its write, when
    /// the write is slow. Installing it would lift those forbids meanwhile.
    #[error(
        "{path}: empty, where it held {policies} of the active forbid policies; read as a save in progress and not \
         installed (to drop them, remove the file or leave a comment in it)"
    )]
    Emptied { path: String, policies: usize },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl PolicyError {
    /// The file:line:col findings, when the problem is in the policies.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid { diagnostics } => diagnostics,
            _ => &[],
        }
    }
}

/// Name under which the built-in default set is reported.
pub const BUILTIN_DEFAULT: &str = "builtin:default";

/// `policies/default/`, compiled into the binary.
pub const DEFAULT_FILES: [(&str, &str); 3] = [
    ("network.cedar", include_str!("../../../policies/default/network.cedar")),
    ("files.cedar", include_str!("../../../policies/default/files.cedar")),
    ("mcp.cedar", include_str!("../../../policies/default/mcp.cedar")),
];

/// The built-in default policy files.
pub fn builtin_default_files() -> Vec<PolicyFile> {
    DEFAULT_FILES
        .iter()
        .map(|(name, text)| PolicyFile { name: format!("{BUILTIN_DEFAULT}/{name}"), text: (*text).to_string() })
        .collect()
}

/// The built-in default set, validated.
pub fn builtin_default() -> Result<LoadedPolicies, PolicyError> {
    load_files(BUILTIN_DEFAULT, builtin_default_files())
}

/// Loads `dir` if given, else the built-in default set.
pub fn load_or_default(dir: Option<&Path>) -> Result<LoadedPolicies, PolicyError> {
    match dir {
        Some(dir) => load_dir(dir),
        None => builtin_default(),
    }
}

#[cfg(test)]
mod tests;
