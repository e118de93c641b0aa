//! The SQLite index beside a log (`<log>.index.sqlite`, WAL mode): one row
//! of summary columns per record, pointing at its bytes in the log.
//!
//! Only `time_us`, `effect` and `kind` are indexed: each secondary index
//! costs the writer microseconds per row, single columns keep rows in seq
//! order within a value (so "latest N" stops early), and a Cedar action
//! implies its kind. The index is a cache: the log is the truth. [`Index::catch_up`] adds the
//! rows it lacks (after a crash, or for a log written with the index off)
//! and rebuilds from scratch if the index does not match the log.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use super::{AuditError, record, sidecar};

mod row;

pub use row::IndexRow;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT,
    effect TEXT,
    principal TEXT,
    resource TEXT,
    reason TEXT,
    byte_offset INTEGER NOT NULL,
    line_len INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time_us);
CREATE INDEX IF NOT EXISTS records_effect ON records(effect);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// The `meta` key of the watermark: the highest seq with every seq from 0
/// up to it indexed, -1 when seq 0 is not. Kept by every insert, so opening
/// a log and each `bridle audit query` find where to resume in O(1); a
/// scan of the table to find it took 0.5–1.5 s at 3M rows.
const WATERMARK: &str = "contiguous";

const INSERT: &str = "INSERT OR REPLACE INTO records
    (seq, time_us, type, kind, action, effect, principal, resource, reason, byte_offset, line_len) VALUES ";

/// Rows per INSERT statement: one statement per row costs about twice as
/// much per row.
const ROWS_PER_STATEMENT: usize = 50;

/// How `rows` rows are split into INSERT statements: full ones of
/// [`ROWS_PER_STATEMENT`], then the rest in powers of two. So at most seven
/// statement shapes exist and all stay in rusqlite's statement cache (16);
/// with one shape per remainder (1 to 49), most batches parsed their SQL
/// again.
fn statement_sizes(rows: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(ROWS_PER_STATEMENT, rows / ROWS_PER_STATEMENT);
    let rest = rows % ROWS_PER_STATEMENT;
    full.chain((0..usize::BITS).rev().map(|bit| 1usize << bit).filter(move |size| rest & size != 0))
}

/// Rows per transaction while catching up, bounding memory on huge logs.
const CATCH_UP_BATCH: usize = 10_000;

/// An open index.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

impl Index {
    /// `<log>.index.sqlite`.
    pub fn path_for(log: &Path) -> PathBuf {
        sidecar(log, ".index.sqlite")
    }

