//! Helpers for tests/mcp_http_cli.rs: the demo server over streamable
//! HTTP or SSE on a loopback port, `bridle mcp serve` in front of it, and a
//! small blocking HTTP/1.1 client for the requests the SDK will not make
//! (batches, bad input). Loopback only.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mcp::{Fixture, helper, python};

/// How long a server may take to listen.
const START: Duration = Duration::from_secs(30);

/// A port free on 127.0.0.1 right now, never handed out twice in this
/// test process, and below the kernel's ephemeral range. Its listener is
/// closed before a server binds it, so a port from `bind(0)` could be
/// given again to a test running in parallel, or taken as the source port
/// of an outgoing connection, in the meantime: then one test's gateway
/// talks to another test's server.
pub fn free_port() -> u16 {
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let floor = 10_000u32;
    let span = ephemeral_low().saturating_sub(floor).max(1_000);
    let start = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left below the ephemeral range");
        let port = u16::try_from(floor + (start + n) % span).expect("below 65536");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// The lowest port the kernel picks for `bind(0)` and outgoing connections.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + START;
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("{what} exited ({status}) before listening on {port}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within {START:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One upstream server the gateway fronts, as `[[mcp.servers]]` names it.
pub struct Upstream {
    pub name: &'static str,
    pub url: String,
    pub transport: &'static str,
}

/// The demo server over HTTP and `bridle mcp serve` before it.
pub struct Gateway {
    pub fx: Fixture,
    pub port: u16,
    pub upstream_port: u16,
    transport: &'static str,
    server: Option<Child>,
    serve: Option<Child>,
}

impl Gateway {
    /// The demo server (`variant`, `transport`, plus `server_args`) behind
    /// `bridle mcp serve` with `policy`, `toml` (whole sections) and `mcp`
    /// (more `[mcp]` keys) in its config; `others` are more servers in it.
    pub fn start(
        policy: Option<&str>,
        variant: &str,
        transport: &'static str,
        server_args: &[&str],
        toml: &str,
        mcp: &str,
        others: &[Upstream],
    ) -> Self {
        let fx = Fixture::new(policy);
        let upstream_port = free_port();
        let port = free_port();
        let mut gateway = Gateway { fx, port, upstream_port, transport, server: None, serve: None };
        gateway.start_server(variant, server_args);
        let path = if transport == "sse" { "/sse" } else { "/mcp" };
        let mut config = format!(
            "{toml}\n[mcp]\nlisten = \"127.0.0.1:{port}\"\n{mcp}\n\n[[mcp.servers]]\nname = \"demo\"\nurl = \"http://127.0.0.1:{upstream_port}{path}\"\ntransport = \"{transport}\"\n"
        );
        for other in others {
            config.push_str(&format!(
                "\n[[mcp.servers]]\nname = \"{}\"\nurl = \"{}\"\ntransport = \"{}\"\n",
                other.name, other.url, other.transport
            ));
        }
        std::fs::write(gateway.fx.path().join("bridle.toml"), config).expect("write bridle.toml");
        gateway.start_serve();
        gateway
    }

    /// (Re)starts the demo server on the same port.
    pub fn start_server(&mut self, variant: &str, extra: &[&str]) {
        self.stop_server();
        let log = self.fx.path().join("server.log");
        let stderr = std::fs::File::create(self.fx.path().join("server.stderr")).expect("stderr file");
        let mut child = Command::new(python())
            .arg(helper("demo_server.py"))
            .args(["--log", &log.display().to_string(), "--variant", variant, "--transport", self.transport])
            .args(["--port", &self.upstream_port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the demo server");
        wait_for_port(self.upstream_port, &mut child, "the demo server");
        self.server = Some(child);
    }

    /// Kills the demo server (it answers nothing more).
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start_serve(&mut self) {
        let stderr = std::fs::File::create(self.fx.path().join("serve.stderr")).expect("stderr file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_bridle"));
        command
            .args(["mcp", "serve", "--config", "bridle.toml", "--pins", &self.fx.pins()])
            .args(["--audit", &self.fx.audit_path().display().to_string()])
            .current_dir(self.fx.path())
            .env("BRIDLE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        let policies = self.fx.path().join("policies");
        if policies.is_dir() {
            command.arg("--policies").arg(policies);
        }
        let mut child = command.spawn().expect("start bridle mcp serve");
        wait_for_port(self.port, &mut child, "bridle mcp serve");
        self.serve = Some(child);
    }

    /// `http://127.0.0.1:<port>/mcp/demo`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp/demo", self.port)
    }

    /// The SDK client over this gateway's transport.
    pub fn client(&self, steps: &[Value]) -> Vec<Value> {
        let flag = if self.transport == "sse" { "--sse" } else { "--streamable-http" };
        self.fx.client_over(steps, &[flag.to_string(), self.url()])
    }

    /// One raw HTTP request to the gateway.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.port, method, path, headers, body)
    }

    /// A streamable-HTTP session, initialized: its `Mcp-Session-Id`.
    pub fn initialize(&self) -> String {
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "1"}}});
        let response = self.post(None, &init.to_string());
        assert_eq!(response.status, 200, "{response:?}");
        let session = response.header("mcp-session-id").expect("a session id").to_string();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(self.post(Some(&session), initialized).status, 202);
        session
    }

    /// A JSON-RPC POST in `session`.
    pub fn post(&self, session: Option<&str>, body: &str) -> Response {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
        }
        self.request("POST", "/mcp/demo", &headers, body.as_bytes())
    }

    /// Stops `bridle mcp serve` with SIGTERM; its exit code.
    pub fn stop(&mut self) -> i32 {
        let Some(mut child) = self.serve.take() else { return -1 };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal bridle");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "bridle mcp serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `bridle mcp serve`'s stderr so far.
    pub fn serve_stderr(&self) -> String {
        std::fs::read_to_string(self.fx.path().join("serve.stderr")).unwrap_or_default()
    }

    pub fn audit_file(&self) -> PathBuf {
        self.fx.audit_path()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for child in [self.serve.take(), self.server.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response, body read to the end (de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON data of each `message` event of an event-stream body.
    pub fn events(&self) -> Vec<Value> {
        let text = String::from_utf8_lossy(&self.body);
        text.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).expect("event data is JSON"))
            })
            .collect()
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the gateway");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    head.push_str(&format!("content-length: {}\r\n", body.len()));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse(&raw)
}

