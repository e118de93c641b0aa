//! Tool pinning: what each server's tools looked like the first time, so a
//! later change (a "rug pull") is noticed.
//!
//! One JSON file per server, `<dir>/<server>.json` (mode 0600, directory
//! 0700), holding per tool the pinned definition and its hash, the latest
//! different definition when there is one, and the latest findings.
//! A tool's definition is its `name`, `title`, `description`,
//! `inputSchema`, `outputSchema` and `annotations` (a flipped
//! `destructiveHint` is a change too); its hash is SHA-256 over canonical
//! JSON (keys sorted, no whitespace), hex. Pins made before the last three
//! were hashed (no `version`) are brought up to date the first time their
//! tool is seen unchanged in the fields they did hash.
//!
//! Updates go through [`PinStore::update`]: under an exclusive lock on
//! `<server>.json.lock` the file is re-read, changed and replaced
//! atomically, so two gateways for one server never lose each other's pins.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::GatewayError;

/// The pinned state of one server's tools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    pub server: String,
    #[serde(default)]
    pub tools: BTreeMap<String, ToolPin>,
}

/// One tool's pin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPin {
    /// Which fields the definition holds: 1 = `name`, `description`,
    /// `inputSchema` only (pins from before `version`); 2 = all of them.
    #[serde(default = "first_version")]
    pub version: u8,
    /// Hash of the pinned definition.
    pub hash: String,
    /// The pinned definition (`name`, `description`, `inputSchema`).
    pub definition: Value,
    pub pinned_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The latest definition, when it differs from the pinned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Sighting>,
    /// Poisoning findings on the latest definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Findings a person accepted with the pinned definition
    /// (`bridle mcp tools --accept`): not reported while it is unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_findings: Vec<String>,
}

/// A definition seen after the pin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sighting {
    pub hash: String,
    pub definition: Value,
    pub seen_at: DateTime<Utc>,
}

impl ToolPin {
    /// A new pin for `definition`.
    pub fn new(definition: Value, hash: String, findings: Vec<String>, now: DateTime<Utc>) -> Self {
        ToolPin {
            version: VERSION,
            hash,
            definition,
            pinned_at: now,
            last_seen: now,
            changed: None,
            findings,
            accepted_findings: Vec::new(),
        }
    }

    /// Whether the latest definition differs from the pinned one.
    pub fn is_changed(&self) -> bool {
        self.changed.is_some()
    }

    /// The findings to report: all of them for a changed tool, else those
    /// nobody accepted.
    pub fn effective_findings(&self) -> Vec<String> {
        if self.is_changed() {
            return self.findings.clone();
        }
        self.findings.iter().filter(|f| !self.accepted_findings.contains(f)).cloned().collect()
    }

    /// Records a sighting of `definition` (hash `hash`) with `findings`.
    /// A change, once seen, stays flagged until accepted, even when the
    /// server goes back to the pinned definition: the changed one reached
    /// the client (a listing that names a tool twice, changed then as
    /// pinned, must not clear it either).
    pub fn saw(&mut self, definition: &Value, hash: &str, findings: Vec<String>, now: DateTime<Utc>) {
        self.last_seen = now;
        if self.version < VERSION && self::hash(&definition_v1(definition)) == self.hash {
            // Unchanged in what the old pin covered: it now covers the rest.
            self.version = VERSION;
            self.hash = hash.to_string();
            self.definition = definition.clone();
        }
        if hash == self.hash && self.changed.is_some() {
            return;
        }
        self.findings = findings;
        self.changed = (hash != self.hash).then(|| Sighting {
            hash: hash.to_string(),
            definition: definition.clone(),
            seen_at: self.changed.as_ref().filter(|c| c.hash == hash).map_or(now, |c| c.seen_at),
        });
    }

    /// Makes the latest definition the pin and accepts its findings.
    pub fn accept(&mut self, now: DateTime<Utc>) {
        if let Some(latest) = self.changed.take() {
            self.hash = latest.hash;
            self.definition = latest.definition;
            self.pinned_at = now;
            // The version stays: a sighting an older Bridle saved holds a
            // version-1 definition, and the next listing brings it up to date.
        }
        self.accepted_findings = self.findings.clone();
    }
}

/// The pin format [`ToolPin::new`] writes.
const VERSION: u8 = 2;

fn first_version() -> u8 {
    1
}

/// The hashed part of a tool: `name`, `title`, `description`,
/// `inputSchema`, `outputSchema`, `annotations` (those present).
pub fn definition(tool: &Value) -> Value {
    project(tool, &["name", "title", "description", "inputSchema", "outputSchema", "annotations"])
}

/// What a version-1 pin hashed.
fn definition_v1(tool: &Value) -> Value {
    project(tool, &["name", "description", "inputSchema"])
}

