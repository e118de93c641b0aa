//! `ConfigError` and the conversions that give every error a file, a position and a key.

use std::io;
use std::path::PathBuf;

use toml::de::DeTable;

use super::locate::{self, KeyPath};
use super::validate::Problem;

/// Why a `bridle.toml` could not be used. Parse, schema and rule errors display
/// as `<file>:<line>:<col>: <message>` (1-based line and column).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file named explicitly does not exist.
    #[error("{}: config file not found", .path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{}: cannot read config: {source}", .path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        /// Name of the file (or other origin) holding the text.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// What the TOML parser expected.
        message: String,
    },
    /// Valid TOML that does not fit the schema: an unknown key, a wrong type, a missing key.
    #[error("{file}:{line}:{col}: {message}")]
    Schema {
        /// Name of the file (or other origin) holding the text.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// Key path of the offending key or value (`dns.upstreams[0]`), when it could be found.
        key: Option<String>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value of the right type that breaks a rule, e.g. a secret format without `{value}`.
    #[error("{file}:{line}:{col}: `{key}` {message}")]
    Invalid {
        /// Name of the file (or other origin) holding the text.
        file: String,
        /// 1-based line of the key, or of the table it is missing from.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// Key path, e.g. `secrets[1].format`.
        key: String,
        /// The rule that was broken.
        message: String,
    },
}

/// The text being parsed and the name its errors carry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Origin<'_> {
    pub fn syntax(&self, err: &toml::de::Error) -> ConfigError {
        let (line, col) = locate::line_col(self.text, start(err));
        ConfigError::Syntax { file: self.file.to_owned(), line, col, message: err.message().to_owned() }
    }

    pub fn schema(&self, doc: &DeTable<'_>, err: &toml::de::Error) -> ConfigError {
        let offset = start(err);
        let path = locate::path_at(doc, offset);
        let (line, col) = locate::line_col(self.text, offset);
        ConfigError::Schema {
            file: self.file.to_owned(),
            line,
            col,
            message: schema_message(err.message(), &path),
            key: (!path.0.is_empty()).then(|| path.to_string()),
        }
    }

    pub fn invalid(&self, doc: &DeTable<'_>, problem: Problem) -> ConfigError {
        let offset = locate::span_of(doc, &problem.key).map_or(0, |s| s.start);
        let (line, col) = locate::line_col(self.text, offset);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            col,
            key: problem.key.to_string(),
            message: problem.message,
        }
    }
}

fn start(err: &toml::de::Error) -> usize {
    err.span().map_or(0, |s| s.start)
}

/// Rephrases serde's field wording as TOML keys and names the table involved.
fn schema_message(message: &str, path: &KeyPath) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        let table = path.parent_of(name.trim_matches('`')).unwrap_or_else(|| path.clone());
        let sep = if expected.is_empty() { "" } else { ", " };
        return format!("unknown key {name} in {}{sep}{expected}", table.describe_table());
    }
    if let Some(name) = message.strip_prefix("missing field ") {
        return format!("missing key {name} in {}", path.describe_table());
    }
    if path.0.is_empty() {
        return message.to_owned();
    }
    format!("`{path}`: {message}")
}
