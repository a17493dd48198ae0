//! `strict-readiness`: an example of a drop-in readiness policy, and a stricter one.
//!
//! READY only when, overall and for every database:
//! * the last `window` requests the mirror executed (default 1000) hold at least
//!   `min_requests` requests and **zero** errors (drops are not evidence either way); with
//!   result comparison on, a mismatched answer counts as an error and a query error the
//!   primary had too (same SQLSTATE) does not;
//! * the p99 mirror latency (from the stats plugin's snapshot) is at most `max_p99_ms`
//!   (default: half of `[general] mirror_max_latency_ms`);
//! * the observation window is at least `mirror_min_runtime_hours`.
//!
//! Confidence: the Jeffreys posterior probability that the error rate is at most
//! `target_error_rate` (default 0.1 %) given the errors in the window.
//!
//! It consumes events itself (for the sliding window) and reads the rest from the
//! snapshot, so it needs a stats plugin beside it (pgdog loads the bundled one).
//!
//! ```toml
//! [general]
//! readiness_plugin = "strict"
//!
//! [[plugins]]
//! name = "strict"
//! path = "libpgdog_strict_readiness.so"
//! config = { window = 500, max_p99_ms = 200.0 }
//! ```

use std::collections::{HashMap, VecDeque};

use pgdog_plugin_api::{
    export_plugin, Capabilities, DatabaseReport, DatabaseStats, EventBatch, Plugin,
    ReadinessCriteria, ReadinessReport, Reason, StatsSnapshot,
};
use pgdog_stats_math::jeffreys_prob_at_most;
use serde::Deserialize;

pub const PLUGIN_NAME: &str = "strict-readiness";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Requests in the sliding window. Default 1000.
    #[serde(default = "default_window")]
    window: usize,
    /// Strict p99 bound in ms. Default: half of the general latency limit.
    #[serde(default)]
    max_p99_ms: Option<f64>,
    /// Error rate the confidence is computed against. Default 0.001.
    #[serde(default = "default_target_error_rate")]
    target_error_rate: f64,
}

fn default_window() -> usize {
    1000
}

fn default_target_error_rate() -> f64 {
    0.001
}

/// Outcomes of the last `capacity` executed requests.
#[derive(Debug, Default)]
struct Window {
    outcomes: VecDeque<bool>,
    errors: u64,
}

impl Window {
    fn push(&mut self, is_error: bool, capacity: usize) {
        if self.outcomes.len() == capacity {
            if let Some(true) = self.outcomes.pop_front() {
                self.errors -= 1;
            }
        }
        self.outcomes.push_back(is_error);
        self.errors += u64::from(is_error);
    }

    fn len(&self) -> u64 {
        self.outcomes.len() as u64
    }
}

pub struct Strict {
    config: Config,
    overall: Window,
    databases: HashMap<String, Window>,
}

impl Strict {
    pub fn from_config(text: &str) -> Result<Self, String> {
        let config: Config =
            toml::from_str(text).map_err(|e| format!("invalid strict-readiness config: {e}"))?;
        if config.window == 0 {
            return Err("invalid strict-readiness config: window must be at least 1".into());
        }
        Ok(Self {
            config,
            overall: Window::default(),
            databases: HashMap::new(),
        })
    }

    fn judge(
        &self,
        window: &Window,
        stats: &DatabaseStats,
        criteria: &ReadinessCriteria,
        now_us: u64,
    ) -> DatabaseReport {
        let max_p99 = self
            .config
            .max_p99_ms
            .unwrap_or(criteria.max_latency_ms / 2.0);
        let mut reasons = Vec::new();
        let n = window.len();
        if n < criteria.min_requests {
            reasons.push(Reason::new(
                "min_requests",
                n as f64,
                criteria.min_requests as f64,
                format!(
                    "Total requests {n} < minimum {} (in the last {})",
                    criteria.min_requests, self.config.window
                ),
            ));
        }
        if window.errors > 0 {
            reasons.push(Reason::new(
                "zero_errors",
                window.errors as f64,
                0.0,
                format!(
                    "Errors in the last {n} requests: {} > maximum 0 (strict policy)",
                    window.errors
                ),
            ));
        }
        let p99 = stats.mirror_latency.p99_ms;
        if p99 > max_p99 {
            reasons.push(Reason::new(
                "max_latency",
                p99,
                max_p99,
                format!("p99 latency {p99:.1}ms > strict maximum {max_p99}ms"),
            ));
        }
        let window_secs = stats.window_secs(now_us);
        if window_secs < criteria.min_runtime_secs {
            reasons.push(Reason::min_runtime(window_secs, criteria.min_runtime_secs));
        }
        let p_ok = jeffreys_prob_at_most(
            window.errors,
            n - window.errors,
            self.config.target_error_rate,
        );
        let c = &stats.counts;
        DatabaseReport {
            database: stats.database.clone(),
            ready: reasons.is_empty(),
            confidence: 100.0 * p_ok,
            confidence_detail: format!(
                "P(error rate <= {}%) over the last {n} requests",
                self.config.target_error_rate * 100.0
            )
            .into(),
            error_rate: c.error_rate(),
            success_rate: c.success_rate(),
            total_requests: c.total,
            mirrored: c.mirrored,
            errors: c.errors,
            dropped: c.dropped,
            avg_latency_ms: stats.mirror_latency.avg_ms,
            p99_latency_ms: p99,
            max_latency_ms: stats.mirror_latency.max_ms,
            window_secs,
            compared: c.compared,
            mismatches: c.mismatched,
            mismatch_rate: c.mismatch_rate(),
            excluded: c.excluded,
            shared_errors: c.shared_errors,
            latency_ratio: 0.0,
            reasons: reasons.into(),
            extensions: Default::default(),
        }
    }
}

