//! Verifying a log: stream it line by line, check every record's hash, seq
//! and `prev` link, stop at the first bad record, then compare the end with
//! the `<log>.head` checkpoint.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use super::AuditError;
use super::head::{self, Head};
use super::record::{self, Hash, RecordFault};

mod report;

pub use report::{Problem, VerifyFailure, VerifyReport};

/// Where the walk is.
struct Walk {
    line: u64,
    offset: u64,
    report: VerifyReport,
    /// Hash, line and offset of the record at the checkpoint's seq, once seen.
    at_checkpoint: Option<(Hash, u64, u64)>,
    /// No checkpoint file at all (an empty one vouches for nothing, and
    /// fails nothing).
    head_missing: bool,
}

/// Verifies the log at `path`. `Err` only when it cannot be read; a log that
/// fails verification is an `Ok` report with a `failure`.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(AuditError::io(path, "open"))?;
    let head = match head::read_head(path) {
        Ok(head) => head,
        Err(AuditError::InvalidCheckpoint { reason, .. }) => {
            return Ok(bad_checkpoint(path, reason));
        }
        Err(error) => return Err(error),
    };
    let report = VerifyReport {
        path: path.to_path_buf(),
        records: 0,
        last_seq: None,
        last_hash: None,
        checkpoint: match head {
            Head::At(checkpoint) => Some(checkpoint),
            Head::Missing | Head::Empty => None,
        },
        recoveries: Vec::new(),
        failure: None,
    };
    let mut walk = Walk { line: 0, offset: 0, report, at_checkpoint: None, head_missing: head == Head::Missing };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    walk_lines(path, &mut reader, &mut walk)?;
    if walk.report.failure.is_none() {
        walk.report.failure = compare_checkpoint(&walk);
    }
    Ok(walk.report)
}

fn bad_checkpoint(path: &Path, reason: String) -> VerifyReport {
    let failure = VerifyFailure { line: 0, offset: 0, seq: None, problem: Problem::BadCheckpoint(reason) };
    VerifyReport {
        path: path.to_path_buf(),
        records: 0,
        last_seq: None,
        last_hash: None,
        checkpoint: None,
        recoveries: Vec::new(),
        failure: Some(failure),
    }
}

fn walk_lines(path: &Path, reader: &mut BufReader<File>, walk: &mut Walk) -> Result<(), AuditError> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(AuditError::io(path, "read"))?;
        if n == 0 {
            return Ok(());
        }
        walk.line += 1;
        let failure = match line.strip_suffix(b"\n") {
            None => Some((record::guess_seq(&line), Problem::TruncatedMidLine { bytes: n as u64 })),
            Some(content) => check_next(content, walk, reader, path)?,
        };
        if let Some((seq, problem)) = failure {
            walk.report.failure = Some(VerifyFailure { line: walk.line, offset: walk.offset, seq, problem });
            return Ok(());
        }
        walk.offset += n as u64;
    }
}

/// Checks one line against the chain so far and advances it.
fn check_next(
    content: &[u8],
    walk: &mut Walk,
    reader: &mut BufReader<File>,
    path: &Path,
) -> Result<Option<(Option<u64>, Problem)>, AuditError> {
    let expected = walk.report.last_seq.map_or(0, |seq| seq + 1);
    let checked = match record::check(content) {
        Ok(checked) => checked,
        Err(RecordFault::HashMismatch { .. }) => {
            return Ok(Some((record::guess_seq(content), Problem::Edited)));
        }
        Err(fault) => {
            return Ok(Some((record::guess_seq(content), Problem::Malformed(fault))));
        }
    };
    let seq = Some(checked.seq);
    if checked.seq > expected {
        let problem = if seq_appears_later(reader, expected, path)? {
            Problem::Reordered { expected }
        } else {
            Problem::Deleted { from: expected, to: checked.seq - 1 }
        };
        return Ok(Some((seq, problem)));
    }
    if checked.seq < expected {
        return Ok(Some((seq, Problem::Reordered { expected })));
    }
    if checked.prev != walk.report.last_hash.unwrap_or(Hash::ZERO) {
        return Ok(Some((seq, Problem::BadPrevLink)));
    }
    if checked.type_name == Some("recovery") {
        walk.report.recoveries.push(checked.seq);
        if let Some(message) = lost_records(content) {
            return Ok(Some((seq, Problem::Lost(message))));
        }
    }
    if walk.report.checkpoint.is_some_and(|c| c.seq == checked.seq) {
        walk.at_checkpoint = Some((checked.hash, walk.line, walk.offset));
    }
    walk.report.records += 1;
    walk.report.last_seq = seq;
    walk.report.last_hash = Some(checked.hash);
    Ok(None)
}

/// After a seq jump: is the missing record further down (moved) or gone?
fn seq_appears_later(reader: &mut BufReader<File>, seq: u64, path: &Path) -> Result<bool, AuditError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(AuditError::io(path, "read"))? == 0 {
            return Ok(false);
        }
        if record::guess_seq(&line) == Some(seq) {
            return Ok(true);
        }
    }
}

/// The message of a recovery record that says records were lost.
fn lost_records(content: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Recovery {
        message: String,
        #[serde(default)]
        lost: bool,
    }
    let recovery: Recovery = serde_json::from_slice(content).ok()?;
    recovery.lost.then_some(recovery.message)
}

fn compare_checkpoint(walk: &Walk) -> Option<VerifyFailure> {
    let Some(checkpoint) = walk.report.checkpoint else {
        return walk.report.last_seq.filter(|_| walk.head_missing).map(|_| VerifyFailure {
            line: walk.line,
            offset: walk.offset,
            seq: None,
            problem: Problem::NoCheckpoint,
        });
    };
    let last_seq = walk.report.last_seq;
    match walk.at_checkpoint {
        Some((hash, ..)) if hash == checkpoint.hash => None,
        Some((_, line, offset)) => {
            Some(VerifyFailure { line, offset, seq: Some(checkpoint.seq), problem: Problem::CheckpointMismatch })
        }
        None => Some(VerifyFailure {
            line: walk.line + 1,
            offset: walk.offset,
            seq: Some(last_seq.map_or(0, |seq| seq + 1)),
            problem: Problem::Truncated { last_seq, checkpoint_seq: checkpoint.seq },
        }),
    }
}

#[cfg(test)]
mod tests;
