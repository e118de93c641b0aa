//! Stage 2: read the client's first bytes and say what they are.
//!
//! The bytes are consumed, not peeked with `MSG_PEEK`: the forward stage
//! writes them upstream before splicing, which keeps a ClientHello split
//! across several TCP segments simple to reassemble. Detection is bounded in
//! time (one deadline for the whole read, so a client trickling bytes cannot
//! stretch it) and in size.

mod http;
mod reader;
mod tls;

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::{Instant, timeout_at};

/// How long and how much detection may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectLimits {
    /// The whole detection window, from accept.
    pub window: Duration,
    /// The most bytes read before giving up (ClientHello or HTTP head).
    pub max_bytes: usize,
}

/// What the first bytes were.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// A complete, well-formed TLS ClientHello; `sni` is its server name.
    Tls { sni: Option<String> },
    /// A complete HTTP/1.x request head; `host` is its `Host` (no port).
    Http { host: Option<String> },
    /// The HTTP/2 connection preface in the clear (prior knowledge:
    /// plaintext gRPC, `curl --http2-prior-knowledge`); hosts come with
    /// each request (`:authority`).
    H2c,
    /// The client sent nothing within the window (SSH, SMTP, databases…).
    ServerSpeaksFirst,
    /// A first line not ended yet that a lenient server could still take
    /// for the start of a request (a client-first protocol's word, as `p`
    /// or `JDWP-Handshake`, sent alone before its answer): when inspecting
    /// it is relayed all but its end until the server answers first, or
    /// the line ends and says what it is.
    FirstLine,
    /// Bytes that are neither TLS nor HTTP.
    Opaque,
    /// It started like TLS (`tls`) or HTTP but was broken, truncated, too
    /// large or too slow to arrive within the window.
    Malformed { tls: bool, reason: &'static str },
}

/// The detection result and the bytes read to reach it (to be replayed
/// upstream first).
#[derive(Clone, Debug)]
pub struct Detected {
    pub protocol: Protocol,
    pub bytes: Vec<u8>,
}

/// One step of an incremental parse.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Parse<T> {
    Done(T),
    NeedMore,
    /// Not this protocol at all.
    NotThis,
    Invalid(&'static str),
}

/// Why reading stopped before the bytes could be classified.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Window,
    Eof,
    Full,
}

const READ_CHUNK: usize = 4096;

/// Reads from `io` until the first bytes are classified, the window closes,
/// the client stops sending, or `max_bytes` are read.
pub async fn detect<R: AsyncRead + Unpin>(io: &mut R, limits: DetectLimits) -> io::Result<Detected> {
    detect_after(Vec::new(), io, limits).await
}

