//! TLS interception end to end: `bridle run` with real clients (curl over
//! HTTP/1.1 and HTTP/2, python requests, node fetch, git) against an HTTPS
//! upstream whose certificate comes from a test CA that only Bridle trusts
//! (`[tls] upstream_ca_bundle`). The agent trusts Bridle's CA through the
//! variables host mode sets. Everything runs inside a network namespace
//! this test creates (198.51.100.7 on its `lo`), as root, with the real
//! kernel programs.

#[path = "support/net.rs"]
mod net;
mod support;
#[path = "support/tls_upstream.rs"]
mod tls_upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use support::{Run, write_files};

const POLICIES: &str = r#"
@id("allowed") @reason("allowed.test is approved")
permit(principal, action, resource in Net::Domain::"allowed.test");

@id("pinned") @passthrough @reason("pinned.test pins its certificate")
permit(principal, action, resource in Net::Domain::"pinned.test");

@id("no-admin") @reason("admin pages are off limits")
forbid(principal, action == Http::Action::"Request", resource)
when { context.path like "/admin*" };

@id("no-push-to-main") @reason("pushing to main needs a review")
forbid(principal, action == Http::Action::"Request", resource)
when { context has git && context.git.refs.contains("refs/heads/main") };

@id("approve-me") @ask @reason("this page needs a person's approval")
forbid(principal, action == Http::Action::"Request", resource)
when { context.path == "/approve-me" || context.path == "/deny-me" };

@id("no-leaks") @reason("the request carries a secret")
forbid(principal, action == Http::Action::"Request", resource)
when { !context.dlp.isEmpty() };
"#;

const NAMES: [&str; 6] =
    ["allowed.test", "api.allowed.test", "git.allowed.test", "other.test", "pinned.test", "wrong.allowed.test"];
const SECRET: &str = "real-secret-4f9a1c2e";

struct Net {
    name: String,
    dir: tempfile::TempDir,
    servers: Vec<Child>,
    _upstream: tls_upstream::TlsUpstream,
}

impl Net {
    fn new(tag: &str) -> Net {
        let name = format!("bridle-tls-{tag}-{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        // The upstream's certificate does not name wrong.allowed.test.
        let pki = tls_upstream::TestPki::new(&NAMES[..5]);
        let config = format!(
            "[dns]\nupstreams = [\"127.0.0.1:5353\"]\n\n[tls]\nca_dir = \"{ca}\"\nupstream_ca_bundle = \"{bundle}\"\n\n\
             [[secrets]]\nname = \"api\"\nenv = \"BRIDLE_TEST_API_KEY\"\nhosts = [\"api.allowed.test\"]\n\
             header = \"x-api-key\"\nformat = \"{{value}}\"\n",
            ca = dir.path().join("ca").display(),
            bundle = dir.path().join("public-ca.pem").display(),
        );
        write_files(dir.path(), &[("pol/p.cedar", POLICIES), ("bridle.toml", &config), ("public-ca.pem", &pki.ca_pem)]);
        net::make_netns(&name);
        let git_root = dir.path().join("git");
        make_repo(&git_root.join("repo.git"));
        let upstream =
            tls_upstream::start(&name, vec!["198.51.100.7:443".parse().expect("addr")], &pki, Some(git_root));
        let authority = net::start_authority(&name, "127.0.0.1", "5353", &NAMES);
        // The agent (nobody) must read the test's files and write its work
        // directory (git clones into it), but never the config or the
        // policies: Bridle refuses to guard a command that could rewrite them.
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()).status();
        let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(&work).status();
        // The audit log's directory is root's alone: root writes there.
        std::fs::create_dir_all(dir.path().join("audit")).expect("the audit log's directory");
        Net { name, dir, servers: vec![authority], _upstream: upstream }
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit/audit.jsonl")
    }

