//! Secret-leak detection (DLP) for outgoing requests: the URL and headers
//! at once ([`scan_request_head`]), the body as it streams
//! ([`BodyScanner`]). Findings are dlp kinds for the event's `dlp` set,
//! which policies read as `context.dlp` (the default set denies any).
//!
//! Kinds, one name each everywhere (engine `dlp`, events, policies):
//! - token shapes from [`bridle_engine::dlp::scan`]: `private-key`,
//!   `aws-access-key-id`, `aws-secret-access-key` (only when labelled),
//!   `github-token`, `gitlab-token`, `slack-token`, `openai-key`,
//!   `anthropic-key`;
//! - [`PLACEHOLDER_MISUSE`] `placeholder-misuse`: a Bridle placeholder bound
//!   for a host its secret may not go to;
//! - [`CONFIGURED_SECRET`] `configured-secret`: the real value of a
//!   configured secret, which the agent never holds;
//! - [`HONEYTOKEN`] `honeytoken`: a canary from `[dlp] canaries`.
//!
//! Not reported: `jwt` (session and OAuth tokens are everyday HTTP, so
//! denying them would break ordinary use) and `bridle-placeholder` (a
//! placeholder to an allowed host is how injection works).
//!
//! Headers are scanned as the agent sent them, so call this before
//! [`super::secrets::Secrets::inject`] puts real values in. Percent-encoded
//! URLs and HTTP Basic credentials are also scanned decoded; other
//! encodings (base64 bodies, compressed bodies) are not.
//!
//! Bodies are scanned chunk by chunk, never buffered: each chunk is scanned
//! whole, and the seam with the previous chunk is scanned over a kept tail
//! of [`OVERLAP`] bytes (or the longest configured secret, placeholder or
//! canary, if longer). A token or literal split across chunks is found when
//! no longer than that tail; the token shapes above are all shorter than
//! 256 bytes except fine-grained GitHub tokens at their maximum and PEM
//! keys, which are found by their first line alone. Memory per scanner is
//! the tail. It never logs or keeps what it scans beyond the tail.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use bridle_engine::dlp::{self, Literals, LiteralsTooLarge};
use http::HeaderMap;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};

use super::codec::{base64_decode, percent_decode};
use super::secrets::Secrets;

/// Bytes of the previous chunk kept to scan the seam with the next.
pub const OVERLAP: usize = 256;

pub const PLACEHOLDER_MISUSE: &str = "placeholder-misuse";
pub const CONFIGURED_SECRET: &str = "configured-secret";
pub const HONEYTOKEN: &str = "honeytoken";

/// Token kinds found by `dlp::scan` that requests do not report (see the
/// module doc).
const NOT_REPORTED: [&str; 2] = [dlp::PLACEHOLDER, "jwt"];

/// A canary could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CanaryError {
    /// An empty canary would be found in every request.
    #[error("honeytoken canary number {index} is empty")]
    Empty { index: usize },
    #[error("honeytoken canaries: {0}")]
    TooLarge(#[from] LiteralsTooLarge),
}

/// The configured honeytoken canaries, compiled once and shared.
#[derive(Clone, Debug)]
pub struct Canaries(Arc<Literals>);

impl Canaries {
    pub fn new<S: AsRef<str>>(values: &[S]) -> Result<Canaries, CanaryError> {
        if let Some(index) = values.iter().position(|v| v.as_ref().is_empty()) {
            return Err(CanaryError::Empty { index });
        }
        Ok(Canaries(Arc::new(Literals::new(values)?)))
    }

    /// No canaries.
    pub fn none() -> Canaries {
        Canaries(Arc::new(Literals::default()))
    }

    fn found(&self, haystack: &[u8]) -> bool {
        !self.0.matches(haystack).is_empty()
    }
}

impl Default for Canaries {
    fn default() -> Self {
        Canaries::none()
    }
}

/// What every haystack of one request is checked against.
struct Detectors<'a> {
    secrets: Option<&'a Secrets>,
    host: &'a str,
    canaries: &'a Canaries,
}

impl Detectors<'_> {
    /// Token shapes in `bytes`; only findings starting before `before`
    /// (a byte offset into `bytes`) count.
    fn tokens(&self, bytes: &[u8], before: usize, kinds: &mut BTreeSet<String>) {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            // Token shapes are ASCII; any other byte only matters as "not
            // part of a word", which NUL also is. Byte offsets are kept, and
            // this is ten times faster than a lossy conversion of binary.
            Err(_) => Cow::Owned(bytes.iter().map(|&b| if b.is_ascii() { char::from(b) } else { '\0' }).collect()),
        };
        for finding in dlp::scan(&text) {
            if finding.start < before && !NOT_REPORTED.contains(&finding.kind) {
                kinds.insert(finding.kind.to_owned());
            }
        }
    }

    /// Configured literals in `bytes`.
    fn literals(&self, bytes: &[u8], kinds: &mut BTreeSet<String>) {
        if let Some(secrets) = self.secrets {
            if !secrets.misuse(self.host, bytes).is_empty() {
                kinds.insert(PLACEHOLDER_MISUSE.to_owned());
            }
            if !secrets.real_value_seen(bytes).is_empty() {
                kinds.insert(CONFIGURED_SECRET.to_owned());
            }
        }
        if self.canaries.found(bytes) {
            kinds.insert(HONEYTOKEN.to_owned());
        }
    }

    fn all(&self, bytes: &[u8], kinds: &mut BTreeSet<String>) {
        self.tokens(bytes, usize::MAX, kinds);
        self.literals(bytes, kinds);
    }
}

