//! Domain fronting: the TLS server name (SNI), the `Host` header and the
//! HTTP/2 `:authority` must all name one host. A client that shows the
//! proxy (and its policy) `allowed.test` in the handshake and then asks
//! for `evil.test` inside the tunnel is refused.
//!
//! Names are compared as DNS names: case-insensitive, one trailing dot
//! ignored, port ignored (a port is not a different host, and the
//! connection's port is decided separately). IP literals are compared as
//! addresses, so `[::1]` equals `[0:0:0:0:0:0:0:1]`. Absent values are not
//! compared; a present value that is not a host at all is a mismatch. For
//! `:authority` only, `userinfo@` is dropped (RFC 3986 allows it there; it
//! is never part of the host). It never resolves names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A reason when `sni`, `host_header` and `authority` do not all name the
/// same host; `None` when they agree (or fewer than two are present and
/// all present ones are well formed).
pub fn authority_mismatch(sni: Option<&str>, host_header: Option<&str>, authority: Option<&str>) -> Option<String> {
    let authority = authority.map(|a| a.rsplit_once('@').map_or(a, |(_, host)| host));
    let named = [("TLS server name", sni), ("Host header", host_header), (":authority", authority)];
    let mut first: Option<(&str, &str, Host)> = None;
    for (what, value) in named {
        let Some(value) = value else { continue };
        let Some(host) = parse(value) else {
            return Some(format!("{what} {value:?} is not a valid host"));
        };
        match &first {
            None => first = Some((what, value, host)),
            Some((first_what, first_value, first_host)) if *first_host != host => {
                return Some(format!("{first_what} {first_value:?} does not match {what} {value:?}"));
            }
            Some(_) => {}
        }
    }
    None
}

/// `value` (a host, optionally with a port) in the one spelling this module
/// compares: a lowercase DNS name without trailing dot, or the canonical
/// text of an IP address; `None` if it is not a host.
pub(crate) fn normalize_host(value: &str) -> Option<String> {
    parse(value).map(|host| match host {
        Host::Name(name) => name.to_ascii_lowercase(),
        Host::Ip(ip) => ip.to_string(),
    })
}

/// A host as compared: a DNS name (compared without regard to ASCII case)
/// or an address. Parsing one allocates nothing: every intercepted request
/// is checked.
#[derive(Debug)]
enum Host<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

impl PartialEq for Host<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }
}

/// `name`, `name:port`, `v4`, `v4:port`, `[v6]`, `[v6]:port`; a bare v6
/// literal too (some clients put one in SNI).
fn parse(value: &str) -> Option<Host<'_>> {
    if let Some(rest) = value.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        port_ok(after)?;
        return literal.parse::<Ipv6Addr>().ok().map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    if value.bytes().filter(|&b| b == b':').nth(1).is_some() {
        // More than one colon: only a bare IPv6 literal may have that.
        return value.parse::<Ipv6Addr>().ok().map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) => {
            port_digits_ok(port)?;
            host
        }
        None => value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // No colon is left, so only an IPv4 literal can be an address, and one
    // ends in a digit.
    if host.ends_with(|c: char| c.is_ascii_digit())
        && let Ok(ip) = host.parse::<Ipv4Addr>()
    {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63;
    let byte_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let valid = !host.is_empty() && host.len() <= 253 && host.bytes().all(byte_ok) && host.split('.').all(label_ok);
    valid.then_some(Host::Name(host))
}

/// Empty, or `:` and 1 to 5 digits.
fn port_ok(rest: &str) -> Option<()> {
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some(()),
        Some(digits) => port_digits_ok(digits),
        None => None,
    }
}

/// 1 to 5 digits.
fn port_digits_ok(digits: &str) -> Option<()> {
    ((1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(sni: Option<&str>, host: Option<&str>, authority: Option<&str>) {
        assert_eq!(authority_mismatch(sni, host, authority), None, "{sni:?} {host:?} {authority:?}");
    }

    fn differ(sni: Option<&str>, host: Option<&str>, authority: Option<&str>) -> String {
        authority_mismatch(sni, host, authority).unwrap_or_else(|| panic!("{sni:?} {host:?} {authority:?} agree"))
    }

    #[test]
    fn same_host_in_every_spelling_agrees() {
        let s = Some;
        agree(s("api.allowed.test"), s("api.allowed.test"), None); // curl, HTTP/1.1
        agree(s("api.allowed.test"), None, s("api.allowed.test")); // curl --http2
        agree(s("api.allowed.test"), s("api.allowed.test"), s("api.allowed.test"));
        agree(s("API.Allowed.Test"), s("api.allowed.test:443"), s("api.allowed.test.:8443"));
        agree(s("api.allowed.test."), s("api.allowed.test"), None);
        agree(s("127.0.0.1"), s("127.0.0.1:8080"), None);
        agree(None, s("[::1]:8080"), s("[0:0:0:0:0:0:0:1]"));
        agree(s("::1"), s("[::1]"), None);
        agree(None, None, s("user:pw@api.allowed.test:443"));
        agree(None, s("allowed.test"), None);
        agree(None, None, None);
    }

    #[test]
    fn fronting_shapes_differ() {
        let s = Some;
        let reason = differ(s("allowed.test"), s("evil.test"), None);
        assert_eq!(reason, r#"TLS server name "allowed.test" does not match Host header "evil.test""#);
        let reason = differ(s("allowed.test"), None, s("evil.test:443"));
        assert_eq!(reason, r#"TLS server name "allowed.test" does not match :authority "evil.test:443""#);
        let reason = differ(None, s("allowed.test"), s("evil.test"));
        assert_eq!(reason, r#"Host header "allowed.test" does not match :authority "evil.test""#);
        differ(s("allowed.test"), s("allowed.test"), s("evil.test"));
        differ(s("allowed.test"), s("sub.allowed.test"), None);
        differ(s("allowed.test"), s("allowed.test.evil.test"), None);
        differ(s("127.0.0.1"), s("127.0.0.2"), None);
        differ(s("allowed.test"), s("127.0.0.1"), None);
        differ(s("allowed.test"), None, s("allowed.test@evil.test"));
    }

    #[test]
    fn normalized_spellings() {
        let cases = [
            ("API.Test.:443", Some("api.test")),
            ("[0:0::1]:80", Some("::1")),
            ("::1", Some("::1")),
            ("127.0.0.1.", Some("127.0.0.1")),
            ("a_b.test", Some("a_b.test")),
            ("*.test", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(normalize_host(value).as_deref(), want, "{value:?}");
        }
    }

    #[test]
    fn malformed_values_are_mismatches() {
        let s = Some;
        for bad in [
            "",
            "allowed.test:",
            "allowed.test:99999x",
            "allowed.test:123456",
            "a..b",
            "allowed test",
            "[::1",
            "[nope]:1",
            "allowed.test/path",
            "user@allowed.test",
            "evil.test\0allowed.test",
            "%61llowed.test",
        ] {
            let reason = differ(s("allowed.test"), s(bad), None);
            assert!(reason.contains("is not a valid host"), "{bad:?}: {reason}");
        }
        let reason = differ(s("a b"), None, None);
        assert_eq!(reason, r#"TLS server name "a b" is not a valid host"#);
    }
}
