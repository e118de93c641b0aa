//! The words of the approvals broker: ids, summaries, names, durations.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::{Event, EventKind, HttpRequest, McpMessage, McpPayload};
use crate::request::AuthzRequest;

/// Crockford's base32, lowercase: no `i`, `l`, `o`, `u` to misread or mistype.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Characters in an id: 50 bits.
const ID_LEN: usize = 10;

/// Longest approver name kept.
const MAX_NAME: usize = 64;

/// Unguessable approval ids without a random-number crate: SipHash keyed
/// by `RandomState` (whose 128-bit keys std draws from the OS random
/// source) over a counter and the clock is a keyed PRF, so ids cannot be
/// predicted without the key, which never leaves this process. The
/// control socket is root-only anyway; this keeps ids from being guessed
/// from one another.
pub(super) struct IdSource {
    keys: RandomState,
    counter: AtomicU64,
}

impl IdSource {
    pub(super) fn new() -> Self {
        IdSource { keys: RandomState::new(), counter: AtomicU64::new(0) }
    }

    pub(super) fn next(&self) -> String {
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        let mut bits = hasher.finish();
        (0..ID_LEN)
            .map(|_| {
                let digit = ALPHABET[(bits & 31) as usize];
                bits >>= 5;
                char::from(digit)
            })
            .collect()
    }
}

/// What is asked, in one line: the Cedar action and what it is on; an HTTP
/// request as its method and URL (the query shown only as `?…`, it may hold
/// secrets) and its body's size; an MCP call with its arguments. The
/// broker redacts the line like an audit record, then [`cut`]s it.
pub(super) fn summary(event: &Event, requests: &[AuthzRequest]) -> String {
    if let EventKind::HttpRequest(request) = &event.kind {
        let body = match request.body_size {
            Some(0) => String::new(),
            Some(size) => format!(" with a {size}-byte body"),
            None => " with a body of unknown size".to_string(),
        };
        return format!(r#"Http::Action::"Request" {} {}{body}"#, request.method, url(request));
    }
    if requests.is_empty() {
        return event.kind_name().to_string();
    }
    let parts: Vec<String> = requests.iter().map(|r| format!("{} {}", r.action, r.resource.display())).collect();
    let mut line = parts.join(" + ");
    if let EventKind::Mcp(McpMessage {
        message: McpPayload::ToolsCall { arguments, .. } | McpPayload::PromptsGet { arguments, .. },
        ..
    }) = &event.kind
    {
        line.push_str(&format!(" {arguments}"));
    }
    line
}

/// Characters of a summary shown (an MCP call's arguments can be long).
const MAX_SUMMARY: usize = 300;

/// `line` cut at [`MAX_SUMMARY`] characters, `…` saying so. Cut after
/// redaction: a secret cut first might no longer look like one.
pub(super) fn cut(line: String) -> String {
    match line.char_indices().nth(MAX_SUMMARY) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

fn url(request: &HttpRequest) -> String {
    let default_port = matches!((request.scheme.as_str(), request.port), ("https", 443) | ("http", 80));
    let port = if default_port { String::new() } else { format!(":{}", request.port) };
    let query = if request.query.is_empty() { "" } else { "?…" };
    format!("{}://{}{port}{}{query}", request.scheme, request.host, request.path)
}

/// An approver's name as recorded: printable, at most [`MAX_NAME`] characters.
pub(super) fn clean_name(name: &str) -> String {
    let name: String = name.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    if name.is_empty() { "unknown".into() } else { name }
}

/// `120s`, or `250ms` below a second.
pub(super) fn within(timeout: Duration) -> String {
    if timeout.subsec_nanos() == 0 || timeout >= Duration::from_secs(10) {
        format!("{}s", timeout.as_secs())
    } else {
        format!("{}ms", timeout.as_millis())
    }
}
