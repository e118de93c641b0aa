//! Warnings about what the guard leaves uncovered: a socket the command
//! can still reach, a kernel without Landlock, a part of `/run` left out, a
//! command running as root. Each is kept in the audit log as a `notice`
//! of level `warn` whose message names the session (`session run-N: …`),
//! where whoever reviews the session later looks, and said to the person
//! running Bridle on stderr.
//!
//! Most are found by the sandbox step (`__sandbox-exec`), a process of its
//! own that then becomes the command. It sends them, one line each, over a
//! socket whose other end the session copies into the audit log
//! ([`for_sandbox`]); before the exec it closes its side for writing and
//! waits for the session's word that every line is in the log
//! ([`Warnings::all_kept`]). Without that word the command does not start:
//! a warning is never lost on the way.
//!
//! Never: let the command hold the sandbox's end (it would write what the
//! log keeps as Bridle's), or start the command on a warning not kept.

use std::fmt::Display;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, bail};
use bridle_engine::audit::{AuditEntry, AuditLog};

/// The longest warning kept whole (the longest names eight paths of up to
/// 4 KiB each); a longer line is cut there, and says so.
const MAX_LINE: u64 = 64 << 10;

/// What the session answers once every line is in the audit log.
const ALL_KEPT: u8 = b'k';
/// What it answers when one could not be appended.
const NOT_KEPT: u8 = b'x';

/// Where a process's warnings are kept, besides stderr.
#[derive(Debug)]
pub struct Warnings {
    kept_in: KeptIn,
    /// The first warning that could not be kept.
    lost: Mutex<Option<String>>,
}

#[derive(Debug)]
enum KeptIn {
    /// The audit log, written directly, for session `session`.
    Audit { log: Arc<AuditLog>, session: String },
    /// The sandbox's end of the socket to the session ([`for_sandbox`]).
    Session(UnixStream),
    /// Nowhere: a sandbox step started by hand, without a session.
    Stderr,
}

impl Warnings {
    /// Kept in `log` as session `session`'s.
    pub fn to_audit(log: &Arc<AuditLog>, session: &str) -> Warnings {
        Warnings::new(KeptIn::Audit { log: Arc::clone(log), session: session.to_owned() })
    }

    /// Said on stderr only.
    pub fn said_only() -> Warnings {
        Warnings::new(KeptIn::Stderr)
    }

    /// Kept through the session's socket, inherited as descriptor `fd`
    /// ([`Inherited::pass_to`]); marked close-on-exec here, so the command
    /// never inherits it.
    #[expect(unsafe_code, reason = "checking and taking an inherited descriptor")]
    pub fn to_session(fd: RawFd) -> anyhow::Result<Warnings> {
        if fd <= 2 {
            bail!("--warnings-fd {fd} is one of stdin, stdout and stderr, which are the command's");
        }
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat writes only into `stat`, and takes any number: one
        // that is not an open descriptor fails with EBADF.
        if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
            let error = std::io::Error::last_os_error();
            bail!("--warnings-fd {fd} is not an open descriptor: {error}");
        }
        // SAFETY: fstat succeeded, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            bail!("--warnings-fd {fd} is not the session's socket");
        }
        let mut kind: libc::c_int = 0;
        let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `size` bytes into `kind`, and
        // `fd` is an open socket (fstat said so).
        let asked = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&raw mut kind).cast(), &mut size) };
        if asked != 0 || kind != libc::SOCK_STREAM {
            bail!("--warnings-fd {fd} is not the session's socket");
        }
        // SAFETY: an open stream socket, inherited for this use only (the
        // session passes it as `--warnings-fd`); nothing else in this
        // process holds it.
        let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let flags = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
        nix::fcntl::fcntl(&socket, flags).context("marking the warnings socket close-on-exec")?;
        Ok(Warnings::new(KeptIn::Session(socket)))
    }

    fn new(kept_in: KeptIn) -> Warnings {
        Warnings { kept_in, lost: Mutex::new(None) }
    }

    /// Keeps `message`, then says it on stderr.
    pub fn warn(&self, message: impl Display) {
        let message = message.to_string();
        self.keep(&message);
        // Said even where stderr is gone; it is kept already.
        let _ = writeln!(std::io::stderr(), "bridle: warning: {message}");
    }

    /// Keeps why the command is not started, and waits until it is in the
    /// audit log; gives `error` back, for whoever says it on stderr.
    pub fn not_started(self, error: anyhow::Error) -> anyhow::Error {
        self.keep(&format!("the command was not started: {error:#}"));
        if let Err(lost) = self.all_kept() {
            tracing::error!(error = %format!("{lost:#}"), "why the command was not started is not in the audit log");
        }
        error
    }

    fn keep(&self, message: &str) {
        let kept = match &self.kept_in {
            KeptIn::Stderr => Ok(()),
            KeptIn::Audit { log, session } => log.append(notice(session, message)).map(drop).map_err(|e| e.to_string()),
            KeptIn::Session(socket) => {
                // One line per warning: a newline inside one would split it.
                let line = message.replace('\n', " ") + "\n";
                let mut socket: &UnixStream = socket;
                socket.write_all(line.as_bytes()).map_err(|error| error.to_string())
            }
        };
        if let Err(error) = kept {
            tracing::error!(%error, "could not keep a warning in the audit log");
            self.lost.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
        }
    }

    /// The first warning's failure to be kept, if one was not.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether every warning is in the audit log; the command must not
    /// start otherwise. Through the session's socket, that is its answer
    /// once this side is closed for writing.
    pub fn all_kept(self) -> anyhow::Result<()> {
        if let Some(error) = self.lost.into_inner().unwrap_or_else(PoisonError::into_inner) {
            bail!("a warning could not be kept in the audit log ({error})");
        }
        let KeptIn::Session(mut socket) = self.kept_in else { return Ok(()) };
        socket.shutdown(std::net::Shutdown::Write).context("closing the warnings for writing")?;
        let mut answer = [0u8; 1];
        match socket.read(&mut answer) {
            Ok(1) if answer[0] == ALL_KEPT => Ok(()),
            Ok(1) if answer[0] == NOT_KEPT => {
                bail!("the session could not keep a warning in the audit log; the command is not started")
            }
            Ok(_) => bail!("the session did not confirm its warnings were audited; the command is not started"),
            Err(error) => bail!("waiting for the session's word on its warnings: {error}"),
        }
    }
}

