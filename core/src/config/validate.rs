//! Checks that types cannot express: unique names, mirror targets, value ranges.

use super::locate::line_of_key;
use super::{Config, Problem};
use std::collections::HashSet;

pub fn check(config: &Config, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_general(config, text, &mut problems);
    check_pools(config, text, &mut problems);
    check_plugins(config, text, &mut problems);
    check_users(config, text, &mut problems);
    problems
}

fn check_users(config: &Config, text: &str, problems: &mut Vec<Problem>) {
    let mut names = HashSet::new();
    for (i, user) in config.users.iter().enumerate() {
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                line: line_of_key(text, "users", Some(i), key)
                    .or_else(|| line_of_key(text, "users", Some(i), "")),
                key: format!("users[{i}].{key}"),
                message,
            })
        };
        if user.name.is_empty() {
            problem("name", "expected a non-empty role name".into());
        }
        if !names.insert(user.name.as_str()) {
            problem("name", format!("duplicate user \"{}\"", user.name));
        }
        let verifier = crate::auth::scram::ScramSecret::looks_like_verifier(&user.password);
        if user.password.is_empty() {
            problem("password", "expected a password or a SCRAM verifier".into());
        } else if verifier
            && crate::auth::scram::ScramSecret::from_verifier(&user.password).is_none()
        {
            problem(
                "password",
                "not a valid SCRAM verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".into(),
            );
        } else if verifier && config.general.auth_type != super::AuthType::ScramSha256 {
            problem(
                "password",
                format!(
                    "a SCRAM verifier needs auth_type = \"scram-sha-256\" (clients must prove it), not \"{}\"",
                    config.general.auth_type.as_str()
                ),
            );
        }
        for pool in &user.pools {
            if config.pool(pool).is_none() {
                problem("pools", format!("no pool named \"{pool}\""));
            }
        }
    }
}

/// A problem with `[general] key`.
fn general(text: &str, key: &str, message: String) -> Problem {
    Problem {
        line: line_of_key(text, "general", None, key),
        key: format!("general.{key}"),
        message,
    }
}

fn check_general(config: &Config, text: &str, problems: &mut Vec<Problem>) {
    let g = &config.general;
    let mut problem = |key: &str, message: String| problems.push(general(text, key, message));
    if g.auth_user.is_some() && g.auth_type != super::AuthType::ScramSha256 {
        problem(
            "auth_user",
            format!(
                "auth_query logs roles in to the server with the SCRAM keys they prove: it needs auth_type = \"scram-sha-256\", not \"{}\"",
                g.auth_type.as_str()
            ),
        );
    }
    for (key, value) in [
        ("mirror_max_error_rate", g.mirror_max_error_rate),
        ("mirror_max_drop_rate", g.mirror_max_drop_rate),
        ("mirror_max_mismatch_rate", g.mirror_max_mismatch_rate),
        ("mirror_max_unseen", g.mirror_max_unseen),
    ] {
        if !(0.0..=1.0).contains(&value) {
            problem(
                key,
                format!("expected a fraction between 0 and 1, got {value}"),
            );
        }
    }
    if !(g.mirror_max_latency_ratio >= 0.0 && g.mirror_max_latency_ratio.is_finite()) {
        problem(
            "mirror_max_latency_ratio",
            format!(
                "expected a ratio >= 0 (0 turns the check off), got {}",
                g.mirror_max_latency_ratio
            ),
        );
    }
    if !(g.mirror_min_confidence > 0.0 && g.mirror_min_confidence < 1.0) {
        problem(
            "mirror_min_confidence",
            format!(
                "expected a probability strictly between 0 and 1 (e.g. 0.95), got {}",
                g.mirror_min_confidence
            ),
        );
    }
    if g.metrics_password.as_deref() == Some("") {
        problem(
            "metrics_password",
            "expected a non-empty password (leave the key out for none)".into(),
        );
    }
    if !(g.mirror_min_runtime_hours >= 0.0 && g.mirror_min_runtime_hours.is_finite()) {
        problem(
            "mirror_min_runtime_hours",
            format!(
                "expected a number of hours >= 0, got {}",
                g.mirror_min_runtime_hours
            ),
        );
    }
    for (key, value) in [
        ("pool_size", g.pool_size),
        ("mirror_queue", g.mirror_queue),
        ("max_client_conn", g.max_client_conn),
    ] {
        if value == 0 {
            problem(key, "expected a positive number, got 0".into());
        }
    }
    for (key, hosts) in [
        ("host", Some(&g.host)),
        ("metrics_host", g.metrics_host.as_ref()),
    ] {
        if hosts
            .is_some_and(|h| h.as_slice().is_empty() || h.as_slice().iter().any(String::is_empty))
        {
            problem(
                key,
                "expected an address or a non-empty array of addresses (\"*\" for all)".into(),
            );
        }
    }
    if g.max_message_size < 1024 {
        problem(
            "max_message_size",
            format!("expected at least 1024 bytes, got {}", g.max_message_size),
        );
    }
    if g.port == g.admin_port || (g.port == g.metrics_port && g.metrics_port != 0) {
        problem(
            "port",
            "port, admin_port and metrics_port must differ".into(),
        );
    }
    if g.admin_port == g.metrics_port && g.admin_port != 0 {
        problem(
            "admin_port",
            "port, admin_port and metrics_port must differ".into(),
        );
    }
    check_client_tls(g, &mut problem);
    if let Some((key, message)) = pair(
        ("server_tls_cert_file", &g.server_tls_cert_file),
        ("server_tls_key_file", &g.server_tls_key_file),
    ) {
        problem(key, message);
    }
    otlp(g, &|key, message| general(text, key, message), problems);
}

