//! [`AuditLog`]: the append-only, hash-chained writer.
//!
//! `append` redacts the entry outside the lock, then under one mutex gives it
//! the next seq, chains it to the previous hash and encodes it straight into
//! an in-memory buffer. A background thread writes the buffer out and calls
//! `sync_data` every `fsync_interval`, then moves the checkpoint and hands
//! the batch's index rows to the index thread. A failed write is returned to the caller and counted; bytes
//! already accepted stay buffered and are retried, never discarded quietly.
//!
//! `append_later` queues an entry for a task that appends it once the
//! caller's task yields ([`later`]): records made on a message's path cost
//! nothing until the message has gone on.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::RuntimeFlavor;

use super::feed::{Feed, MAX_BACKLOG};

mod later;
mod shared;

use super::record::Hash;
use super::{AuditEntry, AuditError, Index, Redactor, tail};
use later::{Drain, Pushed, Queued};
use shared::{Shared, State, spawn_flusher};

/// Bytes buffered before `append` writes them out itself.
const FLUSH_AT: usize = 256 * 1024;

/// How an [`AuditLog`] behaves.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// How often buffered records are written and fsynced; zero syncs on
    /// every append.
    pub fsync_interval: Duration,
    /// Maintain `<log>.index.sqlite`.
    pub index: bool,
    /// `(name, value)` secrets replaced by `[REDACTED:<name>]` in every entry.
    pub redact: Vec<(String, String)>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { fsync_interval: Duration::from_millis(50), index: true, redact: Vec::new() }
    }
}

/// An open audit log. Share it behind an `Arc`: every method takes `&self`.
pub struct AuditLog {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// Opens `path` (creating it, mode 0600, and its directories), repairs a
    /// damaged tail and continues its chain.
    pub fn open(path: impl AsRef<Path>, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(AuditError::io(dir, "create directory"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(AuditError::io(&path, "open"))?;
        // One writer per log, for as long as it is open (the lock goes with
        // the descriptor, also when the process dies).
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(AuditError::InUse { path }),
            Err(fs::TryLockError::Error(error)) => return Err(AuditError::io(&path, "lock")(error)),
        }
        let tail = tail::open(&path, &file)?;
        let (feed, indexer) = match options.index {
            true => {
                let (feed, thread) = Feed::start(open_index(&path)?, path.clone(), MAX_BACKLOG)?;
                (Some(feed), Some(thread))
            }
            false => (None, None),
        };
        let state = State {
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            next_seq: tail.last.map_or(0, |last| last.seq + 1),
            prev: tail.last.map_or(Hash::ZERO, |last| last.hash),
            written: tail.len,
            buffered_last: tail.last,
            written_last: tail.last,
            pending_rows: Vec::new(),
            buffered: 0,
        };
        let shared = Arc::new(Shared {
            path,
            file,
            state: Mutex::new(state),
            sync: Mutex::new(None),
            index: feed,
            redactor: Redactor::new(options.redact),
            dropped: AtomicU64::new(0),
            later: Default::default(),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let mut log = AuditLog { shared, flusher: None, indexer };
        if let Some(recovery) = tail.recovery {
            // No flusher yet, so this append is synced before `open` returns.
            log.append(recovery)?;
        }
        if !options.fsync_interval.is_zero() {
            log.flusher = Some(spawn_flusher(Arc::clone(&log.shared), options.fsync_interval)?);
        }
        Ok(log)
    }

    /// Appends one entry; returns its seq. The record is durable after the
    /// next sync (at most `fsync_interval` later, or [`AuditLog::sync`]).
    pub fn append(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        let shared = &*self.shared;
        if shared.later.waiting() {
            // What was queued earlier goes first.
            shared.drain_later();
        }
        let result = shared.append(entry);
        if result.is_err() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let seq = result?;
        if self.flusher.is_none() {
            shared.sync()?;
        }
        Ok(seq)
    }

    /// Appends `entry` after the work it describes (module `later`): for a
    /// record made on a message's path, so that its cost comes after the
    /// message is passed on. On a current-thread tokio runtime a task of
    /// that runtime appends it once the caller yields. On a multi-thread
    /// runtime the flusher thread appends it before its next sync, within
    /// `fsync_interval` (a task there may wake another worker, which costs
    /// more than the append: measured on the TLS proxy); past
    /// 256 entries waiting (`later::QUEUE_BOUND`), the caller appends them
    /// itself. It appends now outside a runtime, and when every append must
    /// be durable at once (`fsync_interval` zero). A failure is logged and
    /// counted in [`AuditLog::dropped`]: no caller is left to return it to.
    pub fn append_later(&self, entry: AuditEntry) {
        self.queue_later(Queued::Entry(entry));
    }

    /// [`AuditLog::append_later`] for an entry whose making is worth
    /// deferring too (a scan of the message that was passed on): `make`
    /// runs when the entry is appended, on whichever thread appends it.
    pub fn append_later_with(&self, make: impl FnOnce() -> AuditEntry + Send + 'static) {
        self.queue_later(Queued::Make(Box::new(make)));
    }

    fn queue_later(&self, queued: Queued) {
        let runtime = tokio::runtime::Handle::try_current().ok().filter(|_| self.flusher.is_some());
        match runtime {
            Some(runtime) if runtime.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                if self.shared.later.push(queued, Drain::Task) == Pushed::StartDrain {
                    let shared = Arc::clone(&self.shared);
                    runtime.spawn(async move { shared.drain_later() });
                }
            }
            Some(_) => {
                if self.shared.later.push(queued, Drain::Flusher) == Pushed::StartDrain {
                    self.shared.drain_later();
                }
            }
            None => {
                if let Err(error) = self.append(queued.into_entry()) {
                    tracing::error!(log = %self.shared.path.display(), %error, "could not append an audit record");
                }
            }
        }
    }

    /// Writes and fsyncs everything appended so far, then moves the checkpoint.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.shared.sync()
    }

    /// Records that could not be written (each was reported to its caller,
    /// or, for a later append or at close, to the log's `tracing` output).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The seq the next record appended will get (entries still queued by
    /// [`AuditLog::append_later`] come before it).
    pub fn next_seq(&self) -> u64 {
        self.shared.lock().next_seq
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.shared.path)
            .field("next_seq", &self.next_seq())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take()
            && flusher.join().is_err()
        {
            tracing::error!(log = %self.shared.path.display(), "audit flusher thread panicked");
        }
        if let Err(error) = self.shared.sync() {
            let lost = self.shared.lock().buffered;
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
            tracing::error!(log = %self.shared.path.display(), %error, lost, "audit log could not be written at close; records lost");
        }
        if let Some(feed) = &self.shared.index {
            feed.close();
        }
        if let Some(indexer) = self.indexer.take()
            && indexer.join().is_err()
        {
            tracing::error!(log = %self.shared.path.display(), "audit index thread panicked");
        }
    }
}

fn open_index(path: &Path) -> Result<Index, AuditError> {
    let mut index = Index::open(path)?;
    index.catch_up(path)?;
    Ok(index)
}

#[cfg(test)]
mod tests;
