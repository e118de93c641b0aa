//! The relay on its own: `forward::splice` between two loopback socket
//! pairs, through pipes and through the userspace fallback, proving the
//! replayed first bytes, half-close, byte counts, byte-exact bulk transfer
//! and the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridle_proxy::Error;
use bridle_proxy::forward::{PipePool, Relayed, splice};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{PROMPT, read_to_end};

/// Bytes each way in the bulk test.
const BULK: usize = 64 << 20;

/// A relay between `client` (the agent's end) and `upstream` (the
/// destination's end), the way the proxy runs one.
struct Relay {
    client: TcpStream,
    upstream: TcpStream,
    task: JoinHandle<Result<Relayed, Error>>,
}

/// Two connected loopback sockets.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (dialed.expect("connect"), accepted.expect("accept").0)
}

async fn relay(pipes: &Arc<PipePool>, first: &'static [u8], idle: Duration) -> Relay {
    let (client, proxy_client) = socket_pair().await;
    let (proxy_upstream, upstream) = socket_pair().await;
    let dst: SocketAddr = upstream.local_addr().expect("addr");
    let pipes = Arc::clone(pipes);
    let task = tokio::spawn(async move { splice(proxy_client, proxy_upstream, dst, first, idle, &pipes).await });
    Relay { client, upstream, task }
}

async fn finished(task: JoinHandle<Result<Relayed, Error>>) -> Result<Relayed, Error> {
    tokio::time::timeout(PROMPT, task).await.expect("relay ends in time").expect("relay task")
}

/// `len` deterministic bytes that differ per direction (`seed`) and per
/// MiB (each MiB starts with its index), so a dropped, repeated or
/// reordered chunk shows up in a byte compare. Built from one pseudo-random
/// MiB so a debug build generates 64 MiB in milliseconds.
fn pattern(seed: u64, len: usize) -> Arc<Vec<u8>> {
    const BLOCK: usize = 1 << 20;
    let mut state = seed | 1;
    let mut block = Vec::with_capacity(BLOCK);
    while block.len() < BLOCK {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        block.extend_from_slice(&state.to_le_bytes());
    }
    let mut out = Vec::with_capacity(len);
    for index in 0u64.. {
        if out.len() >= len {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&block);
        out[start..start + 8].copy_from_slice(&index.to_le_bytes());
    }
    out.truncate(len);
    Arc::new(out)
}

/// Writes `data` in uneven chunks, then half-closes.
async fn send_all(mut writer: tokio::net::tcp::OwnedWriteHalf, data: Arc<Vec<u8>>) {
    for chunk in data.chunks(100_003) {
        writer.write_all(chunk).await.expect("write");
    }
    writer.shutdown().await.expect("half-close");
}

/// Reads to EOF, comparing every byte with `expected` as it arrives;
/// returns how many bytes came.
async fn receive_exact(mut reader: tokio::net::tcp::OwnedReadHalf, expected: Arc<Vec<u8>>) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0;
    loop {
        let n = reader.read(&mut buf).await.expect("read");
        if n == 0 {
            return at;
        }
        let want = expected.get(at..at + n).expect("no more bytes than were sent");
        assert!(buf[..n] == *want, "bytes {at}..{} differ from what was sent", at + n);
        at += n;
    }
}

async fn half_close_and_counts(pipes: Arc<PipePool>) {
    let mut r = relay(&pipes, b"hello ", Duration::from_secs(30)).await;
    r.client.write_all(b"from the agent").await.expect("write");
    r.client.shutdown().await.expect("client half-close");
    // The upstream sees the replayed first bytes, then the rest, then EOF.
    assert_eq!(read_to_end(&mut r.upstream).await, b"hello from the agent");
    // The other direction still flows after the client's half-close.
    r.upstream.write_all(b"answer after EOF").await.expect("answer");
    r.upstream.shutdown().await.expect("upstream half-close");
    assert_eq!(read_to_end(&mut r.client).await, b"answer after EOF");
    let relayed = finished(r.task).await.expect("relay succeeds");
    assert_eq!(relayed, Relayed { to_upstream: 20, to_client: 16 });
}

#[tokio::test]
async fn spliced_half_close_keeps_the_other_direction_and_counts_bytes() {
    let pipes = Arc::new(PipePool::new());
    half_close_and_counts(Arc::clone(&pipes)).await;
    // Every pipe came back to the pool when the relay ended.
    assert!(pipes.open_pipes() >= 1, "the relay used pipes");
    assert_eq!(pipes.idle_pipes(), pipes.open_pipes(), "pipes returned to the pool");
}

#[tokio::test]
async fn fallback_copy_has_the_same_half_close_and_counts() {
    half_close_and_counts(Arc::new(PipePool::without_pipes())).await;
}

