//! `mirror-stats`: pgdog's default plugin, loaded from beside the `pgdog` binary when
//! `pgdog.toml` names no plugins.
//!
//! It aggregates mirror events per database (counts, errors by category, HDR latency
//! histograms for the mirror and the primary), exposes them as metric points
//! ([`metrics`]) and judges readiness with the default policy ([`policy`]).
//!
//! Config (`[[plugins]] config = { ... }`), all optional:
//! * `significant_digits` (default 3): precision of the latency histograms (1 to 5).
//! * `window_secs` (default 5): how far back the `mirror{stat=...}` latency gauges look
//!   (see [`window`]). pgdog passes `[general] mirror_stats_window_secs` here when it
//!   loads the bundled plugin.

pub mod aggregate;
pub mod classes;
pub mod coverage;
mod loghist;
pub mod metrics;
pub mod policy;
pub mod queries;
pub mod replication;
pub mod window;

use std::collections::HashMap;

use pgdog_plugin_api::{
    abi_stable::std_types::ROption, export_plugin, scrape::bounded, stats::now_unix_us,
    Capabilities, DatabaseStats, EventBatch, MetricPoint, MirrorEvent, Outcome, Plugin,
    ReadinessCriteria, ReadinessReport, RecentLatency, ScrapeAnswer, ScrapeRequest, StatsSnapshot,
};
use serde::Deserialize;

use aggregate::Aggregate;
use coverage::Fingerprints;
use queries::Queries;
use window::Window;

/// The name this plugin reports (and the default `readiness_plugin`).
pub const PLUGIN_NAME: &str = "mirror-stats";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Histogram precision; default 3.
    #[serde(default = "default_significant_digits")]
    significant_digits: u8,
    /// Window of the recent-latency gauges, seconds; default 5.
    #[serde(default = "default_window_secs")]
    window_secs: u64,
}

fn default_significant_digits() -> u8 {
    3
}

fn default_window_secs() -> u64 {
    5
}

/// Longest accepted `window_secs` (one hour): the ring holds one slot per second.
const MAX_WINDOW_SECS: u64 = 3600;

/// The aggregation state.
pub struct Stats {
    significant_digits: u8,
    /// Database name -> index in `databases`.
    slots: HashMap<String, usize>,
    databases: Vec<(String, Aggregate)>,
    /// Reused per batch: batch database index -> slot.
    batch_slots: Vec<usize>,
    /// Latency of recent successful requests, all databases.
    window: Window,
    /// All databases together, recorded as events arrive: a snapshot then costs no
    /// histogram merges (with 1,000 databases, merging was most of a scrape).
    overall: Aggregate,
    /// Result comparison per (database, fingerprint).
    queries: Queries,
    /// How often each (database, fingerprint) was seen: coverage.
    fingerprints: Fingerprints,
    /// Latency bounds (µs, ascending) of the last scrape: every histogram counts its
    /// samples per bound as they come, so the next scrape reads O(bounds) per database.
    bounds: Vec<u64>,
}

impl Stats {
    pub fn new(significant_digits: u8) -> Self {
        Self::with_window(significant_digits, default_window_secs())
    }

    pub fn with_window(significant_digits: u8, window_secs: u64) -> Self {
        Self {
            significant_digits,
            slots: HashMap::new(),
            databases: Vec::new(),
            batch_slots: Vec::new(),
            window: Window::new(window_secs),
            overall: Aggregate::new(significant_digits),
            queries: Queries::default(),
            fingerprints: Fingerprints::default(),
            bounds: Vec::new(),
        }
    }

    /// Parses the plugin config (TOML text; empty means defaults).
    pub fn from_config(config: &str) -> Result<Self, String> {
        let cfg: Config =
            toml::from_str(config).map_err(|e| format!("invalid mirror-stats config: {e}"))?;
        if !(1..=5).contains(&cfg.significant_digits) {
            return Err(format!(
                "invalid mirror-stats config: significant_digits = {} (expected 1 to 5)",
                cfg.significant_digits
            ));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&cfg.window_secs) {
            return Err(format!(
                "invalid mirror-stats config: window_secs = {} (expected 1 to {MAX_WINDOW_SECS})",
                cfg.window_secs
            ));
        }
        Ok(Self::with_window(cfg.significant_digits, cfg.window_secs))
    }

