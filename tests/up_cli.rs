//! `bridle up` (the appliance) end to end, as root, with the real kernel
//! programs on the cgroup root.
//!
//! Two network namespaces this test creates: the appliance's (Bridle and
//! the "agent" commands, joined with `nsenter --net`, which keeps the host's
//! cgroup and bpffs mounts) and an "internet" one holding the HTTP server
//! and the DNS authority on 198.51.100.7, linked by a veth pair and nothing
//! else. A redirection bug fails the test instead of sending a packet.

#[path = "support/net.rs"]
mod net;
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::write_files;

const POLICIES: &str = r#"
@id("allowed") @reason("allowed.test is approved")
permit(principal, action, resource in Net::Domain::"allowed.test");

@id("denied") @reason("denied.test is off limits")
forbid(principal, action, resource in Net::Domain::"denied.test");

@id("no-8443") @reason("port 8443 is closed to agents")
forbid(principal, action, resource) when { resource has port && resource.port == 8443 };
"#;

struct Appliance {
    /// The appliance's namespace, where Bridle and the agent run.
    ns: String,
    /// The "internet": HTTP and DNS on 198.51.100.7.
    inet: String,
    servers: Vec<Child>,
    bridle: Option<Child>,
    dir: tempfile::TempDir,
}

impl Appliance {
    fn new() -> Appliance {
        let id = std::process::id();
        let (ns, inet) = (format!("bridle-up-{id}"), format!("bridle-inet-{id}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "[dns]\nupstreams = [\"198.51.100.7:5353\"]\n\n[tls]\nca_dir = \"{}\"\n",
            dir.path().join("ca").display()
        );
        write_files(
            dir.path(),
            &[("www/hello.txt", "hello from upstream\n"), ("pol/p.cedar", POLICIES), ("bridle.toml", &config)],
        );
        let (veth_a, veth_i) = (format!("bua{id}"), format!("bui{id}"));
        for netns in [&ns, &inet] {
            sh(&["ip", "netns", "add", netns]);
            sh(&["ip", "-n", netns, "link", "set", "lo", "up"]);
        }
        sh(&["ip", "link", "add", &veth_a, "netns", &ns, "type", "veth", "peer", "name", &veth_i, "netns", &inet]);
        sh(&["ip", "-n", &ns, "addr", "add", "198.51.100.1/24", "dev", &veth_a]);
        sh(&["ip", "-n", &inet, "addr", "add", "198.51.100.7/24", "dev", &veth_i]);
        sh(&["ip", "-n", &ns, "link", "set", &veth_a, "up"]);
        sh(&["ip", "-n", &inet, "link", "set", &veth_i, "up"]);
        let servers = net::start_upstreams(&inet, "198.51.100.7", &dir.path().join("www"), "198.51.100.7", "5353");
        Appliance { ns, inet, servers, bridle: None, dir }
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Starts `bridle up` in the appliance namespace and returns its
    /// "appliance started" line.
    fn start(&mut self) -> String {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(env!("CARGO_BIN_EXE_bridle"))
            .arg("up")
            .arg("--policies")
            .arg(self.dir.path().join("pol"))
            .arg("--config")
            .arg(self.dir.path().join("bridle.toml"))
            .arg("--audit")
            .arg(self.audit())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bridle up");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[bridle up] {line}");
                let _ = tx.send(line);
            }
        });
        self.bridle = Some(child);
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("appliance started") => return line,
                Ok(_) => {}
                Err(e) => panic!("bridle up did not start: {e}"),
            }
        }
    }

    /// A command in the appliance namespace: a guarded "agent".
    fn agent(&self, command: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(command)
            .output()
            .expect("run an agent command")
    }

    fn curl(&self, url: &str) -> Output {
        self.agent(&["curl", "-sS", "-m", "5", url])
    }

    /// Python in the appliance namespace; prints what `script` prints.
    fn python(&self, script: &str) -> String {
        let out = self.agent(&["python3", "-c", script]);
        assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut bridle) = self.bridle.take() {
            let _ = bridle.kill();
            let _ = bridle.wait();
        }
        let _ = support::bridle(&["down", "--all", "up"]);
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for netns in [&self.ns, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().expect("run setup command");
    assert!(status.success(), "{args:?} failed");
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn records(audit: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(audit).expect("read audit log");
    text.lines().map(|line| serde_json::from_str(line).expect("audit line is JSON")).collect()
}

fn status() -> String {
    support::bridle(&["status"]).stdout
}

fn up_line(status: &str) -> String {
    status.lines().find(|l| l.starts_with("up ")).unwrap_or_default().to_string()
}

/// errno name of a socket operation, as a guarded agent sees it.
const ERRNO: &str = r#"
import errno, socket
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def connect(host, port):
    s = socket.socket(); s.settimeout(5); s.connect((host, port)); return s
"#;

#[test]
fn appliance_guards_its_namespace_fails_closed_when_killed_and_readopts() {
    assert!(
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")),
        "up_cli needs root (cgroups, bpf, netns); CI runs it as root"
    );
    let mut appliance = Appliance::new();
    let started = appliance.start();
    assert!(started.contains("attached"), "{started}");

    // Allowed by name (through Bridle's resolver), denied at DNS.
    let allowed = appliance.curl("http://allowed.test/hello.txt");
    assert_eq!(String::from_utf8_lossy(&allowed.stdout), "hello from upstream\n", "{}", text(&allowed));
    let denied = appliance.curl("http://denied.test/hello.txt");
    assert!(!denied.status.success(), "{}", text(&denied));

    // DNS to a "public resolver" is answered by Bridle, over UDP and TCP;
    // dig checks the reply's source, which recvmsg shows as the server asked.
    for transport in ["+notcp", "+tcp"] {
        let dig =
            appliance.agent(&["dig", "+short", "+time=3", "+tries=1", transport, "@198.51.100.53", "allowed.test"]);
        assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "198.51.100.7", "dig {transport}: {}", text(&dig));
    }

    // Bypass attempts are refused in the kernel.
    let errnos = appliance.python(&format!(
        "{ERRNO}\nprint(err(lambda: connect('127.0.0.1', 15001)), err(lambda: connect('127.0.0.1', 18080)),
      err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('198.51.100.7', 443))),
      err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)))"
    ));
    assert_eq!(errnos, "EPERM EPERM EPERM EPERM", "proxy port, console port, UDP 443, raw socket");

    // A destination-only forbid: the proxy refuses the first connect, the
    // kernel the next ones (the verdict cache), like a closed port.
    let first_then_second = appliance.python(&format!(
        "{ERRNO}\ns = connect('198.51.100.7', 8443); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
print('first', err(lambda: s.recv(1)))
print('second', err(lambda: connect('198.51.100.7', 8443)))"
    ));
    assert!(first_then_second.ends_with("second ECONNREFUSED"), "{first_then_second}");

    let audit = records(&appliance.audit());
    let dns_denied =
        audit.iter().find(|r| r["event"]["kind"] == "dns.query" && r["event"]["detail"]["qname"] == "denied.test");
    let dns_denied = dns_denied.unwrap_or_else(|| panic!("no dns.query record for denied.test: {audit:?}"));
    assert_eq!(dns_denied["decision"]["effect"], "deny", "{dns_denied}");
    assert_eq!(dns_denied["event"]["session"], "up", "{dns_denied}");
    assert!(up_line(&status()).contains("running"), "{}", status());

    // Bridle dies: the programs stay and guarded connects fail closed.
    let mut bridle = appliance.bridle.take().expect("running");
    bridle.kill().expect("kill -9 bridle");
    bridle.wait().expect("reap bridle");
    let dead = appliance.curl("http://198.51.100.7/hello.txt");
    assert!(!dead.status.success(), "traffic must not flow without Bridle: {}", text(&dead));
    assert!(up_line(&status()).contains("orphaned"), "{}", status());

    // A new Bridle re-adopts the pins; traffic flows (and is decided) again.
    let started = appliance.start();
    assert!(started.contains("re-adopted"), "{started}");
    let again = appliance.curl("http://allowed.test/hello.txt");
    assert_eq!(String::from_utf8_lossy(&again.stdout), "hello from upstream\n", "{}", text(&again));

    // A clean stop with a guarded process left keeps failing closed;
    // `bridle down` kills that process and detaches.
    let mut sleeper = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", appliance.ns))
        .args(["sleep", "60"])
        .spawn()
        .expect("start a guarded process");
    std::thread::sleep(Duration::from_millis(200));
    let bridle = appliance.bridle.take().expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(bridle.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM bridle");
    let out = bridle.wait_with_output().expect("bridle exits");
    assert!(out.status.success(), "clean stop: {:?}", out.status);
    let line = up_line(&status());
    assert!(line.contains("orphaned") && line.split_whitespace().nth(2) == Some("1"), "{line}");
    let down = support::bridle(&["down", "up"]);
    assert_eq!(down.code, 0, "{}", down.all());
    let sleeper_status = sleeper.wait().expect("sleeper reaped");
    assert!(!sleeper_status.success(), "bridle down kills the guarded process");
    assert_eq!(up_line(&status()), "", "nothing left: {}", status());
    assert!(!Path::new("/sys/fs/bpf/bridle/up").exists());
}
