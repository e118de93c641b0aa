//! Real-kernel test: load and attach the redirector to a fresh cgroup, run a
//! python client inside that cgroup AND inside a network namespace this test
//! made (only `lo`, no routes out: a redirection bug fails the test instead of
//! sending a packet), and check what the kernel did. Needs root (CI is root).
//!
//! Fake destinations are 198.51.100.0/24 (TEST-NET-2); never 192.0.2.0/24,
//! which is this machine's real link.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use bridle_redirector_ebpf::{Cgroup, Proto, RedirectConfig, Redirector, Selection, cgroup2_mount};

const OWN_PORT: u16 = 18080;
const GATEWAY_PORT: u16 = 18090;
const DNS_PORT: u16 = 15053;

/// Everything the test created; removed on drop, pass or fail.
struct Guard {
    netns: String,
    cgroup: PathBuf,
    pin_dir: PathBuf,
}

impl Guard {
    fn new(name: &str) -> Self {
        let id = std::process::id();
        let guard = Self {
            netns: format!("bridle-{name}-{id}"),
            cgroup: cgroup2_mount().expect("cgroup v2 mount").join(format!("bridle-test-{name}-{id}")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/bridle-test-{name}-{id}")),
        };
        run(Command::new("ip").args(["netns", "add", &guard.netns]));
        run(Command::new("ip").args(["-n", &guard.netns, "link", "set", "lo", "up"]));
        guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = Redirector::remove_pins(&self.pin_dir) {
            eprintln!("cleanup: {e}");
        }
        if let Err(e) = std::fs::remove_dir(&self.cgroup) {
            eprintln!("cleanup: remove {}: {e}", self.cgroup.display());
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The guarded client: listens as the "proxy" on 127.0.0.1:PORT and as the
/// "resolver" on 127.0.0.1:DNS (UDP and TCP), then tries every path the
/// programs govern and prints one `key=value` per line.
const CLIENT: &str = r#"
import errno, os, socket, struct, sys
port, own, dns, gw = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print("pid=%d" % os.getpid())
q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.settimeout(5)
q.sendto(b"query", ("198.51.100.53", 53))
data, source = q.recvfrom(512)
print("udp_reply=%s from %s:%d" % (data.decode(), source[0], source[1]))
t = socket.socket(); t.settimeout(5); t.connect(("198.51.100.53", 53))
print("tcp53=%s via %s:%d" % (t.recv(64).decode(), *t.getpeername()))
print("refused_443=" + err(lambda: socket.socket().connect(("198.51.100.9", 443))))
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", port)); lst.listen(8); lst.settimeout(5)
c = socket.socket(); c.settimeout(5); c.connect(("198.51.100.7", 80))
srv, peer = lst.accept()
print("accepted_peer=%s:%d" % peer)
print("client_local=%s:%d" % c.getsockname())
print("getpeername=%s:%d" % c.getpeername())
print("cookie=%d" % struct.unpack("Q", c.getsockopt(socket.SOL_SOCKET, 57, 8))[0])
c6 = socket.socket(socket.AF_INET6); c6.settimeout(5); c6.connect(("::ffff:198.51.100.7", 81))
lst.accept()
print("getpeername_mapped=[%s]:%d" % c6.getpeername()[:2])
print("own_port=" + err(lambda: socket.socket().connect(("198.51.100.7", own))))
print("raw=" + err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)))
print("udp_sendto_443=" + err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.51.100.7", 443))))
print("udp_connect_443=" + err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("198.51.100.7", 443))))
gl = socket.socket(); gl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
gl.bind(("127.0.0.1", gw)); gl.listen(8); gl.settimeout(5)
g = socket.socket(); g.settimeout(5); g.connect(("127.0.0.1", gw))
print("gateway_loopback=" + ("direct" if gl.accept()[1] == g.getsockname() else "elsewhere"))
g = socket.socket(); g.settimeout(5); g.connect(("198.51.100.7", gw))
print("gateway_port_elsewhere=" + ("proxy" if lst.accept()[1] == g.getsockname() else "elsewhere"))
"#;

/// The "resolver", outside the guarded cgroup (like Bridle's): answers one
/// UDP query on 127.0.0.1:DNS and greets one TCP connection there.
const RESOLVER: &str = r#"
import socket, sys
dns = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", dns)); u.settimeout(10)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", dns)); t.listen(1); t.settimeout(10)
print("ready", flush=True)
data, asker = u.recvfrom(512); u.sendto(b"answer:" + data, asker)
conn, _ = t.accept(); conn.sendall(b"resolver-tcp"); conn.close()
"#;

