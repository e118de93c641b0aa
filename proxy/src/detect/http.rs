//! Recognises an HTTP/1.x request head and reads its `Host` header.
//!
//! Deliberately strict where leniency would let the proxy and the server
//! read different hosts (request smuggling shapes): two `Host` headers,
//! whitespace before a colon, or an obsolete folded line are `Invalid`.

use super::Parse;
use super::tls::host_name;

/// Methods that mark a line as an HTTP request even without a version
/// (HTTP/0.9's `GET /path`, which some servers still answer).
const METHODS: [&[u8]; 9] = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"];

/// The `Host` (lowercased, port stripped) of the request head at the start
/// of `bytes`; `None` inside `Done` when the request has no Host header.
///
/// What is HTTP is what a server might take for it, not only what a
/// well-behaved client sends: a first line that names an HTTP version
/// anywhere, or starts with a standard method, is HTTP-shaped, and is
/// either a request line Bridle reads exactly as hyper (and the upstream)
/// will, or `Invalid`. Only a line that no server would read as a request
/// (an SSH banner, a Redis command) is `NotThis`: spliced, where an
/// extension method (`PROPFIND`), a `PRI * HTTP/2.0` line that is not the
/// HTTP/2 preface (that is [`super::Protocol::H2c`]) or
/// a lower-case `post` would otherwise have carried requests past
/// per-request policy. Until the first line ends nothing is decided, but
/// for a first word no server takes for a method (a binary protocol's
/// bytes), so how the agent splits its writes changes nothing. (A lone
/// lower-case word with nothing after it yet is [`lone_word`]'s.)
pub(super) fn request_host(bytes: &[u8], max_bytes: usize) -> Parse<Option<String>> {
    let window = &bytes[..bytes.len().min(max_bytes)];
    let (word, after) = first_word(past_space(window));
    if !word.iter().all(is_tchar) {
        return Parse::NotThis;
    }
    let line_end = window.iter().position(|&b| b == b'\n');
    let Some(line_end) = line_end else {
        // A lower-case method with control bytes after it: no server that
        // takes the one (Go, hyper, h11) takes the other (git://'s
        // `0032git-upload-pack /repo\0host=…\0`).
        let lower = word.iter().any(u8::is_ascii_lowercase);
        if lower && after.is_some_and(|after| after.iter().any(is_control)) {
            return Parse::NotThis;
        }
        return if bytes.len() >= max_bytes {
            Parse::Invalid("HTTP request line larger than the bound")
        } else {
            Parse::NeedMore
        };
    };
    let line = window[..line_end].strip_suffix(b"\r").unwrap_or(&window[..line_end]);
    if !http_shaped(line) {
        return Parse::NotThis;
    }
    if let Err(reason) = request_line(line) {
        return Parse::Invalid(reason);
    }
    let Some(end) = find(window, b"\r\n\r\n") else {
        return if bytes.len() >= max_bytes {
            Parse::Invalid("HTTP request head larger than the bound")
        } else {
            Parse::NeedMore
        };
    };
    parse_head(&window[..end])
}

/// Whether `bytes` are a lone word with a lower-case letter and nothing
/// after it yet (no white space, no line end): a client-first protocol's
/// (`p`, `JDWP-Handshake`) as much as the start of a lower-case method,
/// which Go, hyper and h11 take ([`super::Protocol::FirstLine`]).
pub(super) fn lone_word(bytes: &[u8]) -> bool {
    bytes.iter().all(is_tchar) && bytes.iter().any(u8::is_ascii_lowercase)
}

/// A control byte no parser counts as white space.
fn is_control(b: &u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0e..=0x1b | 0x7f)
}

/// `line` past its leading white space.
fn past_space(line: &[u8]) -> &[u8] {
    &line[line.iter().position(|b| !is_space(b)).unwrap_or(line.len())..]
}

/// The first word of `rest` (which starts past white space), and what
/// follows the white space after it (`None`: no white space yet).
fn first_word(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut words = rest.splitn(2, is_space);
    (words.next().unwrap_or_default(), words.next())
}

