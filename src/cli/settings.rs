//! `--policies DIR` / `--config FILE`, shared by every command that decides.
//!
//! Precedence: `--policies`, then the config's `[policies] dir` (from
//! `--config`, else `./bridle.toml` when present), then the built-in default set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bridle_engine::config::Config;
use bridle_engine::policy::{BUILTIN_DEFAULT, LoadedPolicies, load_or_default};

/// The options every deciding command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DecideArgs {
    /// Policy directory (every .cedar file below it). Default: the config's
    /// [policies] dir, else the built-in default set.
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Project config. Default: ./bridle.toml if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl DecideArgs {
    /// The project config, if any (a broken one is an error, never ignored).
    pub fn config(&self) -> anyhow::Result<Option<Config>> {
        Ok(self.config_at()?.map(|(_, config)| config))
    }

    /// [`DecideArgs::config`] with the file it was read from (`--config`,
    /// else `./bridle.toml`).
    pub fn config_at(&self) -> anyhow::Result<Option<(PathBuf, Config)>> {
        Ok(Config::discover(self.config.as_deref())?)
    }

    /// The policy directory chosen, or `None` for the built-in default set.
    pub fn policy_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        if let Some(dir) = &self.policies {
            return Ok(Some(dir.clone()));
        }
        Ok(self.config()?.and_then(|config| config.policies.dir))
    }

    /// Loads the chosen policy set.
    pub fn load(&self) -> anyhow::Result<LoadedPolicies> {
        let dir = self.policy_dir()?;
        load_policies(dir.as_deref())
    }
}

/// Loads `dir`, or the built-in default set for `None`.
pub fn load_policies(dir: Option<&Path>) -> anyhow::Result<LoadedPolicies> {
    let name = dir.map_or_else(|| BUILTIN_DEFAULT.to_string(), |d| d.display().to_string());
    load_or_default(dir).with_context(|| format!("policy set {name} is invalid"))
}
