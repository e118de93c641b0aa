//! Rules the types alone cannot express, checked once after parsing. Each
//! failure names its key so the caller can point at the line that broke it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::Config;
use super::locate::KeyPath;
use super::schema::{
    AuditConfig, DlpConfig, EngineConfig, EnvConfig, HostConfig, McpSection, McpServer, Mount, ProjectConfig,
    ProxySection, RawConfig, RawSecret, Secret, SecretSource, TlsSection,
};
use crate::names::valid_mcp_server_name;

/// A broken rule: which key, and what it must be instead.
#[derive(Debug)]
pub(super) struct Problem {
    pub key: KeyPath,
    pub message: String,
}

type Checked<T = ()> = Result<T, Problem>;

fn fail<T>(key: KeyPath, message: impl Into<String>) -> Checked<T> {
    Err(Problem { key, message: message.into() })
}

fn at(section: &str) -> KeyPath {
    KeyPath::default().key(section)
}

/// Checks every rule; the first failure wins. Paths stay unresolved here.
pub(super) fn into_config(raw: RawConfig) -> Checked<Config> {
    check_project(&raw.project)?;
    check_mounts(&raw.mounts)?;
    check_env(&raw.env)?;
    check_host(&raw.host)?;
    check_audit(&raw.audit)?;
    check_engine(&raw.engine)?;
    check_proxy(&raw.proxy)?;
    check_tls(&raw.tls)?;
    check_dlp(&raw.dlp)?;
    check_mcp(&raw.mcp)?;
    Ok(Config {
        secrets: check_secrets(raw.secrets)?,
        project: raw.project,
        mounts: raw.mounts,
        env: raw.env,
        host: raw.host,
        policies: raw.policies,
        dns: raw.dns,
        console: raw.console,
        audit: raw.audit,
        engine: raw.engine,
        proxy: raw.proxy,
        tls: raw.tls,
        dlp: raw.dlp,
        mcp: raw.mcp,
        base_dir: PathBuf::new(),
    })
}

fn check_project(project: &ProjectConfig) -> Checked {
    if project.name.trim().is_empty() {
        return fail(at("project").key("name"), "must not be empty");
    }
    require_absolute(&project.workdir, at("project").key("workdir"))
}

fn check_mounts(mounts: &[Mount]) -> Checked {
    for (i, mount) in mounts.iter().enumerate() {
        let key = at("mounts").index(i);
        if mount.source.as_os_str().is_empty() {
            return fail(key.key("source"), "must not be empty");
        }
        require_absolute(&mount.target, key.key("target"))?;
    }
    Ok(())
}

fn require_absolute(path: &Path, key: KeyPath) -> Checked {
    if path.is_absolute() {
        return Ok(());
    }
    let shown = path.display();
    fail(key, format!("must be an absolute path inside the workload, got `{shown}`"))
}

fn check_env(env: &EnvConfig) -> Checked {
    for (i, name) in env.forward.iter().enumerate() {
        if !is_env_name(name) {
            return fail(at("env").key("forward").index(i), format!("is not a variable name: `{name}`"));
        }
    }
    Ok(())
}

