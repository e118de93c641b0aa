//! Denies that hold for a whole destination, for the kernel verdict cache.
//!
//! The redirector can refuse a `connect()` with ECONNREFUSED before any
//! proxying when the proxy has told it that every connect to (ip, port,
//! proto) is denied. Such a cached deny is only correct if it holds whatever
//! name (SNI, `Host`, DNS answer), process or content a later connection
//! to that destination carries.
//!
//! Why the rule here is exact, not just safe: Cedar's forbid always wins.
//! If an enforced forbid (neither `@ask` nor `@shadow`) applies to a Connect,
//! the decision is Deny whatever else holds; and a forbid that reads only
//! the destination and the principal evaluates the same for every Connect
//! with that destination and principal, because nothing it reads can
//! differ between them. So a deny found through such a forbid is exactly
//! the deny the full decision path would return for every later Connect to
//! that (ip, port, proto) by the same principal: the cache never refuses
//! what the proxy would have let through, for any name or process. A forbid
//! that does not apply proves nothing, so `None` means "decide as usual".
//!
//! "Reads only the destination" is checked on the policy's JSON form and
//! errs towards "no": the resource scope must be unconstrained or
//! `is Net::Host` (no `in` — the domain hierarchy is built from the name);
//! the conditions may read `principal`, `action`, literals and
//! `resource.ip` / `.port` / `.proto` (attribute access or `has`), and
//! test `resource is T`, but never `context`, `resource.name`, the resource
//! itself (`resource == …`, `resource in …`), or an entity literal other
//! than an agent or an action (whether `Net::Domain::"a" in
//! Net::Domain::"b"` holds depends on the entities built for the name).
//!
//! Two duties fall on the caller: key the cache per principal (the
//! principal is fixed per session, and a forbid may read it), and drop
//! entries stamped with an older [`DestinationDeny::generation`] on reload.

use cedar_policy::{Effect as CedarEffect, Policy, PolicySet};
use serde_json::Value;

use super::Authorizer;
use super::compiled::applies_to;
use super::index::build;
use crate::policy::LoadedPolicies;
use crate::request::{Action, AuthzRequest, Resource};

/// The resource attributes a destination (ip, port, proto) determines.
const DESTINATION_ATTRS: [&str; 3] = ["ip", "port", "proto"];

/// Cedar's extension functions: pure functions of their arguments. Anything
/// else under a key we do not know is treated as unrecognised.
const EXTENSION_FUNCTIONS: [&str; 22] = [
    "ip",
    "isIpv4",
    "isIpv6",
    "isLoopback",
    "isMulticast",
    "isInRange",
    "decimal",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "datetime",
    "duration",
    "offset",
    "durationSince",
    "toDate",
    "toTime",
    "toMilliseconds",
    "toSeconds",
    "toMinutes",
    "toHours",
    "toDays",
];

/// Every Connect to a destination is denied, by `policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationDeny {
    /// The `@id` of the forbid that applies (the first in set order).
    pub policy: String,
    /// Its `@reason`, if it has one.
    pub reason: Option<String>,
    /// The policy generation the deny belongs to.
    pub generation: u64,
}

impl Authorizer {
    /// Whether the current generation has any destination-only enforced
    /// forbid, so callers can skip [`Authorizer::destination_deny`].
    pub fn has_destination_forbids(&self) -> bool {
        self.current.load().compiled.destination.is_some()
    }

    /// `Some` when every `Net::Action::"Connect"` to this request's (ip,
    /// port, proto) is denied by the current generation, whatever name or
    /// context it carries (see the module doc). `None` for other actions,
    /// for a destination without an IP, and when no such forbid applies.
    pub fn destination_deny(&self, request: &AuthzRequest) -> Option<DestinationDeny> {
        if request.action != Action::NetConnect || !matches!(request.resource, Resource::Host { ip: Some(_), .. }) {
            return None;
        }
        let generation = self.current.load();
        let forbids = generation.compiled.destination.as_ref()?;
        // A request Bridle cannot express proves nothing; the normal path
        // denies it anyway.
        let entities = self.engine.entities_for(request).ok()?;
        let cedar_request = request.cedar_request(&entities, None).ok()?;
        let response = self.engine.cedar.is_authorized(&cedar_request, forbids, &entities.entities);
        let policy = generation.ordered(&response).into_iter().next()?;
        let reason = generation.policies.meta.get(&policy).and_then(|m| m.reason.clone());
        Some(DestinationDeny { policy, reason, generation: generation.number })
    }
}

