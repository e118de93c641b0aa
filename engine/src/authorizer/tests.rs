use super::*;
use crate::event::{Connect, DnsQuery, EventKind, FileAccess, FileOp, NamedBy, Transport};
use crate::policy::{PolicyFile, load_files};

fn authorizer(text: &str) -> Authorizer {
    let files = vec![PolicyFile { name: "t.cedar".into(), text: text.into() }];
    let loaded = load_files("test", files).unwrap_or_else(|e| panic!("{e}"));
    Authorizer::new(loaded, 1000)
}

fn connect(name: &str) -> Event {
    Event::now("s", "agent", EventKind::Connect(Connect::tls_to(name, 443)))
}

fn file(op: FileOp, path: &str) -> Event {
    Event::now("s", "agent", EventKind::File(FileAccess { op, path: path.into(), target: None }))
}

const GITHUB: &str = r#"
@id("gh") @reason("github is approved")
permit(principal, action == Net::Action::"Connect", resource in Net::Domain::"github.com");
"#;

#[test]
fn domain_hierarchy_matches_on_label_boundaries() {
    let authz = authorizer(GITHUB);
    assert_eq!(authz.decide(&connect("api.github.com")).effect, Effect::Allow);
    assert_eq!(authz.decide(&connect("GitHub.com.")).effect, Effect::Allow);
    let denied = authz.decide(&connect("evilgithub.com"));
    assert_eq!(denied.effect, Effect::Deny);
    assert!(denied.policies.is_empty());
    assert!(denied.reason.as_deref().is_some_and(|r| r.contains("no policy permits")), "{denied:?}");
}

#[test]
fn forbid_wins_over_permit_and_reason_comes_from_the_forbid() {
    let authz = authorizer(&format!(
        "{GITHUB}\n@id(\"no-gist\") @reason(\"gists leak code\")\nforbid(principal, action, resource in Net::Domain::\"gist.github.com\");"
    ));
    let d = authz.decide(&connect("gist.github.com"));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["no-gist"]);
    assert_eq!(d.reason.as_deref(), Some("gists leak code"));
    let ok = authz.decide(&connect("api.github.com"));
    assert_eq!(
        (ok.effect, ok.policies.as_slice(), ok.reason.as_deref()),
        (Effect::Allow, &["gh".to_string()][..], Some("github is approved"))
    );
}

#[test]
fn ask_forbid_alone_asks_but_a_hard_forbid_still_denies() {
    let authz = authorizer(
        r#"
        permit(principal, action, resource);
        @id("ask-push") @ask @reason("confirm") forbid(principal, action == Net::Action::"Connect", resource in Net::Domain::"push.test");
        @id("hard") forbid(principal, action == Net::Action::"Connect", resource in Net::Domain::"evil.push.test");
        "#,
    );
    let asked = authz.decide(&connect("push.test"));
    assert_eq!((asked.effect, asked.reason.as_deref()), (Effect::Ask, Some("confirm")));
    let denied = authz.decide(&connect("evil.push.test"));
    assert_eq!(denied.effect, Effect::Deny);
    assert_eq!(denied.policies, ["hard"]);
}

#[test]
fn ask_permit_turns_default_deny_into_ask() {
    let authz = authorizer(&format!(
        "{GITHUB}\n@id(\"ask-rest\") @ask @reason(\"unknown domain\") permit(principal, action == Net::Action::\"Connect\", resource);"
    ));
    assert_eq!(authz.decide(&connect("api.github.com")).effect, Effect::Allow);
    let asked = authz.decide(&connect("example.test"));
    assert_eq!((asked.effect, asked.policies.as_slice()), (Effect::Ask, &["ask-rest".to_string()][..]));
}

#[test]
fn shadow_forbid_logs_would_deny_without_enforcing() {
    let authz = authorizer(
        r#"
        permit(principal, action, resource);
        @id("shadow-txt") @shadow @reason("txt queries look like exfil")
        forbid(principal, action == Dns::Action::"Resolve", resource) when { context.qtype == "TXT" };
        "#,
    );
    let q = |qtype: &str| {
        Event::now(
            "s",
            "agent",
            EventKind::DnsQuery(DnsQuery { qname: "a.test".into(), qtype: qtype.into(), flags: vec![] }),
        )
    };
    let shadow = authz.decide(&q("txt"));
    assert_eq!(shadow.effect, Effect::ShadowDeny);
    assert!(shadow.effect.permits());
    assert_eq!(shadow.policies, ["shadow-txt"]);
    assert_eq!(authz.decide(&q("A")).effect, Effect::Allow);
}

#[test]
fn directory_hierarchy_covers_everything_below() {
    let authz = authorizer(
        r#"
        permit(principal, action, resource);
        @id("wf") forbid(principal, action == File::Action::"Write", resource in File::Dir::"/workspace/.github");
        "#,
    );
    assert_eq!(authz.decide(&file(FileOp::Write, "/workspace/.github/workflows/ci.yml")).effect, Effect::Deny);
    assert_eq!(authz.decide(&file(FileOp::Write, "/workspace/x/../.github//a")).effect, Effect::Deny);
    assert_eq!(authz.decide(&file(FileOp::Write, "/workspace/.githubx/a")).effect, Effect::Allow);
    assert_eq!(authz.decide(&file(FileOp::Read, "/workspace/.github/a")).effect, Effect::Allow);
}

