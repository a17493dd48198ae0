//! Fixture: a compatible plugin whose behaviour is set by its `[[plugins]] config`:
//!
//! * `label` (default "test"): reported in its metric point `fixture{label=...}`.
//! * `capabilities`: subset of `["events", "stats", "readiness", "metrics"]` (default all).
//! * `panic_in`: `"new"`, `"consume"`, `"snapshot"`, `"assess"` or `"metric_points"`.
//! * `fail_new`: the constructor returns this error message.
//!
//! Its snapshot counts every event as mirrored; its verdict is READY iff it has seen
//! at least `criteria.min_requests` events.

use pgdog_plugin_api::{
    stats::now_unix_us, Capabilities, DatabaseReport, EventBatch, MetricPoint, Plugin,
    ReadinessCriteria, ReadinessReport, Reason, StatsSnapshot,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_label")]
    label: String,
    capabilities: Option<Vec<String>>,
    panic_in: Option<String>,
    fail_new: Option<String>,
}

fn default_label() -> String {
    "test".into()
}

pub struct TestPlugin {
    config: Config,
    events: u64,
}

impl TestPlugin {
    fn maybe_panic(&self, operation: &str) {
        if self.config.panic_in.as_deref() == Some(operation) {
            panic!("fixture panic in {operation} ({})", self.config.label);
        }
    }
}

fn new(text: &str) -> Result<TestPlugin, String> {
    let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(message) = &config.fail_new {
        return Err(message.clone());
    }
    if config.panic_in.as_deref() == Some("new") {
        panic!("fixture panic in new");
    }
    Ok(TestPlugin { config, events: 0 })
}

impl Plugin for TestPlugin {
    fn capabilities(&self) -> Capabilities {
        let Some(names) = &self.config.capabilities else {
            return Capabilities::EVENTS
                | Capabilities::SNAPSHOT
                | Capabilities::READINESS
                | Capabilities::METRICS;
        };
        names.iter().fold(Capabilities::default(), |acc, n| {
            acc | match n.as_str() {
                "events" => Capabilities::EVENTS,
                "stats" => Capabilities::SNAPSHOT,
                "readiness" => Capabilities::READINESS,
                "metrics" => Capabilities::METRICS,
                _ => Capabilities::default(),
            }
        })
    }

    fn consume(&mut self, batch: &EventBatch<'_>) -> Result<(), String> {
        self.maybe_panic("consume");
        self.events += batch.events.len() as u64;
        Ok(())
    }

    fn snapshot(&mut self) -> Result<StatsSnapshot, String> {
        self.maybe_panic("snapshot");
        let mut s = StatsSnapshot {
            taken_at_unix_us: now_unix_us(),
            ..Default::default()
        };
        s.overall.counts.total = self.events;
        s.overall.counts.mirrored = self.events;
        Ok(s)
    }

    fn assess(
        &mut self,
        snapshot: &StatsSnapshot,
        criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, String> {
        self.maybe_panic("assess");
        let ready = self.events >= criteria.min_requests;
        let mut overall = DatabaseReport {
            ready,
            total_requests: snapshot.overall.counts.total,
            ..Default::default()
        };
        if !ready {
            overall.reasons.push(Reason::new(
                "min_requests",
                self.events as f64,
                criteria.min_requests as f64,
                format!(
                    "Total requests {} < minimum {}",
                    self.events, criteria.min_requests
                ),
            ));
        }
        Ok(ReadinessReport {
            policy: format!("fixture-test-plugin:{}", self.config.label).into(),
            overall,
            databases: Default::default(),
            extensions: Default::default(),
        })
    }

    fn metric_points(&mut self) -> Result<Vec<MetricPoint>, String> {
        self.maybe_panic("metric_points");
        Ok(vec![MetricPoint::gauge(
            "fixture",
            "events seen by the fixture plugin",
            &[("label", &self.config.label)],
            self.events as f64,
        )])
    }
}

pgdog_plugin_api::export_plugin!(name: "fixture-test-plugin", constructor: new);
