//! Package publishing recognised in a request, so a policy can stop or ask
//! before an agent pushes code to a registry: npm, cargo and PyPI uploads.
//!
//! - **npm** (`npm`, also pnpm, yarn, bun, and registries like Verdaccio,
//!   GitHub, GitLab, Artifactory): `PUT <prefix>/<name>` or
//!   `<prefix>/@scope%2fname` with the package document as JSON
//!   (`_id`, `name`, `dist-tags`, `versions`, `access`, `_attachments`).
//!   `PUT .../<name>/-rev/<rev>` (unpublish of one version, deprecate) also
//!   rewrites the package and is reported the same way. Because `PUT /<word>`
//!   is common in other APIs, it counts only with npm evidence: the request
//!   goes to a public npm registry at its root, carries npm's `npm-command`
//!   header or a package manager's user agent, or its body starts like a
//!   package document (a top-level `versions` or `_attachments` key, even
//!   if its value runs past the prefix). The
//!   package is the path's, percent-decoded.
//! - **cargo**: `PUT <prefix>/api/v1/crates/new`; the body is a u32
//!   little-endian JSON length, the JSON metadata (top-level `name`, first
//!   in what cargo sends), then the `.crate`. The name is reported as sent.
//! - **PyPI** (twine, uv, poetry, maturin): `POST` of `multipart/form-data`
//!   to `<prefix>/legacy/` (upload.pypi.org, test.pypi.org, any host), or to
//!   any path when the form says it is an upload (an `:action` =
//!   `file_upload`, whatever other `:action` fields, or the query's, say,
//!   or the upload-only `filetype`/`pyversion`/`metadata_version` fields,
//!   or an uploader's user agent). The `name` field is reported normalized
//!   as PyPI compares names (PEP 503: lowercase, runs of `-_.` become `-`),
//!   so `My_Pkg` and `my-pkg` are one package to policy as to PyPI.
//!
//! When the body prefix ends before the name (cargo, PyPI), publishing is
//! still reported from method and path with `package` = `""`: a policy
//! that wants the name must treat `""` as unknown.
//!
//! Must never: read past the prefix it is given, or fail on odd input
//! (anything unrecognised is simply not a publish).

use bridle_engine::event::Publish;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method};

use super::codec::{percent_decode, percent_decode_str};
use super::json_prefix;

/// Public npm registries, where `PUT /<name>` at the root is always a publish.
const NPM_REGISTRIES: [&str; 3] = ["registry.npmjs.org", "registry.yarnpkg.com", "npm.pkg.github.com"];
/// User agents of npm clients (`npm/10.8.2 node/v22 ...`).
const NPM_AGENTS: [&str; 4] = ["npm/", "pnpm/", "yarn/", "bun/"];
/// User agents of PyPI uploaders.
const PYPI_AGENTS: [&str; 4] = ["twine/", "uv/", "poetry/", "maturin/"];

/// The package publish `method` + `path` to `host` is, if it is one.
pub fn publish(method: &Method, host: &str, path: &str, headers: &HeaderMap, body_prefix: &[u8]) -> Option<Publish> {
    publish_with_query(method, host, path, "", headers, body_prefix)
}

/// [`publish`], with the request's `query` (PyPI's `:action` may be there:
/// servers read the query's parameters with the form's).
pub fn publish_with_query(
    method: &Method,
    host: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body_prefix: &[u8],
) -> Option<Publish> {
    let found = if *method == Method::PUT {
        cargo(path, body_prefix)
            .map(|name| ("cargo", name))
            .or_else(|| npm(host, path, headers, body_prefix).map(|n| ("npm", n)))
    } else if *method == Method::POST {
        pypi(path, query, headers, body_prefix).map(|name| ("pypi", name))
    } else {
        None
    };
    found.map(|(ecosystem, package)| Publish { ecosystem: ecosystem.to_owned(), package })
}

fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn agent_is(headers: &HeaderMap, agents: &[&str]) -> bool {
    let agent = header(headers, USER_AGENT).to_ascii_lowercase();
    agents.iter().any(|a| agent.starts_with(a))
}

fn npm(host: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let (prefix, name) = npm_target(path)?;
    let public_root = prefix == 0 && NPM_REGISTRIES.contains(&host.to_ascii_lowercase().trim_end_matches('.'));
    let client = headers.contains_key("npm-command") || agent_is(headers, &NPM_AGENTS);
    let document = || json_prefix::members(body).iter().any(|m| m.key == "versions" || m.key == "_attachments");
    (public_root || client || document()).then_some(name)
}

