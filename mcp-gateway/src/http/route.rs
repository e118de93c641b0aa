//! Where a streamable-HTTP session's messages go: a [`Route`] sends one
//! request to the server and hands back its response head, the body
//! streaming. A configured server's route is its own client
//! ([`super::upstream::Upstream`]); MCP seen inside proxied HTTP
//! ([`super::inline`]) is routed over the agent's own intercepted
//! connection, with the agent's headers, by the proxy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

use super::upstream::Upstream;

/// Errors inside a routed response body.
pub type RouteError = Box<dyn std::error::Error + Send + Sync>;
/// A routed response body: streamed, never buffered here.
pub type RouteBody = UnsyncBoxBody<Bytes, RouteError>;
/// What [`Route::send`] returns: the response, or why there is none
/// (the text goes into the client's JSON-RPC error).
pub type RouteFuture<'a> = Pin<Box<dyn Future<Output = Result<Response<RouteBody>, String>> + Send + 'a>>;

/// One way to reach a server.
pub trait Route: Send + Sync + fmt::Debug {
    /// Sends `method` with `headers` (the session's: its id, `accept`,
    /// the protocol version, a JSON content type for a POST) and `body`.
    fn send(&self, method: Method, headers: HeaderMap, body: Bytes) -> RouteFuture<'_>;
}

impl Route for Upstream {
    fn send(&self, method: Method, headers: HeaderMap, body: Bytes) -> RouteFuture<'_> {
        Box::pin(async move {
            let response = Upstream::send(self, method, None, headers, body).await.map_err(|e| e.to_string())?;
            Ok(response.map(|body| body.map_err(|e| -> RouteError { Box::new(e) }).boxed_unsync()))
        })
    }
}
