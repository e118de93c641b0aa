//! Append throughput of the audit log: realistic HTTP-request decisions
//! (a few headers, one of them a credential to redact, a query string),
//! hash-chained, fsync batched every 50 ms, with the SQLite index on and off.
//!
//! `cargo bench -p bridle-engine --bench audit_append -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::time::Duration;

use bridle_engine::audit::{AuditEntry, AuditLog, AuditOptions};
use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{Event, EventKind, HttpRequest, McpActive, ParentProcess, ProcessInfo};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn request() -> AuditEntry {
    let mut event = Event::now(
        "session-7f3a",
        "claude",
        EventKind::HttpRequest(HttpRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: "api.github.com".into(),
            port: 443,
            path: "/repos/acme/widgets/pulls".into(),
            query: "per_page=50&state=open".into(),
            headers: vec![
                ("user-agent".into(), "git/2.43.0".into()),
                ("accept".into(), "application/vnd.github+json".into()),
                ("authorization".into(), "Bearer bridle-secret-github".into()),
                ("content-type".into(), "application/json".into()),
                ("x-github-api-version".into(), "2022-11-28".into()),
            ],
            body_size: Some(812),
            dlp: vec![],
            inspected: true,
            git: None,
            publish: None,
        }),
    );
    event.process = Some(ProcessInfo {
        pid: 4242,
        exe: "/usr/bin/gh".into(),
        parents: vec![
            ParentProcess { pid: 4200, exe: "/usr/bin/node".into() },
            ParentProcess { pid: 1, exe: "/bin/bash".into() },
        ],
    });
    event.mcp = Some(McpActive { server: "github".into(), tool: "create_pull_request".into(), call_id: "17".into() });
    let decision = Decision {
        effect: Effect::Allow,
        policies: vec!["allow-github-api".into()],
        reason: Some("GitHub API access is allowed for this agent".into()),
        generation: 3,
        errors: vec![],
        decided: true,
    };
    AuditEntry::Decision { event, decision }
}

fn append(c: &mut Criterion) {
    let entry = request();
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    for index in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = AuditOptions {
            fsync_interval: Duration::from_millis(50),
            index,
            redact: vec![("console-token".into(), "c0nsole-t0ken-value".into())],
        };
        let log = AuditLog::open(dir.path().join("audit.jsonl"), options).expect("open");
        let name = if index { "http_decision/index_on" } else { "http_decision/index_off" };
        // The clone is the caller's: only `append` itself is timed.
        group.bench_function(name, |b| {
            b.iter_batched(
                || entry.clone(),
                |entry| black_box(log.append(entry).expect("append")),
                BatchSize::SmallInput,
            )
        });
        drop(log);
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
