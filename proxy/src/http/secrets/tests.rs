use std::collections::HashMap;
use std::sync::Arc;

use super::*;

const GITHUB_VALUE: &str = "ghp_realvalue0123456789abcdefghijklmnopq";
const ANTHROPIC_VALUE: &str = "sk-ant-real-0123456789abcdef";

fn secret(name: &str, env: &str, hosts: &[&str], header: &str, format: &str) -> Secret {
    Secret {
        name: name.to_owned(),
        source: SecretSource::Env(env.to_owned()),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        header: header.to_owned(),
        format: format.to_owned(),
    }
}

fn config() -> Vec<Secret> {
    vec![
        secret(
            "github",
            "GITHUB_TOKEN",
            &["api.github.com", "github.com", "*.githubusercontent.com"],
            "authorization",
            "Bearer {value}",
        ),
        secret("anthropic", "ANTHROPIC_API_KEY", &["api.anthropic.com"], "x-api-key", "{value}"),
        // A name that is a prefix of another's: placeholders must not collide.
        secret("github_admin", "GITHUB_ADMIN_TOKEN", &["admin.github.test"], "authorization", "token {value}"),
    ]
}

fn env() -> impl Fn(&str) -> Option<OsString> {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("GITHUB_TOKEN", GITHUB_VALUE),
        ("ANTHROPIC_API_KEY", ANTHROPIC_VALUE),
        ("GITHUB_ADMIN_TOKEN", "  admin-value-123456\n"),
    ]);
    move |var| vars.get(var).map(OsString::from)
}

fn secrets() -> Secrets {
    Secrets::load_with(&config(), env()).expect("loads")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
        map.append(name, HeaderValue::from_str(value).expect("value"));
    }
    map
}

fn values(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name).iter().map(|v| v.to_str().expect("ascii").to_owned()).collect()
}

#[test]
fn placeholder_and_agent_env() {
    assert_eq!(placeholder("github"), "bridle-secret-github");
    let secrets = secrets();
    assert_eq!(
        secrets.agent_env(),
        [
            ("GITHUB_TOKEN".to_owned(), "bridle-secret-github".to_owned()),
            ("ANTHROPIC_API_KEY".to_owned(), "bridle-secret-anthropic".to_owned()),
            ("GITHUB_ADMIN_TOKEN".to_owned(), "bridle-secret-github_admin".to_owned()),
        ]
    );
    assert!(!secrets.is_empty());
}

#[test]
fn host_patterns() {
    let cases: &[(&str, &str, bool)] = &[
        ("api.github.com", "api.github.com", true),
        ("api.github.com", "API.GitHub.com.", true),
        ("api.github.com", "api.github.com:443", true),
        ("API.GITHUB.COM.", "api.github.com", true),
        ("api.github.com", "github.com", false),
        ("api.github.com", "api.github.com.evil.test", false),
        ("api.github.com", "xapi.github.com", false),
        ("*.github.com", "api.github.com", true),
        ("*.github.com", "a.b.github.com", true),
        ("*.github.com", "github.com", false),
        ("*.github.com", "evilgithub.com", false),
        ("*.github.com", "github.com.evil.test", false),
        ("127.0.0.1", "127.0.0.1:8443", true),
        ("[::1]", "::1", true),
        ("::1", "[0:0::1]:443", true),
    ];
    for (pattern, host, want) in cases {
        let parsed = HostPattern::parse(pattern).expect("pattern");
        let host = normalize_host(host).expect("host");
        assert_eq!(parsed.matches(&host), *want, "{pattern} vs {host}");
    }
    for bad in ["*", "*.", "*.com", "a.*.com", "*github.com", "*.127.0.0.1", "api github.com", ""] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn injects_only_for_the_secrets_hosts_and_header() {
    let secrets = secrets();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str, Vec<String>);
    let cases: Vec<Case<'_>> = vec![
        // (host, headers sent, secrets injected, header to check, its values after)
        (
            "api.github.com",
            &[("authorization", "Bearer bridle-secret-github")],
            &["github"],
            "authorization",
            vec![format!("Bearer {GITHUB_VALUE}")],
        ),
        (
            "api.github.com",
            &[("authorization", "token bridle-secret-github")],
            &["github"],
            "authorization",
            vec![format!("token {GITHUB_VALUE}")],
        ),
        // The bare placeholder gets the configured format.
        (
            "api.github.com",
            &[("authorization", "bridle-secret-github")],
            &["github"],
            "authorization",
            vec![format!("Bearer {GITHUB_VALUE}")],
        ),
        (
            "raw.githubusercontent.com",
            &[("authorization", "bridle-secret-github")],
            &["github"],
            "authorization",
            vec![format!("Bearer {GITHUB_VALUE}")],
        ),
        (
            "API.ANTHROPIC.COM.",
            &[("x-api-key", "bridle-secret-anthropic")],
            &["anthropic"],
            "x-api-key",
            vec![ANTHROPIC_VALUE.to_owned()],
        ),
        // Wrong host: untouched.
        (
            "evil.test",
            &[("authorization", "Bearer bridle-secret-github")],
            &[],
            "authorization",
            vec!["Bearer bridle-secret-github".to_owned()],
        ),
        (
            "api.anthropic.com",
            &[("authorization", "Bearer bridle-secret-github")],
            &[],
            "authorization",
            vec!["Bearer bridle-secret-github".to_owned()],
        ),
        // Right host, wrong header: untouched.
        (
            "api.github.com",
            &[("x-token", "bridle-secret-github")],
            &[],
            "x-token",
            vec!["bridle-secret-github".to_owned()],
        ),
        // No placeholder: nothing added.
        ("api.github.com", &[("accept", "*/*")], &[], "authorization", vec![]),
        (
            "api.github.com",
            &[("authorization", "Bearer agent-own-token")],
            &[],
            "authorization",
            vec!["Bearer agent-own-token".to_owned()],
        ),
        // Another secret's longer name is not this placeholder.
        (
            "api.github.com",
            &[("authorization", "Bearer bridle-secret-github_admin")],
            &[],
            "authorization",
            vec!["Bearer bridle-secret-github_admin".to_owned()],
        ),
        (
            "admin.github.test",
            &[("authorization", "bridle-secret-github_admin")],
            &["github_admin"],
            "authorization",
            vec!["token admin-value-123456".to_owned()],
        ),
    ];
    for (host, sent, want_injected, check, want_values) in cases {
        let mut map = headers(sent);
        let injection = secrets.inject(host, &mut map);
        assert_eq!(injection.injected, want_injected, "{host} {sent:?}");
        assert_eq!(values(&map, check), want_values, "{host} {sent:?}");
    }
}

