//! The idiomatic mirror families, per source database: `pgdog_mirror_*` (the latency
//! histogram is in [`super::histogram`]). They read the stats plugin's snapshot, the
//! readiness plugin's report on it, and the mirror queues.

use pgdog_plugin_api::{Counts, ErrorCounts};

use super::family::Family;
use super::scrape::Source;
use super::text::Kind;

type Pick<T> = fn(&T) -> u64;

/// Outcomes, sorted by label value as the registry wrote them.
const OUTCOMES: [(&str, Pick<Counts>); 3] = [
    ("dropped", |c| c.dropped),
    ("error", |c| c.errors),
    ("mirrored", |c| c.mirrored),
];

/// Error categories, sorted (`buffer_full` is a drop, not an error).
const CATEGORIES: [(&str, Pick<ErrorCounts>); 5] = [
    ("connection", |e| e.connection),
    ("other", |e| e.other),
    ("protocol", |e| e.protocol),
    ("query", |e| e.query),
    ("timeout", |e| e.timeout),
];

pub const FAMILIES: [Family; 6] = [
    Family {
        name: "pgdog_mirror_requests_total",
        help: "Requests the proxy tried to mirror, by outcome (mirrored, error, dropped)",
        kind: Kind::Counter,
        source: Source::Snapshot,
        samples: |f, w, v| {
            let head = format!("{}{{database=\"", f.name);
            let tails = OUTCOMES.map(|(outcome, _)| format!("\",outcome=\"{outcome}\"}}"));
            for d in &v.databases {
                for (tail, (_, pick)) in tails.iter().zip(OUTCOMES) {
                    w.line(&head, &d.label, tail, pick(&d.item.counts) as f64);
                }
            }
        },
    },
    Family {
        name: "pgdog_mirror_errors_total",
        help: "Mirror failures by category (queue-full drops are in pgdog_mirror_requests_total{outcome=\"dropped\"})",
        kind: Kind::Counter,
        source: Source::Snapshot,
        samples: |f, w, v| {
            // Labels sort by name (`category` before `database`), series by their
            // values in that order: every database for one category, then the next.
            for (category, pick) in CATEGORIES {
                let before = format!("category=\"{category}\",");
                f.per_database_with(w, &before, "", &v.databases, |d| {
                    pick(&d.counts.by_category) as f64
                });
            }
        },
    },
    Family {
        name: "pgdog_mirror_mismatches_total",
        help: "Mirrored requests whose answer differed from the primary's (result comparison; per fingerprint in SHOW MIRROR QUERIES)",
        kind: Kind::Counter,
        source: Source::Snapshot,
        samples: |f, w, v| f.per_database(w, &v.databases, |c| c.counts.mismatched as f64),
    },
    Family {
        name: "pgdog_mirror_queue_depth",
        help: "Requests waiting in the mirror queues of a source pool's sessions",
        kind: Kind::Gauge,
        source: Source::Proxy,
        samples: |f, w, v| f.per_database(w, &v.queues, |q| q.1 as f64),
    },
    Family {
        name: "pgdog_mirror_ready",
        help: "1 when the readiness policy judges the database ready to take over, else 0",
        kind: Kind::Gauge,
        source: Source::Report,
        samples: |f, w, v| f.per_database(w, &v.reports, |r| if r.ready { 1.0 } else { 0.0 }),
    },
    Family {
        name: "pgdog_mirror_readiness_confidence",
        help: "Readiness policy's confidence that the database meets the criteria, 0 to 1",
        kind: Kind::Gauge,
        source: Source::Report,
        samples: |f, w, v| f.per_database(w, &v.reports, |r| r.confidence / 100.0),
    },
];
