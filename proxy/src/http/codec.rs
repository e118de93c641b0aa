//! The two small encodings the request analyses undo: percent-encoding (a
//! path or query may spell `git-receive-pack` as `git%2Dreceive%2Dpack`, and
//! the server decodes it) and base64 (HTTP Basic credentials hide a
//! placeholder). Pure functions on bytes; they never fail loudly, because
//! a bad encoding is the peer's problem, not ours: callers get `None` or
//! the input back.

/// `%XX` sequences decoded; a malformed `%` is kept as written, as most
/// servers do. Not `+` → space: that is only form bodies.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 3).filter(|_| bytes[i] == b'%').and_then(|hex| hex_byte(hex[0], hex[1]));
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Percent-decoded text when it is UTF-8, else `None`.
pub(crate) fn percent_decode_str(text: &str) -> Option<String> {
    String::from_utf8(percent_decode(text)).ok()
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let nibble = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    Some(nibble(high)? << 4 | nibble(low)?)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as HTTP Basic uses.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padding optional; `None` on any other character.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 || text.len() - digits.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            let value = ALPHABET.iter().position(|a| a == c)?;
            n |= u32::try_from(value).ok()? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let cases: &[(&str, &[u8])] = &[
            ("/repo.git/git%2Dreceive%2Dpack", b"/repo.git/git-receive-pack"),
            ("@scope%2fname", b"@scope/name"),
            ("@scope%2Fname", b"@scope/name"),
            ("a+b", b"a+b"),
            ("100%", b"100%"),
            ("%zz%4", b"%zz%4"),
            ("%ff", b"\xff"),
            ("", b""),
        ];
        for (text, want) in cases {
            assert_eq!(percent_decode(text), *want, "{text}");
        }
        assert_eq!(percent_decode_str("%ff"), None);
        assert_eq!(percent_decode_str("a%20b").as_deref(), Some("a b"));
    }

    #[test]
    fn base64_round_trips_rfc4648_vectors() {
        let vectors =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(base64_decode("eC1hY2Nlc3MtdG9rZW46YWJj").as_deref(), Some(&b"x-access-token:abc"[..]));
        for bad in ["Z", "Zm9v!", "Zg===", "Zm 9v"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