    /// `bridle run --user nobody -- sh -c SCRIPT` in the namespace.
    fn run(&self, script: &str) -> Run {
        let output = net::guarded_run(&self.name, self.dir.path(), &self.audit())
            .args(["--", "sh", "-c", script])
            .current_dir(self.dir.path().join("work"))
            .env("BRIDLE_TEST_API_KEY", SECRET)
            .env_remove("SUDO_UID")
            .output()
            .expect("run bridle");
        Run::from(output)
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.audit()).expect("audit log");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .filter(|r| r["type"] == "decision" && r["event"]["kind"] == "http.request")
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn make_repo(bare: &Path) {
    let git = |args: &[&str], dir: &Path| {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    std::fs::create_dir_all(bare).expect("mkdir");
    git(&["init", "-q", "--bare", "-b", "main"], bare);
    git(&["config", "http.receivepack", "true"], bare);
    let seed = bare.with_extension("seed");
    std::fs::create_dir_all(&seed).expect("mkdir");
    git(&["init", "-q", "-b", "main"], &seed);
    std::fs::write(seed.join("README"), "hello\n").expect("write");
    git(&["add", "README"], &seed);
    git(&["commit", "-q", "-m", "seed"], &seed);
    git(&["push", "-q", bare.to_str().expect("utf-8"), "main"], &seed);
}

#[test]
fn https_requests_are_intercepted_and_decided_one_by_one() {
    let net = Net::new("req");
    let script = r#"
        curl -sS https://api.allowed.test/v1/ok
        curl -sS --http1.1 https://api.allowed.test/v1/ok
        curl -sS -o /dev/null -w 'admin=%{http_code} %header{x-bridle-reason}\n' https://allowed.test/admin
        curl -sS https://allowed.test/admin; echo
        curl -sS https://allowed.test/first https://allowed.test/admin https://allowed.test/second; echo
        curl -sS -o /dev/null -w 'fronting=%{http_code}\n' -H 'Host: other.test' https://allowed.test/v1/ok
        curl -sS -o /dev/null -w 'unverified=%{http_code} %header{x-bridle-reason}\n' https://wrong.allowed.test/
        curl -sS --http1.1 -o /dev/null -w 'unverified1=%{http_code} %header{x-bridle-reason}\n' https://wrong.allowed.test/
        curl -sS -o /dev/null -w 'download=%{http_code} %{size_download}\n' https://allowed.test/bytes/67108864
        python3 -c "import requests; print('requests', requests.get('https://api.allowed.test/py').text.strip())"
        node -e "fetch('https://api.allowed.test/node').then(r => r.text()).then(t => console.log('node', t.trim()))"
        curl -sS https://api.allowed.test/cipher
        s_client() { openssl s_client -connect api.allowed.test:443 -servername api.allowed.test "$@" </dev/null; }
        s_client 2>/dev/null | grep -m1 'Cipher is'
        s_client -ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384 2>/dev/null | grep -m1 'Cipher is'
    "#;
    let run = net.run(script);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = &run.stdout;
    assert!(out.contains("ok /v1/ok HTTP/2.0\n"), "curl negotiates h2 through Bridle: {}", run.all());
    assert!(out.contains("ok /v1/ok HTTP/1.1\n"), "{}", run.all());
    assert!(out.contains("admin=403 admin pages are off limits\n"), "{}", run.all());
    assert!(out.contains(r#""reason":"admin pages are off limits""#), "{}", run.all());
    assert!(out.contains(r#""policy":"no-admin""#), "{}", run.all());
    assert!(out.contains("fronting=403\n"), "{}", run.all());
    assert!(
        out.contains("ok /first HTTP/2.0\n{\"error\"") && out.contains("ok /second HTTP/2.0\n"),
        "keep-alive requests are decided one by one: {}",
        run.all()
    );
    assert!(out.contains("unverified=502 "), "{}", run.all());
    // An HTTP/1.1-only client's handshake runs alongside the upstream's:
    // the failed verification still reaches it as a 502 with the reason.
    assert!(out.contains("unverified1=502 upstream") && out.contains("wrong.allowed.test"), "{}", run.all());
    assert!(out.contains("download=200 67108864\n"), "{}", run.all());
    assert!(out.contains("requests ok /py HTTP/1.1"), "{}", run.all());
    assert!(out.contains("node ok /node HTTP/1.1"), "{}", run.all());
    // AES-128-GCM on both legs (cheaper than OpenSSL's first choice,
    // AES-256-GCM), unless the agent asks for ChaCha20 first.
    assert!(out.contains("cipher=Some(TLS13_AES_128_GCM_SHA256)\n"), "{}", run.all());
    assert!(out.contains("New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256\n"), "{}", run.all());
    assert!(out.contains("New, TLSv1.3, Cipher is TLS_CHACHA20_POLY1305_SHA256\n"), "{}", run.all());

    let requests = net.requests();
    let admin = requests.iter().find(|r| r["event"]["detail"]["path"] == "/admin").expect("admin audited");
    assert_eq!(admin["decision"]["effect"], "deny");
    assert_eq!(admin["event"]["detail"]["scheme"], "https");
    let fronting = requests
        .iter()
        .find(|r| r["decision"]["reason"].as_str().is_some_and(|s| s.contains("fronting")))
        .expect("fronting audited");
    assert_eq!(fronting["decision"]["effect"], "deny");
    let paths: Vec<&str> = requests.iter().filter_map(|r| r["event"]["detail"]["path"].as_str()).collect();
    assert!(paths.contains(&"/first") && paths.contains(&"/second"), "{paths:?}");
    let verify = support::bridle(&["audit", "verify", net.audit().to_str().expect("utf-8")]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// A client that trusts only the real (here: test) CA works on a host a
/// `@passthrough` policy names, and fails everywhere Bridle intercepts.
#[test]
fn passthrough_hosts_are_spliced_untouched_for_pinning_clients() {
    let net = Net::new("pin");
    let public = net.dir.path().join("public-ca.pem");
    let script = format!(
        "curl -sS --cacert {ca} https://pinned.test/pinned; \
         curl -sS -o /dev/null --cacert {ca} https://allowed.test/ 2>/dev/null; echo \"intercepted=$?\"",
        ca = public.display()
    );
    let run = net.run(&script);
    assert!(run.stdout.contains("ok /pinned HTTP/2.0"), "{}", run.all());
    // 60: curl could not verify the peer: Bridle's leaf, not the upstream's.
    assert!(run.stdout.contains("intercepted=60"), "{}", run.all());
    let audit = std::fs::read_to_string(net.audit()).expect("audit");
    assert!(audit.contains("not inspected: a @passthrough policy permits it"), "{audit}");
    assert!(net.requests().iter().all(|r| r["event"]["detail"]["host"] != "pinned.test"));
}

#[test]
fn secrets_are_injected_only_for_their_hosts_never_come_back_and_leaks_are_blocked() {
    let net = Net::new("sec");
    let script = r#"
        echo "placeholder=$BRIDLE_TEST_API_KEY"
        curl -sS -H "x-api-key: $BRIDLE_TEST_API_KEY" https://api.allowed.test/echo
        curl -sS -o /dev/null -w 'encoded=%{http_code}\n' -H "x-api-key: $BRIDLE_TEST_API_KEY" 'https://api.allowed.test/echo?encoded'
        curl -sS -o /dev/null -w 'misuse=%{http_code}\n' -H "x-api-key: $BRIDLE_TEST_API_KEY" https://allowed.test/echo
        curl -sS -o /dev/null -w 'leak=%{http_code}\n' --data 'key=AKIAIOSFODNN7EXAMPLE' https://allowed.test/echo
        curl -sS -o /dev/null -w 'clean=%{http_code}\n' --data 'hello' https://allowed.test/echo
    "#;
    let run = net.run(script);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = &run.stdout;
    assert!(out.contains("placeholder=bridle-secret-api\n"), "the agent sees a placeholder: {}", run.all());
    // The upstream got the real value (its digest says so) and sent it
    // back; the agent read it masked, with the secret's name.
    let sha: String = ring::digest::digest(&ring::digest::SHA256, SECRET.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(out.contains(&format!("x-api-key=bridle-secret-api*** sha256={sha} ")), "{}", run.all());
    assert!(!out.contains(SECRET), "the value reached the agent: {}", run.all());
    assert!(out.contains("encoded=502\n"), "an encoded answer could not be checked: {}", run.all());
    assert!(out.contains("misuse=403\n"), "{}", run.all());
    assert!(out.contains("leak=403\n"), "{}", run.all());
    assert!(out.contains("clean=200\n"), "{}", run.all());
    let audit = std::fs::read_to_string(net.audit()).expect("audit");
    assert!(!audit.contains(SECRET), "the real value never reaches the audit log");
    assert!(audit.contains("api.allowed.test/echo: the answer held the value of secret(s) api; masked"), "{audit}");
    assert!(
        audit.contains("api.allowed.test/echo: the answer came encoded (gzip) though Bridle asked for none"),
        "{audit}"
    );
    let requests = net.requests();
    assert!(requests.iter().any(|r| r["event"]["detail"]["dlp"].to_string().contains("placeholder-misuse")));
}

#[test]
fn git_is_decided_as_fetch_or_push_with_the_pushed_refs() {
    let net = Net::new("git");
    let script = r#"
        git clone -q https://git.allowed.test/git/repo.git clone && cd clone &&
        git -c user.name=a -c user.email=a@a commit -q --allow-empty -m change &&
        (git push -q origin HEAD:main 2>&1; echo "push-main=$?") &&
        (git push -q origin HEAD:feature 2>&1; echo "push-feature=$?")
    "#;
    let run = net.run(script);
    let out = &run.stdout;
    assert!(out.contains("push-main=1"), "{}", run.all());
    assert!(out.contains("push-feature=0"), "{}", run.all());
    let requests = net.requests();
    let ops: Vec<(String, String, String)> = requests
        .iter()
        .filter(|r| r["event"]["detail"]["git"].is_object())
        .map(|r| {
            let git = &r["event"]["detail"]["git"];
            (git["op"].to_string(), git["refs"].to_string(), r["decision"]["effect"].to_string())
        })
        .collect();
    assert!(ops.iter().any(|(op, _, _)| op == "\"fetch\""), "{ops:?}");
    assert!(
        ops.iter()
            .any(|(op, refs, effect)| op == "\"push\"" && refs.contains("refs/heads/main") && effect == "\"deny\""),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .any(|(op, refs, effect)| op == "\"push\"" && refs.contains("refs/heads/feature") && effect == "\"allow\""),
        "{ops:?}"
    );
}

/// `bridle approvals` lists the held request; `bridle approve` lets it
/// through, `bridle deny` refuses it; the agent's curl just waits meanwhile.
#[test]
fn an_ask_holds_the_request_until_bridle_approve_or_deny() {
    let net = Net::new("ask");
    let script = r#"
        curl -sS -m 30 https://allowed.test/approve-me
        curl -sS -m 30 -o /dev/null -w 'deny-me=%{http_code}\n' https://allowed.test/deny-me
    "#;
    let session = std::thread::scope(|scope| {
        let run = scope.spawn(|| net.run(script));
        for (path, verb) in [("/approve-me", "approve"), ("/deny-me", "deny")] {
            let id = support::wait_for_approval(path);
            let answered = support::bridle(&[verb, &id, "--by", "tester"]);
            assert_eq!(answered.code, 0, "{}", answered.all());
        }
        run.join().expect("session thread")
    });
    assert_eq!(session.code, 0, "{}", session.all());
    assert!(session.stdout.contains("ok /approve-me HTTP/2.0"), "{}", session.all());
    assert!(session.stdout.contains("deny-me=403"), "{}", session.all());
    let requests = net.requests();
    let approved = requests.iter().find(|r| r["event"]["detail"]["path"] == "/approve-me").expect("decided");
    assert_eq!(approved["decision"]["reason"], "approved by tester");
}

/// Two held POSTs that policy sees alike (same URL, same headers, same
/// body size) but whose bodies differ are two approvals: approving the
/// harmless one does not let the other out with it.
#[test]
fn held_requests_with_different_bodies_are_approved_one_by_one() {
    let net = Net::new("ask2");
    let script = r#"
        curl -sS -m 30 -o /dev/null -w 'harmless=%{http_code}\n' --data 'harmless-notes' https://allowed.test/approve-me &
        sleep 1
        curl -sS -m 30 -o /dev/null -w 'stolen=%{http_code}\n' --data 'stolen-secrets' https://allowed.test/approve-me &
        wait
    "#;
    let session = std::thread::scope(|scope| {
        let run = scope.spawn(|| net.run(script));
        let ids = support::wait_for_approvals("/approve-me", 2);
        let approved = support::bridle(&["approve", &ids[0], "--by", "tester"]);
        assert_eq!(approved.code, 0, "{}", approved.all());
        let denied = support::bridle(&["deny", &ids[1], "--by", "tester"]);
        assert_eq!(denied.code, 0, "{}", denied.all());
        run.join().expect("session thread")
    });
    assert_eq!(session.code, 0, "{}", session.all());
    assert!(session.stdout.contains("harmless=200"), "{}", session.all());
    assert!(session.stdout.contains("stolen=403"), "{}", session.all());
}

/// A WebSocket upgrade is decided like any request; python's `websockets`
/// client (which offers permessage-deflate) then talks to the echo upstream
/// through Bridle, which withheld the offer so every frame stays readable.
#[test]
fn websocket_upgrades_are_decided_then_relayed() {
    let net = Net::new("ws");
    let script = r#"python3 -c '
import asyncio, websockets
async def main():
    async with websockets.connect("wss://allowed.test/ws") as ws:
        print("offered:", ws.response_headers.get("x-offered-extensions"))
        await ws.send("hello through bridle")
        print("echo:", await ws.recv())
asyncio.run(main())
'"#;
    let run = net.run(script);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("offered: none"), "the extension offer reached the upstream: {}", run.all());
    assert!(run.stdout.contains("echo: hello through bridle"), "{}", run.all());
    let upgrade = net.requests().into_iter().find(|r| r["event"]["detail"]["path"] == "/ws").expect("decided");
    assert_eq!(upgrade["decision"]["effect"], "allow");
    let audit = std::fs::read_to_string(net.audit()).expect("audit");
    assert!(
        audit.contains(r#"allowed.test/ws switched to \"websocket\": the agent's messages are scanned"#),
        "{audit}"
    );
}

/// The agent's WebSocket messages are unmasked and scanned as one stream:
/// a key split over two messages is found in the second, which is never
/// forwarded; the upgrade is decided again with the finding, the deny
/// closes the connection (1008 with the reason), and an upstream that
/// turns compression on unasked is a 502.
#[test]
fn a_leak_in_websocket_messages_closes_the_connection() {
    let net = Net::new("wsleak");
    let script = r#"python3 -c '
import asyncio, websockets
async def main():
    async with websockets.connect("wss://allowed.test/ws") as ws:
        await ws.send("key=AKIAIOSF")
        print("echo:", await ws.recv())
        await ws.send("ODNN7EXAMPLE")
        try:
            print("leaked:", await ws.recv())
        except websockets.ConnectionClosed as closed:
            print("closed:", closed.rcvd.code, closed.rcvd.reason)
    try:
        await websockets.connect("wss://allowed.test/ws-deflate")
    except Exception as refused:
        print("deflate:", refused)
asyncio.run(main())
'"#;
    let run = net.run(script);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = &run.stdout;
    assert!(out.contains("echo: key=AKIAIOSF\n"), "{}", run.all());
    assert!(!out.contains("leaked:"), "the message completing the key was forwarded: {}", run.all());
    assert!(out.contains("closed: 1008 bridle: the request carries a secret\n"), "{}", run.all());
    assert!(out.contains("deflate: server rejected WebSocket connection: HTTP 502"), "{}", run.all());
    let ws: Vec<_> = net.requests().into_iter().filter(|r| r["event"]["detail"]["path"] == "/ws").collect();
    assert_eq!(ws.len(), 2, "the upgrade, then its re-decision: {ws:?}");
    assert_eq!(ws[0]["decision"]["effect"], "allow");
    assert_eq!(ws[1]["decision"]["effect"], "deny");
    assert_eq!(ws[1]["decision"]["policies"][0], "no-leaks");
    assert!(ws[1]["event"]["detail"]["dlp"].to_string().contains("aws"), "{:?}", ws[1]);
    let audit = std::fs::read_to_string(net.audit()).expect("audit");
    assert!(
        audit.contains("allowed.test/ws: upgraded connection closed: a message from the agent was denied"),
        "{audit}"
    );
    assert!(
        audit.contains(r#"allowed.test/ws-deflate: the upstream switched to \"websocket\" with extensions"#),
        "{audit}"
    );
}
