//! The Cedar `context` record of a request, built from Cedar values.
//!
//! `Context::from_pairs` takes expressions and evaluates each one; for an
//! HTTP request that was a third of a decision-cache miss. The values here
//! are plain strings, booleans, longs, sets and records, so they are built
//! as values directly. The schema-validation tests in `request/tests.rs`
//! hold this builder to `bridle.cedarschema`.

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::Context;
use cedar_policy_core::ast::{Context as CoreContext, Value};
use smol_str::SmolStr;

use super::{Action, ArgValue, Ctx, Detail, HttpCtx};

fn s(text: &str) -> Value {
    Value::from(text.to_string())
}

fn set(items: &[String]) -> Value {
    Value::set(items.iter().map(|item| s(item)), None)
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::record(fields, None)
}

/// The context record for `action`.
pub fn build(action: Action, ctx: &Ctx) -> Context {
    let mut fields: BTreeMap<SmolStr, Value> = BTreeMap::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(SmolStr::from(name), value);
    };
    match &ctx.detail {
        Detail::Net { named_by, sni, tls } => {
            put("named_by", s(named_by.as_str()));
            put("tls", Value::from(*tls));
            if let Some(sni) = sni {
                put("sni", s(sni));
            }
        }
        Detail::Dns { qtype, flags } => {
            put("qtype", s(qtype));
            put("flags", set(flags));
        }
        Detail::Http(http) => http_fields(http, &mut put),
        Detail::Call(call) => {
            let mut args = vec![("json", s(&call.arguments_json))];
            for (name, value) in &call.arguments {
                args.push((
                    name,
                    match value {
                        ArgValue::Str(text) => s(text),
                        ArgValue::Set(items) => set(items),
                    },
                ));
            }
            put("arguments", record(args));
            put("tool_changed", Value::from(call.tool_changed));
            put("findings", set(&call.findings));
        }
        Detail::File { in_project } => put("in_project", Value::from(*in_project)),
        Detail::Plain => {}
    }
    if let Some(process) = &ctx.process {
        put("process", record(vec![("exe", s(&process.exe)), ("lineage", set(&process.lineage))]));
    }
    if let (Some(mcp), true) = (&ctx.mcp, carries_mcp(action)) {
        put("mcp", record(vec![("server", s(&mcp.server)), ("tool", s(&mcp.tool)), ("call_id", s(&mcp.call_id))]));
    }
    Context::from(CoreContext::Value(Arc::new(fields)))
}

/// Actions whose context declares `mcp` (the MCP actions themselves do not:
/// a tool call is not "during" itself).
fn carries_mcp(action: Action) -> bool {
    !matches!(action, Action::McpCallTool | Action::McpGetPrompt | Action::McpReadResource | Action::McpListTools)
}

fn http_fields(http: &HttpCtx, put: &mut impl FnMut(&str, Value)) {
    put("method", s(&http.method));
    put("scheme", s(&http.scheme));
    put("path", s(&http.path));
    put("query", s(&http.query));
    put("headers", set(&http.headers));
    put("body_size", Value::from(http.body_size));
    put("dlp", set(&http.dlp));
    put("inspected", Value::from(http.inspected));
    if let Some(git) = &http.git {
        put("git", record(vec![("service", s(&git.service)), ("op", s(&git.op)), ("refs", set(&git.refs))]));
    }
    if let Some(publish) = &http.publish {
        put("publish", record(vec![("ecosystem", s(&publish.ecosystem)), ("package", s(&publish.package))]));
    }
}