/// The dlp kinds in a request's URL and headers, sorted and deduplicated.
pub fn scan_request_head(
    uri: &str,
    headers: &HeaderMap,
    secrets: Option<&Secrets>,
    host: &str,
    canaries: &Canaries,
) -> Vec<String> {
    let detectors = Detectors { secrets, host, canaries };
    let mut kinds = BTreeSet::new();
    detectors.all(&head_text(uri, headers), &mut kinds);
    kinds.into_iter().collect()
}

/// The URL and headers as one text: one buffer, one pass per detector;
/// the newlines keep neighbours from gluing into one token.
fn head_text(uri: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut text = uri.as_bytes().to_vec();
    let decoded = percent_decode(uri);
    if decoded != uri.as_bytes() {
        text.push(b'\n');
        text.extend_from_slice(&decoded);
    }
    for (name, value) in headers {
        text.push(b'\n');
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        if (*name == AUTHORIZATION || *name == PROXY_AUTHORIZATION)
            && let Some(credentials) = basic_credentials(value.as_bytes())
        {
            text.push(b'\n');
            text.extend_from_slice(&credentials);
        }
    }
    text
}

/// The decoded `user:password` of `Basic <base64>`.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then(|| base64_decode(encoded.trim())).flatten()
}

/// Streaming DLP over one request body.
pub struct BodyScanner {
    secrets: Option<Arc<Secrets>>,
    host: String,
    canaries: Canaries,
    /// The last bytes seen, at most `overlap` long.
    tail: Vec<u8>,
    overlap: usize,
    /// Whether bytes were dropped before `tail` (it is not the body's start).
    cut: bool,
    seen: BTreeSet<String>,
}

/// Never shows the tail: it is body bytes, possibly a secret.
impl fmt::Debug for BodyScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyScanner")
            .field("host", &self.host)
            .field("overlap", &self.overlap)
            .field("tail_len", &self.tail.len())
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl BodyScanner {
    /// A scanner for a body going to `host`.
    pub fn new(secrets: Option<Arc<Secrets>>, host: &str, canaries: &Canaries) -> BodyScanner {
        let longest = secrets.as_ref().map_or(0, |s| s.longest()).max(canaries.0.longest());
        BodyScanner {
            secrets,
            host: host.to_owned(),
            canaries: canaries.clone(),
            tail: Vec::new(),
            overlap: OVERLAP.max(longest),
            cut: false,
            seen: BTreeSet::new(),
        }
    }

    /// A scanner for another stream to the same host, nothing seen yet.
    pub fn fresh(&self) -> BodyScanner {
        BodyScanner::new(self.secrets.clone(), &self.host, &self.canaries)
    }

    /// Scans the next chunk; returns the kinds not reported before, sorted.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut kinds = BTreeSet::new();
        if !self.tail.is_empty() && !chunk.is_empty() {
            self.scan_seam(chunk, &mut kinds);
        }
        self.detectors().all(chunk, &mut kinds);
        self.keep_tail(chunk);
        self.report(kinds)
    }

    /// Scans trailers (HTTP/2 sends them after the body, where the head's
    /// scan never looked); returns the kinds not reported before.
    pub fn trailers(&mut self, trailers: &HeaderMap) -> Vec<String> {
        let mut kinds = BTreeSet::new();
        self.detectors().all(&head_text("", trailers), &mut kinds);
        self.report(kinds)
    }

    /// The kinds of `found` not reported before, now reported.
    fn report(&mut self, found: BTreeSet<String>) -> Vec<String> {
        let new: Vec<String> = found.into_iter().filter(|k| !self.seen.contains(k)).collect();
        self.seen.extend(new.iter().cloned());
        new
    }

    /// Every kind found so far, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.seen.iter().cloned().collect()
    }

    /// Tail + the start of `chunk`: what straddles the boundary.
    fn scan_seam(&self, chunk: &[u8], kinds: &mut BTreeSet<String>) {
        let head = &chunk[..chunk.len().min(self.overlap)];
        let mut seam = Vec::with_capacity(self.tail.len() + head.len());
        seam.extend_from_slice(&self.tail);
        seam.extend_from_slice(head);
        self.detectors().literals(&seam, kinds);
        // Tokens must start on a word boundary. When the tail was cut from a
        // longer body, its first bytes may be the middle of a word; start
        // at its first non-alphanumeric byte, whose left is unknown but
        // irrelevant (tokens that start with one, like `-----BEGIN`, need
        // no left boundary).
        let start = if self.cut {
            self.tail.iter().position(|b| !b.is_ascii_alphanumeric()).unwrap_or(self.tail.len())
        } else {
            0
        };
        // Findings that start in `head` are the chunk scan's: here their
        // right edge would be the seam's artificial end.
        self.detectors().tokens(&seam[start..], self.tail.len() - start, kinds);
    }

    fn detectors(&self) -> Detectors<'_> {
        Detectors { secrets: self.secrets.as_deref(), host: &self.host, canaries: &self.canaries }
    }

    fn keep_tail(&mut self, chunk: &[u8]) {
        if chunk.len() >= self.overlap {
            self.cut |= chunk.len() > self.overlap || !self.tail.is_empty();
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - self.overlap..]);
            return;
        }
        self.tail.extend_from_slice(chunk);
        if let Some(excess) = self.tail.len().checked_sub(self.overlap).filter(|n| *n > 0) {
            self.tail.drain(..excess);
            self.cut = true;
        }
    }
}

#[cfg(test)]
mod tests;