#[test]
fn injected_values_are_marked_sensitive_and_other_values_kept() {
    let secrets = secrets();
    let mut map = headers(&[
        ("authorization", "Bearer other"),
        ("authorization", "Bearer bridle-secret-github"),
        ("accept", "*/*"),
    ]);
    assert_eq!(secrets.inject("api.github.com", &mut map).injected, ["github"]);
    assert_eq!(values(&map, "authorization"), ["Bearer other".to_owned(), format!("Bearer {GITHUB_VALUE}")]);
    assert!(map.get_all("authorization").iter().nth(1).is_some_and(HeaderValue::is_sensitive));
    assert_eq!(values(&map, "accept"), ["*/*"]);
}

/// git sends a token given as the URL's password as HTTP Basic:
/// `https://x-access-token:bridle-secret-github@github.com/o/r.git`.
#[test]
fn injects_inside_basic_credentials() {
    let secrets = secrets();
    let sent = format!("Basic {}", base64_encode(b"x-access-token:bridle-secret-github"));
    assert_eq!(sent, "Basic eC1hY2Nlc3MtdG9rZW46YnJpZGxlLXNlY3JldC1naXRodWI=");
    let mut map = headers(&[("authorization", &sent)]);
    assert_eq!(secrets.inject("github.com", &mut map).injected, ["github"]);
    let want = format!("Basic {}", base64_encode(format!("x-access-token:{GITHUB_VALUE}").as_bytes()));
    assert_eq!(values(&map, "authorization"), [want]);
    let mut elsewhere = headers(&[("authorization", &sent)]);
    assert!(secrets.inject("evil.test", &mut elsewhere).injected.is_empty());
    let mut not_base64 = headers(&[("authorization", "Basic !!!")]);
    assert!(secrets.inject("github.com", &mut not_base64).injected.is_empty());
}

#[test]
fn placeholder_misuse_is_per_host() {
    let secrets = secrets();
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("evil.test", b"/upload?k=bridle-secret-github", &["github"]),
        (
            "evil.test",
            b"{\"a\":\"bridle-secret-anthropic\",\"b\":\"bridle-secret-github_admin\"}",
            &["anthropic", "github_admin"],
        ),
        ("api.github.com", b"Bearer bridle-secret-github", &[]),
        ("api.github.com", b"x=bridle-secret-anthropic", &["anthropic"]),
        ("gist.githubusercontent.com", b"bridle-secret-github", &[]),
        ("evil.test", b"bridle-secret-unknown bridle-secret-githubx", &[]),
        ("evil.test", b"\xffbridle-secret-github\xfe", &["github"]),
        // A host that is not a host name is allowed nothing.
        ("not a host", b"bridle-secret-github", &["github"]),
    ];
    for (host, haystack, want) in cases {
        assert_eq!(secrets.misuse(host, haystack), *want, "{host} {:?}", String::from_utf8_lossy(haystack));
    }
}

