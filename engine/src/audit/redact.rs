//! Redaction applied to every entry before it is serialized, so nothing
//! sensitive ever reaches the disk.
//!
//! What is redacted, in any string of the entry (object keys included), so
//! fields added later are covered without touching this file:
//! - values of sensitive headers (an HTTP request's, and those in any
//!   `headers` list or map, e.g. an MCP tool's arguments) become `[REDACTED]`;
//! - query values (an HTTP request's `query`, and the query and fragment of
//!   any `http(s)://` / `ws(s)://` URL) become `[REDACTED]`, names kept;
//! - configured secret values become `[REDACTED:<name>]`;
//! - token-shaped strings found by [`crate::dlp`] become `[REDACTED:<kind>]`,
//!   except Bridle placeholders, which are not secrets.
//!
//! The precise pass turns the entry into a JSON tree and walks it. It costs
//! more than everything else an append does, so [`Redactor::encode_fields`]
//! first serializes the entry directly and runs one pattern over the whole
//! text that matches wherever the walk could change something (a token
//! prefix, a configured secret as JSON escapes it, a URL, an extra `headers`
//! key); only then does it walk.

use std::fmt;
use std::sync::LazyLock;

use regex::bytes::Regex as BytesRegex;
use serde_json::{Map, Value};

use super::{AuditEntry, record};
use crate::dlp;
use crate::event::EventKind;

mod http;

pub use http::{is_sensitive_header, redact_query};
use http::{redact_header_pair, redact_header_value, redact_request, redact_urls};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Scrubs secrets out of audit entries.
#[derive(Clone)]
pub struct Redactor {
    /// `(name, value)`, longest value first so a secret that contains
    /// another is replaced whole.
    secrets: Vec<(String, String)>,
    /// Matches serialized JSON wherever the precise walk could change it;
    /// `None` (never in practice) means always walk.
    trigger: Option<BytesRegex>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(Vec::new())
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Redactor").field("secrets", &names).finish()
    }
}

impl Redactor {
    /// `secrets` are `(name, value)` pairs: each value is replaced by
    /// `[REDACTED:<name>]` wherever it appears. Empty values are ignored.
    pub fn new(secrets: Vec<(String, String)>) -> Redactor {
        let mut secrets: Vec<_> = secrets.into_iter().filter(|(_, value)| !value.is_empty()).collect();
        for (name, value) in &secrets {
            if value.len() < 6 {
                tracing::warn!(secret = %name, "short redaction value: every occurrence of it will be redacted");
            }
        }
        secrets.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        let trigger = build_trigger(&secrets);
        Redactor { secrets, trigger }
    }

    /// Redacts `entry` and writes its fields as they follow the record
    /// header, `,"type":"…",…` (no braces), into `out` (cleared first).
    /// Returns whether the precise walk was needed (then the index columns
    /// need scrubbing too).
    pub fn encode_fields(&self, entry: &mut AuditEntry, out: &mut Vec<u8>) -> Result<bool, serde_json::Error> {
        let headers_seen = redact_typed(entry);
        out.clear();
        serde_json::to_writer(&mut *out, &*entry)?;
        let clean = self.trigger.as_ref().is_some_and(|trigger| !trigger.is_match(out));
        if clean && count_headers_keys(out) <= headers_seen {
            // `{…}` → `,…`: the fields continue the record's header.
            if out.first() == Some(&b'{') && out.last() == Some(&b'}') {
                out[0] = b',';
                out.pop();
                return Ok(false);
            }
        }
        let mut value = serde_json::to_value(&*entry)?;
        self.redact_value(&mut value);
        out.clear();
        if let Value::Object(map) = &value {
            record::write_fields(out, map);
        }
        Ok(true)
    }

    /// The entry as a redacted JSON object.
    pub fn redact_entry(&self, entry: &AuditEntry) -> Result<Map<String, Value>, serde_json::Error> {
        let mut entry = entry.clone();
        redact_typed(&mut entry);
        let mut value = serde_json::to_value(&entry)?;
        self.redact_value(&mut value);
        Ok(match value {
            Value::Object(map) => map,
            _ => Map::new(),
        })
    }

