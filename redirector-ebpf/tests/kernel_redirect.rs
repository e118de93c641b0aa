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

use bridle_redirector_ebpf::{Cgroup, Proto, RedirectConfig, Redirector, cgroup2_mount};

const OWN_PORT: u16 = 18080;

/// Everything the test created; removed on drop, pass or fail.
struct Guard {
    netns: String,
    cgroup: PathBuf,
    pin_dir: PathBuf,
}

impl Guard {
    fn new() -> Self {
        let id = std::process::id();
        let guard = Self {
            netns: format!("bridle-t-{id}"),
            cgroup: cgroup2_mount().expect("cgroup v2 mount").join(format!("bridle-test-{id}")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/bridle-test-{id}")),
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

/// The guarded client: listens as the "proxy" on 127.0.0.1:PORT, then tries
/// every path the programs govern and prints one `key=value` per line.
const CLIENT: &str = r#"
import errno, os, socket, struct, sys
port, own = int(sys.argv[1]), int(sys.argv[2])
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print("pid=%d" % os.getpid())
lst = socket.socket(); lst.bind(("127.0.0.1", port)); lst.listen(8); lst.settimeout(5)
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
    let guard = Guard::new();
    let cgroup = Cgroup::create(guard.cgroup.file_name().and_then(|n| n.to_str()).expect("name")).expect("cgroup");
    let proxy_port = 20000 + (std::process::id() % 20000) as u16;
    let config = RedirectConfig {
        proxy_v4: format!("127.0.0.1:{proxy_port}").parse().expect("addr"),
        proxy_ip6: Some(std::net::Ipv6Addr::LOCALHOST),
        dns_v4: "127.0.0.1:15053".parse().expect("addr"),
        dns_ip6: None,
        own_ports: vec![OWN_PORT],
    };
    let redirector = Redirector::attach(&config, cgroup.path(), &guard.pin_dir).expect("attach");

    let out = guarded(&guard.netns, cgroup.path(), CLIENT, &[proxy_port.to_string(), OWN_PORT.to_string()]);
    let r = parse(&out);
    assert_eq!(r["getpeername"], "198.51.100.7:80", "{r:?}");
    assert_eq!(r["getpeername_mapped"], "[::ffff:198.51.100.7]:81", "{r:?}");
    assert_eq!(r["accepted_peer"], r["client_local"], "the listener accepted the client");
    assert_eq!(r["own_port"], "EPERM");
    assert_eq!(r["raw"], "EPERM");
    assert_eq!(r["udp_sendto_443"], "EPERM");
    assert_eq!(r["udp_connect_443"], "EPERM");

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

    redirector.detach().expect("detach");
    assert!(!guard.pin_dir.exists(), "detach removes the pins");
    let out = guarded(&guard.netns, cgroup.path(), OUTSIDE, &[]);
    assert_eq!(parse(&out)["outside"], "ENETUNREACH", "after detach the cgroup is untouched");
}
