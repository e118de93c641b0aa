//! An index over a policy layer: which policies could possibly hold.
//!
//! Cedar evaluates every policy of a set for every request, at about a
//! microsecond each. Most policies carry a necessary condition that is cheap
//! to test without Cedar:
//! - their scope or a `when` conjunct says `resource in E1 || resource in E2`:
//!   they can only hold when the resource is one of those entities or below
//!   one (looked up by the resource's ancestry);
//! - a `when` conjunct compares a string attribute with a literal
//!   (`context.method == "POST"`) or matches it with `like`
//!   (`context.path like "/admin/*"`): they can only hold when the attribute
//!   equals the literal, or contains the pattern's longest literal run.
//!
//! Everything we cannot prove a condition for, or whose attribute is missing,
//! is evaluated: the index only ever skips policies that could not have
//! been satisfied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

/// An entity named in a policy: (type, id).
pub(crate) type Atom = (String, String);

/// Which request variable an attribute path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Context,
    Resource,
}

/// A string attribute, e.g. (Context, ["arguments", "path"]).
pub(crate) type AttrPath = (Var, Vec<String>);

/// Looks up a string attribute of the request; `None` when absent or not a string.
pub(crate) type Lookup<'a> = &'a dyn Fn(Var, &[String]) -> Option<String>;

/// A test a string attribute must pass for the policy to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StrTest {
    Equals(String),
    Contains(String),
}

impl StrTest {
    fn passes(&self, value: &str) -> bool {
        match self {
            StrTest::Equals(literal) => value == literal,
            StrTest::Contains(literal) => value.contains(literal.as_str()),
        }
    }
}

/// The necessary conditions found for one policy: it can only hold when
/// the resource is (below) one of `atoms`, if given, and every string test
/// passes.
#[derive(Default)]
struct Requirements {
    atoms: Option<Vec<Atom>>,
    tests: Vec<(AttrPath, StrTest)>,
}

/// Bound on remembered candidate sets; past it the memo starts over.
const MEMO_LIMIT: usize = 4096;

#[derive(Debug)]
pub(super) struct IndexedSet {
    policies: Vec<Policy>,
    /// Policies with no resource condition (string tests may still apply).
    always: Vec<usize>,
    by_atom: HashMap<Atom, Vec<usize>>,
    /// Per policy, the string tests it must pass.
    tests: Vec<Vec<(AttrPath, StrTest)>>,
    /// The whole set, used when nothing is indexed.
    full: Arc<PolicySet>,
    /// Candidate sets already built, keyed by the candidate indices.
    memo: Mutex<HashMap<Vec<usize>, Arc<PolicySet>>>,
}

impl IndexedSet {
    pub fn new(policies: Vec<Policy>) -> Self {
        let mut always = Vec::new();
        let mut by_atom: HashMap<Atom, Vec<usize>> = HashMap::new();
        let mut tests = Vec::with_capacity(policies.len());
        for (idx, policy) in policies.iter().enumerate() {
            let found = policy.to_json().map(|json| requirements(&json)).unwrap_or_default();
            match found.atoms {
                Some(atoms) => atoms.into_iter().for_each(|atom| by_atom.entry(atom).or_default().push(idx)),
                None => always.push(idx),
            }
            tests.push(found.tests);
        }
        let full = Arc::new(build(policies.iter().cloned()));
        IndexedSet { policies, always, by_atom, tests, full, memo: Mutex::new(HashMap::new()) }
    }

