//! The audit store on real files: tampering of every kind is caught at the
//! right line, a damaged tail is recovered without loss, concurrent writers
//! keep one chain, secrets never reach the disk, and the index answers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridle_engine::audit::{
    AuditEntry, AuditLog, AuditOptions, Index, Problem, Query, VerifyFailure, VerifyReport, query, verify,
};
use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{
    Connect, Event, EventKind, HttpRequest, McpDirection, McpMessage, McpPayload, NamedBy, Transport,
};
use chrono::Utc;

fn options(index: bool) -> AuditOptions {
    AuditOptions { fsync_interval: Duration::from_millis(50), index, redact: Vec::new() }
}

fn connect(host: &str) -> EventKind {
    EventKind::Connect(Connect {
        proto: Transport::Tcp,
        ip: None,
        port: 443,
        name: Some(host.into()),
        named_by: NamedBy::Sni,
        sni: Some(host.into()),
        tls: true,
    })
}

fn http(path: &str, query: &str, headers: &[(&str, &str)]) -> EventKind {
    EventKind::HttpRequest(HttpRequest {
        method: "POST".into(),
        scheme: "https".into(),
        host: "api.example.test".into(),
        port: 443,
        path: path.into(),
        query: query.into(),
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        body_size: Some(120),
        dlp: vec![],
        inspected: true,
        git: None,
        publish: None,
    })
}

fn decision(kind: EventKind, effect: Effect, reason: &str) -> AuditEntry {
    AuditEntry::Decision {
        event: Event::now("s1", "claude", kind),
        decision: Decision {
            effect,
            policies: vec!["p1".into()],
            reason: Some(reason.into()),
            generation: 1,
            errors: vec![],
            decided: true,
        },
    }
}

/// A log of `n` connect decisions, closed (so synced, with a checkpoint).
fn write_log(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open(&path, options(false)).expect("open");
    for i in 0..n {
        let effect = if i % 3 == 0 { Effect::Deny } else { Effect::Allow };
        log.append(decision(connect(&format!("host{i}.test")), effect, "r")).expect("append");
    }
    path
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).expect("read").lines().map(|l| format!("{l}\n")).collect()
}

fn failure(path: &Path) -> (VerifyReport, VerifyFailure) {
    let report = verify(path).expect("verify");
    let failure = report.failure.clone().expect("verification must fail");
    (report, failure)
}

#[test]
fn a_thousand_records_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let report = verify(&path).expect("verify");
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!((report.records, report.last_seq), (1000, Some(999)));
    assert_eq!(report.checkpoint.map(|c| c.seq), Some(999));
}

#[test]
fn an_edited_byte_is_caught_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let mut all = lines(&path);
    all[16] = all[16].replacen("host16.test", "host17.test", 1);
    fs::write(&path, all.concat()).expect("write");
    let (report, failure) = failure(&path);
    assert_eq!((failure.line, failure.seq, &failure.problem), (17, Some(16), &Problem::Edited));
    assert_eq!(failure.to_string(), "record seq 16 was edited (hash mismatch)");
    assert_eq!(report.records, 16);
}

#[test]
fn a_deleted_line_is_a_seq_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let mut all = lines(&path);
    all.remove(500);
    fs::write(&path, all.concat()).expect("write");
    let (_, failure) = failure(&path);
    assert_eq!((failure.line, failure.seq), (501, Some(501)));
    assert_eq!(failure.problem, Problem::Deleted { from: 500, to: 500 });
}

#[test]
fn swapped_lines_are_reordered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let mut all = lines(&path);
    all.swap(9, 10);
    fs::write(&path, all.concat()).expect("write");
    let (_, failure) = failure(&path);
    assert_eq!((failure.line, failure.seq), (10, Some(10)));
    assert_eq!(failure.problem, Problem::Reordered { expected: 9 });
}

#[test]
fn truncation_mid_line_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let len = fs::metadata(&path).expect("stat").len();
    fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len - 10).expect("truncate");
    let (report, failure) = failure(&path);
    assert_eq!((failure.line, failure.seq), (1000, Some(999)));
    assert!(matches!(failure.problem, Problem::TruncatedMidLine { .. }), "{failure}");
    assert_eq!(report.records, 999);
}

#[test]
fn losing_whole_last_lines_is_caught_by_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let all = lines(&path);
    fs::write(&path, all[..995].concat()).expect("write");
    let (report, failure) = failure(&path);
    assert_eq!((failure.line, failure.seq), (996, Some(995)));
    assert_eq!(failure.problem, Problem::Truncated { last_seq: Some(994), checkpoint_seq: 999 });
    assert_eq!(report.records, 995);
}

#[test]
fn reopening_a_log_cut_mid_line_recovers_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 1000);
    let original = fs::read(&path).expect("read");
    // A crash in the middle of writing the next record: the records the
    // checkpoint vouches for are whole, half a line follows them.
    let partial = br#"{"seq":1000,"time":"2026-11-28T12:00:00.0"#;
    fs::write(&path, [original.as_slice(), partial].concat()).expect("damage");
    let last_line_start = original.len();

    let log = AuditLog::open(&path, options(false)).expect("recovering open");
    assert_eq!(log.next_seq(), 1001);
    log.append(decision(connect("after.test"), Effect::Allow, "r")).expect("append");
    drop(log);

    let sidecars: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(sidecars.len(), 1, "{sidecars:?}");
    assert_eq!(fs::read(&sidecars[0]).expect("sidecar"), partial);

    let report = verify(&path).expect("verify");
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!((report.records, report.recoveries.clone()), (1002, vec![1000]));
    let recovery: serde_json::Value = serde_json::from_str(&lines(&path)[1000]).expect("json");
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["offset"], last_line_start as u64);
    assert_eq!(recovery["preserved_to"], sidecars[0].to_string_lossy().as_ref());
}

