//! [`AuthzRequest`] → Cedar `Request` + `Entities`.
//!
//! Built directly from typed values (no JSON round trip) because this runs on
//! every decision-cache miss. Tests validate the output against the schema
//! for every action, so this file and `bridle.cedarschema` cannot drift.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression as Rx, Schema,
};

use super::{Action, AuthzRequest, Principal, Resource};
use crate::names::{dir_chain, domain_chain, split_path};

/// Why a request could not be turned into a Cedar request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CedarBuildError {
    #[error("invalid entity: {0}")]
    Entity(String),
    #[error("request does not match the schema: {0}")]
    Request(String),
}

/// The entities a request needs: they depend only on the principal and
/// the resource, so the authorizer caches them across actions and contexts.
#[derive(Debug)]
pub struct CedarEntities {
    pub entities: Entities,
    pub principal: EntityUid,
    pub resource: EntityUid,
    /// The resource and its ancestors as (type, id), for the policy index.
    pub resource_keys: Vec<(String, String)>,
}

struct Types {
    agent: EntityTypeName,
    domain: EntityTypeName,
    host: EntityTypeName,
    dir: EntityTypeName,
    path: EntityTypeName,
    server: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    actions: HashMap<Action, EntityUid>,
}

fn type_name(name: &str) -> EntityTypeName {
    #[expect(clippy::expect_used, reason = "constant type names, checked by tests")]
    EntityTypeName::from_str(name).expect("valid entity type name")
}

