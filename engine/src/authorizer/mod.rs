//! The one decision path: event → requests → Cedar → [`Decision`].
//!
//! Real Cedar semantics (forbid wins, default deny) plus Bridle's
//! annotations, evaluated as layers over the same request:
//! 1. the enforced set (everything but `@shadow` forbids and `@ask` permits);
//! 2. a deny whose determining forbids are all `@ask` becomes [`Effect::Ask`];
//! 3. a default deny that an `@ask` permit would have allowed becomes Ask;
//! 4. an allow that a `@shadow` forbid would have denied becomes
//!    [`Effect::ShadowDeny`] (logged, not enforced).
//!
//! Each policy generation holds its compiled per-action sets and its own
//! decision cache; a reload swaps both at once, so no decision ever mixes two
//! generations.
//!
//! [`Authorizer::destination_deny`] answers a narrower question for the
//! kernel verdict cache: is every Connect to this (ip, port, proto) denied?

mod compiled;
mod destination;
mod index;

pub use destination::DestinationDeny;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use cedar_policy::{Decision as CedarDecision, EvalResult, Request, Response};
use quick_cache::sync::Cache;

use crate::correlate::Correlator;
use crate::decision::{Decision, Effect};
use crate::event::Event;
use crate::policy::LoadedPolicies;
use crate::request::cedar::{CedarBuildError, CedarEntities};
use crate::request::{AuthzRequest, Principal, Resource};
use compiled::{ActionSets, Compiled};
use index::{IndexedSet, Var};

/// Default bound on cached decisions per generation.
pub const DEFAULT_CACHE_SIZE: usize = 100_000;

/// Bound on cached entity stores (they do not depend on policy).
const ENTITY_CACHE_SIZE: usize = 10_000;

/// Decides events against the current policy generation.
pub struct Authorizer {
    current: ArcSwap<Generation>,
    next_generation: AtomicU64,
    cache_size: usize,
    engine: Engine,
    sessions: RwLock<HashMap<String, Principal>>,
    /// MCP calls in flight, shared by every capture point deciding here.
    correlator: Arc<Correlator>,
}

/// What evaluation needs besides the policies: Cedar itself and the entity
/// stores, which depend only on (principal, resource) and so outlive
/// policy generations.
struct Engine {
    cedar: cedar_policy::Authorizer,
    entities: Cache<(Principal, Resource), Arc<CedarEntities>>,
}

impl Engine {
    fn entities_for(&self, request: &AuthzRequest) -> Result<Arc<CedarEntities>, CedarBuildError> {
        let key = (request.principal.clone(), request.resource.clone());
        if let Some(hit) = self.entities.get(&key) {
            return Ok(hit);
        }
        let built = Arc::new(request.cedar_entities()?);
        self.entities.insert(key, Arc::clone(&built));
        Ok(built)
    }
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("generation", &self.generation()).finish_non_exhaustive()
    }
}

/// One policy set, compiled, with its decision cache.
struct Generation {
    number: u64,
    policies: Arc<LoadedPolicies>,
    compiled: Compiled,
    cache: Cache<AuthzRequest, Decision>,
}

impl Authorizer {
    /// An authorizer on `policies` (generation 1).
    pub fn new(policies: LoadedPolicies, cache_size: usize) -> Self {
        let cache_size = cache_size.max(1);
        Authorizer {
            current: ArcSwap::from_pointee(Generation::new(1, policies, cache_size)),
            next_generation: AtomicU64::new(2),
            cache_size,
            engine: Engine { cedar: cedar_policy::Authorizer::new(), entities: Cache::new(ENTITY_CACHE_SIZE) },
            sessions: RwLock::new(HashMap::new()),
            correlator: Arc::new(Correlator::default()),
        }
    }

    /// Installs a new policy set atomically; returns its generation number.
    pub fn replace(&self, policies: LoadedPolicies) -> u64 {
        let number = self.next_generation.fetch_add(1, Ordering::Relaxed);
        self.current.store(Arc::new(Generation::new(number, policies, self.cache_size)));
        number
    }

    /// The current generation number.
    pub fn generation(&self) -> u64 {
        self.current.load().number
    }

    /// The current policy set.
    pub fn policies(&self) -> Arc<LoadedPolicies> {
        Arc::clone(&self.current.load().policies)
    }

    /// Records the principal attributes (image, workdir) of a session, so
    /// events that name only the session get them.
    pub fn register_session(&self, session: &str, principal: Principal) {
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.insert(session.to_string(), principal);
        }
    }

    /// The MCP calls in flight: gateways report them, capture points
    /// attribute their events to them before deciding.
    pub fn correlator(&self) -> &Arc<Correlator> {
        &self.correlator
    }

    /// The principal an event acts as.
    pub fn principal_for(&self, event: &Event) -> Principal {
        let known = self.sessions.read().ok().and_then(|s| s.get(&event.session).cloned());
        let mut principal = known.unwrap_or_default();
        principal.name.clone_from(&event.principal);
        principal.session.clone_from(&event.session);
        principal
    }

    /// Decides an event (the most restrictive of its requests wins).
    pub fn decide(&self, event: &Event) -> Decision {
        let generation = self.current.load();
        let requests = AuthzRequest::from_event_as(event, self.principal_for(event));
        let mut decisions = requests.iter().map(|r| generation.decide_cached(&self.engine, r));
        match decisions.next() {
            None => Decision::observation(generation.number),
            Some(first) => decisions.fold(first, Decision::combine),
        }
    }

    /// Decides one request, through the cache.
    pub fn decide_request(&self, request: &AuthzRequest) -> Decision {
        self.current.load().decide_cached(&self.engine, request)
    }

    /// Decides one request without the cache (policy tests, benchmarks).
    pub fn decide_uncached(&self, request: &AuthzRequest) -> Decision {
        self.current.load().evaluate(&self.engine, request)
    }
}