/// A warning's audit record.
fn notice(session: &str, message: &str) -> AuditEntry {
    AuditEntry::Notice {
        component: "run".into(),
        level: "warn".into(),
        message: format!("session {session}: {message}"),
    }
}

/// The session's end of the sandbox's warnings: a socket pair, one end
/// for the sandbox ([`Inherited`]), the other read by a thread that
/// appends each line to the audit log, then answers whether all were.
/// `set_up` runs before that answer, once the sandbox has closed its end:
/// its setup is done, and it waits for the answer to exec the command.
pub fn for_sandbox(
    log: &Arc<AuditLog>,
    session: &str,
    set_up: impl FnOnce() + Send + 'static,
) -> anyhow::Result<(Inherited, Collector)> {
    let (ours, theirs) = UnixStream::pair().context("making the warnings socket")?;
    let log = Arc::clone(log);
    let session = session.to_owned();
    let thread = std::thread::Builder::new()
        .name("bridle-warnings".into())
        .spawn(move || collect(ours, &log, &session, set_up))
        .context("starting the warnings reader")?;
    Ok((Inherited { theirs: OwnedFd::from(theirs) }, Collector { thread }))
}

/// The sandbox's end, until it is passed on.
#[derive(Debug)]
pub struct Inherited {
    theirs: OwnedFd,
}

impl Inherited {
    /// Passes this end to `command` as `--warnings-fd=N`: it stays
    /// close-on-exec here, and the child alone clears that, between its
    /// fork and its exec, so no other process Bridle starts meanwhile holds
    /// it. Drop this once the child exists, or the reader never sees the
    /// end.
    #[expect(unsafe_code, reason = "a pre_exec hook, to make one descriptor inheritable in the child only")]
    pub fn pass_to(&self, command: &mut tokio::process::Command) {
        let fd = self.theirs.as_raw_fd();
        command.arg(format!("--warnings-fd={fd}"));
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; fcntl is one, and nothing is allocated.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
    }
}

/// The thread copying the sandbox's warnings into the audit log.
#[derive(Debug)]
pub struct Collector {
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    /// Waits until every warning is in the audit log: the sandbox closes
    /// its end before it execs the command (or when it exits).
    pub fn finish(self) {
        if self.thread.join().is_err() {
            tracing::error!("the warnings reader panicked");
        }
    }
}

fn collect(socket: UnixStream, log: &AuditLog, session: &str, set_up: impl FnOnce()) {
    let mut reader = BufReader::new(&socket);
    let mut line = Vec::new();
    let mut all_kept = true;
    loop {
        line.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "reading the sandbox's warnings");
                all_kept = false;
                break;
            }
        }
        let mut message = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
        if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
            // Longer than a warning can be: the rest of the line goes.
            let _ = reader.read_until(b'\n', &mut Vec::new());
            message.push_str(" (cut)");
        }
        if let Err(error) = log.append(notice(session, &message)) {
            tracing::error!(%error, "could not audit a warning of the sandbox");
            all_kept = false;
        }
    }
    set_up();
    // The sandbox waits for this (and is gone if it failed early).
    let _ = (&socket).write_all(&[if all_kept { ALL_KEPT } else { NOT_KEPT }]);
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd as _;

    use super::*;

    #[test]
    fn a_descriptor_that_is_not_the_sessions_socket_is_refused() {
        let file = tempfile::tempfile().expect("tempfile");
        let error = Warnings::to_session(file.as_raw_fd()).expect_err("a file");
        assert!(error.to_string().contains("not the session's socket"), "{error:#}");
        let (datagram, _) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let error = Warnings::to_session(datagram.into_raw_fd()).expect_err("a datagram socket");
        assert!(error.to_string().contains("not the session's socket"), "{error:#}");
        assert!(Warnings::to_session(2).is_err());
        let error = Warnings::to_session(999_999).expect_err("not open");
        assert!(error.to_string().contains("not an open descriptor"), "{error:#}");
    }

    #[test]
    fn the_command_starts_only_once_the_session_kept_every_warning() {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(AuditLog::open(log_dir.path().join("audit.jsonl"), Default::default()).expect("log"));
        let (inherited, collector) = for_sandbox(&log, "run-7", || {}).expect("pair");
        let warnings = Warnings::to_session(inherited.theirs.into_raw_fd()).expect("the session's socket");
        warnings.warn("one\nline");
        warnings.all_kept().expect("kept");
        collector.finish();
        log.sync().expect("sync");
        let text = std::fs::read_to_string(log_dir.path().join("audit.jsonl")).expect("read");
        assert!(text.contains(r#""message":"session run-7: one line""#), "{text}");

        // A session gone before its word: the command does not start.
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let warnings = Warnings::to_session(OwnedFd::from(theirs).into_raw_fd()).expect("a socket");
        drop(ours);
        warnings.warn("lost");
        let error = warnings.all_kept().expect_err("no session");
        assert!(error.to_string().contains("could not be kept"), "{error:#}");
    }
}
