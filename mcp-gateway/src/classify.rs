//! MCP method → the [`McpPayload`] policies and the audit see.
//!
//! Governed requests (`tools/call`, `resources/read`, `prompts/get`,
//! `tools/list`) must carry what they are decided on; one that does not is
//! refused as invalid params rather than forwarded undecided. Everything
//! else keeps its method name as [`McpPayload::Other`].

use bridle_engine::event::McpPayload;
use serde_json::{Map, Value};

/// The payload of a request the client sends; `Err` is the invalid-params
/// reason for a governed method missing its subject.
pub fn client_request(method: &str, params: &Value) -> Result<McpPayload, String> {
    let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_string);
    let required = |key: &str| text(key).ok_or_else(|| format!("{method} needs params.{key} (a string)"));
    let arguments = || match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(arguments) => arguments.clone(),
    };
    Ok(match method {
        "initialize" => McpPayload::Initialize {
            server_name: None,
            server_version: None,
            protocol_version: text("protocolVersion"),
        },
        "tools/list" => McpPayload::ToolsList,
        "tools/call" => McpPayload::ToolsCall { name: required("name")?, arguments: arguments() },
        "resources/read" => McpPayload::ResourcesRead { uri: required("uri")? },
        "prompts/get" => McpPayload::PromptsGet { name: required("name")?, arguments: arguments() },
        other => McpPayload::Other { name: other.to_string() },
    })
}

/// The payload recorded for the response to a request: the request's own
/// (arguments dropped; they were audited with the request), or the
/// server's identity for `initialize`.
pub fn response(request: &McpPayload, result: Option<&Value>) -> McpPayload {
    match request {
        McpPayload::Initialize { .. } => {
            let info = result.and_then(|r| r.get("serverInfo"));
            let field = |value: Option<&Value>, key: &str| {
                value.and_then(|v| v.get(key)).and_then(Value::as_str).map(str::to_string)
            };
            McpPayload::Initialize {
                server_name: field(info, "name"),
                server_version: field(info, "version"),
                protocol_version: field(result, "protocolVersion"),
            }
        }
        McpPayload::ToolsCall { name, .. } => McpPayload::ToolsCall { name: name.clone(), arguments: Value::Null },
        McpPayload::PromptsGet { name, .. } => McpPayload::PromptsGet { name: name.clone(), arguments: Value::Null },
        other => other.clone(),
    }
}

/// The payload for a notification or a server-initiated request.
pub fn other(method: &str) -> McpPayload {
    McpPayload::Other { name: method.to_string() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn governed_methods_carry_their_subject() {
        let call = client_request("tools/call", &json!({"name": "write", "arguments": {"path": "/x"}}));
        assert_eq!(call, Ok(McpPayload::ToolsCall { name: "write".into(), arguments: json!({"path": "/x"}) }));
        let bare = client_request("tools/call", &json!({"name": "list"}));
        assert_eq!(bare, Ok(McpPayload::ToolsCall { name: "list".into(), arguments: json!({}) }));
        let read = client_request("resources/read", &json!({"uri": "file:///etc/passwd"}));
        assert_eq!(read, Ok(McpPayload::ResourcesRead { uri: "file:///etc/passwd".into() }));
        let prompt = client_request("prompts/get", &json!({"name": "p"}));
        assert_eq!(prompt, Ok(McpPayload::PromptsGet { name: "p".into(), arguments: json!({}) }));
        assert_eq!(client_request("tools/list", &Value::Null), Ok(McpPayload::ToolsList));
        assert_eq!(client_request("ping", &Value::Null), Ok(McpPayload::Other { name: "ping".into() }));
    }

    #[test]
    fn a_governed_method_without_its_subject_is_refused() {
        assert!(client_request("tools/call", &json!({})).is_err());
        assert!(client_request("tools/call", &json!({"name": 5})).is_err());
        assert!(client_request("resources/read", &Value::Null).is_err());
        assert!(client_request("prompts/get", &json!({"arguments": {}})).is_err());
    }

    #[test]
    fn initialize_records_both_sides() {
        let request = client_request("initialize", &json!({"protocolVersion": "2025-11-25"})).expect("payload");
        let result = json!({"protocolVersion": "2025-06-18", "serverInfo": {"name": "demo", "version": "1.2"}});
        assert_eq!(
            response(&request, Some(&result)),
            McpPayload::Initialize {
                server_name: Some("demo".into()),
                server_version: Some("1.2".into()),
                protocol_version: Some("2025-06-18".into()),
            }
        );
    }
}