    fn slot(&mut self, database: &str) -> usize {
        if let Some(&i) = self.slots.get(database) {
            return i;
        }
        let i = self.databases.len();
        let mut aggregate = Aggregate::new(self.significant_digits);
        aggregate.set_bounds(&self.bounds);
        self.databases.push((database.to_string(), aggregate));
        self.slots.insert(database.to_string(), i);
        i
    }

    /// Records events whose `database` indexes into `databases`.
    pub fn consume_events<S: AsRef<str>>(&mut self, databases: &[S], events: &[MirrorEvent]) {
        self.consume_with_texts(databases, events, |_| None);
    }

    /// [`Stats::consume_events`], with `text` giving fingerprints' normalised texts.
    pub fn consume_with_texts<'t, S: AsRef<str>>(
        &mut self,
        databases: &[S],
        events: &[MirrorEvent],
        text: impl Fn(u64) -> Option<&'t str> + Copy,
    ) {
        let mut slots = std::mem::take(&mut self.batch_slots);
        slots.clear();
        slots.extend(databases.iter().map(|d| self.slot(d.as_ref())));
        for ev in events {
            let slot = match slots.get(ev.database as usize) {
                Some(&s) => s,
                None => self.slot("?"),
            };
            self.databases[slot].1.record(ev, &self.bounds);
            self.overall.record(ev, &self.bounds);
            if ev.is_mirror_error() {
                self.databases[slot].1.classes.record(ev, text);
                self.overall.classes.record(ev, text);
            }
            if ev.fingerprint.is_some() {
                self.queries.record(slot, ev, text);
                self.fingerprints.record(slot, ev);
            }
            if ev.outcome == Outcome::MIRRORED || ev.outcome == Outcome::MISMATCH {
                if let ROption::RSome(us) = ev.mirror_latency_us {
                    self.window.record(ev.at_unix_us, us);
                }
            }
        }
        self.batch_slots = slots;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut databases: Vec<_> = self
            .databases
            .iter()
            .enumerate()
            .map(|(slot, (name, agg))| self.with_coverage(agg.to_stats(name), Some(slot)))
            .collect();
        databases.sort_by(|a, b| a.database.cmp(&b.database));
        StatsSnapshot {
            overall: self.with_coverage(self.overall.to_stats(""), None),
            databases: databases.into(),
            taken_at_unix_us: now_unix_us(),
            fingerprints: self.queries.snapshot(&self.databases).into(),
            extensions: Default::default(),
        }
    }

    /// `stats` with the coverage counts of database `slot` (`None`: all databases).
    fn with_coverage(&self, mut stats: DatabaseStats, slot: Option<usize>) -> DatabaseStats {
        let coverage = match slot {
            Some(slot) => self.fingerprints.of(slot),
            None => self.fingerprints.overall(),
        };
        if let Some(coverage) = coverage {
            coverage.write(&mut stats.extensions);
        }
        stats
    }

    pub fn reset(&mut self) {
        self.slots.clear();
        self.fingerprints.clear();
        self.databases.clear();
        self.window.clear();
        self.queries.clear();
        self.overall = Aggregate::new(self.significant_digits);
        self.overall.set_bounds(&self.bounds);
    }

    /// What a metrics scrape needs: the snapshot with distributions at the requested
    /// bounds and no fingerprints, and the verdicts `assess` would give on the whole
    /// snapshot. O(databases × bounds + fingerprints), whatever was recorded: the
    /// histograms count per bound as samples come (bounds ∪ the policy's latency
    /// thresholds, set up by one walk when they change), so neither the snapshot nor the
    /// verdicts walk a distribution, and the verdicts skip the report's texts.
    pub fn scrape(&mut self, request: &ScrapeRequest) -> ScrapeAnswer {
        let mut asked = request.latency_bounds_us.to_vec();
        asked.sort_unstable();
        asked.dedup();
        let mut bounds = asked.clone();
        if let ROption::RSome(criteria) = &request.criteria {
            bounds.extend(policy::latency_thresholds_us(criteria));
            bounds.sort_unstable();
            bounds.dedup();
        }
        if bounds != self.bounds {
            self.overall.set_bounds(&bounds);
            for (_, aggregate) in &mut self.databases {
                aggregate.set_bounds(&bounds);
            }
            self.bounds = bounds;
        }
        let mut databases: Vec<_> = self
            .databases
            .iter()
            .enumerate()
            .map(|(slot, (name, agg))| {
                self.with_coverage(agg.to_bounded_stats(name, &self.bounds), Some(slot))
            })
            .collect();
        databases.sort_by(|a, b| a.database.cmp(&b.database));
        let mut snapshot = StatsSnapshot {
            overall: self.with_coverage(self.overall.to_bounded_stats("", &self.bounds), None),
            databases: databases.into(),
            taken_at_unix_us: now_unix_us(),
            fingerprints: self.queries.snapshot(&self.databases).into(),
            extensions: Default::default(),
        };
        let verdicts = match &request.criteria {
            ROption::RSome(criteria) => ROption::RSome(policy::verdicts(&snapshot, criteria)),
            ROption::RNone => ROption::RNone,
        };
        if self.bounds != asked {
            snapshot = bounded(snapshot, &asked);
        }
        snapshot.fingerprints = Default::default();
        // The host writes the spec's `mirror` family from the snapshot's counts and this
        // window, instead of asking for `metric_points`.
        let window = self.window.read(now_unix_us());
        let recent = ROption::RSome(RecentLatency {
            avg_ms: window.avg_ms,
            max_ms: window.max_ms,
        });
        ScrapeAnswer {
            snapshot,
            verdicts,
            recent,
            extensions: Default::default(),
        }
    }

    /// The spec's `mirror` points. Built from the counters alone, not from a snapshot:
    /// a scrape costs O(databases), whatever the traffic (no histogram is walked).
    pub fn metric_points(&self) -> Vec<MetricPoint> {
        let mut overall = pgdog_plugin_api::Counts::default();
        let mut databases: Vec<_> = self
            .databases
            .iter()
            .map(|(name, agg)| {
                overall.add(&agg.counts);
                (name.as_str(), &agg.counts)
            })
            .collect();
        databases.sort_unstable_by_key(|(name, _)| *name);
        metrics::metric_points(&overall, databases, self.window.read(now_unix_us()))
    }
}

