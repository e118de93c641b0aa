//! Secret detection shared by the audit redactor and the HTTP proxy.
//!
//! [`scan`] finds token-shaped secrets in text: PEM private keys, AWS access
//! key ids (and secret keys when labelled), GitHub, GitLab, Slack, OpenAI and
//! Anthropic tokens, JWTs, and Bridle's own secret placeholders
//! (`bridle-secret-<name>`, kind [`PLACEHOLDER`]). Placeholders are reported
//! so the proxy can swap them for the real value, but they are not secrets:
//! callers that redact must skip them.
//!
//! [`Literals`] searches bytes for exact strings at once: configured secret
//! values, honeytoken canaries, and placeholders as whole tokens.
//!
//! Patterns favour precision over recall: a finding must start and end on a
//! word boundary, so `sk-` inside `task-runner-…` is not an OpenAI key.

use std::sync::LazyLock;

use regex::Regex;

mod literals;

pub use literals::{Literals, LiteralsTooLarge, PLACEHOLDER_PREFIX, placeholder};

/// The kind reported for Bridle placeholders, which are not secrets.
pub const PLACEHOLDER: &str = "bridle-placeholder";

/// One secret found in a text: `text[start..end]` is the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    /// Stable kind name, e.g. `aws-access-key-id`, `github-token`, `jwt`.
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// One detector. When the pattern has a `v` group (a labelled value), the
/// secret is that group rather than the whole match.
struct Detector {
    kind: &'static str,
    pattern: &'static str,
}

/// Order matters where patterns overlap: the first detector that claims a
/// span wins (Anthropic before OpenAI, both `sk-…`).
const DETECTORS: &[Detector] = &[
    Detector {
        kind: "private-key",
        // Spaces may arrive form-encoded (`+`, `%20`) in bodies and queries.
        pattern: r"-----BEGIN(?:[A-Z0-9 +]|%20)*PRIVATE(?:[ +]|%20)KEY-----(?:[\s\S]*?-----END(?:[A-Z0-9 +]|%20)*PRIVATE(?:[ +]|%20)KEY-----|[\s\S]*)",
    },
    Detector { kind: "aws-access-key-id", pattern: r"(?:AKIA|ASIA)[A-Z0-9]{16}" },
    Detector {
        kind: "aws-secret-access-key",
        pattern: r#"(?i:aws[_-]?secret[_-]?access[_-]?key)["']?\s*[:=]\s*["']?(?P<v>[A-Za-z0-9/+=]{40})"#,
    },
    Detector { kind: "github-token", pattern: r"gh[pousr]_[A-Za-z0-9]{36,251}" },
    Detector { kind: "github-token", pattern: r"github_pat_[A-Za-z0-9_]{22,255}" },
    Detector { kind: "gitlab-token", pattern: r"glpat-[A-Za-z0-9_-]{20,}" },
    Detector { kind: "slack-token", pattern: r"xox[abprs]-[A-Za-z0-9-]{10,}" },
    Detector { kind: "anthropic-key", pattern: r"sk-ant-[A-Za-z0-9_-]{20,}" },
    Detector { kind: "openai-key", pattern: r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}" },
    Detector { kind: "jwt", pattern: r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}" },
    Detector { kind: PLACEHOLDER, pattern: r"bridle-secret-[A-Za-z0-9_-]+" },
];

/// Every detector as one alternation, detector `i` in group `d<i>`: one
/// pass over the text finds every kind, earlier detectors winning ties.
struct Combined {
    regex: Regex,
    /// Capture group index of each detector's `d<i>` group.
    groups: Vec<usize>,
}

static COMBINED: LazyLock<Combined> = LazyLock::new(compile);

// The patterns are constants and `every_pattern_compiles` covers them.
fn compile() -> Combined {
    let groups: Vec<String> = DETECTORS.iter().enumerate().map(|(i, d)| format!("(?P<d{i}>{})", d.pattern)).collect();
    let regex = Regex::new(&groups.join("|")).expect("dlp patterns compile");
    let names: Vec<Option<&str>> = regex.capture_names().collect();
    let groups = (0..DETECTORS.len())
        .map(|i| names.iter().position(|name| *name == Some(format!("d{i}").as_str())).unwrap_or(0))
        .collect();
    Combined { regex, groups }
}

/// A pattern that matches wherever [`scan`] could report a secret (other
/// than a placeholder), without boundary checks and without the characters
/// JSON escapes, so it can run once over a whole serialized JSON document
/// instead of once per string. Used by the audit redactor's fast path.
pub(crate) const TRIGGER: &str = concat!(
    r"-----BEGIN(?:[A-Z0-9 +]|%20)*PRIVATE(?:[ +]|%20)KEY-----",
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}",
    r"|(?i:aws[_-]?secret[_-]?access[_-]?key)",
    r"|gh[pousr]_[A-Za-z0-9]{36}",
    r"|github_pat_[A-Za-z0-9_]{22}",
    r"|glpat-[A-Za-z0-9_-]{20}",
    r"|xox[abprs]-[A-Za-z0-9-]{10}",
    r"|sk-[A-Za-z0-9_-]{20}",
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ",
);

/// Finds the secrets in `text`, in order, without overlaps.
pub fn scan(text: &str) -> Vec<Finding> {
    let combined = &*COMBINED;
    if !combined.regex.is_match(text) {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for caps in combined.regex.captures_iter(text) {
        let found = combined.groups.iter().enumerate().find_map(|(i, group)| caps.get(*group).map(|m| (i, m)));
        let Some((index, whole)) = found else {
            continue;
        };
        let kind = DETECTORS[index].kind;
        let span = caps.name("v").unwrap_or(whole);
        if on_word_boundary(text, whole.start(), whole.end()) && plausible(kind, span.as_str()) {
            findings.push(Finding { kind, start: span.start(), end: span.end() });
        }
    }
    findings
}

/// Whether `text` holds any secret other than a placeholder.
pub fn contains_secret(text: &str) -> bool {
    scan(text).iter().any(|f| f.kind != PLACEHOLDER)
}

/// A token glued to letters or digits on either side is part of a larger
/// word (an identifier, a hash), not a credential. Only edges that are
/// themselves alphanumeric need the check (a PEM block ends in `-----`).
fn on_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let glued = |inner: Option<&u8>, outer: Option<&u8>| {
        inner.is_some_and(u8::is_ascii_alphanumeric) && outer.is_some_and(u8::is_ascii_alphanumeric)
    };
    let before = start.checked_sub(1).and_then(|i| bytes.get(i));
    let after_last = end.checked_sub(1).and_then(|i| bytes.get(i));
    !glued(bytes.get(start), before) && !glued(after_last, bytes.get(end))
}

/// Keys are random: a `sk-` run with no digit is a slug like
/// `sk-this-is-a-long-hyphenated-name`, not a key.
fn plausible(kind: &str, token: &str) -> bool {
    match kind {
        "openai-key" | "anthropic-key" => {
            token.bytes().any(|b| b.is_ascii_digit()) && token.bytes().filter(u8::is_ascii_alphabetic).count() > 3
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests;
