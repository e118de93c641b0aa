//! The client side of one HTTP exchange: the channel the core answers on,
//! and the HTTP response built from what arrives there.
//!
//! A POST's response is chosen lazily, as the spec lets a server choose:
//! if the answer comes first it is sent as `application/json` (whatever
//! the upstream used, so a large result is never squeezed into one event
//! a client may cap); if the server sends something on its own first (a
//! progress notification, a sampling request), the response becomes an
//! event stream that ends with the answer. Event streams (a POST's, the
//! GET stream, the legacy stream) are [`EventBody`]: never buffered whole,
//! backpressure reaches the upstream reader through the bounded channel.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::body::{self, ClientBody};
use super::events;
use super::route::Route;
use super::session::{Head, Session};
use crate::gateway::{Expect, Out, Outbox, Reply, ToServer};

/// Messages queued per exchange before the upstream reader waits.
const QUEUE: usize = 64;

/// Runs once when dropped, unless disarmed: what to undo when a client
/// goes away mid-exchange.
pub(crate) struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl OnDrop {
    pub fn new(action: impl FnOnce() + Send + Sync + 'static) -> Self {
        OnDrop(Some(Box::new(action)))
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(action) = self.0.take() {
            action();
        }
    }
}

impl std::fmt::Debug for OnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "OnDrop(armed)" } else { "OnDrop(disarmed)" })
    }
}

/// The route an exchange's messages take (each POST its own: an inline
/// session's requests may come over different agent connections and paths).
pub(crate) struct Carried(pub Arc<dyn Route>);

/// A new exchange: the [`Reply`] to hand the core, and its receiving end.
pub(crate) fn channel(exchange: u64) -> (Reply, mpsc::Receiver<Out>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (Reply::new(sender, exchange), receiver)
}

/// One POST of a streamable-HTTP session, from the core's answer to the
/// HTTP response.
pub(crate) struct Post {
    session: Arc<Session>,
    exchange: u64,
    receiver: mpsc::Receiver<Out>,
    /// Until the answer is sent: tells the core (and the upstream streams)
    /// that nobody waits for it any more.
    abandon: OnDrop,
    outbox: Collected,
}

/// An exchange's outbox, emptied when dropped: the messages in it refer
/// back to it, so an exchange abandoned before its transport took them
/// would otherwise keep them alive.
pub(crate) struct Collected(pub Outbox);

impl Drop for Collected {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

impl Post {
    /// Opens an exchange on `session` whose messages go to the server by
    /// `route`; the core answers on the returned [`Reply`].
    pub fn open(session: &Arc<Session>, route: Arc<dyn Route>) -> (Self, Reply) {
        let exchange = session.link.next_exchange();
        session.link.expect_head(exchange);
        let (reply, receiver) = channel(exchange);
        let outbox = Outbox::new();
        let reply = reply.carrying(Arc::new(Carried(route))).collecting(&outbox);
        let owner = Arc::clone(session);
        let abandon = OnDrop::new(move || owner.abandon(exchange));
        (Post { session: Arc::clone(session), exchange, receiver, abandon, outbox: Collected(outbox) }, reply)
    }

    /// What the core let through for the server while this exchange's
    /// body went through it, in order; later messages take the session's
    /// queue.
    pub fn outgoing(&self) -> Vec<ToServer> {
        self.outbox.0.take()
    }

    /// Waits for what the core sent (the caller must have dropped its
    /// [`Reply`]) and builds the response. `refused` is the status for
    /// input the core refused whole. Also returns the upstream's head.
    pub async fn respond(
        mut self,
        expect: Expect,
        event_stream: bool,
        refused: StatusCode,
    ) -> (Response<ClientBody>, Head) {
        if expect == Expect::Nothing {
            self.abandon.disarm();
            return (status_only(StatusCode::ACCEPTED), self.session.link.take_head(self.exchange));
        }
        loop {
            let out = self.receiver.recv().await;
            let head = || self.session.link.take_head(self.exchange);
            match out {
                Some(Out::Answer(bytes)) => {
                    self.abandon.disarm();
                    let head = head();
                    let status =
                        if expect == Expect::Refused { refused } else { head.status.unwrap_or(StatusCode::OK) };
                    let mut response = body::json_bytes(status, bytes);
                    copy_headers(&head.headers, response.headers_mut());
                    return (response, head);
                }
                Some(Out::Line(bytes)) if event_stream => {
                    let head = head();
                    let first = events::message(&bytes);
                    let Post { receiver, abandon, .. } = self;
                    let mut response = event_stream_response(EventBody::new(Some(first), receiver, true, abandon));
                    copy_headers(&head.headers, response.headers_mut());
                    return (response, head);
                }
                // A client that takes only JSON cannot be sent what the
                // server says on its own during a call.
                Some(Out::Line(_)) => tracing::debug!("dropped a server message for a JSON-only client"),
                Some(Out::Abandoned) => {
                    self.abandon.disarm();
                    let response = if event_stream {
                        event_stream_response(EventBody::empty())
                    } else {
                        status_only(StatusCode::ACCEPTED)
                    };
                    return (response, head());
                }
                Some(Out::Close) | None => {
                    self.abandon.disarm();
                    let message = "the MCP session ended before the request was answered";
                    return (body::error(StatusCode::BAD_GATEWAY, message), head());
                }
            }
        }
    }
}

/// Upstream headers the client must see too: the session the server
/// assigned, how to authenticate, when to retry.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [super::SESSION_ID, header::WWW_AUTHENTICATE.as_str(), header::RETRY_AFTER.as_str()] {
        if let Some(value) = from.get(name) {
            to.insert(name, value.clone());
        }
    }
}

pub(crate) fn status_only(status: StatusCode) -> Response<ClientBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = status;
    response
}

pub(crate) fn event_stream_response(body: EventBody) -> Response<ClientBody> {
    let mut response = Response::new(body.boxed());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An event stream fed by an exchange's channel.
#[derive(Debug)]
pub(crate) struct EventBody {
    first: Option<Bytes>,
    receiver: Option<mpsc::Receiver<Out>>,
    /// A POST's stream ends with its answer; the GET and legacy streams
    /// carry answers like any other message.
    ends_on_answer: bool,
    on_drop: OnDrop,
}

impl EventBody {
    pub fn new(first: Option<Bytes>, receiver: mpsc::Receiver<Out>, ends_on_answer: bool, on_drop: OnDrop) -> Self {
        EventBody { first, receiver: Some(receiver), ends_on_answer, on_drop }
    }

    /// A stream closed at once (a request cancelled before anything came).
    pub fn empty() -> Self {
        EventBody { first: None, receiver: None, ends_on_answer: true, on_drop: OnDrop(None) }
    }

    /// The exchange is over: a POST's owes nothing more; a shared stream
    /// still runs its clean-up when dropped.
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.receiver = None;
        if self.ends_on_answer {
            self.on_drop.disarm();
        }
        Poll::Ready(None)
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            let Some(receiver) = self.receiver.as_mut() else { return Poll::Ready(None) };
            let out = match receiver.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(out) => out,
            };
            match out {
                Some(Out::Line(bytes)) => return Poll::Ready(Some(Ok(Frame::data(events::message(&bytes))))),
                Some(Out::Answer(bytes)) => {
                    if self.ends_on_answer {
                        self.receiver = None;
                        self.on_drop.disarm();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(events::message(&bytes)))));
                }
                // On a shared stream, a cancelled request just sends nothing.
                Some(Out::Abandoned) if !self.ends_on_answer => {}
                Some(Out::Abandoned | Out::Close) | None => return self.finish(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.receiver.is_none()
    }
}
