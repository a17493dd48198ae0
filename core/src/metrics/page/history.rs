//! The history the page draws over time (confidence sparklines, the traffic chart): a
//! bounded ring of points per database, so that memory stays flat however long pgdog
//! runs.
//!
//! A point is taken whenever a verdict is at hand (a `/readiness` poll, a page load,
//! and, once the page has been opened, a background sample every [`INTERVAL`]), at most
//! one per half interval. A database keeps the last hour at that pace ([`FINE`] points)
//! and, before it, one point a minute for 24 hours ([`COARSE`] points): points leaving
//! the hour are kept only when a minute has passed since the last one kept. Each point is
//! 120 bytes at most (checked when compiling): at most 216 KB per database, 21.6 MB at 100
//! databases, allocated as points arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::plugins::ReadinessReport;
use pgdog_plugin_api::errors::{read_classes, ErrorClass};
use pgdog_plugin_api::read_confidences;

/// Time between background samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Points kept at [`INTERVAL`]: the last hour.
pub const FINE: usize = 360;
/// Time between the points kept before the last hour.
pub const COARSE_INTERVAL: Duration = Duration::from_secs(60);
/// Points kept at [`COARSE_INTERVAL`]: the 24 hours before the last one.
pub const COARSE: usize = 1440;
/// The rate criteria whose confidence is kept, in the order they are drawn.
pub const CRITERIA: [&str; 4] = [
    "max_error_rate",
    "max_latency",
    "max_drop_rate",
    "max_mismatch_rate",
];
// The memory bound stated above: 120 bytes a point.
const _: () = assert!(std::mem::size_of::<Point>() <= 120);

/// One sample of a database's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// The smallest criterion confidence, 0 to 100.
    pub overall: f32,
    /// Confidence of each of [`CRITERIA`], 0 to 100; NaN when the policy gave none.
    pub criteria: [f32; 4],
    /// The report's counters so far (the traffic chart draws their increase): every
    /// error, and of them the mirror's own query errors per class ([`ErrorClass::ALL`]
    /// order).
    pub mirrored: u64,
    pub errors: u64,
    pub classes: [u64; 7],
    pub dropped: u64,
    /// Transactions not offered to the mirror (`mirror_statements`).
    pub skipped: u64,
}

impl Point {
    /// Errors in no class: timeouts, connection and protocol errors, and query errors
    /// the primary had too.
    pub fn unclassed_errors(&self) -> u64 {
        self.errors.saturating_sub(self.classes.iter().sum())
    }
}

/// One database's points: the last hour, and one a minute before it.
#[derive(Debug, Default)]
struct Ring {
    coarse: VecDeque<Point>,
    fine: VecDeque<Point>,
}

impl Ring {
    fn push(&mut self, p: Point) {
        if self.fine.len() == FINE {
            let old = self.fine.pop_front().expect("full");
            // Within half a sample of a minute counts as a minute.
            let due = COARSE_INTERVAL.as_secs_f64() - INTERVAL.as_secs_f64() / 2.0;
            if self
                .coarse
                .back()
                .is_none_or(|last| old.at - last.at >= due)
            {
                if self.coarse.len() == COARSE {
                    self.coarse.pop_front();
                }
                self.coarse.push_back(old);
            }
        }
        self.fine.push_back(p);
    }
}

/// The rings, one per database (the overall verdict under the empty name).
#[derive(Debug, Default)]
pub struct History {
    rings: Mutex<HashMap<String, Ring>>,
}

