//! The confidence history the page draws as sparklines: a bounded ring of points per
//! database, so that memory stays flat however long pgdog runs.
//!
//! A point is taken whenever a verdict is at hand (a `/readiness` poll, a page load,
//! and, once the page has been opened, a background sample every [`INTERVAL`]), at most
//! one per half interval. Each point is 56 bytes at most (checked when compiling); a database keeps at most
//! [`CAPACITY`] of them (the last hour at one per 10 s): about 20 KB per database,
//! 2 MB at 100 databases, allocated as points arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::plugins::ReadinessReport;
use pgdog_plugin_api::read_confidences;

/// Time between background samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Points kept per database.
pub const CAPACITY: usize = 360;
/// The rate criteria whose confidence is kept, in the order they are drawn.
pub const CRITERIA: [&str; 4] = [
    "max_error_rate",
    "max_latency",
    "max_drop_rate",
    "max_mismatch_rate",
];
// The memory bound stated above: 56 bytes a point.
const _: () = assert!(std::mem::size_of::<Point>() <= 56);

/// One sample of a database's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// The smallest criterion confidence, 0 to 100.
    pub overall: f32,
    /// Confidence of each of [`CRITERIA`], 0 to 100; NaN when the policy gave none.
    pub criteria: [f32; 4],
    /// The report's counters so far (the traffic chart draws their increase).
    pub mirrored: u64,
    pub errors: u64,
    pub dropped: u64,
}

/// The rings, one per database (the overall verdict under the empty name).
#[derive(Debug, Default)]
pub struct History {
    rings: Mutex<HashMap<String, VecDeque<Point>>>,
}

impl History {
    /// Adds a point per database of `report` taken at `at` (Unix seconds), unless the
    /// last one is younger than half an [`INTERVAL`].
    pub fn record(&self, report: &ReadinessReport, at: f64) {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        for db in std::iter::once(&report.overall).chain(report.databases.iter()) {
            let ring = rings.entry(db.database.to_string()).or_default();
            if ring
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
            if ring.len() == CAPACITY {
                ring.pop_front();
            }
            ring.push_back(Point {
                at,
                overall: db.confidence as f32,
                criteria,
                mirrored: db.mirrored,
                errors: db.errors,
                dropped: db.dropped,
            });
        }
    }

    /// A copy of one database's ring, oldest first.
    pub fn points(&self, database: &str) -> Vec<Point> {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings
            .get(database)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::DatabaseReport;
    use pgdog_plugin_api::{write_confidences, CriterionConfidence};

    fn report(confidence: f64) -> ReadinessReport {
        let mut db = DatabaseReport {
            database: "primary".into(),
            confidence,
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
        ReadinessReport {
            databases: vec![db].into(),
            ..Default::default()
        }
    }

    #[test]
    fn bounded_and_spaced() {
        let h = History::default();
        for i in 0..(CAPACITY + 50) {
            h.record(&report(i as f64 % 100.0), i as f64 * 10.0);
            // A second look within the half interval adds nothing.
            h.record(&report(0.0), i as f64 * 10.0 + 1.0);
        }
        let points = h.points("primary");
        assert_eq!(points.len(), CAPACITY);
        assert_eq!(points[0].at, 500.0);
        assert_eq!(points.last().unwrap().criteria[1], 9.0);
        assert!(points[0].criteria[0].is_nan());
        assert_eq!(h.points("").len(), CAPACITY);
        assert!(h.points("nope").is_empty());
    }
}
