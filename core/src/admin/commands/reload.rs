//! `RELOAD`: re-read `pgdog.toml`, refuse it if invalid (the running config stays), else
//! apply what can change while running and say, row by row, what changed.
//!
//! Live: pools added, replaced (address, credentials, size, timeouts: new clients get the
//! new pool, connected ones keep theirs) or removed; mirror exposure (at once, also for
//! running sessions) and queue length (new sessions); mirror targets added, changed or
//! removed (new sessions); readiness criteria; client `auth_type`, the admin credentials,
//! `max_message_size` (new logins). Needs a restart: listen addresses and ports,
//! `unix_socket_dir`, `plugin_dir`, `log_format`, `max_client_conn`, `[[plugins]]`,
//! `readiness_plugin(s)`, `mirror_metrics_enabled`, `mirror_stats_window_secs` (reported as
//! such). SIGHUP runs the same reload. A plugin disabled by a panic is
//! re-created, with fresh state, from its library and config.

use super::show::flat_config;
use crate::admin::output::Output;
use crate::admin::AdminError;
use crate::backend::PoolChange;
use crate::config::Config;
use crate::proxy::Proxy;
use std::collections::BTreeMap;

/// `[general]` keys read only at start-up.
const RESTART_KEYS: &[&str] = &[
    "host",
    "port",
    "admin_port",
    "metrics_port",
    "metrics_host",
    "unix_socket_dir",
    "plugin_dir",
    "log_format",
    "max_client_conn",
    "readiness_plugin",
    "readiness_plugins",
    "mirror_metrics_enabled",
    "mirror_stats_window_secs",
    "otlp_endpoint",
    "otlp_protocol",
    "otlp_interval_ms",
];

/// Re-reads and applies the configuration file; the rows say what changed (also logged).
pub fn reload(proxy: &Proxy) -> Result<Output, AdminError> {
    let new = Config::load(&proxy.config_path).map_err(|e| AdminError::Reload(e.to_string()))?;
    let old = proxy.config();
    let mut changes = general_changes(&old, &new)?;
    if old.plugins != new.plugins {
        changes.push("[[plugins]] changed: takes effect after a restart".into());
    }
    let applied = proxy
        .runtime
        .reload(new)
        .map_err(|e| AdminError::Reload(e.to_string()))?;
    for change in applied.pools {
        changes.push(match change {
            PoolChange::Added(name) => format!("pool \"{name}\" added"),
            PoolChange::Replaced(name) => format!(
                "pool \"{name}\" changed: new clients use the new settings, connected clients keep theirs"
            ),
            PoolChange::Removed(name) => format!(
                "pool \"{name}\" removed: new clients are refused, connected clients keep their session"
            ),
        });
    }
    changes.extend(applied.mirrors);
    for name in proxy.plugins.revive_failed_in_background() {
        changes.push(format!(
            "plugin \"{name}\" had failed: being re-created with fresh state (SHOW PLUGINS)"
        ));
    }
    if changes.is_empty() {
        changes.push("no changes".into());
    }
    tracing::info!("configuration reloaded: {}", changes.join("; "));
    Ok(Output::lines("RELOAD", "change", changes))
}

/// Changed `[general]` values (passwords redacted), each marked live or restart-only.
fn general_changes(old: &Config, new: &Config) -> Result<Vec<String>, AdminError> {
    let general = |c: &Config| -> Result<BTreeMap<String, String>, AdminError> {
        Ok(flat_config(&c.redacted())?
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("general.")?.to_string(), v)))
            .collect())
    };
    let (before, after) = (general(old)?, general(new)?);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = "(unset)".to_string();
    let mut changes = Vec::new();
    for key in keys {
        let (a, b) = (
            before.get(key).unwrap_or(&none),
            after.get(key).unwrap_or(&none),
        );
        if a == b
            && !(key == "admin_password"
                && old.general.admin_password != new.general.admin_password)
        {
            continue;
        }
        let when = if RESTART_KEYS.contains(&key.as_str()) || key.starts_with("otlp_headers.") {
            "takes effect after a restart"
        } else {
            "applied"
        };
        changes.push(format!("general.{key}: {a} -> {b} ({when})"));
    }
    Ok(changes)
}
