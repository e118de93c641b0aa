use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

const FILE: &str = "bridle.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, FILE, Path::new("/proj"))
}

fn error(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(e) => e,
    }
}

/// (line, col, key, message) of a positioned error.
fn parts(e: &ConfigError) -> (usize, usize, Option<&str>, &str) {
    match e {
        ConfigError::Syntax { line, col, message, .. } => (*line, *col, None, message),
        ConfigError::Schema { line, col, key, message, .. } => (*line, *col, key.as_deref(), message),
        ConfigError::Invalid { line, col, key, message, .. } => (*line, *col, Some(key), message),
        other => panic!("expected a positioned error, got {other:?}"),
    }
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let cases = [
        ("zzz = 1", 1, "zzz", "the top level"),
        ("[project]\nname = 'a'\nnmae = 'b'", 3, "nmae", "[project]"),
        ("[[mounts]]\nsource = '.'\ntarget = '/w'\nread_only = true", 4, "read_only", "`mounts[0]`"),
        ("[env]\nfoward = []", 2, "foward", "[env]"),
        ("[policies]\ndirs = 'p'", 2, "dirs", "[policies]"),
        (
            "[[secrets]]\nname = 'a'\nenv = 'A'\nhosts = ['h']\n\n[[secrets]]\nname = 'b'\ntoken = 'x'",
            8,
            "token",
            "`secrets[1]`",
        ),
        ("[dns]\n\nupstream = []", 3, "upstream", "[dns]"),
        ("[dns.extra]\na = 1", 1, "extra", "[dns]"),
        ("[console]\nport = 1", 2, "port", "[console]"),
        ("[audit]\nfsync = 1", 2, "fsync", "[audit]"),
        ("[engine]\ncache = 1", 2, "cache", "[engine]"),
        ("[proxy]\npeek_ms = 1", 2, "peek_ms", "[proxy]"),
        ("[tls]\nca_path = '/x'", 2, "ca_path", "[tls]"),
        ("[dlp]\ncanary = ['abcdefgh']", 2, "canary", "[dlp]"),
        ("audit = { index = true, idx = false }", 1, "idx", "[audit]"),
        ("[mcp]\nport = 1", 2, "port", "[mcp]"),
        ("[[mcp.servers]]\nname = 'a'\nurl = 'http://h/'\ntoken = 'x'", 4, "token", "`mcp.servers[0]`"),
    ];
    for (text, line, name, table) in cases {
        let e = error(text);
        assert!(matches!(e, ConfigError::Schema { .. }), "{text:?}: {e:?}");
        let (got_line, _, key, message) = parts(&e);
        assert_eq!(got_line, line, "{text:?}: {e}");
        assert!(key.is_some_and(|k| k.ends_with(name)), "{text:?}: key {key:?}");
        let expected = format!("unknown key `{name}` in {table}");
        assert!(message.starts_with(&expected), "{text:?}: {message}");
    }
}

