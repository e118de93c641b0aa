use http::HeaderValue;

use super::*;

mod captured;

use captured::*;

/// Headers as the real clients sent them (captured with the bodies).
const NPM_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "npm/11.19.1 node/v20.20.2 linux x64 workspaces/false"),
    ("npm-auth-type", "web"),
    ("npm-command", "publish"),
    ("authorization", "Bearer npm_test"),
    ("content-type", "application/json"),
];
const CARGO_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "cargo/1.95.0 (f2d3ce0bd 2026-03-21)"),
    ("accept", "application/json"),
    ("authorization", "cargo_test"),
];

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = http::header::HeaderName::from_bytes(name.as_bytes()).expect("name");
        map.append(name, HeaderValue::from_str(value).expect("value"));
    }
    map
}

fn twine_headers(user_agent: &str) -> HeaderMap {
    let content_type = format!("multipart/form-data; boundary={TWINE_BOUNDARY}");
    headers(&[("user-agent", user_agent), ("content-type", &content_type)])
}

fn found(ecosystem: &str, package: &str) -> Option<Publish> {
    Some(Publish { ecosystem: ecosystem.to_owned(), package: package.to_owned() })
}

fn cargo_body(json: &str, rest: &[u8]) -> Vec<u8> {
    let mut body = u32::try_from(json.len()).expect("small").to_le_bytes().to_vec();
    body.extend_from_slice(json.as_bytes());
    body.extend_from_slice(rest);
    body
}