impl Plugin for Stats {
    fn capabilities(&self) -> Capabilities {
        Capabilities::EVENTS
            | Capabilities::SNAPSHOT
            | Capabilities::READINESS
            | Capabilities::METRICS
            | Capabilities::STATEMENTS
    }

    fn consume(&mut self, batch: &EventBatch<'_>) -> Result<(), String> {
        self.consume_with_texts(batch.databases.as_slice(), batch.events.as_slice(), |fp| {
            batch.query_text(fp)
        });
        Ok(())
    }

    fn snapshot(&mut self) -> Result<StatsSnapshot, String> {
        Ok(Stats::snapshot(self))
    }

    fn assess(
        &mut self,
        snapshot: &StatsSnapshot,
        criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, String> {
        Ok(policy::assess(PLUGIN_NAME, snapshot, criteria))
    }

    fn metric_points(&mut self) -> Result<Vec<MetricPoint>, String> {
        Ok(Stats::metric_points(self))
    }

    fn reset(&mut self) -> Result<(), String> {
        Stats::reset(self);
        Ok(())
    }

    fn scrape(&mut self, request: &ScrapeRequest) -> Result<ScrapeAnswer, String> {
        Ok(Stats::scrape(self, request))
    }
}

export_plugin!(name: PLUGIN_NAME, constructor: Stats::from_config);

/// Event constructors for tests (here and in the host's tests).
#[doc(hidden)]
pub mod testing {
    use pgdog_plugin_api::{
        abi_stable::std_types::ROption, stats::now_unix_us, DropReason, ErrorCategory, MirrorEvent,
        Outcome,
    };

