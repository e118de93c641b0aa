//! Canonical forms of the names policies match on.
//!
//! Policies say `Net::Domain::"github.com"` and `File::Dir::"/workspace"`;
//! whatever spelling the agent used (`GitHub.com.`, `/workspace//a/../b`) must
//! land on the same entity, or a policy is bypassed by a spelling.

use std::net::IpAddr;

/// Lowercases a DNS name and removes one trailing dot.
pub fn normalize_domain(name: &str) -> String {
    let trimmed = name.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let trimmed = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(trimmed);
    trimmed.to_ascii_lowercase()
}

/// An MCP server's name: 1-64 of `[A-Za-z0-9._-]`, starting with a letter
/// or digit, so it is safe as a file name (tool pins), in a URL path
/// (`/mcp/<name>`) and readable in policies (`resource.server`).
pub fn valid_mcp_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// True when `name` is an IP literal rather than a DNS name.
pub fn is_ip_literal(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok()
}

/// The name itself and every enclosing name, on label boundaries:
/// `api.github.com` → `api.github.com`, `github.com`, `com`.
/// IP literals and empty names have no domain ancestry.
pub fn domain_chain(name: &str) -> Vec<&str> {
    if name.is_empty() || is_ip_literal(name) {
        return Vec::new();
    }
    let mut chain = vec![name];
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.is_empty() {
            break;
        }
        chain.push(parent);
        rest = parent;
    }
    chain
}

/// Makes a path absolute (against `cwd`) and lexically normal: no `.`,
/// no `..`, no repeated or trailing `/`. `..` never climbs above `/`.
pub fn normalize_path(path: &str, cwd: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined_cwd = if path.starts_with('/') { "" } else { cwd };
    for part in joined_cwd.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len() + cwd.len());
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Enclosing directories of a normalized absolute path, nearest first,
/// ending with `/`: `/a/b/c` → `/a/b`, `/a`, `/`.
pub fn dir_chain(path: &str) -> Vec<&str> {
    let mut chain = Vec::new();
    let mut rest = path;
    while let Some(idx) = rest.rfind('/') {
        if idx == 0 {
            if rest.len() > 1 {
                chain.push("/");
            }
            break;
        }
        rest = &rest[..idx];
        chain.push(rest);
    }
    chain
}

/// Whether normalized `path` is `root` or below it (on a component
/// boundary: `/work` does not contain `/workspace`). An empty root contains
/// nothing.
pub fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    !root.is_empty() && (path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/')))
}

/// Splits a normalized absolute path into (directory, last component).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(idx) => (&path[..idx], &path[idx + 1..]),
        None => ("/", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_without_trailing_dot() {
        assert_eq!(normalize_domain("API.GitHub.com."), "api.github.com");
        assert_eq!(normalize_domain("[2001:db8::1]"), "2001:db8::1");
    }

    #[test]
    fn domain_chain_follows_label_boundaries() {
        assert_eq!(domain_chain("api.github.com"), ["api.github.com", "github.com", "com"]);
        assert_eq!(domain_chain("evilgithub.com"), ["evilgithub.com", "com"]);
        assert!(domain_chain("198.51.100.1").is_empty());
        assert!(domain_chain("2001:db8::1").is_empty());
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize_path("/workspace//a/./b/../c/", "/"), "/workspace/a/c");
        assert_eq!(normalize_path("../../../etc/passwd", "/workspace/x"), "/etc/passwd");
        assert_eq!(normalize_path(".github/workflows/ci.yml", "/workspace"), "/workspace/.github/workflows/ci.yml");
        assert_eq!(normalize_path("/..", "/"), "/");
    }

    #[test]
    fn dir_chain_ends_at_root() {
        assert_eq!(dir_chain("/a/b/c"), ["/a/b", "/a", "/"]);
        assert_eq!(dir_chain("/a"), ["/"]);
        assert!(dir_chain("/").is_empty());
        assert_eq!(split_path("/a/b"), ("/a", "b"));
        assert_eq!(split_path("/a"), ("/", "a"));
        assert!(is_within("/workspace/a", "/workspace/"));
        assert!(!is_within("/workspace2/a", "/workspace"));
        assert!(!is_within("/a", ""));
    }
}
