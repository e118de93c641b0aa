//! Test upstreams for the end-to-end tests that run Bridle in a network
//! namespace (`run_cli`, `up_cli`, `intercept_cli`).
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The stand-ins for "the internet" inside a test network namespace: a
/// python HTTP server on port 80 of `http_bind` serving `www`, and the test
/// DNS authority on `dns_ip:dns_port` mapping allowed.test and denied.test
/// to 198.51.100.7 (and to 2001:db8::7 when the server listens on `::`).
/// Returns once the HTTP server answers on 198.51.100.7.
#[expect(clippy::zombie_processes, reason = "returned to the caller, which kills and reaps them on drop")]
pub fn start_upstreams(netns: &str, http_bind: &str, www: &Path, dns_ip: &str, dns_port: &str) -> Vec<Child> {
    let http = Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-m", "http.server", "80", "--bind", http_bind])
        .arg("--directory")
        .arg(www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test HTTP server");
    let names = ["allowed.test", "denied.test"];
    let mut records: Vec<String> = names.iter().map(|name| format!("{name}=198.51.100.7")).collect();
    if http_bind == "::" {
        records.extend(names.iter().map(|name| format!("{name}=2001:db8::7")));
    }
    let authority = authority_with(netns, dns_ip, dns_port, &records);
    let probe = "import socket; socket.create_connection(('198.51.100.7', 80), 1).close()";
    for _ in 0..50 {
        let ok =
            Command::new("ip").args(["netns", "exec", netns, "python3", "-c", probe]).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return vec![http, authority];
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("test HTTP server did not start");
}

/// The test DNS authority on `ip:port` in `netns`, answering `names` with
/// 198.51.100.7.
pub fn start_authority(netns: &str, ip: &str, port: &str, names: &[&str]) -> Child {
    let records: Vec<String> = names.iter().map(|name| format!("{name}=198.51.100.7")).collect();
    authority_with(netns, ip, port, &records)
}

/// The test DNS authority answering `NAME=IP` records (A or AAAA).
fn authority_with(netns: &str, ip: &str, port: &str, records: &[String]) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dns_authority.py");
    Command::new("ip")
        .args(["netns", "exec", netns, "python3", script, ip, port])
        .args(records)
        .spawn()
        .expect("start the test DNS authority")
}

/// `bridle run --user nobody` inside `netns`, with the test's policies
/// (`dir/pol`), config (`dir/bridle.toml`) and audit log; the caller adds
/// `--` and the command.
pub fn guarded_run(netns: &str, dir: &Path, audit: &Path) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(env!("CARGO_BIN_EXE_bridle"))
        .args(["run", "--user", "nobody", "--policies"])
        .arg(dir.join("pol"))
        .arg("--config")
        .arg(dir.join("bridle.toml"))
        .arg("--audit")
        .arg(audit);
    command
}

/// A network namespace `name` whose `lo` is up and holds 198.51.100.7, the
/// test's stand-in for a remote host (nothing routes anywhere else).
pub fn make_netns(name: &str) {
    for args in [
        vec!["netns", "add", name],
        vec!["-n", name, "link", "set", "lo", "up"],
        vec!["-n", name, "addr", "add", "198.51.100.7/32", "dev", "lo"],
    ] {
        let status = Command::new("ip").args(&args).status().expect("ip");
        assert!(status.success(), "ip {args:?}");
    }
}
