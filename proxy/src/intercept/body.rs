//! Request bodies: the first bytes are read before the decision (bounded in
//! size and time), then replayed upstream ahead of the rest, which streams
//! through the leak scanner; a finding mid-stream can still stop it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, timeout_at};

use super::BoxError;
use crate::http::scan::BodyScanner;

/// The body's first bytes, as read before the decision.
#[derive(Debug, Default)]
pub(super) struct Prefix {
    /// The frames read, to be replayed upstream unchanged.
    pub frames: VecDeque<Frame<Bytes>>,
    /// Their data, concatenated, for analysis: all of it, so what is
    /// scanned before the decision is all that is replayed after it (the
    /// window and the rest of the frame that crossed it, one frame at most
    /// beyond it).
    pub bytes: Vec<u8>,
    /// The whole body was read.
    pub complete: bool,
}

impl Prefix {
    /// Keeps a frame read: for replay, and its data for analysis.
    fn push(&mut self, frame: Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.bytes.extend_from_slice(data);
        }
        self.frames.push_back(frame);
    }
}

/// Reads frames until `window` bytes, the end, or `wait` has passed (a slow
/// sender gets a decision on what arrived).
pub(super) async fn read_prefix(body: &mut Incoming, window: usize, wait: Duration) -> Result<Prefix, BoxError> {
    let mut prefix = Prefix::default();
    if body.is_end_stream() {
        prefix.complete = true;
        return Ok(prefix);
    }
    let deadline = Instant::now() + wait;
    while prefix.bytes.len() < window {
        match timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => break,
            Ok(None) => {
                prefix.complete = true;
                break;
            }
            Ok(Some(Err(error))) => return Err(Box::new(error)),
            Ok(Some(Ok(frame))) => prefix.push(frame),
        }
    }
    if !prefix.complete && body.is_end_stream() {
        prefix.complete = true;
    }
    Ok(prefix)
}

/// Reads more of the body into `prefix`, with no time bound (the request
/// waits for it), until `enough` says so or the body ends, while it holds
/// at most `max` data bytes; `Ok(false)` when the body is longer than that.
pub(super) async fn read_more(
    body: &mut Incoming,
    prefix: &mut Prefix,
    max: usize,
    enough: impl Fn(&[u8]) -> bool,
) -> Result<bool, BoxError> {
    while !prefix.complete && !enough(&prefix.bytes) {
        if prefix.bytes.len() > max {
            return Ok(false);
        }
        match body.frame().await {
            None => prefix.complete = true,
            Some(Err(error)) => return Err(Box::new(error)),
            Some(Ok(frame)) => prefix.push(frame),
        }
    }
    Ok(true)
}

/// Decides what a finding in the streamed part means: `Some(reason)` stops
/// the body (the upstream request is aborted).
pub(super) type OnFinding = Box<dyn FnMut(Vec<String>) -> Option<String> + Send>;

/// The prefix, then the rest of the agent's body, scanned as it streams.
pub(super) struct Replay {
    prefix: VecDeque<Frame<Bytes>>,
    prefix_len: u64,
    rest: Option<Incoming>,
    scanner: BodyScanner,
    on_finding: OnFinding,
    /// Set when a finding stopped the body; the caller answers 403.
    pub stopped: Arc<Mutex<Option<String>>>,
}

impl Replay {
    pub fn new(prefix: Prefix, rest: Option<Incoming>, scanner: BodyScanner, on_finding: OnFinding) -> Self {
        Replay {
            prefix_len: prefix.bytes.len() as u64,
            prefix: prefix.frames,
            rest,
            scanner,
            on_finding,
            stopped: Arc::new(Mutex::new(None)),
        }
    }
}

impl Replay {
    /// Stops the body if `found` (new findings) makes the decision a deny:
    /// the error ends the upstream request, and `stopped` tells the caller.
    fn stop_on(&mut self, found: Vec<String>) -> Option<BoxError> {
        if found.is_empty() {
            return None;
        }
        let reason = (self.on_finding)(found)?;
        if let Ok(mut stopped) = self.stopped.lock() {
            *stopped = Some(reason.clone());
        }
        self.prefix.clear();
        self.rest = None;
        Some(reason.into())
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(frame) = this.prefix.pop_front() {
            if let Some(data) = frame.data_ref() {
                this.prefix_len = this.prefix_len.saturating_sub(data.len() as u64);
            }
            // The prefix's data was scanned before the decision; trailers
            // (HTTP/2) were not.
            if let Some(trailers) = frame.trailers_ref() {
                let found = this.scanner.trailers(trailers);
                if let Some(stop) = this.stop_on(found) {
                    return Poll::Ready(Some(Err(stop)));
                }
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = this.rest.as_mut() else { return Poll::Ready(None) };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let found = match (frame.data_ref(), frame.trailers_ref()) {
                    (Some(data), _) => this.scanner.feed(data),
                    (None, Some(trailers)) => this.scanner.trailers(trailers),
                    (None, None) => Vec::new(),
                };
                if let Some(stop) = this.stop_on(found) {
                    return Poll::Ready(Some(Err(stop)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(None) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let Some(rest) = &self.rest else { return SizeHint::with_exact(self.prefix_len) };
        let hint = rest.size_hint();
        let mut total = SizeHint::new();
        total.set_lower(hint.lower() + self.prefix_len);
        if let Some(upper) = hint.upper() {
            total.set_upper(upper + self.prefix_len);
        }
        total
    }
}
