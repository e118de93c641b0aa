//! Credential injection: the agent holds only placeholders
//! (`bridle-secret-<name>`), and the proxy swaps a placeholder for the real
//! value on requests to that secret's hosts, in that secret's header.
//!
//! Values are read once at start from the host (`[[secrets]]` `env` or
//! `file`, surrounding whitespace trimmed), and must be header-safe
//! printable ASCII of 8 bytes to 64 KiB: shorter would match ordinary
//! text, longer is not a credential. Host patterns are exact names (or IP
//! literals) or `*.suffix`, which matches any name strictly below the suffix
//! (`*.github.com` matches `api.github.com` and `a.b.github.com`, not
//! `github.com`; list both if both are meant) and must keep two labels
//! (`*.com` is refused). Names compare lowercase, without trailing dot or port.
//!
//! [`Secrets::inject`] rewrites only the secret's configured header, and
//! only when the agent put the placeholder there: a value that is the bare
//! placeholder becomes the configured `format`; a placeholder inside a
//! value (`Bearer bridle-secret-x`, `token bridle-secret-x`) is replaced in
//! place; and inside HTTP Basic credentials (how git sends a token as
//! password) it is replaced in the decoded `user:password` and re-encoded.
//! Placeholders in the URL or body are never replaced.
//!
//! [`Secrets::misuse`] finds placeholders bound for a host that may not have
//! them (the caller denies, dlp kind `placeholder-misuse`);
//! [`Secrets::real_value_seen`] finds a real value anywhere (dlp kind
//! `configured-secret`): the agent is never given one, so seeing one means
//! it leaked. Run both on what the agent sent, before [`Secrets::inject`].
//! [`Secrets::reflection`] guards answers from a secret's hosts: a value
//! the upstream sends back reaches the agent masked.
//!
//! Must never: put a value in `Debug` output, an error, a log line or an
//! event; send a value to a host outside its list; add a header the agent
//! did not ask for with a placeholder.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use bridle_engine::config::{Secret, SecretSource};
use bridle_engine::dlp::{Literals, LiteralsTooLarge, placeholder as dlp_placeholder};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::codec::{base64_decode, base64_encode};
use super::fronting::normalize_host;

mod reflection;
pub use reflection::Reflection;

/// Shortest value accepted: anything shorter would be found in ordinary text.
pub const MIN_VALUE_LEN: usize = 8;
/// Longest value accepted (a PEM key fits; a stray binary file does not).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Why the configured secrets could not be loaded. Never holds a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("secret `{secret}`: host environment variable `{var}` is not set")]
    MissingEnv { secret: String, var: String },
    #[error("secret `{secret}`: host environment variable `{var}` is not valid UTF-8")]
    EnvNotUtf8 { secret: String, var: String },
    #[error("secret `{secret}`: cannot read {}: {source}", path.display())]
    File { secret: String, path: PathBuf, source: std::io::Error },
    #[error("secret `{secret}`: the value from {from} is not usable: {problem}")]
    BadValue { secret: String, from: String, problem: &'static str },
    #[error("secret `{secret}`: host `{host}` is not usable: {problem}")]
    BadHost { secret: String, host: String, problem: &'static str },
    #[error("secret `{secret}`: `{header}` is not an HTTP header name")]
    BadHeader { secret: String, header: String },
    #[error("secrets: {0}")]
    TooLarge(#[from] LiteralsTooLarge),
}

/// The placeholder the agent is given for secret `name`.
pub fn placeholder(name: &str) -> String {
    dlp_placeholder(name)
}

/// The configured secrets with their values, ready to inject and police.
#[derive(Debug)]
pub struct Secrets {
    entries: Vec<Entry>,
    /// Placeholder of `entries[i]` at index `i`, as whole tokens.
    placeholders: Literals,
    /// Real value of `entries[i]` at index `i`.
    values: Literals,
    /// How `entries[i]`'s value is found and masked in answers.
    masks: reflection::Masks,
}

#[derive(Debug)]
struct Entry {
    name: String,
    placeholder: String,
    /// The host variable the value came from; the agent gets the
    /// placeholder under the same name.
    env: Option<String>,
    hosts: Vec<HostPattern>,
    header: HeaderName,
    format: String,
    value: Value,
}

/// A real secret value; its `Debug` never shows it.
struct Value(String);

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `.suffix`, leading dot included.
    Below(String),
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<HostPattern, &'static str> {
        match pattern.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = normalize_host(suffix).ok_or("`*.` must be followed by a host name")?;
                if !suffix.contains('.') || suffix.parse::<std::net::IpAddr>().is_ok() {
                    return Err("a wildcard must keep at least two labels, like `*.example.com`");
                }
                Ok(HostPattern::Below(format!(".{suffix}")))
            }
            None if pattern.contains('*') => Err("`*` is only allowed as a leading `*.`"),
            None => normalize_host(pattern).map(HostPattern::Exact).ok_or("not a host name or IP address"),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// What [`Secrets::inject`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injection {
    /// Names of the secrets whose values went into this request.
    pub injected: Vec<String>,
}

