//! Appends made just after the work they describe: [`AuditLog::append_later`].
//!
//! A gateway or proxy that records a message before passing it on puts the
//! record's cost (redaction, encoding, the hash chain) between reading the
//! message and writing it out, where every microsecond is latency. Queued
//! here instead, the entry is appended by a task of the same runtime, which
//! runs once the recording task yields: after it wrote the message. On a
//! multi-thread runtime no task is spawned (it could wake an idle worker):
//! the flusher thread appends the queue before its next sync, and a queue
//! that reaches [`QUEUE_BOUND`] is appended by the caller that filled it,
//! so memory stays bounded however fast records come.
//!
//! Order and completeness are kept: queued entries are appended in the
//! order they were queued, before any later direct [`AuditLog::append`],
//! and every sync (the flusher thread's, [`AuditLog::sync`], the one at
//! drop) appends what is still queued first, so an entry whose task never
//! ran (the runtime shut down) still lands within one `fsync_interval`.
//!
//! [`AuditLog::append_later`]: super::AuditLog::append_later
//! [`AuditLog::append`]: super::AuditLog::append
//! [`AuditLog::sync`]: super::AuditLog::sync

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::audit::AuditEntry;

/// An entry waiting for its append, or what makes it then.
#[expect(
    clippy::large_enum_variant,
    reason = "an entry moves into the queue once; boxing it would add an allocation per record on the message's path"
)]
pub(super) enum Queued {
    Entry(AuditEntry),
    Make(Box<dyn FnOnce() -> AuditEntry + Send>),
}

impl Queued {
    pub(super) fn into_entry(self) -> AuditEntry {
        match self {
            Queued::Entry(entry) => entry,
            Queued::Make(make) => make(),
        }
    }
}

/// Entries a multi-thread runtime may leave for the flusher; at this many
/// the caller appends them (about a millisecond of appends at ~5 µs each).
pub(super) const QUEUE_BOUND: usize = 256;

/// Who appends a queued entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drain {
    /// A task of the caller's (current-thread) runtime.
    Task,
    /// The flusher thread, or the caller at [`QUEUE_BOUND`].
    Flusher,
}

/// What the caller of [`Later::push`] should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Drain the queue: spawn a task ([`Drain::Task`]), or drain it now
    /// ([`Drain::Flusher`]: the queue reached its bound).
    StartDrain,
    /// Nothing: a drain is on its way, or the flusher will come.
    Queued,
}

/// Entries waiting for their append.
#[derive(Default)]
pub(super) struct Later {
    queue: Mutex<Vec<Queued>>,
    /// The queue is not empty: lets the direct path skip the lock.
    waiting: AtomicBool,
    /// A task that drains the queue is on its way.
    scheduled: AtomicBool,
    /// Held while draining, so two drains cannot interleave their entries.
    draining: Mutex<()>,
}

impl Later {
    /// Queues `entry` for `drain`; says whether the caller must drain.
    pub(super) fn push(&self, entry: Queued, drain: Drain) -> Pushed {
        let mut queue = lock(&self.queue);
        queue.push(entry);
        let queued = queue.len();
        self.waiting.store(true, Ordering::Release);
        drop(queue);
        let start = match drain {
            Drain::Task => !self.scheduled.swap(true, Ordering::AcqRel),
            Drain::Flusher => queued >= QUEUE_BOUND,
        };
        if start { Pushed::StartDrain } else { Pushed::Queued }
    }

    pub(super) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// Takes the queue and hands each entry, in order, to `append`; a
    /// drain that starts later waits for this one.
    pub(super) fn drain(&self, mut append: impl FnMut(Queued)) {
        let _draining = lock(&self.draining);
        // From here a new entry schedules a drain of its own: one queued
        // after the take below must not wait for a drain that will not come.
        self.scheduled.store(false, Ordering::Release);
        let entries = {
            let mut queue = lock(&self.queue);
            self.waiting.store(false, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        for entry in entries {
            append(entry);
        }
    }
}

/// A panic elsewhere leaves the queue a valid `Vec`.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
