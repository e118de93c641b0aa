//! Newline-delimited framing for MCP's stdio transport, bounded.
//!
//! [`LineReader`] yields one line at a time without its `\n` (or `\r\n`),
//! skipping blank lines. A line longer than the bound is not buffered: its
//! first [`OVERSIZED_PREFIX`] bytes are kept (enough to find its id with
//! [`scan_id`] so the error can be addressed) and the rest is discarded as
//! it streams past. Memory per direction is therefore at most the bound.

use std::io;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// Bytes kept from an oversized line.
pub const OVERSIZED_PREFIX: usize = 4096;

/// Read buffer per direction.
const READ_BUFFER: usize = 64 * 1024;

/// One line from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line within the bound.
    Message(Vec<u8>),
    /// A line over the bound: its first bytes and its full length.
    Oversized { prefix: Vec<u8>, size: usize },
}

/// Reads bounded lines from `R`.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of at most `max` bytes (not counting the newline).
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner: BufReader::with_capacity(READ_BUFFER, inner), max }
    }

    /// The next non-blank line; `None` at end of input. A last line without
    /// a newline still counts.
    pub async fn next(&mut self) -> io::Result<Option<Line>> {
        loop {
            let Some(line) = self.read_line().await? else { return Ok(None) };
            match &line {
                Line::Message(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
                _ => return Ok(Some(line)),
            }
        }
    }

    async fn read_line(&mut self) -> io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let mut size = 0usize;
        let mut ended = false;
        while !ended {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if size == 0 {
                    return Ok(None);
                }
                break;
            }
            let (take, used) = match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    ended = true;
                    (end, end + 1)
                }
                None => (chunk.len(), chunk.len()),
            };
            size += take;
            // Keep everything while within the bound, then only the prefix.
            let room = if size <= self.max { take } else { OVERSIZED_PREFIX.saturating_sub(buf.len()).min(take) };
            buf.extend_from_slice(&chunk[..room]);
            if size > self.max && buf.len() > OVERSIZED_PREFIX {
                buf.truncate(OVERSIZED_PREFIX);
            }
            self.inner.consume(used);
        }
        if buf.last() == Some(&b'\r') && size <= self.max {
            buf.pop();
            size -= 1;
        }
        Ok(Some(if size > self.max { Line::Oversized { prefix: buf, size } } else { Line::Message(buf) }))
    }
}

/// The top-level `"id"` of a (possibly truncated) JSON object, if it
/// appears in `prefix` as a string or a number.
pub fn scan_id(prefix: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < prefix.len() {
        match prefix[i] {
            b'"' => {
                let end = string_end(prefix, i)?;
                let after = skip_space(prefix, end + 1);
                if depth == 1 && prefix.get(after) == Some(&b':') && &prefix[i..=end] == b"\"id\"" {
                    return value_at(prefix, skip_space(prefix, after + 1));
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// A complete string or number starting at `i`.
fn value_at(bytes: &[u8], i: usize) -> Option<Value> {
    let end = match bytes.get(i)? {
        b'"' => string_end(bytes, i)? + 1,
        b'-' | b'0'..=b'9' => {
            let len =
                bytes[i..].iter().take_while(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')).count();
            // A number cut off by the prefix's end is not known to be complete.
            if i + len >= bytes.len() {
                return None;
            }
            i + len
        }
        _ => return None,
    };
    serde_json::from_slice(&bytes[i..end]).ok().filter(|v: &Value| v.is_string() || v.is_number())
}

#[cfg(test)]
mod tests;
