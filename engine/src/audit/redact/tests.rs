use serde_json::json;

use super::*;
use crate::audit::fixtures::{decision, http, tool_call};
use crate::decision::Effect;

fn aws_key() -> String {
    format!("AKIA{}", "IOSFODNN7EXAMPLE")
}

fn redacted_text(redactor: &Redactor, entry: &AuditEntry) -> String {
    serde_json::to_string(&redactor.redact_entry(entry).expect("redact")).expect("json")
}

#[test]
fn sensitive_header_values_are_redacted() {
    let entry = decision(
        http(
            "api.test",
            "",
            &[
                ("authorization", "Bearer abc.def"),
                ("cookie", "sid=42"),
                ("x-upstream-token", "t0k"),
                ("accept", "*/*"),
            ],
        ),
        Effect::Allow,
    );
    let map = Redactor::default().redact_entry(&entry).expect("redact");
    let headers = &map["event"]["detail"]["headers"];
    assert_eq!(
        headers,
        &json!([["authorization", REDACTED], ["cookie", REDACTED], ["x-upstream-token", REDACTED], ["accept", "*/*"]])
    );
}

#[test]
fn header_maps_are_redacted_too() {
    let mut value = json!({"headers": {"Set-Cookie": "a=b", "X-Api-Key": "k", "Content-Type": "text/plain"}});
    Redactor::default().redact_value(&mut value);
    assert_eq!(value["headers"], json!({"Set-Cookie": REDACTED, "X-Api-Key": REDACTED, "Content-Type": "text/plain"}));
}

#[test]
fn placeholder_credentials_stay_visible() {
    let entry = decision(http("api.test", "", &[("authorization", "Bearer bridle-secret-github")]), Effect::Allow);
    let text = redacted_text(&Redactor::default(), &entry);
    assert!(text.contains("Bearer bridle-secret-github"), "{text}");
}

#[test]
fn query_values_are_redacted_and_names_kept() {
    assert_eq!(redact_query("a=1&b=two&flag&empty="), "a=[REDACTED]&b=[REDACTED]&flag&empty=");
    let entry = decision(http("api.test", "token=s3cr3t&page=2", &[]), Effect::Allow);
    let map = Redactor::default().redact_entry(&entry).expect("redact");
    assert_eq!(map["event"]["detail"]["query"], "token=[REDACTED]&page=[REDACTED]");
}

#[test]
fn urls_in_any_string_lose_their_query_values() {
    let mut value =
        json!({"args": {"url": "https://x.test/cb?code=abc&state=1#access_token=zzz"}, "note": "see https://y.test/p"});
    Redactor::default().redact_value(&mut value);
    assert_eq!(value["args"]["url"], "https://x.test/cb?code=[REDACTED]&state=[REDACTED]#access_token=[REDACTED]");
    assert_eq!(value["note"], "see https://y.test/p");
}

#[test]
fn url_passwords_in_any_scheme_are_redacted() {
    let mut value = json!({
        "dsn": "postgres://admin:S3cret@db.internal/prod",
        "clone": "fetching https://user:ghs_pw@git.test/r.git?ref=main",
        "plain": "https://git.test/r.git and user@example.com",
    });
    Redactor::default().redact_value(&mut value);
    assert_eq!(value["dsn"], "postgres://admin:[REDACTED]@db.internal/prod");
    assert_eq!(value["clone"], "fetching https://user:[REDACTED]@git.test/r.git?ref=[REDACTED]");
    assert_eq!(value["plain"], "https://git.test/r.git and user@example.com");
}

#[test]
fn credential_headers_are_found_by_the_words_in_their_names() {
    for name in ["X-Authorization", "ocp-apim-subscription-key", "x-functions-key", "x-amz-security-token"] {
        assert!(is_sensitive_header(name), "{name}");
    }
    for name in ["accept", "content-type", "user-agent", "host"] {
        assert!(!is_sensitive_header(name), "{name}");
    }
}

