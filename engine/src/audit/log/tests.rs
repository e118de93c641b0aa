use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::audit::fixtures::{connect, decision, notice};
use crate::audit::{Problem, head, verify};
use crate::decision::Effect;

fn options(interval_ms: u64, index: bool) -> AuditOptions {
    AuditOptions { fsync_interval: Duration::from_millis(interval_ms), index, redact: Vec::new() }
}

#[test]
fn seqs_are_consecutive_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/audit.jsonl");
    {
        let log = AuditLog::open(&path, options(50, false)).expect("open");
        assert_eq!(log.append(notice("a")).expect("append"), 0);
        assert_eq!(log.append(decision(connect("x.test", 443), Effect::Deny)).expect("append"), 1);
    }
    let log = AuditLog::open(&path, options(50, false)).expect("reopen");
    assert_eq!(log.next_seq(), 2);
    assert_eq!(log.append(notice("c")).expect("append"), 2);
    drop(log);
    let report = verify(&path).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.last_seq), (3, Some(2)));
}

#[test]
fn the_log_is_private_to_its_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let _log = AuditLog::open(&path, options(50, false)).expect("open");
    let mode = fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sync_moves_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    for i in 0..5 {
        log.append(notice(&format!("n{i}"))).expect("append");
    }
    assert_eq!(head::read(&path).expect("head"), None);
    log.sync().expect("sync");
    let checkpoint = head::read(&path).expect("head").expect("written");
    assert_eq!(checkpoint.seq, 4);
    assert_eq!(Some(checkpoint.hash), verify(&path).expect("verify").last_hash);
}

#[test]
fn zero_interval_makes_every_append_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(0, false)).expect("open");
    log.append(notice("now")).expect("append");
    assert_eq!(head::read(&path).expect("head").map(|c| c.seq), Some(0));
    assert!(fs::read_to_string(&path).expect("read").contains("\"now\""));
}

#[test]
fn the_flusher_writes_without_an_explicit_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(10, false)).expect("open");
    log.append(notice("later")).expect("append");
    wait_for_checkpoint(&path, 0);
    assert_eq!(head::read(&path).expect("head").map(|c| c.seq), Some(0));
    assert_eq!(log.dropped(), 0);
}

#[test]
fn a_damaged_last_record_refuses_to_open_and_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&path, options(50, false)).and_then(|log| {
        log.append(notice("one"))?;
        log.append(notice("two"))
    }));
    let edited = fs::read_to_string(&path).expect("read").replace("\"two\"", "\"tw0\"");
    fs::write(&path, &edited).expect("write");
    let error = AuditLog::open(&path, options(50, false)).expect_err("must refuse");
    assert!(matches!(error, AuditError::InvalidTail { line: 2, .. }), "{error}");
    assert!(error.to_string().contains("audit.jsonl:2:"), "{error}");
    assert_eq!(fs::read_to_string(&path).expect("read"), edited);
}

#[test]
fn a_record_missing_only_its_newline_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&path, options(50, false)).and_then(|log| log.append(notice("whole"))));
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, text.trim_end()).expect("write");
    let log = AuditLog::open(&path, options(50, false)).expect("open");
    assert_eq!(log.next_seq(), 1);
    drop(log);
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
}

/// Writes four records (synced, so checkpointed) and cuts the log back to
/// its first two.
fn four_records_cut_to_two(path: &Path) {
    drop(AuditLog::open(path, options(50, false)).and_then(|log| {
        (0..4).try_for_each(|i| log.append(notice(&i.to_string())).map(drop))?;
        log.sync()
    }));
    let text = fs::read_to_string(path).expect("read");
    let keep: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    fs::write(path, keep).expect("write");
}

#[test]
fn losing_whole_records_is_put_on_the_record_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    four_records_cut_to_two(&path);
    assert!(matches!(verify(&path).expect("verify").failure.map(|f| f.problem), Some(Problem::Truncated { .. })));
    drop(AuditLog::open(&path, options(50, false)).expect("open"));
    // Reopening puts the loss on the record, and the log stays failed:
    // the chain is whole again, the log is not.
    let report = verify(&path).expect("verify");
    assert_eq!(report.recoveries, vec![2]);
    let failure = report.failure.expect("still a failure");
    assert!(matches!(&failure.problem, Problem::Lost(m) if m.contains("records 2..=3 were lost")), "{failure}");
    assert!(fs::read_to_string(&path).expect("read").contains("records 2..=3 were lost"));
}

#[test]
fn a_log_without_its_checkpoint_fails_verification_and_the_loss_is_recorded_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    // Records cut from the end, and the checkpoint that would tell, deleted.
    four_records_cut_to_two(&path);
    fs::remove_file(crate::audit::head::path_for(&path)).expect("remove the checkpoint");
    let failure = verify(&path).expect("verify").failure.expect("a failure");
    assert!(matches!(failure.problem, Problem::NoCheckpoint), "{failure}");
    drop(AuditLog::open(&path, options(50, false)).expect("open"));
    let failure = verify(&path).expect("verify").failure.expect("a failure");
    assert!(matches!(&failure.problem, Problem::Lost(m) if m.contains("no checkpoint")), "{failure}");
}

