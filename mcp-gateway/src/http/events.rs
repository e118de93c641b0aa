//! Server-sent events both ways: [`EventReader`] parses an upstream event
//! stream into events whose data is a bounded [`Line`] (an event over the
//! bound keeps only its prefix, so a stream is never buffered whole), and
//! [`message`] / [`endpoint`] encode the events the gateway sends.
//!
//! Parsing follows the WHATWG rules: a UTF-8 byte order mark at the very
//! start is dropped; lines end in CRLF, LF or CR; `data`
//! lines join with LF; a blank line dispatches; `:` starts a comment; an
//! event without data is not dispatched (keep-alives, priming events).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Body;

use super::body::BrokenBody;
use crate::framing::{Line, OVERSIZED_PREFIX};

/// Room for a field name beyond the data bound before a line counts as
/// too long to hold.
const FIELD_SLACK: usize = 64;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:`, `message` when absent.
    pub name: String,
    /// The joined `data:` lines.
    pub data: Line,
}

/// What [`EventReader::step`] found.
#[derive(Debug)]
pub(crate) enum Step {
    Event(Event),
    /// Raw bytes that end between two events are waiting
    /// ([`EventReader::take_settled`]).
    Settled,
    End,
}

/// The bytes a reader keeping them has read and not handed out.
#[derive(Debug)]
struct Raw {
    bytes: BytesMut,
    /// How many of `bytes` end between two events.
    settled: usize,
    bound: usize,
}

/// Reads events from an event-stream body.
#[derive(Debug)]
pub(crate) struct EventReader<B> {
    body: B,
    raw: Option<Raw>,
    /// The start was looked at for a byte order mark.
    started: bool,
    pending: BytesMut,
    eof: bool,
    /// Inside a line too long to hold: drop until its end (counting it
    /// into the data when it is a `data` line).
    skipping: Option<bool>,
    max: usize,
    name: Option<String>,
    data: Vec<u8>,
    size: usize,
    has_data: bool,
}

impl<B> EventReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Events whose data is at most `max` bytes are kept whole.
    pub fn new(body: B, max: usize) -> Self {
        EventReader {
            body,
            raw: None,
            started: false,
            pending: BytesMut::new(),
            eof: false,
            skipping: None,
            max,
            name: None,
            data: Vec::new(),
            size: 0,
            has_data: false,
        }
    }

    /// Also keeps the bytes read, until [`take_settled`](Self::take_settled)
    /// hands them out; more than `bound` of them not yet handed out (one
    /// event that long) breaks the stream.
    pub fn keeping_raw(mut self, bound: usize) -> Self {
        self.raw = Some(Raw { bytes: BytesMut::new(), settled: 0, bound });
        self
    }

    /// Stops keeping raw bytes (what was kept is dropped).
    pub fn stop_raw(&mut self) {
        self.raw = None;
    }

    /// The raw bytes read up to the last point between two events.
    pub fn take_settled(&mut self) -> Bytes {
        self.raw.as_mut().map_or_else(Bytes::new, |raw| raw.bytes.split_to(std::mem::take(&mut raw.settled)).freeze())
    }

    /// Every raw byte read and not handed out yet (at the end of a stream,
    /// an event it cut off).
    pub fn take_raw(&mut self) -> Bytes {
        self.raw.as_mut().map_or_else(Bytes::new, |raw| {
            raw.settled = 0;
            raw.bytes.split().freeze()
        })
    }

    /// The next event; `None` at the end of the stream (an event cut off
    /// by it is dropped, as the standard says).
    pub async fn next(&mut self) -> Result<Option<Event>, BrokenBody> {
        loop {
            match self.step().await? {
                Step::Event(event) => return Ok(Some(event)),
                Step::End => return Ok(None),
                // Only a reader keeping raw bytes has them.
                Step::Settled => drop(self.take_settled()),
            }
        }
    }

    /// The next event, or raw bytes settled while waiting for one.
    pub async fn step(&mut self) -> Result<Step, BrokenBody> {
        loop {
            if let Some(event) = self.take_lines() {
                return Ok(Step::Event(event));
            }
            if self.raw.as_ref().is_some_and(|raw| raw.settled > 0) {
                return Ok(Step::Settled);
            }
            if self.eof {
                return Ok(Step::End);
            }
            match self.body.frame().await {
                None => self.eof = true,
                Some(Err(error)) => return Err(BrokenBody(error.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                        if let Some(raw) = self.raw.as_mut() {
                            raw.bytes.extend_from_slice(&data);
                            if raw.bytes.len() > raw.bound {
                                return Err(BrokenBody(format!("an event over {} bytes", raw.bound)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Marks the raw bytes consumed so far as settled when no event is
    /// half read.
    fn settle(&mut self) {
        let between = self.name.is_none() && !self.has_data && self.skipping.is_none();
        if between && let Some(raw) = self.raw.as_mut() {
            raw.settled = raw.bytes.len() - self.pending.len();
        }
    }

    /// Consumes complete lines from `pending`; returns an event once a
    /// blank line dispatches one.
    fn take_lines(&mut self) -> Option<Event> {
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            // Two bytes of a mark may be all that came yet.
            if !self.eof && self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
                return None;
            }
            self.started = true;
            if self.pending.starts_with(BOM) {
                let _ = self.pending.split_to(BOM.len());
            }
        }
        loop {
            let Some((end, next)) = line_end(&self.pending, self.eof) else {
                self.hold_partial_line();
                return None;
            };
            let line = self.pending.split_to(next);
            let line = &line[..end];
            if let Some(data_line) = self.skipping.take() {
                if data_line {
                    self.size += line.len();
                }
                continue;
            }
            if line.is_empty() {
                let event = self.dispatch();
                self.settle();
                if event.is_some() {
                    return event;
                }
                continue;
            }
            self.field(line);
            self.settle();
        }
    }

    /// A line without its end yet: keep it while it may still fit, else
    /// start dropping it (its start decides whether it is data).
    fn hold_partial_line(&mut self) {
        // A CR last may be half of a CRLF: it stays for the next read.
        let keep = usize::from(self.pending.last() == Some(&b'\r'));
        let dropped = self.pending.len() - keep;
        if let Some(data_line) = self.skipping {
            if data_line {
                self.size += dropped;
            }
            let _ = self.pending.split_to(dropped);
            return;
        }
        if self.pending.len() <= self.max + FIELD_SLACK {
            return;
        }
        let line = self.pending.split_to(dropped);
        let data_line = line.starts_with(b"data");
        if data_line {
            let value = value_of(&line, 4);
            self.append(value);
        }
        self.skipping = Some(data_line);
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let value = value_of(line, colon);
        match &line[..colon] {
            b"data" => self.append(value),
            b"event" => self.name = Some(String::from_utf8_lossy(value).into_owned()),
            // Ids and retry hints are not relayed (see the module docs of
            // `http`): resumption is between the client and the gateway.
            _ => {}
        }
    }

    /// Adds one data line (and the LF that joins it to the next).
    fn append(&mut self, value: &[u8]) {
        if self.has_data {
            self.push(b"\n");
        }
        self.has_data = true;
        self.push(value);
    }

    fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        let room = if self.size <= self.max { bytes.len() } else { OVERSIZED_PREFIX.saturating_sub(self.data.len()) };
        self.data.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if self.size > self.max && self.data.len() > OVERSIZED_PREFIX {
            self.data.truncate(OVERSIZED_PREFIX);
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let name = self.name.take().unwrap_or_else(|| "message".to_string());
        let data = std::mem::take(&mut self.data);
        let size = std::mem::take(&mut self.size);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let data = if size > self.max { Line::Oversized { prefix: data, size } } else { Line::Message(data) };
        Some(Event { name, data })
    }
}

/// The value of a field whose name ends at `colon`: after the colon and
/// one optional space.
fn value_of(line: &[u8], colon: usize) -> &[u8] {
    let value = line.get(colon + 1..).unwrap_or_default();
    value.strip_prefix(b" ").unwrap_or(value)
}

/// (end of the line's text, start of the next line), if a whole line is
/// buffered. A CR at the very end waits for the next byte (it may be CRLF)
/// unless the stream ended.
fn line_end(buffer: &[u8], eof: bool) -> Option<(usize, usize)> {
    let at = buffer.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if buffer[at] == b'\n' {
        return Some((at, at + 1));
    }
    match buffer.get(at + 1) {
        Some(b'\n') => Some((at, at + 2)),
        Some(_) => Some((at, at + 1)),
        None if eof => Some((at, at + 1)),
        None => None,
    }
}

/// A `message` event carrying one JSON-RPC message.
pub(crate) fn message(json: &[u8]) -> Bytes {
    event("message", json)
}

/// The legacy transport's `endpoint` event.
pub(crate) fn endpoint(url: &str) -> Bytes {
    event("endpoint", url.as_bytes())
}

/// An event whose data may span lines (a JSON text the server pretty-printed).
fn event(name: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    let mut rest = data;
    loop {
        out.extend_from_slice(b"data: ");
        match line_end(rest, true) {
            Some((end, next)) => {
                out.extend_from_slice(&rest[..end]);
                out.push(b'\n');
                rest = &rest[next..];
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\n\n");
                return Bytes::from(out);
            }
        }
    }
}
