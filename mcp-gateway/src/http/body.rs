//! Bodies both ways, bounded: a whole JSON body read into one [`Line`]
//! (an oversized one kept as its prefix and counted, never buffered), and
//! the gateway's own answers (JSON errors, JSON-RPC errors).
//!
//! Every HTTP-level refusal the gateway makes is JSON with an `error`
//! string, so an agent (or a person with curl) can read why.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body;
use serde_json::{Value, json};

use crate::framing::{Line, OVERSIZED_PREFIX};
use crate::jsonrpc::{self, Id};

/// What the gateway sends the client.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A body cut short: the peer went away or broke the framing.
#[derive(Debug)]
pub(crate) struct BrokenBody(pub String);

/// Reads `body` whole if it is at most `max` bytes; a longer one yields
/// [`Line::Oversized`] with its first bytes (the rest is read and dropped,
/// so memory stays within `max`).
pub(crate) async fn read_bounded<B>(body: B, max: usize) -> Result<Line, BrokenBody>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    read_bounded_after(Vec::new(), body, max).await.map_err(BrokenBody)
}

/// [`read_bounded`] for a body whose first bytes, `kept`, were read
/// already (the proxy reads a window before it decides); the error says
/// how the body broke off.
pub async fn read_bounded_after<B>(mut kept: Vec<u8>, mut body: B, max: usize) -> Result<Line, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut size = kept.len();
    if size > max {
        kept.truncate(OVERSIZED_PREFIX);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else { continue };
        size += data.len();
        let room = if size <= max { data.len() } else { OVERSIZED_PREFIX.saturating_sub(kept.len()) };
        kept.extend_from_slice(&data[..room.min(data.len())]);
        if size > max && kept.len() > OVERSIZED_PREFIX {
            kept.truncate(OVERSIZED_PREFIX);
            kept.shrink_to_fit();
        }
    }
    Ok(if size > max { Line::Oversized { prefix: kept, size } } else { Line::Message(kept) })
}

/// Up to `max` bytes of `body`, for quoting what a server sent instead of
/// JSON-RPC; the rest is not read.
pub(crate) async fn excerpt<B>(mut body: B, max: usize) -> String
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut kept = Vec::new();
    while kept.len() < max {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    kept.extend_from_slice(&data[..data.len().min(max - kept.len())]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&kept).trim().to_string()
}

/// Drains `body` (so its connection can be reused), up to `max` bytes.
pub(crate) async fn drain<B>(mut body: B, max: usize)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut seen = 0usize;
    while seen <= max {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn empty() -> ClientBody {
    full(Bytes::new())
}

/// `status` with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<ClientBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    json_bytes(status, bytes)
}

pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<ClientBody> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An HTTP-level refusal: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<ClientBody> {
    json_response(status, &json!({ "error": message }))
}

/// An HTTP-level refusal an MCP client reads as the answer to its request:
/// a JSON-RPC error (id null) that also names the problem for people.
pub(crate) fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<ClientBody> {
    json_response(status, &jsonrpc::error_response(None::<&Id>, code, message, None))
}
