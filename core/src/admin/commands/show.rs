//! `SHOW CONFIG`, `SHOW PLUGINS`, `SHOW VERSION`, `SHOW HELP`.

use crate::admin::output::{text, Output};
use crate::admin::parse::USAGE;
use crate::admin::AdminError;
use crate::plugins::PluginStatus;
use crate::proxy::Proxy;

/// The running config as `key | value` rows (`general.port`, `pools[0].name`, ...), every
/// password shown as `********`. Keys left at "none" (unset optional values) are absent.
pub fn config(proxy: &Proxy) -> Result<Output, AdminError> {
    let mut out = Output::table("SHOW", &["key", "value"]);
    for (key, value) in flat_config(&proxy.config().redacted())? {
        out.row(vec![Some(key), Some(value)]);
    }
    Ok(out)
}

/// `(dotted key, value)` pairs of a config, in file order.
pub(super) fn flat_config(
    config: &crate::config::Config,
) -> Result<Vec<(String, String)>, AdminError> {
    let value = toml::Value::try_from(config)
        .map_err(|e| AdminError::Reload(format!("cannot render the config: {e}")))?;
    let mut rows = Vec::new();
    flatten(&value, "", &mut rows);
    Ok(rows)
}

fn flatten(value: &toml::Value, key: &str, rows: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                flatten(v, &key, rows);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{key}[{i}]"), rows);
            }
        }
        toml::Value::String(s) => rows.push((key.to_string(), s.clone())),
        other => rows.push((key.to_string(), other.to_string())),
    }
}

pub fn plugins(proxy: &Proxy) -> Output {
    let mut out = Output::table(
        "SHOW",
        &[
            "name",
            "path",
            "plugin_name",
            "version",
            "capabilities",
            "roles",
            "status",
            "consume_errors",
        ],
    );
    for p in proxy.plugins.plugins() {
        let status = match &p.status {
            PluginStatus::Ok => "ok".to_string(),
            PluginStatus::Failed(why) => format!("failed: {why}"),
            PluginStatus::NotAnswering(why) => format!("not answering: {why}"),
        };
        out.row(vec![
            text(&p.name),
            text(p.path.display()),
            text(&p.plugin_name),
            text(&p.version),
            text(p.capabilities.join(",")),
            text(p.roles.join(",")),
            text(status),
            text(p.consume_errors),
        ]);
    }
    out
}

pub fn version() -> Output {
    Output::lines(
        "SHOW",
        "version",
        [format!(
            "pgdog {} (plugin API {})",
            env!("CARGO_PKG_VERSION"),
            crate::plugins::API_VERSION
        )],
    )
}

pub fn help() -> Output {
    Output::lines("SHOW", "command", USAGE.iter().map(|u| u.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn flat_config_redacts_and_numbers_pools() {
        let config = Config::parse(
            r#"
            [general]
            admin_password = "topsecret"
            [[pools]]
            name = "primary"
            password = "hunter2"
            mirror_of = "mirror"
            [[pools]]
            name = "mirror"
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let rows = flat_config(&config.redacted()).unwrap();
        let get = |k: &str| {
            rows.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("general.admin_password"), Some("********"));
        assert_eq!(get("pools[0].password"), Some("********"));
        assert_eq!(get("pools[0].name"), Some("primary"));
        assert_eq!(get("pools[1].name"), Some("mirror"));
        assert_eq!(get("general.port"), Some("6432"));
        assert!(rows
            .iter()
            .all(|(_, v)| !v.contains("topsecret") && !v.contains("hunter2")));
    }
}
