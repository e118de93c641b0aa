//! MCP inside proxied HTTP: an agent under `bridle run` talks streamable
//! HTTP to an MCP server Bridle was not told about (no `[[mcp.servers]]`),
//! with the official Python SDK as client and FastMCP as server. The proxy
//! finds the JSON-RPC in the agent's requests and the gateway's own code
//! decides every message. Everything runs inside a network namespace this
//! test creates (the server on 198.51.100.7:8000, names from a test DNS
//! authority), as root, with the real kernel programs.

#[path = "support/mcp/mod.rs"]
mod mcp;
#[path = "support/net.rs"]
mod net;
mod support;
#[path = "support/tls_upstream.rs"]
#[allow(dead_code, reason = "only its test PKI is used here")]
mod tls_upstream;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Run, write_files};

const POLICIES: &str = r#"
@id("net") @reason("the MCP host is approved")
permit(principal, action, resource in Net::Domain::"mcp.allowed.test");

@id("mcp") @reason("tools of mcp.allowed.test are allowed")
permit(principal, action in [Mcp::Action::"CallTool", Mcp::Action::"ListTools",
                             Mcp::Action::"ReadResource", Mcp::Action::"GetPrompt"],
       resource in Mcp::Server::"mcp.allowed.test");

@id("no-drop") @reason("dropping databases needs a DBA")
forbid(principal, action == Mcp::Action::"CallTool", resource)
when { resource.server == "mcp.allowed.test" && resource.name == "drop_database" };

@id("no-ssh-notes") @reason("notes under ~/.ssh are off limits")
forbid(principal, action == Mcp::Action::"CallTool", resource)
when { context.arguments has path && context.arguments.path like "*/.ssh/*" };

@id("other") @reason("mcp.other.test is approved")
permit(principal, action, resource in Net::Domain::"mcp.other.test");

@id("account") @reason("mcp.other.test's account tool is allowed")
permit(principal, action == Mcp::Action::"CallTool", resource)
when { resource.server == "mcp.other.test" && resource.name == "account" };

@id("other-list") @reason("mcp.other.test's tools may be listed")
permit(principal, action == Mcp::Action::"ListTools", resource in Mcp::Server::"mcp.other.test");

@id("quiet-while-slow") @reason("nothing else goes out while the slow tool runs")
forbid(principal, action == Net::Action::"Connect", resource in Net::Domain::"mcp.other.test")
when { context has mcp && context.mcp.tool == "slow" };

@id("stdio-demo") @reason("the wrapped demo server's tools are allowed")
permit(principal, action in [Mcp::Action::"CallTool", Mcp::Action::"ListTools"], resource in Mcp::Server::"demo");

@id("ask-before-drop") @ask @reason("dropping a database needs a person's approval")
forbid(principal, action == Mcp::Action::"CallTool", resource)
when { resource.server == "demo" && resource.name == "drop_database" };

@id("fetch-stays-home") @reason("the demo server's fetch tool may not reach mcp.other.test")
forbid(principal, action == Net::Action::"Connect", resource in Net::Domain::"mcp.other.test")
when { context has mcp && context.mcp.server == "demo" && context.mcp.tool == "fetch" };
"#;

/// A credential the MCP servers hold (and repeat); Bridle's `account` secret.
const ACCOUNT_KEY: &str = "acct-live-5b8e1f0c9d2a7346";

