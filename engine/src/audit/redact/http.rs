//! The redaction rules that know HTTP: which headers are credentials, how
//! query strings and URLs are cut down.

use std::sync::LazyLock;

use serde_json::Value;

use super::REDACTED;
use crate::event::HttpRequest;

/// A URL with its query (group `q`) and fragment (group `f`).
static URL: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(r#"(?i)\b(?:https?|wss?)://[^\s"'<>?#]*(?:\?(?P<q>[^\s"'<>#]*))?(?:#(?P<f>[^\s"'<>]*))?"#).ok()
});

/// The password of a URL's userinfo, in any scheme
/// (`postgres://admin:pw@db/x`, `https://u:pw@host/`): group `keep` is
/// what stays before it.
static USERINFO: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r#"(?i)(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s"'<>/?#@:]*:)[^\s"'<>/?#@]+@"#).ok());

/// An HTTP request's query values and credential headers, in place.
pub(super) fn redact_request(request: &mut HttpRequest) {
    if !request.query.is_empty() {
        request.query = redact_query(&request.query);
    }
    for (name, value) in &mut request.headers {
        if is_sensitive_header(name) && !is_placeholder_credential(value) {
            *value = REDACTED.to_string();
        }
    }
}

/// Whether a header's value is a credential.
pub fn is_sensitive_header(name: &str) -> bool {
    const EXACT: [&str; 7] =
        ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"];
    // Broad on purpose: a benign header hidden costs a little insight, a
    // credential shown costs the credential (`x-authorization`,
    // `ocp-apim-subscription-key`, `x-functions-key`, `x-amz-security-token`).
    const WORDS: [&str; 10] =
        ["token", "secret", "password", "api-key", "apikey", "auth", "key", "session", "signature", "credential"];
    EXACT.iter().any(|exact| name.eq_ignore_ascii_case(exact))
        || WORDS.iter().any(|word| contains_ignore_case(name, word))
}

/// `word` is lowercase ASCII. Header names are usually lowercase already
/// (the event model stores them so), which needs no copy.
fn contains_ignore_case(haystack: &str, word: &str) -> bool {
    if haystack.bytes().any(|b| b.is_ascii_uppercase()) {
        haystack.to_ascii_lowercase().contains(word)
    } else {
        haystack.contains(word)
    }
}

/// `["name", "value"]` pairs, as `HttpRequest::headers` serializes.
pub(super) fn redact_header_pair(pair: &mut Value) {
    if let Value::Array(items) = pair
        && let [Value::String(name), value] = items.as_mut_slice()
    {
        redact_header_value(name, value);
    }
}

pub(super) fn redact_header_value(name: &str, value: &mut Value) {
    if let Value::String(text) = value
        && is_sensitive_header(name)
        && !is_placeholder_credential(text)
    {
        *text = REDACTED.to_string();
    }
}

/// `Bearer bridle-secret-github`: the agent used a placeholder, which is
/// worth seeing in the audit and is not a secret.
fn is_placeholder_credential(value: &str) -> bool {
    let mut words = value.split_whitespace();
    let token = match (words.next(), words.next(), words.next()) {
        (Some(token), None, None) => token,
        (Some(scheme), Some(token), None) if scheme.bytes().all(|b| b.is_ascii_alphabetic()) => token,
        _ => return false,
    };
    // The same shape `dlp` reports as a placeholder.
    token.strip_prefix("bridle-secret-").is_some_and(|name| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// `a=1&b=2&flag` → `a=[REDACTED]&b=[REDACTED]&flag`.
pub fn redact_query(query: &str) -> String {
    let parts: Vec<String> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((name, value)) if !value.is_empty() => format!("{name}={REDACTED}"),
            _ => part.to_string(),
        })
        .collect();
    parts.join("&")
}

/// The userinfo passwords of every URL in `text`, and the query values
/// (and a `key=value` fragment, where OAuth puts tokens) of every web URL;
/// `None` when nothing changes.
pub(super) fn redact_urls(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let userinfo = USERINFO.as_ref()?;
    let cut = userinfo.replace_all(text, |caps: &regex::Captures<'_>| format!("{}{REDACTED}@", &caps["keep"]));
    match redact_url_queries(&cut) {
        Some(out) => Some(out),
        None => matches!(cut, std::borrow::Cow::Owned(_)).then(|| cut.into_owned()),
    }
}

fn redact_url_queries(text: &str) -> Option<String> {
    let url = URL.as_ref()?;
    let mut changed = false;
    let out = url.replace_all(text, |caps: &regex::Captures<'_>| {
        let whole = &caps[0];
        // The address part stops at the first `?` or `#` (the pattern's
        // first class excludes both).
        let mut out = whole.split(['?', '#']).next().unwrap_or_default().to_string();
        if let Some(query) = caps.name("q") {
            out.push('?');
            out.push_str(&redact_query(query.as_str()));
        }
        if let Some(fragment) = caps.name("f").map(|f| f.as_str()) {
            out.push('#');
            out.push_str(&if fragment.contains('=') { redact_query(fragment) } else { fragment.to_string() });
        }
        changed |= out != whole;
        out
    });
    changed.then(|| out.into_owned())
}