    /// Redacts every string in a JSON tree in place (the generic rules: it
    /// does not know which `query` fields are HTTP query strings).
    pub fn redact_value(&self, value: &mut Value) {
        self.walk(value, None);
    }

    /// Redacts one free-standing string (URL queries, configured secrets,
    /// tokens).
    pub fn redact_str(&self, text: &str) -> String {
        self.scrub(text).unwrap_or_else(|| text.to_string())
    }

    fn walk(&self, value: &mut Value, key: Option<&str>) {
        match value {
            Value::String(text) => {
                if let Some(new) = self.scrub(text) {
                    *text = new;
                }
            }
            Value::Array(items) => {
                if key == Some("headers") {
                    items.iter_mut().for_each(redact_header_pair);
                }
                items.iter_mut().for_each(|item| self.walk(item, None));
            }
            Value::Object(map) => {
                if key == Some("headers") {
                    map.iter_mut().for_each(|(name, value)| redact_header_value(name, value));
                }
                self.scrub_keys(map);
                map.iter_mut().for_each(|(name, item)| self.walk(item, Some(name)));
            }
            _ => {}
        }
    }

    fn scrub_keys(&self, map: &mut Map<String, Value>) {
        if map.keys().any(|key| self.scrub(key).is_some()) {
            *map = std::mem::take(map).into_iter().map(|(key, value)| (self.redact_str(&key), value)).collect();
        }
    }

    /// The text with secrets replaced, or `None` when there is nothing to hide
    /// (the common case, which allocates nothing).
    fn scrub(&self, text: &str) -> Option<String> {
        let mut owned = redact_urls(text);
        for (name, value) in &self.secrets {
            let current = owned.as_deref().unwrap_or(text);
            if current.contains(value.as_str()) {
                owned = Some(current.replace(value.as_str(), &format!("[REDACTED:{name}]")));
            }
        }
        let current = owned.as_deref().unwrap_or(text);
        let findings: Vec<_> = dlp::scan(current).into_iter().filter(|f| f.kind != dlp::PLACEHOLDER).collect();
        if findings.is_empty() {
            return owned;
        }
        let mut out = String::with_capacity(current.len());
        let mut at = 0;
        for finding in findings {
            out.push_str(&current[at..finding.start]);
            out.push_str("[REDACTED:");
            out.push_str(finding.kind);
            out.push(']');
            at = finding.end;
        }
        out.push_str(&current[at..]);
        Some(out)
    }
}

/// The pattern for the fast path: token prefixes, configured secrets as they
/// appear inside JSON strings, and URLs (`://`).
fn build_trigger(secrets: &[(String, String)]) -> Option<BytesRegex> {
    let mut alternatives = vec![dlp::TRIGGER.to_string(), regex::escape("://")];
    for (_, value) in secrets {
        let quoted = serde_json::to_string(value).unwrap_or_default();
        let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(value);
        alternatives.push(regex::escape(escaped));
    }
    BytesRegex::new(&alternatives.join("|"))
        .inspect_err(|error| {
            // Only a pathological secret list can exceed the regex size
            // limit; then every entry takes the precise walk.
            tracing::warn!(%error, "redaction fast path disabled");
        })
        .ok()
}

/// How many `"headers":` keys a JSON text has (a quote inside a string is
/// escaped, so this over-counts at worst, which only costs speed).
fn count_headers_keys(json: &[u8]) -> usize {
    static KEY: LazyLock<Option<BytesRegex>> = LazyLock::new(|| BytesRegex::new(&regex::escape(r#""headers":"#)).ok());
    KEY.as_ref().map_or(usize::MAX, |key| key.find_iter(json).count())
}

/// The rules that need to know the field: an HTTP request's query string
/// and headers. Returns how many `headers` keys were handled.
fn redact_typed(entry: &mut AuditEntry) -> usize {
    let (AuditEntry::Decision { event, .. } | AuditEntry::ApprovalRequested { event, .. }) = entry else {
        return 0;
    };
    let EventKind::HttpRequest(request) = &mut event.kind else {
        return 0;
    };
    redact_request(request);
    usize::from(!request.headers.is_empty())
}

#[cfg(test)]
mod tests;
