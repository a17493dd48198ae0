//! Which loaded plugin does what: the **stats** plugin (the first that produces
//! snapshots) and the **readiness** policies, `[general] readiness_plugins` (or
//! `readiness_plugin`), the first of which gives the verdict of record; the others are
//! shadow policies that judge the same statistics beside it, so that a team can trial a
//! policy before trusting it. Without either key, the stats plugin judges (or the first
//! plugin that can).

use std::sync::Arc;

use super::instance::LoadedPlugin;
use super::{Capabilities, PluginError, ReadinessReport};

/// The readiness policies by index into the loaded plugins, verdict of record first.
pub fn readiness(
    plugins: &[Arc<LoadedPlugin>],
    stats: Option<usize>,
    names: &[String],
) -> Result<Vec<usize>, PluginError> {
    let can_judge = |i: usize| plugins[i].capabilities.contains(Capabilities::READINESS);
    if names.is_empty() {
        let default = stats
            .filter(|&i| can_judge(i))
            .or_else(|| (0..plugins.len()).find(|&i| can_judge(i)));
        return Ok(default.into_iter().collect());
    }
    let mut chosen = Vec::with_capacity(names.len());
    for name in names {
        let i = plugins
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| PluginError::Readiness {
                name: name.clone(),
                problem: format!(
                    "no loaded plugin has that name (loaded: {})",
                    plugins
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        if !can_judge(i) {
            return Err(PluginError::Readiness {
                name: name.clone(),
                problem: format!(
                    "{} does not judge readiness (it provides: {})",
                    plugins[i].path.display(),
                    plugins[i].capabilities.names().join(", ")
                ),
            });
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    Ok(chosen)
}

/// A shadow policy's verdict on the same statistics as the verdict of record.
#[derive(Debug)]
pub struct Shadow {
    /// The plugin's name in `pgdog.toml`.
    pub name: String,
    pub report: Result<ReadinessReport, PluginError>,
}

impl Shadow {
    /// Whether this policy agrees with `record` overall (a failed policy agrees with
    /// nothing).
    pub fn agrees(&self, record: &ReadinessReport) -> bool {
        self.report
            .as_ref()
            .is_ok_and(|r| r.overall.ready == record.overall.ready)
    }
}

/// The verdict of record and the shadow policies' verdicts on the same snapshot.
#[derive(Debug)]
pub struct Judgement {
    pub record: ReadinessReport,
    pub shadows: Vec<Shadow>,
}

impl Judgement {
    /// True when a shadow policy's overall verdict differs from the verdict of record.
    pub fn disagreement(&self) -> bool {
        self.shadows.iter().any(|s| !s.agrees(&self.record))
    }
}
