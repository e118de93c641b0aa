//! Bad input against TLS interception and per-request HTTP inspection
//! (issue 4, "Bad input"): smuggling shapes, oversized heads, invalid bytes
//! in paths, broken handshakes, TLS on an HTTP port, upstream certificates
//! that do not verify, keep-alive and h2 streams decided one by one, and a
//! slowloris request head.
//!
//! Every case asserts three things: what the agent got (a status, or a
//! closed connection), what the audit log says about it, and what the
//! upstream saw (its recorded requests prove nothing smuggled got through).
//! Then a good request on a new connection proves the proxy still serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridle_proxy::intercept::Inspector;
use http::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::agent::{self, get, send_h1, statuses, until_closed};
use crate::support::*;
use crate::upstreams::{self, PublicCa, Seen};

/// allowed.test is permitted; its admin pages are not, per request.
const POLICY: &str = r#"
@id("allowed") @reason("allowed.test is approved")
permit (principal, action, resource in Net::Domain::"allowed.test");

@id("no-admin") @reason("admin pages are off limits")
forbid (principal, action == Http::Action::"Request", resource)
when { context.path like "/admin*" };
"#;

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2"];

/// A proxy that intercepts, an HTTPS upstream for allowed.test (certified
/// by the test's public CA) and a plain HTTP upstream.
struct Rig {
    h: Harness,
    ca: PublicCa,
    tls: SocketAddr,
    tls_seen: Arc<Seen>,
    plain: SocketAddr,
    plain_seen: Arc<Seen>,
}

async fn rig(tune: impl FnOnce(&mut Inspector)) -> Rig {
    rig_on(POLICY, tune).await
}

