//! A response body whose injected credentials go back to placeholders as
//! it streams ([`Reflection`]): the agent never reads a value an upstream
//! repeated. Each secret found is reported once, by name.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};
use crate::http::secrets::Reflection;

/// Told the names of secrets found in the response (headers or body).
pub(super) type Report = Box<dyn FnMut(Vec<String>) + Send>;

pub(super) struct Reflected {
    inner: ProxyBody,
    reflection: Reflection,
    report: Report,
    /// Trailers that wait for the held bytes to go first.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl Reflected {
    pub fn new(inner: ProxyBody, reflection: Reflection, report: Report) -> Self {
        Reflected { inner, reflection, report, trailers: None, done: false }
    }

    fn report_new(&mut self) {
        let found = self.reflection.newly_found();
        if !found.is_empty() {
            (self.report)(found);
        }
    }
}

impl Body for Reflected {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    this.done = true;
                    let held = this.reflection.finish();
                    return Poll::Ready((!held.is_empty()).then(|| Ok(Frame::data(held))));
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let out = this.reflection.chunk(&data);
                    this.report_new();
                    if out.is_empty() {
                        // All of it may start a value: wait for more.
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Err(frame) => frame,
            };
            let Ok(mut trailers) = frame.into_trailers() else { continue };
            this.reflection.headers(&mut trailers);
            this.report_new();
            this.done = true;
            let held = this.reflection.finish();
            if held.is_empty() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            this.trailers = Some(trailers);
            return Poll::Ready(Some(Ok(Frame::data(held))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    /// Unknown: a value and its placeholder differ in length.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