fn check_host(host: &HostConfig) -> Checked {
    use std::path::Component;
    for (i, dir) in host.live_run_dirs.iter().enumerate() {
        let key = at("host").key("live_run_dirs").index(i);
        let shown = dir.display();
        let mut components = dir.components();
        if !components.clone().all(|part| matches!(part, Component::Normal(_))) || dir.as_os_str().is_empty() {
            return fail(
                key,
                format!("must be a directory under /run, relative to it (e.g. `postgresql`), got `{shown}`"),
            );
        }
        let first = components.next().map(|first| first.as_os_str().to_owned()).unwrap_or_default();
        if first == "user" || first == "screen" {
            return fail(key, format!("`{shown}`: /run/user and /run/screen are the command's own"));
        }
        if first == "bridle" {
            // Its control sockets approve what the command waits for.
            return fail(key, format!("`{shown}`: Bridle's control sockets are never the command's"));
        }
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

fn check_audit(audit: &AuditConfig) -> Checked {
    let ms = audit.fsync_interval_ms;
    if !(1..=60_000).contains(&ms) {
        let message = format!("must be between 1 and 60000 (milliseconds), got {ms}");
        return fail(at("audit").key("fsync_interval_ms"), message);
    }
    match audit.redact.iter().position(String::is_empty) {
        // An empty pattern matches everywhere and would blank the whole log.
        Some(i) => fail(at("audit").key("redact").index(i), "must not be empty"),
        None => Ok(()),
    }
}

fn check_engine(engine: &EngineConfig) -> Checked {
    if engine.ask_timeout_secs == 0 {
        return fail(at("engine").key("ask_timeout_secs"), "must be at least 1");
    }
    Ok(())
}

fn check_proxy(proxy: &ProxySection) -> Checked {
    if !(1..=10_000).contains(&proxy.peek_timeout_ms) {
        return fail(at("proxy").key("peek_timeout_ms"), "must be 1 to 10000");
    }
    if proxy.connect_timeout_ms == 0 {
        return fail(at("proxy").key("connect_timeout_ms"), "must be at least 1");
    }
    if proxy.max_connections == 0 {
        return fail(at("proxy").key("max_connections"), "must be at least 1");
    }
    Ok(())
}

fn check_tls(tls: &TlsSection) -> Checked {
    if tls.ca_dir.as_os_str().is_empty() {
        return fail(at("tls").key("ca_dir"), "must not be empty");
    }
    if tls.upstream_ca_bundle.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return fail(at("tls").key("upstream_ca_bundle"), "must not be empty (leave it out for the system bundle)");
    }
    if tls.leaf_cache_size == 0 {
        return fail(at("tls").key("leaf_cache_size"), "must be at least 1");
    }
    Ok(())
}

/// A canary is searched for literally in every request: an empty or short
/// one would match ordinary traffic and deny it.
fn check_dlp(dlp: &DlpConfig) -> Checked {
    for (i, canary) in dlp.canaries.iter().enumerate() {
        let key = at("dlp").key("canaries").index(i);
        if canary.chars().count() < 8 {
            return fail(key, "must be at least 8 characters: a shorter canary would match ordinary text");
        }
        if canary.chars().any(char::is_control) {
            return fail(key, "must not contain control characters");
        }
    }
    Ok(())
}

fn check_secrets(raw: Vec<RawSecret>) -> Checked<Vec<Secret>> {
    let mut seen = HashSet::new();
    let mut secrets = Vec::with_capacity(raw.len());
    for (i, secret) in raw.into_iter().enumerate() {
        let key = at("secrets").index(i);
        if !seen.insert(secret.name.clone()) {
            let message = format!("repeats the secret name `{}`", secret.name);
            return fail(key.key("name"), message);
        }
        secrets.push(check_secret(secret, key)?);
    }
    Ok(secrets)
}

fn check_secret(raw: RawSecret, key: KeyPath) -> Checked<Secret> {
    let name_ok =
        !raw.name.is_empty() && raw.name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if !name_ok {
        let message = format!("must match [a-z0-9_-]+, got `{}`", raw.name);
        return fail(key.key("name"), message);
    }
    let source = secret_source(raw.env, raw.file, &key)?;
    check_hosts(&raw.hosts, &key)?;
    if !is_header_name(&raw.header) {
        let message = format!("is not an HTTP header name: `{}`", raw.header);
        return fail(key.key("header"), message);
    }
    if !raw.format.contains("{value}") {
        let message = format!("must contain `{{value}}`, got `{}`", raw.format);
        return fail(key.key("format"), message);
    }
    Ok(Secret { name: raw.name, source, hosts: raw.hosts, header: raw.header, format: raw.format })
}

fn secret_source(env: Option<String>, file: Option<PathBuf>, key: &KeyPath) -> Checked<SecretSource> {
    match (env, file) {
        (Some(var), None) if is_env_name(&var) => Ok(SecretSource::Env(var)),
        (Some(var), None) => fail(key.clone().key("env"), format!("is not a variable name: `{var}`")),
        (None, Some(path)) if path.as_os_str().is_empty() => fail(key.clone().key("file"), "must not be empty"),
        (None, Some(path)) => Ok(SecretSource::File(path)),
        (Some(_), Some(_)) => fail(key.clone().key("file"), "conflicts with `env`: set exactly one of `env` or `file`"),
        (None, None) => fail(key.clone(), "has no value source: set exactly one of `env` or `file`"),
    }
}

/// Hosts are compared as bare names, so a scheme, port or path would never match
/// and the secret would silently never be sent.
fn check_hosts(hosts: &[String], key: &KeyPath) -> Checked {
    if hosts.is_empty() {
        return fail(key.clone().key("hosts"), "must list at least one host");
    }
    let bad = |h: &String| h.is_empty() || h.contains(|c: char| c.is_whitespace() || "/:@".contains(c));
    match hosts.iter().position(bad) {
        Some(i) => {
            let message = format!("must be a bare host name like `api.github.com`, got `{}`", hosts[i]);
            fail(key.clone().key("hosts").index(i), message)
        }
        None => Ok(()),
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_mcp(mcp: &McpSection) -> Checked {
    if mcp.max_message_bytes < 1024 {
        return fail(at("mcp").key("max_message_bytes"), "must be at least 1024");
    }
    if mcp.connect_timeout_ms == 0 {
        return fail(at("mcp").key("connect_timeout_ms"), "must be at least 1");
    }
    if mcp.session_idle_secs == 0 {
        return fail(at("mcp").key("session_idle_secs"), "must be at least 1");
    }
    let mut seen = HashSet::new();
    for (i, server) in mcp.servers.iter().enumerate() {
        let key = at("mcp").key("servers").index(i);
        if !valid_mcp_server_name(&server.name) {
            let message = format!(
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, got `{}`",
                server.name
            );
            return fail(key.key("name"), message);
        }
        if !seen.insert(server.name.as_str()) {
            return fail(key.key("name"), format!("repeats the server name `{}`", server.name));
        }
        check_mcp_server(server, &key)?;
    }
    Ok(())
}

fn check_mcp_server(server: &McpServer, key: &KeyPath) -> Checked {
    if let Err(why) = check_http_url(&server.url) {
        return fail(key.clone().key("url"), format!("{why}, got `{}`", server.url));
    }
    for (name, value) in &server.headers {
        let at = key.clone().key("headers").key(name);
        if !is_header_name(name) {
            return fail(at, "is not an HTTP header name");
        }
        if value.chars().any(char::is_control) {
            return fail(at, "must not contain control characters");
        }
    }
    Ok(())
}

/// `http(s)://host[:port][/path][?query]`: the gateway dials it as written,
/// so anything it could not dial is refused here, with the line.
fn check_http_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    if url.contains('#') {
        return Err("must not have a #fragment");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials (put them in `headers`)");
    }
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() || host == "[]" {
        return Err("must name a host");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("has an invalid port");
    }
    Ok(())
}
