//! A connection after an allowed upgrade (`101 Switching Protocols`):
//! relayed both ways, every byte the agent sends scanned for leaks before
//! it is forwarded. WebSocket frames are followed and their payloads
//! unmasked first (masking would hide a key from any scan of the raw
//! bytes); another protocol's bytes are scanned as they come.
//!
//! WebSocket payloads are scanned three ways, so neither framing nor
//! message boundaries hide a key: the messages as the application reads
//! them (one by one, so two messages do not glue into one word), all data
//! run together (a key split over two messages), and control frames'
//! payloads on their own (a ping between two fragments is not part of the
//! message it interrupts).
//!
//! A finding re-decides the upgrade's request with the dlp kinds added, as
//! a finding in a streaming body does. A deny forwards nothing more: the
//! piece that completed the finding is withheld, the upstream connection is
//! closed, and a WebSocket agent gets a close frame (1008) naming the
//! reason when its stream is between frames. A frame Bridle cannot read
//! (compressed without a negotiated extension) ends the connection too.
//!
//! Must never: forward a piece before it is scanned, or leave the upstream
//! open after a deny.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::sync::watch;

use bytes::Bytes;

use super::body::OnFinding;
use super::reflected::Guard;
use crate::decide::Decider;
use crate::http::scan::BodyScanner;
use crate::http::websocket::{Frames, POLICY_VIOLATION, PROTOCOL_ERROR, Payloads, close_frame};

/// How long the upstream-to-agent copy may take to finish a write once the
/// agent's side was refused, before the connection is dropped mid-frame.
const GRACE: Duration = Duration::from_secs(2);
const CHUNK: usize = 16 * 1024;
/// How long bytes held back (they could begin a secret's value) wait for
/// more on a stream without frames before they go, masked.
const IDLE_FLUSH: Duration = Duration::from_millis(50);

/// What the agent switched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    WebSocket,
    /// Anything else: its bytes are scanned as a stream.
    Opaque,
}

/// How the agent-to-upstream direction ended.
enum Outbound {
    /// The agent closed its side (or the connection failed).
    Ended,
    /// A finding was denied; the agent gets `POLICY_VIOLATION`.
    Denied(String),
    /// A frame that cannot be inspected; the agent gets `PROTOCOL_ERROR`.
    Unreadable(String),
}

/// How the agent's side is scanned: the scanner, and what a finding means.
pub(super) struct Scan {
    pub scanner: BodyScanner,
    pub on_finding: OnFinding,
}

/// Relays `agent` ⇄ `upstream` until both sides close or a deny ends it,
/// masking what comes back by `guard` (the upstream's host is one a secret
/// may go to); `target` (host and path) names the connection in notices.
pub(super) async fn relay<A, U>(
    agent: A,
    upstream: U,
    protocol: Protocol,
    Scan { mut scanner, mut on_finding }: Scan,
    guard: Option<Guard>,
    decider: Arc<Decider>,
    target: String,
) where
    A: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (mut agent_r, mut agent_w) = tokio::io::split(agent);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);
    let (stop, stopped) = watch::channel(false);
    // The agent's stream as the agent reads it: a close frame of Bridle's
    // goes in only between the upstream's frames.
    let mut inbound = Frames::default();
    let (outbound, inbound_clean) = tokio::join!(
        async {
            let ended = scan_out(&mut agent_r, &mut upstream_w, protocol, &mut scanner, &mut on_finding).await;
            if !matches!(ended, Outbound::Ended) {
                let _ = stop.send(true);
                // Bounded: an upstream that stops reading would hold the
                // close (TLS close_notify) forever; dropping it closes.
                let _ = tokio::time::timeout(GRACE, upstream_w.shutdown()).await;
            }
            ended
        },
        copy_in(&mut upstream_r, &mut agent_w, (protocol, &mut inbound), guard, stopped),
    );
    let (code, reason, message) = match outbound {
        Outbound::Ended => return,
        Outbound::Denied(reason) => {
            let message =
                format!("{target}: upgraded connection closed: a message from the agent was denied: {reason}");
            (POLICY_VIOLATION, reason, message)
        }
        Outbound::Unreadable(problem) => {
            let message = format!("{target}: upgraded connection closed: the agent sent {problem}");
            (PROTOCOL_ERROR, format!("Bridle cannot inspect {problem}"), message)
        }
    };
    decider.notice("warn", message);
    if protocol == Protocol::WebSocket && inbound_clean && inbound.at_boundary() {
        let frame = close_frame(code, &format!("bridle: {reason}"));
        let _ = tokio::time::timeout(GRACE, agent_w.write_all(&frame)).await;
    }
    let _ = tokio::time::timeout(GRACE, agent_w.shutdown()).await;
}