/// Only the status and headers of a response whose body may never end.
pub fn request_head(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the gateway");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read the head");
        assert!(n == 1, "connection closed inside the head: {:?}", String::from_utf8_lossy(&raw));
        raw.push(byte[0]);
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A long-lived event-stream response read as it comes (chunked).
pub struct EventStream {
    reader: std::io::BufReader<TcpStream>,
    buffer: Vec<u8>,
}

impl EventStream {
    /// `GET path` with `accept: text/event-stream`; panics unless it is 200.
    pub fn open(port: u16, path: &str) -> Self {
        use std::io::BufRead as _;
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the gateway");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        let mut reader = std::io::BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            assert!(!line.to_ascii_lowercase().starts_with("content-length"), "expected a chunked stream: {line}");
        }
        EventStream { reader, buffer: Vec::new() }
    }

    /// The next event: (name, data).
    pub fn next(&mut self) -> (String, String) {
        use std::io::BufRead as _;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                let name = event.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("message").to_string();
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                return (name, data.join("\n"));
            }
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0u8; size + 2];
            self.reader.read_exact(&mut chunk).expect("chunk");
            self.buffer.extend_from_slice(&chunk[..size]);
        }
    }

    /// The next `message` event's JSON.
    pub fn message(&mut self) -> Value {
        loop {
            let (name, data) = self.next();
            if name == "message" {
                return serde_json::from_str(&data).expect("event data is JSON");
            }
        }
    }
}
