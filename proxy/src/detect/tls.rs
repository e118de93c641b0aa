//! A small, bounds-checked TLS ClientHello parser: enough to find the SNI.
//!
//! Handles a ClientHello split across TCP segments (the caller re-parses as
//! bytes arrive) and across several handshake records (the fragments are
//! reassembled). It never panics: every read is bounds-checked, and anything
//! off the RFC 8446 / RFC 6066 grammar is `Invalid` with a reason.

use super::Parse;
use super::reader::Reader;

/// TLS record content type `handshake`: the first byte of every ClientHello.
pub(super) const HANDSHAKE_RECORD: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0x0000;
const NAME_TYPE_HOST: u8 = 0x00;
/// RFC 8446 §5.1: a record's plaintext is at most 2^14 bytes.
const MAX_RECORD: usize = 1 << 14;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;

/// Whether `bytes` start with an SSLv2-format ClientHello (RFC 6101
/// appendix E.2): a 2-byte record length with the high bit set, message
/// type 1, a version (2.0, or SSL 3.0 to TLS 1.3 offered this way), then
/// the cipher specs (3 bytes each), session id (0 or 16 bytes) and
/// challenge (16 to 32 bytes), whose lengths add up to the record's. As
/// exact as that, so a binary protocol whose first byte has the high bit
/// set (msgpack, Thrift) is not taken for one.
pub(super) fn sslv2_hello(bytes: &[u8]) -> Parse<()> {
    const HEAD: usize = 11;
    // Each field as soon as its bytes are there: a short message of
    // another protocol is told apart without waiting for eleven bytes.
    let byte = |at: usize| bytes.get(at).copied();
    let word = |at: usize| Some(usize::from(u16::from_be_bytes([byte(at)?, byte(at + 1)?])));
    let fields = [
        byte(0).map(|b| b & 0x80 != 0),
        byte(2).map(|b| b == CLIENT_HELLO),
        byte(3).zip(byte(4)).map(|v| v == (0, 2) || (v.0 == 3 && v.1 <= 4)),
        word(5).map(|specs| specs > 0 && specs % 3 == 0),
        word(7).map(|session| session == 0 || session == 16),
        word(9).map(|challenge| (16..=32).contains(&challenge)),
    ];
    for fits in fields {
        match fits {
            Some(false) => return Parse::NotThis,
            Some(true) => {}
            None => return Parse::NeedMore,
        }
    }
    let total = [word(5), word(7), word(9)].into_iter().flatten().sum::<usize>();
    let length = word(0).unwrap_or(0) & 0x7fff;
    if length == HEAD - 2 + total { Parse::Done(()) } else { Parse::NotThis }
}

/// The SNI of the ClientHello at the start of `bytes` (`None` when it has
/// no server_name extension).
pub(super) fn client_hello_sni(bytes: &[u8], max_bytes: usize) -> Parse<Option<String>> {
    let message = match reassemble(bytes, max_bytes) {
        Parse::Done(message) => message,
        Parse::NeedMore => return Parse::NeedMore,
        Parse::NotThis => return Parse::NotThis,
        Parse::Invalid(reason) => return Parse::Invalid(reason),
    };
    match parse_body(Reader::new(&message)) {
        Some(result) => result,
        None => Parse::Invalid("ClientHello fields overrun their lengths"),
    }
}

/// Joins the handshake fragments of consecutive records until the whole
/// ClientHello body is there.
fn reassemble(bytes: &[u8], max_bytes: usize) -> Parse<Vec<u8>> {
    let mut records = Reader::new(bytes);
    let mut handshake = Vec::new();
    loop {
        match next_record(&mut records, handshake.is_empty()) {
            Record::Partial => return Parse::NeedMore,
            Record::Stop(parse) => return parse,
            Record::Payload(payload) => handshake.extend_from_slice(payload),
        }
        if let Some(done) = complete_message(&handshake, max_bytes) {
            return done;
        }
    }
}

/// One TLS record read off the front of the bytes.
enum Record<'a> {
    Payload(&'a [u8]),
    /// Not fully arrived yet.
    Partial,
    /// Parsing ends here with this result.
    Stop(Parse<Vec<u8>>),
}

