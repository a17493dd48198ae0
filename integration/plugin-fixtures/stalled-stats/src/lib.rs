//! Fixture: a stats and readiness plugin that stalls. It counts the events it is given
//! (as mirrored), and every statistics call (`snapshot`, `scrape`, `metric_points`,
//! `assess`) first sleeps `stall_ms` (default 10,000) while holding the host's lock on
//! it, as a plugin stuck on a lock or an I/O call would. `consume` does not sleep, but
//! the host's event thread waits for that lock.
//!
//! Config: `stall_ms` (default 10000).

use std::time::Duration;

use pgdog_plugin_api::{
    stats::now_unix_us, Capabilities, DatabaseReport, EventBatch, MetricPoint, Plugin,
    ReadinessCriteria, ReadinessReport, ScrapeAnswer, ScrapeRequest, StatsSnapshot,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_stall_ms")]
    stall_ms: u64,
}

fn default_stall_ms() -> u64 {
    10_000
}

pub struct Stalled {
    stall: Duration,
    events: u64,
}

fn new(text: &str) -> Result<Stalled, String> {
    let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(Stalled {
        stall: Duration::from_millis(config.stall_ms),
        events: 0,
    })
}

impl Stalled {
    fn stats(&self) -> StatsSnapshot {
        std::thread::sleep(self.stall);
        let mut s = StatsSnapshot {
            taken_at_unix_us: now_unix_us(),
            ..Default::default()
        };
        s.overall.counts.total = self.events;
        s.overall.counts.mirrored = self.events;
        s
    }
}

impl Plugin for Stalled {
    fn capabilities(&self) -> Capabilities {
        Capabilities::EVENTS | Capabilities::SNAPSHOT | Capabilities::READINESS | Capabilities::METRICS
    }

    fn consume(&mut self, batch: &EventBatch<'_>) -> Result<(), String> {
        self.events += batch.events.len() as u64;
        Ok(())
    }

    fn snapshot(&mut self) -> Result<StatsSnapshot, String> {
        Ok(self.stats())
    }

    fn scrape(&mut self, _request: &ScrapeRequest) -> Result<ScrapeAnswer, String> {
        Ok(ScrapeAnswer {
            snapshot: self.stats(),
            ..Default::default()
        })
    }

    fn assess(
        &mut self,
        snapshot: &StatsSnapshot,
        _criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, String> {
        std::thread::sleep(self.stall);
        Ok(ReadinessReport {
            policy: "fixture-stalled-stats".into(),
            overall: DatabaseReport {
                total_requests: snapshot.overall.counts.total,
                ..Default::default()
            },
            databases: Default::default(),
            extensions: Default::default(),
        })
    }

    fn metric_points(&mut self) -> Result<Vec<MetricPoint>, String> {
        std::thread::sleep(self.stall);
        Ok(vec![MetricPoint::gauge(
            "fixture_stalled_events",
            "events seen by the stalled fixture",
            &[],
            self.events as f64,
        )])
    }
}

pgdog_plugin_api::export_plugin!(name: "fixture-stalled-stats", constructor: new);