#[test]
fn npm_publish_as_npm_sends_it() {
    let npm = headers(NPM_HEADERS);
    let body = NPM_BODY.as_bytes();
    let scoped = NPM_SCOPED_PREFIX.as_bytes();
    let none = HeaderMap::new();
    type Case<'a> = (&'a str, &'a str, &'a HeaderMap, &'a [u8], Option<Publish>);
    let cases: &[Case<'_>] = &[
        ("registry.npmjs.org", "/bridle-demo", &npm, body, found("npm", "bridle-demo")),
        ("127.0.0.1", "/@acme%2fwidget", &npm, scoped, found("npm", "@acme/widget")),
        ("127.0.0.1", "/@acme%2Fwidget", &npm, b"", found("npm", "@acme/widget")),
        ("127.0.0.1", "/%40acme%2fwidget", &npm, b"", found("npm", "@acme/widget")),
        ("127.0.0.1", "/@acme/widget", &npm, b"", found("npm", "@acme/widget")),
        // Evidence from any one of host, headers or body.
        ("registry.npmjs.org", "/bridle-demo", &none, b"", found("npm", "bridle-demo")),
        ("REGISTRY.NPMJS.ORG.", "/bridle-demo", &none, b"", found("npm", "bridle-demo")),
        ("verdaccio.test", "/bridle-demo", &none, body, found("npm", "bridle-demo")),
        ("verdaccio.test", "/bridle-demo", &none, &body[..180], found("npm", "bridle-demo")),
        // Registries under a path prefix.
        ("gitlab.test", "/api/v4/projects/42/packages/npm/@acme%2fwidget", &npm, scoped, found("npm", "@acme/widget")),
        ("jfrog.test", "/artifactory/api/npm/npm-local/bridle-demo", &none, body, found("npm", "bridle-demo")),
        // Unpublishing one version or deprecating rewrites the document.
        ("registry.npmjs.org", "/bridle-demo/-rev/3-5b1c", &npm, b"", found("npm", "bridle-demo")),
        // Not a publish.
        ("api.test", "/users", &none, br#"{"name":"bob"}"#, None),
        ("registry.npmjs.org", "/api/users", &none, b"", None),
        ("verdaccio.test", "/bridle-demo", &none, &body[..90], None),
        ("registry.npmjs.org", "/-/user/org.couchdb.user:bob", &npm, b"", None),
        ("registry.npmjs.org", "/-/package/bridle-demo/dist-tags/latest", &npm, b"", None),
        ("registry.npmjs.org", "/.hidden", &npm, b"", None),
        ("registry.npmjs.org", "/a%20b", &npm, b"", None),
        ("registry.npmjs.org", "/", &npm, b"", None),
    ];
    for (host, path, headers, body, want) in cases {
        assert_eq!(publish(&Method::PUT, host, path, headers, body), *want, "PUT {host}{path}");
    }
    // npm fetches the document first, with the same headers: not a publish.
    assert_eq!(publish(&Method::GET, "registry.npmjs.org", "/bridle-demo", &npm, b""), None);
    assert_eq!(publish(&Method::DELETE, "registry.npmjs.org", "/bridle-demo/-rev/3-5b1c", &npm, b""), None);
}

#[test]
fn cargo_publish_name_from_the_json_prefix() {
    let cargo = headers(CARGO_HEADERS);
    let whole = cargo_body(CARGO_JSON, CARGO_AFTER_JSON);
    assert_eq!(&whole[..4], b",\x01\x00\x00", "the captured length prefix");
    let smuggled = cargo_body(r#"{"vers":"1"}"#, br#","name":"smuggled"}"#);
    let deps_first = cargo_body(r#"{"deps":[{"name":"serde","version_req":"^1"}],"name":"mine"}"#, b"");
    let cases: Vec<(&str, &[u8], Option<Publish>)> = vec![
        ("/api/v1/crates/new", &whole, found("cargo", "bridle-demo-crate")),
        ("/api/v1/crates/new", &whole[..40], found("cargo", "bridle-demo-crate")),
        ("/cargo/api/v1/crates/new", &whole, found("cargo", "bridle-demo-crate")),
        ("/api/v1/crates/new", &deps_first, found("cargo", "mine")),
        // Too short to know the name: still a publish.
        ("/api/v1/crates/new", &whole[..12], found("cargo", "")),
        ("/api/v1/crates/new", &whole[..3], found("cargo", "")),
        ("/api/v1/crates/new", b"", found("cargo", "")),
        // The declared JSON length bounds where the name may come from.
        ("/api/v1/crates/new", &smuggled, found("cargo", "")),
        ("/api/v1/crates/new", b"\xff\xff\xff\xff{\"name\":\"x\"}", found("cargo", "x")),
        ("/api/v1/crates/new", b"\x05\x00\x00\x00not json", found("cargo", "")),
        ("/api/v1/crates/bridle-demo-crate/owners", b"", None),
    ];
    for (path, body, want) in cases {
        let got = publish(&Method::PUT, "crates.io", path, &cargo, body);
        assert_eq!(got, want, "PUT {path} {:?}", String::from_utf8_lossy(body));
    }
    assert_eq!(publish(&Method::GET, "crates.io", "/api/v1/crates/new", &cargo, &whole), None);
    assert_eq!(publish(&Method::DELETE, "crates.io", "/api/v1/crates/x/1.0.0/yank", &cargo, b""), None);
}

#[test]
fn pypi_upload_as_twine_sends_it() {
    let twine = twine_headers("twine/7.0.0 CPython/3.11.7");
    let browser = twine_headers("Mozilla/5.0");
    let json = headers(&[("content-type", "application/json")]);
    let name_at = TWINE_PREFIX.windows(15).position(|w| w == b"Bridle-Demo.Pkg").expect("name in capture");
    let action_at = TWINE_PREFIX.windows(11).position(|w| w == b"file_upload").expect("action in capture");
    let cases: &[(&str, &HeaderMap, &[u8], Option<Publish>)] = &[
        ("/legacy/", &twine, TWINE_PREFIX, found("pypi", "bridle-demo-pkg")),
        ("/legacy", &twine, TWINE_PREFIX, found("pypi", "bridle-demo-pkg")),
        (
            "/legacy/",
            &twine,
            &TWINE_PREFIX[..name_at + 15 + 4 + TWINE_BOUNDARY.len()],
            found("pypi", "bridle-demo-pkg"),
        ),
        // The name's closing delimiter has not arrived: unknown yet.
        ("/legacy/", &twine, &TWINE_PREFIX[..name_at + 10], found("pypi", "")),
        ("/legacy/", &twine, b"", found("pypi", "")),
        ("/legacy/", &json, b"{}", found("pypi", "")),
        // Other hosts and paths: the form or the client says it is an upload.
        ("/repository/pypi-hosted/", &browser, TWINE_PREFIX, found("pypi", "bridle-demo-pkg")),
        ("/api/v4/projects/7/packages/pypi", &twine, b"", found("pypi", "")),
        ("/upload", &browser, &TWINE_PREFIX[..name_at + 15 + 4 + TWINE_BOUNDARY.len()], None),
        ("/upload", &browser, &TWINE_PREFIX[..action_at + 15 + TWINE_BOUNDARY.len()], found("pypi", "bridle-demo-pkg")),
        ("/upload", &json, TWINE_PREFIX, None),
        ("/upload", &HeaderMap::new(), b"", None),
    ];
    for (path, headers, body, want) in cases {
        assert_eq!(publish(&Method::POST, "upload.pypi.org", path, headers, body), *want, "POST {path}");
    }
    assert_eq!(publish(&Method::PUT, "upload.pypi.org", "/legacy/", &twine, TWINE_PREFIX), None);
}

#[test]
fn pypi_forms_by_hand() {
    let form = |fields: &[(&str, &str)]| {
        let mut body = b"preamble\r\n".to_vec();
        for (name, value) in fields {
            body.extend(format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes());
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    };
    let quoted = headers(&[("content-type", "Multipart/Form-Data; charset=utf-8; boundary=\"XyZ\"")]);
    type Fields<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Fields<'_>, Option<Publish>)] = &[
        (&[(":action", "file_upload"), ("name", "My__Pkg..Name")], found("pypi", "my-pkg-name")),
        (&[("metadata_version", "2.4"), ("name", "uv-style")], found("pypi", "uv-style")),
        (&[(":action", "remove_pkg"), ("name", "x")], None),
        (&[("name", "x"), ("comment", "hello")], None),
        // A server may read the last `:action`: any upload is an upload.
        (&[(":action", "submit"), (":action", "file_upload"), ("name", "x")], found("pypi", "x")),
    ];
    for (fields, want) in cases {
        assert_eq!(publish(&Method::POST, "pypi.test", "/simple/upload", &quoted, &form(fields)), *want, "{fields:?}");
    }
    // `:action=file_upload` in the query string counts as well.
    let submit = form(&[(":action", "submit"), ("name", "x")]);
    let query = |q: &str| publish_with_query(&Method::POST, "pypi.test", "/simple/upload", q, &quoted, &submit);
    assert_eq!(query("%3Aaction=file_upload"), found("pypi", "x"));
    assert_eq!(query(":action=file_upload&x=1"), found("pypi", "x"));
    assert_eq!(query("x=file_upload"), None);
    // On /legacy/, PyPI's upload endpoint, whatever `:action` says (the
    // query string may say file_upload).
    let submit = form(&[(":action", "submit"), ("name", "x")]);
    assert_eq!(publish(&Method::POST, "upload.pypi.org", "/legacy/", &quoted, &submit), found("pypi", "x"));
    let file_first = b"--XyZ\r\nContent-Disposition: form-data; name=\"content\"; filename=\"name\"\r\n\r\nPK\r\n--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nreal\r\n--XyZ--";
    assert_eq!(publish(&Method::POST, "p.test", "/legacy/", &quoted, file_first), found("pypi", "real"));
}

#[test]
fn normalization_and_boundaries() {
    assert_eq!(normalize_pypi("Bridle-Demo.Pkg"), "bridle-demo-pkg");
    assert_eq!(normalize_pypi("a_-_b"), "a-b");
    assert_eq!(multipart_boundary("multipart/form-data; boundary=abc"), Some("abc".to_owned()));
    assert_eq!(multipart_boundary("multipart/form-data"), None);
    assert_eq!(multipart_boundary("multipart/mixed; boundary=abc"), None);
    assert_eq!(multipart_boundary("multipart/form-data; boundary=\"\""), None);
}