#[test]
fn eight_threads_share_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path, options(true)).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..500)
                    .map(|i| {
                        log.append(decision(connect(&format!("t{t}-{i}.test")), Effect::Allow, "r")).expect("append")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..4000).collect::<Vec<u64>>());
    assert_eq!(log.dropped(), 0);
    drop(log);
    let report = verify(&path).expect("verify");
    assert!(report.ok(), "{:?}", report.failure);
    assert_eq!(report.records, 4000);
}

#[test]
fn secrets_never_reach_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let aws_key = format!("AKIA{}", "Z7EXAMPLEKEY2345");
    let secrets = [
        "Bearer sekrit-bearer-value-1",
        "session=cookie-value-2",
        "query-value-3",
        "configured-secret-4",
        aws_key.as_str(),
    ];
    let options = AuditOptions {
        fsync_interval: Duration::from_millis(50),
        index: true,
        redact: vec![("github".into(), "configured-secret-4".into())],
    };
    let log = AuditLog::open(&path, options).expect("open");
    let headers = [("authorization", secrets[0]), ("cookie", secrets[1]), ("accept", "*/*")];
    let request = http(&format!("/upload/{aws_key}/part"), "key=query-value-3&page=2", &headers);
    log.append(decision(request, Effect::Deny, "blocked")).expect("append");
    let arguments = serde_json::json!({"path": "/tmp/x", "content": "token=configured-secret-4 end"});
    let call = EventKind::Mcp(McpMessage {
        server: "fs".into(),
        direction: McpDirection::ToServer,
        id: Some("1".into()),
        message: McpPayload::ToolsCall { name: "write_file".into(), arguments },
        tool_changed: false,
        findings: vec![],
    });
    log.append(decision(call, Effect::Ask, "configured-secret-4 seen")).expect("append");
    drop(log);
    query(&path, &Query::default()).expect("index everything");

    let text = fs::read_to_string(&path).expect("read");
    for file in fs::read_dir(dir.path()).expect("list").filter_map(|e| e.ok().map(|e| e.path())) {
        let bytes = fs::read(&file).expect("read");
        for secret in secrets {
            let secret = secret.trim_start_matches("Bearer ").trim_start_matches("session=");
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret:?} reached {}", file.display());
        }
    }
    assert!(text.contains(r#"["authorization","[REDACTED]"]"#), "{text}");
    assert!(text.contains(r#""query":"key=[REDACTED]&page=[REDACTED]""#), "{text}");
    assert!(text.contains("/upload/[REDACTED:aws-access-key-id]/part"), "{text}");
    assert!(text.contains("token=[REDACTED:github] end"), "{text}");
    assert!(verify(&path).expect("verify").ok());
}

#[test]
fn the_index_answers_by_effect_action_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(true)).expect("open");
    let old = |kind, effect| {
        let mut entry = decision(kind, effect, "old");
        if let AuditEntry::Decision { event, .. } = &mut entry {
            event.time = Utc::now() - chrono::Duration::hours(3);
        }
        entry
    };
    log.append(old(connect("old-deny.test"), Effect::Deny)).expect("append");
    log.append(old(http("/a", "", &[]), Effect::Allow)).expect("append");
    log.append(decision(connect("new-deny.test"), Effect::Deny, "recent")).expect("append");
    log.append(decision(connect("new-allow.test"), Effect::Allow, "recent")).expect("append");
    log.append(decision(http("/b", "", &[]), Effect::Deny, "recent")).expect("append");
    drop(log);

    let seqs = |q: Query| query(&path, &q).expect("query").iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(Query { effect: Some(Effect::Deny), ..Query::default() }), vec![0, 2, 4]);
    assert_eq!(seqs(Query { action: Some("net.connect".into()), ..Query::default() }), vec![0, 2, 3]);
    assert_eq!(seqs(Query { action: Some(r#"Http::Action::"Request""#.into()), ..Query::default() }), vec![1, 4]);
    let recent = bridle_engine::audit::parse_since("1h").expect("since");
    assert_eq!(seqs(Query { since: Some(recent), ..Query::default() }), vec![2, 3, 4]);
    assert_eq!(seqs(Query { until: Some(recent), ..Query::default() }), vec![0, 1]);
    let combined = Query {
        effect: Some(Effect::Deny),
        action: Some("net.connect".into()),
        since: Some(recent),
        ..Query::default()
    };
    assert_eq!(seqs(combined), vec![2]);
    assert_eq!(seqs(Query { resource: Some("deny.test".into()), ..Query::default() }), vec![0, 2]);
    assert_eq!(seqs(Query { principal: Some("nobody".into()), ..Query::default() }), Vec::<u64>::new());
    assert_eq!(seqs(Query { limit: Some(2), ..Query::default() }), vec![3, 4]);

    let rows =
        query(&path, &Query { effect: Some(Effect::Deny), with_lines: true, ..Query::default() }).expect("query");
    let line: serde_json::Value = serde_json::from_str(rows[1].line.as_deref().expect("line")).expect("json");
    assert_eq!(line["event"]["detail"]["name"], "new-deny.test");
}

#[test]
fn catch_up_indexes_a_log_written_without_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path(), 300);
    assert!(!Index::path_for(&path).exists());
    let mut index = Index::open(&path).expect("index");
    assert_eq!(index.catch_up(&path).expect("catch up"), 300);
    assert_eq!(index.catch_up(&path).expect("catch up again"), 0);
    let denies = query(&path, &Query { effect: Some(Effect::Deny), ..Query::default() }).expect("query");
    assert_eq!(denies.len(), 100);
    assert_eq!(denies[1].resource.as_deref(), Some("host3.test:443"));
}
