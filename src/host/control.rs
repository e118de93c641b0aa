//! The control socket: how `bridle approvals`, `bridle approve` and
//! `bridle deny` reach a running Bridle.
//!
//! One Unix socket per session, `/run/bridle/<session>.sock` (`run-<pid>`
//! for `bridle run`, `up` for the appliance). Only root may use it, since a
//! guarded agent must never approve its own requests. Three locks: the
//! directory is created 0700, the socket is 0600, and each peer's uid
//! (SO_PEERCRED) must be 0 or the socket's owner; a peer that fails the
//! last check gets one `forbidden` response and is hung up on.
//!
//! Protocol: one JSON request per line, one JSON response per line.
//!
//! ```text
//! {"op":"list"}                          → {"ok":true,"pending":[{"id":"k3x9…","since":"…","session":"run-42",…}]}
//! {"op":"approve","id":"k3x9…","by":"alice"} → {"ok":true}
//! {"op":"deny","id":"k3x9…"}             → {"ok":true}
//! {"op":"ping"}                          → {"ok":true}   (served only once the session is up)
//! anything that fails                    → {"ok":false,"code":"unknown-id"|"bad-request"|"forbidden","error":"…"}
//! ```
//!
//! `by` is who answered, for the audit log (default `uid <peer uid>`).

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bridle_engine::approvals::{ApprovalError, Approvals, PendingView};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinSet;

/// Where every session's control socket lives.
pub(crate) const SOCKET_DIR: &str = "/run/bridle";

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// A struct variant, so `deny_unknown_fields` applies to it too.
    List {},
    /// Readiness: the socket is served only after the session's programs
    /// are attached and its self-checks passed.
    Ping {},
    Approve {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Deny {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

/// One response line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a request failed, for the client to turn into an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ErrorCode {
    UnknownId,
    BadRequest,
    Forbidden,
}

impl Response {
    fn failed(code: ErrorCode, error: String) -> Response {
        Response { ok: false, code: Some(code), error: Some(error), ..Response::default() }
    }
}

/// Serves `socket` until `stop` turns true (a session's or the
/// appliance's lifetime).
pub(crate) fn spawn(
    socket: ControlSocket,
    approvals: Arc<Approvals>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = socket.serve(approvals, stopped).await {
            tracing::error!(error = %format!("{error:#}"), "control socket failed");
        }
    })
}

/// The control socket of `session`: `/run/bridle/<session>.sock`.
pub(crate) fn socket_path(session: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{session}.sock"))
}

/// `dir`, made with `mode` if missing; refused unless this user owns it,
/// and set to `mode` if anyone else may write to it.
fn owned_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        bail!(
            "{} must be a directory owned by uid {me}, not uid {}: another owner could plant a socket there",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("narrowing {} to mode {mode:o}", dir.display()))?;
    }
    Ok(())
}

/// A bound control socket, not yet serving (so a session can fail before
/// it starts anything else).
#[derive(Debug)]
pub(crate) struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

/// Creates the socket at `path`, mode 0600, in a directory only this user
/// (root) may write: created 0700, or one found writable by others (a
/// container runtime's tmpfs is 1777) narrowed to 0700. A directory of
/// another owner is refused: whoever owns it could put a socket of theirs
/// where `bridle approve` looks. A stale socket left by a dead Bridle is
/// replaced; a live one, or anything that is not a socket, is an error.
pub(crate) fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
    let listener = bind_file(path, 0o700, 0o600, "the control socket")?;
    listener.set_nonblocking(true).context("making the control socket non-blocking")?;
    Ok(ControlSocket { listener, path: path.to_path_buf() })
}

/// Binds `what`, a socket file at `path`, with `mode`, in a directory this
/// user owns with `dir_mode` ([`owned_dir`]), replacing a stale socket
/// ([`remove_stale`]). Until the chmod the socket has the umask's mode; the
/// directory and the peer checks cover that instant.
pub(crate) fn bind_file(
    path: &Path,
    dir_mode: u32,
    mode: u32,
    what: &str,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        owned_dir(dir, dir_mode)?;
    }
    remove_stale(path)?;
    let listener =
        std::os::unix::net::UnixListener::bind(path).with_context(|| format!("binding {what} {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting {what} {} to mode {mode:o}", path.display()))?;
    Ok(listener)
}

fn remove_stale(path: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        bail!("{} exists and is not a socket; not replacing it", path.display());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another bridle already serves {} (is this session running twice?)", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))
}

/// Removes the sockets in `dir` that `candidate` picks and nothing serves
/// any more (their Bridle was killed before it could remove them);
/// returns how many.
pub(crate) fn sweep_stale(dir: &str, candidate: impl Fn(&Path) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sock") && candidate(path))
        .filter(|path| remove_stale(path).is_ok() && !path.exists())
        .count()
}

impl ControlSocket {
    /// Serves until `stop` completes, then closes every connection and
    /// removes the socket file.
    pub(crate) async fn serve(self, approvals: Arc<Approvals>, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ControlSocket { listener, path } = self;
        let listener = tokio::net::UnixListener::from_std(listener).context("registering the control socket")?;
        let owner = nix::unistd::geteuid().as_raw();
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(connection(stream, Arc::clone(&approvals), owner));
                    }
                    Err(error) => {
                        // Out of descriptors, most likely: back off instead of spinning.
                        tracing::warn!(%error, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "could not remove the control socket");
        }
        Ok(())
    }
}

/// Answers one client's request lines until it hangs up.
async fn connection(stream: UnixStream, approvals: Arc<Approvals>, owner: u32) {
    let uid = stream.peer_cred().ok().map(|cred| cred.uid());
    let (read, mut write) = stream.into_split();
    let Some(uid) = uid.filter(|&uid| uid == 0 || uid == owner) else {
        let who = uid.map_or_else(|| "an unknown peer".to_string(), |uid| format!("uid {uid}"));
        let refusal = Response::failed(ErrorCode::Forbidden, format!("{who} may not answer approvals: root only"));
        let _ = write_line(&mut write, &refusal).await;
        return;
    };
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() >= MAX_LINE {
            let error = format!("request longer than {MAX_LINE} bytes");
            let _ = write_line(&mut write, &Response::failed(ErrorCode::BadRequest, error)).await;
            return;
        }
        if write_line(&mut write, &handle(&approvals, &line, uid)).await.is_err() {
            return;
        }
    }
}

fn handle(approvals: &Approvals, line: &[u8], uid: u32) -> Response {
    let request = match serde_json::from_slice::<Request>(line) {
        Ok(request) => request,
        Err(error) => return Response::failed(ErrorCode::BadRequest, format!("bad request: {error}")),
    };
    let (id, approve, by) = match request {
        Request::List {} => return Response { ok: true, pending: Some(approvals.pending()), ..Response::default() },
        Request::Ping {} => return Response { ok: true, ..Response::default() },
        Request::Approve { id, by } => (id, true, by),
        Request::Deny { id, by } => (id, false, by),
    };
    let by = by.unwrap_or_else(|| format!("uid {uid}"));
    match approvals.resolve(&id, approve, &by) {
        Ok(()) => Response { ok: true, ..Response::default() },
        Err(error @ ApprovalError::Unknown { .. }) => Response::failed(ErrorCode::UnknownId, error.to_string()),
        Err(error) => Response::failed(ErrorCode::BadRequest, error.to_string()),
    }
}

async fn write_line(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

#[cfg(test)]
mod tests;