struct Net {
    name: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Net {
    fn new(tag: &str) -> Net {
        let name = format!("bridle-mcpi-{tag}-{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        // The HTTPS server's certificate comes from a test CA only Bridle trusts.
        let pki = tls_upstream::TestPki::new(&["mcp.allowed.test"]);
        // mcp.other.test's servers hold ACCOUNT_KEY (their `account` tool
        // repeats it): Bridle masks it in every answer from there.
        let config = format!(
            "[dns]\nupstreams = [\"127.0.0.1:5353\"]\n\n[tls]\nca_dir = \"{}\"\nupstream_ca_bundle = \"{}\"\n\n\
             [[secrets]]\nname = \"account\"\nfile = \"{}\"\nhosts = [\"mcp.other.test\"]\nheader = \"x-account\"\n",
            dir.path().join("ca").display(),
            dir.path().join("public-ca.pem").display(),
            dir.path().join("account.key").display(),
        );
        write_files(
            dir.path(),
            &[
                ("pol/p.cedar", POLICIES),
                ("bridle.toml", &config),
                ("public-ca.pem", &pki.ca_pem),
                ("server.pem", &pki.cert_pem),
                ("server.key", &pki.key_pem),
                ("account.key", ACCOUNT_KEY),
            ],
        );
        net::make_netns(&name);
        let authority = net::start_authority(&name, "127.0.0.1", "5353", &["mcp.allowed.test", "mcp.other.test"]);
        let mut net = Net { name, dir, children: vec![authority] };
        net.start_server(8000, &[]);
        let (cert, key) = (net.dir.path().join("server.pem"), net.dir.path().join("server.key"));
        net.start_server(8443, &["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()]);
        // The agent (nobody) reads everything and makes files of its own in
        // the directory (a wrapper's pins and log; the servers' shared log),
        // which is sticky: it can replace neither the config nor the
        // policies, or Bridle would refuse to guard it.
        std::fs::create_dir_all(net.dir.path().join("ca")).expect("Bridle's CA directory, root's");
        // And the audit log's: root writes it, so it may not sit where the
        // agent can make or swap files.
        std::fs::create_dir_all(net.dir.path().join("audit")).expect("the audit log's directory, root's");
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(net.dir.path()).status();
        let _ = Command::new("chmod").arg("1777").arg(net.dir.path()).status();
        let _ = Command::new("chmod").arg("a+rw").arg(net.dir.path().join("server.log")).status();
        net
    }

    /// FastMCP over streamable HTTP on 198.51.100.7:`port` (plus `extra`
    /// arguments: a later `--transport` wins), inside the namespace; all
    /// servers log to one file.
    fn start_server(&mut self, port: u16, extra: &[&str]) {
        let log = self.dir.path().join("server.log");
        let stderr = std::fs::File::create(self.dir.path().join(format!("server-{port}.stderr"))).expect("stderr");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, &mcp::python(), &mcp::helper("demo_server.py")])
            .env("DEMO_ACCOUNT_KEY", ACCOUNT_KEY)
            .args(["--log", &log.display().to_string(), "--transport", "streamable-http"])
            .args(["--host", "198.51.100.7", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the demo server");
        self.children.push(child);
        let probe = format!("import socket; socket.create_connection(('198.51.100.7', {port}), 1).close()");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.name, "python3", "-c", &probe])
                .stderr(Stdio::null())
                .status();
            if ok.is_ok_and(|s| s.success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the demo server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit/audit.jsonl")
    }

    /// The SDK client, as `nobody` under `bridle run`, with `steps` against
    /// `url` over `transport` (`--streamable-http`, `--sse`).
    fn client(&self, steps: &[Value], transport: &str, url: &str) -> (Run, Vec<Value>) {
        let steps = Value::Array(steps.to_vec()).to_string();
        let run = self.run(&[&mcp::python(), &mcp::helper("client.py"), &steps, transport, url]);
        let lines = run.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        (run, lines)
    }

    /// `command` as `nobody` under `bridle run`, in the namespace.
    fn run(&self, command: &[&str]) -> Run {
        let output = net::guarded_run(&self.name, self.dir.path(), &self.audit())
            .arg("--")
            .args(command)
            .current_dir(self.dir.path())
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env_remove("SUDO_UID")
            .output()
            .expect("run bridle");
        Run::from(output)
    }

    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit()).expect("audit log");
        text.lines().map(|l| serde_json::from_str::<Value>(l).expect("json")).collect()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `ip netns exec` leaves the python server behind when killed.
        let _ = Command::new("ip").args(["netns", "pids", &self.name]).output().map(|out| {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn call(name: &str, args: Value) -> Value {
    json!({"op": "call", "name": name, "args": args})
}

/// Connect decisions recorded for `name`, in order.
fn connects_to<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "decision" && r["event"]["kind"] == "net.connect")
        .filter(|r| r["event"]["detail"]["name"] == name)
        .collect()
}

/// MCP decisions recorded for client → server messages of `method`.
fn mcp_decisions<'a>(records: &'a [Value], method: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["type"] == "decision"
                && r["event"]["kind"] == "mcp.message"
                && r["event"]["detail"]["direction"] == "to-server"
                && r["event"]["detail"]["message"]["method"] == method
        })
        .collect()
}

