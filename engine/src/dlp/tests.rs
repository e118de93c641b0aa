use super::*;

/// The kinds found in `text`, with the matched text.
fn found(text: &str) -> Vec<(&'static str, String)> {
    scan(text).into_iter().map(|f| (f.kind, text[f.start..f.end].to_string())).collect()
}

fn only(text: &str, kind: &str, secret: &str) {
    assert_eq!(found(text), vec![(kind_static(kind), secret.to_string())], "in {text:?}");
    // The redactor's fast path relies on TRIGGER matching wherever scan finds
    // a secret, also after JSON escaping.
    if kind != PLACEHOLDER {
        let trigger = Regex::new(TRIGGER).expect("trigger compiles");
        let json = serde_json::to_string(text).expect("json");
        assert!(trigger.is_match(text) && trigger.is_match(&json), "trigger misses {text:?}");
    }
}

fn kind_static(kind: &str) -> &'static str {
    DETECTORS.iter().map(|d| d.kind).find(|k| *k == kind).unwrap_or("unknown")
}

fn none(text: &str) {
    assert_eq!(found(text), vec![], "in {text:?}");
}

// Assembled at run time so the source holds no complete token-shaped string.
fn tok(prefix: &str, body: &str) -> String {
    format!("{prefix}{body}")
}

#[test]
fn every_pattern_compiles() {
    assert_eq!(COMBINED.regex.captures_len(), DETECTORS.len() + 2);
    assert!(COMBINED.groups.iter().all(|group| *group > 0));
    for detector in DETECTORS {
        assert!(Regex::new(detector.pattern).is_ok(), "{}", detector.pattern);
    }
}

#[test]
fn pem_private_keys() {
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    only(&format!("key: {key} trailing"), "private-key", key);
    let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA";
    only(openssh, "private-key", openssh);
    none("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    none("-----BEGIN+PUBLIC+KEY-----%0AMIIB");
    none("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----");
}

#[test]
fn pem_private_keys_form_encoded_in_bodies_and_queries() {
    let plus = "-----BEGIN+RSA+PRIVATE+KEY-----%0AMIIEpAIBAAKCAQEA%0A-----END+RSA+PRIVATE+KEY-----";
    only(&format!("name=id_rsa&key={plus}&x=1"), "private-key", plus);
    let pct = "-----BEGIN%20OPENSSH%20PRIVATE%20KEY-----%0Ab3BlbnNzaC1rZXk";
    only(&format!("/upload?key={pct}"), "private-key", pct);
    let bare = "-----BEGIN+PRIVATE+KEY-----";
    only(bare, "private-key", bare);
}

#[test]
fn aws_access_key_ids() {
    let id = tok("AKIA", "IOSFODNN7EXAMPLE");
    only(&format!("https://s3.test/upload/{id}/x"), "aws-access-key-id", &id);
    let sts = tok("ASIA", "Y34FZKBOKMUTVV7A");
    only(&format!("id={sts}"), "aws-access-key-id", &sts);
    none(&format!("X{id}"));
    none(&format!("{id}9"));
    none("AKIA1234");
    none(&tok("AKIA", "iosfodnn7example"));
}

#[test]
fn aws_secret_keys_only_when_labelled() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    only(&format!("aws_secret_access_key = {secret}"), "aws-secret-access-key", secret);
    only(&format!("AWS_SECRET_ACCESS_KEY=\"{secret}\""), "aws-secret-access-key", secret);
    none(secret);
    none(&format!("checksum={secret}"));
}

#[test]
fn github_tokens() {
    let classic = tok("ghp_", "1234567890abcdefghijklmnopqrstuvwxyZ");
    only(&format!("token {classic}"), "github-token", &classic);
    for prefix in ["gho_", "ghu_", "ghs_", "ghr_"] {
        let token = tok(prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        only(&token, "github-token", &token);
    }
    let fine = tok("github_pat_", "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
    only(&format!("Bearer {fine}"), "github-token", &fine);
    none("ghp_short");
    none("ghx_1234567890abcdefghijklmnopqrstuvwxyZ");
    none(&tok("xghp_", "1234567890abcdefghijklmnopqrstuvwxyZ"));
}

#[test]
fn gitlab_tokens() {
    let token = tok("glpat-", "xxxxXXXX1234_-abcdefg");
    only(&format!("PRIVATE-TOKEN: {token}"), "gitlab-token", &token);
    none("glpat-short");
}

#[test]
fn slack_tokens() {
    let token = tok("xoxb-", "123456789012-1234567890123-AbCdEfGh");
    only(&format!("slack {token}"), "slack-token", &token);
    none("xoxz-123456789012-1234567890123");
    none("xoxb-1");
}

#[test]
fn openai_keys() {
    let legacy = tok("sk-", "abc123DEF456ghi789JKL012mno345PQR678stu901VWX");
    only(&format!("OPENAI_API_KEY={legacy}"), "openai-key", &legacy);
    let project = tok("sk-proj-", "Ab3dEfGh1jKlMn0pQrStUvWxYz_12-34");
    only(project.as_str(), "openai-key", &project);
    none("task-runner-abcdefghijklmnop123456789");
    none("disk-usage-abcdefghijklmnopqrstuvwxyz0123");
    none("sk-this-is-just-a-long-hyphenated-slug");
    none("sk-short1");
}

#[test]
fn anthropic_keys_win_over_openai() {
    let key = tok("sk-ant-", "api03-AbCdEf0123456789GhIjKl-mnOPqr_stuv");
    only(&format!("x-api-key: {key}"), "anthropic-key", &key);
}

#[test]
fn jwts() {
    let jwt = tok("eyJ", "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
    only(&format!("Authorization: Bearer {jwt}"), "jwt", &jwt);
    none("eyJhbGciOiJIUzI1NiJ9.notajwt");
    none("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.");
}

#[test]
fn bridle_placeholders_are_reported_but_not_secrets() {
    only("Bearer bridle-secret-github_token", PLACEHOLDER, "bridle-secret-github_token");
    assert!(!contains_secret("Bearer bridle-secret-github_token"));
    none("bridle-secret-");
}

#[test]
fn several_findings_are_sorted_without_overlap() {
    let aws = tok("AKIA", "IOSFODNN7EXAMPLE");
    let gh = tok("ghp_", "1234567890abcdefghijklmnopqrstuvwxyZ");
    let text = format!("{gh} and {aws}");
    let kinds: Vec<_> = found(&text).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["github-token", "aws-access-key-id"]);
    assert!(contains_secret(&text));
}

#[test]
fn plain_text_has_nothing() {
    none("GET /index.html HTTP/1.1 Host: example.test user-agent: curl/8.5");
    none("");
}