async fn bulk_both_ways_arrives_byte_exact(pipes: Arc<PipePool>) {
    let r = relay(&pipes, b"", Duration::from_secs(30)).await;
    let up_data = pattern(0x5eed_0001, BULK);
    let down_data = pattern(0x5eed_0002, BULK);
    let (client_read, client_write) = r.client.into_split();
    let (upstream_read, upstream_write) = r.upstream.into_split();
    // Both directions at once: a relay that let one direction's
    // backpressure stall the other would deadlock here.
    let moved = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            send_all(client_write, Arc::clone(&up_data)),
            send_all(upstream_write, Arc::clone(&down_data)),
            receive_exact(upstream_read, up_data),
            receive_exact(client_read, down_data),
        )
    })
    .await
    .expect("64 MiB each way within a minute");
    let ((), (), at_upstream, at_client) = moved;
    assert_eq!(at_upstream, BULK, "client -> upstream: every byte, in order");
    assert_eq!(at_client, BULK, "upstream -> client: every byte, in order");
    let relayed = finished(r.task).await.expect("relay succeeds");
    assert_eq!(relayed, Relayed { to_upstream: BULK as u64, to_client: BULK as u64 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spliced_64_mib_each_way_arrives_byte_exact() {
    let pipes = Arc::new(PipePool::new());
    bulk_both_ways_arrives_byte_exact(Arc::clone(&pipes)).await;
    // It went through pipes (not the fallback), and they all came back.
    assert!(pipes.open_pipes() >= 1, "the relay used pipes");
    assert_eq!(pipes.idle_pipes(), pipes.open_pipes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_64_mib_each_way_arrives_byte_exact() {
    bulk_both_ways_arrives_byte_exact(Arc::new(PipePool::without_pipes())).await;
}

#[tokio::test]
async fn idle_connections_hold_no_pipe() {
    let pipes = Arc::new(PipePool::new());
    let mut r = relay(&pipes, b"", Duration::from_secs(30)).await;
    r.client.write_all(b"ping").await.expect("write");
    let mut got = [0u8; 4];
    r.upstream.read_exact(&mut got).await.expect("read");
    r.upstream.write_all(b"pong").await.expect("write");
    r.client.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"pong");
    // Both directions now wait for bytes: neither keeps a pipe meanwhile.
    let deadline = Instant::now() + PROMPT;
    while pipes.idle_pipes() < pipes.open_pipes() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(pipes.open_pipes() >= 1, "the relay used pipes");
    assert_eq!(pipes.idle_pipes(), pipes.open_pipes(), "an idle relay gives its pipes back");
    // A second exchange reuses them rather than opening more.
    let open = pipes.open_pipes();
    r.client.write_all(b"ping").await.expect("write");
    r.upstream.read_exact(&mut got).await.expect("read");
    assert!(pipes.open_pipes() <= open.max(2), "pipes are reused");
    r.task.abort();
}

#[tokio::test]
async fn idle_timeout_closes_a_silent_relay_but_not_a_trickling_one() {
    let idle = Duration::from_millis(300);
    for pipes in [PipePool::new(), PipePool::without_pipes()] {
        let pipes = Arc::new(pipes);
        let mut r = relay(&pipes, b"", idle).await;
        // A byte every 100 ms keeps it open well past one idle period.
        let start = Instant::now();
        for _ in 0..8 {
            r.client.write_all(b".").await.expect("trickle");
            let mut got = [0u8; 1];
            r.upstream.read_exact(&mut got).await.expect("trickled byte");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!r.task.is_finished(), "a relay with traffic is not idle");
        // Then silence: closed after about one idle period.
        let ended = finished(r.task).await;
        assert!(matches!(ended, Err(Error::Idle { .. })), "{ended:?}");
        let elapsed = start.elapsed();
        // The last byte went at ~700 ms: the relay lived one idle period past it.
        assert!(elapsed >= Duration::from_millis(700) + idle, "{elapsed:?}");
        // Both sockets were closed with the relay.
        assert_eq!(read_to_end(&mut r.client).await, b"");
        assert_eq!(read_to_end(&mut r.upstream).await, b"");
    }
}

#[tokio::test]
async fn a_reset_upstream_ends_the_relay_with_a_relay_error() {
    for pipes in [PipePool::new(), PipePool::without_pipes()] {
        let pipes = Arc::new(pipes);
        let Relay { mut client, upstream, task } = relay(&pipes, b"", Duration::from_secs(30)).await;
        upstream.set_zero_linger().expect("SO_LINGER 0");
        drop(upstream);
        // Writing on towards the reset peer fails (EPIPE/ECONNRESET, not a
        // SIGPIPE that would kill the proxy); so may our writes, once the
        // relay closed the client side.
        for _ in 0..64 {
            if task.is_finished() || client.write_all(&[7u8; 64 * 1024]).await.is_err() {
                break;
            }
        }
        let ended = finished(task).await;
        assert!(matches!(ended, Err(Error::Relay { .. })), "{ended:?}");
    }
}
