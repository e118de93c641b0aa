use std::time::Duration;

use super::*;
use crate::audit::fixtures::{connect, decision, notice};
use crate::audit::{AuditEntry, AuditLog, AuditOptions, Redactor};
use crate::decision::Effect;

fn write_log(path: &Path, index: bool, entries: Vec<AuditEntry>) {
    let options = AuditOptions { fsync_interval: Duration::from_millis(50), index, redact: Vec::new() };
    let log = AuditLog::open(path, options).expect("open");
    for entry in entries {
        log.append(entry).expect("append");
    }
}

fn count(index: &Index) -> i64 {
    index.conn().query_row("SELECT count(*) FROM records", [], |r| r.get(0)).expect("count")
}

#[test]
fn rows_carry_the_summary_columns() {
    let entry = decision(connect("api.test", 8443), Effect::Ask);
    let row = IndexRow::for_entry(&entry, Some(&Redactor::default()));
    assert_eq!(row.kind, "net.connect");
    assert_eq!(row.action.as_deref(), Some(r#"Net::Action::"Connect""#));
    assert_eq!(row.effect.as_deref(), Some("ask"));
    assert_eq!(row.resource.as_deref(), Some("api.test:8443"));
    assert_eq!(row.principal.as_deref(), Some("claude"));
    assert!(row.time_us > 0);
}

#[test]
fn the_log_keeps_its_index_and_catch_up_finds_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, true, vec![notice("a"), decision(connect("x.test", 443), Effect::Deny)]);
    let mut index = Index::open(&path).expect("index");
    assert_eq!(count(&index), 2);
    assert_eq!(index.catch_up(&path).expect("catch up"), 0);
}

#[test]
fn catch_up_resumes_after_the_last_indexed_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, true, vec![notice("a"), notice("b")]);
    write_log(&path, false, vec![notice("c"), notice("d"), notice("e")]);
    let mut index = Index::open(&path).expect("index");
    assert_eq!(index.catch_up(&path).expect("catch up"), 3);
    assert_eq!(count(&index), 5);
}

#[test]
fn an_index_of_another_log_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, true, vec![notice("a"), notice("b"), notice("c")]);
    std::fs::remove_file(&path).expect("remove");
    std::fs::remove_file(crate::audit::head::path_for(&path)).expect("remove head");
    write_log(&path, false, vec![notice("x")]);
    let mut index = Index::open(&path).expect("index");
    assert_eq!(index.catch_up(&path).expect("catch up"), 1);
    assert_eq!(count(&index), 1);
}

#[test]
fn unknown_entry_types_still_get_a_row() {
    let line = br#"{"seq":3,"time":"2026-11-27T06:00:00.000000Z","prev":"00","type":"future_thing","x":1,"hash":"00"}"#;
    let row = IndexRow::from_line(line, 10).expect("row");
    assert_eq!((row.seq, &*row.r#type, &*row.kind, row.offset), (3, "future_thing", "future_thing", 10));
    assert_eq!(row.len, line.len() as u64 + 1);
}

/// The rows of every record in `path`, as a catch-up reads them.
fn rows_of(path: &Path) -> Vec<IndexRow> {
    let file = std::fs::read_to_string(path).expect("read");
    let mut rows = Vec::new();
    let mut offset = 0u64;
    for line in file.split_inclusive('\n') {
        rows.push(IndexRow::from_line(line.trim_end_matches('\n').as_bytes(), offset).expect("row"));
        offset += line.len() as u64;
    }
    rows
}

#[test]
fn catch_up_fills_a_gap_left_by_shed_rows_without_a_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, false, (0..8).map(|i| notice(&i.to_string())).collect());
    let rows = rows_of(&path);
    let mut index = Index::open(&path).expect("index");
    index.insert(&rows[..4]).expect("insert");
    index.insert(&rows[5..]).expect("insert");
    assert_eq!(index.last_contiguous().expect("gap"), Some(3));
    assert_eq!(index.catch_up(&path).expect("catch up"), 4);
    assert_eq!(count(&index), 8);
    assert_eq!(index.last_contiguous().expect("whole"), Some(7));
    assert_eq!(index.catch_up(&path).expect("catch up"), 0);
}