    fn base(database: u32) -> MirrorEvent {
        MirrorEvent {
            database,
            outcome: Outcome::MIRRORED,
            category: ErrorCategory::NONE,
            drop_reason: DropReason::NONE,
            sqlstate: [0; 5],
            mirror_latency_us: ROption::RNone,
            primary_latency_us: ROption::RNone,
            at_unix_us: now_unix_us(),
            fingerprint: ROption::RNone,
            comparison: Default::default(),
        }
    }

    pub fn ok(database: u32, latency_us: u64) -> MirrorEvent {
        MirrorEvent {
            mirror_latency_us: ROption::RSome(latency_us),
            ..base(database)
        }
    }

    pub fn error(database: u32, category: ErrorCategory) -> MirrorEvent {
        MirrorEvent {
            outcome: Outcome::ERROR,
            category,
            ..base(database)
        }
    }

    pub fn dropped(database: u32) -> MirrorEvent {
        MirrorEvent {
            outcome: Outcome::DROPPED,
            drop_reason: DropReason::BUFFER_FULL,
            ..base(database)
        }
    }

    /// A compared request of fingerprint `fp`: `mirror_us` and `primary_us` latencies,
    /// and a mismatch of its rows when `differs`.
    pub fn compared(
        database: u32,
        fp: u64,
        mirror_us: u64,
        primary_us: u64,
        differs: bool,
    ) -> MirrorEvent {
        use pgdog_plugin_api::{Comparison, Differences, Verdict};
        MirrorEvent {
            outcome: if differs {
                Outcome::MISMATCH
            } else {
                Outcome::MIRRORED
            },
            mirror_latency_us: ROption::RSome(mirror_us),
            primary_latency_us: ROption::RSome(primary_us),
            fingerprint: ROption::RSome(fp),
            comparison: Comparison {
                verdict: if differs {
                    Verdict::MISMATCH
                } else {
                    Verdict::MATCH
                },
                differences: if differs {
                    Differences::ROWS
                } else {
                    Differences::default()
                },
                primary_rows: 3,
                mirror_rows: 3,
                ..Comparison::not_compared()
            },
            ..base(database)
        }
    }

    /// A query error on the mirror only (the primary answered): `sqlstate`, fingerprint
    /// `fp`.
    pub fn mirror_only_error(database: u32, fp: u64, sqlstate: &[u8; 5]) -> MirrorEvent {
        use pgdog_plugin_api::{Comparison, Differences, Verdict};
        MirrorEvent {
            outcome: Outcome::ERROR,
            category: ErrorCategory::QUERY,
            sqlstate: *sqlstate,
            fingerprint: ROption::RSome(fp),
            comparison: Comparison {
                verdict: Verdict::MISMATCH,
                differences: Differences::ERROR,
                ..Comparison::not_compared()
            },
            ..base(database)
        }
    }

