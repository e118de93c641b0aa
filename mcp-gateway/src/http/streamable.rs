//! Streamable HTTP, the current MCP transport, as a reverse proxy:
//! `POST /mcp/<name>` carries a message or a batch through the session's
//! core, `GET` opens the server's own event stream, `DELETE` ends the
//! session.
//!
//! Sessions: a POST without `Mcp-Session-Id` starts a new core; when the
//! server's answer names a session id, the core is filed under it and
//! later requests carrying that id find it. An id Bridle does not know is
//! answered 404, which tells a client to start over (so a session cannot
//! outlive Bridle's view of it). A server that never names a session
//! (stateless) gets a fresh core per POST.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{self, ClientBody, read_bounded};
use super::endpoint::Endpoint;
use super::events::EventReader;
use super::exchange::{self, EventBody, OnDrop, Post};
use super::route::{Route, RouteBody};
use super::session::{self, Session};
use super::{LAST_EVENT_ID, SESSION_ID};
use crate::framing::Line;
use crate::gateway::Reply;
use crate::jsonrpc;

/// Sessions one server may have open (each holds a core and its tools).
const MAX_SESSIONS: usize = 1024;

/// What a request naming a session Bridle does not know gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// 404, which tells a client to start over (the reverse proxy: a
    /// session cannot outlive Bridle's view of it).
    Refuse,
    /// A fresh core under that id (inline: the agent and the server made
    /// the session before Bridle saw it; every call is still decided).
    Adopt,
}

/// `POST /mcp/<name>`.
pub(crate) async fn post(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let Some(route) = endpoint.route() else { return no_route(endpoint) };
    let (parts, incoming) = request.into_parts();
    let line = match read_bounded(incoming, endpoint.max_message_bytes).await {
        Ok(line) => line,
        Err(error) => {
            return body::error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {}", error.0));
        }
    };
    post_line(endpoint, &parts.headers, line, route, Unknown::Refuse).await
}

/// One POSTed body (`line`) of a session, its server reached by `route`.
pub(crate) async fn post_line(
    endpoint: &Arc<Endpoint>,
    headers: &HeaderMap,
    line: Line,
    route: Arc<dyn Route>,
    unknown: Unknown,
) -> Response<ClientBody> {
    let known = header_text(headers, SESSION_ID);
    let session = match session_for(endpoint, known.as_deref(), &route, unknown) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    session.link.touch(headers);
    let refused =
        if matches!(line, Line::Oversized { .. }) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    let (exchange, reply) = Post::open(&session, route);
    let expect = session.gateway.from_client_via(line, &reply).await;
    drop(reply);
    let outgoing = exchange.outgoing();
    let respond = exchange.respond(expect, accepts_events(headers), refused);
    let (response, head) = session::deliver(&session.link, &session.gateway, outgoing, respond).await;
    match (&known, head.headers.get(SESSION_ID).and_then(|v| v.to_str().ok())) {
        (None, Some(assigned)) => endpoint.register(assigned, &session),
        (Some(id), _) if response.status() == StatusCode::NOT_FOUND => {
            endpoint.forget(id, "the MCP server no longer knows it");
        }
        _ => {}
    }
    response
}

