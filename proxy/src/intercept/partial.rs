//! Whether the agent is partway through a request: it sent bytes since
//! Bridle last wrote to it. hyper's header timeout fires both on a trickled
//! head (slowloris, worth an audit notice) and on a keep-alive connection
//! that merely sat idle in a client's pool (routine, not worth one); this
//! tells the two apart.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, noting reads since the last write in a shared flag.
#[derive(Debug)]
pub(super) struct Watched<S> {
    inner: S,
    partial: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    /// The stream and the flag: `true` while the agent has sent bytes that
    /// no write answered yet.
    pub fn new(inner: S) -> (Self, Arc<AtomicBool>) {
        let partial = Arc::new(AtomicBool::new(false));
        (Watched { inner, partial: Arc::clone(&partial) }, partial)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.partial.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.partial.store(false, Ordering::Relaxed);
        }
        polled
    }

    // Forwarded so hyper keeps writing vectored rather than flattening
    // every body chunk into one buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.partial.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn reads_mark_the_agent_partway_and_writes_answer_it() {
        let (mut agent, near) = tokio::io::duplex(64);
        let (mut watched, partial) = Watched::new(near);
        assert!(!partial.load(Ordering::Relaxed), "idle until the agent sends");
        agent.write_all(b"GET / HT").await.expect("write");
        let mut buf = [0u8; 16];
        let _ = watched.read(&mut buf).await.expect("read");
        assert!(partial.load(Ordering::Relaxed));
        watched.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("answer");
        assert!(!partial.load(Ordering::Relaxed));
    }
}
