//! Answers from a host a secret may go to: an upstream that repeats a value
//! it got (an echo endpoint, an error that quotes the key, a page that
//! lists your keys) would hand the agent the real value. Here every
//! occurrence of such a value in the answer's headers, body and trailers
//! is masked as the body streams; only a chunk's last bytes that could be
//! the start of a value wait for the next chunk.
//!
//! Each value is looked for in the forms an answer carries it in: as it
//! is, JSON-escaped, and in base64 at each alignment (an echo of the Basic
//! credentials Bridle sent); a header whose name holds one is dropped.
//!
//! A mask is as long as its value (so `Content-Length` still holds) and
//! names the secret where it fits (`bridle-secret-api***…`). It is chosen
//! at load so that it cannot overlap any value: masking never makes a new
//! occurrence out of a mask and the bytes beside it. Occurrences that
//! overlap each other are all masked.
//!
//! Must never: show a value in `Debug`, or emit bytes of an occurrence of a
//! value, including bytes a later chunk would complete.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use memchr::memmem::Finder;

use super::{Entry, Secrets};
use crate::http::codec::base64_encode;

/// Per secret, at the index of its entry: how to find and mask each form
/// its value can come back in.
pub(super) struct Masks(Vec<Vec<Mask>>);

/// One form of a value: as it is, JSON-escaped, or in base64 (how Basic
/// credentials carry it) at each of the three alignments.
struct Mask {
    value: Finder<'static>,
    /// The form lowercased, as it would show in a header name.
    lower: Finder<'static>,
    mask: Vec<u8>,
}

/// Counts only: a finder holds its value.
impl fmt::Debug for Masks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masks").field("count", &self.0.len()).finish_non_exhaustive()
    }
}

impl Masks {
    pub(super) fn new(entries: &[Entry]) -> Masks {
        let forms: Vec<Vec<Vec<u8>>> = entries.iter().map(|e| forms(e.value.0.as_bytes())).collect();
        let all: Vec<&[u8]> = forms.iter().flatten().map(Vec::as_slice).collect();
        let masks = entries
            .iter()
            .zip(&forms)
            .map(|(e, forms)| {
                let masks = forms.iter().enumerate().map(|(n, form)| Mask {
                    value: Finder::new(form).into_owned(),
                    lower: Finder::new(&form.to_ascii_lowercase()).into_owned(),
                    // The value itself names its secret; other forms are filled.
                    mask: mask_for((n == 0).then_some(e.placeholder.as_str()), form.len(), &all),
                });
                masks.collect()
            })
            .collect();
        Masks(masks)
    }
}

/// `value`, then every other form of it an answer may carry: JSON-escaped
/// (`\"`, `\\`, `\/`), and the base64 of it at each alignment (only the
/// characters its bytes alone decide: the whole 3-byte groups, so up to
/// two bytes at each end stay readable), in both alphabets.
fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    let escaped = escape(value, b"\"\\");
    forms.extend([escape(&escaped, b"/"), escaped]);
    for start in 0..3 {
        let groups = value.len().saturating_sub(start) / 3;
        // Fewer than two whole groups would be too short to tell apart.
        if groups < 2 {
            continue;
        }
        let encoded = base64_encode(&value[start..start + 3 * groups]).into_bytes();
        let url_safe = encoded.iter().map(|&b| match b {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        });
        let url_safe: Vec<u8> = url_safe.collect();
        forms.extend([escape(&encoded, b"/"), encoded, url_safe]);
    }
    let mut unique: Vec<Vec<u8>> = Vec::new();
    for form in forms {
        if !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique
}

/// `bytes` with a backslash before each of `these` (JSON's `\"` and
/// `\\`; `\/`, which PHP's JSON encoder writes).
fn escape(bytes: &[u8], these: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if these.contains(&byte) {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out
}

/// The placeholder padded with `*` to `len` (or only a fill character when
/// there is none or it is longer), the first that overlaps no value.
fn mask_for(placeholder: Option<&str>, len: usize, values: &[&[u8]]) -> Vec<u8> {
    let named = placeholder.filter(|p| p.len() <= len).map(|placeholder| {
        let mut mask = placeholder.as_bytes().to_vec();
        mask.resize(len, b'*');
        mask
    });
    let filled = b"*#~%_=".iter().map(|&fill| vec![fill; len]);
    named.into_iter().chain(filled).find(|mask| values.iter().all(|value| !overlaps(mask, value))).unwrap_or_else(
        || {
            // Every value holds each fill character at an edge: cannot happen
            // with printable keys, but never leave a value's bytes.
            vec![b' '; len]
        },
    )
}

/// Whether `mask` and `value` could make an occurrence of `value` together
/// with other bytes: one holds the other, or an end of one is a start of
/// the other.
fn overlaps(mask: &[u8], value: &[u8]) -> bool {
    let contains = |hay: &[u8], needle: &[u8]| memchr::memmem::find(hay, needle).is_some();
    let shorter = mask.len().min(value.len());
    contains(mask, value)
        || contains(value, mask)
        || (1..shorter).any(|k| mask.ends_with(&value[..k]) || value.ends_with(&mask[..k]))
}

/// Masks the values of the secrets that may go to one answer's host.
pub struct Reflection {
    secrets: Arc<Secrets>,
    /// Entries whose values are masked.
    which: Vec<usize>,
    /// Bytes held back from the last chunk (a possible start of a value)
    /// as they came, where values are looked for...
    held: Vec<u8>,
    /// ...and as they will go, masked where an occurrence that began
    /// before them covers them.
    held_out: Vec<u8>,
    found: BTreeSet<String>,
    reported: BTreeSet<String>,
}

/// Names only, never values.
impl fmt::Debug for Reflection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.which.iter().map(|&i| self.secrets.entries[i].name.as_str()).collect();
        f.debug_struct("Reflection").field("secrets", &names).field("found", &self.found).finish_non_exhaustive()
    }
}

