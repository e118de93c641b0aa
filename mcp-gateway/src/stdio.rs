//! The stdio transport: `bridle mcp wrap -- CMD ARGS…`.
//!
//! Spawns the server in its own process group with piped stdin/stdout and
//! the wrapper's stderr, and runs four loops: client lines → gateway,
//! server lines → gateway, and one writer per peer. SIGINT, SIGTERM and
//! SIGHUP are forwarded to the server's process group. When the server's
//! stdout ends (or it exits and its stdout stays quiet for
//! [`DRAIN_AFTER_EXIT`]), every request still in flight is answered with a
//! JSON-RPC error and the server's exit status is returned.

use std::io;
use std::os::fd::AsFd as _;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdout, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::GatewayError;
use crate::config::GatewayConfig;
use crate::enforce::Enforcer;
use crate::framing::LineReader;
use crate::gateway::{Gateway, Out, ToServer};
use crate::tools::ToolBook;

/// How long the server's stdout may stay open after the server exited (a
/// child of it may hold it) before the wrapper stops reading.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Messages queued per direction before the reader waits (backpressure).
const QUEUE: usize = 256;

/// Runs `command` as the MCP server behind the gateway, relaying this
/// process's stdin/stdout, until the server exits; returns its status.
pub async fn wrap(
    mut config: GatewayConfig,
    enforcer: Enforcer,
    tools: ToolBook,
    command: &[String],
) -> Result<ExitStatus, GatewayError> {
    let (program, args) = command.split_first().ok_or(GatewayError::NoCommand)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own group: signals reach it once, from us, with its children.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| GatewayError::Spawn { command: command.join(" "), source })?;
    let spawn_error = |what: &str| GatewayError::Spawn {
        command: command.join(" "),
        source: io::Error::other(format!("no {what} pipe")),
    };
    let server_in = child.stdin.take().ok_or_else(|| spawn_error("stdin"))?;
    let server_out = child.stdout.take().ok_or_else(|| spawn_error("stdout"))?;
    let signals = forward_signals(child.id())?;
    config.server_pid = child.id();
    let max = config.max_message_bytes;
    let (to_client, client_queue) = mpsc::channel(QUEUE);
    let (to_server, server_queue) = mpsc::channel(QUEUE);
    let gateway = Gateway::new(config, enforcer, tools, to_client, to_server);
    let client_writer = tokio::spawn(write_client(client_output(), client_queue));
    let server_writer = tokio::spawn(write_server(server_in, server_queue));
    let client_reader = tokio::spawn(read_client(Arc::clone(&gateway), max));
    let server_reader = tokio::spawn(read_server(Arc::clone(&gateway), server_out, max));

    let status = wait_for_server(&mut child, server_reader).await?;
    gateway.server_closed(&describe(status)).await;
    gateway.close_client().await;
    signals.abort();
    client_reader.abort();
    server_writer.abort();
    if let Ok(Err(error)) = client_writer.await {
        tracing::debug!(%error, "the MCP client stopped reading");
    }
    Ok(status)
}

/// The server's exit status, once its output is fully relayed.
async fn wait_for_server(child: &mut Child, mut reader: JoinHandle<()>) -> Result<ExitStatus, GatewayError> {
    tokio::select! {
        _ = &mut reader => child.wait().await.map_err(|source| GatewayError::Wait { source }),
        status = child.wait() => {
            let status = status.map_err(|source| GatewayError::Wait { source })?;
            if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reader).await.is_err() {
                reader.abort();
            }
            Ok(status)
        }
    }
}

async fn read_client(gateway: Arc<Gateway>, max: usize) {
    let mut lines = LineReader::new(client_input(), max);
    loop {
        match lines.next().await {
            Ok(Some(line)) => {
                gateway.from_client(line).await;
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot read from the MCP client");
                break;
            }
        }
    }
    gateway.client_closed();
}

async fn read_server(gateway: Arc<Gateway>, output: ChildStdout, max: usize) {
    let mut lines = LineReader::new(output, max);
    loop {
        match lines.next().await {
            Ok(Some(line)) => gateway.from_server(line).await,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot read from the MCP server");
                break;
            }
        }
    }
}

/// Our stdin. A pipe (what MCP clients give) is read through epoll like the
/// server's pipes; anything else (a terminal, a file) through tokio's
/// blocking pool, which costs a thread hand-off per read.
fn client_input() -> Box<dyn AsyncRead + Unpin + Send> {
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(fd)));
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// Our stdout, as [`client_input`] has stdin.
fn client_output() -> Box<dyn AsyncWrite + Unpin + Send> {
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(fd)));
    match pipe {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}

/// Writes each message and a newline; flushes whenever the queue is empty.
/// stdio has one exchange, so answers and other messages are alike here.
async fn write_client<W: AsyncWrite + Unpin>(mut out: W, mut queue: mpsc::Receiver<Out>) -> io::Result<()> {
    while let Some(item) = queue.recv().await {
        match item {
            Out::Line(line) | Out::Answer(line) => {
                out.write_all(&line).await?;
                out.write_all(b"\n").await?;
            }
            Out::Abandoned => {}
            Out::Close => break,
        }
        if queue.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.shutdown().await
}

/// The server's stdin: each message and a newline, until the gateway
/// closes the queue (the client went away).
async fn write_server<W: AsyncWrite + Unpin>(mut out: W, mut queue: mpsc::Receiver<ToServer>) -> io::Result<()> {
    while let Some(message) = queue.recv().await {
        out.write_all(&message.bytes).await?;
        out.write_all(b"\n").await?;
        if queue.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.shutdown().await
}

fn forward_signals(pid: Option<u32>) -> Result<JoinHandle<()>, GatewayError> {
    let listen = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| GatewayError::Signal { signal: name, source })
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = listen(SignalKind::hangup(), "SIGHUP")?;
    let group = pid.and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
    Ok(tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                _ = interrupt.recv() => Signal::SIGINT,
                _ = terminate.recv() => Signal::SIGTERM,
                _ = hangup.recv() => Signal::SIGHUP,
            };
            if let Some(group) = group
                && let Err(error) = killpg(group, received)
            {
                tracing::warn!(%error, signal = %received, "cannot forward a signal to the MCP server");
            }
        }
    }))
}

/// "exited with status 3", "was killed by SIGKILL".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.as_str().to_string());
            format!("was killed by {name}")
        }
        (None, None) => "exited".to_string(),
    }
}

/// The exit code a wrapper should end with: the server's own, or 128 + the
/// signal that killed it (as a shell reports it).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code).unwrap_or(1)
}