/// The session `known` names, or a new one starting on `route` (each
/// request still carries its own); the error is the response for the client.
fn session_for(
    endpoint: &Arc<Endpoint>,
    known: Option<&str>,
    route: &Arc<dyn Route>,
    unknown: Unknown,
) -> Result<Arc<Session>, Box<Response<ClientBody>>> {
    if let Some(id) = known
        && let Some(session) = endpoint.session(id)
    {
        return Ok(session);
    }
    if endpoint.session_count() >= MAX_SESSIONS {
        let message = format!("MCP server {} has {MAX_SESSIONS} sessions open; end one first", endpoint.name);
        endpoint.enforcer.notice("warn", format!("refused a new MCP session: {message}"));
        return Err(Box::new(body::error(StatusCode::SERVICE_UNAVAILABLE, &message)));
    }
    let adopted = match (known, unknown) {
        (Some(id), Unknown::Refuse) => return Err(Box::new(unknown_session(endpoint, id))),
        (Some(id), Unknown::Adopt) => HeaderValue::from_str(id).ok(),
        (None, _) => None,
    };
    let session = Session::start(endpoint, Arc::clone(route)).map_err(|error| {
        endpoint.enforcer.notice("error", format!("cannot start an MCP session: {error}"));
        Box::new(body::error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot start an MCP session: {error}")))
    })?;
    if let (Some(id), Some(value)) = (known, adopted) {
        session.link.adopt(value);
        endpoint.register(id, &session);
    }
    Ok(session)
}

/// `GET /mcp/<name>`: the server's own stream of requests and
/// notifications, each through the session's core.
pub(crate) async fn get(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let Some(route) = endpoint.route() else { return no_route(endpoint) };
    get_stream(endpoint, request.headers(), route, Unknown::Refuse).await
}

/// The GET stream of the session `headers` name, its server reached by `route`.
pub(crate) async fn get_stream(
    endpoint: &Arc<Endpoint>,
    headers: &HeaderMap,
    route: Arc<dyn Route>,
    unknown: Unknown,
) -> Response<ClientBody> {
    let Some(id) = header_text(headers, SESSION_ID) else {
        return body::error(StatusCode::BAD_REQUEST, "a GET stream needs the Mcp-Session-Id of an initialized session");
    };
    let session = match session_for(endpoint, Some(&id), &route, unknown) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    session.link.touch(headers);
    let mut upstream_headers = session.link.headers("text/event-stream", false);
    if let Some(last) = headers.get(LAST_EVENT_ID) {
        upstream_headers.insert(LAST_EVENT_ID, last.clone());
    }
    // The stream's own route: it does not change where the session's
    // messages go.
    let response = match route.send(Method::GET, upstream_headers, Bytes::new()).await {
        Ok(response) => response,
        Err(error) => return unreachable(endpoint, &error),
    };
    if response.status() != StatusCode::OK || !is_event_stream(response.headers()) {
        let status = response.status();
        body::drain(response.into_body(), 64 << 10).await;
        if status == StatusCode::NOT_FOUND {
            endpoint.forget(&id, "the MCP server no longer knows it");
        }
        let message = format!("the MCP server answered the stream request with HTTP {status}, not an event stream");
        let status = if status.is_success() { StatusCode::BAD_GATEWAY } else { status };
        return body::error(status, &message);
    }
    let (reply, receiver) = exchange::channel(session.link.next_exchange());
    let reader = tokio::spawn(read_stream(Arc::clone(&session), response.into_body(), reply));
    let on_drop = OnDrop::new(move || reader.abort());
    exchange::event_stream_response(EventBody::new(None, receiver, false, on_drop))
}

/// Relays the server's GET stream until it ends; dropping `reply` then
/// ends the client's stream.
async fn read_stream(session: Arc<Session>, body: RouteBody, reply: Reply) {
    let mut events = EventReader::new(body, session.gateway.max_message_bytes());
    loop {
        match events.next().await {
            Ok(Some(event)) if event.name == "message" => session.gateway.from_server_via(event.data, &reply).await,
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(error = %error.0, "the MCP server's GET stream broke off");
                return;
            }
        }
    }
}

/// `DELETE /mcp/<name>`: the client ends its session, here and upstream.
pub(crate) async fn delete(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let Some(id) = header_text(request.headers(), SESSION_ID) else {
        return body::error(StatusCode::BAD_REQUEST, "DELETE needs the Mcp-Session-Id of the session to end");
    };
    let Some(session) = endpoint.session(&id) else { return unknown_session(endpoint, &id) };
    session.link.touch(request.headers());
    let headers = session.link.headers(super::ACCEPT_BOTH, false);
    let response = match session.link.route().send(Method::DELETE, headers, Bytes::new()).await {
        Ok(response) => response,
        Err(error) => {
            endpoint.forget(&id, "ended by the client (the MCP server could not be told)");
            return unreachable(endpoint, &error);
        }
    };
    let status = response.status();
    body::drain(response.into_body(), 64 << 10).await;
    // 405: the server keeps sessions until they expire; Bridle's view of
    // it ends with the client's.
    endpoint.forget(&id, "ended by the client");
    exchange::status_only(status)
}

/// A configured endpoint always has its client; this is for the
/// impossible case of an inline endpoint reached through the listener.
fn no_route(endpoint: &Endpoint) -> Response<ClientBody> {
    let message = format!("MCP server {} has no configured URL", endpoint.name);
    body::error(StatusCode::INTERNAL_SERVER_ERROR, &message)
}

fn unknown_session(endpoint: &Endpoint, id: &str) -> Response<ClientBody> {
    let message = format!(
        "Bridle has no MCP session {id:?} for server {} (it ended, expired, or Bridle restarted): start a new session",
        endpoint.name
    );
    endpoint.enforcer.notice("info", format!("refused a request for unknown MCP session {id:?}"));
    body::rpc_error(StatusCode::NOT_FOUND, jsonrpc::INVALID_REQUEST, &message)
}

/// `502` naming the server and why it could not be reached.
pub(crate) fn unreachable(endpoint: &Endpoint, why: &str) -> Response<ClientBody> {
    let message = format!("Bridle could not reach the MCP server {}: {why}", endpoint.name);
    endpoint.enforcer.notice("warn", message.clone());
    body::error(StatusCode::BAD_GATEWAY, &message)
}

pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(crate) fn accepts_events(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The content coding a response declares, unless it is none or
/// `identity`: a body Bridle cannot read as it comes.
pub fn content_coding(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_ENCODING)?;
    let value = value.to_str().unwrap_or("(not text)").trim();
    (!value.is_empty() && !value.eq_ignore_ascii_case("identity")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_encoding_other_than_identity_is_a_content_coding() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(content_coding(&HeaderMap::new()), None);
        assert_eq!(content_coding(&with("identity")), None);
        assert_eq!(content_coding(&with(" IDENTITY ")), None);
        assert_eq!(content_coding(&with("gzip")), Some("gzip"));
        assert_eq!(content_coding(&with("br, gzip")), Some("br, gzip"));
    }
}