/// The next record; `first` says whether it would start the ClientHello
/// (where anything else means "not TLS" rather than "broken TLS").
fn next_record<'a>(records: &mut Reader<'a>, first: bool) -> Record<'a> {
    let Some(header) = records.take(RECORD_HEADER) else {
        return Record::Partial;
    };
    let (kind, major, len) = (header[0], header[1], usize::from(u16::from_be_bytes([header[3], header[4]])));
    if kind != HANDSHAKE_RECORD || major != 3 {
        let broken = Parse::Invalid("a non-handshake record interrupted the ClientHello");
        return Record::Stop(if first { Parse::NotThis } else { broken });
    }
    if len == 0 || len > MAX_RECORD {
        return Record::Stop(Parse::Invalid("record length is zero or above 2^14"));
    }
    records.take(len).map_or(Record::Partial, Record::Payload)
}

/// `Some` once the reassembled handshake holds a whole message (or can be
/// rejected); `None` to read another record.
fn complete_message(handshake: &[u8], max_bytes: usize) -> Option<Parse<Vec<u8>>> {
    let mut r = Reader::new(handshake);
    let kind = r.u8()?;
    if kind != CLIENT_HELLO {
        return Some(Parse::Invalid("first handshake message is not a ClientHello"));
    }
    let len = r.u24()?;
    if len.saturating_add(HANDSHAKE_HEADER) > max_bytes {
        return Some(Parse::Invalid("ClientHello larger than the detection bound"));
    }
    let body = r.take(len)?;
    if !r.is_empty() {
        return Some(Parse::Invalid("bytes after the ClientHello in its records"));
    }
    Some(Parse::Done(body.to_vec()))
}

/// Walks the ClientHello body; `None` when a length overruns.
fn parse_body(mut r: Reader<'_>) -> Option<Parse<Option<String>>> {
    let _legacy_version = r.u16()?;
    let _random = r.take(32)?;
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Some(Parse::Invalid("session id longer than 32 bytes"));
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Some(Parse::Invalid("cipher suite list empty or odd"));
    }
    if r.vec8()?.is_empty() {
        return Some(Parse::Invalid("compression method list empty"));
    }
    if r.is_empty() {
        // A ClientHello without extensions (old clients): no SNI.
        return Some(Parse::Done(None));
    }
    let extensions = r.vec16()?;
    if !r.is_empty() {
        return Some(Parse::Invalid("bytes after the extensions"));
    }
    Some(find_sni(extensions))
}

/// The server_name extension's host name, if any.
fn find_sni(mut extensions: Reader<'_>) -> Parse<Option<String>> {
    let mut sni = None;
    let mut seen = false;
    while !extensions.is_empty() {
        let (Some(kind), Some(data)) = (extensions.u16(), extensions.vec16()) else {
            return Parse::Invalid("extension overruns the extension list");
        };
        if kind != EXT_SERVER_NAME {
            continue;
        }
        if seen {
            // RFC 8446 §4.2: one extension of each type; two SNIs would let
            // the proxy and the server read different names.
            return Parse::Invalid("two server_name extensions");
        }
        seen = true;
        match server_name(data) {
            Ok(name) => sni = name,
            Err(reason) => return Parse::Invalid(reason),
        }
    }
    Parse::Done(sni)
}

/// RFC 6066 §3: a list holding at most one host_name.
fn server_name(mut data: Reader<'_>) -> Result<Option<String>, &'static str> {
    let mut list = data.vec16().ok_or("server_name list overruns the extension")?;
    if !data.is_empty() || list.is_empty() {
        return Err("server_name extension is empty or has trailing bytes");
    }
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8().ok_or("server_name entry truncated")?;
        let name = list.vec16().ok_or("server_name entry overruns the list")?;
        if kind != NAME_TYPE_HOST {
            continue;
        }
        if host.is_some() {
            return Err("two host names in server_name");
        }
        host = Some(host_name(name.rest()).ok_or("server name is not a valid DNS host name")?);
    }
    Ok(host)
}

/// A DNS host name, lowercased, without a trailing dot.
pub(super) fn host_name(bytes: &[u8]) -> Option<String> {
    let name = bytes.strip_suffix(b".").unwrap_or(bytes);
    let valid_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let labels_ok = name.split(|&b| b == b'.').all(|label| !label.is_empty() && label.len() <= 63);
    if name.is_empty() || name.len() > 253 || !name.iter().all(valid_char) || !labels_ok {
        return None;
    }
    std::str::from_utf8(name).ok().map(str::to_ascii_lowercase)
}
