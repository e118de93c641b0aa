//! Recognises an HTTP/1.x request head and reads its `Host` header.
//!
//! Deliberately strict where leniency would let the proxy and the server
//! read different hosts (request smuggling shapes): two `Host` headers,
//! whitespace before a colon, or an obsolete folded line are `Invalid`.

use super::Parse;
use super::tls::host_name;

/// Request methods that mark a plain HTTP/1.x client.
const METHODS: [&[u8]; 9] = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"];
const LONGEST_METHOD: usize = 7;

/// The `Host` (lowercased, port stripped) of the request head at the start
/// of `bytes`; `None` inside `Done` when the request has no Host header.
pub(super) fn request_host(bytes: &[u8], max_bytes: usize) -> Parse<Option<String>> {
    match method(bytes) {
        Parse::Done(()) => {}
        Parse::NeedMore => return Parse::NeedMore,
        Parse::NotThis => return Parse::NotThis,
        Parse::Invalid(reason) => return Parse::Invalid(reason),
    }
    let window = &bytes[..bytes.len().min(max_bytes)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        return if bytes.len() >= max_bytes {
            Parse::Invalid("HTTP request head larger than the bound")
        } else {
            Parse::NeedMore
        };
    };
    parse_head(&window[..end])
}

/// Whether the bytes start with `METHOD SP`.
fn method(bytes: &[u8]) -> Parse<()> {
    let token_len = bytes.iter().take(LONGEST_METHOD + 1).take_while(|b| b.is_ascii_uppercase()).count();
    match bytes.get(token_len) {
        Some(b' ') if METHODS.contains(&&bytes[..token_len]) => Parse::Done(()),
        None if METHODS.iter().any(|m| m.starts_with(bytes)) => Parse::NeedMore,
        _ => Parse::NotThis,
    }
}

/// Parses the request line and header lines (`head` ends before CRLFCRLF).
fn parse_head(head: &[u8]) -> Parse<Option<String>> {
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    if !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0")) {
        return Parse::Invalid("request line does not end in HTTP/1.0 or HTTP/1.1");
    }
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
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(token) {
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
