//! `bridle policy lint`: findings beyond validation, each with a code.
//!
//! | code  | finding |
//! |-------|---------|
//! | BL001 | a permit fully shadowed by an unconditional forbid (it can never allow anything) |
//! | BL002 | a forbid without `@reason` (the agent and the console get no explanation) |
//! | BL003 | a `like` pattern on a name that ignores label boundaries (`"*github.com"` matches `evilgithub.com`) |
//! | BL004 | duplicate `@id` |
//! | BL005 | an attribute the schema marks optional, read without `has` |
//! | BL006 | a policy without `@id` (its id would change when lines move) |
//! | BL007 | an annotation Bridle does not know (a typo such as `@resaon`) |
//! | BL008 | a validator warning (confusable or mixed-script text) |
//!
//! Parse and other schema errors are reported too, without a code.

use cedar_policy::Policy;
use serde_json::Value;

use super::diag::{Diagnostic, Severity};
use super::load::{KNOWN_ANNOTATIONS, parse_files};
use super::{PolicyFile, PolicyMeta};

/// Every finding for a set of files, sorted by location.
pub fn lint(files: &[PolicyFile]) -> Vec<Diagnostic> {
    let parsed = parse_files(files);
    let mut findings = parsed.diagnostics;
    let (errors, warnings) = super::load::validate(files, &parsed.policies);
    findings.extend(errors);
    findings.extend(warnings.into_iter().map(|w| w.with_code("BL008", Severity::Warning)));
    let jsons: Vec<(Value, &PolicyMeta)> =
        parsed.policies.iter().filter_map(|(p, m)| p.to_json().ok().map(|json| (json, m))).collect();
    for (policy, meta) in &parsed.policies {
        per_policy(policy, meta, &mut findings);
    }
    for (json, meta) in jsons.iter().filter(|(json, _)| applies_to_network(json)) {
        find_unbounded_likes(json, meta, &mut findings);
    }
    shadowed_permits(&jsons, &mut findings);
    findings.sort_by(|a, b| (&a.file, a.line, a.col, a.code).cmp(&(&b.file, b.line, b.col, b.code)));
    findings
}

fn at(meta: &PolicyMeta, code: &'static str, severity: Severity, message: String) -> Diagnostic {
    Diagnostic {
        file: meta.file.clone(),
        line: meta.line,
        col: meta.col,
        severity,
        code: Some(code),
        policy: Some(meta.id.clone()),
        message,
    }
}

fn per_policy(policy: &Policy, meta: &PolicyMeta, out: &mut Vec<Diagnostic>) {
    if meta.forbid && meta.reason.is_none() {
        let msg = "forbid without @reason: the agent and the console will not learn why".to_string();
        out.push(at(meta, "BL002", Severity::Warning, msg));
    }
    if !meta.has_id {
        let msg = format!("policy has no @id; it is known as `{}`, which changes when lines move", meta.id);
        out.push(at(meta, "BL006", Severity::Warning, msg));
    }
    for (key, _) in policy.annotations() {
        if !KNOWN_ANNOTATIONS.contains(&key) {
            let msg = format!("unknown annotation @{key}; Bridle knows @{}", KNOWN_ANNOTATIONS.join(", @"));
            out.push(at(meta, "BL007", Severity::Warning, msg));
        }
    }
}

/// Attributes that hold DNS names (in network policies).
const NAME_ATTRS: [&str; 5] = ["name", "host", "sni", "qname", "domain"];

/// Whether a policy can apply to a network action (where `name` is a DNS
/// name, not a file or tool name).
fn applies_to_network(json: &Value) -> bool {
    let action = &json["action"];
    if action["op"] == "All" {
        return true;
    }
    let listed =
        action.get("entities").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![action["entity"].clone()]);
    listed.iter().any(|a| matches!(a["type"].as_str(), Some("Net::Action" | "Dns::Action" | "Http::Action")))
}

fn find_unbounded_likes(json: &Value, meta: &PolicyMeta, out: &mut Vec<Diagnostic>) {
    match json {
        Value::Object(map) => {
            if let Some(like) = map.get("like") {
                check_like(like, meta, out);
            }
            map.values().for_each(|v| find_unbounded_likes(v, meta, out));
        }
        Value::Array(items) => items.iter().for_each(|v| find_unbounded_likes(v, meta, out)),
        _ => {}
    }
}

