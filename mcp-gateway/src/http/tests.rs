//! Bounded bodies, event streams both ways, origins; and the whole proxy on
//! loopback against a scripted upstream (real sockets, no Python).

use std::convert::Infallible;

use bytes::Bytes;
use hyper::body::Frame;
use serde_json::json;

use super::body::read_bounded;
use super::events::{self, EventReader};
use super::is_loopback_origin;
use crate::framing::Line;

mod pool;
mod proxy;

/// A body delivered in the given chunks.
pub(super) struct Chunks(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.next().map(|chunk| Ok(Frame::data(chunk))))
    }
}

pub(super) fn chunked(chunks: &[&[u8]]) -> Chunks {
    let chunks: Vec<Bytes> = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
    Chunks(chunks.into_iter())
}

async fn events_of(chunks: &[&[u8]], max: usize) -> Vec<(String, Line)> {
    let mut reader = EventReader::new(chunked(chunks), max);
    let mut out = Vec::new();
    while let Some(event) = reader.next().await.expect("readable") {
        out.push((event.name, event.data));
    }
    out
}

fn message(text: &str) -> Line {
    Line::Message(text.as_bytes().to_vec())
}

#[tokio::test]
async fn events_are_split_on_any_line_end_even_across_chunks() {
    let got = events_of(
        &[b"event: endpoint\r\ndata: /messages?s=1\r", b"\n\r\n", b": keep-alive\n\ndata: {\"a\":\n", b"data: 1}\n\n"],
        1024,
    )
    .await;
    assert_eq!(
        got,
        vec![("endpoint".to_string(), message("/messages?s=1")), ("message".to_string(), message("{\"a\":\n1}"))]
    );
    let cr_only = events_of(&[b"data:x\rdata: y\r\r"], 1024).await;
    assert_eq!(cr_only, vec![("message".to_string(), message("x\ny"))]);
}

#[tokio::test]
async fn events_without_data_and_a_cut_off_last_event_are_not_dispatched() {
    let got = events_of(&[b"id: 7\n\nevent: ping\n\ndata: whole\n\ndata: cut"], 1024).await;
    assert_eq!(got, vec![("message".to_string(), message("whole"))]);
}

#[tokio::test]
async fn an_event_over_the_bound_keeps_only_its_prefix_and_its_size() {
    let big = vec![b'x'; 10_000];
    let mut line = b"data: ".to_vec();
    line.extend_from_slice(&big);
    // Delivered in pieces so the reader has to drop the middle as it goes.
    let pieces: Vec<&[u8]> = line.chunks(700).collect();
    let mut chunks = pieces;
    chunks.push(b"\ndata: tail\n\ndata: next\n\n");
    let got = events_of(&chunks, 1000).await;
    assert_eq!(got.len(), 2, "{got:?}");
    match &got[0].1 {
        Line::Oversized { prefix, size } => {
            assert_eq!(*size, 10_000 + 1 + 4);
            assert!(prefix.len() <= crate::framing::OVERSIZED_PREFIX && prefix.starts_with(b"xxxx"));
        }
        other => panic!("expected oversized, got {other:?}"),
    }
    assert_eq!(got[1].1, message("next"), "the stream goes on after it");
}

#[tokio::test]
async fn a_body_over_the_bound_is_counted_not_kept() {
    let small = read_bounded(chunked(&[b"{\"a\":", b"1}"]), 100).await.expect("read");
    assert_eq!(small, message("{\"a\":1}"));
    let chunk = vec![b'y'; 8192];
    let chunks: Vec<&[u8]> = vec![br#"{"id":"big","x":""#, &chunk, &chunk, &chunk];
    match read_bounded(chunked(&chunks), 10_000).await.expect("read") {
        Line::Oversized { prefix, size } => {
            assert_eq!(size, 17 + 3 * 8192);
            assert_eq!(crate::framing::scan_id(&prefix), Some(json!("big")));
        }
        other => panic!("expected oversized, got {other:?}"),
    }
}

#[test]
fn sent_events_put_each_line_of_the_data_on_its_own_data_field() {
    assert_eq!(&events::message(b"{\"a\":1}")[..], b"event: message\ndata: {\"a\":1}\n\n");
    assert_eq!(&events::message(b"{\r\n\"a\":1\n}")[..], b"event: message\ndata: {\ndata: \"a\":1\ndata: }\n\n");
    assert_eq!(
        &events::endpoint("/mcp/x/messages?session=1")[..],
        b"event: endpoint\ndata: /mcp/x/messages?session=1\n\n"
    );
}

#[test]
fn only_loopback_origins_are_let_through() {
    for good in ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443", "http://LOCALHOST"] {
        assert!(is_loopback_origin(good), "{good}");
    }
    for bad in ["https://evil.example", "http://localhost.evil.example", "null", "http://10.0.0.1", "file://"] {
        assert!(!is_loopback_origin(bad), "{bad}");
    }
}
