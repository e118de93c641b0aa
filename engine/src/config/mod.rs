//! `bridle.toml`, the per-project configuration: its schema and defaults, parsing
//! with positioned errors, semantic validation, and resolving relative paths
//! against the file's directory. It is parsed once at start; it does not read
//! secret values, watch the file, or apply any setting.

mod error;
mod locate;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, Deserializer};

pub use error::ConfigError;
pub use schema::{
    AuditConfig, ConsoleConfig, DenyResponse, DlpConfig, DnsConfig, EngineConfig, EnvConfig, HostConfig, McpSection,
    McpServer, McpTransport, Mount, PolicyConfig, ProjectConfig, ProxySection, Secret, SecretSource, TlsSection,
};

use error::Origin;
use schema::RawConfig;

/// The name `Config::discover` looks for in the current directory.
pub const FILE_NAME: &str = "bridle.toml";

/// A parsed, validated `bridle.toml` with host paths made absolute against `base_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[project]`
    pub project: ProjectConfig,
    /// `[[mounts]]`, in file order.
    pub mounts: Vec<Mount>,
    /// `[env]`
    pub env: EnvConfig,
    /// `[host]`
    pub host: HostConfig,
    /// `[policies]`
    pub policies: PolicyConfig,
    /// `[[secrets]]`, in file order, names unique.
    pub secrets: Vec<Secret>,
    /// `[dns]`
    pub dns: DnsConfig,
    /// `[console]`
    pub console: ConsoleConfig,
    /// `[proxy]`
    pub proxy: ProxySection,
    /// `[tls]`
    pub tls: TlsSection,
    /// `[audit]`
    pub audit: AuditConfig,
    /// `[engine]`
    pub engine: EngineConfig,
    /// `[dlp]`
    pub dlp: DlpConfig,
    /// `[mcp]` and `[[mcp.servers]]`
    pub mcp: McpSection,
    /// Directory holding the config file; relative host paths were joined to it.
    pub base_dir: PathBuf,
}

/// The configuration used when there is no `bridle.toml`: paths stay relative
/// to the current directory.
impl Default for Config {
    fn default() -> Self {
        Self {
            project: ProjectConfig::default(),
            mounts: Vec::new(),
            env: EnvConfig::default(),
            host: HostConfig::default(),
            policies: PolicyConfig::default(),
            secrets: Vec::new(),
            dns: DnsConfig::default(),
            console: ConsoleConfig::default(),
            audit: AuditConfig::default(),
            engine: EngineConfig::default(),
            dlp: DlpConfig::default(),
            proxy: ProxySection::default(),
            tls: TlsSection::default(),
            mcp: McpSection::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`, resolving relative paths
    /// against its (absolute) directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io_error = |source| ConfigError::Io { path: path.to_owned(), source };
        let text = std::fs::read_to_string(path).map_err(io_error)?;
        let absolute = std::path::absolute(path).map_err(io_error)?;
        let base_dir = absolute.parent().unwrap_or(Path::new("/"));
        Self::from_toml_str(&text, &path.display().to_string(), base_dir)
    }

    /// Parses and validates `text`; errors are reported against `origin_name` and
    /// relative paths are joined to `base_dir`.
    pub fn from_toml_str(text: &str, origin_name: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let origin = Origin { file: origin_name, text };
        let doc = DeTable::parse(text).map_err(|e| origin.syntax(&e))?;
        let raw =
            RawConfig::deserialize(Deserializer::from(doc.clone())).map_err(|e| origin.schema(doc.get_ref(), &e))?;
        let mut config = validate::into_config(raw).map_err(|p| origin.invalid(doc.get_ref(), p))?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// Finds the config to use: `explicit` if given (it must exist), else
    /// `./bridle.toml` if present. `Ok(None)` means run with `Config::default()`.
    pub fn discover(explicit: Option<&Path>) -> Result<Option<(PathBuf, Self)>, ConfigError> {
        match explicit {
            Some(path) if exists(path)? => Ok(Some((path.to_owned(), Self::load(path)?))),
            Some(path) => Err(ConfigError::NotFound { path: path.to_owned() }),
            None => Self::discover_in(Path::new(".")),
        }
    }

    /// Loads `dir/bridle.toml` if it exists.
    pub fn discover_in(dir: &Path) -> Result<Option<(PathBuf, Self)>, ConfigError> {
        let path = dir.join(FILE_NAME);
        if !exists(&path)? {
            return Ok(None);
        }
        let config = Self::load(&path)?;
        Ok(Some((path, config)))
    }

    /// Paths inside the workload (`workdir`, mount targets) are left alone.
    fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.project.path);
        for mount in &mut self.mounts {
            resolve(base, &mut mount.source);
        }
        let policies = &mut self.policies;
        for dir in [&mut policies.dir, &mut policies.overrides].into_iter().flatten() {
            resolve(base, dir);
        }
        resolve(base, &mut self.audit.path);
        resolve(base, &mut self.tls.ca_dir);
        if let Some(bundle) = &mut self.tls.upstream_ca_bundle {
            resolve(base, bundle);
        }
        for secret in &mut self.secrets {
            if let SecretSource::File(path) = &mut secret.source {
                resolve(base, path);
            }
        }
        base.clone_into(&mut self.base_dir);
    }
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        // Dropping `.` turns the default project path "." into `base` itself.
        let joined: PathBuf = base.join(&*path).components().filter(|c| *c != Component::CurDir).collect();
        *path = if joined.as_os_str().is_empty() { PathBuf::from(".") } else { joined };
    }
}

fn exists(path: &Path) -> Result<bool, ConfigError> {
    path.try_exists().map_err(|source| ConfigError::Io { path: path.to_owned(), source })
}