impl History {
    /// Adds a point per database of `report` taken at `at` (Unix seconds), unless the
    /// last one is younger than half an [`INTERVAL`]. `skipped` gives a database's
    /// skipped transactions so far (the overall point sums them).
    pub fn record(&self, report: &ReadinessReport, skipped: &HashMap<String, u64>, at: f64) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        for db in std::iter::once(&report.overall).chain(report.databases.iter()) {
            let ring = rings.entry(db.database.to_string()).or_default();
            if ring
                .fine
                .back()
                .is_some_and(|last| at - last.at < INTERVAL.as_secs_f64() / 2.0)
            {
                continue;
            }
            let mut criteria = [f32::NAN; 4];
            for c in read_confidences(&db.extensions) {
                if let Some(i) = CRITERIA.iter().position(|&name| name == c.criterion) {
                    criteria[i] = c.confidence as f32;
                }
            }
            let mut classes = [0; 7];
            for c in read_classes(&db.extensions) {
                if let Some(i) = ErrorClass::ALL.iter().position(|&k| k == c.class) {
                    classes[i] = c.count;
                }
            }
            let skipped = match db.database.as_str() {
                "" => skipped.values().sum(),
                name => skipped.get(name).copied().unwrap_or(0),
            };
            ring.push(Point {
                at,
                overall: db.confidence as f32,
                criteria,
                mirrored: db.mirrored,
                errors: db.errors,
                classes,
                dropped: db.dropped,
                skipped,
            });
        }
    }

    /// A copy of one database's points, oldest first.
    pub fn points(&self, database: &str) -> Vec<Point> {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings
            .get(database)
            .map(|r| r.coarse.iter().chain(r.fine.iter()).copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::DatabaseReport;
    use pgdog_plugin_api::errors::{write_classes, ClassErrors};
    use pgdog_plugin_api::{write_confidences, CriterionConfidence};

    fn report(confidence: f64) -> ReadinessReport {
        let mut db = DatabaseReport {
            database: "primary".into(),
            confidence,
            errors: 10,
            ..Default::default()
        };
        write_confidences(
            &mut db.extensions,
            &[CriterionConfidence {
                criterion: "max_latency".into(),
                confidence,
                text: String::new(),
            }],
        );
        write_classes(
            &mut db.extensions,
            &[ClassErrors {
                class: ErrorClass::SchemaDrift,
                count: 3,
                worst: None,
                sqlstates: Vec::new(),
            }],
        );
        ReadinessReport {
            databases: vec![db].into(),
            ..Default::default()
        }
    }

    #[test]
    fn bounded_and_spaced() {
        let h = History::default();
        let skipped = HashMap::from([("primary".to_string(), 4)]);
        for i in 0..(FINE + 50) {
            h.record(&report(i as f64 % 100.0), &skipped, i as f64 * 10.0);
            // A second look within the half interval adds nothing.
            h.record(&report(0.0), &skipped, i as f64 * 10.0 + 1.0);
        }
        let points = h.points("primary");
        // The 50 points that left the hour, one a minute of them kept.
        assert_eq!(points.len(), FINE + 9);
        assert_eq!(points[0].at, 0.0);
        assert_eq!(points[1].at, 60.0);
        assert_eq!(points[9].at, 500.0);
        let last = points.last().unwrap();
        assert_eq!(last.criteria[1], 9.0);
        assert_eq!((last.classes[0], last.unclassed_errors()), (3, 7));
        assert_eq!(last.skipped, 4);
        assert!(points[0].criteria[0].is_nan());
        let overall = h.points("");
        assert_eq!(overall.len(), FINE + 9);
        assert_eq!(
            overall[0].skipped, 4,
            "the overall point sums the databases"
        );
        assert!(h.points("nope").is_empty());
    }

    /// A day and more of samples: the last hour every 10 s, the day before it one a
    /// minute, nothing older; memory stays at the bound.
    #[test]
    fn a_day_is_kept_a_minute_apart() {
        let h = History::default();
        let none = HashMap::new();
        let samples = FINE + COARSE * 6 + 600;
        for i in 0..samples {
            h.record(&report(50.0), &none, i as f64 * 10.0);
        }
        let points = h.points("primary");
        assert_eq!(points.len(), FINE + COARSE);
        let newest = (samples - 1) as f64 * 10.0;
        assert_eq!(points.last().unwrap().at, newest);
        assert_eq!(points[COARSE].at, newest - (FINE - 1) as f64 * 10.0);
        for w in points[..COARSE].windows(2) {
            assert_eq!(w[1].at - w[0].at, 60.0);
        }
        // 25 hours in all.
        let span = newest - points[0].at;
        assert!((span - 25.0 * 3600.0).abs() <= 70.0, "{span}");
    }
}
