//! Helpers for tests/mcp_cli.rs and tests/mcp_http_cli.rs: a scratch
//! directory per test (policies, pins, audit, server log), the Python SDK
//! client, and a raw JSON-RPC pipe to `bridle mcp wrap`.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Longest any one client run may take (a hang fails the test, not CI).
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv Python with the MCP SDK.
pub fn python() -> String {
    let path = std::env::var("BRIDLE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/mcp-venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (installs the MCP Python SDK into target/mcp-venv)",
        path.display()
    );
    path.display().to_string()
}

/// An npm reference server's entry point: `mcp-server-<name>`, from
/// `$BRIDLE_TEST_MCP_<NAME>` or the cache `scripts/test.sh` fills.
pub fn reference_server(name: &str) -> String {
    let path = std::env::var(format!("BRIDLE_TEST_MCP_{}", name.to_ascii_uppercase()))
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(format!("target/mcp-npm/node_modules/.bin/mcp-server-{name}")));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (installs @modelcontextprotocol/server-{name})",
        path.display()
    );
    path.display().to_string()
}

pub fn helper(name: &str) -> String {
    root().join("tests/support/mcp").join(name).display().to_string()
}

pub use crate::support::Run;

/// One test's scratch directory.
pub struct Fixture {
    dir: tempfile::TempDir,
    policies: Option<PathBuf>,
}

impl Fixture {
    /// With `policy` as the whole policy set, or the built-in default set.
    pub fn new(policy: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = policy.map(|text| {
            let path = dir.path().join("policies");
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join("mcp.cedar"), text).expect("write policy");
            path
        });
        Fixture { dir, policies }
    }

    /// Replaces the policy set (the wrapper reloads it).
    pub fn write_policy(&self, text: &str) {
        let dir = self.policies.as_ref().expect("a fixture with its own policies");
        std::fs::write(dir.join("mcp.cedar"), text).expect("write policy");
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pins(&self) -> String {
        self.dir.path().join("pins").display().to_string()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit/mcp.jsonl")
    }

    /// `bridle mcp wrap` around the demo server in `variant`.
    pub fn wrap(&self, variant: &str, extra: &[&str]) -> Vec<String> {
        let log = self.dir.path().join("server.log").display().to_string();
        let server = [python(), helper("demo_server.py"), "--log".into(), log, "--variant".into(), variant.into()];
        let server: Vec<&str> = server.iter().map(String::as_str).collect();
        self.wrap_command("demo", extra, &server)
    }

    /// `bridle mcp wrap --name NAME … -- SERVER…`.
    pub fn wrap_command(&self, name: &str, extra: &[&str], server: &[&str]) -> Vec<String> {
        let mut command =
            vec![env!("CARGO_BIN_EXE_bridle").to_string(), "mcp".into(), "wrap".into(), "--name".into(), name.into()];
        command.extend(["--pins".into(), self.pins()]);
        command.extend(["--audit".into(), self.audit_path().display().to_string()]);
        if let Some(policies) = &self.policies {
            command.extend(["--policies".into(), policies.display().to_string()]);
        }
        command.extend(extra.iter().map(ToString::to_string));
        command.push("--".into());
        command.extend(server.iter().map(ToString::to_string));
        command
    }

    /// Runs the SDK client with `steps` against `command`; one JSON value
    /// per line it printed (the first is the server's identity).
    pub fn client(&self, steps: &[Value], command: &[String]) -> Vec<Value> {
        let mut transport = vec!["--".to_string()];
        transport.extend(command.iter().cloned());
        self.client_over(steps, &transport)
    }

    /// Runs the SDK client with `steps` over `transport` (`-- CMD…`,
    /// `--streamable-http URL` or `--sse URL`).
    pub fn client_over(&self, steps: &[Value], transport: &[String]) -> Vec<Value> {
        let mut child = Command::new(python())
            .arg(helper("client.py"))
            .arg(Value::Array(steps.to_vec()).to_string())
            .args(transport)
            .current_dir(self.dir.path())
            .env("BRIDLE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the MCP client");
        let deadline = Instant::now() + CLIENT_DEADLINE;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "the MCP client hung\n{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<Value> = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        assert!(
            lines.first().is_some_and(|first| first.get("server").is_some()),
            "the client did not connect\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        lines
    }

    /// Runs `bridle ARGS` in the scratch directory.
    pub fn bridle(&self, args: &[&str]) -> Run {
        crate::support::bridle_in(self.dir.path(), args)
    }

    /// `command` on raw pipes; its stderr goes to `wrap.stderr` here.
    pub fn raw(&self, command: &[String]) -> Raw {
        Raw::spawn(command, &self.dir.path().join("wrap.stderr"))
    }

    /// What the demo server logged (one JSON object per tool call).
    pub fn server_log(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("log line")).collect()
    }

    /// Every record of the audit log.
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_path()).expect("audit log");
        text.lines().map(|line| serde_json::from_str(line).expect("audit record")).collect()
    }
}

/// `bridle mcp wrap` on raw pipes.
pub struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Raw {
    pub fn spawn(command: &[String], stderr: &Path) -> Self {
        let stderr = std::fs::File::create(stderr).expect("stderr file");
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .env("BRIDLE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start bridle mcp wrap");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Raw { child, stdin, lines }
    }

    pub fn send(&mut self, message: &Value) {
        self.send_text(&message.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write to bridle");
        stdin.flush().expect("flush");
    }

    pub fn recv(&mut self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(20)).expect("an answer within 20s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal bridle");
    }

    /// Closes bridle's stdin and returns its exit code.
    pub fn finish(mut self) -> i32 {
        self.stdin.take();
        self.wait(Duration::from_secs(20))
    }

    pub fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "bridle did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The MCP handshake, as a client does it.
pub fn init_lines(raw: &mut Raw) {
    raw.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "1"}}}));
    let answer = raw.recv();
    assert!(answer["result"]["serverInfo"]["name"].is_string(), "{answer}");
    raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
}