#[test]
fn mcp_in_proxied_http_is_decided_message_by_message() {
    let net = Net::new("calls");
    inline_calls_are_decided(&net, "--streamable-http", "http://mcp.allowed.test:8000/mcp");
}

/// The same over TLS: the proxy intercepts it with Bridle's CA (which the
/// SDK's HTTP client trusts through `SSL_CERT_FILE`) and verifies the
/// server against the test CA.
#[test]
fn mcp_in_intercepted_https_is_decided_message_by_message() {
    let net = Net::new("tls");
    inline_calls_are_decided(&net, "--streamable-http", "https://mcp.allowed.test:8443/mcp");
    let records = net.records();
    let https = records
        .iter()
        .filter(|r| r["event"]["kind"] == "http.request")
        .filter(|r| r["event"]["detail"]["scheme"] == "https")
        .count();
    assert!(https >= 5, "the POSTs were intercepted HTTPS requests ({https})");
}

/// The legacy HTTP+SSE transport: a legacy client reads its answers from
/// the event stream of its GET, so that stream goes through the same core
/// as its POSTs (results checked, the tool list filtered, denials
/// answered there).
#[test]
fn mcp_over_legacy_sse_is_decided_and_its_stream_inspected() {
    let mut net = Net::new("sse");
    net.start_server(8001, &["--transport", "sse"]);
    inline_calls_are_decided(&net, "--sse", "http://mcp.allowed.test:8001/sse");
    legacy_stream_was_inspected(&net.records());
}

/// A legacy server that names its endpoint late (after another event and
/// a pause) is inspected all the same: an event stream is watched to its
/// end, not judged by its first event.
#[test]
fn a_legacy_stream_that_names_its_endpoint_late_is_inspected_all_the_same() {
    let mut net = Net::new("ssel");
    net.start_server(8002, &["--transport", "sse", "--sse-stall", "3"]);
    inline_calls_are_decided(&net, "--sse", "http://mcp.allowed.test:8002/sse");
    legacy_stream_was_inspected(&net.records());
}

/// An event stream Bridle cannot read on the way (compressed, though
/// Bridle asked for it uncompressed) does not reach the agent: 502, and
/// a notice says why.
#[test]
fn a_compressed_event_stream_is_refused_not_passed_on() {
    let mut net = Net::new("ssez");
    net.start_server(8003, &["--transport", "sse", "--sse-gzip"]);
    let (run, out) = net.client(&[call("add", json!({"a": 2, "b": 3}))], "--sse", "http://mcp.allowed.test:8003/sse");
    assert!(out.iter().all(|line| line.get("server").is_none()), "no session was opened: {}", run.all());
    assert!(out.iter().any(|line| line.get("closed").is_some()), "{}", run.all());
    assert!(!net.server_log().contains("add"), "no call reached the server: {}", net.server_log());
    let records = net.records();
    let refused = records.iter().filter(|r| r["type"] == "notice").any(|n| {
        n["message"].as_str().is_some_and(|m| m.contains("mcp.allowed.test/sse") && m.contains("encoded as \"gzip\""))
    });
    assert!(refused, "{records:#?}");
}

/// The allowed calls' answers came through the core, on the stream it
/// recognised, and no POST was taken for one left unanswered.
fn legacy_stream_was_inspected(records: &[Value]) {
    let answers = records
        .iter()
        .filter(|r| r["event"]["kind"] == "mcp.message" && r["event"]["detail"]["direction"] == "to-client")
        .filter(|r| r["event"]["detail"]["message"]["method"] == "tools/call")
        .count();
    assert_eq!(answers, 2, "the allowed calls' results came through the core");
    let notices: Vec<&Value> = records.iter().filter(|r| r["type"] == "notice").collect();
    assert!(
        notices.iter().any(|n| n["message"].as_str().is_some_and(|m| m.contains("HTTP+SSE"))),
        "the stream was recognised: {notices:#?}"
    );
    assert!(
        // The gateway's words for it; a bare "202" also matched a session
        // pid (run-20266) in CI.
        !notices.iter().any(|n| n["message"].as_str().is_some_and(|m| m.contains("(HTTP 202)"))),
        "no call was taken for unanswered: {notices:#?}"
    );
}