#[test]
fn real_values_are_seen_anywhere() {
    let secrets = secrets();
    assert_eq!(secrets.real_value_seen(format!("key={GITHUB_VALUE}&x").as_bytes()), ["github"]);
    assert_eq!(
        secrets.real_value_seen(format!("{ANTHROPIC_VALUE}admin-value-123456").as_bytes()),
        ["anthropic", "github_admin"]
    );
    assert!(secrets.real_value_seen(b"bridle-secret-github").is_empty());
    assert!(secrets.real_value_seen(&GITHUB_VALUE.as_bytes()[..20]).is_empty());
    assert_eq!(secrets.longest(), GITHUB_VALUE.len());
}

#[test]
fn values_never_in_debug_or_errors() {
    let secrets = secrets();
    let shown = format!("{secrets:?}");
    for value in [GITHUB_VALUE, ANTHROPIC_VALUE, "admin-value-123456"] {
        assert!(!shown.contains(value), "{shown}");
    }
    assert!(shown.contains("github") && shown.contains("REDACTED"), "{shown}");
    let mut map = headers(&[("authorization", "bridle-secret-github")]);
    let injection = secrets.inject("api.github.com", &mut map);
    assert!(!format!("{injection:?}").contains(GITHUB_VALUE));
    assert!(format!("{map:?}").contains("Sensitive"), "{map:?}");
}

#[test]
fn load_errors_name_the_secret_and_source() {
    let one = |s: Secret| vec![s];
    let base = || secret("npm", "NPM_TOKEN", &["registry.npmjs.org"], "authorization", "Bearer {value}");
    let vars = |value: &'static str| move |var: &str| (var == "NPM_TOKEN").then(|| OsString::from(value));
    let error = |config: Vec<Secret>, env: &dyn Fn(&str) -> Option<OsString>| {
        Secrets::load_with(&config, env).expect_err("fails").to_string()
    };
    assert_eq!(error(one(base()), &|_| None), "secret `npm`: host environment variable `NPM_TOKEN` is not set");
    let short = error(one(base()), &vars("short"));
    assert!(
        short.starts_with("secret `npm`: the value from environment variable `NPM_TOKEN` is not usable: shorter"),
        "{short}"
    );
    assert!(!short.contains("short\""), "{short}");
    let newline = error(one(base()), &vars("npm_abcdef\n123456"));
    assert!(newline.contains("cannot carry") && !newline.contains("abcdef"), "{newline}");
    let mut wild = base();
    wild.hosts = vec!["*.com".to_owned()];
    let message = error(one(wild), &vars("npm_abcdefgh"));
    assert!(message.starts_with("secret `npm`: host `*.com` is not usable"), "{message}");
    let mut header = base();
    header.header = "bad header".to_owned();
    assert_eq!(error(one(header), &vars("npm_abcdefgh")), "secret `npm`: `bad header` is not an HTTP header name");
}

#[test]
fn file_sources_are_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("npm-token");
    std::fs::write(&path, "npm_filevalue123\n").expect("write");
    let mut npm = secret("npm", "unused", &["registry.npmjs.org"], "authorization", "Bearer {value}");
    npm.source = SecretSource::File(path.clone());
    let secrets = Secrets::load_with(std::slice::from_ref(&npm), |_| None).expect("loads");
    assert_eq!(secrets.real_value_seen(b"x npm_filevalue123 y"), ["npm"]);
    assert!(secrets.agent_env().is_empty(), "file secrets have no variable");
    assert_eq!(secrets.audit_redactions(), [("secret:npm".to_owned(), "npm_filevalue123".to_owned())]);
    npm.source = SecretSource::File(dir.path().join("missing"));
    let message = Secrets::load_with(&[npm.clone()], |_| None).expect_err("missing").to_string();
    assert!(message.starts_with("secret `npm`: cannot read ") && message.contains("missing"), "{message}");
    std::fs::write(&path, b"\xff\xfe binary secret").expect("write");
    npm.source = SecretSource::File(path);
    let message = Secrets::load_with(&[npm], |_| None).expect_err("binary").to_string();
    assert!(message.contains("not UTF-8") && !message.contains("binary secret"), "{message}");
}