impl Plugin for Strict {
    fn capabilities(&self) -> Capabilities {
        Capabilities::EVENTS | Capabilities::READINESS
    }

    fn consume(&mut self, batch: &EventBatch<'_>) -> Result<(), String> {
        let capacity = self.config.window;
        for ev in batch.events.iter() {
            if ev.is_dropped() {
                continue;
            }
            // Strict: a result mismatch is as bad as an error; an error the primary had
            // too is not the mirror's.
            let is_error = (ev.is_mirror_error() && !ev.is_shared_error()) || ev.is_mismatch();
            self.overall.push(is_error, capacity);
            let db = batch.database_of(ev);
            match self.databases.get_mut(db) {
                Some(w) => w.push(is_error, capacity),
                None => {
                    let mut w = Window::default();
                    w.push(is_error, capacity);
                    self.databases.insert(db.to_string(), w);
                }
            }
        }
        Ok(())
    }

    fn assess(
        &mut self,
        snapshot: &StatsSnapshot,
        criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, String> {
        let now = snapshot.taken_at_unix_us;
        let empty = Window::default();
        let databases: Vec<DatabaseReport> = snapshot
            .databases
            .iter()
            .map(|db| {
                let w = self.databases.get(db.database.as_str()).unwrap_or(&empty);
                self.judge(w, db, criteria, now)
            })
            .collect();
        let mut overall = self.judge(&self.overall, &snapshot.overall, criteria, now);
        for db in databases.iter().filter(|d| !d.ready) {
            overall.ready = false;
            overall.reasons.push(Reason::new(
                "database",
                0.0,
                0.0,
                format!("Database {} is not ready", db.database),
            ));
        }
        Ok(ReadinessReport {
            policy: PLUGIN_NAME.into(),
            overall,
            databases: databases.into(),
            extensions: Default::default(),
        })
    }

    fn reset(&mut self) -> Result<(), String> {
        self.overall = Window::default();
        self.databases.clear();
        Ok(())
    }
}

export_plugin!(name: PLUGIN_NAME, constructor: Strict::from_config);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_forgets_old_errors() {
        let mut w = Window::default();
        w.push(true, 3);
        w.push(false, 3);
        w.push(false, 3);
        assert_eq!(w.errors, 1);
        w.push(false, 3);
        assert_eq!((w.errors, w.len()), (0, 3));
    }

    #[test]
    fn one_error_in_the_window_is_not_ready() {
        let s = Strict::from_config("window = 200").unwrap();
        let mut w = Window::default();
        for i in 0..150 {
            w.push(i == 7, 200);
        }
        let r = s.judge(
            &w,
            &DatabaseStats::default(),
            &ReadinessCriteria::default(),
            0,
        );
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 1, "{:?}", r.reasons);
        assert!(r.reasons[0]
            .message
            .contains("Errors in the last 150 requests: 1"));
        // Without the error: ready.
        let mut w = Window::default();
        (0..150).for_each(|_| w.push(false, 200));
        let r = s.judge(
            &w,
            &DatabaseStats::default(),
            &ReadinessCriteria::default(),
            0,
        );
        assert!(r.ready, "{:?}", r.reasons);
    }

    #[test]
    fn config_is_checked() {
        assert!(Strict::from_config("window = 0").is_err());
        assert!(Strict::from_config("windw = 3")
            .err()
            .unwrap()
            .contains("windw"));
        let s = Strict::from_config("max_p99_ms = 20.0").unwrap();
        assert_eq!(s.config.max_p99_ms, Some(20.0));
    }
}
