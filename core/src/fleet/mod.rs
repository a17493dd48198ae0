//! `pgdog readiness --prometheus URL`: readiness for a fleet of proxies.
//!
//! When a migration outgrows one proxy, several pgdog processes serve the same databases
//! behind a load balancer, and none has seen the whole traffic. Prometheus (or Thanos,
//! Mimir) already holds their counters; this command reads the fleet-wide sums per
//! database ([`inputs`]), hands them to the same readiness policy a proxy runs (the
//! plugins and criteria of `--config`), and prints the same report, so that a deploy can
//! be gated on it: exit 0 when READY, 1 when not, 2 when it cannot judge.
//!
//! ```text
//! Prometheus /api/v1/query (sums by database) --> StatsSnapshot --> readiness plugin
//!     --> ReadinessReport::to_text_rows + what Prometheus cannot tell
//! ```

pub mod inputs;
pub mod prometheus;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::plugins::{criteria_of, PluginError, PluginHost, ReadinessReport};
use inputs::{InputsError, NOT_FROM_PROMETHEUS};
use prometheus::{Endpoint, PrometheusError};

/// The command's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub prometheus: String,
    pub database: Option<String>,
    pub config: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugins(#[from] PluginError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(transparent)]
    Inputs(#[from] InputsError),
}

/// The verdict and the rows to print.
#[derive(Debug)]
pub struct FleetReport {
    pub report: ReadinessReport,
    pub rows: Vec<String>,
}

impl FleetReport {
    pub fn ready(&self) -> bool {
        self.report.overall.ready
    }
}

/// Judges the fleet: reads `--config` (criteria and plugins), the sums from Prometheus,
/// and asks the readiness policy of record.
pub async fn judge(args: &Args) -> Result<FleetReport, FleetError> {
    let config = Config::load(&args.config)?;
    let prometheus = Endpoint::parse(&args.prometheus)?;
    let criteria = criteria_of(&config.general);
    let bound_us = config.general.mirror_max_latency_ms * 1000;
    let now = pgdog_plugin_api::stats::now_unix_us();
    let fleet = inputs::read(&prometheus, args.database.as_deref(), bound_us, now).await?;
    let plugins = load_plugins(&config, &args.config).await?;
    let snapshot = Arc::new(fleet.snapshot);
    let report = plugins.assess_snapshot(snapshot, &criteria).await?;
    plugins.shutdown().await;
    let report = match &args.database {
        // One database: its verdict is the overall one.
        Some(name) => match report
            .databases
            .iter()
            .find(|d| d.database.as_str() == name)
        {
            Some(db) => ReadinessReport {
                overall: db.clone(),
                databases: Default::default(),
                ..report
            },
            None => report,
        },
        None => report,
    };
    let mut rows = Vec::new();
    if let Some(name) = &args.database {
        rows.push(format!("Database: {name}"));
    }
    rows.extend(report.to_text_rows());
    let proxies: Vec<String> = fleet
        .proxies
        .iter()
        .map(|(db, n)| format!("{db} {n}"))
        .collect();
    rows.push(format!(
        "Source: Prometheus {}, fleet-wide sums; proxies reporting each database: {}",
        prometheus.shown(),
        if proxies.is_empty() {
            "(none)".to_string()
        } else {
            proxies.join(", ")
        }
    ));
    rows.push(format!("Not from Prometheus: {NOT_FROM_PROMETHEUS}"));
    rows.push(
        "Coverage from Prometheus sums each proxy's statements seen once: it can overstate, never understate, what the fleet has not seen"
            .to_string(),
    );
    Ok(FleetReport { report, rows })
}

/// The plugins of `config` (the bundled stats plugin when it names none), loaded off the
/// runtime's workers.
async fn load_plugins(config: &Config, path: &Path) -> Result<PluginHost, PluginError> {
    let config = config.clone();
    let dir = Config::dir_of(path);
    tokio::task::spawn_blocking(move || PluginHost::load_from_config(&config, &dir))
        .await
        .unwrap_or_else(|e| {
            Err(PluginError::Open {
                name: "(loader)".into(),
                path: PathBuf::new(),
                cause: e.to_string(),
            })
        })
}

/// Parses `readiness --prometheus URL [--database NAME] [--config FILE]` (the words after
/// `readiness`).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut prometheus = None;
    let mut database = None;
    let mut config = PathBuf::from("pgdog.toml");
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--prometheus" => prometheus = Some(value("--prometheus")?),
            "--database" => database = Some(value("--database")?),
            "-c" | "--config" => config = value("--config")?.into(),
            other => return Err(format!("readiness: unknown argument {other}")),
        }
    }
    Ok(Args {
        prometheus: prometheus.ok_or("readiness: --prometheus URL is required")?,
        database,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        assert_eq!(
            args(&[
                "--prometheus",
                "http://p:9090",
                "--database=app",
                "--config",
                "x.toml"
            ]),
            Ok(Args {
                prometheus: "http://p:9090".into(),
                database: Some("app".into()),
                config: "x.toml".into(),
            })
        );
        assert_eq!(
            args(&["--prometheus=http://p"]).unwrap().config,
            PathBuf::from("pgdog.toml")
        );
        assert!(args(&[])
            .unwrap_err()
            .contains("--prometheus URL is required"));
        assert!(args(&["--database"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--nope"])
            .unwrap_err()
            .contains("unknown argument --nope"));
    }
}
