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
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{self, ClientBody, read_bounded};
use super::endpoint::Endpoint;
use super::events::EventReader;
use super::exchange::{self, EventBody, OnDrop, Post};
use super::session::Session;
use super::{LAST_EVENT_ID, SESSION_ID};
use crate::framing::Line;
use crate::gateway::Reply;
use crate::jsonrpc;

/// `POST /mcp/<name>`.
pub(crate) async fn post(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let (parts, incoming) = request.into_parts();
    let known = header_text(&parts.headers, SESSION_ID);
    let session = match &known {
        Some(id) => match endpoint.session(id) {
            Some(session) => session,
            None => return unknown_session(endpoint, id),
        },
        None => match Session::start(endpoint) {
            Ok(session) => session,
            Err(error) => {
                endpoint.enforcer.notice("error", format!("cannot start an MCP session: {error}"));
                return body::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot start an MCP session: {error}"),
                );
            }
        },
    };
    session.link.touch(&parts.headers);
    let line = match read_bounded(incoming, endpoint.max_message_bytes).await {
        Ok(line) => line,
        Err(error) => {
            return body::error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {}", error.0));
        }
    };
    let refused =
        if matches!(line, Line::Oversized { .. }) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    let (exchange, reply) = Post::open(&session);
    let expect = session.gateway.from_client_via(line, &reply).await;
    drop(reply);
    let (response, head) = exchange.respond(expect, accepts_events(&parts.headers), refused).await;
    match (&known, head.headers.get(SESSION_ID).and_then(|v| v.to_str().ok())) {
        (None, Some(assigned)) => endpoint.register(assigned, &session),
        (Some(id), _) if response.status() == StatusCode::NOT_FOUND => {
            endpoint.forget(id, "the MCP server no longer knows it");
        }
        _ => {}
    }
    response
}

/// `GET /mcp/<name>`: the server's own stream of requests and
/// notifications, each through the session's core.
pub(crate) async fn get(endpoint: &Arc<Endpoint>, request: Request<Incoming>) -> Response<ClientBody> {
    let Some(id) = header_text(request.headers(), SESSION_ID) else {
        return body::error(StatusCode::BAD_REQUEST, "a GET stream needs the Mcp-Session-Id of an initialized session");
    };
    let Some(session) = endpoint.session(&id) else { return unknown_session(endpoint, &id) };
    session.link.touch(request.headers());
    let mut headers = session.link.headers("text/event-stream", false);
    if let Some(last) = request.headers().get(LAST_EVENT_ID) {
        headers.insert(LAST_EVENT_ID, last.clone());
    }
    let response = match endpoint.upstream.send(Method::GET, None, headers, Bytes::new()).await {
        Ok(response) => response,
        Err(error) => return unreachable(endpoint, &error.to_string()),
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
async fn read_stream(session: Arc<Session>, body: super::upstream::Pooled, reply: Reply) {
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
    let response = match endpoint.upstream.send(Method::DELETE, None, headers, Bytes::new()).await {
        Ok(response) => response,
        Err(error) => {
            endpoint.forget(&id, "ended by the client (the MCP server could not be told)");
            return unreachable(endpoint, &error.to_string());
        }
    };
    let status = response.status();
    body::drain(response.into_body(), 64 << 10).await;
    // 405: the server keeps sessions until they expire; Bridle's view of
    // it ends with the client's.
    endpoint.forget(&id, "ended by the client");
    exchange::status_only(status)
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

fn accepts_events(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}