    /// A query error the primary had too.
    pub fn shared_error(database: u32, fp: u64) -> MirrorEvent {
        use pgdog_plugin_api::{Comparison, Verdict};
        MirrorEvent {
            outcome: Outcome::ERROR,
            category: ErrorCategory::QUERY,
            sqlstate: *b"42P01",
            fingerprint: ROption::RSome(fp),
            comparison: Comparison {
                verdict: Verdict::MATCH,
                primary_sqlstate: *b"42P01",
                ..Comparison::not_compared()
            },
            ..base(database)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{dropped, ok};
    use super::*;

    #[test]
    fn per_database_and_overall() {
        let mut s = Stats::from_config("").unwrap();
        s.consume_events(&["b", "a"], &[ok(0, 1000), ok(1, 3000), dropped(1)]);
        s.consume_events(&["a"], &[ok(0, 2000)]);
        let snap = s.snapshot();
        let names: Vec<_> = snap.databases.iter().map(|d| d.database.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(snap.databases[0].counts.total, 3);
        assert_eq!(snap.databases[0].counts.dropped, 1);
        assert_eq!(snap.overall.counts.total, 4);
        assert_eq!(snap.overall.mirror_latency.samples, 3);
        assert!((snap.overall.mirror_latency.avg_ms - 2.0).abs() < 0.01);
        s.reset();
        assert_eq!(s.snapshot().overall.counts.total, 0);
    }

    /// Per fingerprint: when its first request, mismatch and mirror-only error came (the
    /// events' own instants), absent while none came.
    #[test]
    fn fingerprints_keep_their_first_instants() {
        use super::testing::{compared, mirror_only_error};
        use pgdog_plugin_api::stats::{FIRST_ERROR, FIRST_MISMATCH, FIRST_SEEN};
        let at = |mut ev: MirrorEvent, us: u64| {
            ev.at_unix_us = us;
            ev
        };
        let mut s = Stats::from_config("").unwrap();
        s.consume_events(
            &["a"],
            &[
                at(compared(0, 7, 100, 100, false), 1_000),
                at(compared(0, 7, 100, 100, true), 2_000),
                at(compared(0, 7, 100, 100, true), 3_000),
                at(compared(0, 8, 100, 100, false), 4_000),
                at(mirror_only_error(0, 8, b"42P01"), 5_000),
            ],
        );
        let snap = s.snapshot();
        let fp = |id: u64| {
            snap.fingerprints
                .iter()
                .find(|f| f.fingerprint == id)
                .expect("tracked")
        };
        assert_eq!(fp(7).first(FIRST_SEEN), Some(1_000));
        assert_eq!(fp(7).first(FIRST_MISMATCH), Some(2_000));
        assert_eq!(fp(7).first(FIRST_ERROR), None);
        assert_eq!(fp(8).first(FIRST_SEEN), Some(4_000));
        assert_eq!(fp(8).first(FIRST_MISMATCH), None);
        assert_eq!(fp(8).first(FIRST_ERROR), Some(5_000));
    }

    #[test]
    fn metric_points_use_spec_names() {
        let mut s = Stats::new(3);
        s.consume_events(&["primary"], &[ok(0, 1000), dropped(0)]);
        let points = s.metric_points();
        let find = |labels: &[(&str, &str)]| {
            points
                .iter()
                .find(|p| {
                    p.labels.len() == labels.len()
                        && labels.iter().all(|(k, v)| p.label(k) == Some(*v))
                })
                .map(|p| p.value)
        };
        assert_eq!(find(&[("type", "mirrored")]), Some(1.0));
        assert_eq!(find(&[("type", "dropped")]), Some(1.0));
        assert_eq!(find(&[("type", "total")]), Some(2.0));
        assert_eq!(find(&[("error_type", "buffer_full")]), Some(1.0));
        assert_eq!(find(&[("error_type", "connection")]), Some(0.0));
        assert_eq!(find(&[("stat", "avg_latency_ms")]), Some(1.0));
        assert_eq!(
            find(&[("database", "primary"), ("metric", "mirrored")]),
            Some(1.0)
        );
        assert!(points.iter().all(|p| p.name.as_str() == "mirror"));
        // Exactly the spec's label sets: 3 types, 5 error types, 2 stats, 4 per database.
        assert_eq!(points.len(), 3 + 5 + 2 + 4);
        assert_eq!(find(&[("type", "errors")]), None);
    }

    #[test]
    fn stat_gauges_cover_recent_successes_only() {
        use super::testing::error;
        use pgdog_plugin_api::ErrorCategory;
        let mut s = Stats::from_config("window_secs = 3").unwrap();
        let now = now_unix_us();
        let at = |mut ev: MirrorEvent, secs_ago: u64| {
            ev.at_unix_us = now - secs_ago * 1_000_000;
            ev
        };
        let mut events: Vec<_> = (0..100).map(|_| at(ok(0, 1_000), 10)).collect();
        events.extend((0..10).map(|_| at(ok(0, 100_500), 0)));
        // A failed request with a latency does not count in the window.
        let mut failed = at(error(0, ErrorCategory::TIMEOUT), 0);
        failed.mirror_latency_us =
            pgdog_plugin_api::abi_stable::std_types::ROption::RSome(9_000_000);
        events.push(failed);
        s.consume_events(&["db"], &events);
        let points = s.metric_points();
        let stat = |name: &str| {
            points
                .iter()
                .find(|p| p.label("stat") == Some(name))
                .map(|p| p.value)
                .unwrap()
        };
        assert_eq!(stat("avg_latency_ms"), 100.5);
        assert_eq!(stat("max_latency_ms"), 100.5);
        // The lifetime figures are in the snapshot.
        assert_eq!(s.snapshot().overall.mirror_latency.samples, 111);
    }

    #[test]
    fn config_is_checked() {
        assert!(Stats::from_config("significant_digits = 2").is_ok());
        let err = Stats::from_config("significant_digits = 9").err().unwrap();
        assert!(err.contains("significant_digits = 9"), "{err}");
        let err = Stats::from_config("window_secs = 0").err().unwrap();
        assert!(err.contains("window_secs = 0"), "{err}");
        let err = Stats::from_config("nope = 1").err().unwrap();
        assert!(err.contains("nope"), "{err}");
    }

    /// A scrape's answer is the snapshot cut down to the bounds, without fingerprints,
    /// and the verdicts `assess` gives on the whole snapshot, also after the bounds
    /// change and as more samples come.
    #[test]
    fn scrape_answers_what_snapshot_and_assess_would() {
        use super::testing::{compared, error};
        use pgdog_plugin_api::{scrape::bounded, ErrorCategory, Verdicts};
        let mut s = Stats::new(3);
        let criteria = ReadinessCriteria {
            max_latency_ms: 3.0,
            ..ReadinessCriteria::default()
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut batch = |s: &mut Stats, n: usize| {
            let events: Vec<_> = (0..n)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let db = (seed % 3) as u32;
                    match i % 40 {
                        0 => error(db, ErrorCategory::TIMEOUT),
                        1 => compared(db, 5, 200 + seed % 4_000, 300, false),
                        _ => ok(db, 200 + seed % 6_000),
                    }
                })
                .collect();
            s.consume_events(&["x", "y", "z"], &events);
        };
        for (round, bounds) in [
            vec![500u64, 1_000, 2_500, 5_000],
            vec![500, 1_000, 2_500, 5_000],
            vec![1_000, 4_000],
        ]
        .into_iter()
        .enumerate()
        {
            batch(&mut s, 3_000);
            for judge in [false, true] {
                let request = ScrapeRequest {
                    latency_bounds_us: bounds.clone().into(),
                    criteria: if judge {
                        ROption::RSome(criteria.clone())
                    } else {
                        ROption::RNone
                    },
                    extensions: Default::default(),
                };
                let answer = s.scrape(&request);
                let whole = s.snapshot();
                let verdicts =
                    judge.then(|| Verdicts::of(&policy::assess(PLUGIN_NAME, &whole, &criteria)));
                assert_eq!(answer.verdicts.into_option(), verdicts, "round {round}");
                let expected = StatsSnapshot {
                    taken_at_unix_us: answer.snapshot.taken_at_unix_us,
                    ..bounded(whole, &bounds)
                };
                // The mean is summed exactly in both: equal to the bit.
                assert_eq!(answer.snapshot, expected, "round {round}");
                assert!(answer.snapshot.databases[0].mirror_latency.buckets.len() == bounds.len());
            }
        }
    }
}