impl Generation {
    fn new(number: u64, policies: LoadedPolicies, cache_size: usize) -> Self {
        Generation {
            number,
            compiled: Compiled::new(&policies),
            policies: Arc::new(policies),
            cache: Cache::new(cache_size),
        }
    }

    fn decide_cached(&self, engine: &Engine, request: &AuthzRequest) -> Decision {
        if let Some(hit) = self.cache.get(request) {
            return hit;
        }
        let decision = self.evaluate(engine, request);
        self.cache.insert(request.clone(), decision.clone());
        decision
    }

    fn evaluate(&self, engine: &Engine, request: &AuthzRequest) -> Decision {
        let built = engine.entities_for(request).and_then(|e| request.cedar_request(&e, None).map(|r| (e, r)));
        let (entities, cedar_request) = match built {
            Ok(built) => built,
            // Fail closed: a request Bridle cannot even express is refused.
            Err(error) => {
                let reason = Some(format!("internal error: {error}"));
                return self.decision(Effect::Deny, Vec::new(), reason, Vec::new());
            }
        };
        let sets = self.compiled.for_action(request.action);
        let lookup = |var: Var, path: &[String]| attribute(&cedar_request, &entities, var, path);
        let run = |layer: &IndexedSet| {
            let candidates = layer.candidates(&entities.resource_keys, &lookup);
            engine.cedar.is_authorized(&cedar_request, &candidates, &entities.entities)
        };
        let first = run(&sets.enforced);
        let errors = errors_of(&first);
        let determining = self.ordered(&first);
        match first.decision() {
            CedarDecision::Allow => self.after_allow(sets, &run, determining, errors),
            CedarDecision::Deny if !determining.is_empty() => {
                let hard: Vec<String> = determining.iter().filter(|id| !self.is_ask(id)).cloned().collect();
                if hard.is_empty() {
                    self.with_reason(Effect::Ask, determining, errors, request)
                } else {
                    self.with_reason(Effect::Deny, hard, errors, request)
                }
            }
            CedarDecision::Deny => self.after_default_deny(sets, &run, errors, request),
        }
    }

    fn after_allow(
        &self,
        sets: &ActionSets,
        run: &dyn Fn(&IndexedSet) -> Response,
        permits: Vec<String>,
        errors: Vec<String>,
    ) -> Decision {
        if let Some(with_shadow) = &sets.with_shadow {
            let shadowed = run(with_shadow);
            if shadowed.decision() == CedarDecision::Deny {
                let ids = self.ordered(&shadowed);
                let reason = self.first_reason(&ids).map(|r| format!("would be denied by a shadow policy: {r}"));
                return self.decision(Effect::ShadowDeny, ids, reason, errors);
            }
        }
        let reason = self.first_reason(&permits);
        self.decision(Effect::Allow, permits, reason, errors)
    }

    fn after_default_deny(
        &self,
        sets: &ActionSets,
        run: &dyn Fn(&IndexedSet) -> Response,
        errors: Vec<String>,
        request: &AuthzRequest,
    ) -> Decision {
        if let Some(with_ask) = &sets.with_ask {
            let asked = run(with_ask);
            if asked.decision() == CedarDecision::Allow {
                let ids = self.ordered(&asked);
                return self.with_reason(Effect::Ask, ids, errors, request);
            }
        }
        let reason = format!("no policy permits {} on {}", request.action, request.resource.display());
        self.decision(Effect::Deny, Vec::new(), Some(reason), errors)
    }

    fn with_reason(&self, effect: Effect, ids: Vec<String>, errors: Vec<String>, request: &AuthzRequest) -> Decision {
        let reason = self.first_reason(&ids).or_else(|| {
            let verb = if effect == Effect::Ask { "held for approval" } else { "denied" };
            Some(format!("{} on {} {verb} by policy {}", request.action, request.resource.display(), ids.join(", ")))
        });
        self.decision(effect, ids, reason, errors)
    }

    fn decision(&self, effect: Effect, policies: Vec<String>, reason: Option<String>, errors: Vec<String>) -> Decision {
        Decision { effect, policies, reason, generation: self.number, errors, decided: true }
    }

    /// Determining policy ids, in set order (Cedar gives them unordered).
    fn ordered(&self, response: &Response) -> Vec<String> {
        let mut ids: Vec<(usize, String)> = response
            .diagnostics()
            .reason()
            .map(|id| {
                let id = id.to_string();
                (self.policies.meta.get(&id).map_or(usize::MAX, |m| m.order), id)
            })
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn is_ask(&self, id: &str) -> bool {
        self.policies.meta.get(id).is_some_and(|m| m.ask)
    }

    fn first_reason(&self, ids: &[String]) -> Option<String> {
        ids.iter().find_map(|id| self.policies.meta.get(id).and_then(|m| m.reason.clone()))
    }
}

/// A string attribute of the request, for the policy index.
fn attribute(request: &Request, entities: &CedarEntities, var: Var, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = match var {
        Var::Context => request.context()?.get(first)?,
        Var::Resource => entities.entities.get(&entities.resource)?.attr(first)?.ok()?,
    };
    for key in rest {
        value = match value {
            EvalResult::Record(record) => record.get(key)?.clone(),
            _ => return None,
        };
    }
    match value {
        EvalResult::String(text) => Some(text),
        _ => None,
    }
}

fn errors_of(response: &Response) -> Vec<String> {
    response.diagnostics().errors().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests;
