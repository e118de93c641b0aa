//! The upstream client's connections: kept and reused while the server
//! keeps them open, never reused once it closed them, driven only by
//! whoever waits on them (no task of their own).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::super::upstream::Upstream;

/// A server that answers every request on a connection with `ok <n>`
/// (`n` counting its connections), keeps the connection open for `keep`,
/// then closes it.
async fn server(keep: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let body = format!("ok {n}");
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let mut buf = vec![0u8; 4096];
                let serve = async {
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            // Each test request fits one read.
                            Ok(_) => {
                                if stream.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                let _ = tokio::time::timeout(keep, serve).await;
            });
        }
    });
    (addr, accepted)
}

async fn get(upstream: &Upstream) -> String {
    let response = upstream.send(Method::POST, None, HeaderMap::new(), Bytes::from_static(b"{}")).await.expect("sent");
    let body = response.into_body().collect().await.expect("read").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn client(addr: SocketAddr) -> Upstream {
    Upstream::new("pool", &format!("http://{addr}/mcp"), &BTreeMap::new(), None, Duration::from_secs(5)).expect("url")
}

#[tokio::test]
async fn calls_in_a_row_share_one_connection() {
    let (addr, accepted) = server(Duration::from_secs(30)).await;
    let upstream = client(addr);
    for _ in 0..3 {
        assert_eq!(get(&upstream).await, "ok 1");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_reused() {
    let (addr, accepted) = server(Duration::from_millis(100)).await;
    let upstream = client(addr);
    assert_eq!(get(&upstream).await, "ok 1");
    // Nothing polls the idle connection while the server closes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&upstream).await, "ok 2", "the request goes out on a new connection");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_dropped_unread_takes_its_connection_with_it() {
    let (addr, accepted) = server(Duration::from_secs(30)).await;
    let upstream = client(addr);
    let response = upstream.send(Method::POST, None, HeaderMap::new(), Bytes::from_static(b"{}")).await.expect("sent");
    drop(response);
    assert_eq!(get(&upstream).await, "ok 2");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
