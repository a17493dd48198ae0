//! `RELOAD`: re-read `pgdog.toml`, refuse it if invalid (the running config stays), else
//! apply what can change while running and say, row by row, what changed.
//!
//! Live: pools added, replaced (address, credentials, size, timeouts: new clients get the
//! new pool, connected ones keep theirs) or removed; mirror exposure (at once, also for
//! running sessions) and queue length (new sessions); mirror targets added, changed or
//! removed (new sessions); readiness criteria; client `auth_type`, the admin credentials,
//! `max_message_size` (new logins). Needs a restart: listen addresses and ports,
//! `max_client_conn`, `[[plugins]]`, `readiness_plugin`, `mirror_metrics_enabled`,
//! `mirror_stats_window_secs` (reported as such). A plugin disabled by a panic is
//! re-created, with fresh state, from its library and config.

use super::show::flat_config;
use crate::admin::output::Output;
use crate::admin::AdminError;
use crate::backend::PoolChange;
use crate::config::Config;
use crate::mirror::{CompareSettings, MirrorTarget};
use crate::proxy::{MirrorMap, Proxy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `[general]` keys read only at start-up.
const RESTART_KEYS: &[&str] = &[
    "host",
    "port",
    "admin_port",
    "metrics_port",
    "metrics_host",
    "max_client_conn",
    "readiness_plugin",
    "mirror_metrics_enabled",
    "mirror_stats_window_secs",
    "otlp_endpoint",
    "otlp_protocol",
    "otlp_interval_ms",
];

pub fn reload(proxy: &Proxy) -> Result<Output, AdminError> {
    let new = Config::load(&proxy.config_path).map_err(|e| AdminError::Reload(e.to_string()))?;
    let old = proxy.config();
    let mut changes = general_changes(&old, &new)?;
    if old.plugins != new.plugins {
        changes.push("[[plugins]] changed: takes effect after a restart".into());
    }
    for change in proxy.pools.reload(&new) {
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
    let (mirrors, mirror_changes) = mirror_targets(proxy, &new);
    changes.extend(mirror_changes);
    proxy.set_mirrors(mirrors);
    proxy.set_config(Arc::new(new));
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

/// The mirror targets of `new`: unchanged targets are kept (exposure and queue length
/// updated in place), changed ones rebuilt.
fn mirror_targets(proxy: &Proxy, new: &Config) -> (MirrorMap, Vec<String>) {
    let old = proxy.mirrors();
    let mut targets = MirrorMap::new();
    let mut changes = Vec::new();
    let timeout = Duration::from_millis(new.general.mirror_timeout_ms);
    for p in &new.pools {
        let Some(to) = p.mirror_of.as_deref() else {
            continue;
        };
        // Validation guarantees the target pool exists.
        let Some(pool) = proxy.pools.get(to) else {
            continue;
        };
        let queue = p.mirror_queue.unwrap_or(new.general.mirror_queue);
        let compare = CompareSettings::of(new, p);
        match old.get(&p.name) {
            Some(t)
                if t.pool.ptr_eq(&pool)
                    && t.timeout == timeout
                    && t.compare_settings() == compare =>
            {
                if t.exposure() != p.mirror_exposure {
                    changes.push(format!(
                        "pool \"{}\": mirror_exposure {} -> {} (applied)",
                        p.name,
                        t.exposure(),
                        p.mirror_exposure
                    ));
                    t.set_exposure(p.mirror_exposure);
                }
                if t.queue() != queue {
                    changes.push(format!(
                        "pool \"{}\": mirror_queue {} -> {} (new sessions)",
                        p.name,
                        t.queue(),
                        queue
                    ));
                    t.set_queue(queue);
                }
                targets.insert(p.name.clone(), t.clone());
            }
            previous => {
                changes.push(match previous {
                    Some(_) => format!(
                        "pool \"{}\": mirror to \"{to}\" rebuilt (target pool, mirror_timeout_ms or comparison changed; new sessions)",
                        p.name
                    ),
                    None => format!("pool \"{}\": now mirrored to \"{to}\" (new sessions)", p.name),
                });
                targets.insert(
                    p.name.clone(),
                    Arc::new(MirrorTarget::new(
                        &p.name,
                        pool,
                        p.mirror_exposure,
                        queue,
                        timeout,
                        compare,
                    )),
                );
            }
        }
    }
    let mut stopped: Vec<&String> = old.keys().filter(|k| !targets.contains_key(*k)).collect();
    stopped.sort();
    for name in stopped {
        changes.push(format!("pool \"{name}\": mirroring stopped (new sessions)"));
    }
    (targets, changes)
}
