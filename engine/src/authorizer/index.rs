//! A resource index over a policy layer.
//!
//! Cedar evaluates every policy of a set for every request, at about a
//! microsecond each. Most policies only apply to a few resources: their
//! scope or a `when` conjunct says `resource in E1 || resource in E2 ...`.
//! Such a policy can only be satisfied when the request's resource is one of
//! those entities or below one, so it is evaluated only for requests whose
//! resource has one of them among itself and its ancestors. Everything we
//! cannot prove this for is evaluated always: the index only ever skips
//! policies that could not have been satisfied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

/// An entity named in a policy: (type, id).
pub(crate) type Atom = (String, String);

/// Bound on remembered candidate sets; past it the memo starts over.
const MEMO_LIMIT: usize = 4096;

#[derive(Debug)]
pub(super) struct IndexedSet {
    policies: Vec<Policy>,
    /// Policies the index cannot narrow.
    always: Vec<usize>,
    by_atom: HashMap<Atom, Vec<usize>>,
    /// The whole set, used when nothing is indexed.
    full: Arc<PolicySet>,
    /// Candidate sets already built, keyed by the candidate indices.
    memo: Mutex<HashMap<Vec<usize>, Arc<PolicySet>>>,
}

impl IndexedSet {
    pub fn new(policies: Vec<Policy>) -> Self {
        let mut always = Vec::new();
        let mut by_atom: HashMap<Atom, Vec<usize>> = HashMap::new();
        for (idx, policy) in policies.iter().enumerate() {
            match policy.to_json().ok().and_then(|json| required_atoms(&json)) {
                Some(atoms) => atoms.into_iter().for_each(|atom| by_atom.entry(atom).or_default().push(idx)),
                None => always.push(idx),
            }
        }
        let full = Arc::new(build(policies.iter().cloned()));
        IndexedSet { policies, always, by_atom, full, memo: Mutex::new(HashMap::new()) }
    }

    /// The policies that could apply to a resource with these keys (itself
    /// and its ancestors).
    pub fn candidates(&self, keys: &[Atom]) -> Arc<PolicySet> {
        if self.by_atom.is_empty() {
            return Arc::clone(&self.full);
        }
        let mut chosen = self.always.clone();
        for key in keys {
            if let Some(hits) = self.by_atom.get(key) {
                chosen.extend_from_slice(hits);
            }
        }
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

    #[cfg(test)]
    pub fn indexed_count(&self) -> usize {
        self.policies.len() - self.always.len()
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

/// Entities one of which the resource must be (or be below) for the policy
/// to hold; `None` when no such set can be proven.
fn required_atoms(policy: &Value) -> Option<Vec<Atom>> {
    let scope = match policy["resource"]["op"].as_str() {
        Some("==" | "in") => entity(&policy["resource"]["entity"]).map(|e| vec![e]),
        Some("is") => policy["resource"].get("in").and_then(|i| entity(&i["entity"])).map(|e| vec![e]),
        _ => None,
    };
    let from_conditions = policy["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "when")
        .flat_map(|c| conjuncts(&c["body"]))
        .filter_map(disjunct_atoms);
    scope.into_iter().chain(from_conditions).min_by_key(Vec::len)
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
        let for_c = s.candidates(&[atom("Net::Domain", "x.c.test"), atom("Net::Domain", "c.test")]);
        assert_eq!(for_c.policies().count(), 4, "3 always + the b/c policy");
        let for_none = s.candidates(&[atom("Net::Domain", "zzz.test")]);
        assert_eq!(for_none.policies().count(), 3);
    }
}