#[test]
fn a_crash_before_a_new_logs_first_sync_is_no_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, written) = (dir.path().join("audit.jsonl"), dir.path().join("written.jsonl"));
    // A log opened empty gets an empty checkpoint at once...
    drop(AuditLog::open(&path, options(60_000, false)).expect("open"));
    assert_eq!(head::read_head(&path).expect("head"), head::Head::Empty);
    assert!(verify(&path).expect("verify").ok());
    // ...so records written before a crash kept the first sync from
    // moving it are not taken for the remains of a cut log.
    drop(AuditLog::open(&written, options(50, false)).and_then(|log| {
        (0..3).try_for_each(|i| log.append(notice(&i.to_string())).map(drop))?;
        log.sync()
    }));
    fs::copy(&written, &path).expect("the records, unsynced");
    let report = verify(&path).expect("verify");
    assert!(report.ok() && report.records == 3, "{report:?}");
    drop(AuditLog::open(&path, options(50, false)).expect("reopen"));
    let report = verify(&path).expect("verify");
    assert!(report.ok() && report.recoveries.is_empty(), "{report:?}");
}

#[test]
fn a_partial_last_line_is_repaired_without_failing_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&path, options(50, false)).and_then(|log| log.append(notice("whole")).map(drop)));
    // A crash mid-write: half a line after the last whole record.
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("{\"seq\":1,\"ti");
    fs::write(&path, text).expect("write");
    drop(AuditLog::open(&path, options(50, false)).expect("open"));
    let report = verify(&path).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.recoveries.len(), 1);
}

#[test]
fn debug_output_is_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path().join("a.jsonl"), AuditOptions::default()).expect("open");
    let debug = format!("{log:?}");
    assert!(debug.starts_with("AuditLog {") && debug.contains("next_seq: 0"), "{debug}");
}

/// Waits (at most 5 s) until the flusher's checkpoint reaches `seq`; the
/// caller asserts what it then finds.
fn wait_for_checkpoint(path: &Path, seq: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while head::read(path).expect("head").is_none_or(|c| c.seq < seq) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The messages of the notices in `path`, in seq order.
fn messages(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("json");
            record["message"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

#[test]
fn a_later_append_lands_once_the_task_yields_in_queue_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    current_thread().block_on(async {
        log.append_later(notice("first"));
        log.append_later(notice("second"));
        assert_eq!(log.next_seq(), 0, "nothing is appended while the task runs on");
        tokio::task::yield_now().await;
        assert_eq!(log.next_seq(), 2);
    });
    log.sync().expect("sync");
    assert_eq!(messages(&path), ["first", "second"]);
}

#[test]
fn a_deferred_entry_is_made_when_it_is_appended_and_keeps_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    let made = Arc::new(std::sync::atomic::AtomicBool::new(false));
    current_thread().block_on(async {
        log.append_later(notice("before"));
        let flag = Arc::clone(&made);
        log.append_later_with(move || {
            flag.store(true, Ordering::SeqCst);
            notice("made")
        });
        log.append_later(notice("after"));
        assert!(!made.load(Ordering::SeqCst), "made before the task yielded");
        tokio::task::yield_now().await;
        assert!(made.load(Ordering::SeqCst));
    });
    log.sync().expect("sync");
    assert_eq!(messages(&path), ["before", "made", "after"]);
}

#[test]
fn a_deferred_entry_whose_task_never_runs_is_made_at_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    current_thread().block_on(async { log.append_later_with(|| notice("made at close")) });
    drop(log);
    assert_eq!(messages(&path), ["made at close"]);
}

#[test]
fn a_direct_append_comes_after_what_was_queued_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    current_thread().block_on(async {
        log.append_later(notice("queued"));
        assert_eq!(log.append(notice("direct")).expect("append"), 1);
        // The drain task finds nothing left.
        tokio::task::yield_now().await;
    });
    log.sync().expect("sync");
    assert_eq!(messages(&path), ["queued", "direct"]);
    assert!(verify(&path).expect("verify").ok());
}

#[test]
fn a_queued_entry_whose_task_never_runs_is_appended_by_the_next_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(10, false)).expect("open");
    // The runtime ends before its drain task gets to run.
    current_thread().block_on(async { log.append_later(notice("orphan")) });
    wait_for_checkpoint(&path, 0);
    assert_eq!(messages(&path), ["orphan"], "the flusher thread's sync appended it");
    // A later one still gets a drain of its own.
    current_thread().block_on(async {
        log.append_later(notice("next"));
        tokio::task::yield_now().await;
        assert_eq!(log.next_seq(), 2);
    });
}

