//! `bridle audit …` and `bridle policy replay` end to end: a log written by
//! the engine's real audit store, read back by the real binary.

mod support;

use std::path::{Path, PathBuf};

use bridle_engine::audit::{AuditEntry, AuditLog, AuditOptions};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::event::{Connect, Event, EventKind};
use bridle_engine::policy::load_dir;
use support::{bridle, bridle_in, write_files};

fn connect(name: &str) -> Event {
    Event::now("s1", "claude", EventKind::Connect(Connect::tls_to(name, 443)))
}

/// Decides a few connects with the shipped examples and logs them.
fn write_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples");
    let authz = Authorizer::new(load_dir(&examples).expect("examples load"), 100);
    let log = AuditLog::open(&path, AuditOptions::default()).expect("open log");
    for name in ["api.github.com", "evil.test", "api.openai.com", "pastebin.com", "evil.test"] {
        let event = connect(name);
        let decision = authz.decide(&event);
        log.append(AuditEntry::Decision { event, decision }).expect("append");
    }
    log.sync().expect("sync");
    path
}

#[test]
fn verify_accepts_an_intact_log_and_pinpoints_an_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_log(dir.path());
    let run = bridle(&["audit", "verify", path.to_str().expect("utf-8")]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("OK, 5 records"), "{}", run.all());

    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("pastebin.com", "pastebin.org", 1)).expect("tamper");
    let run = bridle(&["audit", "verify", path.to_str().expect("utf-8")]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("audit.jsonl:4"), "names the edited line: {}", run.all());
}

#[test]
fn query_filters_by_effect_and_action_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path());
    let query = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "query",
            "audit.jsonl",
            "--effect",
            "deny",
            "--action",
            "Net::Action::\"Connect\"",
            "--since",
            "1h",
        ];
        args.extend_from_slice(extra);
        bridle_in(dir.path(), &args)
    };
    let table = query(&[]);
    assert_eq!(table.code, 0, "{}", table.all());
    assert!(table.stdout.contains("evil.test:443") && table.stdout.contains("pastebin.com:443"), "{}", table.all());
    assert!(!table.stdout.contains("api.github.com"), "{}", table.all());

    let json = query(&["--json"]);
    let lines: Vec<serde_json::Value> =
        json.stdout.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 3, "{}", json.all());
    assert!(lines.iter().all(|l| l["decision"]["effect"] == "deny"));

    let csv = query(&["--csv"]);
    assert_eq!(csv.stdout.lines().count(), 4, "header + 3 rows: {}", csv.all());

    // What a shell leaves of `--action Net::Action::"Connect"` typed unquoted.
    let unquoted = bridle_in(
        dir.path(),
        &["audit", "query", "audit.jsonl", "--effect", "deny", "--action", "Net::Action::Connect"],
    );
    assert_eq!(unquoted.stdout, table.stdout, "{}", unquoted.all());

    let bad = query(&["--until", "yesterday-ish"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
}

#[test]
fn replay_shows_what_a_draft_would_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path());
    write_files(
        dir.path(),
        &[(
            "draft/p.cedar",
            "@id(\"open\") permit(principal, action, resource);\n\
             @id(\"no-evil\") @reason(\"evil\") forbid(principal, action, resource in Net::Domain::\"evil.test\");\n",
        )],
    );
    let run = bridle_in(dir.path(), &["policy", "replay", "--audit", "audit.jsonl", "--policies", "draft"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("replayed 5 decisions") && run.stdout.contains("1 would change"), "{}", run.all());
    assert!(run.stdout.contains("deny -> allow") && run.stdout.contains("pastebin.com:443"), "{}", run.all());

    let same = bridle_in(
        dir.path(),
        &[
            "policy",
            "replay",
            "--audit",
            "audit.jsonl",
            "--policies",
            &format!("{}/policies/examples", env!("CARGO_MANIFEST_DIR")),
        ],
    );
    assert_eq!(same.code, 0, "{}", same.all());
    assert!(same.stdout.contains("0 would change"), "{}", same.all());
}