/// The package a npm write addresses, with how many path segments come
/// before it (a registry's own prefix, e.g. `api/v4/projects/7/packages/npm`).
fn npm_target(path: &str) -> Option<(usize, String)> {
    let mut segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() >= 3 && segments[segments.len() - 2] == "-rev" {
        segments.truncate(segments.len() - 2);
    }
    // `/-/...` is the registry's own API (login, dist-tags, search).
    if segments.contains(&"-") {
        return None;
    }
    let last = percent_decode_str(segments.pop()?)?;
    if let Some((scope, name)) = last.split_once('/') {
        return (npm_scope(scope) && npm_name(name)).then(|| (segments.len(), last.clone()));
    }
    if let Some(scope) = segments.last().and_then(|s| percent_decode_str(s)).filter(|s| s.starts_with('@')) {
        segments.pop();
        return (npm_scope(&scope) && npm_name(&last)).then(|| (segments.len(), format!("{scope}/{last}")));
    }
    npm_name(&last).then_some((segments.len(), last))
}

fn npm_scope(scope: &str) -> bool {
    scope.strip_prefix('@').is_some_and(npm_name)
}

/// What npm accepts in a name part: URL-safe characters, not leading `.`
/// or `_`, at most 214 bytes.
fn npm_name(name: &str) -> bool {
    let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~!*'()".contains(c);
    !name.is_empty() && name.len() <= 214 && !name.starts_with(['.', '_']) && name.chars().all(url_safe)
}

fn cargo(path: &str, body: &[u8]) -> Option<String> {
    if !percent_decode(path).ends_with(b"/api/v1/crates/new") {
        return None;
    }
    Some(cargo_name(body).unwrap_or_default())
}

fn cargo_name(body: &[u8]) -> Option<String> {
    let len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    let json = &body[4..];
    let json = &json[..json.len().min(usize::try_from(len).ok()?)];
    json_prefix::members(json).iter().find(|m| m.key == "name").and_then(|m| m.string().map(str::to_owned))
}

fn pypi(path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let path = percent_decode(path);
    let legacy = path.strip_suffix(b"/").unwrap_or(&path).ends_with(b"/legacy");
    let boundary = multipart_boundary(header(headers, CONTENT_TYPE));
    if !legacy && boundary.is_none() {
        return None;
    }
    let fields = boundary.map(|b| form_fields(body, &b)).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    // Legacy actions PyPI no longer serves are not uploads, but only where
    // no `:action` says `file_upload`: a server may read the last of
    // several, or one in the query string. On `/legacy/` (where PyPI
    // serves nothing else) every POST form counts.
    let in_query = query.split('&').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (percent_decode_str(name)? == ":action").then(|| percent_decode_str(value)).flatten()
    });
    let mut actions = fields.iter().filter(|(n, _)| n == ":action").map(|(_, v)| v.clone()).chain(in_query).peekable();
    if !legacy && actions.peek().is_some() && !actions.any(|action| action == "file_upload") {
        return None;
    }
    let upload_fields = [":action", "filetype", "pyversion", "metadata_version"].iter().any(|f| field(f).is_some());
    if !(legacy || upload_fields || agent_is(headers, &PYPI_AGENTS)) {
        return None;
    }
    Some(field("name").map(normalize_pypi).unwrap_or_default())
}

/// PEP 503 normalization.
fn normalize_pypi(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty()).then(|| value.to_owned())
    })
}

/// The small text fields of a multipart form that are complete within
/// `body`, in order; file parts are skipped.
fn form_fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut fields = Vec::new();
    let Some(mut at) = find(body, &delimiter) else { return fields };
    loop {
        at += delimiter.len();
        let Some(rest) = body.get(at..).and_then(|r| r.strip_prefix(b"\r\n")) else { return fields };
        let Some(head_end) = find(rest, b"\r\n\r\n") else { return fields };
        let mut close = b"\r\n".to_vec();
        close.extend_from_slice(&delimiter);
        let value_start = head_end + 4;
        let Some(value_len) = find(&rest[value_start..], &close) else { return fields };
        let value = &rest[value_start..value_start + value_len];
        if let Some(name) = field_name(&rest[..head_end]) {
            fields.push((name, String::from_utf8_lossy(value).into_owned()));
        }
        at = body.len() - rest.len() + value_start + value_len + 2;
    }
}

/// The `name` of a text part's `Content-Disposition: form-data; name="x"`;
/// `None` for file parts (`filename=`) and anything else.
fn field_name(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    let disposition = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-disposition").then_some(value)
    })?;
    let mut params = disposition.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut name = None;
    for param in params {
        let (key, value) = param.split_once('=')?;
        match key.trim().to_ascii_lowercase().as_str() {
            "filename" | "filename*" => return None,
            "name" => name = Some(value.trim().trim_matches('"').to_owned()),
            _ => {}
        }
    }
    name
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
