use std::path::{Path, PathBuf};
use std::process::Command as Process;

use super::*;

const ZERO: &str = "0000000000000000000000000000000000000000";
const A: &str = "f699f81be6f408e5e0465931e6528531c6af6cf4";
const B: &str = "124ed0428ecf4bc88aa4ffecdb3aa0c3ee99aba0";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/git").join(name)
}

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("captured body (see testdata/git/README.md)")
}

/// One pkt-line holding `data`.
fn pkt(data: &str) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data.as_bytes());
    out
}

fn body(lines: &[&str]) -> Vec<u8> {
    let mut out: Vec<u8> = lines.iter().flat_map(|l| pkt(l)).collect();
    out.extend_from_slice(b"0000PACK");
    out
}

fn refs(names: &[&str]) -> RefsParse {
    RefsParse::Complete(names.iter().map(|n| (*n).to_owned()).collect())
}

#[test]
fn git_service_from_request_line() {
    use GitService::{ReceivePack as Push, UploadPack as Fetch};
    let cases: &[(Method, &str, &str, Option<GitService>)] = &[
        (Method::GET, "/repo.git/info/refs", "service=git-upload-pack", Some(Fetch)),
        (Method::GET, "/repo.git/info/refs", "service=git-receive-pack", Some(Push)),
        (Method::HEAD, "/repo.git/info/refs", "service=git-receive-pack", Some(Push)),
        (Method::POST, "/repo.git/git-upload-pack", "", Some(Fetch)),
        (Method::POST, "/repo.git/git-receive-pack", "", Some(Push)),
        (Method::POST, "/org/team/repo/git-receive-pack", "", Some(Push)),
        (Method::GET, "/info/refs", "service=git-receive-pack", Some(Push)),
        (Method::POST, "/git-receive-pack", "", Some(Push)),
        // The web server decodes the path and query before http-backend.
        (Method::POST, "/repo.git/git%2Dreceive%2Dpack", "", Some(Push)),
        (Method::GET, "/repo.git/info%2Frefs", "service=git%2Dreceive-pack", Some(Push)),
        (Method::GET, "/repo.git/info/refs", "x=1&service=git-receive-pack", Some(Push)),
        (Method::GET, "/repo.git/info/refs", "servic%65=git-receive-pack", Some(Push)),
        (Method::GET, "/repo.git/info/refs", "service=git-upload-pack&service=git-receive-pack", Some(Push)),
        // Not smart HTTP.
        (Method::GET, "/repo.git/info/refs", "", None),
        (Method::GET, "/repo.git/info/refs", "service=git-upload-archive", None),
        (Method::GET, "/repo.git/info/refs", "xservice=git-receive-pack", None),
        (Method::GET, "/repo.git/git-receive-pack", "", None),
        (Method::POST, "/repo.git/info/refs", "service=git-receive-pack", None),
        (Method::PUT, "/repo.git/git-receive-pack", "", None),
        (Method::POST, "/repo.git/git-receive-pack/", "", None),
        (Method::POST, "/repo.git/xgit-receive-pack", "", None),
        (Method::GET, "/repo.git/HEAD", "", None),
        (Method::GET, "/repo.git/objects/info/packs", "", None),
    ];
    for (method, path, query, want) in cases {
        assert_eq!(git_service(method, path, query), *want, "{method} {path}?{query}");
    }
}

/// Every request line real git sent while the captures were made.
#[test]
fn recorded_requests_are_recognised() {
    let text = std::fs::read_to_string(testdata("requests.txt")).expect("requests.txt");
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(' ').collect();
        let [method, path, query, content_type, _protocol] = fields[..] else { panic!("bad line {line:?}") };
        let method: Method = method.parse().expect("method");
        let query = if query == "-" { "" } else { query };
        let service = git_service(&method, path, query).unwrap_or_else(|| panic!("not recognised: {line}"));
        if method == Method::POST {
            assert_eq!(content_type, format!("application/x-{}-request", service.name()), "{line}");
        }
        let named =
            if path.ends_with("info/refs") { query.ends_with(service.name()) } else { path.ends_with(service.name()) };
        assert!(named, "{line}");
        seen += 1;
    }
    assert!(seen >= 14, "{seen} requests");
}

