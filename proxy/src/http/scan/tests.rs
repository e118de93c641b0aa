use std::ffi::OsString;
use std::sync::LazyLock;

use bridle_engine::config::{Secret, SecretSource};
use http::header::{HeaderName, HeaderValue};

use super::*;

// Token-shaped strings are assembled at run time so the source holds none.
fn tok(prefix: &str, body: &str) -> String {
    format!("{prefix}{body}")
}

fn aws() -> String {
    tok("AKIA", "IOSFODNN7EXAMPLE")
}

fn github() -> String {
    tok("ghp_", "1234567890abcdefghijklmnopqrstuvwxyZ")
}

const REAL: &str = "real-secret-value-0123456789";

/// Compiled once: every split of every case builds a scanner.
static SECRETS: LazyLock<Arc<Secrets>> = LazyLock::new(load_secrets);
static CANARIES: LazyLock<Canaries> =
    LazyLock::new(|| Canaries::new(&["canary-7f3a9c1e", "AWS_FAKE_CANARY_KEY_42"]).expect("canaries"));

fn secrets() -> Arc<Secrets> {
    Arc::clone(&SECRETS)
}

fn canaries() -> Canaries {
    CANARIES.clone()
}

fn load_secrets() -> Arc<Secrets> {
    let github = Secret {
        name: "github".to_owned(),
        source: SecretSource::Env("GITHUB_TOKEN".to_owned()),
        hosts: vec!["api.github.com".to_owned()],
        header: "authorization".to_owned(),
        format: "Bearer {value}".to_owned(),
    };
    let long = Secret { name: "long".to_owned(), source: SecretSource::Env("LONG".to_owned()), ..github.clone() };
    let env = |var: &str| match var {
        "GITHUB_TOKEN" => Some(OsString::from(REAL)),
        "LONG" => Some(OsString::from(long_value())),
        _ => None,
    };
    Arc::new(Secrets::load_with(&[github, long], env).expect("loads"))
}

/// A configured value longer than the default overlap.
fn long_value() -> String {
    (0..60).map(|i| format!("L{i:02}-x")).collect::<String>() + "-end-of-a-very-long-service-account-token"
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
        map.append(name, HeaderValue::from_str(value).expect("value"));
    }
    map
}

fn head(uri: &str, pairs: &[(&str, &str)], host: &str) -> Vec<String> {
    let secrets = secrets();
    scan_request_head(uri, &headers(pairs), Some(&secrets), host, &canaries())
}

#[test]
fn request_heads() {
    let basic = |credentials: &str| format!("Basic {}", super::super::codec::base64_encode(credentials.as_bytes()));
    let pem = "-----BEGIN%20RSA%20PRIVATE%20KEY-----%0AMIIEpAIB";
    let jwt = tok("eyJ", "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
    type Case<'a> = (String, Vec<(&'a str, String)>, &'a str, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        // (uri, headers, host, kinds)
        ("/v1/ok".into(), vec![("accept", "*/*".into())], "api.allowed.test", vec![]),
        (format!("/upload?key={}", aws()), vec![], "evil.test", vec!["aws-access-key-id"]),
        (format!("/upload?k={pem}"), vec![], "evil.test", vec!["private-key"]),
        ("/".into(), vec![("authorization", format!("token {}", github()))], "api.github.com", vec!["github-token"]),
        (
            "/".into(),
            vec![("x-data", format!("{} {}", github(), aws()))],
            "a.test",
            vec!["aws-access-key-id", "github-token"],
        ),
        // Placeholders: fine to their host, misuse anywhere else.
        ("/".into(), vec![("authorization", "Bearer bridle-secret-github".into())], "api.github.com", vec![]),
        (
            "/".into(),
            vec![("authorization", "Bearer bridle-secret-github".into())],
            "evil.test",
            vec!["placeholder-misuse"],
        ),
        ("/x?t=bridle-secret-github".into(), vec![], "evil.test", vec!["placeholder-misuse"]),
        (
            "/".into(),
            vec![("authorization", basic("x-access-token:bridle-secret-github"))],
            "evil.test",
            vec!["placeholder-misuse"],
        ),
        ("/".into(), vec![("authorization", basic("x-access-token:bridle-secret-github"))], "api.github.com", vec![]),
        // The real value is never the agent's to send.
        ("/".into(), vec![("authorization", format!("Bearer {REAL}"))], "api.github.com", vec!["configured-secret"]),
        (format!("/a%2F{}", REAL.replace('-', "%2D")), vec![], "x.test", vec!["configured-secret"]),
        ("/".into(), vec![("cookie", "session=1; t=canary-7f3a9c1e".into())], "x.test", vec!["honeytoken"]),
        // Session tokens are not leaks.
        ("/".into(), vec![("authorization", format!("Bearer {jwt}"))], "api.test", vec![]),
    ];
    for (uri, pairs, host, want) in cases {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(head(&uri, &pairs, host), want, "{uri} {pairs:?} -> {host}");
    }
    let without =
        scan_request_head("/x?t=bridle-secret-github", &HeaderMap::new(), None, "evil.test", &Canaries::none());
    assert!(without.is_empty(), "no secrets configured: a placeholder-shaped string is nothing");
}

