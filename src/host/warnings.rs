//! Warnings about what the guard leaves uncovered: a socket the command
//! can still reach, a kernel without Landlock, a part of `/run` copied
//! empty, a command running as root. Each is said to the person running
//! Bridle (stderr) and kept in the audit log as a `notice` (level `warn`),
//! where whoever reviews the session later looks.
//!
//! Most are found by the sandbox step (`__sandbox-exec`), a process of its
//! own that then becomes the command. It writes them, one line each, to a
//! pipe whose other end the session reads into the audit log
//! ([`for_sandbox`], [`Warnings::to_pipe`]); the pipe is closed at the
//! exec, so the command never holds it. A warning that cannot be written
//! there stops the command from starting ([`Warnings::kept`]): it is
//! never lost on the way.
//!
//! Never: let the command write to the pipe, or leave a warning out of the
//! audit log because stderr had it.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use bridle_engine::audit::{AuditEntry, AuditLog};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

/// The longest warning kept whole; the sandbox's longest name eight paths.
const MAX_LINE: u64 = 64 << 10;

/// Where a process's warnings are kept, besides stderr.
#[derive(Debug)]
pub struct Warnings {
    kept_in: KeptIn,
    /// The first warning that could not be kept.
    lost: Mutex<Option<String>>,
}

#[derive(Debug)]
enum KeptIn {
    /// The session's audit log, written directly.
    Audit { log: Arc<AuditLog>, component: &'static str },
    /// The pipe to the session ([`for_sandbox`]).
    Pipe(Mutex<File>),
    /// Nowhere: a sandbox step started by hand, without a session.
    Stderr,
}

impl Warnings {
    /// Kept in `log` as notices of `component`.
    pub fn to_audit(log: &Arc<AuditLog>, component: &'static str) -> Warnings {
        Warnings::new(KeptIn::Audit { log: Arc::clone(log), component })
    }

    /// Said on stderr only.
    pub fn said_only() -> Warnings {
        Warnings::new(KeptIn::Stderr)
    }