#[test]
fn op_names_service_and_action() {
    let op = GitService::ReceivePack.op();
    assert_eq!((op.service.as_str(), op.op.as_str(), op.refs.len()), ("git-receive-pack", "push", 0));
    let op = GitService::UploadPack.op();
    assert_eq!((op.service.as_str(), op.op.as_str(), op.refs.len()), ("git-upload-pack", "fetch", 0));
}

/// (file, refs, creates, deletes) for each body captured from real pushes.
type Capture = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

const CAPTURES: &[Capture] = &[
    ("push-create.bin", &["refs/heads/main"], &["refs/heads/main"], &[]),
    (
        "push-update-multi.bin",
        &["refs/heads/main", "refs/heads/feature", "refs/tags/v1"],
        &["refs/heads/feature", "refs/tags/v1"],
        &[],
    ),
    ("push-delete.bin", &["refs/heads/feature"], &[], &["refs/heads/feature"]),
    ("push-options.bin", &["refs/heads/main"], &[], &[]),
    ("push-shallow.bin", &["refs/heads/main"], &[], &[]),
    ("push-sha256.bin", &["refs/heads/main"], &["refs/heads/main"], &[]),
    ("push-signed.bin", &["refs/heads/main", "refs/tags/v2"], &["refs/tags/v2"], &[]),
];

#[test]
fn captured_pushes_give_their_refs() {
    for (file, names, creates, deletes) in CAPTURES {
        let bytes = capture(file);
        assert_eq!(receive_pack_refs(&bytes), refs(names), "{file}");
        let commands = command_list(&bytes).expect("parses");
        let created: Vec<&str> = commands.iter().filter(|c| c.is_create()).map(|c| c.refname.as_str()).collect();
        let deleted: Vec<&str> = commands.iter().filter(|c| c.is_delete()).map(|c| c.refname.as_str()).collect();
        assert_eq!((&created[..], &deleted[..]), (*creates, *deletes), "{file}");
    }
}

#[test]
fn sha256_push_has_64_hex_ids() {
    let commands = command_list(&capture("push-sha256.bin")).expect("parses");
    assert_eq!((commands[0].old.len(), commands[0].new.len()), (64, 64));
}

/// The caller reads the body as it arrives: every prefix that stops inside
/// the command list must ask for more, never guess.
#[test]
fn every_short_prefix_of_a_capture_needs_more() {
    for (file, names, _, _) in CAPTURES {
        let bytes = capture(file);
        let end = (0..=bytes.len()).find(|&n| receive_pack_refs(&bytes[..n]) != RefsParse::NeedMore).expect("ends");
        assert_eq!(receive_pack_refs(&bytes[..end]), refs(names), "{file} at {end}");
        assert_eq!(&bytes[end - 4..end], b"0000", "{file}: complete exactly at the flush-pkt");
    }
}

