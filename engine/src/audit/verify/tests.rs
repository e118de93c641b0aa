use std::fs;
use std::time::Duration;

use super::*;
use crate::audit::fixtures::notice;
use crate::audit::{AuditLog, AuditOptions};

fn log_with(path: &Path, n: usize) {
    let options = AuditOptions { fsync_interval: Duration::from_millis(50), index: false, redact: Vec::new() };
    let log = AuditLog::open(path, options).expect("open");
    for i in 0..n {
        log.append(notice(&format!("n{i}"))).expect("append");
    }
}

fn failure(path: &Path) -> VerifyFailure {
    verify(path).expect("verify").failure.expect("must fail")
}

#[test]
fn an_empty_file_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    fs::write(&path, b"").expect("write");
    let report = verify(&path).expect("verify");
    assert!(report.ok());
    assert_eq!((report.records, report.last_seq), (0, None));
}

#[test]
fn a_missing_file_is_an_error_not_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(verify(dir.path().join("nope.jsonl")), Err(AuditError::Io { .. })));
}

#[test]
fn a_spliced_record_breaks_the_prev_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    log_with(&a, 3);
    log_with(&b, 3);
    let (text_a, text_b) = (fs::read_to_string(&a).expect("a"), fs::read_to_string(&b).expect("b"));
    let mixed: Vec<&str> = text_a.lines().take(2).chain(text_b.lines().skip(2)).collect();
    fs::write(&a, mixed.join("\n") + "\n").expect("write");
    fs::remove_file(head::path_for(&a)).expect("no head");
    let failure = failure(&a);
    assert_eq!((failure.line, failure.seq, failure.problem.clone()), (3, Some(2), Problem::BadPrevLink));
}

#[test]
fn garbage_lines_are_malformed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    fs::write(&path, b"hello\n").expect("write");
    let failure = failure(&path);
    assert_eq!(failure.problem, Problem::Malformed(RecordFault::MissingHash));
    assert_eq!(failure.to_string(), "not a valid record (seq ?): no \"hash\" field");
}

#[test]
fn a_damaged_checkpoint_fails_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    log_with(&path, 2);
    fs::write(head::path_for(&path), b"{}").expect("write");
    assert!(matches!(failure(&path).problem, Problem::BadCheckpoint(_)));
}

#[test]
fn a_rewritten_last_record_differs_from_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    log_with(&path, 3);
    let text = fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    // Re-sign a forged last record: its own hash and prev link are valid.
    let forged = lines[2].replace("\"n2\"", "\"forged\"");
    let split = forged.rfind(",\"hash\":\"").expect("hash");
    let content = &forged[..split];
    let forged = format!("{content},\"hash\":\"{}\"}}", Hash::of(content.as_bytes()));
    fs::write(&path, format!("{}\n{}\n{forged}\n", lines[0], lines[1])).expect("write");
    let failure = failure(&path);
    assert_eq!((failure.line, failure.seq, failure.problem.clone()), (3, Some(2), Problem::CheckpointMismatch));
}
