//! The on-disk line format and its byte-exact checker.
//!
//! ```text
//! {"seq":N,"time":"2026-11-27T06:00:00.000000Z","prev":"<64 hex>",<entry fields>,"hash":"<64 hex>"}\n
//! ```
//!
//! `hash` is SHA-256 of the line's bytes before `,"hash":"`. Checking a line
//! never re-serializes it: the checker splits at the last `,"hash":"`, hashes
//! the bytes before it and parses the fixed header by hand, so any edit to
//! any byte shows up as a mismatch.

use std::fmt;
use std::io::Write as _;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

const HASH_KEY: &[u8] = br#","hash":""#;
const HEAD_SEQ: &[u8] = br#"{"seq":"#;
const HEAD_TIME: &[u8] = br#","time":""#;
const HEAD_PREV: &[u8] = br#"","prev":""#;
const TYPE_KEY: &[u8] = br#","type":""#;

/// A SHA-256 digest linking records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev` of record 0.
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// Parses exactly 64 lowercase hex digits.
    pub fn from_hex(text: &[u8]) -> Option<Hash> {
        if text.len() != 64 || !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }

    fn write_hex(&self, out: &mut Vec<u8>) {
        let mut text = [0u8; 64];
        // Cannot fail: the output is exactly twice the input.
        if hex::encode_to_slice(self.0, &mut text).is_ok() {
            out.extend_from_slice(&text);
        }
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Why a line is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordFault {
    #[error("no \"hash\" field")]
    MissingHash,
    #[error("hash field is not 64 lowercase hex digits followed by \"}}")]
    BadHashField,
    #[error("hash mismatch: stored {stored}, content hashes to {computed}")]
    HashMismatch { stored: Hash, computed: Hash },
    #[error("record does not start with {{\"seq\":N,\"time\":\"…\",\"prev\":\"<64 hex>\"")]
    BadHeader,
    #[error("record is not valid JSON: {detail}")]
    BadJson { detail: String },
}

/// The chain fields of a line that passed [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub prev: Hash,
    pub hash: Hash,
    /// The entry's `type` when it directly follows the header (as written).
    pub type_name: Option<&'a str>,
}

/// Appends one complete record line, newline included, to `buf` and returns
/// its hash. `fields` is the entry as it follows the header: `,"type":…,…`.
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, time: &DateTime<Utc>, prev: &Hash, fields: &[u8]) -> Hash {
    let start = buf.len();
    buf.extend_from_slice(HEAD_SEQ);
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{seq}");
    buf.extend_from_slice(HEAD_TIME);
    write_time(buf, time);
    buf.extend_from_slice(HEAD_PREV);
    prev.write_hex(buf);
    buf.push(b'"');
    buf.extend_from_slice(fields);
    let hash = Hash::of(&buf[start..]);
    buf.extend_from_slice(HASH_KEY);
    hash.write_hex(buf);
    buf.extend_from_slice(b"\"}\n");
    hash
}

/// Writes a JSON object's fields as they follow the header, `type` first:
/// `,"type":"notice","message":"…"`.
pub(crate) fn write_fields(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let fields = map.get_key_value("type").into_iter().chain(map.iter().filter(|(k, _)| *k != "type"));
    for (key, value) in fields {
        out.push(b',');
        // Serializing a string or a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// RFC 3339, UTC, microseconds: `2026-11-27T06:00:00.000123Z`.
fn write_time(buf: &mut Vec<u8>, time: &DateTime<Utc>) {
    let micros = time.timestamp_subsec_micros().min(999_999);
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
    );
}

/// Checks one line (without its `\n`): hash first, then header, then JSON.
pub fn check(line: &[u8]) -> Result<Checked<'_>, RecordFault> {
    let split = rfind(line, HASH_KEY).ok_or(RecordFault::MissingHash)?;
    let (content, suffix) = line.split_at(split);
    let suffix = &suffix[HASH_KEY.len()..];
    let stored = match suffix.strip_suffix(b"\"}") {
        Some(hex) => Hash::from_hex(hex).ok_or(RecordFault::BadHashField)?,
        None => return Err(RecordFault::BadHashField),
    };
    let computed = Hash::of(content);
    if computed != stored {
        return Err(RecordFault::HashMismatch { stored, computed });
    }
    let (seq, time, prev, rest) = parse_header(content).ok_or(RecordFault::BadHeader)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(line)
        .map_err(|e| RecordFault::BadJson { detail: e.to_string() })?;
    Ok(Checked { seq, time, prev, hash: stored, type_name: type_name(rest) })
}

/// Best effort `seq` of a damaged line, for error messages.
pub fn guess_seq(line: &[u8]) -> Option<u64> {
    parse_header(line).map(|(seq, ..)| seq)
}

/// `(seq, time, prev, rest after the header)`.
fn parse_header(content: &[u8]) -> Option<(u64, &str, Hash, &[u8])> {
    let rest = content.strip_prefix(HEAD_SEQ)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(HEAD_TIME)?;
    let time_len = rest.iter().position(|b| *b == b'"')?;
    let time = std::str::from_utf8(&rest[..time_len]).ok()?;
    let rest = rest[time_len..].strip_prefix(HEAD_PREV)?;
    let prev = Hash::from_hex(rest.get(..64)?)?;
    let rest = rest[64..].strip_prefix(b"\"")?;
    Some((seq, time, prev, rest))
}

fn type_name(rest: &[u8]) -> Option<&str> {
    let rest = rest.strip_prefix(TYPE_KEY)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|window| window == needle)
}

#[cfg(test)]
mod tests;
