//! Configuration: parse the TOML file, then check it.
//!
//! Parsing (serde, `deny_unknown_fields`) catches unknown keys and wrong types; [`validate`]
//! then checks what types cannot express (unique names, `mirror_of` targets, ranges). Every
//! problem found is reported at once, with file, line and key.

mod error;
mod general;
mod hosts;
mod locate;
mod plugin;
mod pool;
mod replication;
mod tls;
mod users;
mod validate;

pub use error::{ConfigError, Problem};
pub use general::{AuthType, General, LogFormat};
pub use hosts::Hosts;
pub use plugin::{PluginConfig, BUNDLED_STATS_PLUGIN};
pub use pool::PoolConfig;
pub use replication::{MirrorStatements, MirrorSync, SYNC_INTERVAL_MS};
pub use tls::{ClientTlsMode, ServerTlsMode, ServerTlsSettings};
pub use users::{PoolMode, UserConfig};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.resolve_paths(&Config::dir_of(path));
        Ok(config)
    }

    /// Makes the relative file and directory paths relative to `dir` (the config file's).
    fn resolve_paths(&mut self, dir: &Path) {
        let g = &mut self.general;
        let files = [
            &mut g.unix_socket_dir,
            &mut g.plugin_dir,
            &mut g.client_tls_cert_file,
            &mut g.client_tls_key_file,
            &mut g.client_tls_ca_file,
            &mut g.server_tls_ca_file,
            &mut g.server_tls_cert_file,
            &mut g.server_tls_key_file,
        ];
        let pools = self.pools.iter_mut().flat_map(|p| {
            [
                &mut p.server_tls_ca_file,
                &mut p.server_tls_cert_file,
                &mut p.server_tls_key_file,
            ]
        });
        for file in files.into_iter().chain(pools).flatten() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
    }

    /// Parses and validates `text`; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_path_buf(),
            problems,
        };
        let config: Config =
            toml::from_str(text).map_err(|e| invalid(vec![parse_problem(text, &e)]))?;
        let problems = validate::check(&config, text);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The directory relative plugin paths resolve against.
    pub fn dir_of(path: &Path) -> PathBuf {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// A copy with every secret replaced by `********`, for display.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        if copy.general.admin_password.is_some() {
            copy.general.admin_password = Some(REDACTED.into());
        }
        if copy.general.metrics_password.is_some() {
            copy.general.metrics_password = Some(REDACTED.into());
        }
        // Header values are usually API keys.
        for value in copy.general.otlp_headers.values_mut() {
            *value = REDACTED.into();
        }
        for pool in &mut copy.pools {
            if pool.password.is_some() {
                pool.password = Some(REDACTED.into());
            }
        }
        for user in &mut copy.users {
            user.password = REDACTED.into();
        }
        if copy.general.auth_password.is_some() {
            copy.general.auth_password = Some(REDACTED.into());
        }
        copy
    }
}

pub const REDACTED: &str = "********";

/// Turns a serde/TOML error into a problem with a line number and the key it concerns.
fn parse_problem(text: &str, err: &toml::de::Error) -> Problem {
    let line = err.span().map(|s| locate::line_of_offset(text, s.start));
    let key = err
        .span()
        .and_then(|s| locate::key_at(text, s.start))
        .unwrap_or_else(|| "(document)".into());
    Problem {
        line,
        key,
        message: err.message().trim().to_string(),
    }
}

#[cfg(test)]
mod tests;
