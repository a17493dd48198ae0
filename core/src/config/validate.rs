//! Checks that types cannot express: unique names, mirror targets, value ranges.

use super::locate::line_of_key;
use super::{Config, Problem};
use std::collections::HashSet;

pub fn check(config: &Config, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let general = |key: &str, message: String| Problem {
        line: line_of_key(text, "general", None, key),
        key: format!("general.{key}"),
        message,
    };
    let g = &config.general;
    if !(0.0..=1.0).contains(&g.mirror_max_error_rate) {
        problems.push(general(
            "mirror_max_error_rate",
            format!(
                "expected a fraction between 0 and 1, got {}",
                g.mirror_max_error_rate
            ),
        ));
    }
    if !(0.0..=1.0).contains(&g.mirror_max_drop_rate) {
        problems.push(general(
            "mirror_max_drop_rate",
            format!(
                "expected a fraction between 0 and 1, got {}",
                g.mirror_max_drop_rate
            ),
        ));
    }
    if !(0.0..=1.0).contains(&g.mirror_max_mismatch_rate) {
        problems.push(general(
            "mirror_max_mismatch_rate",
            format!(
                "expected a fraction between 0 and 1, got {}",
                g.mirror_max_mismatch_rate
            ),
        ));
    }
    if !(g.mirror_max_latency_ratio >= 0.0 && g.mirror_max_latency_ratio.is_finite()) {
        problems.push(general(
            "mirror_max_latency_ratio",
            format!(
                "expected a ratio >= 0 (0 turns the check off), got {}",
                g.mirror_max_latency_ratio
            ),
        ));
    }
    if !(g.mirror_min_runtime_hours >= 0.0 && g.mirror_min_runtime_hours.is_finite()) {
        problems.push(general(
            "mirror_min_runtime_hours",
            format!(
                "expected a number of hours >= 0, got {}",
                g.mirror_min_runtime_hours
            ),
        ));
    }
    for (key, value) in [
        ("pool_size", g.pool_size),
        ("mirror_queue", g.mirror_queue),
        ("max_client_conn", g.max_client_conn),
    ] {
        if value == 0 {
            problems.push(general(key, "expected a positive number, got 0".into()));
        }
    }
    if g.max_message_size < 1024 {
        problems.push(general(
            "max_message_size",
            format!("expected at least 1024 bytes, got {}", g.max_message_size),
        ));
    }
    if g.port == g.admin_port || (g.port == g.metrics_port && g.metrics_port != 0) {
        problems.push(general(
            "port",
            "port, admin_port and metrics_port must differ".into(),
        ));
    }
    if g.admin_port == g.metrics_port && g.admin_port != 0 {
        problems.push(general(
            "admin_port",
            "port, admin_port and metrics_port must differ".into(),
        ));
    }

    otlp(g, &general, &mut problems);

    let mut names = HashSet::new();
    for (i, pool) in config.pools.iter().enumerate() {
        let at = |key: &str, message: String| Problem {
            line: line_of_key(text, "pools", Some(i), key)
                .or_else(|| line_of_key(text, "pools", Some(i), "")),
            key: format!("pools[{i}].{key}"),
            message,
        };
        if pool.name.is_empty() {
            problems.push(at("name", "expected a non-empty pool name".into()));
        }
        if !names.insert(pool.name.as_str()) {
            problems.push(at(
                "name",
                format!(
                    "duplicate pool name \"{}\": pool names must be unique",
                    pool.name
                ),
            ));
        }
        if let Some(target) = &pool.mirror_of {
            if target == &pool.name {
                problems.push(at(
                    "mirror_of",
                    format!("pool \"{}\" cannot mirror to itself", pool.name),
                ));
            } else if config.pool(target).is_none() {
                let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
                problems.push(at(
                    "mirror_of",
                    format!(
                        "no pool named \"{target}\"; expected one of: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if !(0.0..=1.0).contains(&pool.mirror_exposure) {
            problems.push(at(
                "mirror_exposure",
                format!(
                    "expected a fraction between 0.0 and 1.0, got {}",
                    pool.mirror_exposure
                ),
            ));
        }
        if pool.mirror_queue == Some(0) {
            problems.push(at(
                "mirror_queue",
                "expected a positive number, got 0".into(),
            ));
        }
        if pool.pool_size == Some(0) {
            problems.push(at("pool_size", "expected a positive number, got 0".into()));
        }
    }

    let mut plugin_names = HashSet::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        if !plugin_names.insert(plugin.name.as_str()) {
            problems.push(Problem {
                line: line_of_key(text, "plugins", Some(i), "name"),
                key: format!("plugins[{i}].name"),
                message: format!("duplicate plugin name \"{}\"", plugin.name),
            });
        }
    }
    if let Some(name) = &g.readiness_plugin {
        if !config.plugins.is_empty() && !plugin_names.contains(name.as_str()) {
            problems.push(general(
                "readiness_plugin",
                format!("no [[plugins]] entry named \"{name}\""),
            ));
        }
    }
    problems
}

/// `otlp_*`: an `http://` endpoint, a protocol this build speaks, a sane interval,
/// headers that are valid HTTP.
fn otlp(
    g: &super::General,
    general: &dyn Fn(&str, String) -> Problem,
    problems: &mut Vec<Problem>,
) {
    if let Some(endpoint) = &g.otlp_endpoint {
        let ok = endpoint
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if endpoint.starts_with("https://") {
            problems.push(general(
                "otlp_endpoint",
                format!(
                    "{endpoint:?}: https is not supported yet (this build has no TLS client); \
                     push to a collector or agent over http://, e.g. one on the same host"
                ),
            ));
        } else if !ok {
            problems.push(general(
                "otlp_endpoint",
                format!(
                    "expected an http:// URL such as \"http://collector:4318\", got {endpoint:?}"
                ),
            ));
        }
    }
    if g.otlp_protocol != "http/protobuf" {
        let hint = if g.otlp_protocol == "grpc" {
            " (grpc is not built in; collectors accept http/protobuf on port 4318)"
        } else {
            ""
        };
        problems.push(general(
            "otlp_protocol",
            format!(
                "expected \"http/protobuf\", got {:?}{hint}",
                g.otlp_protocol
            ),
        ));
    }
    if !(100..=3_600_000).contains(&g.otlp_interval_ms) {
        problems.push(general(
            "otlp_interval_ms",
            format!(
                "expected 100 to 3600000 (milliseconds), got {}",
                g.otlp_interval_ms
            ),
        ));
    }
    for (name, value) in &g.otlp_headers {
        let name_ok = hyper::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let value_ok = hyper::header::HeaderValue::from_str(value).is_ok();
        if !name_ok || !value_ok {
            problems.push(general(
                "otlp_headers",
                format!("{name:?} is not a valid HTTP header name and value"),
            ));
        }
    }
}
