//! `[[plugins]]`: shared libraries loaded at start-up.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The name the bundled stats plugin goes by when no `[[plugins]]` entry provides
/// statistics (for `readiness_plugins`, `SHOW PLUGINS`).
pub const BUNDLED_STATS_PLUGIN: &str = "mirror-stats";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name the plugin is referred to by (`readiness_plugin`, `SHOW PLUGINS`). Required, unique.
    pub name: String,
    /// Path of the `.so`; relative paths resolve against the config file's directory, then the binary's.
    pub path: PathBuf,
    /// Table handed to the plugin's constructor. Default: empty.
    #[serde(default)]
    pub config: Option<toml::Table>,
}