static TYPES: LazyLock<Types> = LazyLock::new(|| Types {
    agent: type_name("Agent"),
    domain: type_name("Net::Domain"),
    host: type_name("Net::Host"),
    dir: type_name("File::Dir"),
    path: type_name("File::Path"),
    server: type_name("Mcp::Server"),
    tool: type_name("Mcp::Tool"),
    resource: type_name("Mcp::Resource"),
    prompt: type_name("Mcp::Prompt"),
    actions: Action::ALL
        .into_iter()
        .map(|action| {
            let (ns, id) = action.parts();
            let ty = type_name(&format!("{ns}::Action"));
            (action, EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
        })
        .collect(),
});

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The Cedar uid of an action.
pub fn action_uid(action: Action) -> EntityUid {
    TYPES.actions[&action].clone()
}

/// `ip("…")`. `RestrictedExpression::new_ip` parses the name `ip` with
/// Cedar's full grammar on every call (a fifth of a request build); the
/// name is parsed once here instead.
fn ip_value(ip: &std::net::IpAddr) -> Rx {
    use cedar_policy_core::ast::{Name, RestrictedExpr};
    static IP: LazyLock<Option<Name>> = LazyLock::new(|| "ip".parse().ok().map(Name::unqualified_name));
    match IP.as_ref() {
        Some(name) => Rx::from(RestrictedExpr::call_extension_fn(name.clone(), [RestrictedExpr::val(ip.to_string())])),
        None => Rx::new_ip(ip.to_string()),
    }
}

fn s(value: &str) -> Rx {
    Rx::new_string(value.to_string())
}

impl AuthzRequest {
    /// Builds the entities for this request's principal and resource.
    pub fn cedar_entities(&self) -> Result<CedarEntities, CedarBuildError> {
        entities_for(&self.principal, &self.resource)
    }

    /// Builds the Cedar request (principal, action, resource, context). With
    /// a schema, the request and context are validated against it (tests
    /// and the policy test runner do this).
    pub fn cedar_request(&self, entities: &CedarEntities, schema: Option<&Schema>) -> Result<Request, CedarBuildError> {
        let context = super::context::build(self.action, &self.context);
        let (principal, resource) = (entities.principal.clone(), entities.resource.clone());
        Request::new(principal, action_uid(self.action), resource, context, schema)
            .map_err(|e| CedarBuildError::Request(e.to_string()))
    }
}

/// The entities of a (principal, resource) pair.
pub fn entities_for(principal: &Principal, resource: &Resource) -> Result<CedarEntities, CedarBuildError> {
    let mut entities = vec![principal_entity(principal)?];
    let (resource, ancestors) = resource_entities(resource, &mut entities)?;
    let pair = |uid: &EntityUid| (uid.type_name().to_string(), uid.id().unescaped().to_string());
    let resource_keys = std::iter::once(&resource).chain(&ancestors).map(pair).collect();
    Ok(CedarEntities {
        entities: closed_entities(entities)?,
        principal: uid(&TYPES.agent, &principal.name),
        resource,
        resource_keys,
    })
}

/// Builds the entity store without recomputing the transitive closure:
/// every entity here already lists all of its ancestors (see `chain`), and
/// the public constructor's closure computation was half the cost of a
/// decision-cache miss. A test checks grandparent `in` still holds.
fn closed_entities(entities: Vec<Entity>) -> Result<Entities, CedarBuildError> {
    use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
    use cedar_policy_core::extensions::Extensions;
    let core = CoreEntities::from_entities(
        entities.into_iter().map(|e| e.as_ref().clone()),
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::all_available(),
    )
    .map_err(|e| CedarBuildError::Entity(e.to_string()))?;
    Ok(Entities::from(core))
}

fn entity(uid: EntityUid, attrs: Vec<(&str, Rx)>, parents: HashSet<EntityUid>) -> Result<Entity, CedarBuildError> {
    let attrs = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Entity::new(uid, attrs, parents).map_err(|e| CedarBuildError::Entity(e.to_string()))
}

fn principal_entity(p: &Principal) -> Result<Entity, CedarBuildError> {
    entity(
        uid(&TYPES.agent, &p.name),
        vec![("session", s(&p.session)), ("image", s(&p.image)), ("workdir", s(&p.workdir))],
        HashSet::new(),
    )
}

/// Adds a chain of hierarchy entities, nearest first, each listing all the
/// ones after it as ancestors (the closure is given, not computed), and
/// returns all their uids.
fn chain(ty: &EntityTypeName, names: &[&str], out: &mut Vec<Entity>) -> Vec<EntityUid> {
    let uids: Vec<EntityUid> = names.iter().map(|name| uid(ty, name)).collect();
    for (idx, member) in uids.iter().enumerate() {
        out.push(Entity::new_no_attrs(member.clone(), uids[idx + 1..].iter().cloned().collect()));
    }
    uids
}

/// Adds the resource's entities; returns its uid and all its ancestors.
fn resource_entities(
    resource: &Resource,
    out: &mut Vec<Entity>,
) -> Result<(EntityUid, Vec<EntityUid>), CedarBuildError> {
    let t = &*TYPES;
    let (me, attrs, parent) = match resource {
        Resource::Host { name, ip, port, proto } => {
            let parent = chain(&t.domain, &domain_chain(name), out);
            let mut attrs =
                vec![("name", s(name)), ("port", Rx::new_long(i64::from(*port))), ("proto", s(proto.as_str()))];
            if let Some(ip) = ip {
                attrs.push(("ip", ip_value(ip)));
            }
            (uid(&t.host, &format!("{name}:{port}/{}", proto.as_str())), attrs, parent)
        }
        Resource::Domain { name } => {
            let mut names = domain_chain(name);
            if names.is_empty() {
                names.push(name);
            }
            let mut uids = chain(&t.domain, &names, out);
            let me = uids.remove(0);
            return Ok((me, uids));
        }
        Resource::Path { path } => {
            let parent = chain(&t.dir, &dir_chain(path), out);
            let (dir, name) = split_path(path);
            (uid(&t.path, path), vec![("path", s(path)), ("dir", s(dir)), ("name", s(name))], parent)
        }
        Resource::Tool { server, name } => {
            let parent = chain(&t.server, &[server.as_str()], out);
            (uid(&t.tool, &format!("{server}/{name}")), vec![("server", s(server)), ("name", s(name))], parent)
        }
        Resource::Prompt { server, name } => {
            let parent = chain(&t.server, &[server.as_str()], out);
            (uid(&t.prompt, &format!("{server}/{name}")), vec![("server", s(server)), ("name", s(name))], parent)
        }
        Resource::McpResource { server, uri } => {
            let parent = chain(&t.server, &[server.as_str()], out);
            (uid(&t.resource, &format!("{server}/{uri}")), vec![("server", s(server)), ("uri", s(uri))], parent)
        }
        Resource::Server { name } => {
            let mut uids = chain(&t.server, &[name.as_str()], out);
            return Ok((uids.remove(0), uids));
        }
    };
    out.push(entity(me.clone(), attrs, parent.iter().cloned().collect())?);
    Ok((me, parent))
}