impl Secrets {
    /// Reads every value from the host's environment or files.
    pub fn load(config: &[Secret]) -> Result<Secrets, SecretError> {
        Secrets::load_with(config, |var| std::env::var_os(var))
    }

    /// [`Secrets::load`] with the environment supplied (tests, and callers
    /// that captured it earlier).
    pub fn load_with(config: &[Secret], env: impl Fn(&str) -> Option<OsString>) -> Result<Secrets, SecretError> {
        let entries = config.iter().map(|secret| entry(secret, &env)).collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let values: Vec<&str> = entries.iter().map(|e| e.value.0.as_str()).collect();
        let masks = reflection::Masks::new(&entries);
        Ok(Secrets { placeholders: Literals::placeholders(&names)?, values: Literals::new(&values)?, masks, entries })
    }

    /// Whether no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(variable, placeholder)` for the guarded command's environment: each
    /// secret read from a host variable is given to the agent under the same
    /// name. File-sourced secrets have no variable; the agent's own config
    /// (an `.npmrc`, a credential helper) carries their placeholder.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let with_env = self.entries.iter().filter_map(|e| Some((e.env.clone()?, e.placeholder.clone())));
        with_env.collect()
    }

    /// `(name, value)` pairs for the audit log's redactor
    /// (`AuditOptions::redact`), the one place values may be handed out.
    pub fn audit_redactions(&self) -> Vec<(String, String)> {
        self.entries.iter().map(|e| (format!("secret:{}", e.name), e.value.0.clone())).collect()
    }

    /// Longest placeholder or value in bytes: a stream scanner keeps this
    /// much overlap between chunks.
    pub fn longest(&self) -> usize {
        self.placeholders.longest().max(self.values.longest())
    }

    /// Swaps placeholders for values in the configured header of every
    /// secret that may go to `host`.
    pub fn inject(&self, host: &str, headers: &mut HeaderMap) -> Injection {
        let mut injection = Injection::default();
        let Some(host) = normalize_host(host) else { return injection };
        for entry in self.entries.iter().filter(|e| e.allows(&host)) {
            let current: Vec<HeaderValue> = headers.get_all(&entry.header).iter().cloned().collect();
            let swapped: Vec<Option<HeaderValue>> = current.iter().map(|v| entry.swap(v)).collect();
            if swapped.iter().all(Option::is_none) {
                continue;
            }
            headers.remove(&entry.header);
            for (old, new) in current.into_iter().zip(swapped) {
                headers.append(entry.header.clone(), new.unwrap_or(old));
            }
            injection.injected.push(entry.name.clone());
        }
        injection
    }

    /// Names of the secrets whose placeholder is in `haystack` (a URL, a
    /// header, a body chunk) bound for `host`, which may not have them.
    pub fn misuse(&self, host: &str, haystack: &[u8]) -> Vec<String> {
        let host = normalize_host(host);
        let allowed = |e: &Entry| host.as_deref().is_some_and(|h| e.allows(h));
        let found = self.placeholders.matches(haystack).into_iter().filter_map(|i| self.entries.get(i));
        found.filter(|e| !allowed(e)).map(|e| e.name.clone()).collect()
    }

    /// Names of the secrets whose real value is in `haystack`.
    pub fn real_value_seen(&self, haystack: &[u8]) -> Vec<String> {
        let found = self.values.matches(haystack).into_iter().filter_map(|i| self.entries.get(i));
        found.map(|e| e.name.clone()).collect()
    }
}

