//! Stage 3b: ask the configured upstreams, over UDP with a TCP retry when
//! the answer is truncated.
//!
//! Each query gets a fresh message id and a fresh socket (so a fresh source
//! port from the kernel), and an answer is accepted only from the server
//! asked, with the same id and the same question: that is what makes a
//! spoofed answer have to guess 32 bits instead of 16.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout, timeout_at};

use super::DnsError;

/// The upstream servers, tried in order until one answers.
#[derive(Clone, Debug)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Upstreams {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Upstreams { servers, timeout }
    }

    /// The first usable answer to `question` from any upstream.
    pub async fn query(&self, question: &Query) -> Result<Message, DnsError> {
        let mut failures = Vec::new();
        for &server in &self.servers {
            match self.query_one(server, question).await {
                Ok(answer) => return Ok(answer),
                Err(error) => failures.push(format!("{server}: {error}")),
            }
        }
        Err(DnsError::Upstream(if failures.is_empty() { "no upstreams".into() } else { failures.join("; ") }))
    }

    async fn query_one(&self, server: SocketAddr, question: &Query) -> Result<Message, DnsError> {
        let id = random_id();
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(question.clone());
        let bytes = message.to_vec().map_err(|e| DnsError::Wire(e.to_string()))?;
        let answer = self.udp(server, &bytes, id, question).await?;
        if answer.metadata.truncation {
            return self.tcp(server, &bytes, id, question).await;
        }
        Ok(answer)
    }

    async fn udp(&self, server: SocketAddr, bytes: &[u8], id: u16, question: &Query) -> Result<Message, DnsError> {
        let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let io = |e: std::io::Error| DnsError::Upstream(e.to_string());
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        // A connected socket makes the kernel drop datagrams from anyone
        // but `server`.
        socket.connect(server).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| DnsError::Upstream("timed out".into()))?
                .map_err(io)?;
            // A stray or forged datagram is ignored; the real one may follow.
            if let Some(answer) = matching(&buf[..n], id, question) {
                return Ok(answer);
            }
        }
    }

    async fn tcp(&self, server: SocketAddr, bytes: &[u8], id: u16, question: &Query) -> Result<Message, DnsError> {
        let exchange = async {
            let mut stream = TcpStream::connect(server).await?;
            let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(bytes).await?;
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::Upstream("timed out over TCP".into()))?
            .map_err(|e| DnsError::Upstream(e.to_string()))?;
        matching(&buf, id, question).ok_or_else(|| DnsError::Upstream("TCP answer does not match the query".into()))
    }
}

/// `bytes` parsed, if it is the response to our query `id` for `question`.
fn matching(bytes: &[u8], id: u16, question: &Query) -> Option<Message> {
    let answer = Message::from_vec(bytes).ok()?;
    let same_question = answer.queries.len() == 1 && answer.queries[0] == *question;
    (answer.metadata.id == id && answer.metadata.message_type == MessageType::Response && same_question)
        .then_some(answer)
}

/// A message id nobody can predict: std's `RandomState` is seeded from the
/// OS random source, which saves a dependency for 16 bits.
fn random_id() -> u16 {
    (RandomState::new().hash_one(Instant::now()) & 0xffff) as u16
}
