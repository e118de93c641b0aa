//! `bridle policy test`: the test-file format and its runner.
//!
//! A test file is TOML. Each `[[case]]` is one request and the effect it must
//! get; `policies` optionally lists the `@id`s that must have determined it.
//!
//! ```toml
//! policies = "../examples"          # policy dir, relative to this file (or "builtin:default")
//! principal = { name = "claude", workdir = "/workspace" }   # default for every case
//!
//! [[case]]
//! name = "the GitHub API is reachable"
//! action = 'Net::Action::"Connect"'
//! resource = { host = "api.github.com", port = 443 }
//! context = { named_by = "sni", tls = true }
//! expect = "allow"                  # allow | deny | ask | shadow-deny
//! policies = ["allow-approved-domains"]
//! ```
//!
//! `resource` by action: Connect/Request `{host, ip, port = 443, proto = "tcp"}`;
//! Resolve `{name}`; File actions `{path}`; CallTool `{server, tool}`;
//! GetPrompt `{server, prompt}`; ReadResource `{server, uri}`; ListTools `{server}`.
//! `context` holds the schema's context attributes for that action (defaults
//! fill the rest); `process = {exe, lineage}` and `mcp = {server, tool, call_id}`
//! where the action has them; MCP `arguments` is any table.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::BUILTIN_DEFAULT;
use super::diag::{Diagnostic, line_col};
use crate::authorizer::Authorizer;
use crate::decision::{Decision, Effect};
use crate::event::{McpActive, NamedBy, Transport};
use crate::request::{Action, AuthzRequest, CallCtx, Ctx, Detail, HttpCtx, Principal, ProcessCtx, Resource};
use crate::schema::schema;

/// A parsed test file.
#[derive(Debug)]
pub struct TestFile {
    pub path: PathBuf,
    /// The policy set these cases test: a directory, or `None` for the built-in default.
    pub policies: Option<PolicyRef>,
    pub cases: Vec<TestCase>,
}

/// What a test file's `policies` key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyRef {
    Builtin,
    Dir(PathBuf),
}

/// One case: a request and what it must get.
#[derive(Debug)]
pub struct TestCase {
    pub name: String,
    pub line: usize,
    pub request: AuthzRequest,
    pub expect: Effect,
    pub policies: Option<Vec<String>>,
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    pub expect: Effect,
    pub expect_policies: Option<Vec<String>>,
    pub got: Decision,
    pub passed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    policies: Option<String>,
    principal: Option<PrincipalSpec>,
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Spanned<String>,
    principal: Option<PrincipalSpec>,
    action: Spanned<String>,
    resource: Spanned<toml::Table>,
    context: Option<Spanned<toml::Table>>,
    expect: Spanned<String>,
    policies: Option<Vec<String>>,
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum PrincipalSpec {
    Name(String),
    Full(Principal),
}

impl PrincipalSpec {
    fn into_principal(self) -> Principal {
        match self {
            PrincipalSpec::Name(name) => Principal { name, workdir: "/workspace".into(), ..Principal::default() },
            PrincipalSpec::Full(principal) => principal,
        }
    }
}

/// Reads and parses a test file; every error names file:line:col.
pub fn load(path: &Path) -> Result<TestFile, Diagnostic> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostic::error_at(&name, "", 0, e.to_string()))?;
    parse(path, &text)
}

/// Parses a test file's text.
pub fn parse(path: &Path, text: &str) -> Result<TestFile, Diagnostic> {
    let name = path.display().to_string();
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        Diagnostic::error_at(&name, text, offset, e.message().trim().to_string())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let policies = raw
        .policies
        .map(|p| if p == BUILTIN_DEFAULT { PolicyRef::Builtin } else { PolicyRef::Dir(clean(&base.join(p))) });
    let default_principal = raw
        .principal
        .map_or_else(|| PrincipalSpec::Name("agent".into()).into_principal(), PrincipalSpec::into_principal);
    let cases = raw
        .cases
        .into_iter()
        .map(|case| {
            let case_name = case.name.get_ref().clone();
            let at = |offset: usize, message: String| {
                Diagnostic::error_at(&name, text, offset, format!("case `{case_name}`: {message}"))
            };
            build_case(case, &default_principal, text, &at)
        })
        .collect::<Result<_, _>>()?;
    Ok(TestFile { path: path.to_path_buf(), policies, cases })
}

/// `tests/../examples` → `examples`, lexically, so messages name the
/// policy files the way a person would.
fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

fn build_case(
    case: RawCase,
    default_principal: &Principal,
    text: &str,
    at: &dyn Fn(usize, String) -> Diagnostic,
) -> Result<TestCase, Diagnostic> {
    let action: Action = case.action.get_ref().parse().map_err(|e| at(case.action.span().start, e))?;
    let expect = Effect::parse(case.expect.get_ref()).ok_or_else(|| {
        let msg = format!("expect = `{}`: use allow, deny, ask or shadow-deny", case.expect.get_ref());
        at(case.expect.span().start, msg)
    })?;
    let principal = case.principal.map_or_else(|| default_principal.clone(), PrincipalSpec::into_principal);
    let resource = resource_for(action, case.resource.get_ref().clone())
        .map_err(|e| at(case.resource.span().start, format!("resource: {e}")))?;
    let name_offset = case.name.span().start;
    let (table, offset) =
        case.context.map_or((toml::Table::new(), name_offset), |c| (c.get_ref().clone(), c.span().start));
    let context = context_for(action, &resource, &principal, table).map_err(|e| at(offset, format!("context: {e}")))?;
    let request = AuthzRequest { principal, action, resource, context };
    let entities = request.cedar_entities().map_err(|e| at(name_offset, e.to_string()))?;
    request.cedar_request(&entities, Some(schema())).map_err(|e| at(name_offset, e.to_string()))?;
    Ok(TestCase {
        name: case.name.into_inner(),
        line: line_col(text, name_offset).0,
        request,
        expect,
        policies: case.policies,
    })
}

fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().trim().to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSpec {
    host: Option<String>,
    ip: Option<IpAddr>,
    #[serde(default = "https_port")]
    port: u16,
    #[serde(default = "tcp")]
    proto: Transport,
}

fn https_port() -> u16 {
    443
}

fn tcp() -> Transport {
    Transport::Tcp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameSpec {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathSpec {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    server: String,
    tool: Option<String>,
    prompt: Option<String>,
    uri: Option<String>,
}

fn resource_for(action: Action, table: toml::Table) -> Result<Resource, String> {
    use crate::names::{normalize_domain, normalize_path};
    Ok(match action {
        Action::NetConnect | Action::HttpRequest => {
            let spec: HostSpec = from_table(table)?;
            let name = match (&spec.host, spec.ip) {
                (Some(host), _) => normalize_domain(host),
                (None, Some(ip)) => ip.to_string(),
                (None, None) => return Err("give `host` or `ip`".into()),
            };
            Resource::Host { name, ip: spec.ip, port: spec.port, proto: spec.proto }
        }
        Action::DnsResolve => Resource::Domain { name: normalize_domain(&from_table::<NameSpec>(table)?.name) },
        Action::FileRead | Action::FileWrite | Action::FileCreate | Action::FileDelete | Action::FileExec => {
            Resource::Path { path: normalize_path(&from_table::<PathSpec>(table)?.path, "/") }
        }
        Action::McpCallTool | Action::McpGetPrompt | Action::McpReadResource | Action::McpListTools => {
            mcp_resource(action, from_table(table)?)?
        }
    })
}

fn mcp_resource(action: Action, spec: ServerSpec) -> Result<Resource, String> {
    let ServerSpec { server, tool, prompt, uri } = spec;
    let need = |value: Option<String>, key: &str| value.ok_or_else(|| format!("`{key}` is required for {action}"));
    Ok(match action {
        Action::McpCallTool => Resource::Tool { server, name: need(tool, "tool")? },
        Action::McpGetPrompt => Resource::Prompt { server, name: need(prompt, "prompt")? },
        Action::McpReadResource => Resource::McpResource { server, uri: need(uri, "uri")? },
        _ => Resource::Server { name: server },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetSpec {
    named_by: Option<NamedBy>,
    sni: Option<String>,
    #[serde(default)]
    tls: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSpec {
    #[serde(default = "a_record")]
    qtype: String,
    #[serde(default)]
    flags: Vec<String>,
}

fn a_record() -> String {
    "A".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    in_project: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    #[serde(default)]
    arguments: toml::Table,
    #[serde(default)]
    tool_changed: bool,
    #[serde(default)]
    findings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSpec {}

fn context_for(
    action: Action,
    resource: &Resource,
    principal: &Principal,
    mut table: toml::Table,
) -> Result<Ctx, String> {
    let process: Option<ProcessCtx> = table
        .remove("process")
        .map(|v| v.try_into().map_err(|e: toml::de::Error| format!("process: {}", e.message().trim())))
        .transpose()?;
    let mcp: Option<McpActive> = table
        .remove("mcp")
        .map(|v| v.try_into().map_err(|e: toml::de::Error| format!("mcp: {}", e.message().trim())))
        .transpose()?;
    let detail = match action {
        Action::NetConnect => {
            let spec: NetSpec = from_table(table)?;
            let named_by = spec.named_by.unwrap_or(match resource {
                Resource::Host { ip: Some(ip), name, .. } if *name == ip.to_string() => NamedBy::Ip,
                _ => NamedBy::Sni,
            });
            Detail::Net { named_by, sni: spec.sni, tls: spec.tls }
        }
        Action::DnsResolve => {
            let spec: DnsSpec = from_table(table)?;
            Detail::Dns { qtype: spec.qtype.to_ascii_uppercase(), flags: spec.flags }
        }
        Action::HttpRequest => Detail::Http(from_table::<HttpCtx>(table)?),
        Action::McpCallTool | Action::McpGetPrompt => {
            let spec: CallSpec = from_table(table)?;
            let arguments = serde_json::to_value(&spec.arguments).map_err(|e| format!("arguments: {e}"))?;
            let mut call = CallCtx::from_arguments(&arguments);
            call.tool_changed = spec.tool_changed;
            call.findings = spec.findings;
            Detail::Call(call)
        }
        Action::McpReadResource | Action::McpListTools => {
            from_table::<NoSpec>(table)?;
            Detail::Plain
        }
        _ => {
            let spec: FileSpec = from_table(table)?;
            let in_project = spec.in_project.unwrap_or_else(
                || matches!(resource, Resource::Path { path } if crate::names::is_within(path, &principal.workdir)),
            );
            Detail::File { in_project }
        }
    };
    Ok(Ctx { process, mcp, detail })
}

/// Runs every case against `authz` (uncached, so each case is evaluated).
pub fn run(file: &TestFile, authz: &Authorizer) -> Vec<CaseResult> {
    file.cases
        .iter()
        .map(|case| {
            let got = authz.decide_uncached(&case.request);
            let policies_match = case.policies.as_ref().is_none_or(|want| {
                let mut want = want.clone();
                let mut have = got.policies.clone();
                want.sort();
                have.sort();
                want == have
            });
            CaseResult {
                name: case.name.clone(),
                line: case.line,
                expect: case.expect,
                expect_policies: case.policies.clone(),
                passed: got.effect == case.expect && policies_match,
                got,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
