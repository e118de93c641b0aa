//! The CA trust variables of a guarded command: every name in
//! `TRUST_ENV_VARS` points at `bundle.pem` in the CA directory, the roots
//! Bridle verifies upstreams with plus Bridle's CA, so tools in the command
//! accept the certificates the proxy mints while still trusting real roots
//! (for hosts a policy passes through uninspected).
//!
//! Must never: put the CA's private key, or a path to it, in the command's
//! environment.

use std::path::Path;

use anyhow::Context;
use bridle_engine::config::Config;
use bridle_proxy::tls::{BUNDLE_FILE, CertificateAuthority, SYSTEM_BUNDLE, TRUST_ENV_VARS, write_trust_bundle};

/// Rewrites `bundle.pem` beside the CA and returns the variables pointing
/// at it.
pub(super) fn trust_env(config: &Config, ca: &CertificateAuthority) -> anyhow::Result<Vec<(String, String)>> {
    let dir = &config.tls.ca_dir;
    let roots = config.tls.upstream_ca_bundle.as_deref().unwrap_or(Path::new(SYSTEM_BUNDLE));
    let bundle = dir.join(BUNDLE_FILE);
    write_trust_bundle(ca, roots, &bundle).context("writing the guarded command's CA bundle")?;
    let value = bundle.to_str().with_context(|| format!("{} is not valid UTF-8", bundle.display()))?.to_owned();
    Ok(TRUST_ENV_VARS.iter().map(|name| ((*name).to_owned(), value.clone())).collect())
}