/// Connects to the destination the verdict cache held, with a "proxy" there.
const CONNECT_443: &str = r#"
import socket, sys
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(1); lst.settimeout(5)
socket.socket().connect(("198.51.100.9", 443)); lst.accept(); print("connect_443=redirected")
"#;

/// An unguarded process in the same netns: its connect must not be touched.
const OUTSIDE: &str = r#"
import errno, socket
try:
    socket.socket().connect(("198.51.100.7", 80)); print("outside=ok")
except OSError as e:
    print("outside=" + errno.errorcode.get(e.errno, str(e.errno)))
"#;

fn parse(out: &Output) -> std::collections::HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// `sh` moves itself into the cgroup (cgroup.procs) and then execs into the
/// netns; `ip netns exec` remounts /sys, so the move must come first.
fn guarded(netns: &str, cgroup: &Path, script: &str, args: &[String]) -> Output {
    let procs = cgroup.join("cgroup.procs");
    let sh = format!("echo $$ > '{}' && exec ip netns exec '{netns}' python3 -c \"$0\" \"$@\"", procs.display());
    run(Command::new("sh").arg("-c").arg(sh).arg(script).args(args))
}

#[test]
fn redirects_refuses_and_leaves_outsiders_alone() {
    assert!(
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")),
        "kernel_redirect needs root (cgroups, bpf, netns); CI runs it as root"
    );
    let guard = Guard::new("t");
    let cgroup = Cgroup::create(guard.cgroup.file_name().and_then(|n| n.to_str()).expect("name")).expect("cgroup");
    let proxy_port = 20000 + (std::process::id() % 20000) as u16;
    let config = config(proxy_port, Selection::Cgroup);
    let mut redirector = Redirector::attach(&config, cgroup.path(), &guard.pin_dir).expect("attach");
    redirector.refuse("198.51.100.9:443".parse().expect("addr"), Proto::Tcp).expect("cache a deny");

    let mut resolver = Command::new("ip")
        .args(["netns", "exec", &guard.netns, "python3", "-c", RESOLVER, &DNS_PORT.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the test resolver");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(resolver.stdout.as_mut().expect("resolver stdout")),
        &mut ready,
    )
    .expect("resolver ready");
    assert_eq!(ready.trim(), "ready");
    let args = [proxy_port.to_string(), OWN_PORT.to_string(), DNS_PORT.to_string(), GATEWAY_PORT.to_string()];
    let out = guarded(&guard.netns, cgroup.path(), CLIENT, &args);
    let _ = resolver.kill();
    let _ = resolver.wait();
    let r = parse(&out);
    assert_eq!(r["udp_reply"], "answer:query from 198.51.100.53:53", "recvmsg4 shows the original server: {r:?}");
    assert_eq!(r["tcp53"], "resolver-tcp via 198.51.100.53:53", "TCP/53 goes to the resolver's TCP listener");
    assert_eq!(r["refused_443"], "ECONNREFUSED", "the verdict cache refuses in the kernel");
    assert_eq!(r["getpeername"], "198.51.100.7:80", "{r:?}");
    assert_eq!(r["getpeername_mapped"], "[::ffff:198.51.100.7]:81", "{r:?}");
    assert_eq!(r["accepted_peer"], r["client_local"], "the listener accepted the client");
    assert_eq!(r["own_port"], "EPERM");
    assert_eq!(r["raw"], "EPERM");
    assert_eq!(r["udp_sendto_443"], "EPERM");
    assert_eq!(r["udp_connect_443"], "EPERM");
    assert_eq!(r["gateway_loopback"], "direct", "the MCP gateway's port on loopback is not redirected");
    assert_eq!(r["gateway_port_elsewhere"], "proxy", "the same port elsewhere is an ordinary destination");

    let cookie: u64 = r["cookie"].parse().expect("cookie");
    let orig = redirector.original_destination(cookie).expect("orig dst by cookie");
    assert_eq!(orig.addr, "198.51.100.7:80".parse().expect("addr"));
    assert_eq!(orig.proto, Proto::Tcp);
    assert_eq!(orig.pid.to_string(), r["pid"]);
    assert_eq!(orig.cgroup_id, cgroup.id().expect("cgroup id"));
    let peer = r["accepted_peer"].parse().expect("peer");
    assert_eq!(redirector.original_destination_by_peer(peer), Some(orig), "proxy-side lookup");

    let out = run(Command::new("ip").args(["netns", "exec", &guard.netns, "python3", "-c", OUTSIDE]));
    assert_eq!(parse(&out)["outside"], "ENETUNREACH", "a process outside the cgroup is not redirected");

    // A new generation (a policy reload) drops the cached deny at once.
    redirector.forget_verdicts().expect("new generation");
    let out = guarded(&guard.netns, cgroup.path(), CONNECT_443, &[proxy_port.to_string()]);
    assert_eq!(parse(&out)["connect_443"], "redirected", "an old generation's deny no longer refuses");

    redirector.detach().expect("detach");
    assert!(!guard.pin_dir.exists(), "detach removes the pins");
    let out = guarded(&guard.netns, cgroup.path(), OUTSIDE, &[]);
    assert_eq!(parse(&out)["outside"], "ENETUNREACH", "after detach the cgroup is untouched");
}

fn config(proxy_port: u16, selection: Selection) -> RedirectConfig {
    RedirectConfig {
        selection,
        proxy_v4: format!("127.0.0.1:{proxy_port}").parse().expect("addr"),
        proxy_ip6: Some(std::net::Ipv6Addr::LOCALHOST),
        dns_v4: format!("127.0.0.1:{DNS_PORT}").parse().expect("addr"),
        dns_ip6: None,
        own_ports: vec![OWN_PORT],
        gateway_ports: vec![GATEWAY_PORT],
    }
}

/// Prints the netns cookie of the namespace it runs in, and whether its
/// connect to a fake address was redirected to a "proxy" on argv[1].
const APPLIANCE_CLIENT: &str = r#"
import errno, socket, struct, sys
print("netns=%d" % struct.unpack("Q", socket.socket().getsockopt(socket.SOL_SOCKET, 71, 8))[0])
if len(sys.argv) > 1:
    lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(1); lst.settimeout(5)
try:
    c = socket.socket(); c.settimeout(5); c.connect(("198.51.100.7", 80))
    print("connect=redirected to %s:%d" % lst.accept()[0].getsockname())
except OSError as e:
    print("connect=" + errno.errorcode.get(e.errno, str(e.errno)))
"#;

/// Bridle's own cgroup in an appliance-mode test (the programs go on the
/// root), and the selection that exempts it.
fn bridles_own(guard: &Guard) -> (Cgroup, Selection) {
    let exempt = Cgroup::create(guard.cgroup.file_name().and_then(|n| n.to_str()).expect("name")).expect("cgroup");
    let selection = Selection::Netns {
        exempt_cgroup: exempt.id().expect("id"),
        exempt_level: exempt.level().expect("level"),
        runtime_pid: 0,
        runtime_cgroup: 0,
    };
    (exempt, selection)
}

/// Appliance mode: the programs sit on the cgroup root and guard exactly the
/// listed network namespaces, minus Bridle's own cgroup; a second Bridle
/// re-adopts the pins the first left and steers to its own ports.
#[test]
fn appliance_mode_guards_a_netns_except_bridles_cgroup_and_readopts() {
    let guard = Guard::new("a");
    let other = Guard::new("o");
    let (exempt, selection) = bridles_own(&guard);
    let root = cgroup2_mount().expect("cgroup v2 mount");
    let first_port = 20000 + (std::process::id() % 20000) as u16;
    let probe = |netns: &str, port: Option<u16>| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, "python3", "-c", APPLIANCE_CLIENT]);
        cmd.args(port.map(|p| p.to_string()));
        parse(&run(&mut cmd))
    };
    let cookie: u64 = probe(&guard.netns, None)["netns"].parse().expect("cookie");

    let mut redirector = Redirector::attach(&config(first_port, selection), &root, &guard.pin_dir).expect("attach");
    redirector.guard_netns(cookie).expect("guard the netns");
    assert_eq!(redirector.guarded_netns(), vec![cookie]);
    assert_eq!(
        probe(&guard.netns, Some(first_port))["connect"],
        format!("redirected to 127.0.0.1:{first_port}"),
        "a process in the guarded netns is redirected"
    );
    assert_eq!(probe(&other.netns, Some(first_port))["connect"], "ENETUNREACH", "another netns is untouched");
    let out = guarded(&guard.netns, exempt.path(), APPLIANCE_CLIENT, &[first_port.to_string()]);
    assert_eq!(parse(&out)["connect"], "ENETUNREACH", "Bridle's own cgroup is never redirected");

    // Bridle "dies": its programs stay; a new one adopts them, new port.
    drop(redirector);
    let second_port = first_port + 1;
    let adopted =
        Redirector::attach_or_adopt(&config(second_port, selection), &root, &guard.pin_dir).expect("re-adopt");
    assert!(adopted.adopted());
    assert_eq!(adopted.guarded_netns(), vec![cookie], "the guarded netns survived");
    assert_eq!(
        probe(&guard.netns, Some(second_port))["connect"],
        format!("redirected to 127.0.0.1:{second_port}"),
        "the adopted programs use the new config"
    );
    adopted.detach().expect("detach");
    assert_eq!(probe(&guard.netns, Some(second_port))["connect"], "ENETUNREACH", "detached: untouched");
}