fn check_client_tls(g: &super::General, problem: &mut impl FnMut(&str, String)) {
    let mode = g.client_tls_mode();
    if let Some((key, message)) = pair(
        ("client_tls_cert_file", &g.client_tls_cert_file),
        ("client_tls_key_file", &g.client_tls_key_file),
    ) {
        problem(key, message);
    } else if mode != super::ClientTlsMode::Disable && g.client_tls_cert_file.is_none() {
        problem(
            "client_tls_sslmode",
            format!(
                "client_tls_sslmode = \"{}\" needs client_tls_cert_file and client_tls_key_file",
                mode.as_str()
            ),
        );
    }
    if mode.requires_client_certificate() && g.client_tls_ca_file.is_none() {
        problem(
            "client_tls_ca_file",
            format!(
                "client_tls_sslmode = \"{}\" checks client certificates: set client_tls_ca_file",
                mode.as_str()
            ),
        );
    }
}

/// A certificate file set without its key file, or the other way round: the key to name
/// and the problem.
fn pair<'a>(
    cert: (&'a str, &Option<std::path::PathBuf>),
    key: (&'a str, &Option<std::path::PathBuf>),
) -> Option<(&'a str, String)> {
    match (cert.1, key.1) {
        (Some(_), None) => Some((key.0, format!("{} is set: set {} too", cert.0, key.0))),
        (None, Some(_)) => Some((cert.0, format!("{} is set: set {} too", key.0, cert.0))),
        _ => None,
    }
}

fn check_pools(config: &Config, text: &str, problems: &mut Vec<Problem>) {
    let mut names = HashSet::new();
    for (i, pool) in config.pools.iter().enumerate() {
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                line: line_of_key(text, "pools", Some(i), key)
                    .or_else(|| line_of_key(text, "pools", Some(i), "")),
                key: format!("pools[{i}].{key}"),
                message,
            })
        };
        if pool.name.is_empty() {
            problem("name", "expected a non-empty pool name".into());
        }
        if !names.insert(pool.name.as_str()) {
            problem(
                "name",
                format!(
                    "duplicate pool name \"{}\": pool names must be unique",
                    pool.name
                ),
            );
        }
        if let Some(target) = &pool.mirror_of {
            if target == &pool.name {
                problem(
                    "mirror_of",
                    format!("pool \"{}\" cannot mirror to itself", pool.name),
                );
            } else if config.pool(target).is_none() {
                let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
                problem(
                    "mirror_of",
                    format!(
                        "no pool named \"{target}\"; expected one of: {}",
                        known.join(", ")
                    ),
                );
            }
        }
        if !(0.0..=1.0).contains(&pool.mirror_exposure) {
            problem(
                "mirror_exposure",
                format!(
                    "expected a fraction between 0.0 and 1.0, got {}",
                    pool.mirror_exposure
                ),
            );
        }
        if pool.mirror_queue == Some(0) {
            problem("mirror_queue", "expected a positive number, got 0".into());
        }
        if pool.pool_size == Some(0) {
            problem("pool_size", "expected a positive number, got 0".into());
        }
        if let Some((key, message)) = pair(
            ("server_tls_cert_file", &pool.server_tls_cert_file),
            ("server_tls_key_file", &pool.server_tls_key_file),
        ) {
            problem(key, message);
        }
        super::replication::check_pool(pool, &mut problem);
    }
}

fn check_plugins(config: &Config, text: &str, problems: &mut Vec<Problem>) {
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
    if let Some(name) = &config.general.readiness_plugin {
        if !config.plugins.is_empty() && !plugin_names.contains(name.as_str()) {
            problems.push(general(
                text,
                "readiness_plugin",
                format!("no [[plugins]] entry named \"{name}\""),
            ));
        }
    }
    check_readiness_plugins(config, text, &plugin_names, problems);
}

/// `readiness_plugins`: known names, each once, and not beside `readiness_plugin`.
fn check_readiness_plugins(
    config: &Config,
    text: &str,
    plugin_names: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let g = &config.general;
    if g.readiness_plugins.is_empty() {
        return;
    }
    let mut problem = |message: String| problems.push(general(text, "readiness_plugins", message));
    if g.readiness_plugin.is_some() {
        problem("set readiness_plugin or readiness_plugins, not both".into());
    }
    let bundled = super::BUNDLED_STATS_PLUGIN;
    let mut seen = HashSet::new();
    for name in &g.readiness_plugins {
        if !seen.insert(name.as_str()) {
            problem(format!("\"{name}\" is listed twice"));
        } else if name != bundled && !plugin_names.contains(name.as_str()) {
            problem(format!(
                "no [[plugins]] entry named \"{name}\" (the bundled stats plugin is \"{bundled}\")"
            ));
        }
    }
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