/// Lists, an allowed call, two denied ones and another allowed one against
/// `url` over `transport`.
fn inline_calls_are_decided(net: &Net, transport: &str, url: &str) {
    // A body past the proxy's 64 KiB window reaches the gateway whole: what
    // is decided on comes after the window (one argument: argv's limit).
    let long_ssh = format!("/home/dev/{}/.ssh/id_rsa", "a".repeat(80_000));
    let steps = [
        json!({"op": "list"}),
        call("add", json!({"a": 2, "b": 3})),
        call("drop_database", json!({"name": "prod"})),
        call("read_notes", json!({"path": "/home/dev/.ssh/id_rsa"})),
        call("read_notes", json!({"path": "/home/dev/todo.txt"})),
        call("read_notes", json!({"path": long_ssh})),
    ];
    let (run, out) = net.client(&steps, transport, url);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(out.first().is_some_and(|first| first.get("server").is_some()), "{}", run.all());
    let tools: Vec<&str> = out[1]["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"add") && !tools.contains(&"drop_database"), "forbidden tools are hidden: {tools:?}");
    assert_eq!(out[2]["text"], "5", "{}", run.all());
    assert_eq!(out[3]["error"]["code"], -32001, "{}", run.all());
    assert!(out[3]["error"]["message"].as_str().is_some_and(|m| m.contains("needs a DBA")), "{}", run.all());
    assert_eq!(out[3]["error"]["data"]["policy"], "no-drop");
    assert_eq!(out[4]["error"]["code"], -32001, "arguments are in the context: {}", run.all());
    assert_eq!(out[5]["text"], "notes from /home/dev/todo.txt", "{}", run.all());
    assert_eq!(out[6]["error"]["code"], -32001, "the end of a long body is decided on too: {}", out[6]);

    let log = net.server_log();
    assert!(log.contains(r#""tool": "add""#), "{log}");
    assert!(!log.contains("drop_database") && !log.contains(".ssh"), "denied calls never reach the server: {log}");

    let records = net.records();
    let calls = mcp_decisions(&records, "tools/call");
    let effects: Vec<&str> = calls.iter().filter_map(|r| r["decision"]["effect"].as_str()).collect();
    assert_eq!(effects, ["allow", "deny", "deny", "allow", "deny"], "{calls:#?}");
    assert!(calls.iter().all(|r| r["event"]["detail"]["server"] == "mcp.allowed.test"), "{calls:#?}");
    assert!(!mcp_decisions(&records, "tools/list").is_empty(), "tools/list is decided too");
    let http = records.iter().filter(|r| r["event"]["kind"] == "http.request").count();
    assert!(http >= 5, "each POST is an HTTP request decision as well ({http})");
    let pins = net.dir.path().join("state/bridle/mcp-pins/mcp.allowed.test.json");
    assert!(pins.exists(), "tools are pinned under the host's name");
    let verify = support::bridle(&["audit", "verify", net.audit().to_str().expect("utf-8")]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// A credential an MCP server holds and repeats in a tool's answer reaches
/// the agent masked: the answer comes from a host Bridle's `account` secret
/// may go to, through the gateway's inline session.
#[test]
fn a_secret_an_mcp_server_repeats_reaches_the_agent_masked() {
    let net = Net::new("mask");
    let (run, out) = net.client(&[call("account", json!({}))], "--streamable-http", "http://mcp.other.test:8000/mcp");
    assert_eq!(run.code, 0, "{}", run.all());
    let mask = format!("bridle-secret-account{}", "*".repeat(ACCOUNT_KEY.len() - "bridle-secret-account".len()));
    assert_eq!(out[1]["text"], format!("account key {mask}"), "{}", run.all());
    assert!(!run.all().contains(ACCOUNT_KEY), "{}", run.all());
    assert!(net.server_log().contains(r#""tool": "account""#), "the call reached the server");
    let records = net.records();
    let masked = records
        .iter()
        .filter_map(|r| r["message"].as_str())
        .any(|m| m.contains("mcp.other.test/mcp: the answer held the value of secret(s) account; masked"));
    assert!(masked, "{records:#?}");
}

/// While a tool call is in flight, what the agent does carries
/// `context.mcp`: a connect policy forbids only during the `slow` call, and
/// the audit record names the call.
#[test]
fn connects_during_a_tool_call_carry_the_call() {
    let net = Net::new("corr");
    let steps = json!([{"op": "call", "name": "slow", "args": {"seconds": 4}}]).to_string();
    let script = format!(
        "{python} {client} '{steps}' --streamable-http http://mcp.allowed.test:8000/mcp > slow.out &\n\
         for i in $(seq 200); do grep -q '\"tool\": \"slow\"' server.log && break; sleep 0.05; done\n\
         curl -sS -o /dev/null -w 'during=%{{http_code}}\\n' http://mcp.other.test:8000/x\n\
         wait\n\
         curl -sS -o /dev/null -w 'after=%{{http_code}}\\n' http://mcp.other.test:8000/x\n\
         cat slow.out\n",
        python = mcp::python(),
        client = mcp::helper("client.py"),
    );
    let run = net.run(&["sh", "-c", &script]);
    let out = &run.stdout;
    assert!(out.contains("during=000"), "refused while the call ran: {}", run.all());
    assert!(out.contains("after=404"), "allowed once it answered: {}", run.all());
    assert!(out.contains(r#""text": "done""#), "the call itself completed: {}", run.all());

    let records = net.records();
    let connects = connects_to(&records, "mcp.other.test");
    assert_eq!(connects.len(), 2, "{connects:#?}");
    assert_eq!(connects[0]["decision"]["effect"], "deny");
    assert_eq!(connects[0]["decision"]["policies"][0], "quiet-while-slow");
    assert_eq!(connects[0]["event"]["mcp"]["server"], "mcp.allowed.test");
    assert_eq!(connects[0]["event"]["mcp"]["tool"], "slow");
    assert!(connects[0]["event"]["mcp"]["call_id"].is_string());
    assert_eq!(connects[1]["decision"]["effect"], "allow");
    assert!(connects[1]["event"].get("mcp").is_none(), "{:#?}", connects[1]);
}

/// `bridle mcp wrap -- demo server` inside `bridle run`, as the SDK
/// client's stdio server.
fn wrapped(dir: &std::path::Path) -> String {
    format!(
        "{bridle} mcp wrap --name demo --policies {pol} --pins {dir}/wrap-pins --audit {dir}/wrap.jsonl -- \
         {python} {server} --log {dir}/server.log",
        bridle = env!("CARGO_BIN_EXE_bridle"),
        pol = dir.join("pol").display(),
        dir = dir.display(),
        python = mcp::python(),
        server = mcp::helper("demo_server.py"),
    )
}

/// A stdio server wrapped by `bridle mcp wrap` inside the session: the
/// wrapper reports its calls to the session, so the server's own connect
/// during `fetch` is decided with `context.mcp` and refused, while the
/// same connect by the agent afterwards is allowed.
#[test]
fn a_wrapped_stdio_servers_own_connects_carry_its_call() {
    let net = Net::new("stdio");
    let dir = net.dir.path();
    let steps = json!([{"op": "call", "name": "fetch", "args": {"url": "http://mcp.other.test:8000/x"}}]).to_string();
    let wrap = wrapped(dir);
    let script = format!(
        "{python} {client} '{steps}' -- {wrap}\n\
         curl -sS -o /dev/null -w 'agent=%{{http_code}}\\n' http://mcp.other.test:8000/x\n",
        python = mcp::python(),
        client = mcp::helper("client.py"),
    );
    let run = net.run(&["sh", "-c", &script]);
    let out = &run.stdout;
    assert!(out.contains(r#""text": "failed: "#), "the server's own connect was refused: {}", run.all());
    assert!(out.contains("agent=404"), "the agent's connect after the call is allowed: {}", run.all());

    let records = net.records();
    let connects = connects_to(&records, "mcp.other.test");
    assert!(connects.len() >= 2, "{connects:#?}");
    let during = connects[0];
    assert_eq!(during["decision"]["effect"], "deny", "{during:#}");
    assert_eq!(during["decision"]["policies"][0], "fetch-stays-home");
    assert_eq!(during["event"]["mcp"]["server"], "demo");
    assert_eq!(during["event"]["mcp"]["tool"], "fetch");
    let after = connects.last().expect("the agent's connect");
    assert_eq!(after["decision"]["effect"], "allow");
    assert!(after["event"].get("mcp").is_none(), "{after:#}");
}

/// The wrapper runs as the agent's user, so its `@ask` waits in the
/// session's approvals broker, where root's `bridle approve` / `bridle
/// deny` answer it.
#[test]
fn a_wrapped_servers_ask_is_answered_by_bridle_approve_in_the_session() {
    let net = Net::new("ask");
    let steps = json!([
        {"op": "call", "name": "drop_database", "args": {"name": "scratch"}},
        {"op": "call", "name": "drop_database", "args": {"name": "prod"}},
    ])
    .to_string();
    let script = format!(
        "{python} {client} '{steps}' -- {wrap}\n",
        python = mcp::python(),
        client = mcp::helper("client.py"),
        wrap = wrapped(net.dir.path()),
    );
    let run = std::thread::scope(|scope| {
        let run = scope.spawn(|| net.run(&["sh", "-c", &script]));
        let first = support::wait_for_approval("drop_database");
        let answered = support::bridle(&["approve", &first, "--by", "tester"]);
        assert_eq!(answered.code, 0, "{}", answered.all());
        let mut second = support::wait_for_approval("drop_database");
        for _ in 0..50 {
            if second != first {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            second = support::wait_for_approval("drop_database");
        }
        let answered = support::bridle(&["deny", &second, "--by", "tester"]);
        assert_eq!(answered.code, 0, "{}", answered.all());
        run.join().expect("session thread")
    });
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(r#""text": "dropped scratch""#), "approved: {}", run.all());
    assert!(run.stdout.contains(r#""code": -32001"#), "denied: {}", run.all());
    let log = net.server_log();
    assert!(log.contains("scratch") && !log.contains("prod"), "{log}");
    let text = std::fs::read_to_string(net.audit()).expect("session audit");
    assert!(text.contains("approved by tester"), "the session's log records the answer: {text}");
}

/// An `initialize` POSTed by hand, with no MCP header, the `jsonrpc` key
/// last; `padded` puts 100 kB before it (past the proxy's first look),
/// `trickled` sends the first bytes, then pauses past the look's wait,
/// `held` sends no byte of the body until after that wait.
const HAND_MADE: &str = r#"
import http.client, json, sys, time
pad = "x" * 100_000 if sys.argv[1] == "padded" else ""
params = {"_pad": pad, "protocolVersion": "2025-06-18", "capabilities": {},
          "clientInfo": {"name": "by-hand", "version": "1"}}
body = json.dumps({"id": 1, "method": "initialize", "params": params, "jsonrpc": "2.0"}).encode()
c = http.client.HTTPConnection("mcp.allowed.test", 8000, timeout=20)
c.putrequest("POST", "/mcp")
for k, v in [("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
             ("content-length", str(len(body)))]:
    c.putheader(k, v)
c.endheaders()
if sys.argv[1] == "padded":
    c.send(body)
elif sys.argv[1] == "trickled":
    c.send(body[:8]); time.sleep(3); c.send(body[8:])
else:
    time.sleep(3); c.send(body)
r = c.getresponse()
print("status", r.status)
"#;

/// Where the sender puts the `jsonrpc` key, or how slowly it sends the
/// first bytes, does not turn an MCP message into plain HTTP: each hand-made
/// `initialize` (each in a session of its own, where the host was never
/// seen speaking MCP) is found and handed to the gateway.
#[test]
fn mcp_is_found_however_late_the_jsonrpc_key_comes() {
    let net = Net::new("late");
    for shape in ["padded", "trickled", "held"] {
        let run = net.run(&["python3", "-c", HAND_MADE, shape]);
        assert!(run.stdout.contains("status 200"), "{shape}: {}", run.all());
    }
    let found = net
        .records()
        .iter()
        .filter_map(|r| r["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains("MCP traffic to mcp.allowed.test seen in proxied HTTP"))
        .count();
    assert_eq!(found, 3, "each was inspected as MCP: {:#?}", net.records());
}
