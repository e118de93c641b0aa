//! The typed authorization request: one (principal, action, resource,
//! context) tuple, built from an [`Event`](crate::event::Event).
//!
//! It is the decision cache key (so it holds exactly what Cedar sees, no
//! timestamps or pids) and converts into a Cedar request plus its entities
//! in [`cedar`].

pub mod cedar;
mod context;
mod from_event;

pub use from_event::primary_action;

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::{GitOp, McpActive, NamedBy, Publish, Transport};

/// One authorization question.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthzRequest {
    pub principal: Principal,
    pub action: Action,
    pub resource: Resource,
    pub context: Ctx,
}

/// The agent: `Agent::"<name>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub name: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub workdir: String,
}

/// Every action in `policies/bridle.cedarschema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    NetConnect,
    DnsResolve,
    HttpRequest,
    FileRead,
    FileWrite,
    FileCreate,
    FileDelete,
    FileExec,
    McpCallTool,
    McpReadResource,
    McpGetPrompt,
    McpListTools,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::NetConnect,
        Action::DnsResolve,
        Action::HttpRequest,
        Action::FileRead,
        Action::FileWrite,
        Action::FileCreate,
        Action::FileDelete,
        Action::FileExec,
        Action::McpCallTool,
        Action::McpReadResource,
        Action::McpGetPrompt,
        Action::McpListTools,
    ];

    /// (namespace, action id): `Net::Action::"Connect"` is ("Net", "Connect").
    pub fn parts(self) -> (&'static str, &'static str) {
        let text = self.cedar_str();
        let (namespace, id) = text.split_once("::Action::").unwrap_or((text, ""));
        (namespace, id.trim_matches('"'))
    }

    /// The Cedar spelling: `Net::Action::"Connect"`.
    pub fn cedar_str(self) -> &'static str {
        match self {
            Action::NetConnect => r#"Net::Action::"Connect""#,
            Action::DnsResolve => r#"Dns::Action::"Resolve""#,
            Action::HttpRequest => r#"Http::Action::"Request""#,
            Action::FileRead => r#"File::Action::"Read""#,
            Action::FileWrite => r#"File::Action::"Write""#,
            Action::FileCreate => r#"File::Action::"Create""#,
            Action::FileDelete => r#"File::Action::"Delete""#,
            Action::FileExec => r#"File::Action::"Exec""#,
            Action::McpCallTool => r#"Mcp::Action::"CallTool""#,
            Action::McpReadResource => r#"Mcp::Action::"ReadResource""#,
            Action::McpGetPrompt => r#"Mcp::Action::"GetPrompt""#,
            Action::McpListTools => r#"Mcp::Action::"ListTools""#,
        }
    }

    /// [`Action::cedar_str`], owned.
    pub fn cedar_name(self) -> String {
        self.cedar_str().to_string()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cedar_name())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Accepts the Cedar spelling (`Net::Action::"Connect"`) or the short
    /// one (`Net::Connect`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace() && *c != '"').collect();
        Action::ALL
            .into_iter()
            .find(|action| {
                let (ns, id) = action.parts();
                compact == format!("{ns}::Action::{id}") || compact == format!("{ns}::{id}")
            })
            .ok_or_else(|| {
                let known: Vec<String> = Action::ALL.iter().map(|a| a.cedar_name()).collect();
                format!("unknown action `{text}`; known actions: {}", known.join(", "))
            })
    }
}

/// What the action is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `Net::Host`: `name` is the normalized DNS name, or the IP as text.
    Host { name: String, ip: Option<IpAddr>, port: u16, proto: Transport },
    /// `Net::Domain`.
    Domain { name: String },
    /// `File::Path`: a normalized absolute path.
    Path { path: String },
    /// `Mcp::Tool`.
    Tool { server: String, name: String },
    /// `Mcp::Resource`.
    McpResource { server: String, uri: String },
    /// `Mcp::Prompt`.
    Prompt { server: String, name: String },
    /// `Mcp::Server`.
    Server { name: String },
}

