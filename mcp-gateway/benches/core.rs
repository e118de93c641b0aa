//! CPU per `tools/call` in the gateway's transport-independent core: the
//! client's request parsed, classified, decided (built-in default
//! policies), audited and queued for the server, then the server's result
//! matched, scanned for poisoning, audited and queued for the client. The
//! HTTP and stdio transports add their own I/O on top of this.
//!
//! `cargo bench -p bridle-mcp-gateway --bench core -- --warm-up-time 1 --measurement-time 5`

use std::sync::Arc;
use std::time::Duration;

use bridle_engine::approvals::Approvals;
use bridle_engine::audit::{AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::policy::builtin_default;
use bridle_mcp_gateway::framing::Line;
use bridle_mcp_gateway::gateway::Out;
use bridle_mcp_gateway::{Enforcer, Gateway, GatewayConfig, PinStore, ToolBook};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("mcp_core");
    group.throughput(Throughput::Elements(1));
    for index in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let authorizer = Arc::new(Authorizer::new(builtin_default().expect("default policies"), 1000));
        let options = AuditOptions { fsync_interval: Duration::from_millis(50), index, redact: Vec::new() };
        let audit = Arc::new(AuditLog::open(dir.path().join("audit.jsonl"), options).expect("audit"));
        let approvals = Arc::new(Approvals::new(Duration::from_secs(30), Some(Arc::clone(&audit))));
        let enforcer = Enforcer::new(authorizer, approvals, Some(audit), "bench");
        let tools = ToolBook::open(PinStore::new(dir.path().join("pins")), "bench").expect("tools");
        let config = GatewayConfig::new("bench", "s1", "agent").expect("config");
        let (to_client, mut client) = mpsc::channel(64);
        let (to_server, mut server) = mpsc::channel(64);
        let gateway = runtime.block_on(async { Gateway::new(config, enforcer, tools, to_client, to_server) });
        let mut id = 0u64;
        let name = if index { "tools_call_round_trip_indexed" } else { "tools_call_round_trip" };
        group.bench_function(name, |b| {
            b.iter(|| {
                id += 1;
                runtime.block_on(async {
                    let call = format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello from the benchmark"}}}}}}"#
                    );
                    gateway.from_client(Line::Message(call.into_bytes())).await;
                    let forwarded = server.recv().await.expect("forwarded");
                    assert!(forwarded.request.is_some());
                    let result = format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"hello from the benchmark"}}],"isError":false}}}}"#
                    );
                    gateway.from_server(Line::Message(result.into_bytes())).await;
                    match client.recv().await {
                        Some(Out::Answer(bytes) | Out::Line(bytes)) => assert!(!bytes.is_empty()),
                        other => panic!("expected the answer, got {other:?}"),
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
