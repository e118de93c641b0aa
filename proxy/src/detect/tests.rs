use std::time::Duration;

use super::*;

const MAX: usize = 64 * 1024;
const OPENSSL: &[u8] = include_bytes!("../../testdata/openssl-api.example.test.bin");
const PYTHON: &[u8] = include_bytes!("../../testdata/python-ssl-allowed.test.bin");
const CURL: &[u8] = include_bytes!("../../testdata/curl-allowed.test.bin");

/// A minimal ClientHello body with the given extensions block.
fn hello_body(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    if let Some(ext) = extensions {
        body.extend_from_slice(&u16::try_from(ext.len()).expect("fits").to_be_bytes());
        body.extend_from_slice(ext);
    }
    body
}

fn sni_extension(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for name in names {
        list.push(0);
        list.extend_from_slice(&u16::try_from(name.len()).expect("fits").to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = u16::try_from(list.len()).expect("fits").to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&u16::try_from(data.len()).expect("fits").to_be_bytes());
    ext.extend_from_slice(&data);
    ext
}

/// Wraps a body as a ClientHello handshake message in records of at most
/// `fragment` bytes each.
fn records(body: &[u8], fragment: usize) -> Vec<u8> {
    let mut message = vec![1];
    message.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_be_bytes()[1..]);
    message.extend_from_slice(body);
    let mut out = Vec::new();
    for chunk in message.chunks(fragment) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&u16::try_from(chunk.len()).expect("fits").to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn tls(sni: Option<&str>) -> Option<Protocol> {
    Some(Protocol::Tls { sni: sni.map(str::to_string) })
}

fn malformed_tls(bytes: &[u8]) -> bool {
    matches!(classify(bytes, MAX), Some(Protocol::Malformed { tls: true, .. }))
}

#[test]
fn recorded_client_hellos_give_their_sni() {
    assert_eq!(classify(OPENSSL, MAX), tls(Some("api.example.test")));
    assert_eq!(classify(PYTHON, MAX), tls(Some("allowed.test")));
    assert_eq!(classify(CURL, MAX), tls(Some("allowed.test")));
}

#[test]
fn every_prefix_of_a_recorded_hello_waits_for_more() {
    for hello in [OPENSSL, PYTHON, CURL] {
        for end in 1..hello.len() {
            assert_eq!(classify(&hello[..end], MAX), None, "prefix of {end} bytes");
        }
    }
}

#[test]
fn hello_fragmented_across_records_is_reassembled() {
    let body = hello_body(Some(&sni_extension(&[b"Frag.Example.TEST."])));
    for fragment in [1, 7, 40] {
        assert_eq!(classify(&records(&body, fragment), MAX), tls(Some("frag.example.test")));
    }
}

#[test]
fn hello_without_sni_or_extensions() {
    assert_eq!(classify(&records(&hello_body(None), 1000), MAX), tls(None));
    assert_eq!(classify(&records(&hello_body(Some(&[])), 1000), MAX), tls(None));
}

#[test]
fn hello_lies_are_malformed() {
    let two = sni_extension(&[b"a.test", b"b.test"]);
    assert!(malformed_tls(&records(&hello_body(Some(&two)), 1000)));
    let mut twice = sni_extension(&[b"a.test"]);
    twice.extend(sni_extension(&[b"b.test"]));
    assert!(malformed_tls(&records(&hello_body(Some(&twice)), 1000)));
    let bad_name = sni_extension(&[b"evil test/\x00"]);
    assert!(malformed_tls(&records(&hello_body(Some(&bad_name)), 1000)));
}

#[test]
fn corrupted_lengths_are_malformed_not_panics() {
    for i in 5..OPENSSL.len() {
        for delta in [1u8, 0x80, 0xff] {
            let mut bytes = OPENSSL.to_vec();
            bytes[i] = bytes[i].wrapping_add(delta);
            // Anything is acceptable except a panic.
            let _ = classify(&bytes, MAX);
        }
    }
}

#[test]
fn garbage_and_non_handshake_records_are_opaque() {
    assert_eq!(classify(b"\x00\x01\x02\x03garbage", MAX), Some(Protocol::Opaque));
    assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2\r\n", MAX), Some(Protocol::Opaque));
    assert_eq!(classify(b"\x16\x7f\x01\x00\x05hello", MAX), Some(Protocol::Opaque));
    assert!(malformed_tls(b"\x16\x03\x01\x00\x00"));
    assert!(malformed_tls(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"));
    let mut state = 0x2545_f491_u32;
    for _ in 0..2000 {
        let len = (state % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[0]
            })
            .collect();
        let _ = classify(&bytes, MAX);
        let _ = classify(&[&[0x16, 3, 1][..], &bytes].concat(), MAX);
    }
}

#[test]
fn oversized_hello_is_rejected_at_the_bound() {
    let body = hello_body(Some(&sni_extension(&[b"big.test"])));
    assert_eq!(classify(&records(&body, 1000), MAX), tls(Some("big.test")));
    let small_bound = body.len();
    assert!(matches!(classify(&records(&body, 1000), small_bound), Some(Protocol::Malformed { tls: true, .. })));
}

#[test]
fn http_host_is_read_without_port() {
    let req = b"GET / HTTP/1.1\r\nUser-Agent: t\r\nHOST: Allowed.Test:8080\r\n\r\n";
    assert_eq!(classify(req, MAX), Some(Protocol::Http { host: Some("allowed.test".into()) }));
    let v6 = b"GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n";
    assert_eq!(classify(v6, MAX), Some(Protocol::Http { host: Some("2001:db8::1".into()) }));
    let old = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(classify(old, MAX), Some(Protocol::Http { host: None }));
}

#[test]
fn http_prefixes_wait_and_ambiguous_heads_are_malformed() {
    let req = b"POST /x HTTP/1.1\r\nHost: a.test\r\n\r\n";
    for end in 1..req.len() {
        assert_eq!(classify(&req[..end], MAX), None, "prefix of {end} bytes");
    }
    let malformed = |bytes: &[u8]| matches!(classify(bytes, MAX), Some(Protocol::Malformed { tls: false, .. }));
    assert!(malformed(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"));
    assert!(malformed(b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n"));
    assert!(malformed(b"GET / HTTP/1.1\r\nX: y\r\n folded\r\n\r\n"));
    assert!(malformed(b"GET / HTTP/2.0\r\n\r\n"));
    assert!(malformed(b"GET / HTTP/1.1\r\nHost: a.test:99999999\r\n\r\n"));
    assert!(matches!(classify(b"GET / HTTP/1.1\r\nX: y", 10), Some(Protocol::Malformed { tls: false, .. })));
    // HTTP/2 in the clear: the whole preface is h2c, a part of it waits,
    // anything else that says HTTP/2.0 is malformed.
    assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", MAX), Some(Protocol::H2c));
    assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nS", MAX), None);
    assert!(malformed(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"));
}

/// Whatever a server might read as a request is HTTP (decided per
/// request) or malformed (refused when inspecting), never opaque (spliced
/// past inspection): extension methods, any number of blank lines first,
/// methods in lower case, HTTP/0.9 and other versions.
#[test]
fn what_a_server_would_take_for_a_request_is_never_opaque() {
    let host = Some(Protocol::Http { host: Some("a.test".into()) });
    assert_eq!(classify(b"PROPFIND /x HTTP/1.1\r\nHost: a.test\r\n\r\n", MAX), host);
    assert_eq!(classify(b"QUERY-X_1 /x HTTP/1.0\r\nHost: a.test\r\n\r\n", MAX), host);
    let blank = [&b"\r\n".repeat(40)[..], b"GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n"].concat();
    assert_eq!(classify(&blank, MAX), host);
    assert_eq!(classify(&b"\r\n".repeat(40), MAX), None, "only blank lines: wait (bound, window)");
    // Refused: a method in lower case, HTTP/0.9, other separators and
    // versions, controls in the target; white space servers skip before
    // the method; what Node's llhttp serves without an HTTP version, or
    // with RTSP's or ICE's; a PROXY protocol header (v1, v2) before a
    // request.
    let refused: [&[u8]; 16] = [
        b"post /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"Post /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET /admin\r\n",
        b"GET\t/admin HTTP/1.1\r\n\r\n",
        b"GET  /admin HTTP/1.1\r\n\r\n",
        b"GET /admin http/1.1\r\n\r\n",
        b"GET /admin HTTP/1.2\r\n\r\n",
        b"X /a\x01b HTTP/1.1\r\n\r\n",
        b"\xa0GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b" GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"\x0bGET /admin\r\n",
        b"PROPFIND /x\r\nHost: evil.test\r\n\r\n",
        b"SETUP /x RTSP/1.0\r\nHost: evil.test\r\n\r\n",
        b"SOURCE /x ICE/1.0\r\n\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 80\r\nGET / HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c",
    ];
    for bytes in refused {
        let found = classify(bytes, MAX);
        assert!(matches!(found, Some(Protocol::Malformed { tls: false, .. })), "{bytes:?}: {found:?}");
    }
    // Opaque at once: lines no server reads as a request (an SSH banner,
    // Redis's RESP and inline commands, memcached's text protocol, SIP),
    // binary bytes (Postgres's startup, msgpack-rpc, Thrift compact), and
    // git://'s request (a lower-case word, then NUL bytes).
    let opaque: [&[u8]; 11] = [
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        b"SET key value\r\n",
        b"get some-key\r\n",
        b"NOTIFY sip:a@b.test SIP/2.0\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x94\x00\x01\xa8nvim_cmd\x91\xa0",
        b"\x82\x21\x01\x04ping\x00\x00\x00\x00\x00",
        b"\x82\x21\x01\x04ping\x00",
        b"0032git-upload-pack /repo.git\x00host=x\x00",
    ];
    for bytes in opaque {
        assert_eq!(classify(bytes, MAX), Some(Protocol::Opaque), "{bytes:?}");
    }
    // A request line on its way, or white space and a method in pieces:
    // wait for the line's end.
    for piece in [&b"PROPFIND /x"[..], b" ", b"\xa0", b"GET\x0c/adm", b"\tGET", b"PROPFIN", b"post /adm"] {
        assert_eq!(classify(piece, MAX), None, "{piece:?} waits for its line's end");
    }
    // A client-first protocol's word, sent alone, before its answer, is
    // relayed all but its end (it may be a lower-case method still
    // arriving, which Go and hyper take).
    for word in [&b"p"[..], b"JDWP-Handshake", b"hello", b"get"] {
        assert_eq!(classify(word, MAX), Some(Protocol::FirstLine), "{word:?}");
    }
    // An SSLv2-format hello (RFC 6101 appendix E.2) is TLS Bridle cannot
    // read (msgpack-rpc and Thrift compact above look alike, and are not).
    let sslv2 = [&b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"[..], &[0x11; 0x15], &[0x22; 0x10]].concat();
    assert!(malformed_tls(&sslv2));
    assert_eq!(classify(&sslv2[..6], MAX), None);
}

fn limits(window_ms: u64) -> DetectLimits {
    DetectLimits { window: Duration::from_millis(window_ms), max_bytes: MAX }
}

#[tokio::test]
async fn detect_reassembles_a_hello_split_across_writes() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        for chunk in OPENSSL.chunks(50) {
            tokio::io::AsyncWriteExt::write_all(&mut client, chunk).await.expect("write");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
    });
    let detected = detect(&mut server, limits(2000)).await.expect("detect");
    assert_eq!(detected.protocol, Protocol::Tls { sni: Some("api.example.test".into()) });
    assert_eq!(detected.bytes, OPENSSL);
    drop(writer.await.expect("writer"));
}

#[tokio::test]
async fn detect_silence_is_server_speaks_first_and_partial_is_malformed() {
    let (_client, mut server) = tokio::io::duplex(64);
    let detected = detect(&mut server, limits(50)).await.expect("detect");
    assert_eq!(detected.protocol, Protocol::ServerSpeaksFirst);
    let (mut client, mut server) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut client, &OPENSSL[..100]).await.expect("write");
    let detected = detect(&mut server, limits(50)).await.expect("detect");
    assert!(matches!(detected.protocol, Protocol::Malformed { tls: true, .. }));
    assert_eq!(detected.bytes, &OPENSSL[..100]);
}
