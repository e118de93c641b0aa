//! The response to a request Bridle put credentials into: an upstream that
//! repeats what it got (an echo endpoint, an error that quotes the key)
//! would hand the agent the real value. Here every occurrence of an
//! injected value in the response's headers and body becomes its
//! placeholder again, as the body streams: only a chunk's last bytes that
//! could be the start of a value are held back for the next chunk.
//!
//! Must never: show a value in `Debug`, or emit bytes that could complete
//! a value with the next chunk.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use memchr::memmem::Finder;

use super::{Injection, Secrets};

/// Replaces the values of one response's injected secrets.
pub struct Reflection {
    swaps: Vec<Swap>,
    /// Bytes held back from the last chunk (a possible start of a value).
    held: Vec<u8>,
    found: BTreeSet<String>,
    reported: usize,
}

struct Swap {
    name: String,
    value: Finder<'static>,
    placeholder: Bytes,
}

/// Names only, never values.
impl fmt::Debug for Reflection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.swaps.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Reflection").field("secrets", &names).field("found", &self.found).finish_non_exhaustive()
    }
}

impl Secrets {
    /// A guard for the response to a request `injection` put values into;
    /// `None` when it put none.
    pub fn reflection(&self, injection: &Injection) -> Option<Reflection> {
        let injected = self.entries.iter().filter(|e| injection.injected.contains(&e.name));
        let swaps: Vec<Swap> = injected
            .map(|e| Swap {
                name: e.name.clone(),
                value: Finder::new(e.value.0.as_bytes()).into_owned(),
                placeholder: Bytes::from(e.placeholder.clone()),
            })
            .collect();
        (!swaps.is_empty()).then(|| Reflection { swaps, held: Vec::new(), found: BTreeSet::new(), reported: 0 })
    }
}

impl Reflection {
    /// Replaces values in every header value.
    pub fn headers(&mut self, headers: &mut HeaderMap) {
        for value in headers.values_mut() {
            let (replaced, names) = replace(&self.swaps, value.as_bytes());
            if names.is_empty() {
                continue;
            }
            self.found.extend(names);
            // Placeholders are header-safe, so the result is too; were it
            // not, the header goes empty rather than keep the value.
            *value = HeaderValue::from_bytes(&replaced).unwrap_or_else(|_| HeaderValue::from_static(""));
        }
    }

    /// The next body chunk, with values replaced; bytes that could start a
    /// value are held for the next chunk (or [`Reflection::finish`]).
    pub fn chunk(&mut self, data: &[u8]) -> Bytes {
        let mut joined = std::mem::take(&mut self.held);
        joined.extend_from_slice(data);
        let (replaced, names) = replace(&self.swaps, &joined);
        self.found.extend(names);
        let hold = self.swaps.iter().map(|s| open_prefix(&replaced, s.value.needle())).max().unwrap_or(0);
        let keep = replaced.len() - hold;
        self.held.extend_from_slice(&replaced[keep..]);
        let mut out = replaced;
        out.truncate(keep);
        Bytes::from(out)
    }

    /// What was held back: the body ended, so it cannot be a value.
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.held))
    }

    /// Names of the secrets found since the last call.
    pub fn newly_found(&mut self) -> Vec<String> {
        if self.found.len() == self.reported {
            return Vec::new();
        }
        self.reported = self.found.len();
        self.found.iter().cloned().collect()
    }
}

/// `haystack` with every value replaced by its placeholder, and the names
/// of the secrets found. Leftmost match first, so overlapping values go
/// in text order.
fn replace(swaps: &[Swap], haystack: &[u8]) -> (Vec<u8>, BTreeSet<String>) {
    let mut out = Vec::with_capacity(haystack.len());
    let mut names = BTreeSet::new();
    let mut rest = haystack;
    loop {
        let next = swaps.iter().filter_map(|s| s.value.find(rest).map(|at| (at, s))).min_by_key(|(at, _)| *at);
        let Some((at, swap)) = next else { break };
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&swap.placeholder);
        names.insert(swap.name.clone());
        rest = &rest[at + swap.value.needle().len()..];
    }
    out.extend_from_slice(rest);
    (out, names)
}

/// The length of the longest end of `bytes` that is a proper start of
/// `value` (what the next chunk could complete).
fn open_prefix(bytes: &[u8], value: &[u8]) -> usize {
    let Some(&first) = value.first() else { return 0 };
    let window = bytes.len().min(value.len() - 1);
    let tail = &bytes[bytes.len() - window..];
    // Only where the first byte of the value appears can a start begin.
    memchr::memchr_iter(first, tail)
        .map(|at| tail.len() - at)
        .find(|&len| value.starts_with(&tail[tail.len() - len..]))
        .unwrap_or(0)
}
