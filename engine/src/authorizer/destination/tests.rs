use std::net::IpAddr;

use super::*;
use crate::event::{Connect, Event, EventKind, NamedBy, Transport};
use crate::policy::{PolicyFile, builtin_default, load_files};

fn load(text: &str) -> LoadedPolicies {
    let files = vec![PolicyFile { name: "t.cedar".into(), text: text.into() }];
    load_files("test", files).unwrap_or_else(|e| panic!("{e}"))
}

fn classify(text: &str) -> bool {
    let set: PolicySet = text.parse().expect("parses");
    let policy = set.policies().next().expect("one policy");
    destination_only(&policy.to_json().expect("json"))
}

/// The ids `forbids` keeps, in set order.
fn kept(policies: &LoadedPolicies) -> Vec<String> {
    let mut ids: Vec<String> =
        forbids(policies).map(|set| set.policies().map(|p| p.id().to_string()).collect()).unwrap_or_default();
    ids.sort_by_key(|id| policies.meta[id].order);
    ids
}

/// A TLS connect to `ip` named by SNI.
fn connect_request(authz: &Authorizer, ip: &str, sni: &str) -> AuthzRequest {
    let ip: IpAddr = ip.parse().expect("ip");
    let detail = Connect {
        proto: Transport::Tcp,
        ip: Some(ip),
        port: 443,
        name: Some(sni.into()),
        named_by: NamedBy::Sni,
        sni: Some(sni.into()),
        tls: true,
    };
    let event = Event::now("s", "agent", EventKind::Connect(detail));
    AuthzRequest::from_event(&event, &authz.principal_for(&event)).remove(0)
}

const TEN_NET: &str = r#"
@id("allowed") permit(principal, action, resource) when { resource in Net::Domain::"allowed.test" };
@id("no-ten") @reason("private range")
forbid(principal, action == Net::Action::"Connect", resource) when { resource has ip && resource.ip.isInRange(ip("10.0.0.0/8")) };
"#;

#[test]
fn destination_attributes_principal_and_action_are_destination_only() {
    for text in [
        r#"forbid(principal, action, resource) when { resource.ip.isInRange(ip("10.0.0.0/8")) };"#,
        r#"forbid(principal, action, resource is Net::Host) when { resource has ip && resource.ip.isLoopback() };"#,
        r#"forbid(principal, action, resource) when { resource.port == 25 && resource.proto == "tcp" };"#,
        r#"forbid(principal, action, resource) unless { [80, 443].contains(resource.port) };"#,
        r#"forbid(principal == Agent::"a", action, resource) when { principal.image like "untrusted/*" && resource is Net::Host };"#,
        r#"forbid(principal, action in [Net::Action::"Connect"], resource) when { action == Net::Action::"Connect" };"#,
        "forbid(principal, action, resource);",
    ] {
        assert!(classify(text), "{text}");
    }
}

#[test]
fn names_context_and_the_resource_itself_are_not_destination_only() {
    for text in [
        r#"forbid(principal, action, resource) when { resource in Net::Domain::"x" };"#,
        r#"forbid(principal, action, resource in Net::Domain::"x");"#,
        r#"forbid(principal, action, resource is Net::Host in Net::Domain::"x");"#,
        r#"forbid(principal, action, resource) when { resource is Net::Host in Net::Domain::"x" };"#,
        r#"forbid(principal, action, resource == Net::Host::"a.test:443/tcp");"#,
        r#"forbid(principal, action, resource) when { resource == Net::Host::"a.test:443/tcp" };"#,
        r#"forbid(principal, action, resource) when { context.tls };"#,
        r#"forbid(principal, action, resource) when { context has sni };"#,
        r#"forbid(principal, action, resource) when { resource.name like "*.test" };"#,
        r#"forbid(principal, action, resource) when { resource has name };"#,
        r#"forbid(principal, action, resource) when { [resource].contains(principal) };"#,
        r#"forbid(principal, action, resource) when { Net::Domain::"a.b" in Net::Domain::"b" };"#,
        r#"forbid(principal, action, resource) unless { resource.proto == "tcp" || context.tls };"#,
    ] {
        assert!(!classify(text), "{text}");
    }
}

#[test]
fn a_destination_forbid_denies_whatever_name_a_permit_allows() {
    let authz = Authorizer::new(load(TEN_NET), 100);
    assert!(authz.has_destination_forbids());
    let request = connect_request(&authz, "10.1.2.3", "allowed.test");
    let deny = authz.destination_deny(&request).expect("denied by destination");
    let want = DestinationDeny { policy: "no-ten".into(), reason: Some("private range".into()), generation: 1 };
    assert_eq!(deny, want);
    // The full decision path agrees: forbid wins over the name's permit.
    assert_eq!(authz.decide_request(&request).policies, ["no-ten"]);
    let outside = connect_request(&authz, "203.0.113.9", "allowed.test");
    assert_eq!(authz.destination_deny(&outside), None);
    assert!(authz.decide_request(&outside).effect.permits());
}

#[test]
fn only_connect_requests_with_an_ip_are_answered() {
    let authz = Authorizer::new(load(TEN_NET), 100);
    let mut request = connect_request(&authz, "10.1.2.3", "allowed.test");
    request.action = Action::HttpRequest;
    assert_eq!(authz.destination_deny(&request), None);
    let mut no_ip = connect_request(&authz, "10.1.2.3", "allowed.test");
    if let Resource::Host { ip, .. } = &mut no_ip.resource {
        *ip = None;
    }
    assert_eq!(authz.destination_deny(&no_ip), None);
}

#[test]
fn ask_shadow_and_name_forbids_are_never_used() {
    let policies = load(
        r#"
        permit(principal, action, resource);
        @id("ask") @ask forbid(principal, action == Net::Action::"Connect", resource) when { resource.port == 22 };
        @id("shadow") @shadow forbid(principal, action == Net::Action::"Connect", resource) when { resource.port == 22 };
        @id("by-name") forbid(principal, action == Net::Action::"Connect", resource in Net::Domain::"allowed.test");
        @id("by-tls") forbid(principal, action == Net::Action::"Connect", resource) when { context.tls };
        @id("http") forbid(principal, action == Http::Action::"Request", resource) when { resource.port == 22 };
        "#,
    );
    assert!(kept(&policies).is_empty());
    let authz = Authorizer::new(policies, 100);
    assert!(!authz.has_destination_forbids());
    assert_eq!(authz.destination_deny(&connect_request(&authz, "10.1.2.3", "allowed.test")), None);
}

#[test]
fn the_default_set_has_only_the_udp_forbid() {
    assert_eq!(kept(&builtin_default().expect("default policies load")), ["net-forbid-udp"]);
}

#[test]
fn a_reload_changes_the_answer_and_the_generation() {
    let authz = Authorizer::new(load(TEN_NET), 100);
    let request = connect_request(&authz, "10.1.2.3", "allowed.test");
    assert_eq!(authz.destination_deny(&request).map(|d| d.generation), Some(1));
    authz.replace(load(r#"@id("allowed") permit(principal, action, resource);"#));
    assert!(!authz.has_destination_forbids());
    assert_eq!(authz.destination_deny(&request), None);
    let generation = authz.replace(load(
        r#"@id("no-443") forbid(principal, action, resource) when { resource has port && resource.port == 443 };"#,
    ));
    let deny = authz.destination_deny(&request).expect("denied after reload");
    assert_eq!((deny.policy.as_str(), deny.reason, deny.generation), ("no-443", None, generation));
    assert_eq!(generation, 3);
}