/// Agent → upstream: each piece read is scanned (WebSocket payloads
/// unmasked first) and forwarded only if no finding in it was denied.
async fn scan_out<A: AsyncRead, U: AsyncWrite>(
    agent: &mut ReadHalf<A>,
    upstream: &mut WriteHalf<U>,
    protocol: Protocol,
    scanner: &mut BodyScanner,
    on_finding: &mut OnFinding,
) -> Outbound {
    let mut frames = Frames::default();
    let (mut glued, mut control) = (scanner.fresh(), scanner.fresh());
    let (mut buf, mut payloads) = (vec![0u8; CHUNK], Payloads::default());
    loop {
        let n = match agent.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tokio::time::timeout(GRACE, upstream.shutdown()).await;
                return Outbound::Ended;
            }
            Ok(n) => n,
        };
        let piece = &buf[..n];
        let found = match protocol {
            Protocol::Opaque => scanner.feed(piece),
            Protocol::WebSocket => {
                payloads.clear();
                if let Err(problem) = frames.feed(piece, &mut payloads) {
                    return Outbound::Unreadable(problem.to_string());
                }
                let mut found = scanner.feed(&payloads.separated());
                found.extend(glued.feed(&payloads.data));
                if !payloads.control.is_empty() {
                    found.extend(control.feed(&payloads.control));
                }
                found.sort();
                found.dedup();
                found
            }
        };
        if !found.is_empty()
            && let Some(reason) = on_finding(found)
        {
            return Outbound::Denied(reason);
        }
        if upstream.write_all(piece).await.is_err() {
            return Outbound::Ended;
        }
    }
}

/// Upstream → agent, copied as it comes (the agent's own downloads are
/// not scanned for leaks), with a `guard`'s values masked (within one
/// WebSocket frame; on another protocol, within what comes without a pause
/// of [`IDLE_FLUSH`]), following WebSocket frames so a close frame can be
/// added.
/// Stops reading once `stop` is set; returns whether every piece read was
/// written whole (a write cut off by the grace period leaves a frame open).
async fn copy_in<U: AsyncRead, A: AsyncWrite>(
    upstream: &mut ReadHalf<U>,
    agent: &mut WriteHalf<A>,
    (protocol, frames): (Protocol, &mut Frames),
    mut guard: Option<Guard>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut buf = vec![0u8; CHUNK];
    let mut in_sync = protocol == Protocol::WebSocket;
    // The frames as they come (before bytes are held back for masking): a
    // value is only looked for within one frame, so what is held is let go
    // at a frame's end, and an interactive stream never waits on it.
    let (mut raw_frames, mut raw_in_sync) = (Frames::default(), protocol == Protocol::WebSocket);
    loop {
        let holding = guard.as_ref().is_some_and(Guard::holding);
        let step = tokio::select! {
            biased;
            () = stopped(&mut stop) => return in_sync,
            read = upstream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    // What was held could only begin a value: masked, it goes.
                    if let Some(guard) = guard.as_mut() {
                        let _ = agent.write_all(&guard.finish()).await;
                    }
                    let _ = agent.shutdown().await;
                    return in_sync;
                }
                Ok(n) => Some(n),
            },
            // Without frames, held bytes go once the stream pauses.
            () = tokio::time::sleep(IDLE_FLUSH), if holding && !raw_in_sync => None,
        };
        let masked: Vec<u8>;
        let piece = match (step, guard.as_mut()) {
            (Some(n), None) => &buf[..n],
            (Some(n), Some(guard)) => {
                let mut out = guard.chunk(Bytes::copy_from_slice(&buf[..n])).to_vec();
                if raw_in_sync {
                    raw_in_sync = raw_frames.skip(&buf[..n]).is_ok();
                    if raw_in_sync && raw_frames.at_boundary() {
                        out.extend_from_slice(&guard.finish());
                    }
                }
                masked = out;
                &masked[..]
            }
            (None, Some(guard)) => {
                masked = guard.finish().to_vec();
                &masked[..]
            }
            (None, None) => continue,
        };
        if in_sync {
            in_sync = frames.skip(piece).is_ok();
        }
        let written = tokio::select! {
            written = agent.write_all(piece) => written.is_ok(),
            () = async {
                stopped(&mut stop).await;
                tokio::time::sleep(GRACE).await;
            } => false,
        };
        if !written {
            return false;
        }
    }
}

