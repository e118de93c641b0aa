//! JSON-RPC 2.0 as MCP uses it: one JSON value per line, an object (a
//! request, a notification or a response) or a batch (an array of them).
//!
//! [`parse`] sorts a line into [`Message`]s and keeps each one's JSON value,
//! so the gateway can forward it (or rewrite it) without a second parse.
//! Anything that is not a well-formed message becomes [`Message::Invalid`]
//! with the id when one could be read, so its error can be addressed.
//!
//! Error codes the gateway answers with (besides JSON-RPC's own
//! [`PARSE_ERROR`], [`INVALID_REQUEST`], [`INVALID_PARAMS`]):
//! [`DENIED`] (policy), [`CONNECTION_CLOSED`] (the server went away before
//! answering, the MCP SDKs' own code for that) and [`TOO_LARGE`].

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::{Map, Value, json};

/// The line is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Valid JSON, but not a JSON-RPC message (or an id reused while in flight).
pub const INVALID_REQUEST: i64 = -32600;
/// A governed method without what it is decided on (a tool name, a URI).
pub const INVALID_PARAMS: i64 = -32602;
/// The server exited, or sent garbage, before answering.
pub const CONNECTION_CLOSED: i64 = -32000;
/// Bridle's policy denied the request; `data` holds `policy` and `reason`.
pub const DENIED: i64 = -32001;
/// The message is larger than the gateway's configured bound.
pub const TOO_LARGE: i64 = -32003;

/// A request id (a string or a number), kept as its JSON text so `1` and
/// `"1"` stay different keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// The id in `value`, if it is a string or a number (MCP forbids null).
    pub fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::String(_) | Value::Number(_) => serde_json::to_string(value).ok().map(Id),
            _ => None,
        }
    }

    /// The id as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The id as events show it: a string's contents, a number's digits.
    pub fn text(&self) -> String {
        match self.to_value() {
            Value::String(text) => text,
            _ => self.0.clone(),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A call that expects a response.
    Request { id: Id, method: String, params: Value },
    /// A call that expects none.
    Notification { method: String, params: Value },
    /// A result or an error for an earlier request.
    Response { id: Id },
    /// Not a well-formed message; `id` if one could be read.
    Invalid { id: Option<Id>, reason: String },
}

/// A message and the JSON it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub message: Message,
    pub value: Value,
}

/// What one line held.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Single(Parsed),
    /// A non-empty array of messages.
    Batch(Vec<Parsed>),
}

/// Why a line is not even a message or a batch (answered with id null).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("empty batch")]
    EmptyBatch,
    #[error("a JSON-RPC message must be an object or an array of objects, not {0}")]
    NotAnObject(&'static str),
}

/// Parses one line.
pub fn parse(line: &[u8]) -> Result<Frame, FrameError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| FrameError::Json(e.to_string()))?;
    match value {
        Value::Array(items) if items.is_empty() => Err(FrameError::EmptyBatch),
        Value::Array(items) => Ok(Frame::Batch(items.into_iter().map(classify).collect())),
        Value::Object(_) => Ok(Frame::Single(classify(value))),
        other => Err(FrameError::NotAnObject(type_name(&other))),
    }
}

/// The id of `line` if it is one well-formed response and nothing else,
/// read without building it: an object with `"jsonrpc": "2.0"`, a string
/// or number id, exactly one of `result` and `error`, no `method`, and no
/// key twice. `None` says only "not that": [`parse`] tells what it is. An
/// answer passed on as the server's bytes needs no more than this before
/// it goes (its result is scanned with its record, afterwards).
pub fn response_id(line: &[u8]) -> Option<Id> {
    /// Whether a key occurred, whatever its value (`null` too, unlike `Option`).
    #[derive(Default)]
    struct Seen(bool);
    impl<'de> Deserialize<'de> for Seen {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(deserializer).map(|_| Seen(true))
        }
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        jsonrpc: Option<&'a str>,
        id: Option<Value>,
        #[serde(default)]
        method: Seen,
        #[serde(default)]
        result: Seen,
        #[serde(default)]
        error: Seen,
    }
    // A struct also deserializes from an array; a batch is not a response.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    // Duplicate keys are an error here, where `parse` keeps the last: such
    // a message takes the long way.
    let head: Head<'_> = serde_json::from_slice(line).ok()?;
    let valid = head.jsonrpc == Some("2.0") && !head.method.0 && head.result.0 != head.error.0;
    valid.then(|| head.id.as_ref().and_then(Id::from_value)).flatten()
}

/// Sorts one JSON value into a [`Message`].
pub fn classify(value: Value) -> Parsed {
    let message = match &value {
        Value::Object(object) => message_of(object),
        other => {
            Message::Invalid { id: None, reason: format!("a batch item must be an object, not {}", type_name(other)) }
        }
    };
    Parsed { message, value }
}

fn message_of(object: &Map<String, Value>) -> Message {
    let id = object.get("id");
    let valid_id = id.and_then(Id::from_value);
    let fallback = valid_id.clone();
    let invalid = |reason: String| Message::Invalid { id: fallback.clone(), reason };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("missing \"jsonrpc\": \"2.0\"".into());
    }
    if let Some(id) = id
        && valid_id.is_none()
    {
        return invalid(format!("id must be a string or a number, not {}", type_name(id)));
    }
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return invalid(format!("params must be an object, not {}", type_name(&params)));
    }
    match (object.get("method"), valid_id) {
        (Some(Value::String(method)), Some(id)) => Message::Request { id, method: method.clone(), params },
        (Some(Value::String(method)), None) => Message::Notification { method: method.clone(), params },
        (Some(other), _) => invalid(format!("method must be a string, not {}", type_name(other))),
        (None, Some(id)) => match (object.contains_key("result"), object.contains_key("error")) {
            (true, false) | (false, true) => Message::Response { id },
            (true, true) => invalid("a response has both result and error".into()),
            (false, false) => invalid("a message with an id needs a method, a result or an error".into()),
        },
        (None, None) => invalid("a message needs a method or an id".into()),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error response for `id` (null when unknown).
pub fn error_response(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(data), Some(object)) = (data, error.as_object_mut()) {
        object.insert("data".into(), data);
    }
    json!({ "jsonrpc": "2.0", "id": id.map_or(Value::Null, Id::to_value), "error": error })
}

#[cfg(test)]
mod tests;