#[test]
fn unknown_key_message_lists_expected_keys_and_position() {
    let e = error("[dns]\ncache_size = 1\nbogus = 2\n");
    let shown = e.to_string();
    assert!(shown.starts_with("bridle.toml:3:1: unknown key `bogus` in [dns]"), "{shown}");
    for key in ["upstreams", "deny_response", "cache_size"] {
        assert!(shown.contains(&format!("`{key}`")), "{shown}");
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = error("project = { name = \"é\", bogus = 1 }");
    assert_eq!(parts(&e).0..=parts(&e).1, 1..=25, "{e}");
}

#[test]
fn wrong_types_are_rejected_with_key_and_position() {
    let cases = [
        ("[audit]\nfsync_interval_ms = \"fast\"", 2, 21, "audit.fsync_interval_ms", "invalid type"),
        ("[[mounts]]\nsource = 'a'\ntarget = '/a'\nreadonly = 'yes'", 4, 12, "mounts[0].readonly", "invalid type"),
        ("[console]\nbind = 'nope'", 2, 8, "console.bind", "socket address"),
        ("[dns]\ndeny_response = 'maybe'", 2, 17, "dns.deny_response", "`refused`"),
        ("[dns]\nupstreams = ['1.1.1.1', 'resolver']", 2, 25, "dns.upstreams[1]", "`resolver`"),
        ("[env]\nforward = 'PATH'", 2, 11, "env.forward", "invalid type"),
        ("project = 3", 1, 11, "project", "invalid type"),
        ("[tls]\nleaf_cache_size = -1", 2, 19, "tls.leaf_cache_size", "invalid value"),
        ("[tls]\nupstream_ca_bundle = 3", 2, 22, "tls.upstream_ca_bundle", "invalid type"),
        ("[host]\nprivate_tmp = 'yes'", 2, 15, "host.private_tmp", "invalid type"),
    ];
    for (text, line, col, key, needle) in cases {
        let e = error(text);
        assert!(matches!(e, ConfigError::Schema { .. }), "{text:?}: {e:?}");
        assert_eq!(parts(&e).0..=parts(&e).1, line..=col, "{text:?}: {e}");
        assert_eq!(parts(&e).2, Some(key), "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
    }
}

#[test]
fn missing_required_key_names_the_table() {
    let e = error("[[mounts]]\nsource = 'a'\n");
    assert_eq!(parts(&e).0, 1);
    assert!(e.to_string().contains("missing key `target` in `mounts[0]`"), "{e}");
}

#[test]
fn malformed_toml_gives_line_and_column() {
    let cases = [
        ("[dns\n", 1, 5),
        ("[audit]\npath = \n", 2, 8),
        ("[dns]\ncache_size = 1\ncache_size = 2\n", 3, 1),
        ("name = 'unterminated\n", 1, 21),
    ];
    for (text, line, col) in cases {
        let e = error(text);
        assert!(matches!(e, ConfigError::Syntax { .. }), "{text:?}: {e:?}");
        assert_eq!(parts(&e).0..=parts(&e).1, line..=col, "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("bridle.toml:{line}:{col}: ")), "{e}");
    }
}

const GOOD_SECRET: &str = "[[secrets]]\nname = 'ok'\nenv = 'OK'\nhosts = ['a.example']\n\n";

#[test]
fn secrets_are_validated_with_key_and_line() {
    let cases = [
        ("[[secrets]]\nname = 'x'\nenv = 'X'\nfile = 'x'\nhosts = ['h']", "secrets[0].file", 4, "exactly one"),
        ("[[secrets]]\nname = 'x'\nhosts = ['h']", "secrets[0]", 1, "exactly one"),
        ("[[secrets]]\nname = 'x'\nenv = 'X'\nhosts = []", "secrets[0].hosts", 4, "at least one host"),
        ("[[secrets]]\nname = 'x'\nenv = 'X'", "secrets[0].hosts", 1, "at least one host"),
        ("[[secrets]]\nname = 'x'\nenv = 'X'\nhosts = ['a', 'https://b/']", "secrets[0].hosts[1]", 4, "bare host"),
        ("[[secrets]]\nname = 'Bad Name'\nenv = 'X'\nhosts = ['h']", "secrets[0].name", 2, "[a-z0-9_-]+"),
        ("[[secrets]]\nname = 'x'\nenv = ''\nhosts = ['h']", "secrets[0].env", 3, "variable name"),
        ("[[secrets]]\nname = 'x'\nenv = 'X'\nhosts = ['h']\nheader = 'x y'", "secrets[0].header", 5, "header name"),
    ];
    for (text, key, line, needle) in cases {
        assert_invalid(text, key, line, needle);
    }
}

#[test]
fn secret_format_must_contain_value_placeholder() {
    let text = format!("{GOOD_SECRET}[[secrets]]\nname = 'x'\nenv = 'X'\nhosts = ['h']\nformat = 'Bearer'");
    assert_invalid(&text, "secrets[1].format", 10, "{value}");
    let e = error(&text).to_string();
    assert!(e.starts_with("bridle.toml:10:1: `secrets[1].format` must contain `{value}`"), "{e}");
}

#[test]
fn secret_names_are_unique() {
    let text = format!("{GOOD_SECRET}[[secrets]]\nname = 'ok'\nfile = 'f'\nhosts = ['h']");
    assert_invalid(&text, "secrets[1].name", 7, "repeats");
}

#[test]
fn other_rules_are_validated() {
    let cases = [
        ("[audit]\nfsync_interval_ms = 0", "audit.fsync_interval_ms", 2, "between 1 and 60000"),
        ("[audit]\nfsync_interval_ms = 60001", "audit.fsync_interval_ms", 2, "between 1 and 60000"),
        ("[audit]\nredact = ['tok', '']", "audit.redact[1]", 2, "must not be empty"),
        ("[engine]\nask_timeout_secs = 0", "engine.ask_timeout_secs", 2, "at least 1"),
        ("[proxy]\npeek_timeout_ms = 0", "proxy.peek_timeout_ms", 2, "1 to 10000"),
        ("[proxy]\nmax_connections = 0", "proxy.max_connections", 2, "at least 1"),
        ("[tls]\nleaf_cache_size = 0", "tls.leaf_cache_size", 2, "at least 1"),
        ("[dlp]\ncanaries = ['long-enough', '']", "dlp.canaries[1]", 2, "at least 8 characters"),
        ("[dlp]\ncanaries = ['short']", "dlp.canaries[0]", 2, "at least 8 characters"),
        ("[dlp]\ncanaries = [\"line\\nbreak-canary\"]", "dlp.canaries[0]", 2, "control characters"),
        ("[tls]\nca_dir = ''", "tls.ca_dir", 2, "must not be empty"),
        ("[tls]\nupstream_ca_bundle = ''", "tls.upstream_ca_bundle", 2, "must not be empty"),
        ("[project]\nworkdir = 'work'", "project.workdir", 2, "absolute"),
        ("[project]\nname = ''", "project.name", 2, "empty"),
        ("[[mounts]]\nsource = 'a'\ntarget = 'rel'", "mounts[0].target", 3, "absolute"),
        ("[env]\nforward = ['A=B']", "env.forward[0]", 2, "variable name"),
        ("[host]\nlive_run_dirs = ['/run/postgresql']", "host.live_run_dirs[0]", 2, "relative to it"),
        ("[host]\nlive_run_dirs = ['a', '../etc']", "host.live_run_dirs[1]", 2, "relative to it"),
        ("[host]\nlive_run_dirs = ['']", "host.live_run_dirs[0]", 2, "relative to it"),
        ("[host]\nlive_run_dirs = ['user/1000']", "host.live_run_dirs[0]", 2, "the command's own"),
        ("[host]\nlive_run_dirs = ['bridle']", "host.live_run_dirs[0]", 2, "never the command's"),
    ];
    for (text, key, line, needle) in cases {
        assert_invalid(text, key, line, needle);
    }
    let edge = parse("[audit]\nfsync_interval_ms = 60000\n[engine]\nask_timeout_secs = 1");
    assert!(edge.is_ok(), "{edge:?}");
    let live = parse("[host]\nlive_run_dirs = ['postgresql', 'systemd/journal']").expect("valid");
    assert_eq!(live.host.live_run_dirs, [Path::new("postgresql"), Path::new("systemd/journal")]);
    assert!(!live.host.private_tmp, "the host's /tmp unless asked");
    assert!(parse("[host]\nprivate_tmp = true").expect("valid").host.private_tmp);
    assert!(!live.host.lock_startup_files, "named, not locked, unless asked");
    assert!(parse("[host]\nlock_startup_files = true").expect("valid").host.lock_startup_files);
    assert!(!live.host.cover_sockets, "named, not covered, unless asked");
    assert!(parse("[host]\ncover_sockets = true").expect("valid").host.cover_sockets);
}

const GOOD_MCP: &str = "[[mcp.servers]]\nname = 'demo'\nurl = 'http://127.0.0.1:8000/mcp'\n\n";

#[test]
fn mcp_servers_are_validated_with_key_and_line() {
    let server = |extra: &str| format!("[[mcp.servers]]\nname = 'x'\nurl = 'http://h/mcp'\n{extra}");
    let cases = [
        ("[[mcp.servers]]\nname = '../x'\nurl = 'http://h/'".to_string(), "mcp.servers[0].name", 2, "letters, digits"),
        (format!("{GOOD_MCP}[[mcp.servers]]\nname = 'demo'\nurl = 'http://h/'"), "mcp.servers[1].name", 6, "repeats"),
        ("[[mcp.servers]]\nname = 'x'\nurl = 'ftp://h/'".into(), "mcp.servers[0].url", 3, "http:// or https://"),
        ("[[mcp.servers]]\nname = 'x'\nurl = 'http:///mcp'".into(), "mcp.servers[0].url", 3, "must name a host"),
        ("[[mcp.servers]]\nname = 'x'\nurl = 'http://h:0/'".into(), "mcp.servers[0].url", 3, "invalid port"),
        ("[[mcp.servers]]\nname = 'x'\nurl = 'http://u:p@h/'".into(), "mcp.servers[0].url", 3, "credentials"),
        ("[[mcp.servers]]\nname = 'x'\nurl = 'http://h/#a'".into(), "mcp.servers[0].url", 3, "fragment"),
        (server("headers = { 'bad name' = 'v' }"), "mcp.servers[0].headers.bad name", 4, "header name"),
        (server("headers = { Authorization = \"a\\nb\" }"), "mcp.servers[0].headers.Authorization", 4, "control"),
        ("[mcp]\nmax_message_bytes = 10".into(), "mcp.max_message_bytes", 2, "at least 1024"),
        ("[mcp]\nconnect_timeout_ms = 0".into(), "mcp.connect_timeout_ms", 2, "at least 1"),
        ("[mcp]\nsession_idle_secs = 0".into(), "mcp.session_idle_secs", 2, "at least 1"),
    ];
    for (text, key, line, needle) in cases {
        assert_invalid(&text, key, line, needle);
    }
    let e = error("[[mcp.servers]]\nname = 'x'\nurl = 'http://h/'\ntransport = 'websocket'");
    assert!(matches!(e, ConfigError::Schema { .. }), "{e:?}");
    assert_eq!(parts(&e).0, 4, "{e}");
    assert!(e.to_string().contains("`streamable-http`"), "{e}");
}

#[test]
fn mcp_servers_parse_with_their_defaults() {
    let text = format!(
        "{GOOD_MCP}[[mcp.servers]]\nname = 'old'\nurl = 'https://[::1]:9/sse'\ntransport = 'sse'\nheaders = {{ Authorization = 'Bearer t' }}"
    );
    let config = parse(&text).expect("parses");
    let [demo, old] = &config.mcp.servers[..] else { panic!("two servers: {:?}", config.mcp) };
    assert_eq!((demo.transport, demo.headers.len()), (McpTransport::StreamableHttp, 0));
    assert_eq!((old.transport, old.headers["Authorization"].as_str()), (McpTransport::Sse, "Bearer t"));
    assert_eq!(config.mcp.listen, "127.0.0.1:18090".parse::<SocketAddr>().expect("addr"));
}

fn assert_invalid(text: &str, key: &str, line: usize, needle: &str) {
    let e = error(text);
    assert!(matches!(e, ConfigError::Invalid { .. }), "{text:?}: {e:?}");
    let (got_line, _, got_key, message) = parts(&e);
    assert_eq!((got_key, got_line), (Some(key), line), "{text:?}: {e}");
    assert!(message.contains(needle), "{text:?}: {e}");
    assert!(e.to_string().starts_with(&format!("bridle.toml:{line}:")), "{e}");
}

#[test]
fn empty_file_gives_the_defaults() {
    let config = parse("").expect("empty file parses");
    let mut expected = Config::default();
    expected.resolve_paths(Path::new("/proj"));
    assert_eq!(config, expected);

    assert_eq!(config.project.name, "agent");
    assert_eq!(config.project.path, Path::new("/proj"));
    assert_eq!(config.project.workdir, Path::new("/workspace"));
    assert_eq!(config.env.forward, ["PATH", "HOME", "TERM", "LANG"]);
    assert_eq!(config.policies, PolicyConfig::default());
    assert!(config.policies.dir.is_none() && config.mounts.is_empty() && config.secrets.is_empty());
    assert!(config.dns.upstreams.is_empty());
    assert_eq!(config.dns.deny_response, DenyResponse::Refused);
    assert_eq!(config.dns.cache_size, 10_000);
    assert_eq!(config.console.bind, SocketAddr::from(([127, 0, 0, 1], 18080)));
    assert_eq!(config.audit.path, Path::new("/var/lib/bridle/audit/audit.jsonl"));
    assert_eq!(config.audit.fsync_interval_ms, 50);
    assert!(config.audit.index && config.audit.redact.is_empty());
    assert_eq!(config.engine.decision_cache_size, 100_000);
    assert_eq!(config.engine.ask_timeout_secs, 120);
    assert_eq!(config.tls.ca_dir, Path::new("/var/lib/bridle/ca"));
    assert_eq!(config.tls.upstream_ca_bundle, None);
    assert_eq!(config.tls.leaf_cache_size, 10_000);
}

#[test]
fn secret_defaults_and_render() {
    let config = parse(GOOD_SECRET).expect("secret parses");
    let secret = &config.secrets[0];
    assert_eq!(secret.source, SecretSource::Env("OK".to_owned()));
    assert_eq!(secret.header, "authorization");
    assert_eq!(secret.render("t0k"), "Bearer t0k");
}

#[test]
fn dns_upstreams_default_to_port_53() {
    let text = "[dns]\nupstreams = ['1.1.1.1', '9.9.9.9:5353', '::1', '[::1]:54']\ndeny_response = 'nxdomain'";
    let dns = parse(text).expect("dns parses").dns;
    let addrs: Vec<String> = dns.upstreams.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["1.1.1.1:53", "9.9.9.9:5353", "[::1]:53", "[::1]:54"]);
    assert_eq!(dns.deny_response, DenyResponse::Nxdomain);
}

const PATHS: &str = r#"
[project]
path = "src/.."
workdir = "/work"
[[mounts]]
source = "data"
target = "/data"
[[mounts]]
source = "/abs/data"
target = "/abs"
[policies]
dir = "./policies"
overrides = "policies/overrides"
[[secrets]]
name = "npm"
file = "secrets/npm"
hosts = ["registry.npmjs.org"]
[audit]
path = "/var/log/bridle.jsonl"
[tls]
ca_dir = "ca"
upstream_ca_bundle = "certs/upstream.pem"
"#;

#[test]
fn relative_paths_resolve_against_the_file_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, PATHS).expect("write config");
    let config = Config::load(&file).expect("config loads");
    let base = dir.path();
    assert_eq!(config.base_dir, base);
    assert_eq!(config.project.path, base.join("src/.."));
    assert_eq!(config.project.workdir, Path::new("/work"));
    assert_eq!(config.mounts[0].source, base.join("data"));
    assert_eq!(config.mounts[0].target, Path::new("/data"));
    assert!(config.mounts[0].readonly);
    assert_eq!(config.mounts[1].source, Path::new("/abs/data"));
    assert_eq!(config.policies.dir, Some(base.join("policies")));
    assert_eq!(config.policies.overrides, Some(base.join("policies/overrides")));
    assert_eq!(config.secrets[0].source, SecretSource::File(base.join("secrets/npm")));
    assert_eq!(config.audit.path, Path::new("/var/log/bridle.jsonl"));
    assert_eq!(config.tls.ca_dir, base.join("ca"));
    assert_eq!(config.tls.upstream_ca_bundle, Some(base.join("certs/upstream.pem")));
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, "[dns]\nbogus = 1\n").expect("write config");
    let shown = Config::load(&file).expect_err("bogus key").to_string();
    assert!(shown.starts_with(&format!("{}:2:1: ", file.display())), "{shown}");

    let e = Config::load(dir.path()).expect_err("a directory is not a file");
    assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&dir.path().display().to_string()), "{e}");
}