fn project(tool: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for key in keys {
        if let Some(value) = tool.get(*key) {
            out.insert((*key).to_string(), value.clone());
        }
    }
    Value::Object(out)
}

/// SHA-256 (hex) of the canonical JSON of `value`.
pub fn hash(value: &Value) -> String {
    let mut text = String::new();
    canonical(value, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Keys sorted at every level, no whitespace: the same definition always
/// hashes the same, whatever order the server wrote it in.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&object[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The pins directory.
#[derive(Clone, Debug)]
pub struct PinStore {
    dir: PathBuf,
}

impl PinStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PinStore { dir: dir.into() }
    }

    /// `$XDG_STATE_HOME/bridle/mcp-pins`, else `$HOME/.local/state/bridle/mcp-pins`.
    pub fn default_dir(xdg_state_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
        let state = match (xdg_state_home.filter(|p| p.is_absolute()), home) {
            (Some(state), _) => state.to_path_buf(),
            (None, Some(home)) => home.join(".local/state"),
            (None, None) => return None,
        };
        Some(state.join("bridle/mcp-pins"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.json"))
    }

    /// `server`'s pins (empty if it has none yet).
    pub fn load(&self, server: &str) -> Result<PinFile, GatewayError> {
        let path = self.path(server);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| GatewayError::PinFile { path, source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(PinFile { server: server.to_string(), tools: BTreeMap::new() })
            }
            Err(error) => Err(GatewayError::pins(path, "read")(error)),
        }
    }

    /// Servers with a pin file, sorted.
    pub fn servers(&self) -> Result<Vec<String>, GatewayError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(GatewayError::pins(&self.dir, "list")(error)),
        };
        let mut servers: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .filter(|name| crate::config::valid_server_name(name))
            .collect();
        servers.sort();
        Ok(servers)
    }

    /// Tool names of every server but `server`, each with the servers
    /// offering it (for the shadowing check). Unreadable files are skipped:
    /// they only weaken a heuristic.
    pub fn other_tools(&self, server: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for other in self.servers().unwrap_or_default().into_iter().filter(|s| s != server) {
            let Ok(file) = self.load(&other) else { continue };
            for tool in file.tools.into_keys() {
                out.entry(tool).or_default().insert(other.clone());
            }
        }
        out
    }

    /// Re-reads `server`'s pins under its lock, applies `change` and writes
    /// the result back (only if it changed); returns the new state.
    pub fn update(&self, server: &str, change: impl FnOnce(&mut PinFile)) -> Result<PinFile, GatewayError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(GatewayError::pins(&self.dir, "create directory"))?;
        let lock_path = self.dir.join(format!("{server}.json.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(GatewayError::pins(&lock_path, "open"))?;
        let _held = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, errno)| GatewayError::pins(&lock_path, "lock")(errno.into()))?;
        let mut file = self.load(server)?;
        let before = file.clone();
        change(&mut file);
        if file != before {
            self.write(&file)?;
        }
        Ok(file)
    }

    /// Re-pins `server`'s tools (only `tool`, if given) to their latest
    /// definitions and accepts their current findings; returns the names.
    pub fn accept(&self, server: &str, tool: Option<&str>) -> Result<Vec<String>, GatewayError> {
        let what = tool.map_or_else(|| server.to_string(), |tool| format!("{server}/{tool}"));
        if !crate::config::valid_server_name(server) {
            return Err(GatewayError::UnknownPin { what });
        }
        let pins = self.load(server)?;
        let known = tool.map_or(!pins.tools.is_empty(), |tool| pins.tools.contains_key(tool));
        if !known {
            return Err(GatewayError::UnknownPin { what });
        }
        let mut accepted = Vec::new();
        self.update(server, |file| {
            let now = Utc::now();
            for (name, pin) in file.tools.iter_mut().filter(|(name, _)| tool.is_none_or(|t| t == name.as_str())) {
                pin.accept(now);
                accepted.push(name.clone());
            }
        })?;
        Ok(accepted)
    }

    fn write(&self, file: &PinFile) -> Result<(), GatewayError> {
        let path = self.path(&file.server);
        let tmp = self.dir.join(format!(".{}.json.tmp-{}", file.server, std::process::id()));
        let text =
            serde_json::to_vec_pretty(file).map_err(|source| GatewayError::PinFile { path: path.clone(), source })?;
        let write = || -> std::io::Result<()> {
            let mut out: File = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
            out.write_all(&text)?;
            out.write_all(b"\n")?;
            out.sync_data()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|error| {
            let _ = fs::remove_file(&tmp);
            GatewayError::pins(&path, "write")(error)
        })
    }
}

#[cfg(test)]
mod tests;
