//! The writer behind [`AuditLog`](super::AuditLog): the state under its
//! lock, the append path, write-out, sync and the flusher thread.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;

use super::FLUSH_AT;
use super::later::Later;
use crate::audit::feed::Feed;
use crate::audit::record::{self, Hash};
use crate::audit::{AuditEntry, AuditError, Checkpoint, IndexRow, Redactor, head};

pub(super) struct Shared {
    pub(super) path: PathBuf,
    /// Opened for append: every write lands at the end, even after a repair.
    pub(super) file: File,
    pub(super) state: Mutex<State>,
    /// Serializes syncs; holds the checkpoint last written.
    pub(super) sync: Mutex<Option<Checkpoint>>,
    /// Where durable rows go when the index is on.
    pub(super) index: Option<Arc<Feed>>,
    pub(super) redactor: Redactor,
    pub(super) dropped: AtomicU64,
    /// Entries queued by `append_later`.
    pub(super) later: Later,
    pub(super) stop: Mutex<bool>,
    pub(super) wake: Condvar,
}

pub(super) struct State {
    pub(super) buf: Vec<u8>,
    pub(super) next_seq: u64,
    pub(super) prev: Hash,
    /// Bytes of the log on disk (written, maybe not yet synced).
    pub(super) written: u64,
    /// Last record in `buf`, and last record written to the file.
    pub(super) buffered_last: Option<Checkpoint>,
    pub(super) written_last: Option<Checkpoint>,
    /// Rows of records in `buf`, or written but not yet indexed.
    pub(super) pending_rows: Vec<IndexRow>,
    /// How many records `buf` holds.
    pub(super) buffered: u64,
}

pub(super) fn spawn_flusher(shared: Arc<Shared>, interval: Duration) -> Result<JoinHandle<()>, AuditError> {
    let path = shared.path.clone();
    std::thread::Builder::new()
        .name("audit-sync".into())
        .spawn(move || shared.run_flusher(interval))
        .map_err(AuditError::io(path, "start sync thread"))
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave a half-encoded record: encoding is
        // infallible once started, so the state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Redacts and serializes outside the lock (so writers run in
    /// parallel); numbers, chains and hashes under it.
    pub(super) fn append(&self, mut entry: AuditEntry) -> Result<u64, AuditError> {
        thread_local! {
            // Reused across appends: serializing is the hot path.
            static FIELDS: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
        }
        // Moved out and back rather than borrowed: no borrow can fail, and a
        // thread that is exiting simply gets a fresh buffer.
        let mut fields = FIELDS.try_with(RefCell::take).unwrap_or_default();
        let result = self.append_with(&mut entry, &mut fields);
        let _ = FIELDS.try_with(|cell| cell.replace(fields));
        result
    }

    fn append_with(&self, entry: &mut AuditEntry, fields: &mut Vec<u8>) -> Result<u64, AuditError> {
        let walked = self
            .redactor
            .encode_fields(entry, fields)
            .map_err(|source| AuditError::Serialize { what: entry.type_name(), source })?;
        // Columns come from strings the fast path already found clean.
        let scrub = walked.then_some(&self.redactor);
        let mut row = self.index.as_ref().map(|_| IndexRow::for_entry(entry, scrub));
        let mut state = self.lock();
        if state.buf.len() >= FLUSH_AT {
            self.write_out(&mut state)?;
        }
        let (seq, now, start) = (state.next_seq, Utc::now(), state.buf.len());
        let prev = state.prev;
        let hash = record::encode(&mut state.buf, seq, &now, &prev, fields);
        state.next_seq += 1;
        state.prev = hash;
        state.buffered += 1;
        state.buffered_last = Some(Checkpoint { seq, hash });
        if let Some(mut row) = row.take() {
            if entry.time().is_none() {
                row.time_us = now.timestamp_micros();
            }
            (row.seq, row.offset, row.len) = (seq, state.written + start as u64, (state.buf.len() - start) as u64);
            state.pending_rows.push(row);
        }
        Ok(seq)
    }

    /// Writes the buffer to the file. On failure the file is cut back to the
    /// last whole record and the buffer kept for the next attempt.
    fn write_out(&self, state: &mut State) -> Result<(), AuditError> {
        if state.buf.is_empty() {
            return Ok(());
        }
        if let Err(source) = (&self.file).write_all(&state.buf) {
            if let Err(error) = self.file.set_len(state.written) {
                tracing::error!(log = %self.path.display(), %error, "cannot cut a partial audit write; the next open will repair it");
            }
            return Err(AuditError::Io { path: self.path.clone(), op: "write", source });
        }
        state.written += state.buf.len() as u64;
        state.buf.clear();
        state.buffered = 0;
        state.written_last = state.buffered_last;
        Ok(())
    }

    /// Appends what `append_later` queued, in order.
    pub(super) fn drain_later(&self) {
        self.later.drain(|queued| {
            if let Err(error) = self.append(queued.into_entry()) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(log = %self.path.display(), %error, "could not append a queued audit record");
            }
        });
    }

    pub(super) fn sync(&self) -> Result<(), AuditError> {
        if self.later.waiting() {
            self.drain_later();
        }
        let mut last_head = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
        let (checkpoint, rows) = {
            let mut state = self.lock();
            self.write_out(&mut state)?;
            (state.written_last, std::mem::take(&mut state.pending_rows))
        };
        self.file.sync_data().map_err(AuditError::io(&self.path, "fsync"))?;
        if let Some(checkpoint) = checkpoint.filter(|c| Some(*c) != *last_head) {
            head::write(&self.path, checkpoint)?;
            *last_head = Some(checkpoint);
        }
        if let Some(feed) = &self.index {
            feed.push(rows);
        }
        Ok(())
    }

    fn run_flusher(&self, interval: Duration) {
        let mut reported = 0;
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stop {
            stop = self.wake.wait_timeout(stop, interval).unwrap_or_else(PoisonError::into_inner).0;
            if *stop {
                break;
            }
            drop(stop);
            match self.sync() {
                Ok(()) => reported = self.report_dropped(reported),
                Err(error) => {
                    tracing::error!(log = %self.path.display(), %error, "audit sync failed; records stay buffered and are retried")
                }
            }
            stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Once the log writes again, says in it how many records it could not
    /// write since the last such notice (each is also in Bridle's own log):
    /// a gap in the record must show in the record. Returns the count now
    /// reported.
    pub(super) fn report_dropped(&self, reported: u64) -> u64 {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped <= reported {
            return reported;
        }
        let message = format!(
            "{} audit record(s) could not be written (Bridle's own log says why); the record has a gap",
            dropped - reported
        );
        let notice = AuditEntry::Notice { component: "audit".into(), level: "error".into(), message };
        match self.append(notice) {
            Ok(_) => dropped,
            Err(_) => reported,
        }
    }
}