#[test]
fn discover_prefers_explicit_then_local_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(Config::discover_in(dir.path()).expect("no file is fine"), None);

    let missing = dir.path().join("nope.toml");
    let e = Config::discover(Some(&missing)).expect_err("explicit must exist");
    assert!(matches!(&e, ConfigError::NotFound { path } if *path == missing), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");

    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, "[project]\nname = 'claude'\n").expect("write config");
    let (found, config) = Config::discover_in(dir.path()).expect("loads").expect("found");
    assert_eq!((found, config.project.name), (file.clone(), "claude".to_owned()));

    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[project]\nname = 'codex'\n").expect("write config");
    let (found, config) = Config::discover(Some(&other)).expect("loads").expect("found");
    assert_eq!((found, config.project.name), (other, "codex".to_owned()));
}

#[test]
fn discover_without_explicit_looks_in_the_current_dir() {
    let here = Config::discover_in(Path::new(".")).expect("cwd lookup");
    assert_eq!(Config::discover(None).expect("cwd lookup"), here);
}

#[test]
fn example_config_parses_and_sets_every_section() {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../bridle.example.toml"));
    let config = Config::load(&path).expect("bridle.example.toml loads");
    let base = config.base_dir.clone();
    assert_eq!(config.mounts.len(), 1);
    assert!(!config.mounts[0].readonly);
    assert_eq!(config.policies.dir, Some(base.join("policies")));
    let sources: Vec<_> = config.secrets.iter().map(|s| s.source.clone()).collect();
    assert_eq!(
        sources,
        [SecretSource::Env("GITHUB_TOKEN".to_owned()), SecretSource::File(base.join("secrets/npm-token")),]
    );
    let defaults = Config::default();
    assert_eq!((&config.dns, &config.console), (&defaults.dns, &defaults.console));
    assert_eq!(config.engine, defaults.engine);
    assert_eq!(config.dlp.canaries, ["AKIAHONEYTOKEN000042", "canary-7f3a9c1e-do-not-use"]);
    assert!(defaults.dlp.canaries.is_empty());
    assert_eq!(config.tls, defaults.tls);
    assert_eq!(config.host, defaults.host);
    let [server] = &config.mcp.servers[..] else { panic!("one MCP server: {:?}", config.mcp) };
    assert_eq!((server.name.as_str(), server.transport), ("tickets", McpTransport::StreamableHttp));
    assert_eq!(server.headers.get("X-Api-Key").map(String::as_str), Some("replace-me"));
    assert_eq!(McpSection { servers: Vec::new(), ..config.mcp.clone() }, defaults.mcp);
}