fn check_like(like: &Value, meta: &PolicyMeta, out: &mut Vec<Diagnostic>) {
    let attr = like.pointer("/left/./attr").and_then(Value::as_str).unwrap_or("");
    let Some(pattern) = like.get("pattern").and_then(Value::as_array) else { return };
    let text: String = pattern
        .iter()
        .map(|elem| match elem.get("Literal").and_then(Value::as_str) {
            Some(literal) => literal.to_string(),
            None => "*".to_string(),
        })
        .collect();
    let Some(after_star) = text.strip_prefix('*') else { return };
    let looks_like_domain =
        after_star.contains('.') && after_star.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let unbounded = after_star.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if unbounded && looks_like_domain && NAME_ATTRS.contains(&attr) {
        let msg = format!(
            "`like \"{text}\"` ignores label boundaries and also matches `evil{after_star}`; \
             use `resource in Net::Domain::\"{after_star}\"` or `like \"*.{after_star}\"`"
        );
        out.push(at(meta, "BL003", Severity::Warning, msg));
    }
}

/// BL001: a permit whose whole scope an unconditional, enforced forbid covers.
fn shadowed_permits(policies: &[(Value, &PolicyMeta)], out: &mut Vec<Diagnostic>) {
    let killers: Vec<&(Value, &PolicyMeta)> = policies
        .iter()
        .filter(|(json, meta)| meta.forbid && !meta.ask && !meta.shadow && is_unconditional(json))
        .collect();
    for (permit, meta) in policies.iter().filter(|(_, meta)| !meta.forbid) {
        if let Some((_, killer)) = killers.iter().find(|(forbid, _)| covers(forbid, permit)) {
            let msg = format!(
                "permit can never allow anything: forbid `{}` at {}:{} has no conditions and covers its whole scope",
                killer.id, killer.file, killer.line
            );
            out.push(at(meta, "BL001", Severity::Warning, msg));
        }
    }
}

fn is_unconditional(json: &Value) -> bool {
    json.get("conditions").and_then(Value::as_array).is_none_or(Vec::is_empty)
}

fn covers(forbid: &Value, permit: &Value) -> bool {
    ["principal", "resource"].iter().all(|slot| scope_covers(&forbid[slot], &permit[slot]))
        && action_covers(&forbid["action"], &permit["action"])
}

fn scope_covers(forbid: &Value, permit: &Value) -> bool {
    let op = |v: &Value| v.get("op").and_then(Value::as_str).unwrap_or("").to_string();
    match (op(forbid).as_str(), op(permit).as_str()) {
        ("All", _) => true,
        (_, "All") => false,
        ("==", "==") => forbid["entity"] == permit["entity"],
        ("in", "==" | "in") => entity_within(&permit["entity"], &forbid["entity"]),
        ("is", "is") => {
            forbid["entity_type"] == permit["entity_type"]
                && (forbid.get("in").is_none()
                    || permit.get("in").is_some_and(|p| entity_within(&p["entity"], &forbid["in"]["entity"])))
        }
        _ => forbid == permit,
    }
}

/// `inner` is `outer` or provably below it (names encode the hierarchy of
/// domains and directories).
fn entity_within(inner: &Value, outer: &Value) -> bool {
    if inner == outer {
        return true;
    }
    let (Some(inner_ty), Some(outer_ty)) = (inner["type"].as_str(), outer["type"].as_str()) else { return false };
    let (Some(inner_id), Some(outer_id)) = (inner["id"].as_str(), outer["id"].as_str()) else { return false };
    match (inner_ty, outer_ty) {
        ("Net::Domain" | "Net::Host", "Net::Domain") => {
            inner_id.strip_suffix(outer_id).is_some_and(|rest| rest.ends_with('.'))
        }
        ("File::Dir" | "File::Path", "File::Dir") => {
            outer_id == "/" || inner_id.strip_prefix(outer_id).is_some_and(|rest| rest.starts_with('/'))
        }
        _ => false,
    }
}

fn action_covers(forbid: &Value, permit: &Value) -> bool {
    let actions = |v: &Value| -> Option<Vec<Value>> {
        match v.get("op").and_then(Value::as_str) {
            Some("All") => None,
            _ => Some(match v.get("entities").and_then(Value::as_array) {
                Some(list) => list.clone(),
                None => vec![v["entity"].clone()],
            }),
        }
    };
    match (actions(forbid), actions(permit)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(outer), Some(inner)) => inner.iter().all(|a| outer.contains(a)),
    }
}

#[cfg(test)]
mod tests;