/// [`detect`], with `bytes` already read from `io` (a client that spoke
/// after a silence).
pub async fn detect_after<R: AsyncRead + Unpin>(
    mut bytes: Vec<u8>,
    io: &mut R,
    limits: DetectLimits,
) -> io::Result<Detected> {
    let deadline = Instant::now() + limits.window;
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        if let Some(protocol) = classify(&bytes, limits.max_bytes) {
            return Ok(Detected { protocol, bytes });
        }
        let room = limits.max_bytes.saturating_sub(bytes.len()).min(READ_CHUNK);
        if room == 0 {
            return Ok(give_up(bytes, Stop::Full));
        }
        let n = match timeout_at(deadline, io.read(&mut chunk[..room])).await {
            Err(_elapsed) => return Ok(give_up(bytes, Stop::Window)),
            Ok(read) => read?,
        };
        if n == 0 {
            return Ok(give_up(bytes, Stop::Eof));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Classifies what has arrived so far; `None` means "wait for more".
pub fn classify(bytes: &[u8], max_bytes: usize) -> Option<Protocol> {
    let first = *bytes.first()?;
    if first == tls::HANDSHAKE_RECORD {
        return match tls::client_hello_sni(bytes, max_bytes) {
            Parse::Done(sni) => Some(Protocol::Tls { sni }),
            Parse::NeedMore => None,
            Parse::NotThis => Some(Protocol::Opaque),
            Parse::Invalid(reason) => Some(Protocol::Malformed { tls: true, reason }),
        };
    }
    if let Some(parse) = h2c_preface(bytes) {
        return parse;
    }
    // A load balancer's PROXY protocol header (v2's binary signature; v1's
    // line is refused as HTTP-shaped): servers behind it read the request
    // that follows, so it is never opaque.
    if bytes.starts_with(PROXY_V2) {
        return Some(Protocol::Malformed { tls: false, reason: "a PROXY protocol header" });
    }
    if PROXY_V2.starts_with(bytes) {
        return None;
    }
    // An SSLv2-format ClientHello: servers that still take one would hold
    // TLS Bridle cannot read, so it is never opaque.
    if first & 0x80 != 0 {
        match tls::sslv2_hello(bytes) {
            Parse::NeedMore => return None,
            Parse::Done(()) => return Some(Protocol::Malformed { tls: true, reason: "SSLv2-format ClientHello" }),
            Parse::NotThis | Parse::Invalid(_) => {}
        }
    }
    // RFC 9112 §2.2: servers skip empty lines before a request line, so
    // detection must too, or "\r\nGET …" would pass as opaque and be
    // spliced past inspection.
    let rest = &bytes[leading_blank_lines(bytes)..];
    if rest.is_empty() {
        return None;
    }
    if http::lone_word(rest) {
        return Some(Protocol::FirstLine);
    }
    match http::request_host(rest, max_bytes) {
        Parse::Done(host) => Some(Protocol::Http { host }),
        Parse::NeedMore => None,
        Parse::NotThis => Some(Protocol::Opaque),
        Parse::Invalid(reason) => Some(Protocol::Malformed { tls: false, reason }),
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The PROXY protocol v2 signature.
const PROXY_V2: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

/// What `bytes` say if they are (`Some(Some(H2c))`) or may yet be
/// (`Some(None)`: wait) the HTTP/2 preface; `None` if they are not.
fn h2c_preface(bytes: &[u8]) -> Option<Option<Protocol>> {
    if bytes.starts_with(H2_PREFACE) {
        return Some(Some(Protocol::H2c));
    }
    H2_PREFACE.starts_with(bytes).then_some(None)
}

/// How many bytes of CR and LF precede a request line: all of them, as
/// servers skip them all (a client sending nothing else reaches the
/// detection bound or window, and is malformed).
pub fn leading_blank_lines(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// The verdict when reading stopped with the bytes still unclassified.
fn give_up(bytes: Vec<u8>, stop: Stop) -> Detected {
    let protocol = match (bytes.first(), stop) {
        (None, _) => Protocol::ServerSpeaksFirst,
        (Some(&tls::HANDSHAKE_RECORD), Stop::Full) => {
            Protocol::Malformed { tls: true, reason: "ClientHello larger than the detection bound" }
        }
        (Some(&tls::HANDSHAKE_RECORD), _) => Protocol::Malformed {
            tls: true,
            reason: "ClientHello incomplete when the client stopped or the window closed",
        },
        (Some(_), Stop::Full) => Protocol::Malformed { tls: false, reason: "HTTP request head larger than the bound" },
        // A first line still without its end (an upper-case word, a word
        // and more: a client-first protocol waiting for its answer) is
        // relayed all but its end; not a hello in SSLv2's format, which
        // would carry TLS past inspection.
        (Some(&first), _)
            if !bytes.contains(&b'\n') && (first & 0x80 == 0 || tls::sslv2_hello(&bytes) == Parse::NotThis) =>
        {
            Protocol::FirstLine
        }
        (Some(_), _) => Protocol::Malformed {
            tls: false,
            reason: "HTTP request head incomplete when the client stopped or the window closed",
        },
    };
    Detected { protocol, bytes }
}

#[cfg(test)]
mod tests;
