//! Malformed packets get FORMERR when they carry an id, nothing otherwise,
//! a notice on the record either way, and the resolver keeps serving.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Harness, PROMPT, addresses, query_bytes, udp_exchange, udp_query};

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_udp_gets_formerr_or_nothing_and_the_resolver_keeps_serving() {
    let h = Harness::start(|_| {}).await;
    let short = Duration::from_millis(300);
    // No id at all: dropped.
    assert_eq!(udp_exchange(h.addr, &[0x17], short).await, None);
    // A header that stops short.
    let reply = udp_exchange(h.addr, &[0xbe, 0xef, 0x01, 0x00, 0x00], PROMPT).await.expect("formerr");
    assert_eq!((&reply[..2], rcode(&reply), reply[2] & 0x80), (&[0xbe, 0xef][..], 1, 0x80));
    // QDCOUNT 2 on an otherwise valid query.
    let mut two = query_bytes(0x1111, "allowed.test.", RecordType::A);
    two[5] = 2;
    let reply = udp_exchange(h.addr, &two, PROMPT).await.expect("formerr");
    assert_eq!((&reply[..2], rcode(&reply)), (&[0x11, 0x11][..], 1));
    // A question cut in the middle of its name.
    let cut = query_bytes(0x2222, "allowed.test.", RecordType::A);
    let reply = udp_exchange(h.addr, &cut[..16], PROMPT).await.expect("formerr");
    assert_eq!(rcode(&reply), 1);
    // A response sent to the resolver is never answered (no reflection).
    let mut response = query_bytes(0x3333, "allowed.test.", RecordType::A);
    response[2] |= 0x80;
    assert_eq!(udp_exchange(h.addr, &response, short).await, None);
    let ok = udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(ok.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&ok).len(), 1);
    let notices = h.notices();
    assert_eq!(notices.len(), 5, "{notices:?}");
    assert!(notices.iter().all(|n| n["component"] == "dns"));
    assert!(notices.iter().any(|n| n["message"].as_str().is_some_and(|m| m.contains("QDCOUNT is not 1"))));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tcp_gets_formerr_and_garbage_closes_only_that_connection() {
    let h = Harness::start(|_| {}).await;
    let mut stream = TcpStream::connect(h.addr).await.expect("connect");
    let garbage = [0x0a, 0x0b, 0x00, 0x00, 0x00, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    stream.write_all(&(garbage.len() as u16).to_be_bytes()).await.expect("len");
    stream.write_all(&garbage).await.expect("garbage");
    let len = tokio::time::timeout(PROMPT, stream.read_u16()).await.expect("in time").expect("len");
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.expect("reply");
    assert_eq!((&reply[..2], rcode(&reply)), (&[0x0a, 0x0b][..], 1));
    // An empty frame has no id: the connection is closed.
    stream.write_all(&[0, 0]).await.expect("empty frame");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PROMPT, stream.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(read.is_ok_and(|n| n == 0));
    let ok = udp_query(h.addr, "allowed.test.", RecordType::A).await;
    assert_eq!(ok.metadata.response_code, ResponseCode::NoError);
    h.stop().await;
}