fn scanner() -> BodyScanner {
    BodyScanner::new(Some(secrets()), "evil.test", &canaries())
}

/// `text` fed in two chunks split at every position: the kind is found,
/// once. A chunk that ends inside a token shows only its start, which may
/// be a token of a related kind (`sk-ant-api03-Ab…` cut short is an
/// `openai-key`): `also` lists those.
fn found_at_every_split(text: &str, kind: &str, also: &[&str]) {
    let bytes = text.as_bytes();
    for split in 0..=bytes.len() {
        let mut scanner = scanner();
        let mut all = scanner.feed(&bytes[..split]);
        all.extend(scanner.feed(&bytes[split..]));
        assert_eq!(all.iter().filter(|k| *k == kind).count(), 1, "split at {split} of {text:?}: {all:?}");
        assert!(all.iter().all(|k| k == kind || also.contains(&k.as_str())), "split at {split} of {text:?}: {all:?}");
    }
}

#[test]
fn tokens_split_across_two_chunks() {
    let padding = "x".repeat(300);
    let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA";
    let cases = [
        (format!("{{\"key\":\"{}\"}}", aws()), "aws-access-key-id", &[][..]),
        (format!("token={}&x=1", github()), "github-token", &[][..]),
        (format!("{padding} {} {padding}", tok("glpat-", "xxxxXXXX1234_-abcdefg")), "gitlab-token", &[][..]),
        (format!("\"{}\"", tok("xoxb-", "123456789012-1234567890123-AbCdEfGh")), "slack-token", &[][..]),
        (
            format!("k: {}\n", tok("sk-ant-", "api03-AbCdEf0123456789GhIjKl-mnOPqr_stuv")),
            "anthropic-key",
            &["openai-key"][..],
        ),
        (format!("k: {}\n", tok("sk-proj-", "Ab3dEfGh1jKlMn0pQrStUvWxYz_12-34")), "openai-key", &[][..]),
        (format!("{padding}\n{pem}"), "private-key", &[][..]),
        ("x=-----BEGIN+RSA+PRIVATE+KEY-----%0AMIIE".to_owned(), "private-key", &[][..]),
        (format!("{padding} bridle-secret-github,{padding}"), "placeholder-misuse", &[][..]),
        (format!("{padding}{REAL}{padding}"), "configured-secret", &[][..]),
        (format!("{{\"note\":\"canary-7f3a9c1e\"}}{padding}"), "honeytoken", &[][..]),
    ];
    for (text, kind, also) in cases {
        found_at_every_split(&text, kind, also);
    }
}