/// Listens on argv[1]:argv[2] and prints whether a connection came within
/// two seconds; argv[3] = "dial" connects to it instead.
const INBOUND: &str = r#"
import socket, sys
addr = (sys.argv[1], int(sys.argv[2]))
if sys.argv[3:] == ["dial"]:
    try:
        socket.create_connection(addr, timeout=2).close(); print("dial=connected")
    except OSError as e:
        print("dial=" + type(e).__name__)
    sys.exit(0)
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(addr); lst.listen(4); lst.settimeout(4)
print("listening", flush=True)
try:
    lst.accept()[0].close(); print("accepted=yes")
except OSError:
    print("accepted=no")
"#;

/// Appliance mode's packet filter, at the cgroup root: a listener in the
/// guarded namespace is not reached from outside (its SYNs are dropped),
/// while one of Bridle's own cgroup is, and so is any once detached.
#[test]
fn appliance_mode_keeps_guarded_sockets_to_loopback_and_no_other() {
    use std::io::{BufRead as _, BufReader};
    let guard = Guard::new("p");
    let other = Guard::new("q");
    let (a, b) = (format!("bv{}a", std::process::id() % 100_000), format!("bv{}b", std::process::id() % 100_000));
    run(Command::new("ip").args([
        "link",
        "add",
        &a,
        "netns",
        &guard.netns,
        "type",
        "veth",
        "peer",
        &b,
        "netns",
        &other.netns,
    ]));
    for (netns, dev, addr) in [(&guard.netns, &a, "10.77.0.1/24"), (&other.netns, &b, "10.77.0.2/24")] {
        run(Command::new("ip").args(["-n", netns, "addr", "add", addr, "dev", dev]));
        run(Command::new("ip").args(["-n", netns, "link", "set", dev, "up"]));
    }
    let (exempt, selection) = bridles_own(&guard);
    let root = cgroup2_mount().expect("cgroup v2 mount");
    let cookie_probe = Command::new("ip")
        .args(["netns", "exec", &guard.netns, "python3", "-c", APPLIANCE_CLIENT])
        .output()
        .expect("cookie");
    let cookie: u64 = parse(&cookie_probe)["netns"].parse().expect("cookie");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut redirector = Redirector::attach(&config(port, selection), &root, &guard.pin_dir).expect("attach");
    redirector.guard_netns(cookie).expect("guard the netns");
    // Listens in `netns` (within `cgroup`, if given) while `dialer` dials it.
    let inbound = |netns: &str, addr: &str, dialer: &str, cgroup: Option<&Path>| {
        let mut listen = match cgroup {
            Some(cgroup) => {
                let sh = format!(
                    "echo $$ > '{}' && exec ip netns exec '{netns}' python3 -c \"$0\" \"$@\"",
                    cgroup.join("cgroup.procs").display()
                );
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(sh).arg(INBOUND);
                cmd
            }
            None => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns, "python3", "-c", INBOUND]);
                cmd
            }
        };
        let mut child = listen.args([addr, "8080"]).stdout(std::process::Stdio::piped()).spawn().expect("listener");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        assert_eq!(line.trim(), "listening");
        let dial = Command::new("ip")
            .args(["netns", "exec", dialer, "python3", "-c", INBOUND, addr, "8080", "dial"])
            .output()
            .expect("dial");
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let _ = child.wait();
        (parse(&dial)["dial"].clone(), rest.trim().to_owned())
    };
    let guarded = inbound(&guard.netns, "10.77.0.1", &other.netns, None);
    let exempted = inbound(&guard.netns, "10.77.0.1", &other.netns, Some(exempt.path()));
    redirector.detach().expect("detach");
    let after = inbound(&guard.netns, "10.77.0.1", &other.netns, None);
    assert_eq!(guarded, ("TimeoutError".to_owned(), "accepted=no".to_owned()), "a guarded listener is not reached");
    // The other namespace's packets pass, and so do those of Bridle's cgroup.
    assert_eq!(exempted, ("connected".to_owned(), "accepted=yes".to_owned()), "Bridle's own sockets are not filtered");
    assert_eq!(after, ("connected".to_owned(), "accepted=yes".to_owned()), "detached: nothing filtered");
}