#[test]
fn an_index_without_seq_0_is_filled_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, false, (0..8).map(|i| notice(&i.to_string())).collect());
    let rows = rows_of(&path);
    let mut index = Index::open(&path).expect("index");
    index.insert(&rows[1..]).expect("insert");
    assert_eq!(index.last_contiguous().expect("no seq 0"), None);
    assert_eq!(index.catch_up(&path).expect("catch up"), 8);
    assert_eq!(index.last_contiguous().expect("whole"), Some(7));
}

#[test]
fn an_index_written_before_the_watermark_gets_it_from_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, true, (0..8).map(|i| notice(&i.to_string())).collect());
    let mut index = Index::open(&path).expect("index");
    // As an older Bridle left it: no watermark, and a gap at seq 5.
    index.conn().execute("DELETE FROM meta", []).expect("delete watermark");
    index.conn().execute("DELETE FROM records WHERE seq = 5", []).expect("delete row");
    assert_eq!(index.last_contiguous().expect("computed"), Some(4));
    let stored: i64 =
        index.conn().query_row("SELECT value FROM meta WHERE key = 'contiguous'", [], |r| r.get(0)).expect("stored");
    assert_eq!(stored, 4);
    assert_eq!(index.catch_up(&path).expect("catch up"), 3);
    assert_eq!(count(&index), 8);
}

#[test]
fn a_watermark_past_a_missing_row_rebuilds_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, true, (0..4).map(|i| notice(&i.to_string())).collect());
    let mut index = Index::open(&path).expect("index");
    index.conn().execute("DELETE FROM records WHERE seq = 3", []).expect("delete row");
    assert_eq!(index.catch_up(&path).expect("catch up"), 4);
    assert_eq!((count(&index), index.last_contiguous().expect("whole")), (4, Some(3)));
}

#[test]
fn the_watermark_moves_only_over_rows_without_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_log(&path, false, (0..6).map(|i| notice(&i.to_string())).collect());
    let rows = rows_of(&path);
    assert_eq!(advance(-1, &rows), 5);
    assert_eq!(advance(-1, &rows[1..]), -1);
    assert_eq!(advance(1, &rows), 5);
    assert_eq!(advance(1, &[rows[2].clone(), rows[4].clone()]), 2);
    assert_eq!(advance(3, &[rows[5].clone(), rows[4].clone()]), 3);
}

#[test]
fn any_batch_is_inserted_with_at_most_seven_statement_shapes() {
    let shapes = [ROWS_PER_STATEMENT, 32, 16, 8, 4, 2, 1];
    for rows in 0..=3 * ROWS_PER_STATEMENT {
        let sizes: Vec<usize> = statement_sizes(rows).collect();
        assert_eq!(sizes.iter().sum::<usize>(), rows, "{rows}: {sizes:?}");
        assert!(sizes.iter().all(|size| shapes.contains(size)), "{rows}: {sizes:?}");
    }
}

#[test]
fn batches_of_every_size_are_indexed_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let entries: Vec<AuditEntry> = (0..180).map(|i| notice(&format!("n{i}"))).collect();
    write_log(&path, false, entries);
    let mut index = Index::open(&path).expect("index");
    let rows = rows_of(&path);
    // Batches of 1, 2, ... rows: every remainder shape, in order.
    let (mut start, mut size) = (0, 1);
    while start < rows.len() {
        let end = (start + size).min(rows.len());
        index.insert(&rows[start..end]).expect("insert");
        (start, size) = (end, size + 1);
    }
    assert_eq!(count(&index), rows.len() as i64);
    assert_eq!(index.last_contiguous().expect("whole"), Some(rows.len() as i64 - 1));
}