    /// The policies that could apply to a request whose resource has these
    /// keys (itself and its ancestors) and whose attributes `lookup` reads.
    pub fn candidates(&self, keys: &[Atom], lookup: Lookup<'_>) -> Arc<PolicySet> {
        if self.by_atom.is_empty() && self.tests.iter().all(Vec::is_empty) {
            return Arc::clone(&self.full);
        }
        let mut chosen = self.always.clone();
        for key in keys {
            if let Some(hits) = self.by_atom.get(key) {
                chosen.extend_from_slice(hits);
            }
        }
        // Each attribute is looked up once per request, however many tests read it.
        let mut seen: Vec<(&AttrPath, Option<String>)> = Vec::new();
        chosen.retain(|&idx| {
            self.tests[idx].iter().all(|(attr, test)| {
                let value = match seen.iter().find(|(a, _)| *a == attr) {
                    Some((_, value)) => value.clone(),
                    None => {
                        let value = lookup(attr.0, &attr.1);
                        seen.push((attr, value.clone()));
                        value
                    }
                };
                value.as_deref().is_none_or(|v| test.passes(v))
            })
        });
        chosen.sort_unstable();
        chosen.dedup();
        let Ok(mut memo) = self.memo.lock() else {
            // A poisoned memo only loses speed, never policies.
            return Arc::new(build(chosen.iter().map(|&i| self.policies[i].clone())));
        };
        if let Some(set) = memo.get(&chosen) {
            return Arc::clone(set);
        }
        if memo.len() >= MEMO_LIMIT {
            memo.clear();
        }
        let set = Arc::new(build(chosen.iter().map(|&i| self.policies[i].clone())));
        memo.insert(chosen, Arc::clone(&set));
        set
    }

    /// Policies with at least one necessary condition the index tests.
    #[cfg(test)]
    pub fn indexed_count(&self) -> usize {
        (0..self.policies.len()).filter(|idx| !self.always.contains(idx) || !self.tests[*idx].is_empty()).count()
    }
}

pub(super) fn build(policies: impl Iterator<Item = Policy>) -> PolicySet {
    let mut set = PolicySet::new();
    for policy in policies {
        // Ids are unique in a loaded set, so `add` cannot fail.
        if let Err(error) = set.add(policy) {
            tracing::error!(%error, "policy left out of a compiled set");
        }
    }
    set
}