/// Connects to a fake address once per line read, printing where it went:
/// one process, so its pid stays the same between configurations.
const EXEMPT_CLIENT: &str = r#"
import errno, os, socket, sys
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(4); lst.settimeout(5)
print("pid=%d" % os.getpid(), flush=True)
for _ in sys.stdin:
    try:
        c = socket.socket(); c.settimeout(5); c.connect(("198.51.100.7", 80))
        lst.accept()[0].close()
        print("connect=redirected", flush=True)
    except OSError as e:
        print("connect=" + errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

/// The container runtime's exemption holds for its pid only in its cgroup:
/// a process that got the pid of a restarted runtime is still guarded.
#[test]
fn the_runtime_exemption_needs_its_pid_and_its_cgroup() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::fs::MetadataExt as _;
    let guard = Guard::new("x");
    let exempt = Cgroup::create(guard.cgroup.file_name().and_then(|n| n.to_str()).expect("name")).expect("cgroup");
    let root = cgroup2_mount().expect("cgroup v2 mount");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &guard.netns, "python3", "-c", EXEMPT_CLIENT, &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the client");
    let (mut to, mut from) = (child.stdin.take().expect("stdin"), BufReader::new(child.stdout.take().expect("out")));
    // The pid line comes first.
    let mut pid_line = String::new();
    let _ = from.read_line(&mut pid_line);
    let mut next = |to: &mut std::process::ChildStdin| {
        let mut line = String::new();
        if to.write_all(b"go\n").is_ok() {
            let _ = from.read_line(&mut line);
        }
        line.trim().to_owned()
    };
    let pid: u32 = pid_line.trim().strip_prefix("pid=").and_then(|p| p.parse().ok()).expect("the client's pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroup");
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("a v2 cgroup");
    let its_cgroup = std::fs::metadata(root.join(path.trim_start_matches('/'))).expect("stat").ino();
    let selection = |runtime_cgroup| Selection::Netns {
        exempt_cgroup: exempt.id().expect("id"),
        exempt_level: exempt.level().expect("level"),
        runtime_pid: pid,
        runtime_cgroup,
    };
    let mut redirector =
        Redirector::attach(&config(port, selection(its_cgroup + 1)), &root, &guard.pin_dir).expect("attach");
    let cookie_probe = Command::new("ip")
        .args(["netns", "exec", &guard.netns, "python3", "-c", APPLIANCE_CLIENT])
        .output()
        .expect("cookie");
    let cookie: u64 = parse(&cookie_probe)["netns"].parse().expect("cookie");
    redirector.guard_netns(cookie).expect("guard the netns");
    let wrong_cgroup = next(&mut to);
    redirector.write_config_from(&config(port, selection(its_cgroup))).expect("rewrite");
    let right_cgroup = next(&mut to);
    drop(to);
    let _ = child.kill();
    let _ = child.wait();
    redirector.detach().expect("detach");
    assert_eq!(wrong_cgroup, "connect=redirected", "the pid alone is not exempt");
    assert_eq!(right_cgroup, "connect=ENETUNREACH", "pid and cgroup together are");
}