#[test]
fn replace_token_respects_name_boundaries() {
    let token = "bridle-secret-gh";
    assert_eq!(replace_token("a bridle-secret-gh b", token, "V").as_deref(), Some("a V b"));
    assert_eq!(replace_token("bridle-secret-gh,bridle-secret-gh", token, "V").as_deref(), Some("V,V"));
    assert_eq!(replace_token("bridle-secret-gh_admin", token, "V"), None);
    assert_eq!(
        replace_token("bridle-secret-gh_admin bridle-secret-gh", token, "V").as_deref(),
        Some("bridle-secret-gh_admin V")
    );
    assert_eq!(replace_token("nothing", token, "V"), None);
}

/// The body through `reflection`, cut into pieces of `cut` bytes.
fn reflect(reflection: &mut Reflection, body: &[u8], cut: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(cut) {
        out.extend_from_slice(&reflection.chunk(bytes::Bytes::copy_from_slice(piece)));
    }
    out.extend_from_slice(&reflection.finish());
    out
}

/// `value`'s mask: its placeholder padded with `*` to its length.
fn masked(name: &str, value: &str) -> String {
    format!("bridle-secret-{name}{}", "*".repeat(value.len() - "bridle-secret-".len() - name.len()))
}

#[test]
fn values_in_answers_are_masked_however_the_body_is_cut() {
    let secrets = Arc::new(secrets());
    assert!(secrets.reflection("example.test").is_none(), "no secret may go there: nothing to guard");
    let body = format!("echo: Bearer {GITHUB_VALUE}; again {GITHUB_VALUE}{ANTHROPIC_VALUE} ghp_ then gh");
    let github = masked("github", GITHUB_VALUE);
    let expected = format!("echo: Bearer {github}; again {github}{ANTHROPIC_VALUE} ghp_ then gh");
    assert_eq!(expected.len(), body.len(), "masks keep lengths");
    for cut in 1..=body.len() {
        let mut reflection = secrets.reflection("api.github.com").expect("a guard");
        assert_eq!(reflection.newly_found(), Vec::<String>::new());
        assert_eq!(reflect(&mut reflection, body.as_bytes(), cut), expected.as_bytes(), "pieces of {cut}");
        assert_eq!(reflection.newly_found(), ["github"]);
        assert!(reflection.newly_found().is_empty(), "reported once");
    }
    // Only the secrets that may go to the answer's host are masked.
    let mut anthropic = secrets.reflection("api.anthropic.com").expect("a guard");
    let out = String::from_utf8(reflect(&mut anthropic, body.as_bytes(), 7)).expect("text");
    assert!(out.contains(GITHUB_VALUE) && out.contains(&masked("anthropic", ANTHROPIC_VALUE)), "{out}");
}

#[test]
fn only_bytes_that_could_start_a_value_are_held_back() {
    let secrets = Arc::new(secrets());
    let mut reflection = secrets.reflection("api.github.com").expect("a guard");
    // An event stream's chunk ends in newlines: nothing held, nothing late,
    // and the same bytes handed on.
    let event = bytes::Bytes::from_static(b"data: {\"delta\": \"hi\"}\n\n");
    let out = reflection.chunk(event.clone());
    assert_eq!(out, event);
    assert_eq!(out.as_ptr(), event.as_ptr(), "not copied");
    assert_eq!(&reflection.chunk(bytes::Bytes::from_static(b"then ghp_real"))[..], b"then ");
    assert_eq!(&reflection.chunk(bytes::Bytes::from_static(b"ly not"))[..], b"ghp_really not");
    assert!(reflection.finish().is_empty());
    assert!(reflection.newly_found().is_empty());
}

/// One value the start of another, and one whose start is the other's end:
/// whichever comes, in whatever pieces, none of either is left in clear.
#[test]
fn overlapping_values_are_all_masked() {
    let config = vec![
        secret("short", "SHORT", &["h.test"], "x-a", "{value}"),
        secret("long", "LONG", &["h.test"], "x-b", "{value}"),
        secret("tail", "TAIL", &["h.test"], "x-c", "{value}"),
    ];
    let vars = HashMap::from([("SHORT", "abcdefgh"), ("LONG", "abcdefgh12345678"), ("TAIL", "5678wxyz0")]);
    let secrets = Arc::new(Secrets::load_with(&config, move |v| vars.get(v).map(OsString::from)).expect("loads"));
    for body in ["<abcdefgh12345678>", "<abcdefgh>", "<abcdefgh12345678wxyz0>", "abcdefgh12345678wxyz0"] {
        for cut in 1..=body.len() {
            let mut reflection = secrets.reflection("h.test").expect("a guard");
            let out = String::from_utf8(reflect(&mut reflection, body.as_bytes(), cut)).expect("text");
            assert_eq!(out.len(), body.len());
            for clear in ["abcd", "1234", "5678", "wxyz"] {
                assert!(!out.contains(clear), "{clear} of {body:?} in {out:?} (pieces of {cut})");
            }
        }
    }
}

