//! The control socket with the CLI's client on the other end. Needs root
//! (as CI is): one test runs a client as `nobody`.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{Connect, Event, EventKind};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::cli::approvals::{Failure, answer_in, pending_in};

const NOBODY: u32 = 65534;

/// A broker served on `<dir>/s1.sock` until dropped.
struct Served {
    dir: tempfile::TempDir,
    approvals: Arc<Approvals>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Served {
    async fn start() -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let approvals = Arc::new(Approvals::new(Duration::from_secs(60), None));
        let (stop, stopped) = oneshot::channel::<()>();
        let path = dir.path().join("s1.sock");
        let socket = bind(&path).expect("bind");
        let task = tokio::spawn(socket.serve(Arc::clone(&approvals), async move {
            let _ = stopped.await;
        }));
        Served { dir, approvals, stop: Some(stop), task }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("s1.sock")
    }

    /// Holds a connect to `name` in the background until it is pending.
    async fn hold(&self, name: &str) -> JoinHandle<Decision> {
        let event = Event::now("run-7", "claude", EventKind::Connect(Connect::tls_to(name, 443)));
        let asked = Decision {
            effect: Effect::Ask,
            policies: vec!["ask-new-hosts".into()],
            reason: Some("new hosts need a person".into()),
            generation: 1,
            errors: vec![],
            decided: true,
        };
        let approvals = Arc::clone(&self.approvals);
        let task = tokio::spawn(async move { approvals.ask(&event, asked).await });
        for _ in 0..1000 {
            if !self.approvals.pending().is_empty() {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the ask never became pending");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("join").expect("serve");
        assert!(!self.socket().exists(), "the socket is removed on stop");
    }
}

/// Runs the CLI's blocking client off the runtime the server runs on.
async fn client<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("client")
}

/// Connects to `socket` as `nobody`, sends a list request and prints the
/// reply; returns (exit ok, stdout + stderr). A refused peer may find the
/// socket closed before it sends: the refusal is still there to read.
async fn as_nobody(socket: PathBuf) -> (bool, String) {
    assert!(nix::unistd::geteuid().is_root(), "this test runs a client as nobody, so it needs root");
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.connect(sys.argv[1])\n\
                  try: s.sendall(b'{\"op\":\"list\"}\\n')\n\
                  except BrokenPipeError: pass\n\
                  print(s.makefile().readline())\n";
    client(move || {
        let output = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(socket)
            .current_dir("/")
            .env_clear()
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run python3 as nobody");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_listed_and_approved_over_the_socket() {
    let served = Served::start().await;
    let mode = std::fs::metadata(served.socket()).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let held = served.hold("new.example.test").await;
    let dir = served.dir.path().to_path_buf();
    let listing = client(move || pending_in(&dir)).await.expect("list");
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    let [view] = listing.pending.as_slice() else { panic!("one pending: {:?}", listing.pending) };
    assert_eq!(view.summary, r#"Net::Action::"Connect" new.example.test:443"#);
    assert_eq!((view.session.as_str(), view.reason.as_deref()), ("run-7", Some("new hosts need a person")));
    let (dir, id) = (served.dir.path().to_path_buf(), view.id.clone());
    let answered = client(move || answer_in(&dir, &id, true, "alice")).await.expect("approve");
    assert_eq!(answered, "s1");
    let decision = held.await.expect("ask");
    assert_eq!((decision.effect, decision.reason.as_deref()), (Effect::Allow, Some("approved by alice")));
    let (dir, id) = (served.dir.path().to_path_buf(), view.id.clone());
    let again = client(move || answer_in(&dir, &id, false, "alice")).await;
    assert!(matches!(again, Err(Failure { code: 1, .. })), "{again:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_answers_every_line_and_names_its_errors() {
    let served = Served::start().await;
    let held = served.hold("other.example.test").await;
    let id = served.approvals.pending()[0].id.clone();
    let lines = [
        "not json".to_string(),
        r#"{"op":"list","extra":1}"#.to_string(),
        r#"{"op":"approve","id":"nope"}"#.to_string(),
        format!(r#"{{"op":"deny","id":"{id}"}}"#),
    ];
    let stream = UnixStream::connect(served.socket()).await.expect("connect");
    let (read, mut write) = stream.into_split();
    write.write_all((lines.join("\n") + "\n").as_bytes()).await.expect("write");
    let mut replies = BufReader::new(read).lines();
    let mut codes = Vec::new();
    for _ in &lines {
        let line = replies.next_line().await.expect("read").expect("a reply per line");
        let response: Response = serde_json::from_str(&line).expect("response json");
        codes.push((response.ok, response.code));
    }
    let bad = Some(ErrorCode::BadRequest);
    assert_eq!(codes, [(false, bad), (false, bad), (false, Some(ErrorCode::UnknownId)), (true, None)]);
    let decision = held.await.expect("ask");
    assert_eq!((decision.effect, decision.reason.as_deref()), (Effect::Deny, Some("denied by uid 0")));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_root_peer_is_refused_by_mode_and_by_credentials() {
    let served = Served::start().await;
    // Let `nobody` reach the socket itself, so its own 0600 is what refuses.
    std::fs::set_permissions(served.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let (ok, output) = as_nobody(served.socket()).await;
    assert!(!ok && output.contains("PermissionError"), "{output}");
    // With the mode opened up, the peer check still refuses.
    std::fs::set_permissions(served.socket(), std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    let (ok, output) = as_nobody(served.socket()).await;
    assert!(ok, "{output}");
    let response: Response = serde_json::from_str(output.trim()).expect("a refusal");
    assert_eq!((response.ok, response.code), (false, Some(ErrorCode::Forbidden)));
    assert!(response.pending.is_none());
    assert!(response.error.is_some_and(|e| e.contains("uid 65534")));
    served.stop().await;
}

#[tokio::test]
async fn no_running_bridle_is_exit_2_and_stale_sockets_are_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    assert!(matches!(pending_in(&missing), Err(Failure { code: 2, .. })));
    assert!(matches!(pending_in(dir.path()), Err(Failure { code: 2, .. })));
    // A socket nobody listens on: what a Bridle that died leaves behind.
    let path = dir.path().join("run-1.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let stale = pending_in(dir.path()).expect_err("stale");
    assert!(stale.code == 2 && stale.message.contains("stale"), "{stale:?}");
    assert!(matches!(answer_in(dir.path(), "x", true, "me"), Err(Failure { code: 2, .. })));
    let live = bind(&path).expect("a stale socket is replaced");
    let twice = bind(&path).expect_err("a live one is not");
    assert!(twice.to_string().contains("already serves"), "{twice}");
    drop(live);
    // Serving binds again (replacing the stale file) and cleans up on stop.
    let approvals = Arc::new(Approvals::new(Duration::from_secs(1), None));
    bind(&path).expect("bind").serve(approvals, async {}).await.expect("serve");
    assert!(!path.exists());
    std::fs::write(dir.path().join("file"), "x").expect("write");
    assert!(bind(&dir.path().join("file")).is_err(), "a non-socket is never replaced");
    assert_eq!(socket_path("run-42"), Path::new("/run/bridle/run-42.sock"));
}

#[tokio::test]
async fn the_socket_directory_is_roots_alone_and_sockets_of_others_are_never_called() {
    use std::os::unix::fs::{PermissionsExt as _, chown};
    let dir = tempfile::tempdir().expect("tempdir");
    // A container runtime's tmpfs is 1777: narrowed to root's alone.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let socket = bind(&shared.join("s.sock")).expect("bind");
    let mode = std::fs::metadata(&shared).expect("stat").permissions().mode();
    assert_eq!(mode & 0o7777, 0o700, "{mode:o}");
    drop(socket);
    // A directory someone else owns could hold their socket: refused.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("dir");
    chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("chown");
    let refused = bind(&theirs.join("s.sock")).expect_err("another owner's directory");
    assert!(refused.to_string().contains("not uid 65534"), "{refused}");
    // A socket someone else bound where Bridle's would be is not asked.
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).expect("dir");
    let _listener = std::os::unix::net::UnixListener::bind(planted.join("a.sock")).expect("bind");
    chown(planted.join("a.sock"), Some(NOBODY), Some(NOBODY)).expect("chown");
    let failure = pending_in(&planted).expect_err("not root's");
    assert!(failure.message.contains("owned by uid 65534, not by root"), "{failure:?}");
}
