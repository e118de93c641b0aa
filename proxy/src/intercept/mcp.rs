//! MCP in the agent's own HTTP: a request the MCP gateway's sniffing calls
//! MCP ([`Inline::classify`]) is, once its HTTP-level decision allowed it,
//! handed to the gateway's inline sessions, so every JSON-RPC message in
//! it is decided like one sent to a configured server. The gateway reaches
//! the server like this connection does ([`Via`]: same destination,
//! verification and protocol, a pooled or new connection per request, so a
//! message never queues behind a long event stream), with the agent's
//! headers as the proxy prepared them (credentials injected, hop-by-hop
//! headers gone).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bridle_mcp_gateway::http::{ClientBody, Route, RouteBody, RouteError, RouteFuture};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::ProxyBody;
use super::upstream::{Recipe, Upstream};

/// Headers the session sets itself on every request it routes.
const SESSION_SET: [&str; 5] = ["content-type", "content-length", "accept", "mcp-session-id", "last-event-id"];

/// The agent's connection as a route to the server it was talking to.
#[derive(Debug)]
pub(super) struct Via {
    upstream: Recipe,
    /// The request's upstream target (origin-form, or absolute for h2).
    uri: Uri,
    /// The agent's request headers, minus what the session sets.
    headers: HeaderMap,
}

impl Via {
    pub fn route(upstream: Recipe, uri: Uri, agent: &HeaderMap) -> Arc<dyn Route> {
        let mut headers = agent.clone();
        for name in SESSION_SET {
            headers.remove(HeaderName::from_static(name));
        }
        // The gateway reads every answer: it takes them uncompressed.
        headers.insert(header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        Arc::new(Via { upstream, uri, headers })
    }
}

impl Route for Via {
    fn send(&self, method: Method, headers: HeaderMap, body: Bytes) -> RouteFuture<'_> {
        // The session sets its own headers; what else it would add (the
        // latest request's credentials) gives way to this request's.
        let mut merged = self.headers.clone();
        for (name, value) in &headers {
            if SESSION_SET.contains(&name.as_str()) || !merged.contains_key(name) {
                merged.insert(name.clone(), value.clone());
            }
        }
        if !body.is_empty() {
            merged.insert(header::CONTENT_LENGTH, body.len().into());
        }
        let mut request = Request::new(Full::new(body).map_err(|never| match never {}).boxed_unsync());
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = merged;
        Box::pin(async move {
            let upstream = self.upstream.upstream();
            let response = upstream.send(request).await?;
            Ok(response.map(|body| -> RouteBody { Held { body, _upstream: upstream }.boxed_unsync() }))
        })
    }
}

/// A response body that keeps its upstream until it is dropped, so the
/// connection goes back to the pool once the body was read to its end.
struct Held {
    body: Incoming,
    _upstream: Upstream,
}

impl Body for Held {
    type Data = Bytes;
    type Error = RouteError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RouteError>>> {
        Pin::new(&mut self.body).poll_frame(cx).map_err(|e| -> RouteError { Box::new(e) })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The gateway's answer as the proxy's.
pub(super) fn answer(response: Response<ClientBody>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}