impl Entry {
    fn allows(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| pattern.matches(host))
    }

    /// The header value with this secret's placeholder swapped for its
    /// value, or `None` when the placeholder is not in it.
    fn swap(&self, value: &HeaderValue) -> Option<HeaderValue> {
        let text = value.to_str().ok()?;
        let swapped = if text.trim() == self.placeholder {
            self.format.replace("{value}", &self.value.0)
        } else if let Some(replaced) = replace_token(text, &self.placeholder, &self.value.0) {
            replaced
        } else {
            self.swap_basic(text)?
        };
        let mut header = HeaderValue::from_str(&swapped).ok()?;
        header.set_sensitive(true);
        Some(header)
    }

    /// `Basic base64(user:placeholder)` → `Basic base64(user:value)`.
    fn swap_basic(&self, text: &str) -> Option<String> {
        let (scheme, encoded) = text.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
        let replaced = replace_token(&decoded, &self.placeholder, &self.value.0)?;
        Some(format!("{scheme} {}", base64_encode(replaced.as_bytes())))
    }
}

/// `text` with every whole-token `token` (not followed by a name character,
/// so `bridle-secret-gh` is not found in `bridle-secret-gh_admin`) replaced;
/// `None` when there is none.
fn replace_token(text: &str, token: &str, with: &str) -> Option<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut replaced = false;
    while let Some(at) = rest.find(token) {
        let after = &rest[at + token.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(name_char) {
            out.push_str(token);
        } else {
            out.push_str(with);
            replaced = true;
        }
        rest = after;
    }
    out.push_str(rest);
    replaced.then_some(out)
}

fn entry(secret: &Secret, env: &impl Fn(&str) -> Option<OsString>) -> Result<Entry, SecretError> {
    let name = secret.name.clone();
    let (raw, from, env_var) = match &secret.source {
        SecretSource::Env(var) => {
            let os = env(var).ok_or_else(|| SecretError::MissingEnv { secret: name.clone(), var: var.clone() })?;
            let text =
                os.into_string().map_err(|_| SecretError::EnvNotUtf8 { secret: name.clone(), var: var.clone() })?;
            (text, format!("environment variable `{var}`"), Some(var.clone()))
        }
        SecretSource::File(path) => (read_file(&name, path)?, format!("file {}", path.display()), None),
    };
    let bad_value = |problem| SecretError::BadValue { secret: name.clone(), from: from.clone(), problem };
    let value = raw.trim();
    if value.len() < MIN_VALUE_LEN {
        return Err(bad_value("shorter than 8 bytes (empty, or too short to tell from ordinary text)"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(bad_value("longer than 64 KiB"));
    }
    if !value.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) {
        return Err(bad_value("it holds characters an HTTP header cannot carry (control or non-ASCII)"));
    }
    let hosts = secret
        .hosts
        .iter()
        .map(|h| {
            HostPattern::parse(h).map_err(|problem| SecretError::BadHost {
                secret: name.clone(),
                host: h.clone(),
                problem,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = HeaderName::from_bytes(secret.header.to_ascii_lowercase().as_bytes())
        .map_err(|_| SecretError::BadHeader { secret: name.clone(), header: secret.header.clone() })?;
    Ok(Entry {
        placeholder: placeholder(&name),
        name,
        env: env_var,
        hosts,
        header,
        format: secret.format.clone(),
        value: Value(value.to_owned()),
    })
}

fn read_file(secret: &str, path: &Path) -> Result<String, SecretError> {
    let error = |source| SecretError::File { secret: secret.to_owned(), path: path.to_owned(), source };
    let bytes = std::fs::read(path).map_err(error)?;
    // Not `from_utf8(...)?` with the bytes in the error: they are the secret.
    String::from_utf8(bytes).map_err(|_| error(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")))
}

#[cfg(test)]
mod tests;