    /// Kept through the write end of the session's pipe, inherited as
    /// descriptor `fd`; marked close-on-exec here, so the command never
    /// inherits it.
    #[expect(unsafe_code, reason = "taking ownership of an inherited descriptor")]
    pub fn to_pipe(fd: RawFd) -> anyhow::Result<Warnings> {
        if fd <= 2 {
            bail!("--warnings-fd {fd} is one of stdin, stdout and stderr, which are the command's");
        }
        let flags = fcntl(
            // SAFETY: borrowed only for this call; a closed descriptor
            // fails with EBADF, which is the error below.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_GETFL,
        )
        .with_context(|| format!("--warnings-fd {fd} is not an open descriptor"))?;
        let writable = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_WRONLY;
        // SAFETY: `fd` is open (F_GETFL succeeded), was inherited for this
        // use only, and nothing else in this process owns it.
        let pipe = unsafe { File::from_raw_fd(fd) };
        let is_fifo = pipe.metadata().map(|meta| meta.file_type()).is_ok_and(|kind| {
            use std::os::unix::fs::FileTypeExt as _;
            kind.is_fifo()
        });
        if !writable || !is_fifo {
            // Not closed: it is not ours.
            std::mem::forget(pipe);
            bail!("--warnings-fd {fd} is not the write end of a pipe");
        }
        fcntl(&pipe, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("marking the warnings pipe close-on-exec")?;
        Ok(Warnings::new(KeptIn::Pipe(Mutex::new(pipe))))
    }

    fn new(kept_in: KeptIn) -> Warnings {
        Warnings { kept_in, lost: Mutex::new(None) }
    }

    /// Says `message` on stderr and keeps it.
    pub fn warn(&self, message: impl Display) {
        let message = message.to_string();
        eprintln!("bridle: warning: {message}");
        let kept = match &self.kept_in {
            KeptIn::Stderr => Ok(()),
            KeptIn::Audit { log, component } => {
                let entry = AuditEntry::Notice { component: (*component).into(), level: "warn".into(), message };
                log.append(entry).map(drop).map_err(|error| error.to_string())
            }
            KeptIn::Pipe(pipe) => {
                // One line per warning: a newline inside one would split it.
                let mut line = message.replace('\n', " ");
                line.push('\n');
                let mut pipe = pipe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                pipe.write_all(line.as_bytes()).map_err(|error| error.to_string())
            }
        };
        if let Err(error) = kept {
            tracing::error!(%error, "could not keep a warning in the audit log");
            let mut lost = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            lost.get_or_insert(error);
        }
    }

    /// Whether every warning so far was kept; the command must not start
    /// when one was lost.
    pub fn kept(&self) -> anyhow::Result<()> {
        let lost = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match lost.as_ref() {
            None => Ok(()),
            Some(error) => bail!("a warning could not be kept in the audit log ({error}); the command is not started"),
        }
    }
}

/// The session's end of the sandbox's warnings: a pipe whose write end
/// the sandbox inherits ([`Inherited::fd`], passed as `--warnings-fd`) and
/// whose read end a thread copies into the audit log until every writer
/// is gone.
pub fn for_sandbox(log: &Arc<AuditLog>) -> anyhow::Result<(Inherited, Collector)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("making the warnings pipe")?;
    let log = Arc::clone(log);
    let thread = std::thread::Builder::new()
        .name("bridle-warnings".into())
        .spawn(move || collect(File::from(read), &log))
        .context("starting the warnings reader")?;
    Ok((Inherited { write }, Collector { thread }))
}

/// The write end, for the one child that inherits it.
#[derive(Debug)]
pub struct Inherited {
    write: OwnedFd,
}

impl Inherited {
    /// The descriptor's number, made inheritable: the child spawned next
    /// gets it (no other process is spawned meanwhile: a session starts
    /// the sandbox only). Drop this once the child exists, or the reader
    /// never sees the end.
    pub fn fd(&self) -> anyhow::Result<RawFd> {
        fcntl(&self.write, FcntlArg::F_SETFD(FdFlag::empty())).context("letting the sandbox inherit its pipe")?;
        Ok(self.write.as_raw_fd())
    }
}

/// The thread reading the warnings into the audit log.
#[derive(Debug)]
pub struct Collector {
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    /// Waits until every warning is in the audit log: the write end is
    /// closed when the sandbox execs the command (or exits).
    pub fn finish(self) {
        if self.thread.join().is_err() {
            tracing::error!("the warnings reader panicked");
        }
    }
}

fn collect(pipe: File, log: &AuditLog) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "reading the sandbox's warnings");
                return;
            }
        }
        if line.last() != Some(&b'\n') {
            // Longer than a warning can be: keep what was read, drop the
            // rest of the line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
        }
        let message = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
        let entry = AuditEntry::Notice { component: "run".into(), level: "warn".into(), message };
        if let Err(error) = log.append(entry) {
            tracing::error!(%error, "could not audit a warning of the sandbox");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_that_is_not_a_pipes_write_end_is_refused() {
        let file = tempfile::tempfile().expect("tempfile");
        let error = Warnings::to_pipe(file.as_raw_fd()).expect_err("a file");
        assert!(error.to_string().contains("not the write end of a pipe"), "{error:#}");
        let (read, _write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let error = Warnings::to_pipe(read.as_raw_fd()).expect_err("a read end");
        assert!(error.to_string().contains("not the write end of a pipe"), "{error:#}");
        assert!(Warnings::to_pipe(2).is_err());
        // Still open: a refused descriptor is not closed.
        assert!(fcntl(&file, FcntlArg::F_GETFD).is_ok());
    }

    #[test]
    fn a_warning_that_cannot_be_kept_stops_the_command() {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let warnings = Warnings::to_pipe(write.as_raw_fd()).expect("a pipe's write end");
        std::mem::forget(write);
        warnings.warn("kept");
        assert!(warnings.kept().is_ok());
        drop(read);
        warnings.warn("lost");
        let error = warnings.kept().expect_err("the reader is gone");
        assert!(error.to_string().contains("not started"), "{error:#}");
    }
}
