//! Larger reads under TLS. rustls asks its transport for at most 4 KiB at a
//! time, so a download through Bridle would cost four `read(2)` calls per
//! 16 KiB record. [`ReadAhead`] serves those small reads from one larger
//! read, and lets reads of a buffer's size go straight through.
//!
//! The buffer exists only while it holds bytes: an idle connection (a
//! thousand held keep-alive connections) keeps none. It is taken only once
//! the socket is readable, and read into without being zeroed: a keep-alive
//! request's first poll of its upstream is nearly always `Pending`, and
//! allocating and zeroing 64 KiB for it cost more than the response it
//! waited for. Drained buffers go back to a small per-thread pool rather
//! than to malloc: a fresh 64 KiB allocation per response also made glibc
//! consolidate its small free chunks each time, which slowed every small
//! allocation after it.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much one read from the socket may bring in.
const READ_AHEAD: usize = 64 * 1024;

/// Idle buffers kept per thread (at most 512 KiB); any more given back are
/// freed.
const POOL_MAX: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of `READ_AHEAD` capacity.
fn take_buffer() -> Vec<u8> {
    POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(READ_AHEAD))
}

/// Returns a buffer taken with [`take_buffer`] for reuse on this thread.
fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() < READ_AHEAD {
        return;
    }
    buf.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

/// A socket with reads batched; writes pass straight through.
#[derive(Debug)]
pub(crate) struct ReadAhead<T> {
    inner: T,
    buf: Vec<u8>,
    pos: usize,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        ReadAhead { inner, buf: Vec::new(), pos: 0 }
    }
}

impl AsyncRead for ReadAhead<TcpStream> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.buf.len() {
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            ready!(this.inner.poll_read_ready(cx))?;
            let mut buf = take_buffer();
            // Through `poll_read`, not `try_read_buf`: a read that leaves
            // the buffer partly empty tells tokio the socket is drained, so
            // the next read waits for epoll instead of making a syscall
            // that fails with EAGAIN (hyper reads once more after every
            // response, to see an idle upstream close). A stale readiness
            // is cleared in there, and the buffer given back with `Pending`.
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut buf) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    this.buf = buf;
                    this.pos = 0;
                }
                // EOF (nothing put in `out`), an error, or nothing yet.
                other => {
                    give_back(buf);
                    return other.map_ok(|_| ());
                }
            }
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.buf.len() {
            give_back(std::mem::take(&mut this.buf));
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected loopback pair: (the writer's end, the reader's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (connected.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_and_nothing_is_lost() {
        let (mut writer, reader) = pair().await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let send = tokio::spawn(async move {
            writer.write_all(&sent).await.expect("write");
        });
        let mut reader = ReadAhead::new(reader);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < data.len() {
            let n = reader.read(&mut chunk).await.expect("read");
            assert!(n > 0, "EOF before the end");
            got.extend_from_slice(&chunk[..n]);
        }
        send.await.expect("writer");
        assert_eq!(got, data);
        assert_eq!(reader.buf.capacity(), 0, "a drained buffer is given back");
    }

    #[tokio::test]
    async fn drained_buffers_are_reused_by_the_next_read_on_the_thread() {
        let (mut writer, reader) = pair().await;
        let mut reader = ReadAhead::new(reader);
        let mut small = [0u8; 16];
        writer.write_all(b"first").await.expect("write");
        let n = reader.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"first");
        let pooled = POOL.with(|pool| pool.borrow().last().map(|buf| buf.as_ptr()));
        assert!(pooled.is_some(), "the drained buffer went to the pool");
        writer.write_all(b"second").await.expect("write");
        reader.read_exact(&mut small[..1]).await.expect("read");
        assert_eq!(Some(reader.buf.as_ptr()), pooled, "the next read took the pooled buffer");
        let n = reader.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"econd");
        for _ in 0..2 * POOL_MAX {
            give_back(Vec::with_capacity(READ_AHEAD));
        }
        assert_eq!(POOL.with(|pool| pool.borrow().len()), POOL_MAX, "the pool stays bounded");
    }

    #[tokio::test]
    async fn a_read_that_waits_holds_no_buffer_and_small_reads_see_eof() {
        let (mut writer, reader) = pair().await;
        let mut reader = ReadAhead::new(reader);
        let mut small = [0u8; 16];
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), reader.read(&mut small)).await;
        assert!(waited.is_err(), "nothing was sent, so the read waits");
        assert_eq!(reader.buf.capacity(), 0, "no buffer while waiting");
        writer.write_all(b"late").await.expect("write");
        drop(writer);
        let n = reader.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"late");
        assert_eq!(reader.read(&mut small).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn eof_and_large_reads_pass_through() {
        let (mut writer, reader) = pair().await;
        writer.write_all(b"hello").await.expect("write");
        drop(writer);
        let mut reader = ReadAhead::new(reader);
        let mut all = vec![0u8; READ_AHEAD];
        let n = reader.read(&mut all).await.expect("read");
        assert_eq!(&all[..n], b"hello");
        assert_eq!(reader.read(&mut all).await.expect("eof"), 0);
    }
}