#[test]
fn a_missing_cgroup_is_named_and_nothing_is_left_pinned() {
    let pins = PathBuf::from(format!("/sys/fs/bpf/bridle-test-missing-{}", std::process::id()));
    let missing = cgroup2_mount().expect("cgroup v2 mount").join("bridle-no-such-cgroup");
    let error = Redirector::attach(&config(20000, Selection::Cgroup), &missing, &pins).expect_err("no such cgroup");
    assert!(error.to_string().contains("bridle-no-such-cgroup"), "{error}");
    assert!(!pins.join("map_config").exists(), "nothing pinned");
    let _ = std::fs::remove_dir(&pins);
}

/// bpffs is often world-writable: a pin directory a user made first (and
/// so could empty, detaching the programs) is refused, with what is wrong.
#[test]
fn a_pin_directory_someone_else_could_change_is_refused() {
    use std::os::unix::fs::{PermissionsExt as _, chown};
    let parent = PathBuf::from(format!("/sys/fs/bpf/bridle-test-owner-{}", std::process::id()));
    let pins = parent.join("run");
    // A cgroup of the test's own: were the check ever to let it through,
    // nothing but this empty cgroup would be guarded.
    let cgroup = Cgroup::create(&format!("bridle-test-owner-{}", std::process::id())).expect("cgroup");
    std::fs::create_dir_all(&pins).expect("pin dirs");
    chown(&pins, Some(65534), Some(65534)).expect("chown");
    let error = Redirector::attach(&config(20000, Selection::Cgroup), cgroup.path(), &pins).expect_err("a user's dir");
    assert!(error.to_string().contains("owned by uid 65534"), "{error}");
    chown(&pins, Some(0), Some(0)).expect("chown back");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error =
        Redirector::attach(&config(20000, Selection::Cgroup), cgroup.path(), &pins).expect_err("writable parent");
    assert!(error.to_string().contains("writable by group or others"), "{error}");
    assert!(!pins.join("map_config").exists(), "nothing pinned");
    let _ = std::fs::remove_dir(&pins);
    let _ = std::fs::remove_dir(&parent);
    cgroup.remove().expect("remove the test cgroup");
}