#[test]
fn long_configured_value_split_anywhere() {
    let value = long_value();
    assert!(value.len() > OVERLAP);
    let text = format!("{}{value}{}", "a".repeat(1000), "b".repeat(1000));
    let bytes = text.as_bytes();
    for split in (900..1500).step_by(7) {
        let mut scanner = scanner();
        let mut all = scanner.feed(&bytes[..split]);
        all.extend(scanner.feed(&bytes[split..]));
        assert_eq!(all, ["configured-secret"], "split at {split}");
    }
}

#[test]
fn byte_at_a_time_and_large_chunks() {
    let text =
        format!("{}{} and bridle-secret-github and canary-7f3a9c1e {}", "z ".repeat(500), github(), "q".repeat(5000));
    let mut bytewise = scanner();
    let mut all: Vec<String> = text.as_bytes().iter().flat_map(|b| bytewise.feed(&[*b])).collect();
    all.sort();
    assert_eq!(all, ["github-token", "honeytoken", "placeholder-misuse"]);
    assert_eq!(bytewise.kinds(), all);
    let mut big = scanner();
    let mut found: Vec<String> = text.as_bytes().chunks(4096).flat_map(|c| big.feed(c)).collect();
    found.sort();
    assert_eq!(found, all);
}

#[test]
fn only_new_kinds_are_returned() {
    let mut scanner = scanner();
    assert_eq!(scanner.feed(aws().as_bytes()), ["aws-access-key-id"]);
    assert_eq!(scanner.feed(format!(" {} ", aws()).as_bytes()), Vec::<String>::new());
    assert_eq!(scanner.feed(format!(" {} {}", aws(), github()).as_bytes()), ["github-token"]);
    assert_eq!(scanner.feed(b""), Vec::<String>::new());
    assert_eq!(scanner.kinds(), ["aws-access-key-id", "github-token"]);
}

/// Bytes glued to a token make it part of a longer word; cutting the tail
/// mid-word must not turn that into a finding.
#[test]
fn words_cut_by_the_tail_are_not_tokens() {
    let key = aws();
    let (left, right) = key.split_at(9);
    for before in ["A".repeat(1000), format!("{} {}", "A".repeat(300), "foo"), "A".repeat(100)] {
        let mut scanner = scanner();
        let mut all = scanner.feed(format!("{before}x{left}").as_bytes());
        all.extend(scanner.feed(format!("{right}Z more").as_bytes()));
        assert_eq!(all, Vec::<String>::new(), "{before:.20}...");
    }
}

#[test]
fn binary_bodies() {
    let mut body = vec![0xff, 0xfe, 0x00, 0x9f];
    body.extend_from_slice(github().as_bytes());
    body.extend_from_slice(&[0x80, 0x81]);
    body.extend_from_slice(REAL.as_bytes());
    body.extend_from_slice(&[0xc3]);
    for split in 0..body.len() {
        let mut scanner = scanner();
        let mut all = scanner.feed(&body[..split]);
        all.extend(scanner.feed(&body[split..]));
        all.sort();
        assert_eq!(all, ["configured-secret", "github-token"], "split at {split}");
    }
}

#[test]
fn placeholder_to_its_own_host_is_fine_in_a_body() {
    let mut scanner = BodyScanner::new(Some(secrets()), "api.github.com", &Canaries::none());
    assert!(scanner.feed(b"{\"token\":\"bridle-secret-github\"}").is_empty());
    let mut bare = BodyScanner::new(None, "evil.test", &Canaries::none());
    assert!(bare.feed(b"bridle-secret-github canary-7f3a9c1e").is_empty());
}

#[test]
fn canaries_and_debug() {
    assert!(matches!(Canaries::new(&["ok-canary", ""]), Err(CanaryError::Empty { index: 1 })));
    let mut scanner = scanner();
    scanner.feed(format!("tail holds {REAL}").as_bytes());
    let shown = format!("{scanner:?}");
    assert!(!shown.contains(REAL) && shown.contains("tail_len"), "{shown}");
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<BodyScanner>();
    shareable::<Canaries>();
    shareable::<Secrets>();
}