#[test]
fn synthetic_command_lists() {
    let first = format!("{ZERO} {A} refs/heads/new\0report-status side-band-64k");
    let long_name = format!("refs/heads/{}", "x".repeat(200));
    let sha256 = ("a".repeat(64), "0".repeat(64));
    let cases: Vec<(Vec<u8>, RefsParse)> = vec![
        (b"0000".to_vec(), refs(&[])),
        (body(&[&first]), refs(&["refs/heads/new"])),
        // Other clients (JGit, go-git) end command lines with LF.
        (
            body(&[&format!("{A} {B} refs/heads/main\n"), &format!("{B} {ZERO} refs/heads/gone\n")]),
            refs(&["refs/heads/main", "refs/heads/gone"]),
        ),
        (body(&[&format!("{A} {B} {long_name}")]), refs(&[&long_name])),
        (body(&[&format!("{} {} refs/heads/main\0caps", sha256.0, sha256.1)]), refs(&["refs/heads/main"])),
        (body(&[&format!("{} {} refs/heads/main", A.to_uppercase(), B)]), refs(&["refs/heads/main"])),
        (body(&[&format!("shallow {A}\n"), &format!("shallow {B}"), &first]), refs(&["refs/heads/new"])),
        // git reads a shallow line wherever it comes.
        (
            body(&[&first, &format!("shallow {A}\n"), &format!("{A} {B} refs/tags/t")]),
            refs(&["refs/heads/new", "refs/tags/t"]),
        ),
        // Not what git sends or accepts.
        (body(&[&format!("{A} {} refs/heads/main", sha256.1)]), RefsParse::Invalid),
        (body(&[&format!("{A}  {B} refs/heads/main")]), RefsParse::Invalid),
        (body(&[&format!("{A} {B}")]), RefsParse::Invalid),
        (body(&[&format!("{A} {B} ")]), RefsParse::Invalid),
        (body(&[&format!("{A} {B} refs/heads/a b")]), RefsParse::Invalid),
        (body(&[&format!("{A} {B} refs/heads/a\tb")]), RefsParse::Invalid),
        (body(&[&format!("{} {B} refs/heads/main", &A[..39])]), RefsParse::Invalid),
        (body(&[&format!("{A}0 {B} refs/heads/main")]), RefsParse::Invalid),
        (body(&["shallow xyz"]), RefsParse::Invalid),
        (body(&[&format!("{A} {B} refs/heads/main"), ""]), RefsParse::Invalid),
        (b"0001".to_vec(), RefsParse::Invalid),
        (b"0004".to_vec(), RefsParse::Invalid),
        (b"+0af".to_vec(), RefsParse::Invalid),
        (b"fff1".to_vec(), RefsParse::Invalid),
        (b"PACK\0\0\0\x02".to_vec(), RefsParse::Invalid),
        (b"\x1f\x8b\x08\0".to_vec(), RefsParse::Invalid),
        (b"".to_vec(), RefsParse::NeedMore),
        (b"00".to_vec(), RefsParse::NeedMore),
        (pkt(&first), RefsParse::NeedMore),
    ];
    for (bytes, want) in cases {
        assert_eq!(receive_pack_refs(&bytes), want, "{:?}", String::from_utf8_lossy(&bytes));
    }
    let mut bad_utf8 = pkt(&format!("{A} {B} refs/heads/"));
    bad_utf8[3] += 1;
    bad_utf8.extend_from_slice(b"\xff0000");
    assert_eq!(receive_pack_refs(&bad_utf8), RefsParse::Invalid);
}

#[test]
fn unfinished_list_is_invalid_at_the_limit() {
    let line = pkt(&format!("{A} {B} refs/heads/branch-with-a-fairly-long-name"));
    let mut bytes = Vec::new();
    while bytes.len() + line.len() < MAX_COMMAND_LIST {
        bytes.extend_from_slice(&line);
    }
    assert_eq!(receive_pack_refs(&bytes), RefsParse::NeedMore);
    bytes.extend_from_slice(&line);
    assert_eq!(receive_pack_refs(&bytes), RefsParse::Invalid);
    // The same list, finished, is complete however long the body is.
    let mut finished = bytes[..bytes.len() - line.len()].to_vec();
    finished.extend_from_slice(b"0000");
    finished.resize(2 * MAX_COMMAND_LIST, b'P');
    assert!(matches!(receive_pack_refs(&finished), RefsParse::Complete(r) if r.len() > 400));
}

fn cert(lines: &[&str], end: &[u8]) -> Vec<u8> {
    let mut out = pkt("push-cert\0report-status side-band-64k");
    for line in lines {
        out.extend(pkt(line));
    }
    out.extend_from_slice(end);
    out
}