    /// Opens (or creates) the index of `log`.
    pub fn open(log: &Path) -> Result<Index, AuditError> {
        let path = Index::path_for(log);
        let conn = Connection::open(&path).map_err(err_at(&path, "open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err_at(&path, "configure"))?;
        let wal = |row: &rusqlite::Row<'_>| row.get::<_, String>(0);
        conn.query_row("PRAGMA journal_mode=WAL", [], wal).map_err(err_at(&path, "enable WAL"))?;
        // Checkpointing the WAL less often writes each hot page fewer times.
        // Rows arrive in seq order, so appends touch few pages: a 512 KiB
        // page cache (SQLite's default is 2 MiB) keeps a long-lived
        // writer's memory flat.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000; PRAGMA cache_size=-512;")
            .map_err(err_at(&path, "configure"))?;
        conn.execute_batch(SCHEMA).map_err(err_at(&path, "create schema"))?;
        Ok(Index { conn, path })
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> AuditError + use<> {
        err_at(&self.path, op)
    }

    /// Inserts rows in one transaction, advancing the watermark over them.
    pub fn insert(&mut self, rows: &[IndexRow]) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        // IMMEDIATE: the watermark is read, then written; a concurrent
        // catch-up (`bridle audit query`) must not interleave between the two.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err_at(path, "begin"))?;
        let before = watermark(&tx).map_err(err_at(path, "read watermark"))?;
        let mut rest = rows;
        for size in statement_sizes(rows.len()) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let mut stmt = tx.prepare_cached(&insert_sql(size)).map_err(err_at(path, "prepare insert"))?;
            let values = chunk.iter().flat_map(IndexRow::sql_values);
            stmt.execute(rusqlite::params_from_iter(values)).map_err(err_at(path, "insert"))?;
        }
        let after = advance(before, rows);
        if after != before {
            set_watermark(&tx, after).map_err(err_at(path, "write watermark"))?;
        }
        tx.commit().map_err(err_at(path, "commit"))
    }

    /// Indexes every complete record of `log` the index lacks; returns how
    /// many rows were added.
    pub fn catch_up(&mut self, log: &Path) -> Result<u64, AuditError> {
        let file = File::open(log).map_err(AuditError::io(log, "open"))?;
        let start = self.resume_offset(log, &file)?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        reader.seek(SeekFrom::Start(start)).map_err(AuditError::io(log, "seek"))?;
        let (mut offset, mut added, mut batch, mut line) = (start, 0u64, Vec::new(), Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(AuditError::io(log, "read"))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            match IndexRow::from_line(&line[..n - 1], offset) {
                Some(row) => batch.push(row),
                None => {
                    tracing::warn!(log = %log.display(), offset, "unreadable audit record not indexed")
                }
            }
            offset += n as u64;
            if batch.len() >= CATCH_UP_BATCH {
                self.insert(&batch)?;
                added += std::mem::take(&mut batch).len() as u64;
            }
        }
        self.insert(&batch)?;
        Ok(added + batch.len() as u64)
    }

    /// Where indexing should resume: after the watermark's record, if that
    /// record is where the index says it is; otherwise the index is dropped
    /// and rebuilt from byte 0.
    fn resume_offset(&mut self, log: &Path, file: &File) -> Result<u64, AuditError> {
        let path = &self.path;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err_at(path, "begin"))?;
        let last = watermark(&tx).map_err(err_at(path, "read watermark"))?;
        if last < 0 {
            tx.commit().map_err(err_at(path, "commit"))?;
            return Ok(0);
        }
        let sql = "SELECT byte_offset, line_len FROM records WHERE seq = ?1";
        let place: Option<(i64, i64)> =
            tx.query_row(sql, [last], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(err_at(path, "read"))?;
        if let Some((offset, len)) = place
            && line_has_seq(file, offset as u64, len as u64, last as u64)
        {
            tx.commit().map_err(err_at(path, "commit"))?;
            return Ok(offset as u64 + len as u64);
        }
        tracing::info!(log = %log.display(), "audit index does not match the log; rebuilding it");
        tx.execute("DELETE FROM records", []).map_err(err_at(path, "clear"))?;
        set_watermark(&tx, -1).map_err(err_at(path, "clear"))?;
        tx.commit().map_err(err_at(path, "commit"))?;
        Ok(0)
    }

    /// The watermark, `None` if seq 0 is not indexed.
    #[cfg(test)]
    fn last_contiguous(&self) -> Result<Option<i64>, AuditError> {
        let last = watermark(&self.conn).map_err(self.err("read watermark"))?;
        Ok((last >= 0).then_some(last))
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn error(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> AuditError + use<> {
        self.err(op)
    }
}

/// The watermark as stored; an index written before it existed gets it
/// computed once from the table (rows after a gap, shed under load, are
/// re-inserted by the catch-up that follows).
fn watermark(conn: &Connection) -> rusqlite::Result<i64> {
    let stored = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([WATERMARK], |r| r.get(0))
        .optional()?;
    if let Some(last) = stored {
        return Ok(last);
    }
    let sql = "SELECT count(*), min(seq), max(seq) FROM records";
    let (count, min, max): (i64, Option<i64>, Option<i64>) =
        conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let last = match (min, max) {
        (Some(0), Some(max)) if count == max + 1 => max,
        (Some(0), Some(_)) => {
            let sql =
                "SELECT min(seq) FROM records r WHERE NOT EXISTS (SELECT 1 FROM records n WHERE n.seq = r.seq + 1)";
            conn.query_row(sql, [], |r| r.get(0))?
        }
        _ => -1,
    };
    set_watermark(conn, last)?;
    Ok(last)
}

fn set_watermark(conn: &Connection, last: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute((WATERMARK, last))?;
    Ok(())
}

/// The watermark once `rows` are indexed: it moves over rows that follow it
/// without a gap. Rows out of order only leave it lower than it could be,
/// which costs a longer catch-up, never a missed record.
fn advance(mut last: i64, rows: &[IndexRow]) -> i64 {
    for row in rows {
        let Ok(seq) = i64::try_from(row.seq) else { break };
        if seq == last + 1 {
            last = seq;
        } else if seq > last + 1 {
            break;
        }
    }
    last
}

/// `INSERT … VALUES (?,…),(?,…)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; row::COLUMNS].join(","));
    format!("{INSERT}{}", vec![row.as_str(); rows].join(","))
}

fn err_at(path: &Path, op: &'static str) -> impl FnOnce(rusqlite::Error) -> AuditError + use<> {
    let path = path.to_path_buf();
    move |source| AuditError::Index { path, op, source }
}

/// Whether `file[offset..offset+len]` is a whole line holding record `seq`.
fn line_has_seq(file: &File, offset: u64, len: u64, seq: u64) -> bool {
    let Ok(size) = usize::try_from(len) else {
        return false;
    };
    let mut line = vec![0; size];
    file.read_exact_at(&mut line, offset).is_ok()
        && line.last() == Some(&b'\n')
        && record::guess_seq(&line).is_some_and(|found| found == seq)
}

#[cfg(test)]
mod tests;
