//! Policy sets split per action and per annotation layer.
//!
//! Cedar evaluates every policy in a set for every request. A policy whose
//! action scope cannot match the request's action can never be satisfied
//! (scope constraints are conjunctive), so each action gets only the
//! policies that can apply to it. The schema has no action groups (a test
//! in `schema.rs` holds that), so scope membership is plain equality.

use std::collections::HashMap;

use cedar_policy::{ActionConstraint, Policy, PolicySet};

use super::index::IndexedSet;

use crate::policy::LoadedPolicies;
use crate::request::Action;
use crate::request::cedar::action_uid;

/// The layers evaluated for one action.
#[derive(Debug)]
pub(super) struct ActionSets {
    /// Everything except `@shadow` forbids and `@ask` permits.
    pub enforced: IndexedSet,
    /// `enforced` plus the `@shadow` forbids; `None` when there are none.
    pub with_shadow: Option<IndexedSet>,
    /// `enforced` plus the `@ask` permits; `None` when there are none.
    pub with_ask: Option<IndexedSet>,
}

#[derive(Debug)]
pub(super) struct Compiled {
    by_action: HashMap<Action, ActionSets>,
    /// The enforced forbids a Connect's destination alone decides
    /// (see `destination.rs`); `None` when there are none.
    pub destination: Option<PolicySet>,
}

impl Compiled {
    pub fn new(policies: &LoadedPolicies) -> Self {
        let by_action = Action::ALL.into_iter().map(|action| (action, sets_for(policies, action))).collect();
        Compiled { by_action, destination: super::destination::forbids(policies) }
    }

    pub fn for_action(&self, action: Action) -> &ActionSets {
        // Every action is compiled in `new`.
        &self.by_action[&action]
    }
}

pub(super) fn applies_to(policy: &Policy, action: Action) -> bool {
    let uid = action_uid(action);
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(other) => other == uid,
        ActionConstraint::In(list) => list.contains(&uid),
    }
}

fn sets_for(policies: &LoadedPolicies, action: Action) -> ActionSets {
    let mut enforced = Vec::new();
    let mut shadow = Vec::new();
    let mut ask_permits = Vec::new();
    for policy in policies.set.policies().filter(|p| applies_to(p, action)) {
        let meta = policies.meta.get(&policy.id().to_string());
        match meta {
            Some(m) if m.shadow => shadow.push(policy.clone()),
            Some(m) if m.ask && !m.forbid => ask_permits.push(policy.clone()),
            _ => enforced.push(policy.clone()),
        }
    }
    let layer = |extra: Vec<Policy>| {
        (!extra.is_empty()).then(|| IndexedSet::new(enforced.iter().cloned().chain(extra).collect()))
    };
    ActionSets { with_shadow: layer(shadow), with_ask: layer(ask_permits), enforced: IndexedSet::new(enforced) }
}