#[test]
fn configured_secrets_are_redacted_anywhere() {
    let redactor = Redactor::new(vec![("github".into(), "hunter2-real-value".into()), ("empty".into(), String::new())]);
    let args = json!({"content": "token is hunter2-real-value!", "nested": [{"hunter2-real-value": 1}]});
    let entry = decision(tool_call("fs", "write_file", args), Effect::Ask);
    let text = redacted_text(&redactor, &entry);
    assert!(!text.contains("hunter2-real-value"), "{text}");
    assert!(text.contains("token is [REDACTED:github]!"), "{text}");
    assert!(text.contains(r#"{"[REDACTED:github]":1}"#), "{text}");
}

#[test]
fn longer_secrets_win_over_their_substrings() {
    let redactor = Redactor::new(vec![("short".into(), "abcdef".into()), ("long".into(), "abcdef-ghijkl".into())]);
    assert_eq!(redactor.redact_str("x abcdef-ghijkl y abcdef"), "x [REDACTED:long] y [REDACTED:short]");
}

#[test]
fn token_shaped_strings_are_redacted_by_kind() {
    let key = aws_key();
    let entry = decision(http("s3.test", "", &[]), Effect::Deny);
    let mut map = Redactor::default().redact_entry(&entry).expect("redact");
    map["event"]["detail"]["path"] = json!(format!("/bucket/{key}/obj"));
    let mut value = Value::Object(map);
    Redactor::default().redact_value(&mut value);
    assert_eq!(value["event"]["detail"]["path"], "/bucket/[REDACTED:aws-access-key-id]/obj");
    assert_eq!(Redactor::default().redact_str("use bridle-secret-aws here"), "use bridle-secret-aws here");
}

#[test]
fn debug_never_prints_secret_values() {
    let redactor = Redactor::new(vec![("console".into(), "very-secret-console-token".into())]);
    let debug = format!("{redactor:?}");
    assert!(debug.contains("console") && !debug.contains("very-secret"), "{debug}");
}

#[test]
fn sensitive_header_names() {
    for name in
        ["Authorization", "proxy-authorization", "x-amz-security-token", "x-client-secret", "db-password", "x-api-key"]
    {
        assert!(is_sensitive_header(name), "{name}");
    }
    for name in ["accept", "content-type", "user-agent", "host"] {
        assert!(!is_sensitive_header(name), "{name}");
    }
}

/// The fast path must write exactly what the precise walk would.
fn assert_fast_path_agrees(redactor: &Redactor, entry: &AuditEntry, expect_walk: bool) {
    let mut fields = Vec::new();
    let walked = redactor.encode_fields(&mut entry.clone(), &mut fields).expect("encode");
    assert_eq!(walked, expect_walk, "walk for {entry:?}");
    let mut object = b"{".to_vec();
    object.extend_from_slice(&fields[1..]);
    object.push(b'}');
    let written: Value = serde_json::from_slice(&object).expect("fields form an object");
    let precise = Value::Object(redactor.redact_entry(entry).expect("redact"));
    assert_eq!(written, precise);
}

#[test]
fn clean_entries_take_the_fast_path() {
    let redactor = Redactor::new(vec![("console".into(), "c0nsole-t0ken".into())]);
    let headers = [("authorization", "Bearer abc"), ("accept", "*/*"), ("x-trace", "bridle-secret-x")];
    assert_fast_path_agrees(&redactor, &decision(http("api.test", "a=1&b=2", &headers), Effect::Allow), false);
    assert_fast_path_agrees(
        &redactor,
        &decision(tool_call("fs", "read", json!({"path": "/etc/hosts"})), Effect::Allow),
        false,
    );
}

#[test]
fn anything_the_walk_would_change_takes_the_walk() {
    let quoted = "se\"cr\\et\nvalue";
    let redactor = Redactor::new(vec![("odd".into(), quoted.into())]);
    let pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
    let cases = [
        json!({"note": format!("x{quoted}y")}),
        json!({quoted: 1}),
        json!({"key": pem}),
        json!({"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}),
        json!({"url": "https://x.test/?code=1"}),
        json!({"text": "go to https://x.test/cb?token=abc now"}),
        json!({"headers": {"Authorization": "Basic eA=="}}),
        json!({"id": aws_key()}),
    ];
    for arguments in cases {
        assert_fast_path_agrees(&redactor, &decision(tool_call("srv", "t", arguments), Effect::Allow), true);
    }
}

#[test]
fn urls_inside_longer_strings_lose_their_query_values() {
    let redactor = Redactor::default();
    assert_eq!(
        redactor.redact_str("fs/https://x.test/a?sig=abc&v=1#frag and wss://y.test/?t=2"),
        "fs/https://x.test/a?sig=[REDACTED]&v=[REDACTED]#frag and wss://y.test/?t=[REDACTED]"
    );
    assert_eq!(redactor.redact_str("ftp://x.test/?a=1"), "ftp://x.test/?a=1");
}