#[test]
fn rename_combines_to_the_most_restrictive() {
    let authz = authorizer(
        r#"
        permit(principal, action, resource);
        @id("wf") forbid(principal, action == File::Action::"Create", resource in File::Dir::"/w/.github");
        "#,
    );
    let rename = Event::now(
        "s",
        "agent",
        EventKind::File(FileAccess { op: FileOp::Rename, path: "/w/a".into(), target: Some("/w/.github/b".into()) }),
    );
    let d = authz.decide(&rename);
    assert_eq!((d.effect, d.policies.as_slice()), (Effect::Deny, &["wf".to_string()][..]));
}

#[test]
fn reload_swaps_policies_and_cache_together() {
    let authz = authorizer(GITHUB);
    let first = authz.decide(&connect("api.github.com"));
    assert_eq!((first.effect, first.generation), (Effect::Allow, 1));
    let files = vec![PolicyFile { name: "t.cedar".into(), text: "forbid(principal, action, resource);".into() }];
    let generation = authz.replace(load_files("test", files).expect("valid"));
    let second = authz.decide(&connect("api.github.com"));
    assert_eq!((second.effect, second.generation, generation), (Effect::Deny, 2, 2));
}

#[test]
fn cached_and_uncached_decisions_agree() {
    let authz = authorizer(GITHUB);
    let event = connect("api.github.com");
    let principal = authz.principal_for(&event);
    let request = &AuthzRequest::from_event(&event, &principal)[0];
    let uncached = authz.decide_uncached(request);
    assert_eq!(authz.decide_request(request), uncached);
    assert_eq!(authz.decide_request(request), uncached);
}

#[test]
fn telemetry_is_recorded_not_decided() {
    let authz = authorizer(GITHUB);
    let exit = Event::now(
        "s",
        "agent",
        EventKind::ProcessExit(crate::event::ProcessExit { pid: 1, code: None, signal: Some(9) }),
    );
    let d = authz.decide(&exit);
    assert!(!d.decided);
}

#[test]
fn ip_attributes_support_range_checks() {
    let authz = authorizer(
        r#"
        permit(principal, action, resource);
        @id("doc-net") @reason("documentation range")
        forbid(principal, action == Net::Action::"Connect", resource) when { resource has ip && resource.ip.isInRange(ip("198.51.100.0/24")) };
        "#,
    );
    let raw = |ip: &str| {
        let detail = Connect {
            proto: Transport::Tcp,
            ip: Some(ip.parse().expect("ip")),
            port: 22,
            name: None,
            named_by: NamedBy::Ip,
            sni: None,
            tls: false,
        };
        Event::now("s", "agent", EventKind::Connect(detail))
    };
    assert_eq!(authz.decide(&raw("198.51.100.9")).policies, ["doc-net"]);
    assert_eq!(authz.decide(&raw("203.0.113.9")).effect, Effect::Allow);
    assert_eq!(authz.decide(&raw("2001:db8::1")).effect, Effect::Allow);
}

/// The index may only skip policies that cannot hold: decisions must equal
/// plain Cedar over the whole set, for requests that do and do not meet
/// each indexed condition.
#[test]
fn indexed_decisions_equal_plain_cedar_over_the_full_set() {
    let text = r#"
        @id("gh") permit(principal, action, resource) when { resource in Net::Domain::"github.com" || resource in Net::Domain::"gitlab.com" };
        @id("any-get") permit(principal, action == Http::Action::"Request", resource) when { context.method == "GET" };
        @id("admin") forbid(principal, action == Http::Action::"Request", resource) when { context.path like "/admin/*" };
        @id("ssh") forbid(principal, action == Http::Action::"Request", resource) when { context.query like "*key=*" && resource.name like "*.internal" };
        @id("put-gh") forbid(principal, action == Http::Action::"Request", resource in Net::Domain::"github.com") when { "PUT" == context.method };
    "#;
    let authz = authorizer(text);
    let plain = authz.policies().set.clone();
    let cedar = cedar_policy::Authorizer::new();
    let mut checked = 0;
    for host in ["api.github.com", "gitlab.com", "svc.internal", "example.test"] {
        for method in ["GET", "PUT", "POST"] {
            for (path, query) in [("/admin/x", ""), ("/v1/admin/y", "key=1"), ("/ok", "a=b")] {
                let http = crate::event::HttpRequest {
                    method: method.into(),
                    scheme: "https".into(),
                    host: host.into(),
                    port: 443,
                    path: path.into(),
                    query: query.into(),
                    headers: vec![],
                    body_size: None,
                    dlp: vec![],
                    inspected: true,
                    git: None,
                    publish: None,
                };
                let event = Event::now("s", "agent", EventKind::HttpRequest(http));
                let request = &AuthzRequest::from_event(&event, &authz.principal_for(&event))[0];
                let entities = request.cedar_entities().expect("entities");
                let cedar_request = request.cedar_request(&entities, None).expect("request");
                let expected = cedar.is_authorized(&cedar_request, &plain, &entities.entities).decision();
                let got = authz.decide_uncached(request).effect;
                let want = if expected == CedarDecision::Allow { Effect::Allow } else { Effect::Deny };
                assert_eq!(got, want, "{host} {method} {path}?{query}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 36);
}
