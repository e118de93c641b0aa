//! Pipes for splice(2), and the pool that lends them out.
//!
//! Linux moves socket bytes into a pipe and from the pipe into another
//! socket by passing page references, so relayed bytes never cross into
//! userspace. A pipe costs two descriptors and a slot array in the kernel,
//! so a relay direction borrows one only while it is moving bytes and gives
//! it back before it waits for more: a thousand idle connections hold no
//! pipes, and a busy proxy reuses a few instead of creating one per burst.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::unistd::pipe2;

/// The capacity asked for each pipe, so one splice moves up to 1 MiB (the
/// default `fs.pipe-max-size`). The default 64 KiB made four times as many
/// splice calls for a bulk stream.
const PIPE_CAPACITY: usize = 1 << 20;

/// Idle pipes kept for reuse; any more given back are closed.
const POOL_MAX: usize = 32;

/// A pipe's capacity when it cannot be read back: the kernel's default.
const DEFAULT_CAPACITY: usize = 64 * 1024;

/// `SPLICE_F_NONBLOCK`: never sleep in the kernel (readiness comes from
/// tokio). `SPLICE_F_MOVE`: move pages rather than copy, where possible.
fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// One pipe: bytes go in at `write` and out at `read`.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    /// The pool's count of open pipes, decremented when this one closes.
    open: Arc<AtomicUsize>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipe {
    fn new(open: &Arc<AtomicUsize>) -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let asked = i32::try_from(PIPE_CAPACITY).unwrap_or(i32::MAX);
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(asked)) {
            Ok(size) => usize::try_from(size).unwrap_or(DEFAULT_CAPACITY),
            // Past `fs.pipe-max-size` or the user's pipe page budget the
            // kernel refuses; the smaller default pipe still works.
            Err(errno) => {
                tracing::debug!(%errno, "cannot grow a splice pipe; using its default size");
                fcntl(&write, FcntlArg::F_GETPIPE_SZ)
                    .ok()
                    .and_then(|size| usize::try_from(size).ok())
                    .unwrap_or(DEFAULT_CAPACITY)
            }
        };
        open.fetch_add(1, Ordering::Relaxed);
        Ok(Pipe { read, write, capacity, open: Arc::clone(open) })
    }

    /// Moves what `socket` has (at most the pipe's capacity) into this
    /// pipe; 0 at the socket's EOF. The pipe must be empty: then a
    /// `WouldBlock` can only mean the socket has nothing, which is what lets
    /// tokio clear the socket's readiness on it.
    pub(crate) fn fill(&self, socket: impl AsFd) -> io::Result<usize> {
        Ok(splice(socket, None, &self.write, None, self.capacity, flags())?)
    }

    /// Moves up to `len` of the bytes in this pipe (it holds at least
    /// `len`) to `socket`. A `WouldBlock` means the socket's send buffer is
    /// full. To a reset peer this raises SIGPIPE (splice sends without
    /// `MSG_NOSIGNAL`); Rust programs ignore SIGPIPE from startup, so it
    /// arrives here as `EPIPE`.
    pub(crate) fn drain(&self, socket: impl AsFd, len: usize) -> io::Result<usize> {
        Ok(splice(&self.read, None, socket, None, len, flags())?)
    }
}

/// Empty pipes for reuse, shared by every connection of one proxy.
#[derive(Debug)]
pub struct PipePool {
    idle: Mutex<Vec<Pipe>>,
    open: Arc<AtomicUsize>,
    enabled: bool,
    fallback_noted: AtomicBool,
}

impl Default for PipePool {
    fn default() -> Self {
        Self::new()
    }
}

impl PipePool {
    /// An empty pool that creates pipes on demand.
    pub fn new() -> Self {
        PipePool {
            idle: Mutex::new(Vec::new()),
            open: Arc::new(AtomicUsize::new(0)),
            enabled: true,
            fallback_noted: AtomicBool::new(false),
        }
    }

    /// A pool that never hands out a pipe: every relay copies through
    /// userspace buffers, as when pipes cannot be created. For comparison
    /// and for systems where splice is unavailable.
    pub fn without_pipes() -> Self {
        PipePool { enabled: false, ..Self::new() }
    }

    /// An idle pipe, or a new one.
    pub(crate) fn take(&self) -> io::Result<Pipe> {
        if !self.enabled {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "splice pipes are disabled"));
        }
        if let Some(pipe) = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Ok(pipe);
        }
        Pipe::new(&self.open)
    }

    /// Returns a pipe for reuse. Only an EMPTY pipe may come back: a pipe
    /// left holding bytes (a relay that failed mid-way) is dropped instead,
    /// or those bytes would reach another connection.
    pub(crate) fn give(&self, pipe: Pipe) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL_MAX {
            idle.push(pipe);
        }
    }

    /// How many pipes wait in the pool (every pipe a finished or waiting
    /// relay borrowed comes back here, up to the pool's bound).
    pub fn idle_pipes(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// How many pipes are open: in the pool or lent to a relay that is
    /// moving bytes (each is two descriptors).
    pub fn open_pipes(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Logs, once per pool, that relays fell back to userspace copies.
    pub(super) fn note_fallback(&self, error: &io::Error) {
        if !self.enabled {
            return;
        }
        if self.fallback_noted.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, "no splice pipe; copying through userspace");
        } else {
            tracing::warn!(%error, "cannot create a splice pipe; relaying through userspace buffers while this lasts (logged once)");
        }
    }
}