/// Resolves once `stop` is set (never, if its sender is gone unset).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use bridle_engine::authorizer::Authorizer;
    use bridle_engine::policy::{PolicyFile, load_files};
    use tokio::io::{DuplexStream, duplex};

    use super::*;
    use crate::http::scan::Canaries;
    use crate::intercept::reflected::Report;

    struct Ends {
        /// The agent's end and the upstream's end of the relay.
        agent: DuplexStream,
        upstream: DuplexStream,
        relay: tokio::task::JoinHandle<()>,
    }

    /// A relay whose every finding is denied.
    fn start(protocol: Protocol) -> Ends {
        start_guarded(protocol, None)
    }

    fn start_guarded(protocol: Protocol, guard: Option<Guard>) -> Ends {
        let (agent, agent_side) = duplex(64 * 1024);
        let (upstream, upstream_side) = duplex(64 * 1024);
        let files = vec![PolicyFile { name: "none.cedar".into(), text: String::new() }];
        let authorizer = Arc::new(Authorizer::new(load_files("test", files).expect("no policies"), 10));
        let decider = Arc::new(Decider::new(authorizer, None, "test", "agent"));
        let scanner = BodyScanner::new(None, "up.test", &Canaries::none());
        let on_finding: OnFinding = Box::new(|kinds| Some(format!("found {}", kinds.join(","))));
        let scan = Scan { scanner, on_finding };
        let relay = tokio::spawn(relay(agent_side, upstream_side, protocol, scan, guard, decider, "t".into()));
        Ends { agent, upstream, relay }
    }

    fn client_frame(payload: &[u8]) -> Vec<u8> {
        client_frame_op(0x81, payload)
    }

    /// A masked frame with first byte `fin_opcode` (a payload under 126).
    fn client_frame_op(fin_opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x5a, 0x01, 0xc3, 0x7e];
        let mut frame = vec![fin_opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    async fn read_some(io: &mut DuplexStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = io.read(&mut buf).await.expect("read");
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn a_denied_websocket_message_is_withheld_and_the_agent_told_why() {
        let mut ends = start(Protocol::WebSocket);
        let clean = client_frame(b"hello");
        ends.agent.write_all(&clean).await.expect("write");
        assert_eq!(read_some(&mut ends.upstream).await, clean);
        // The upstream's answer passes, and leaves its stream between frames.
        ends.upstream.write_all(&[0x81, 2, b'o', b'k']).await.expect("write");
        assert_eq!(read_some(&mut ends.agent).await, [0x81, 2, b'o', b'k']);
        ends.agent.write_all(&client_frame(b"id=AKIAIOSFODNN7EXAMPLE")).await.expect("write");
        let mut rest = Vec::new();
        ends.upstream.read_to_end(&mut rest).await.expect("upstream closed");
        assert!(rest.is_empty(), "nothing of the leaking frame went on: {rest:?}");
        let mut told = Vec::new();
        ends.agent.read_to_end(&mut told).await.expect("agent closed");
        assert_eq!(told, close_frame(POLICY_VIOLATION, "bridle: found aws-access-key-id"));
        ends.relay.await.expect("relay ended");
    }

    /// A key behind a word character glued to it by the previous message,
    /// and one split by a pong between two fragments: both found, whether
    /// the frames come in one write or many.
    #[tokio::test]
    async fn keys_are_found_across_message_and_control_frame_tricks() {
        let mut glued = client_frame(b"x");
        glued.extend(client_frame(b"AKIAIOSFODNN7EXAMPLE"));
        let mut interrupted = client_frame_op(0x01, b"key=AKIAIOSF");
        interrupted.extend(client_frame_op(0x8a, b"Z"));
        interrupted.extend(client_frame_op(0x80, b"ODNN7EXAMPLE"));
        for stream in [glued, interrupted] {
            for cut in [stream.len(), 5] {
                let mut ends = start(Protocol::WebSocket);
                for piece in stream.chunks(cut) {
                    // A closed relay refuses the rest: that is the point.
                    let _ = ends.agent.write_all(piece).await;
                }
                let mut told = Vec::new();
                let closed = tokio::time::timeout(Duration::from_secs(5), ends.agent.read_to_end(&mut told)).await;
                assert!(matches!(closed, Ok(Ok(_))), "the relay did not close: cut {cut}");
                assert_eq!(told, close_frame(POLICY_VIOLATION, "bridle: found aws-access-key-id"), "cut {cut}");
                ends.relay.await.expect("relay ended");
            }
        }
    }

    const VALUE: &str = "wss-token-0123456789abcdef";

    /// A relay whose answers are guarded for `VALUE`; what it reports.
    fn start_masking(protocol: Protocol) -> (Ends, Arc<std::sync::Mutex<Vec<String>>>) {
        use bridle_engine::config::{Secret, SecretSource};
        let secret = Secret {
            name: "rt".into(),
            source: SecretSource::Env("RT".into()),
            hosts: vec!["h.test".into()],
            header: "authorization".into(),
            format: "Bearer {value}".into(),
        };
        let secrets = crate::http::secrets::Secrets::load_with(&[secret], |_| Some(VALUE.into())).expect("loads");
        let reflection = Arc::new(secrets).reflection("h.test").expect("a guard");
        let found = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&found);
        let report: Report = Box::new(move |names| seen.lock().expect("not poisoned").extend(names));
        (start_guarded(protocol, Some(Guard::new(reflection, report))), found)
    }

    fn server_frame(text: &str) -> Vec<u8> {
        let mut frame = vec![0x81, text.len() as u8];
        frame.extend_from_slice(text.as_bytes());
        frame
    }

    /// From a host a secret may go to, the secret's value in a server frame
    /// reaches the agent masked (also when it comes in two reads), the
    /// frame's length unchanged.
    #[tokio::test]
    async fn a_value_the_upstream_sends_after_the_upgrade_is_masked() {
        let (mut ends, found) = start_masking(Protocol::WebSocket);
        let frame = server_frame(&format!("your key is {VALUE}"));
        let (first, second) = frame.split_at(20);
        ends.upstream.write_all(first).await.expect("write");
        ends.upstream.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
        ends.upstream.write_all(second).await.expect("write");
        drop(ends.upstream);
        let mut got = Vec::new();
        ends.agent.read_to_end(&mut got).await.expect("read");
        let mask = format!("bridle-secret-rt{}", "*".repeat(VALUE.len() - 16));
        assert_eq!(&got[..2], &frame[..2]);
        assert_eq!(String::from_utf8_lossy(&got[2..]), format!("your key is {mask}"));
        assert_eq!(*found.lock().expect("not poisoned"), ["rt"]);
    }

    /// Bytes that could begin the value are held only while more can come:
    /// a frame that ends in them, or a pause in a stream without frames,
    /// lets them go at once (a terminal's echo does not wait).
    #[tokio::test]
    async fn held_bytes_go_at_a_frame_end_or_a_pause() {
        let (mut ends, _) = start_masking(Protocol::WebSocket);
        let frame = server_frame("typed: wss");
        ends.upstream.write_all(&frame).await.expect("write");
        let mut got = vec![0u8; frame.len()];
        let read = tokio::time::timeout(Duration::from_secs(2), ends.agent.read_exact(&mut got)).await;
        assert!(matches!(read, Ok(Ok(_))), "the frame's end was held");
        assert_eq!(got, frame);
        let (mut ends, _) = start_masking(Protocol::Opaque);
        ends.upstream.write_all(b"$ echo w").await.expect("write");
        let mut got = vec![0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(2), ends.agent.read_exact(&mut got)).await;
        assert!(matches!(read, Ok(Ok(_))), "the pause did not let the held byte go");
        assert_eq!(&got, b"$ echo w");
    }

    #[tokio::test]
    async fn a_compressed_frame_closes_the_connection_with_a_protocol_error() {
        let mut ends = start(Protocol::WebSocket);
        let mut compressed = client_frame(b"\xf2\x48\xcd\xc9\xc9\x07\x00");
        compressed[0] |= 0x40;
        ends.agent.write_all(&compressed).await.expect("write");
        let mut rest = Vec::new();
        ends.upstream.read_to_end(&mut rest).await.expect("upstream closed");
        assert!(rest.is_empty(), "{rest:?}");
        let mut told = Vec::new();
        ends.agent.read_to_end(&mut told).await.expect("agent closed");
        assert_eq!(&told[..4], [0x88, (told.len() - 2) as u8, 0x03, 0xea], "close 1002: {told:?}");
        ends.relay.await.expect("relay ended");
    }

    #[tokio::test]
    async fn other_protocols_are_scanned_as_a_byte_stream_and_half_close_passes() {
        let mut ends = start(Protocol::Opaque);
        ends.agent.write_all(b"PING key=AKIAIOSF").await.expect("write");
        assert_eq!(read_some(&mut ends.upstream).await, b"PING key=AKIAIOSF");
        // The agent's half-close reaches the upstream, which may still answer.
        let mut clean = start(Protocol::Opaque);
        clean.agent.shutdown().await.expect("shutdown");
        assert!(read_some(&mut clean.upstream).await.is_empty(), "EOF passed on");
        clean.upstream.write_all(b"late answer").await.expect("write");
        assert_eq!(read_some(&mut clean.agent).await, b"late answer");
        drop(clean.upstream);
        clean.relay.await.expect("relay ended");
        // The key completed across two pieces: the second is withheld, and
        // the agent's connection ends without a frame of Bridle's.
        ends.agent.write_all(b"ODNN7EXAMPLE").await.expect("write");
        let mut rest = Vec::new();
        ends.upstream.read_to_end(&mut rest).await.expect("upstream closed");
        assert!(rest.is_empty(), "{rest:?}");
        let mut told = Vec::new();
        ends.agent.read_to_end(&mut told).await.expect("agent closed");
        assert!(told.is_empty(), "{told:?}");
        ends.relay.await.expect("relay ended");
    }
}
