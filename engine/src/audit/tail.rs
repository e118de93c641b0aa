//! Reopening an existing log: find where its chain ends by reading only the
//! tail, and repair a damaged tail without losing a byte.
//!
//! A partial last line (a crash or truncation mid-write) is moved to
//! `<log>.corrupt-<unix-seconds>` and cut off; a log that ends before its
//! checkpoint lost whole records. Either way the caller appends a
//! [`AuditEntry::Recovery`] saying so. A damaged last *complete* line is not
//! repaired: the log is left alone and opening fails.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::head::{self, Head};
use super::record::{self, Hash};
use super::{AuditEntry, AuditError, Checkpoint, sidecar};

const CHUNK: u64 = 64 * 1024;

/// Where the chain continues.
#[derive(Debug)]
pub(crate) struct Tail {
    /// The last complete record, `None` for an empty log.
    pub last: Option<Checkpoint>,
    /// File length after any repair.
    pub len: u64,
    /// What to append to put the repair on the record.
    pub recovery: Option<AuditEntry>,
}

/// Reads the end of `file`, repairs a partial last line, compares with the
/// checkpoint.
pub(crate) fn open(path: &Path, file: &File) -> Result<Tail, AuditError> {
    let len = file.metadata().map_err(AuditError::io(path, "stat"))?.len();
    let complete_end = match rfind_newline(file, len).map_err(AuditError::io(path, "read"))? {
        Some(newline) => newline + 1,
        None => 0,
    };
    let mut tail = Tail { last: last_record(path, file, complete_end)?, len, recovery: None };
    let mut notes = Vec::new();
    let mut preserved_to = None;
    if complete_end < len {
        if let Some(finished) =
            finish_last_line(file, complete_end, len, tail.last).map_err(AuditError::io(path, "repair"))?
        {
            tracing::info!(log = %path.display(), seq = finished.seq, "audit log's last record lacked its newline; restored");
            tail.last = Some(finished);
            tail.len = len + 1;
        } else {
            let kept = cut_partial_line(path, file, complete_end, len)?;
            notes.push(format!(
                "log ended with a partial line ({} bytes at byte {complete_end}); moved to {}",
                len - complete_end,
                kept.display()
            ));
            preserved_to = Some(kept.display().to_string());
            tail.len = complete_end;
        }
    }
    let lost = compare_checkpoint(path, tail.last)?;
    if let Some(note) = &lost {
        tracing::warn!(log = %path.display(), "{note}");
        notes.push(note.clone());
    }
    if !notes.is_empty() {
        let message = notes.join("; ");
        tail.recovery =
            Some(AuditEntry::Recovery { message, offset: complete_end, preserved_to, lost: lost.is_some() });
    }
    Ok(tail)
}

/// Moves the bytes after the last newline to a sidecar and cuts them off.
fn cut_partial_line(path: &Path, file: &File, start: u64, end: u64) -> Result<PathBuf, AuditError> {
    let kept = preserve(path, file, start, end)?;
    file.set_len(start).map_err(AuditError::io(path, "truncate damaged tail"))?;
    file.sync_all().map_err(AuditError::io(path, "sync"))?;
    tracing::warn!(log = %path.display(), offset = start, preserved = %kept.display(), "audit log ended mid-line; damaged tail preserved and cut");
    Ok(kept)
}

/// The last complete line, checked; `end` is just past its newline.
fn last_record(path: &Path, file: &File, end: u64) -> Result<Option<Checkpoint>, AuditError> {
    if end == 0 {
        return Ok(None);
    }
    let newline = end - 1;
    let start = match rfind_newline(file, newline).map_err(AuditError::io(path, "read"))? {
        Some(previous) => previous + 1,
        None => 0,
    };
    let mut line = vec![0; usize::try_from(newline - start).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut line, start).map_err(AuditError::io(path, "read last record"))?;
    match record::check(&line) {
        Ok(checked) => Ok(Some(Checkpoint { seq: checked.seq, hash: checked.hash })),
        Err(fault) => {
            let line = count_lines(file, start).map_err(AuditError::io(path, "read"))? + 1;
            Err(AuditError::InvalidTail { path: path.to_path_buf(), line, offset: start, fault })
        }
    }
}

