//! `decide()` on generated 200-policy sets.
//!
//! Two sets: `scoped`, shaped like a real deployment (almost every policy
//! names the domains, directories or tools it is about, plus a few global
//! rules), and `global`, a worst case where 80 conditions name no resource
//! and so must be evaluated for every request of their action.
//!
//! Three paths: `cached` (decision-cache hit), `uncached` (decision-cache
//! miss: full Cedar evaluation; the principal/resource entity store is
//! reused, as it is for any host seen before), and `cold` (both miss: a new
//! resource every time).
//!
//! Targets (issue 2): median ≤ 10 µs uncached, ≤ 1 µs cached.
//! Run: `cargo bench -p bridle-engine --bench decide`

use std::hint::black_box;

use bridle_engine::authorizer::Authorizer;
use bridle_engine::event::{Connect, Event, EventKind, FileAccess, FileOp, HttpRequest, NamedBy, Transport};
use bridle_engine::policy::{PolicyFile, load_files};
use bridle_engine::request::AuthzRequest;
use criterion::{Criterion, criterion_group, criterion_main};

/// Distinct resources for the cold path: more than the entity cache holds.
const COLD_RESOURCES: usize = 30_000;

fn scoped_policies() -> String {
    let mut text = String::new();
    for i in 0..120 {
        let domain = format!("svc{i}.corp{}.test", i % 10);
        text.push_str(&format!(
            "@id(\"net-{i}\") @reason(\"service {i}\")\npermit(principal, action, resource)\nwhen {{ resource in Net::Domain::\"{domain}\" }};\n"
        ));
    }
    for i in 0..30 {
        let domain = format!("svc{}.corp{}.test", i * 4, (i * 4) % 10);
        text.push_str(&format!(
            "@id(\"http-{i}\") @reason(\"no admin on {domain}\")\nforbid(principal, action == Http::Action::\"Request\", resource in Net::Domain::\"{domain}\")\n\
             when {{ context.path like \"/admin/*\" && context.method == \"POST\" }};\n"
        ));
    }
    for i in 0..30 {
        text.push_str(&format!(
            "@id(\"file-{i}\") @reason(\"protected {i}\")\nforbid(principal, action == File::Action::\"Write\", resource in File::Dir::\"/workspace/protected{i}\");\n"
        ));
    }
    for i in 0..15 {
        text.push_str(&format!(
            "@id(\"mcp-{i}\") @reason(\"tool {i}\")\nforbid(principal, action == Mcp::Action::\"CallTool\", resource == Mcp::Tool::\"fs/tool{i}\")\n\
             when {{ context.arguments has path }};\n"
        ));
    }
    text.push_str(
        "@id(\"udp\") @reason(\"no udp\") forbid(principal, action == Net::Action::\"Connect\", resource) when { resource.proto == \"udp\" };\n\
         @id(\"dlp\") @reason(\"secret\") forbid(principal, action == Http::Action::\"Request\", resource) when { !context.dlp.isEmpty() };\n\
         @id(\"files\") permit(principal, action == File::Action::\"Write\", resource);\n\
         @id(\"mcp\") permit(principal, action == Mcp::Action::\"CallTool\", resource);\n\
         @id(\"ask\") @ask permit(principal, action, resource) when { resource is Net::Host || resource is Net::Domain };\n",
    );
    text
}

fn global_policies() -> String {
    let mut text = String::new();
    for i in 0..120 {
        let domain = format!("svc{i}.corp{}.test", i % 10);
        text.push_str(&format!(
            "@id(\"net-{i}\")\npermit(principal, action, resource)\nwhen {{ resource in Net::Domain::\"{domain}\" }};\n"
        ));
    }
    for i in 0..30 {
        text.push_str(&format!(
            "@id(\"http-{i}\") @reason(\"no admin {i}\")\nforbid(principal, action == Http::Action::\"Request\", resource)\n\
             when {{ context.path like \"/admin{i}/*\" && context.method == \"POST\" }};\n"
        ));
    }
    for i in 0..30 {
        text.push_str(&format!(
            "@id(\"file-{i}\") @reason(\"protected {i}\")\nforbid(principal, action == File::Action::\"Write\", resource)\n\
             when {{ resource.path like \"*/protected{i}/*\" }};\n"
        ));
    }
    for i in 0..19 {
        text.push_str(&format!(
            "@id(\"mcp-{i}\") @reason(\"tool {i}\")\nforbid(principal, action == Mcp::Action::\"CallTool\", resource)\n\
             when {{ resource.name == \"tool{i}\" && context.arguments has path }};\n"
        ));
    }
    text.push_str("@id(\"files\") permit(principal, action == File::Action::\"Write\", resource);\n");
    text
}

fn authorizer(text: String) -> Authorizer {
    let files = vec![PolicyFile { name: "generated.cedar".into(), text }];
    let loaded = load_files("bench", files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.meta.len(), 200);
    Authorizer::new(loaded, 100_000)
}

fn connect(host: &str) -> EventKind {
    EventKind::Connect(Connect {
        proto: Transport::Tcp,
        ip: Some("198.51.100.7".parse().expect("ip")),
        port: 443,
        name: Some(host.into()),
        named_by: NamedBy::Sni,
        sni: Some(host.into()),
        tls: true,
    })
}

fn http(host: &str) -> EventKind {
    EventKind::HttpRequest(HttpRequest {
        method: "POST".into(),
        scheme: "https".into(),
        host: host.into(),
        port: 443,
        path: "/v1/items".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into()), ("user-agent".into(), "curl".into())],
        body_size: Some(512),
        dlp: vec![],
        inspected: true,
        git: None,
        publish: None,
    })
}

fn file(dir: &str) -> EventKind {
    EventKind::File(FileAccess { op: FileOp::Write, path: format!("/workspace/{dir}/src/main.rs"), target: None })
}

/// (name, event builder from a resource variant).
type Shape = (&'static str, fn(&str) -> EventKind, fn(usize) -> String);

const SHAPES: [Shape; 3] = [
    ("connect", connect, |i| format!("api{i}.svc8.corp8.test")),
    ("http", http, |i| format!("api{i}.svc8.corp8.test")),
    ("file", file, |i| format!("protected7x{i}")),
];

fn request(authz: &Authorizer, kind: EventKind) -> (Event, AuthzRequest) {
    let event = Event::now("s", "agent", kind);
    let principal = authz.principal_for(&event);
    let request = AuthzRequest::from_event(&event, &principal).remove(0);
    (event, request)
}

fn bench(c: &mut Criterion) {
    for (set_name, text) in [("scoped", scoped_policies()), ("global", global_policies())] {
        let authz = authorizer(text);
        let mut group = c.benchmark_group(format!("decide_200_{set_name}"));
        for (name, make, variant) in SHAPES {
            let (event, warm) = request(&authz, make(&variant(0)));
            group.bench_function(format!("{name}/cached"), |b| b.iter(|| authz.decide(black_box(&event))));
            group.bench_function(format!("{name}/uncached"), |b| b.iter(|| authz.decide_uncached(black_box(&warm))));
            let cold: Vec<AuthzRequest> =
                (0..COLD_RESOURCES).map(|i| request(&authz, make(&variant(i + 1))).1).collect();
            let mut next = cold.iter().cycle();
            group.bench_function(format!("{name}/cold"), |b| {
                b.iter(|| authz.decide_uncached(black_box(next.next().unwrap_or(&warm))))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
