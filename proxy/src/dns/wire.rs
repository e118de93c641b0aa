//! Stage 1: turn a packet into one validated question, or into the error
//! answer (or silence) a malformed packet gets.
//!
//! The header is read by hand before hickory parses anything, so a packet
//! hickory rejects can still be answered with its own id.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

/// Smallest UDP payload every DNS client accepts (RFC 1035).
pub const MIN_UDP: usize = 512;
/// The EDNS payload size the resolver advertises (the DNS flag day value:
/// fits in one IPv6 packet, no fragmentation).
pub const EDNS_UDP: u16 = 1232;

/// A query that can be decided.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: u16,
    pub recursion_desired: bool,
    /// The question exactly as asked (case preserved for the echo).
    pub question: Query,
    /// Lowercase, no trailing dot: the cache key and the event's qname.
    pub qname: String,
    /// Type mnemonic ("A", "TXT", …; `TYPE<n>` for unknown types).
    pub qtype: String,
    /// Whether the client sent EDNS, and so expects an OPT record back.
    pub edns: bool,
    /// Largest UDP response the client accepts.
    pub max_udp: usize,
}

/// What a packet turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Query(Box<Request>),
    /// Not decidable, but it has an id: send these bytes back.
    Reply {
        bytes: Vec<u8>,
        why: &'static str,
    },
    /// Nothing to answer (no id, or the packet is itself a response).
    Drop {
        why: &'static str,
    },
}

/// Parses one client packet.
pub fn parse(bytes: &[u8]) -> Parsed {
    let Some(id) = bytes.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Parsed::Drop { why: "packet shorter than a message id" };
    };
    let flags = bytes.get(2).copied().unwrap_or(0);
    if flags & 0x80 != 0 {
        // Answering responses lets two resolvers bounce packets forever.
        return Parsed::Drop { why: "packet is a response, not a query" };
    }
    let error = |rcode, why| Parsed::Reply { bytes: error_bytes(id, flags, rcode), why };
    if bytes.len() < 12 {
        return error(ResponseCode::FormErr, "packet shorter than a DNS header");
    }
    if (flags >> 3) & 0x0f != 0 {
        return error(ResponseCode::NotImp, "opcode other than QUERY");
    }
    if u16::from_be_bytes([bytes[4], bytes[5]]) != 1 {
        return error(ResponseCode::FormErr, "QDCOUNT is not 1");
    }
    let Ok(message) = Message::from_vec(bytes) else {
        return error(ResponseCode::FormErr, "message does not parse");
    };
    let Some(question) = message.queries.first().cloned() else {
        return error(ResponseCode::FormErr, "no question");
    };
    // A label holding a dot is text no host name has, and the decision's
    // name (`x\.api.example.com`) would read as inside `api.example.com`
    // while the name asked for is a sibling of it.
    if question.name.iter().any(|label| label.contains(&b'.')) {
        return error(ResponseCode::FormErr, "a label holds a dot");
    }
    let max_udp = message.edns.as_ref().map_or(MIN_UDP, |e| usize::from(e.max_payload()).max(MIN_UDP));
    Parsed::Query(Box::new(Request {
        id,
        recursion_desired: message.metadata.recursion_desired,
        qname: normalize(&question),
        qtype: mnemonic(question.query_type),
        question,
        edns: message.edns.is_some(),
        max_udp,
    }))
}

/// A header-only error response echoing `id`, the opcode and RD.
pub fn error_bytes(id: u16, flags: u8, rcode: ResponseCode) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    let flags = 0x80 | (flags & 0x79);
    let rcode = (u16::from(rcode) & 0x0f) as u8;
    vec![hi, lo, flags, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The response to `request`, encoded and made to fit `max_len`: when the
/// records do not fit, the answer is truncated (TC set) so the client
/// retries over TCP, as RFC 1035 says.
pub fn response(
    request: &Request,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    max_len: usize,
) -> Vec<u8> {
    let mut message = Message::response(request.id, OpCode::Query);
    message.metadata.message_type = MessageType::Response;
    message.metadata.recursion_desired = request.recursion_desired;
    message.metadata.recursion_available = true;
    message.metadata.response_code = rcode;
    message.add_query(request.question.clone());
    if request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP);
        message.set_edns(edns);
    }
    message.insert_answers(answers);
    message.insert_authorities(authorities);
    let encoded = message.to_vec().ok().filter(|bytes| bytes.len() <= max_len);
    match encoded {
        Some(bytes) => bytes,
        None => message.truncate().to_vec().unwrap_or_else(|_| error_bytes(request.id, 0x01, ResponseCode::ServFail)),
    }
}

/// The event's qname: lowercase, no trailing dot.
pub fn normalize(question: &Query) -> String {
    let ascii = question.name.to_ascii().to_ascii_lowercase();
    ascii.strip_suffix('.').unwrap_or(&ascii).to_string()
}

/// The qtype mnemonic; RFC 3597 `TYPE<n>` for types hickory does not know.
pub fn mnemonic(qtype: RecordType) -> String {
    match qtype {
        RecordType::Unknown(code) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: u16, flags: u8, qdcount: u16) -> Vec<u8> {
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.extend([flags, 0]);
        bytes.extend(qdcount.to_be_bytes());
        bytes.extend([0; 6]);
        bytes
    }

    fn rcode(parsed: Parsed) -> (u16, u8) {
        match parsed {
            Parsed::Reply { bytes, .. } => (u16::from_be_bytes([bytes[0], bytes[1]]), bytes[3] & 0x0f),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_label_holding_a_dot_is_a_formerr() {
        // x.api (one label) + example + com, type A, class IN.
        let mut packet = header(0x1234, 0x01, 1);
        packet.extend(b"\x05x.api\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(rcode(parse(&packet)), (0x1234, 1));
        let mut fine = header(0x1235, 0x01, 1);
        fine.extend(b"\x01x\x03api\x07example\x03com\x00\x00\x01\x00\x01");
        assert!(matches!(parse(&fine), Parsed::Query(q) if q.qname == "x.api.example.com"));
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        assert!(matches!(parse(&[]), Parsed::Drop { .. }));
        assert!(matches!(parse(&[7]), Parsed::Drop { .. }));
        assert!(matches!(parse(&header(9, 0x80, 1)), Parsed::Drop { .. }), "responses are never answered");
        assert_eq!(rcode(parse(&[0xab, 0xcd, 0x01])), (0xabcd, 1));
        assert_eq!(rcode(parse(&header(5, 0x01, 0))), (5, 1), "QDCOUNT 0");
        assert_eq!(rcode(parse(&header(6, 0x01, 2))), (6, 1), "QDCOUNT 2");
        assert_eq!(rcode(parse(&header(7, 0x01, 1))), (7, 1), "question missing");
        assert_eq!(rcode(parse(&header(8, 0x10, 1))), (8, 4), "opcode 2 → NOTIMP");
    }

    #[test]
    fn a_query_parses_to_a_normalized_request() {
        let mut message = Message::query();
        message.add_query(Query::query(
            hickory_proto::rr::Name::from_ascii("Allowed.TEST.").expect("name"),
            RecordType::AAAA,
        ));
        let parsed = parse(&message.to_vec().expect("encode"));
        let Parsed::Query(request) = parsed else { panic!("expected a query") };
        assert_eq!(
            (request.qname.as_str(), request.qtype.as_str(), request.max_udp),
            ("allowed.test", "AAAA", MIN_UDP)
        );
        assert_eq!(mnemonic(RecordType::Unknown(65280)), "TYPE65280");
    }
}