impl Resource {
    /// A short human form for messages: `api.github.com:443`, `/a/b`, `fs/write_file`.
    pub fn display(&self) -> String {
        match self {
            Resource::Host { name, port, .. } => format!("{name}:{port}"),
            Resource::Domain { name } => name.clone(),
            Resource::Path { path } => path.clone(),
            Resource::Tool { server, name } | Resource::Prompt { server, name } => {
                format!("{server}/{name}")
            }
            Resource::McpResource { server, uri } => format!("{server}/{uri}"),
            Resource::Server { name } => name.clone(),
        }
    }
}

/// The request context: common parts plus the action-specific detail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ctx {
    pub process: Option<ProcessCtx>,
    pub mcp: Option<McpActive>,
    pub detail: Detail,
}

/// `Process` in the schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCtx {
    pub exe: String,
    #[serde(default)]
    pub lineage: Vec<String>,
}

/// Action-specific context attributes, as the schema declares them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Detail {
    Net {
        named_by: NamedBy,
        sni: Option<String>,
        tls: bool,
    },
    Dns {
        qtype: String,
        flags: Vec<String>,
    },
    Http(HttpCtx),
    Call(CallCtx),
    /// File actions.
    File {
        in_project: bool,
    },
    /// `ReadResource`, `ListTools`: only the common parts.
    #[default]
    Plain,
}

/// `Http::Action::"Request"` context.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCtx {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default = "unknown_size")]
    pub body_size: i64,
    #[serde(default)]
    pub dlp: Vec<String>,
    #[serde(default = "yes")]
    pub inspected: bool,
    #[serde(default)]
    pub git: Option<GitOp>,
    #[serde(default)]
    pub publish: Option<Publish>,
}

/// `Mcp::Action::"CallTool"` / `"GetPrompt"` context.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallCtx {
    /// The complete arguments object as JSON text.
    #[serde(default = "empty_object")]
    pub arguments_json: String,
    /// Typed common arguments (`path`, `url`, …), extracted from the JSON.
    #[serde(skip)]
    pub arguments: Vec<(&'static str, ArgValue)>,
    #[serde(default)]
    pub tool_changed: bool,
    #[serde(default)]
    pub findings: Vec<String>,
}

/// A typed argument value: the schema declares `paths` as a set, the rest as strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArgValue {
    Str(String),
    Set(Vec<String>),
}

/// The argument names the schema types (`Mcp::Arguments`).
pub const STRING_ARGUMENTS: [&str; 8] = ["path", "url", "uri", "command", "query", "content", "source", "destination"];

impl CallCtx {
    /// Builds the context from a JSON arguments object.
    pub fn from_arguments(arguments: &serde_json::Value) -> CallCtx {
        let mut typed = Vec::new();
        if let Some(object) = arguments.as_object() {
            for name in STRING_ARGUMENTS {
                if let Some(value) = object.get(name) {
                    typed.push((name, ArgValue::Str(json_text(value))));
                }
            }
            if let Some(paths) = object.get("paths").and_then(|v| v.as_array()) {
                typed.push(("paths", ArgValue::Set(paths.iter().map(json_text).collect())));
            }
        }
        let arguments_json = if arguments.is_null() { "{}".to_string() } else { arguments.to_string() };
        CallCtx { arguments_json, arguments: typed, tool_changed: false, findings: Vec::new() }
    }
}

/// Strings as themselves, anything else as its JSON text.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn default_method() -> String {
    "GET".into()
}
fn default_scheme() -> String {
    "https".into()
}
fn default_path() -> String {
    "/".into()
}
fn unknown_size() -> i64 {
    -1
}
fn yes() -> bool {
    true
}
fn empty_object() -> String {
    "{}".into()
}

impl Default for HttpCtx {
    fn default() -> Self {
        HttpCtx {
            method: default_method(),
            scheme: default_scheme(),
            path: default_path(),
            query: String::new(),
            headers: Vec::new(),
            body_size: unknown_size(),
            dlp: Vec::new(),
            inspected: true,
            git: None,
            publish: None,
        }
    }
}

#[cfg(test)]
mod tests;