/// White space to some request-line parser: Python's `str.split` also
/// splits at `\x0b`, `\x0c` and `\x1c`-`\x1f`, and, decoding Latin-1, at
/// `\x85` and `\xa0`.
fn is_space(b: &u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, 0x0b | 0x1c..=0x1f | 0x85 | 0xa0)
}

/// Whether a whole first line is one a server might read as a request: it
/// names an HTTP version (or RTSP's or ICE's, which Node's llhttp takes
/// too), starts (after any white space) with a standard method, then
/// white space (HTTP/0.9's `GET /path`), or with an upper-case word and a
/// target as llhttp reads one without a version (`PROPFIND /x`, `SOURCE
/// *`, `X http://…`); or it is a load balancer's PROXY protocol line.
fn http_shaped(line: &[u8]) -> bool {
    let names = |version: &[u8]| line.windows(version.len()).any(|w| w.eq_ignore_ascii_case(version));
    let versioned = names(b"HTTP/") || names(b"RTSP/") || names(b"ICE/");
    let rest = past_space(line);
    let (word, after) = first_word(rest);
    let method = after.is_some() && METHODS.contains(&word);
    let target = after.unwrap_or_default().trim_ascii_start();
    let upper = !word.is_empty() && word.iter().all(|b| is_tchar(b) && !b.is_ascii_lowercase());
    let targeted = upper && (target.starts_with(b"/") || target.starts_with(b"*") || names(b"://"));
    versioned || method || targeted || rest.starts_with(b"PROXY ")
}

/// `METHOD SP target SP HTTP/1.x`, exactly: a method in upper case (servers
/// differ on whether `post` is `POST`), a target without controls, and a
/// version hyper serves.
fn request_line(line: &[u8]) -> Result<(), &'static str> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not METHOD SP target SP version");
    };
    if method.is_empty() || !method.iter().all(is_tchar) {
        return Err("request method is not a token");
    }
    if method.iter().any(u8::is_ascii_lowercase) {
        return Err("request method not in upper case");
    }
    if target.is_empty() || target.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return Err("request target is empty or has control characters");
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(
            "request line does not end in HTTP/1.0 or HTTP/1.1 (HTTP/2 in the clear comes only with its whole preface)",
        );
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b)
}

/// Parses the request line and header lines (`head` ends before CRLFCRLF).
fn parse_head(head: &[u8]) -> Parse<Option<String>> {
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    // The request line was read by `request_line`.
    let _ = lines.next();
    let mut host = None;
    for line in lines {
        let Some((name, value)) = header(line) else {
            return Parse::Invalid("malformed header line");
        };
        if !name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        if host.is_some() {
            return Parse::Invalid("several Host headers");
        }
        host = Some(value);
    }
    match host.map(host_value) {
        None | Some(Ok(None)) => Parse::Done(None),
        Some(Ok(Some(name))) => Parse::Done(Some(name)),
        Some(Err(reason)) => Parse::Invalid(reason),
    }
}

/// `name: value` with a token name and the value's whitespace trimmed.
fn header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(is_tchar) {
        return None;
    }
    Some((name, value.trim_ascii()))
}

/// The host part of a Host value, lowercased; `Ok(None)` for an empty value.
fn host_value(value: &[u8]) -> Result<Option<String>, &'static str> {
    if value.is_empty() {
        return Ok(None);
    }
    let host = match value.strip_prefix(b"[") {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        Some(rest) => {
            let close = rest.iter().position(|&b| b == b']').ok_or("unclosed [ in Host")?;
            check_port(&rest[close + 1..])?;
            let literal = std::str::from_utf8(&rest[..close]).map_err(|_| "Host is not ASCII")?;
            literal.parse::<std::net::Ipv6Addr>().map_err(|_| "Host has an invalid IPv6 literal")?;
            return Ok(Some(literal.to_ascii_lowercase()));
        }
        None => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => {
                check_port(&value[colon..])?;
                &value[..colon]
            }
            None => value,
        },
    };
    host_name(host).map(Some).ok_or("Host is not a valid host name")
}

/// Empty, or `:` followed by 1–5 digits.
fn check_port(rest: &[u8]) -> Result<(), &'static str> {
    match rest.strip_prefix(b":") {
        None if rest.is_empty() => Ok(()),
        Some(digits) if (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => Ok(()),
        _ => Err("Host has an invalid port"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