/// The enforced forbids that can apply to a Connect and read only its
/// destination; `None` when there are none.
pub(super) fn forbids(policies: &LoadedPolicies) -> Option<PolicySet> {
    let chosen: Vec<Policy> = policies
        .set
        .policies()
        .filter(|policy| {
            // Without metadata we cannot tell `@ask`/`@shadow` apart: leave it out.
            let enforced = policies.meta.get(&policy.id().to_string()).is_some_and(|m| !m.ask && !m.shadow);
            policy.effect() == CedarEffect::Forbid
                && enforced
                && applies_to(policy, Action::NetConnect)
                && policy.to_json().is_ok_and(|json| destination_only(&json))
        })
        .cloned()
        .collect();
    (!chosen.is_empty()).then(|| build(chosen.into_iter()))
}

/// Whether a policy (its JSON form) reads nothing but the destination,
/// the principal and the action.
pub(super) fn destination_only(policy: &Value) -> bool {
    let resource_scope = match policy["resource"]["op"].as_str() {
        Some("All") => true,
        Some("is") => policy["resource"].get("in").is_none(),
        _ => false,
    };
    // A template slot is unrecognised (loaded policies are static anyway).
    let no_slots = policy["principal"].get("slot").is_none();
    let conditions =
        policy["conditions"].as_array().is_some_and(|all| all.iter().all(|c| reads_destination(&c["body"])));
    resource_scope && no_slots && conditions
}

/// Whether an expression reads only the destination, the principal, the
/// action and literals.
fn reads_destination(expr: &Value) -> bool {
    let Some(object) = expr.as_object() else { return false };
    let mut entries = object.iter();
    let (Some((op, body)), None) = (entries.next(), entries.next()) else { return false };
    let reads = |key: &str| reads_destination(&body[key]);
    match op.as_str() {
        "Value" => literal_ok(body),
        "Var" => matches!(body.as_str(), Some("principal" | "action")),
        "." | "has" if is_resource(&body["left"]) => {
            body["attr"].as_str().is_some_and(|a| DESTINATION_ATTRS.contains(&a))
        }
        "." | "has" | "like" => reads("left"),
        // `resource is T` reads only the type, which is Net::Host for every Connect.
        "is" if is_resource(&body["left"]) => body.get("in").is_none(),
        "is" => reads("left") && body.get("in").is_none_or(reads_destination),
        "!" | "neg" | "isEmpty" => reads("arg"),
        "==" | "!=" | "in" | "<" | "<=" | ">" | ">=" | "&&" | "||" | "+" | "-" | "*" | "contains" | "containsAll"
        | "containsAny" | "getTag" | "hasTag" => reads("left") && reads("right"),
        "if-then-else" => reads("if") && reads("then") && reads("else"),
        "Set" => body.as_array().is_some_and(|items| items.iter().all(reads_destination)),
        "Record" => body.as_object().is_some_and(|fields| fields.values().all(reads_destination)),
        name if EXTENSION_FUNCTIONS.contains(&name) => {
            body.as_array().is_some_and(|args| args.iter().all(reads_destination))
        }
        _ => false,
    }
}

fn is_resource(expr: &Value) -> bool {
    expr.get("Var").and_then(Value::as_str) == Some("resource")
}

/// A literal, with any entity in it an agent or an action: the entity
/// store holds only the principal and the resource's own hierarchy.
fn literal_ok(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(literal_ok),
        Value::Object(fields) => match fields.get("__entity") {
            Some(entity) => entity["type"].as_str().is_some_and(|t| t == "Agent" || t.ends_with("::Action")),
            None => fields.values().all(literal_ok),
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests;