const HEADER: [&str; 4] =
    ["certificate version 0.1\n", "pusher me 1 +0000\n", "pushee https://git.test/r.git\n", "nonce 1-abc\n"];

#[test]
fn push_certificates() {
    let update = format!("{A} {B} refs/heads/main\n");
    let create = format!("{ZERO} {B} refs/tags/v1\n");
    let sig = ["-----BEGIN PGP SIGNATURE-----\n", "iQEz\n", "-----END PGP SIGNATURE-----\n"];
    let signed = |commands: &[&str], end: &[u8]| {
        let mut lines: Vec<&str> = HEADER.to_vec();
        lines.push("\n");
        lines.extend_from_slice(commands);
        lines.extend_from_slice(&sig);
        cert(&lines, end)
    };
    let ended = [pkt("push-cert-end\n"), b"0000".to_vec()].concat();
    let cases: Vec<(Vec<u8>, RefsParse)> = vec![
        (signed(&[&update, &create], &ended), refs(&["refs/heads/main", "refs/tags/v1"])),
        (signed(&[], &ended), refs(&[])),
        // A flush inside the certificate ends the whole list (git does the same).
        (signed(&[&update], b"0000"), refs(&["refs/heads/main"])),
        // Commands after push-cert-end are queued too, before the cert's own.
        (
            [signed(&[&update], &pkt("push-cert-end\n")), pkt(&create), b"0000".to_vec()].concat(),
            refs(&["refs/tags/v1", "refs/heads/main"]),
        ),
        // No empty line after the header: git dies "malformed push certificate".
        (cert(&[HEADER[0], &update, "push-cert-end\n"], b"0000"), RefsParse::Invalid),
        (signed(&["not a command\n"], &ended), RefsParse::Invalid),
        (signed(&[&update, "\n"], &ended), RefsParse::Invalid),
        // A line that only looks like a signature is a bad command to git.
        (signed(&[&update, "-----BEGIN FAKE-----\n", &create], &ended), RefsParse::Invalid),
        (signed(&[&update], b""), RefsParse::NeedMore),
    ];
    for (bytes, want) in cases {
        assert_eq!(receive_pack_refs(&bytes), want, "{:?}", String::from_utf8_lossy(&bytes));
    }
}

/// The installed git, pushing over file:// through a `tee`, sends command
/// lists this parser reads: creates, updates, deletes and tags together.
#[test]
fn live_git_push_is_parsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], cwd: &Path| {
        let out = Process::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@bridle.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@bridle.invalid")
            .output()
            .expect("git is installed (tests need it)");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let root = dir.path();
    run(&["init", "-q", "--bare", "-b", "main", "remote.git"], root);
    run(&["init", "-q", "-b", "main", "work"], root);
    let work = root.join("work");
    run(&["commit", "-q", "--allow-empty", "-m", "one"], &work);
    run(&["branch", "old"], &work);
    let remote = format!("file://{}", root.join("remote.git").display());
    let capture = root.join("capture.bin");
    let receive = format!("--receive-pack=tee {} | git-receive-pack", capture.display());
    run(&["push", "-q", &receive, &remote, "main", "old"], &work);
    assert_eq!(
        receive_pack_refs(&std::fs::read(&capture).expect("capture")),
        refs(&["refs/heads/main", "refs/heads/old"])
    );
    run(&["commit", "-q", "--allow-empty", "-m", "two"], &work);
    run(&["tag", "v1"], &work);
    run(&["push", "-q", &receive, &remote, "main", ":old", "refs/tags/v1"], &work);
    let bytes = std::fs::read(&capture).expect("capture");
    let commands = command_list(&bytes).expect("parses");
    let shape: Vec<(&str, bool, bool)> =
        commands.iter().map(|c| (c.refname.as_str(), c.is_create(), c.is_delete())).collect();
    assert_eq!(
        shape,
        [("refs/heads/main", false, false), ("refs/heads/old", false, true), ("refs/tags/v1", true, false)]
    );
}