async fn rig_on(policy: &str, tune: impl FnOnce(&mut Inspector)) -> Rig {
    let ca = PublicCa::new();
    let h = Harness::start_inspecting(policy, ca.der.clone(), tune).await;
    let (tls, tls_seen) = upstreams::https(loopback(), ca.leaf(&["allowed.test"])).await;
    let (plain, plain_seen) = upstreams::http().await;
    // As Bridle's resolver would have answered it: a plain request's Host
    // must be a name of the address it was sent to.
    h.origins.insert_name(plain.ip(), "allowed.test");
    Rig { h, ca, tls, tls_seen, plain, plain_seen }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

impl Rig {
    /// New connections, TLS and plain, still get a good request through.
    async fn still_serving(&self) {
        let mut sender = agent::h1(agent::tls(&self.h, self.tls, "allowed.test", H1).await).await;
        let answer = send_h1(&mut sender, get("/still")).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok /still HTTP/1.1"));
        let mut sender = agent::h1(self.h.connect_to(self.plain).await).await;
        let answer = send_h1(&mut sender, get("/still")).await;
        assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok /still HTTP/1.1"));
    }

    /// Writes `raw` on a new TLS connection and reads until it closes.
    async fn raw_tls(&self, raw: &[u8]) -> Vec<u8> {
        let mut agent = agent::tls(&self.h, self.tls, "allowed.test", H1).await;
        agent.write_all(raw).await.expect("write");
        // rustls may still hold the last records of a large write.
        agent.flush().await.expect("flush");
        until_closed(&mut agent).await
    }

    /// Writes `raw` on a new plain connection and reads until it closes.
    async fn raw_plain(&self, raw: &[u8]) -> Vec<u8> {
        let mut agent = self.h.connect_to(self.plain).await;
        agent.write_all(raw).await.expect("write");
        until_closed(&mut agent).await
    }

    /// The `http.request` decisions so far.
    fn requests(&self) -> Vec<Value> {
        let records = self.h.records().into_iter();
        records.filter(|r| r["type"] == "decision" && r["event"]["kind"] == "http.request").collect()
    }

    /// The proxy's notices so far.
    fn notices(&self) -> Vec<String> {
        let records = self.h.records().into_iter().filter(|r| r["type"] == "notice");
        records.map(|r| r["message"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

/// `(path, effect)` of each request decision.
fn decided(requests: &[Value]) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    requests.iter().map(|r| (text(&r["event"]["detail"]["path"]), text(&r["decision"]["effect"]))).collect()
}

#[tokio::test]
async fn content_length_with_chunked_is_framed_by_chunked_and_a_smuggled_request_is_decided_alone() {
    let rig = rig(|_| {}).await;
    // TE.CL: a front end trusting Content-Length would read the 0-chunk
    // and the GET as the POST's body. hyper frames by chunked (RFC 9112
    // §6.3), drops Content-Length, and (since both came) answers the POST
    // with `connection: close` and reads nothing after it: the pipelined
    // GET is neither decided nor forwarded.
    let te_cl = b"POST /upload HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 60\r\n\
        Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
        GET /admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    // CL.TE: a back end trusting Content-Length: 0 would read the chunk as
    // a second request; the upstream gets one POST whose body is that
    // text, re-framed by hyper so it cannot be split.
    let cl_te = b"POST /upload HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        2b\r\nGET /admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n\r\n0\r\n\r\n";
    for (tls, seen) in [(true, &rig.tls_seen), (false, &rig.plain_seen)] {
        let before = rig.requests().len();
        for raw in [&te_cl[..], cl_te] {
            let answer = if tls { rig.raw_tls(raw).await } else { rig.raw_plain(raw).await };
            assert_eq!(statuses(&answer), [200], "tls={tls}: {}", String::from_utf8_lossy(&answer));
            assert!(String::from_utf8_lossy(&answer).contains("connection: close\r\n"));
        }
        assert_eq!(seen.requests(), ["POST /upload 0 allowed.test", "POST /upload 43 allowed.test"], "tls={tls}");
        let decisions = decided(&rig.requests()[before..]);
        let expected = [("/upload", "allow"), ("/upload", "allow")];
        assert_eq!(decisions, expected.map(|(p, e)| (p.to_owned(), e.to_owned())), "tls={tls}");
    }
    rig.still_serving().await;
}

#[tokio::test]
async fn framing_hyper_refuses_is_a_400_audited_and_nothing_is_forwarded() {
    let rig = rig(|_| {}).await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "two content lengths",
            b"POST /a HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        ),
        (
            "chunked not last",
            b"POST /a HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked in HTTP/1.0",
            b"POST /a HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        ("obs-fold", b"GET /a HTTP/1.1\r\nHost: allowed.test\r\nX-Folded: one\r\n two\r\n\r\n"),
    ];
    for (what, raw) in cases {
        let notices = rig.notices().len();
        let answer = rig.raw_tls(raw).await;
        assert_eq!(statuses(&answer), [400], "{what}: {}", String::from_utf8_lossy(&answer));
        let new = rig.notices()[notices..].to_vec();
        assert!(new.iter().any(|n| n.contains("rejected")), "{what} is audited: {new:?}");
    }
    assert!(rig.tls_seen.requests().is_empty(), "{:?}", rig.tls_seen.requests());
    assert!(rig.requests().is_empty(), "nothing reached policy as a request");
    rig.still_serving().await;
}

#[tokio::test]
async fn plain_http_framing_is_refused_by_hyper_or_by_detection_never_forwarded() {
    let rig = rig(|_| {}).await;
    // Detection parses only the first head's Host; hyper parses the rest.
    let two_lengths = b"POST /a HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello";
    assert_eq!(statuses(&rig.raw_plain(two_lengths).await), [400]);
    assert!(rig.notices().iter().any(|n| n.contains("rejected")), "{:?}", rig.notices());
    // Detection refuses a folded line, a space before a colon and bare LF
    // heads (it never sees CRLF CRLF) before hyper does: the connection is
    // decided on its address (malformed HTTP names nothing; the resolver's
    // name for the address does) and refused as malformed.
    let refused: [&[u8]; 3] = [
        b"GET /a HTTP/1.1\r\nHost: allowed.test\r\nX-Folded: one\r\n two\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost : allowed.test\r\n\r\n",
        b"GET /a HTTP/1.1\nHost: allowed.test\n\n",
    ];
    for raw in refused {
        let notices = rig.notices().len();
        assert!(rig.raw_plain(raw).await.is_empty(), "{}", String::from_utf8_lossy(raw));
        let decision = rig.h.last_decision();
        assert_eq!(decision["event"]["kind"], "net.connect");
        assert_eq!(decision["event"]["detail"]["named_by"], "dns");
        let new = rig.notices()[notices..].to_vec();
        assert!(new.iter().any(|n| n.contains("malformed first bytes")), "{new:?}");
    }
    assert!(rig.plain_seen.requests().is_empty(), "{:?}", rig.plain_seen.requests());
    rig.still_serving().await;
}

#[tokio::test]
async fn bare_lf_heads_over_tls_are_one_request_forwarded_with_crlf() {
    let rig = rig(|_| {}).await;
    // httparse accepts bare LF; what matters is that Bridle's reading is
    // the only one: the upstream gets a request hyper re-serialized.
    let raw = rig.raw_tls(b"GET /lf HTTP/1.1\nHost: allowed.test\nConnection: close\n\n").await;
    assert_eq!(statuses(&raw), [200], "{}", String::from_utf8_lossy(&raw));
    assert_eq!(rig.tls_seen.requests(), ["GET /lf 0 allowed.test"]);
    assert_eq!(decided(&rig.requests()), [("/lf".to_owned(), "allow".to_owned())]);
    rig.still_serving().await;
}

#[tokio::test]
async fn two_host_headers_are_refused_and_audited_not_forwarded() {
    let rig = rig(|_| {}).await;
    // Policy and the fronting check read the first Host; an upstream that
    // reads the last would serve evil.test (RFC 9112 §3.2: a 400).
    let raw = b"GET /a HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n";
    for tls in [true, false] {
        let answer = if tls { rig.raw_tls(raw).await } else { rig.raw_plain(raw).await };
        if tls {
            assert_eq!(statuses(&answer), [400], "{}", String::from_utf8_lossy(&answer));
            let refused = rig.requests().pop().expect("audited as a request");
            assert_eq!(refused["decision"]["effect"], "deny");
            let reason = refused["decision"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("Host"), "{reason}");
        } else {
            // Plain: detection already refuses two Hosts on the first head.
            assert!(answer.is_empty());
        }
    }
    let second = b"GET /ok HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
        GET /b HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n";
    // Plain keep-alive: the second head is hyper's alone.
    let answer = rig.raw_plain(second).await;
    assert_eq!(statuses(&answer), [200, 400], "{}", String::from_utf8_lossy(&answer));
    assert!(rig.tls_seen.requests().is_empty(), "{:?}", rig.tls_seen.requests());
    assert_eq!(rig.plain_seen.requests(), ["GET /ok 0 allowed.test"]);
    rig.still_serving().await;
}

#[tokio::test]
async fn oversized_request_heads_are_a_431_and_not_forwarded() {
    let rig = rig(|_| {}).await;
    let big = format!("GET /a HTTP/1.1\r\nHost: allowed.test\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /a HTTP/1.1\r\nHost: allowed.test\r\n{many}\r\n");
    for raw in [&big, &many] {
        let answer = rig.raw_tls(raw.as_bytes()).await;
        assert_eq!(statuses(&answer), [431], "{}", String::from_utf8_lossy(&answer));
    }
    assert!(rig.notices().iter().filter(|n| n.contains("rejected")).count() >= 2, "{:?}", rig.notices());
    // Plain: detection's 64 KiB bound refuses it first, decided on the
    // address's DNS name and refused as malformed.
    assert!(rig.raw_plain(big.as_bytes()).await.is_empty());
    assert_eq!(rig.h.last_decision()["event"]["detail"]["named_by"], "dns");
    assert!(rig.notices().iter().any(|n| n.contains("malformed first bytes")), "{:?}", rig.notices());
    assert!(rig.tls_seen.requests().is_empty() && rig.plain_seen.requests().is_empty());
    assert!(rig.requests().is_empty());
    rig.still_serving().await;
}

#[tokio::test]
async fn invalid_utf8_in_the_path_is_a_400_and_percent_escapes_are_decided_as_sent() {
    let rig = rig(|_| {}).await;
    // httparse lets the bytes through; the http crate's URI parser takes
    // ASCII only, so hyper answers 400 before any request exists.
    let raw = b"GET /caf\xc3\xa9/\xff\xfe HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    assert_eq!(statuses(&rig.raw_tls(raw).await), [400]);
    assert_eq!(statuses(&rig.raw_plain(raw).await), [400]);
    let rejected = rig.notices().iter().filter(|n| n.contains("rejected")).count();
    assert_eq!(rejected, 2, "{:?}", rig.notices());
    assert!(rig.requests().is_empty());
    // The same bytes percent-encoded are a valid path: decided verbatim
    // (policy sees what the upstream will see), never decoded into a
    // different path.
    let raw = b"GET /caf%C3%A9/%FF%FE HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n";
    assert_eq!(statuses(&rig.raw_tls(raw).await), [200]);
    assert_eq!(decided(&rig.requests()), [("/caf%C3%A9/%FF%FE".to_owned(), "allow".to_owned())]);
    assert_eq!(rig.tls_seen.requests(), ["GET /caf%C3%A9/%FF%FE 0 allowed.test"]);
    rig.still_serving().await;
}

#[tokio::test]
async fn garbage_after_a_client_hello_fails_the_handshake_audited_and_nothing_is_requested() {
    let rig = rig(|i| i.handshake_timeout = Duration::from_secs(1)).await;
    let hello = agent::client_hello("allowed.test", H1);
    let garbage = b"\x17\x03\x03\x00\x05garbage";
    // After the hello, once rustls has answered it: a record it cannot
    // decrypt fails the handshake at once.
    let mut agent = rig.h.connect_to(rig.tls).await;
    agent.write_all(&hello).await.expect("hello");
    tokio::time::sleep(Duration::from_millis(100)).await;
    agent.write_all(garbage).await.expect("garbage");
    assert!(statuses(&until_closed(&mut agent).await).is_empty(), "no HTTP answer");
    let failed = rig.notices().into_iter().find(|n| n.contains("TLS handshake with the agent failed"));
    assert!(failed.is_some_and(|n| n.contains("decrypt")), "{:?}", rig.notices());
    // In the hello's own segment: the handshake does not act on them and
    // waits for a flight that never comes, so the handshake bound cuts it
    // off.
    let mut agent = rig.h.connect_to(rig.tls).await;
    agent.write_all(&[&hello[..], garbage].concat()).await.expect("hello and garbage");
    let started = Instant::now();
    assert!(statuses(&until_closed(&mut agent).await).is_empty(), "no HTTP answer");
    assert!(started.elapsed() < Duration::from_secs(2), "cut off by the 1 s handshake bound");
    assert!(rig.notices().iter().any(|n| n.contains("timed out after 1s")), "{:?}", rig.notices());
    // A hello detection accepts but rustls refuses (ALPN twice): closed
    // before any upstream connection, and said so.
    let mut agent = rig.h.connect_to(rig.tls).await;
    agent.write_all(&with_extension(&hello, ALPN_HTTP11)).await.expect("hello");
    assert!(until_closed(&mut agent).await.is_empty());
    assert!(rig.notices().iter().any(|n| n.contains("refused by rustls")), "{:?}", rig.notices());
    // By design the upstream handshake comes first (its ALPN choice is what
    // the agent is offered): the upstream saw TLS twice, never a request.
    assert_eq!(rig.tls_seen.handshakes(), 2);
    assert!(rig.tls_seen.requests().is_empty() && rig.requests().is_empty());
    rig.still_serving().await;
}

/// An ALPN extension offering http/1.1.
const ALPN_HTTP11: &[u8] = b"\x00\x10\x00\x0b\x00\x09\x08http/1.1";

/// `hello` (one record, one ClientHello) with `extension` appended: the
/// record, handshake and extension-list lengths grow to match.
fn with_extension(hello: &[u8], extension: &[u8]) -> Vec<u8> {
    let mut out = hello.to_vec();
    out.extend_from_slice(extension);
    let grow = |at: usize, width: usize, out: &mut Vec<u8>| {
        let old = out[at..at + width].iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
        let new = (old + extension.len()).to_be_bytes();
        out[at..at + width].copy_from_slice(&new[new.len() - width..]);
    };
    grow(3, 2, &mut out); // record length
    grow(6, 3, &mut out); // ClientHello length
    // The extension list's length follows version, random, session id,
    // cipher suites and compression methods.
    let session = 9 + 2 + 32;
    let suites = session + 1 + usize::from(out[session]);
    let compression = suites + 2 + usize::from(u16::from_be_bytes([out[suites], out[suites + 1]]));
    let extensions = compression + 1 + usize::from(out[compression]);
    grow(extensions, 2, &mut out);
    out
}

#[tokio::test]
async fn tls_to_port_80_is_intercepted_by_its_first_bytes() {
    let rig = rig(|_| {}).await;
    // A loopback address of this process's own (all of 127/8 is local),
    // so port 80 is free to bind even beside another test run.
    let pid = std::process::id().to_be_bytes();
    let on_80 = SocketAddr::from(([127, 80, pid[2], pid[3]], 80));
    let (dst, seen) = upstreams::https(on_80, rig.ca.leaf(&["allowed.test"])).await;
    let mut sender = agent::h1(agent::tls(&rig.h, dst, "allowed.test", H1).await).await;
    let answer = send_h1(&mut sender, get("/on-80")).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok /on-80 HTTP/1.1"));
    let answer = send_h1(&mut sender, get("/admin")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let requests = rig.requests();
    assert_eq!(requests[0]["event"]["detail"]["scheme"], "https");
    assert_eq!(requests[0]["event"]["detail"]["port"], 80);
    assert_eq!(seen.requests(), ["GET /on-80 0 allowed.test"]);
    // TLS offering no ALPN at all, off 443, is decrypted all the same: the
    // HTTP inside is decided like any other (leaving ALPN out is no way
    // around per-request policy).
    let mut sender = agent::h1(agent::tls(&rig.h, dst, "allowed.test", &[]).await).await;
    assert_eq!(send_h1(&mut sender, get("/admin")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send_h1(&mut sender, get("/no-alpn")).await.status, StatusCode::OK);
    assert_eq!(seen.requests(), ["GET /on-80 0 allowed.test", "GET /no-alpn 0 allowed.test"]);
    rig.still_serving().await;
}

#[tokio::test]
async fn upstream_certificates_that_do_not_verify_are_a_502_with_the_reason() {
    let rig = rig(|_| {}).await;
    let name = ["allowed.test"];
    let cases = [
        ("expired", rig.ca.expired(&name), "expired"),
        ("self-signed", upstreams::self_signed(&name), "UnknownIssuer"),
        ("wrong name", rig.ca.leaf(&["other.test"]), "not valid for name"),
    ];
    for (what, cert, why) in cases {
        let (dst, seen) = upstreams::https(loopback(), cert).await;
        let mut sender = agent::h1(agent::tls(&rig.h, dst, "allowed.test", H1).await).await;
        let answer = send_h1(&mut sender, get("/secret?token=hunter2")).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{what}");
        let reason = answer.json()["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(why) && reason.contains("failed TLS verification"), "{what}: {reason}");
        assert!(answer.reason_header.is_some_and(|h| h.contains(why)), "{what}");
        let notice = rig.notices().into_iter().rev().find(|n| n.contains(why)).expect("audited");
        assert!(!notice.contains("hunter2"), "no query values in the audit: {notice}");
        assert_eq!((seen.handshakes(), seen.requests().len()), (0, 0), "{what}: never a downgrade");
    }
    assert!(rig.requests().is_empty(), "a 502 is not a policy decision");
    rig.still_serving().await;
}

#[tokio::test]
async fn keep_alive_requests_are_decided_one_by_one_and_survive_a_403() {
    let rig = rig(|_| {}).await;
    let tls = agent::h1(agent::tls(&rig.h, rig.tls, "allowed.test", H1).await).await;
    let plain = agent::h1(rig.h.connect_to(rig.plain).await).await;
    for (mut sender, seen) in [(tls, &rig.tls_seen), (plain, &rig.plain_seen)] {
        let before = rig.requests().len();
        assert_eq!(send_h1(&mut sender, get("/one")).await.status, StatusCode::OK);
        let denied = send_h1(&mut sender, get("/admin/users")).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert_eq!(denied.json()["reason"], "admin pages are off limits");
        assert_eq!(denied.json()["policy"], "no-admin");
        let after = send_h1(&mut sender, get("/two")).await;
        assert_eq!((after.status, after.body.as_str()), (StatusCode::OK, "ok /two HTTP/1.1"));
        let decisions = decided(&rig.requests()[before..]);
        let expected = [("/one", "allow"), ("/admin/users", "deny"), ("/two", "allow")];
        assert_eq!(decisions, expected.map(|(p, e)| (p.to_owned(), e.to_owned())));
        assert_eq!(seen.requests(), ["GET /one 0 allowed.test", "GET /two 0 allowed.test"]);
    }
    // One agent connection, one upstream connection: requests were not
    // split across connections to be decided.
    assert_eq!(rig.tls_seen.handshakes(), 1);
    rig.still_serving().await;
}

#[tokio::test]
async fn h2_streams_on_one_connection_are_decided_separately() {
    let rig = rig(|_| {}).await;
    let sender = agent::h2(agent::tls(&rig.h, rig.tls, "allowed.test", H2).await).await;
    let request = |path: &str| {
        let uri = format!("https://allowed.test{path}");
        http::Request::get(uri).body(http_body_util::Empty::new()).expect("request")
    };
    let (mut a, mut b) = (sender.clone(), sender);
    let denied = async move { agent::read(a.send_request(request("/admin")).await.expect("stream")).await };
    let allowed = async move { agent::read(b.send_request(request("/h2")).await.expect("stream")).await };
    let (denied, allowed) =
        tokio::time::timeout(PROMPT, async { tokio::join!(denied, allowed) }).await.expect("in time");
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["policy"], "no-admin");
    assert_eq!((allowed.status, allowed.body.as_str()), (StatusCode::OK, "ok /h2 HTTP/2.0"));
    let mut decisions = decided(&rig.requests());
    decisions.sort();
    assert_eq!(decisions, [("/admin".to_owned(), "deny".to_owned()), ("/h2".to_owned(), "allow".to_owned())]);
    assert_eq!(rig.tls_seen.requests(), ["GET /h2 0"]);
    rig.still_serving().await;
}

#[tokio::test]
async fn upstream_connections_are_reused_across_agent_connections_for_the_same_name_only() {
    let rig = rig(|_| {}).await;
    // HTTP/1.1: each agent connection ends with its response read, so the
    // next one (to the same destination and name) gets that connection.
    for path in ["/a", "/b", "/c"] {
        let mut sender = agent::h1(agent::tls(&rig.h, rig.tls, "allowed.test", H1).await).await;
        let answer = send_h1(&mut sender, get(path)).await;
        assert_eq!((answer.status, answer.body), (StatusCode::OK, format!("ok {path} HTTP/1.1")));
        drop(sender);
        // The proxy returns the connection when it sees the agent leave.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.tls_seen.handshakes(), 1, "three agent connections, one verified upstream connection");
    // HTTP/2: an agent connection that opens while another is using its
    // upstream connection shares it (both stay open).
    let h2_get = |path: &str| {
        let uri = format!("https://allowed.test{path}");
        http::Request::get(uri).body(http_body_util::Empty::new()).expect("request")
    };
    let mut first = agent::h2(agent::tls(&rig.h, rig.tls, "allowed.test", H2).await).await;
    let answer = agent::read(first.send_request(h2_get("/h2-a")).await.expect("stream")).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "ok /h2-a HTTP/2.0"));
    let mut second = agent::h2(agent::tls(&rig.h, rig.tls, "allowed.test", H2).await).await;
    for (sender, path) in [(&mut second, "/h2-b"), (&mut first, "/h2-c")] {
        let answer = agent::read(sender.send_request(h2_get(path)).await.expect("stream")).await;
        assert_eq!((answer.status, answer.body), (StatusCode::OK, format!("ok {path} HTTP/2.0")));
    }
    assert_eq!(rig.tls_seen.handshakes(), 2, "one more upstream connection, for h2, shared");
    // Another name on the same address is verified on its own connection
    // (here it fails verification: the upstream's certificate is only for
    // allowed.test), never served by the pooled one.
    let mut sender = agent::h1(agent::tls(&rig.h, rig.tls, "other.allowed.test", H1).await).await;
    assert_eq!(send_h1(&mut sender, get("/x")).await.status, StatusCode::BAD_GATEWAY);
    // Plain HTTP too.
    for path in ["/p1", "/p2"] {
        let mut sender = agent::h1(rig.h.connect_to(rig.plain).await).await;
        assert_eq!(send_h1(&mut sender, get(path)).await.status, StatusCode::OK);
        drop(sender);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.plain_seen.requests().len(), 2);
}

#[tokio::test]
async fn slowloris_request_head_is_cut_off_by_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let rig = rig(|i| i.header_timeout = timeout).await;
    let agent = agent::tls(&rig.h, rig.tls, "allowed.test", H1).await;
    let (mut read, mut write) = tokio::io::split(agent);
    let started = Instant::now();
    // One byte every 200 ms: the head would take about 8 s.
    let trickle = tokio::spawn(async move {
        for byte in b"GET /slow HTTP/1.1\r\nHost: allowed.test\r\n\r\n" {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let answer = until_closed(&mut read).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(statuses(&answer).is_empty(), "{}", String::from_utf8_lossy(&answer));
    // hyper's clock starts when Bridle's side of the handshake ends, a
    // moment before or after the agent's.
    let early = timeout - Duration::from_millis(200);
    assert!(took >= early && took < timeout + Duration::from_secs(1), "cut off after {took:?}");
    let cut = rig.notices().into_iter().filter(|n| n.contains("read header from client timeout")).count();
    assert_eq!(cut, 1, "{:?}", rig.notices());
    assert!(rig.tls_seen.requests().is_empty() && rig.requests().is_empty());
    // The same timeout closes a keep-alive connection left idle after its
    // answer: routine for a client's pool, so not a notice.
    let mut sender = agent::h1(agent::tls(&rig.h, rig.tls, "allowed.test", H1).await).await;
    assert_eq!(send_h1(&mut sender, get("/once")).await.status, StatusCode::OK);
    let closed = async {
        while !sender.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PROMPT, closed).await.expect("idle connection closed");
    let cut = rig.notices().into_iter().filter(|n| n.contains("read header from client timeout")).count();
    assert_eq!(cut, 1, "{:?}", rig.notices());
    rig.still_serving().await;
}

/// Whatever the upstream would take for a request is decided per request
/// or refused, never spliced past inspection on an allowed host: blank
/// lines before the request line (servers skip any number), an extension
/// method with a request pipelined behind it, HTTP/2 in the clear, HTTP/0.9
/// and a method in lower case (which servers may read as `POST`); and
/// silence past the detection window, then TLS.
#[tokio::test]
async fn http_that_detection_could_miss_is_not_spliced_past_inspection() {
    let rig = rig(|_| {}).await;
    // The resolver answered allowed.test with this IP, so a connection
    // named by nothing better is decided as allowed.test and permitted.
    for blank in [1, 9, 300] {
        let raw =
            [&b"\r\n".repeat(blank)[..], b"GET /admin HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"];
        let answer = rig.raw_plain(&raw.concat()).await;
        assert_eq!(statuses(&answer), [403], "{blank} blank lines: {}", String::from_utf8_lossy(&answer));
    }
    let pipelined = b"PROPFIND /dav HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
        GET /admin HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n";
    let answer = rig.raw_plain(pipelined).await;
    assert_eq!(statuses(&answer), [200, 403], "{}", String::from_utf8_lossy(&answer));
    let refused: [&[u8]; 3] = [
        b"PRI * HTTP/2.0\r\nHost: allowed.test\r\n\r\n",
        b"GET /admin\r\n",
        b"post /admin HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    ];
    for raw in refused {
        let answer = rig.raw_plain(raw).await;
        assert!(answer.is_empty(), "{:?} got {}", String::from_utf8_lossy(raw), String::from_utf8_lossy(&answer));
    }
    assert_eq!(rig.plain_seen.requests(), ["PROPFIND /dav 0 allowed.test"]);
    let notices = rig.notices();
    for reason in ["HTTP/2 in the clear", "not METHOD SP target SP version", "not in upper case"] {
        assert!(
            notices.iter().any(|n| n.contains("malformed first bytes") && n.contains(reason)),
            "{reason}: {notices:?}"
        );
    }
    // Inside TLS, where hyper reads `post` as a method of its own: a 400.
    let answer = rig.raw_tls(b"post /admin HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&answer), [400], "{}", String::from_utf8_lossy(&answer));
    let last = rig.requests().pop().expect("the lower-case request decided");
    assert!(last["decision"]["reason"].as_str().is_some_and(|r| r.contains("lower case")), "{last}");
    // Silence past the detection window, then TLS: server-speaks-first to
    // detection, so an agent that trusts the real upstream would talk to it
    // directly, past per-request policy and leak scanning.
    let mut tcp = rig.h.connect_to(rig.tls).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rig.ca.der.clone()).expect("public CA");
    let name = rustls::pki_types::ServerName::try_from("allowed.test").expect("name");
    let direct = tokio_rustls::TlsConnector::from(agent::config(roots, H1)).connect(name, &mut tcp).await;
    assert!(direct.is_err(), "the agent reached the upstream's own certificate through the proxy");
    assert!(rig.tls_seen.requests().is_empty(), "{:?}", rig.tls_seen.requests());
    rig.still_serving().await;
}

/// A first line sent in pieces: a client-first protocol's word (sent
/// alone, before its answer) reaches its server and the connection is a
/// relay, at once for a lower-case word and after the detection window for
/// an upper-case one; a lower-case method followed later by the rest of a
/// request line is refused, the upstream having had only part of a line.
#[tokio::test]
async fn a_first_line_in_pieces_is_relayed_until_it_says_it_is_a_request() {
    use tokio::io::AsyncReadExt as _;
    let rig = rig(|_| {}).await;
    let echo = upstream(b"", b"").await;
    for word in [&b"hello"[..], b"HELLO"] {
        let mut agent = rig.h.connect_to(echo).await;
        agent.write_all(word).await.expect("word");
        assert_eq!(read_n(&mut agent, word.len()).await, word, "the server answered the word");
        agent.write_all(b" more\n").await.expect("more");
        assert_eq!(read_n(&mut agent, 6).await, b" more\n");
    }
    // A word, then at once more than the detection bound of bytes with no
    // line end in them (an upload, as the bench's): binary, so a relay.
    // Its server says nothing until it has it all.
    const UPLOAD: usize = 200 << 10;
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the sink");
    let sink_addr = sink.local_addr().expect("sink addr");
    tokio::spawn(async move {
        let (mut stream, _) = sink.accept().await.expect("accept");
        let got = read_n(&mut stream, 1 + UPLOAD).await;
        let answer = if got[0] == b'u' && got[1..].iter().all(|&b| b == 0) { b"whole" } else { b"torn!" };
        stream.write_all(answer).await.expect("answer");
    });
    let mut agent = rig.h.connect_to(sink_addr).await;
    agent.write_all(b"u").await.expect("word");
    tokio::time::sleep(Duration::from_millis(50)).await;
    agent.write_all(&vec![0u8; UPLOAD]).await.expect("upload");
    assert_eq!(read_n(&mut agent, 5).await, b"whole");
    // Straight away, and after a silence past the detection window.
    for silence in [0, 400] {
        let mut agent = rig.h.connect_to(rig.plain).await;
        tokio::time::sleep(Duration::from_millis(silence)).await;
        agent.write_all(b"get").await.expect("a method in pieces");
        tokio::time::sleep(Duration::from_millis(150)).await;
        agent.write_all(b" /admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n").await.expect("the rest");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PROMPT, agent.read_to_end(&mut answer)).await.expect("closed in time");
        assert!(read.is_err() || answer.is_empty(), "answered: {}", String::from_utf8_lossy(&answer));
    }
    assert!(rig.plain_seen.requests().is_empty(), "{:?}", rig.plain_seen.requests());
    assert!(rig.notices().iter().any(|n| n.contains("sent in pieces")), "{:?}", rig.notices());
    rig.still_serving().await;
}

/// HTTP/2 in the clear with prior knowledge (plaintext gRPC): each stream
/// is a request, decided as plain HTTP's are (its `:authority` must be a
/// name of the address, and stays proven for the connection), and sent
/// upstream over h2c.
#[tokio::test]
async fn h2c_prior_knowledge_is_decided_stream_by_stream() {
    let rig = rig(|_| {}).await;
    let mut sender = agent::h2(rig.h.connect_to(rig.plain).await).await;
    let request =
        |uri: &str| http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new()).expect("request");
    let ok = agent::read(sender.send_request(request("http://allowed.test/ok")).await.expect("ok")).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "ok /ok HTTP/2.0"));
    let admin = agent::read(sender.send_request(request("http://allowed.test/admin")).await.expect("admin")).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    let forged = agent::read(sender.send_request(request("http://other.test/x")).await.expect("forged")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // A long-lived channel outlives the resolver's answer: a host proven on
    // the connection stays so; one never proven is still refused.
    rig.h.origins.forget_names(rig.plain.ip());
    let later = agent::read(sender.send_request(request("http://allowed.test/later")).await.expect("later")).await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(rig.plain_seen.requests(), ["GET /ok 0", "GET /later 0"]);
    rig.h.origins.insert_name(rig.plain.ip(), "allowed.test");
    rig.still_serving().await;
}

/// TLS that offers no HTTP protocol (no ALPN, on a port other than 443) is
/// decrypted and looked at; an agent silent there past the window, then
/// sending a request, is served as HTTP and decided, not relayed as a
/// protocol whose server speaks first.
#[tokio::test]
async fn http_sent_late_inside_tls_without_alpn_is_decided() {
    let rig = rig(|inspector| inspector.body_wait = Duration::from_millis(200)).await;
    let mut agent = agent::tls(&rig.h, rig.tls, "allowed.test", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.write_all(b"GET /admin HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n").await.expect("write");
    agent.flush().await.expect("flush");
    let answer = until_closed(&mut agent).await;
    assert_eq!(statuses(&answer), [403], "{}", String::from_utf8_lossy(&answer));
    assert!(rig.tls_seen.requests().is_empty(), "{:?}", rig.tls_seen.requests());
    rig.still_serving().await;
}

/// Decrypted TLS that is not HTTP, whose server speaks first (IMAPS,
/// SMTPS): the agent waits for the greeting, which Bridle relays between
/// the two TLS sessions, audited as not inspected.
#[tokio::test]
async fn decrypted_tls_whose_server_speaks_first_is_relayed() {
    let rig = rig(|inspector| inspector.body_wait = Duration::from_millis(200)).await;
    let greeter = upstreams::greeting(loopback(), rig.ca.leaf(&["allowed.test"]), b"* OK ready\r\n").await;
    rig.h.origins.insert_name(greeter.ip(), "allowed.test");
    let mut agent = agent::tls(&rig.h, greeter, "allowed.test", &[b"imap"]).await;
    assert_eq!(read_n(&mut agent, 12).await, b"* OK ready\r\n");
    agent.write_all(b"a1 NOOP\r\n").await.expect("write");
    agent.flush().await.expect("flush");
    assert_eq!(read_n(&mut agent, 9).await, b"a1 NOOP\r\n");
    assert!(
        rig.notices().iter().any(|n| n.contains("not HTTP: relayed") && n.contains("not inspected")),
        "{:?}",
        rig.notices()
    );
}

/// The next `n` bytes, within [`PROMPT`].
async fn read_n<IO: tokio::io::AsyncRead + Unpin>(io: &mut IO, n: usize) -> Vec<u8> {
    let mut read = vec![0u8; n];
    let reading = tokio::io::AsyncReadExt::read_exact(io, &mut read);
    tokio::time::timeout(PROMPT, reading).await.expect("in time").expect("read");
    read
}

/// Nothing ties a plain-HTTP request to a host but the address it was
/// sent to: each request's Host (and absolute-form authority) must be a
/// name Bridle's resolver answered with that address, on every request of
/// a keep-alive connection, not only the first.
#[tokio::test]
async fn a_plain_request_whose_host_is_not_a_name_of_the_address_is_refused() {
    let rig = rig(|_| {}).await;
    let keep_alive = b"GET /ok HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
        GET /forged HTTP/1.1\r\nHost: sub.allowed.test\r\n\r\n\
        GET http://other.test/absolute HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n";
    let answer = rig.raw_plain(keep_alive).await;
    assert_eq!(statuses(&answer), [200, 403, 403], "{}", String::from_utf8_lossy(&answer));
    assert_eq!(rig.plain_seen.requests(), ["GET /ok 0 allowed.test"]);
    let reasons: Vec<String> =
        rig.requests()[1..].iter().map(|r| r["decision"]["reason"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(reasons[0].contains(r#"Host "sub.allowed.test" is not a name Bridle's resolver answered"#), "{reasons:?}");
    assert!(reasons[1].contains("does not match"), "{reasons:?}");
    // Once the resolver has answered it with this address, it is a name of it.
    rig.h.origins.insert_name(rig.plain.ip(), "sub.allowed.test");
    let answer = rig.raw_plain(b"GET /now HTTP/1.1\r\nHost: sub.allowed.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&answer), [200], "{}", String::from_utf8_lossy(&answer));
    rig.still_serving().await;
}

/// A credential goes only where TLS verified the host: over plain HTTP a
/// placeholder is never swapped, even for the secret's own host, and is
/// flagged as misused.
#[tokio::test]
async fn a_placeholder_over_plain_http_is_never_swapped_and_is_flagged() {
    use bridle_engine::config::{Secret, SecretSource};
    use bridle_proxy::http::secrets::Secrets;
    let secret = Secret {
        name: "api".into(),
        source: SecretSource::Env("API_KEY".into()),
        hosts: vec!["allowed.test".into()],
        header: "x-api-key".into(),
        format: "{value}".into(),
    };
    let secrets = Secrets::load_with(&[secret], |_| Some("real-value-0f3b9c".into())).expect("secrets");
    let rig = rig(|inspector| inspector.secrets = Some(Arc::new(secrets))).await;
    let raw = b"GET /key HTTP/1.1\r\nHost: allowed.test\r\nx-api-key: bridle-secret-api\r\nConnection: close\r\n\r\n";
    let answer = rig.raw_plain(raw).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("real-value-0f3b9c"), "{text}");
    let decided = rig.requests().pop().expect("the request is decided");
    assert_eq!(decided["event"]["detail"]["dlp"], serde_json::json!(["placeholder-misuse"]), "{decided}");
    // Over TLS to the same host the placeholder is swapped (and not flagged).
    let mut sender = agent::h1(agent::tls(&rig.h, rig.tls, "allowed.test", H1).await).await;
    let request = http::Request::get("/key")
        .header("host", "allowed.test")
        .header("x-api-key", "bridle-secret-api")
        .body(http_body_util::Empty::new())
        .expect("request");
    assert_eq!(send_h1(&mut sender, request).await.status, StatusCode::OK);
    let decided = rig.requests().pop().expect("the request is decided");
    assert!(decided["event"]["detail"]["dlp"].is_null(), "no finding: {decided}");
}

/// [`POLICY`] and the default set's rule that a request carrying a secret
/// is denied.
const POLICY_NO_LEAKS: &str = r#"
@id("allowed") @reason("allowed.test is approved")
permit (principal, action, resource in Net::Domain::"allowed.test");

@id("no-leaks") @reason("the request carries a secret")
forbid (principal, action == Http::Action::"Request", resource)
when { !context.dlp.isEmpty() };
"#;

const TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyz";

/// The frame that crosses the body window is replayed whole after the
/// decision: all of it is scanned before, not only the part inside.
#[tokio::test]
async fn a_leak_past_the_window_in_the_frame_that_crosses_it_is_found_before_the_decision() {
    let rig = rig_on(POLICY_NO_LEAKS, |inspector| inspector.body_window = 16).await;
    let body = format!("{}&token={TOKEN}", "x".repeat(40));
    let raw = format!(
        "POST /up HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = rig.raw_plain(raw.as_bytes()).await;
    assert_eq!(statuses(&answer), [403], "{}", String::from_utf8_lossy(&answer));
    assert!(rig.plain_seen.requests().is_empty(), "{:?}", rig.plain_seen.requests());
    let decided = rig.requests().pop().expect("decided");
    assert_eq!(decided["event"]["detail"]["dlp"], serde_json::json!(["github-token"]), "{decided}");
}

/// HTTP/2 request trailers come after the body, where neither the head's
/// scan nor the body's looked: they are scanned too.
#[tokio::test]
async fn a_leak_in_http2_request_trailers_stops_the_request() {
    use http_body_util::BodyExt as _;
    let rig = rig_on(POLICY_NO_LEAKS, |_| {}).await;
    let io = agent::tls(&rig.h, rig.tls, "allowed.test", H2).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut send = |trailer: &'static str| {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static(trailer));
        let body = http_body_util::Full::new(bytes::Bytes::from_static(b"hello"))
            .with_trailers(std::future::ready(Some(Ok::<_, std::convert::Infallible>(trailers))));
        let request = http::Request::post("https://allowed.test/up").body(body).expect("request");
        sender.send_request(request)
    };
    let clean = tokio::time::timeout(PROMPT, send("abc")).await.expect("in time").expect("response");
    assert_eq!(clean.status(), StatusCode::OK);
    let leaked = tokio::time::timeout(PROMPT, send(TOKEN)).await.expect("in time").expect("response");
    assert_eq!(leaked.status(), StatusCode::FORBIDDEN);
    let reasons: Vec<Value> = rig.requests().iter().map(|r| r["decision"]["reason"].clone()).collect();
    assert!(reasons.iter().any(|r| r == "the request carries a secret"), "{reasons:?}");
}

/// An upstream that takes h2c whenever it is offered (as lenient servers
/// do): `101`, then whatever follows is recorded. Without the offer it
/// answers `200` and records the rest of the connection too.
async fn h2c_upstream() -> (SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                    let text = {
                        let mut got = record.lock().expect("not poisoned");
                        got.extend_from_slice(&buf[..n]);
                        String::from_utf8_lossy(&got).to_ascii_lowercase()
                    };
                    if !answered && text.contains("\r\n\r\n") {
                        answered = true;
                        let answer: &[u8] = match text.contains("upgrade: h2c") {
                            true => b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                            false => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        };
                        let _ = tcp.write_all(answer).await;
                    }
                }
            });
        }
    });
    (addr, got)
}

/// "h2c smuggling": an upgrade to cleartext HTTP/2 would carry requests
/// (here one for a forbidden path) past per-request policy inside a
/// connection Bridle only relays. The offer is not passed on: the upstream
/// answers the request as HTTP/1.1, and what the agent sends next is read
/// as HTTP/1.1 too, never relayed.
#[tokio::test]
async fn h2c_and_tls_upgrades_are_not_passed_on_so_nothing_is_smuggled_past_policy() {
    let rig = rig(|_| {}).await;
    let (upstream, got) = h2c_upstream().await;
    let mut agent = rig.h.connect_to(upstream).await;
    let raw = b"GET /h2c HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n\
        PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x0f\x01\x05\0\0\0\x01\x82\x86\x04\x06/admin";
    agent.write_all(raw).await.expect("write");
    let answer = until_closed(&mut agent).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let got = String::from_utf8_lossy(&got.lock().expect("not poisoned")).to_ascii_lowercase();
    assert!(got.starts_with("get /h2c http/1.1\r\n"), "{got}");
    assert!(!got.contains("upgrade") && !got.contains("http2-settings"), "the offer went on: {got}");
    assert!(!got.contains("pri *") && !got.contains("/admin"), "bytes after the request went on: {got}");
    assert_eq!(decided(&rig.requests()), [("/h2c".to_owned(), "allow".to_owned())]);
    assert!(rig.notices().iter().any(|n| n.contains("allowed.test/h2c: the agent's h2c upgrade was not passed on")));
    // RFC 2817's upgrade to TLS inside the connection would be unreadable.
    let tls = b"GET /tls HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, close\r\nUpgrade: TLS/1.2\r\n\r\n";
    let answer = rig.raw_plain(tls).await;
    assert_eq!(statuses(&answer), [200], "{}", String::from_utf8_lossy(&answer));
    assert!(rig.notices().iter().any(|n| n.contains("allowed.test/tls: the agent's TLS upgrade was not passed on")));
    rig.still_serving().await;
}