#[test]
fn closing_the_log_appends_what_is_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    current_thread().block_on(async { log.append_later(notice("at close")) });
    drop(log);
    assert_eq!(messages(&path), ["at close"]);
    assert_eq!(head::read(&path).expect("head").map(|c| c.seq), Some(0));
}

#[test]
fn outside_a_runtime_or_syncing_every_append_a_later_append_is_immediate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    log.append_later(notice("no runtime"));
    assert_eq!(log.next_seq(), 1);
    let durable = AuditLog::open(dir.path().join("durable.jsonl"), options(0, false)).expect("open");
    current_thread().block_on(async { durable.append_later(notice("durable")) });
    assert_eq!(head::read(&dir.path().join("durable.jsonl")).expect("head").map(|c| c.seq), Some(0));
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime")
}

#[test]
fn on_a_multi_thread_runtime_the_flusher_appends_a_later_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(10, false)).expect("open");
    multi_thread().block_on(async {
        log.append_later(notice("first"));
        log.append_later_with(|| notice("second"));
    });
    wait_for_checkpoint(&path, 1);
    assert_eq!(messages(&path), ["first", "second"], "the flusher thread appended both, in order");
    assert!(verify(&path).expect("verify").ok());
}

#[test]
fn on_a_multi_thread_runtime_a_later_entry_waits_for_a_sync_and_keeps_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    // The flusher sleeps a minute: only the calls below can append.
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    multi_thread().block_on(async {
        log.append_later(notice("queued"));
        assert_eq!(log.next_seq(), 0, "no task appends it on a multi-thread runtime");
        assert_eq!(log.append(notice("direct")).expect("append"), 1);
        log.append_later(notice("at sync"));
    });
    log.sync().expect("sync");
    assert_eq!(messages(&path), ["queued", "direct", "at sync"]);
    log.append_later(notice("no runtime: now"));
    assert_eq!(log.next_seq(), 4);
}

#[test]
fn a_full_queue_is_appended_by_the_caller_that_filled_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(60_000, false)).expect("open");
    multi_thread().block_on(async {
        for i in 0..later::QUEUE_BOUND - 1 {
            log.append_later(notice(&i.to_string()));
        }
        assert_eq!(log.next_seq(), 0, "below the bound everything waits for the flusher");
        log.append_later(notice("the last one"));
        assert_eq!(log.next_seq(), later::QUEUE_BOUND as u64, "at the bound the caller appended the queue");
        log.append_later(notice("after"));
        assert_eq!(log.next_seq(), later::QUEUE_BOUND as u64, "an emptied queue waits again");
    });
    drop(log);
    let found = messages(&path);
    assert_eq!(found.len(), later::QUEUE_BOUND + 1, "closing the log appended the rest");
    assert_eq!(found.last().map(String::as_str), Some("after"));
    assert!(verify(&path).expect("verify").ok());
}

#[test]
fn drains_by_the_flusher_and_by_the_runtime_keep_the_queue_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    // A flusher every millisecond drains the queue alongside the runtime's task.
    let log = AuditLog::open(&path, options(1, false)).expect("open");
    current_thread().block_on(async {
        for i in 0..2000 {
            log.append_later(notice(&i.to_string()));
            if i % 5 == 0 {
                tokio::task::yield_now().await;
            }
            if i % 97 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    log.sync().expect("sync");
    let expected: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    assert_eq!(messages(&path), expected);
    assert!(verify(&path).expect("verify").ok());
    assert_eq!(log.dropped(), 0);
}

#[test]
fn records_that_could_not_be_written_leave_a_notice_once_the_log_writes_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, options(20, false)).expect("open");
    log.append(notice("before")).expect("append");
    // As an append that failed would have counted them.
    log.shared.dropped.fetch_add(3, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !messages(&path).iter().any(|m| m.contains("3 audit record(s) could not be written"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let said = messages(&path);
    assert_eq!(said.iter().filter(|m| m.contains("could not be written")).count(), 1, "{said:?}");
    // Reported once: later syncs say nothing more.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(messages(&path).iter().filter(|m| m.contains("could not be written")).count(), 1);
    drop(log);
}

/// Two writers would each continue the chain from their own last record:
/// a log open in one place is refused in another until it is closed.
#[test]
fn a_log_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let first = AuditLog::open(&path, options(50, false)).expect("open");
    match AuditLog::open(&path, options(50, false)) {
        Err(AuditError::InUse { path: named }) => assert_eq!(named, path),
        other => panic!("a second writer was let in: {:?}", other.map(|_| ())),
    }
    drop(first);
    let again = AuditLog::open(&path, options(50, false)).expect("reopened once closed");
    assert_eq!(again.append(notice("after")).expect("append"), 0);
}