/// A mask never overlaps a value, so masking cannot make an occurrence
/// out of it and the bytes beside it: a value that begins with its
/// placeholder's last letters gets a plain mask.
#[test]
fn masks_never_overlap_a_value() {
    let config = vec![secret("api", "API", &["h.test"], "x-a", "{value}")];
    // As long as `bridle-secret-api`, so its named mask would end in `i`.
    let value = "i0123456789abcdef";
    let secrets = Arc::new(Secrets::load_with(&config, move |_| Some(OsString::from(value))).expect("loads"));
    let mut reflection = secrets.reflection("h.test").expect("a guard");
    // The upstream sends the value and then the value's own rest: with the
    // named mask the agent would read `bridle-secret-ap` + the value.
    let body = format!("{value}{}", &value[1..]);
    let out = String::from_utf8(reflect(&mut reflection, body.as_bytes(), body.len())).expect("text");
    assert!(!out.contains(value), "{out}");
    assert!(out.starts_with(&"*".repeat(value.len())), "{out}");
}

#[test]
fn values_in_answer_headers_are_masked_and_never_show_in_debug() {
    let secrets = Arc::new(secrets());
    let mut reflection = secrets.reflection("api.anthropic.com").expect("a guard");
    let mut map = headers(&[("x-echo", &format!("key={ANTHROPIC_VALUE}")), ("x-other", "plain")]);
    reflection.headers(&mut map);
    assert_eq!(values(&map, "x-echo"), [format!("key={}", masked("anthropic", ANTHROPIC_VALUE))]);
    assert_eq!(values(&map, "x-other"), ["plain"]);
    assert_eq!(reflection.newly_found(), ["anthropic"]);
    let shown = format!("{reflection:?} {secrets:?}");
    assert!(shown.contains("anthropic") && !shown.contains(ANTHROPIC_VALUE), "{shown}");
}

/// An echo of the Basic credentials Bridle sent, a JSON string of a value
/// that needs escaping, and a header named after a value: none gives the
/// value away.
#[test]
fn encoded_forms_and_header_names_are_masked_too() {
    let config = vec![secret("git", "GIT", &["h.test"], "authorization", "{value}")];
    let value = r#"p4ss"w/rd\2025xyz"#;
    let secrets = Arc::new(Secrets::load_with(&config, move |_| Some(OsString::from(value))).expect("loads"));
    for user in ["u", "us", "use"] {
        let basic = super::base64_encode(format!("{user}:{value}").as_bytes());
        let mut reflection = secrets.reflection("h.test").expect("a guard");
        let out = String::from_utf8(reflect(&mut reflection, format!("Basic {basic}").as_bytes(), 5)).expect("text");
        // Masked characters read as `A`: no three bytes of the value in a
        // row come out of what is left.
        let readable = out.trim_start_matches("Basic ").replace('*', "A");
        let decoded = super::base64_decode(&readable).expect("still base64 in shape");
        for window in value.as_bytes().windows(3) {
            assert!(!decoded.windows(3).any(|w| w == window), "{user}: {window:?} readable in {out}");
        }
        assert_eq!(reflection.newly_found(), ["git"], "{user}");
    }
    let json = serde_json::json!({ "token": value }).to_string();
    // PHP's encoder escapes the solidus too.
    let php = json.replace('/', "\\/");
    for body in [json, php] {
        let mut reflection = secrets.reflection("h.test").expect("a guard");
        let out = String::from_utf8(reflect(&mut reflection, body.as_bytes(), 3)).expect("text");
        assert!(!out.contains("w/rd") && !out.contains("w\\/rd") && out.len() == body.len(), "{out}");
    }
    let name = HeaderName::from_bytes(format!("x-{}", "1234567890abcdef").as_bytes()).expect("name");
    let config = vec![secret("hex", "HEX", &["h.test"], "x-k", "{value}")];
    let hex = Arc::new(Secrets::load_with(&config, |_| Some(OsString::from("1234567890ABCDEF"))).expect("loads"));
    let mut map = headers(&[("x-fine", "1")]);
    map.insert(name, HeaderValue::from_static("1"));
    let mut reflection = hex.reflection("h.test").expect("a guard");
    reflection.headers(&mut map);
    assert_eq!(map.len(), 1, "{map:?}");
    assert_eq!(reflection.newly_found(), ["hex"]);
}
