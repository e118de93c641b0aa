//! An answer's body with every value of the secrets that may go to its
//! host masked as it streams ([`Reflection`]): the agent never reads a
//! value an upstream repeated. Each secret found is reported once, by name.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::{BoxError, ProxyBody};
use crate::http::secrets::Reflection;

/// Told the names of secrets found in the response (headers or body).
pub(super) type Report = Box<dyn FnMut(Vec<String>) + Send>;

/// A [`Reflection`] that tells `report` the secrets each step found: what
/// every path back to the agent (a body, an upgraded stream) masks with.
pub(super) struct Guard {
    reflection: Reflection,
    report: Report,
}

impl Guard {
    pub fn new(reflection: Reflection, report: Report) -> Self {
        Guard { reflection, report }
    }

    /// [`Reflection::headers`], reported.
    pub fn headers(&mut self, headers: &mut HeaderMap) {
        self.reflection.headers(headers);
        self.report_new();
    }

    /// [`Reflection::chunk`], reported.
    pub fn chunk(&mut self, data: Bytes) -> Bytes {
        let out = self.reflection.chunk(data);
        self.report_new();
        out
    }

    /// [`Reflection::finish`], reported.
    pub fn finish(&mut self) -> Bytes {
        let out = self.reflection.finish();
        self.report_new();
        out
    }

    /// Whether bytes are held back, waiting for the next chunk.
    pub fn holding(&self) -> bool {
        self.reflection.holding()
    }

    fn report_new(&mut self) {
        let found = self.reflection.newly_found();
        if !found.is_empty() {
            (self.report)(found);
        }
    }
}

pub(super) struct Reflected {
    inner: ProxyBody,
    guard: Guard,
    /// Trailers that wait for the held bytes to go first.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl Reflected {
    pub fn new(inner: ProxyBody, guard: Guard) -> Self {
        Reflected { inner, guard, trailers: None, done: false }
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
                    let held = this.guard.finish();
                    return Poll::Ready((!held.is_empty()).then(|| Ok(Frame::data(held))));
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let out = this.guard.chunk(data);
                    if out.is_empty() {
                        // All of it may start a value: wait for more.
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Err(frame) => frame,
            };
            let Ok(mut trailers) = frame.into_trailers() else { continue };
            this.guard.headers(&mut trailers);
            this.done = true;
            let held = this.guard.finish();
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

    /// Unknown: the total is the inner body's, but bytes held back move
    /// from one frame to the next.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::sync::Arc;

    use bridle_engine::config::{Secret, SecretSource};
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::http::secrets::Secrets;

    const VALUE: &str = "tok-0123456789abcdefghijklmnop";

    /// Frames handed out one at a time, as an upstream's body.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn reflection() -> Reflection {
        let secret = Secret {
            name: "api".into(),
            source: SecretSource::Env("API".into()),
            hosts: vec!["h.test".into()],
            header: "x-api-key".into(),
            format: "{value}".into(),
        };
        let secrets = Secrets::load_with(&[secret], |_| Some(OsString::from(VALUE))).expect("loads");
        Arc::new(secrets).reflection("h.test").expect("a guard")
    }

    #[tokio::test]
    async fn held_bytes_go_before_the_trailers_and_both_are_masked() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-echo", VALUE.parse().expect("value"));
        let first = &VALUE[..10];
        let frames = [Frame::data(Bytes::from(format!("a {first}"))), Frame::trailers(trailers)];
        let body = Frames(frames.into()).boxed_unsync();
        let found = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&found);
        let report: Report = Box::new(move |names| seen.lock().expect("not poisoned").extend(names));
        let mut reflected = Reflected::new(body, Guard::new(reflection(), report));
        let mut out = Vec::new();
        while let Some(frame) = reflected.frame().await {
            out.push(frame.expect("no error"));
        }
        assert!(reflected.is_end_stream());
        assert_eq!(out.len(), 3, "the data before the held bytes, the held bytes, the trailers");
        assert_eq!(out[0].data_ref().map(|d| &d[..]), Some(&b"a "[..]));
        // The body ended with the start of a value: it goes as it came.
        assert_eq!(out[1].data_ref().map(|d| &d[..]), Some(first.as_bytes()));
        let trailers = out[2].trailers_ref().expect("trailers last");
        assert_eq!(trailers["x-echo"], format!("bridle-secret-api{}", "*".repeat(VALUE.len() - 17)).as_str());
        assert_eq!(*found.lock().expect("not poisoned"), ["api"]);
    }

    #[tokio::test]
    async fn a_value_across_frames_is_masked_and_reported_once() {
        let (first, rest) = VALUE.split_at(7);
        let frames = [first, rest, " and ", VALUE].map(|text| Frame::data(Bytes::from(text.to_owned())));
        let body = Frames(frames.into()).boxed_unsync();
        let found = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&found);
        let report: Report = Box::new(move |names| seen.lock().expect("not poisoned").extend(names));
        let reflected = Reflected::new(body, Guard::new(reflection(), report));
        let collected = reflected.collect().await.expect("no error").to_bytes();
        let mask = format!("bridle-secret-api{}", "*".repeat(VALUE.len() - 17));
        assert_eq!(String::from_utf8_lossy(&collected), format!("{mask} and {mask}"));
        assert_eq!(*found.lock().expect("not poisoned"), ["api"]);
    }
}