/// Every necessary condition the index can test: the smallest resource
/// restriction (scope or `when` conjunct) and all string tests among the
/// `when` conjuncts.
fn requirements(policy: &Value) -> Requirements {
    let scope = match policy["resource"]["op"].as_str() {
        Some("==" | "in") => entity(&policy["resource"]["entity"]).map(|e| vec![e]),
        Some("is") => policy["resource"].get("in").and_then(|i| entity(&i["entity"])).map(|e| vec![e]),
        _ => None,
    };
    let when: Vec<&Value> = policy["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "when")
        .flat_map(|c| conjuncts(&c["body"]))
        .collect();
    Requirements {
        atoms: scope.into_iter().chain(when.iter().filter_map(|c| disjunct_atoms(c))).min_by_key(Vec::len),
        tests: when.iter().filter_map(|c| string_test(c)).collect(),
    }
}

/// `ATTR == "lit"`, `"lit" == ATTR`, or `ATTR like "…lit…"`.
fn string_test(expr: &Value) -> Option<(AttrPath, StrTest)> {
    if let Some(eq) = expr.get("==") {
        let literal = |v: &Value| v["Value"].as_str().map(str::to_string);
        return match (attr_path(&eq["left"]), literal(&eq["right"]), attr_path(&eq["right"]), literal(&eq["left"])) {
            (Some(attr), Some(lit), _, _) | (_, _, Some(attr), Some(lit)) => Some((attr, StrTest::Equals(lit))),
            _ => None,
        };
    }
    let like = expr.get("like")?;
    let attr = attr_path(&like["left"])?;
    let mut runs = vec![String::new()];
    for elem in like["pattern"].as_array()? {
        match elem.get("Literal").and_then(Value::as_str) {
            Some(text) => runs.last_mut()?.push_str(text),
            None => runs.push(String::new()),
        }
    }
    let longest = runs.into_iter().max_by_key(String::len).filter(|run| !run.is_empty())?;
    Some((attr, StrTest::Contains(longest)))
}

/// `context.a.b` → (Context, ["a", "b"]).
fn attr_path(expr: &Value) -> Option<AttrPath> {
    let mut path = Vec::new();
    let mut cursor = expr;
    while let Some(access) = cursor.get(".") {
        path.push(access["attr"].as_str()?.to_string());
        cursor = &access["left"];
    }
    path.reverse();
    let var = match cursor["Var"].as_str()? {
        "context" => Var::Context,
        "resource" => Var::Resource,
        _ => return None,
    };
    (!path.is_empty()).then_some((var, path))
}

fn conjuncts(expr: &Value) -> Vec<&Value> {
    match expr.get("&&") {
        Some(and) => {
            let mut out = conjuncts(&and["left"]);
            out.extend(conjuncts(&and["right"]));
            out
        }
        None => vec![expr],
    }
}

/// `resource in E1 || resource == E2 || ...` → [E1, E2, ...].
fn disjunct_atoms(expr: &Value) -> Option<Vec<Atom>> {
    if let Some(or) = expr.get("||") {
        let mut atoms = disjunct_atoms(&or["left"])?;
        atoms.extend(disjunct_atoms(&or["right"])?);
        return Some(atoms);
    }
    let test = expr.get("in").or_else(|| expr.get("=="))?;
    if test["left"]["Var"] != "resource" {
        return None;
    }
    entity(&test["right"]["Value"]["__entity"]).map(|e| vec![e])
}

fn entity(value: &Value) -> Option<Atom> {
    Some((value["type"].as_str()?.to_string(), value["id"].as_str()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> IndexedSet {
        let parsed: PolicySet = text.parse().expect("parses");
        IndexedSet::new(parsed.policies().cloned().collect())
    }

    fn atom(ty: &str, id: &str) -> Atom {
        (ty.to_string(), id.to_string())
    }

    #[test]
    fn only_provable_resource_restrictions_are_indexed() {
        let s = set(r#"
            permit(principal, action, resource in Net::Domain::"a.test");
            permit(principal, action, resource) when { resource in Net::Domain::"b.test" || resource in Net::Domain::"c.test" };
            permit(principal, action, resource) when { context has sni && resource in Net::Domain::"d.test" };
            permit(principal, action, resource) when { resource in Net::Domain::"e.test" || context has sni };
            permit(principal, action, resource) unless { resource in Net::Domain::"f.test" };
            permit(principal, action, resource);
        "#);
        assert_eq!(s.indexed_count(), 3);
        let none = |_: Var, _: &[String]| None;
        let for_c = s.candidates(&[atom("Net::Domain", "x.c.test"), atom("Net::Domain", "c.test")], &none);
        assert_eq!(for_c.policies().count(), 4, "3 always + the b/c policy");
        let for_none = s.candidates(&[atom("Net::Domain", "zzz.test")], &none);
        assert_eq!(for_none.policies().count(), 3);
    }

    #[test]
    fn string_tests_skip_policies_whose_literal_cannot_match() {
        let s = set(r#"
            forbid(principal, action, resource) when { context.path like "/admin/*" && context.method == "POST" };
            forbid(principal, action, resource) when { "GET" == context.method };
            forbid(principal, action, resource) when { context.arguments.path like "*/.ssh/*" };
            forbid(principal, action, resource) when { context.path like "*" };
        "#);
        assert_eq!(s.indexed_count(), 3);
        let lookup = |var: Var, path: &[String]| match (var, path.join(".").as_str()) {
            (Var::Context, "path") => Some("/v1/admin/x".to_string()),
            (Var::Context, "method") => Some("GET".to_string()),
            _ => None,
        };
        // The first fails on its method (GET, not POST) though "/admin/" is in
        // the path; "GET" matches; arguments.path is unknown (kept); `*` always.
        assert_eq!(s.candidates(&[], &lookup).policies().count(), 3);
        let other = |var: Var, path: &[String]| match (var, path.join(".").as_str()) {
            (Var::Context, "path") => Some("/v1/items".to_string()),
            (Var::Context, "method") => Some("PUT".to_string()),
            (Var::Context, "arguments.path") => Some("/workspace/a".to_string()),
            _ => None,
        };
        assert_eq!(s.candidates(&[], &other).policies().count(), 1);
    }
}