/// A crash can persist a whole record but not its newline: when the partial
/// tail is exactly the next valid record of the chain, the newline is all
/// that is missing.
fn finish_last_line(file: &File, start: u64, end: u64, last: Option<Checkpoint>) -> io::Result<Option<Checkpoint>> {
    const MAX_RECORD: u64 = 16 * 1024 * 1024;
    if start == end || end - start > MAX_RECORD {
        return Ok(None);
    }
    let mut line = vec![0; (end - start) as usize];
    file.read_exact_at(&mut line, start)?;
    let Ok(checked) = record::check(&line) else {
        return Ok(None);
    };
    let (seq, prev) = last.map_or((0, Hash::ZERO), |last| (last.seq + 1, last.hash));
    if checked.seq != seq || checked.prev != prev {
        return Ok(None);
    }
    let mut writer = file;
    writer.write_all(b"\n")?;
    writer.sync_data()?;
    Ok(Some(Checkpoint { seq: checked.seq, hash: checked.hash }))
}

/// What is wrong when the log ends before (or differs at) its checkpoint,
/// or has records but no checkpoint (deleted with records cut from the
/// end, it would hide the cut). A log that is empty and has none gets its
/// empty checkpoint here.
fn compare_checkpoint(path: &Path, last: Option<Checkpoint>) -> Result<Option<String>, AuditError> {
    let checkpoint = match (head::read_head(path)?, last) {
        (Head::At(checkpoint), _) => checkpoint,
        (Head::Empty, _) => return Ok(None),
        (Head::Missing, None) => return head::write_empty(path).map(|()| None),
        (Head::Missing, Some(last)) => {
            return Ok(Some(format!(
                "log ends at seq {} but has no checkpoint ({}): whether records were cut from its end cannot be told",
                last.seq,
                head::path_for(path).display()
            )));
        }
    };
    let note = match last {
        None => format!("log is empty but its checkpoint records seq {}: all records were lost", checkpoint.seq),
        Some(last) if last.seq < checkpoint.seq => format!(
            "log ends at seq {} but its checkpoint records seq {}: records {}..={} were lost",
            last.seq,
            checkpoint.seq,
            last.seq + 1,
            checkpoint.seq
        ),
        Some(last) if last.seq == checkpoint.seq && last.hash != checkpoint.hash => {
            format!("record seq {} differs from its checkpoint: the tail was rewritten", last.seq)
        }
        Some(_) => return Ok(None),
    };
    Ok(Some(note))
}

/// Copies `file[start..end]` to a new `<log>.corrupt-<unix-seconds>` file.
fn preserve(path: &Path, file: &File, start: u64, end: u64) -> Result<PathBuf, AuditError> {
    let (target, mut out) = create_sidecar(path)?;
    for_each_chunk(file, start, end, |chunk| out.write_all(chunk))
        .map_err(AuditError::io(&target, "preserve damaged tail"))?;
    out.sync_all().map_err(AuditError::io(&target, "sync preserved tail"))?;
    Ok(target)
}

fn create_sidecar(path: &Path) -> Result<(PathBuf, File), AuditError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for attempt in 0..100u32 {
        let suffix = if attempt == 0 { format!(".corrupt-{now}") } else { format!(".corrupt-{now}-{attempt}") };
        let target = sidecar(path, &suffix);
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target) {
            // Absolute, so the Recovery record still points at it later.
            Ok(out) => return Ok((std::path::absolute(&target).unwrap_or(target), out)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(AuditError::io(&target, "create")(e)),
        }
    }
    Err(AuditError::io(sidecar(path, ".corrupt-*"), "create")(io::ErrorKind::AlreadyExists.into()))
}

/// Position of the last `\n` before `end`, reading backwards in chunks.
fn rfind_newline(file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0u8; CHUNK as usize];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let buf = &mut chunk[..(hi - lo) as usize];
        file.read_exact_at(buf, lo)?;
        if let Some(at) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(lo + at as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// Newlines before `end`: only for naming the line in an error.
fn count_lines(file: &File, end: u64) -> io::Result<u64> {
    let mut count = 0;
    for_each_chunk(file, 0, end, |chunk| {
        count += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(())
    })?;
    Ok(count)
}

/// Feeds `file[start..end]` to `f` in chunks, without moving the file
/// position the writer relies on.
fn for_each_chunk(file: &File, start: u64, end: u64, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut chunk = vec![0u8; CHUNK as usize];
    let mut at = start;
    while at < end {
        let n = (end - at).min(CHUNK) as usize;
        file.read_exact_at(&mut chunk[..n], at)?;
        f(&chunk[..n])?;
        at += n as u64;
    }
    Ok(())
}