impl Secrets {
    /// A guard for an answer from `host`, masking the value of every secret
    /// that may go there; `None` when none may.
    pub fn reflection(self: &Arc<Self>, host: &str) -> Option<Reflection> {
        let host = super::normalize_host(host)?;
        let which: Vec<usize> = (0..self.entries.len()).filter(|&i| self.entries[i].allows(&host)).collect();
        (!which.is_empty()).then(|| Reflection {
            secrets: Arc::clone(self),
            which,
            held: Vec::new(),
            held_out: Vec::new(),
            found: BTreeSet::new(),
            reported: BTreeSet::new(),
        })
    }
}

impl Reflection {
    /// Masks values in every header value, and drops a header whose name
    /// holds one (names are lowercase, so lowercased values are looked for).
    pub fn headers(&mut self, headers: &mut HeaderMap) {
        let named: Vec<HeaderName> = headers.keys().filter(|name| self.in_name(name.as_str())).cloned().collect();
        for name in named {
            headers.remove(&name);
        }
        for value in headers.values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            if !self.mask(value.as_bytes(), &mut bytes) {
                continue;
            }
            // A mask is visible ASCII, so this parses; were it not, the
            // header goes empty rather than keep the value.
            *value = HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static(""));
        }
    }

    /// The next body chunk, masked; bytes that could start a value are
    /// held for the next chunk (or [`Reflection::finish`]).
    ///
    /// Values are looked for in the bytes as they came, so an occurrence is
    /// found whole whatever was masked around it; every occurrence that
    /// could still grow into a value is held, so none starts in bytes
    /// already gone.
    pub fn chunk(&mut self, data: Bytes) -> Bytes {
        if self.held.is_empty() && self.open_prefix(&data) == 0 && !self.occurs_in(&data) {
            return data;
        }
        let mut raw = std::mem::take(&mut self.held);
        raw.extend_from_slice(&data);
        let mut out = std::mem::take(&mut self.held_out);
        out.extend_from_slice(&data);
        self.mask(&raw, &mut out);
        let keep = raw.len() - self.open_prefix(&raw);
        self.held.extend_from_slice(&raw[keep..]);
        self.held_out.extend_from_slice(&out[keep..]);
        out.truncate(keep);
        Bytes::from(out)
    }

    /// What was held back, masked: the body ended, so nothing completes it.
    pub fn finish(&mut self) -> Bytes {
        let raw = std::mem::take(&mut self.held);
        let mut out = std::mem::take(&mut self.held_out);
        self.mask(&raw, &mut out);
        Bytes::from(out)
    }

    /// Names of the secrets found since the last call.
    pub fn newly_found(&mut self) -> Vec<String> {
        let new: Vec<String> = self.found.difference(&self.reported).cloned().collect();
        self.reported.extend(new.iter().cloned());
        new
    }

    /// Masks in `out` every occurrence of a value in `raw` (the same bytes
    /// as they came), overlapping ones too; whether there was one.
    fn mask(&mut self, raw: &[u8], out: &mut [u8]) -> bool {
        let mut any = false;
        for &i in &self.which {
            for Mask { value, mask, .. } in &self.secrets.masks.0[i] {
                let mut from = 0;
                while let Some(at) = value.find(&raw[from..]) {
                    let at = from + at;
                    out[at..at + mask.len()].copy_from_slice(mask);
                    from = at + 1;
                }
                if from > 0 {
                    any = true;
                    self.found.insert(self.secrets.entries[i].name.clone());
                }
            }
        }
        any
    }

    /// Whether a header name holds a form of a value, lowercased.
    fn in_name(&mut self, name: &str) -> bool {
        for &i in &self.which {
            if self.secrets.masks.0[i].iter().any(|form| form.lower.find(name.as_bytes()).is_some()) {
                self.found.insert(self.secrets.entries[i].name.clone());
                return true;
            }
        }
        false
    }

    /// Every form of every guarded value.
    fn forms(&self) -> impl Iterator<Item = &Mask> {
        self.which.iter().flat_map(|&i| self.secrets.masks.0[i].iter())
    }

    /// Whether bytes are held back, waiting for the next chunk.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether a value occurs in `bytes`.
    fn occurs_in(&self, bytes: &[u8]) -> bool {
        self.forms().any(|form| form.value.find(bytes).is_some())
    }

    /// The length of the longest end of `bytes` that is a proper start of
    /// a value (what the next chunk could complete).
    fn open_prefix(&self, bytes: &[u8]) -> usize {
        self.forms().map(|form| open_prefix(bytes, form.value.needle())).max().unwrap_or(0)
    }
}

/// The length of the longest end of `bytes` that is a proper start of
/// `value`.
fn open_prefix(bytes: &[u8], value: &[u8]) -> usize {
    let Some(&first) = value.first() else { return 0 };
    let window = bytes.len().min(value.len() - 1);
    let tail = &bytes[bytes.len() - window..];
    // Only where the value's first byte is can one of its starts begin.
    memchr::memchr_iter(first, tail)
        .map(|at| tail.len() - at)
        .find(|&len| value.starts_with(&tail[tail.len() - len..]))
        .unwrap_or(0)
}
