//! The page itself: one HTML document with its stylesheet inline, drawn from the same
//! readiness report `/readiness` serves and the stats snapshot it was judged on.
//! Everything that comes from traffic or configuration (database names, statement
//! texts, reasons, examples) goes through [`escape`].

use std::fmt::Write;

use super::history::{History, Point, CRITERIA};
use super::svg;
use crate::plugins::{DatabaseReport, DatabaseStats, FingerprintStats, ReadinessReport};
use pgdog_plugin_api::readiness::format_window;
use pgdog_plugin_api::stats::{FIRST_ERROR, FIRST_MISMATCH, FIRST_SEEN};
use pgdog_plugin_api::{read_confidences, Coverage, StatsSnapshot};

const STYLE: &str = include_str!("page.css");
/// Statements shown per ranking.
const TOP: usize = 5;
/// Paired latencies a statement needs before its latency ratio is ranked (as in
/// `SHOW MIRROR QUERIES`).
const LATENCY_MIN_PAIRED: u64 = 20;
/// Points drawn per chart over time: the ring is thinned to this many (the page stays
/// small at many pools; counters are cumulative, so thinning the traffic chart only
/// averages its rates over longer intervals).
const DRAWN: usize = 120;
/// Points drawn in a 160-pixel sparkline.
const DRAWN_SPARK: usize = 60;

/// Every n-th point, so that at most `max` remain, always with the newest.
fn thin<T: Copy>(points: &[T], max: usize) -> Vec<T> {
    let step = points.len().div_ceil(max.max(1)).max(1);
    let mut out: Vec<T> = points.iter().rev().step_by(step).copied().collect();
    out.reverse();
    out
}

/// What one page shows.
pub struct Page<'a> {
    /// Unix seconds.
    pub generated_at: f64,
    pub refresh_secs: u32,
    /// The confidence READY needs, 0 to 100.
    pub min_confidence: f64,
    pub latency_bound_ms: f64,
    /// The verdict of record, or why there is none.
    pub verdict: Result<&'a ReadinessReport, String>,
    /// The statistics it was judged on.
    pub snapshot: Option<&'a StatsSnapshot>,
    pub history: &'a History,
}

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted
/// attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status(ready: bool) -> &'static str {
    if ready {
        "READY"
    } else {
        "NOT READY"
    }
}

/// The whole document.
pub fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>pgdog: migration readiness</title><style>{STYLE}</style></head><body>",
        page.refresh_secs
    );
    out.push_str("<header><h1>pgdog: migration readiness</h1>");
    match &page.verdict {
        Ok(report) => {
            let _ = write!(
                out,
                "<p class=\"meta\">Policy <b>{}</b>; READY needs every criterion at {:.0}% confidence or more. \
                 This page reloads every {} s (taken at <span class=\"time\">{}</span>).</p></header>",
                escape(&report.policy),
                page.min_confidence,
                page.refresh_secs,
                clock(page.generated_at)
            );
            let stats = |name: &str| {
                page.snapshot.and_then(|s| {
                    if name.is_empty() {
                        Some(&s.overall)
                    } else {
                        s.databases.iter().find(|d| d.database.as_str() == name)
                    }
                })
            };
            if report.databases.len() != 1 {
                database(&mut out, page, &report.overall, stats(""), true);
            }
            for db in report.databases.iter() {
                database(&mut out, page, db, stats(&db.database), false);
            }
        }
        Err(e) => {
            let _ = write!(
                out,
                "</header><section class=\"db\" data-database=\"\"><div class=\"verdict unknown\">\
                 <p class=\"status\">UNKNOWN</p><p>No verdict: {}</p></div></section>",
                escape(e)
            );
        }
    }
    out.push_str(
        "<footer>The same verdict as <a href=\"/readiness\">/readiness</a> and \
         <code>SHOW MIRROR READINESS</code>; counters at <a href=\"/metrics\">/metrics</a>.</footer>\
         </body></html>\n",
    );
    out
}

fn database(
    out: &mut String,
    page: &Page<'_>,
    report: &DatabaseReport,
    stats: Option<&DatabaseStats>,
    overall: bool,
) {
    let name = if overall {
        "all databases".to_string()
    } else {
        escape(&report.database)
    };
    let class = if report.ready { "ready" } else { "not-ready" };
    let _ = write!(
        out,
        "<section class=\"db\" data-database=\"{}\"><h2>{name}</h2>\
         <div class=\"verdict {class}\"><p class=\"status\">{}</p>\
         <p class=\"figures\">confidence <b>{:.1}%</b> (the smallest criterion's) · \
         observed for {} · {} requests mirrored</p>",
        if overall {
            String::new()
        } else {
            escape(&report.database)
        },
        status(report.ready),
        report.confidence,
        format_window(report.window_secs),
        report.total_requests
    );
    if !report.reasons.is_empty() {
        out.push_str("<ul class=\"reasons\">");
        for r in report.reasons.iter() {
            let _ = write!(out, "<li>{}</li>", escape(&r.message));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");

    // Criteria, with their confidence over time.
    let confidences = read_confidences(&report.extensions);
    if !confidences.is_empty() {
        let points = thin(&page.history.points(&report.database), DRAWN_SPARK);
        out.push_str(
            "<h3>Criteria</h3><table class=\"criteria\"><thead><tr><th>criterion</th>\
             <th>measured against limit</th><th>confidence</th><th>confidence over time</th></tr></thead><tbody>",
        );
        for c in &confidences {
            let series: Vec<(f64, f32)> = match CRITERIA.iter().position(|&n| n == c.criterion) {
                Some(i) => points.iter().map(|p| (p.at, p.criteria[i])).collect(),
                None => Vec::new(),
            };
            let held = if c.confidence >= page.min_confidence {
                "held"
            } else {
                "short"
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{held}\">{:.1}%</td><td>{}</td></tr>",
                escape(&criterion_name(&c.criterion)),
                escape(&c.text),
                c.confidence,
                svg::sparkline(&series, page.min_confidence)
            );
        }
        out.push_str("</tbody></table>");
    }

    if let Some(coverage) = Coverage::read(&report.extensions) {
        let _ = write!(
            out,
            "<h3>Coverage</h3><p class=\"coverage\">{} ({} distinct statements).</p>",
            escape(&coverage.describe()),
            coverage.fingerprints
        );
    }

    if let Some(stats) = stats {
        let _ = write!(
            out,
            "<h3>Latency</h3><p class=\"legend\"><span class=\"key mirror\">mirror</span> \
             p50 {:.2} ms, p99 {:.2} ms · <span class=\"key primary\">primary</span> p50 {:.2} ms, \
             p99 {:.2} ms · <span class=\"key bound\">bound</span> {} ms</p>{}",
            stats.mirror_latency.p50_ms,
            stats.mirror_latency.p99_ms,
            stats.primary_latency.p50_ms,
            stats.primary_latency.p99_ms,
            page.latency_bound_ms,
            svg::latency(
                &stats.mirror_latency,
                &stats.primary_latency,
                page.latency_bound_ms
            )
        );
    }

    traffic(out, &thin(&page.history.points(&report.database), DRAWN));

    if !overall {
        if let Some(snapshot) = page.snapshot {
            statements(out, snapshot, &report.database, page.generated_at);
        }
    }
    out.push_str("</section>");
}

/// One layer of the traffic chart: CSS class, legend, and the counter drawn.
type Layer = (&'static str, &'static str, fn(&Point) -> u64);

/// The traffic chart's layers, bottom up.
const LAYERS: [Layer; 11] = [
    ("mirrored", "mirrored", |p| p.mirrored),
    ("class-schema_drift", "schema drift", |p| p.classes[0]),
    ("class-permissions", "permissions", |p| p.classes[1]),
    ("class-capacity", "capacity", |p| p.classes[2]),
    ("class-concurrency", "concurrency", |p| p.classes[3]),
    ("class-data", "data", |p| p.classes[4]),
    ("class-configuration", "configuration", |p| p.classes[5]),
    ("class-other", "other query errors", |p| p.classes[6]),
    (
        "errors",
        "timeouts, connection and shared errors",
        Point::unclassed_errors,
    ),
    ("dropped", "dropped", |p| p.dropped),
    ("skipped", "skipped", |p| p.skipped),
];

/// Mirrored, the mirror's errors by class, the other errors, dropped and skipped, as
/// rates over time; the legend names only the layers that grew.
fn traffic(out: &mut String, points: &[Point]) {
    let grew: Vec<bool> = LAYERS
        .iter()
        .map(|(_, _, count)| match (points.first(), points.last()) {
            (Some(a), Some(b)) => count(b) > count(a),
            _ => false,
        })
        .collect();
    let mut legend: Vec<String> = LAYERS
        .iter()
        .zip(&grew)
        .filter(|(_, &grew)| grew)
        .map(|((class, name, _), _)| format!("<span class=\"key {class}\">{name}</span>"))
        .collect();
    if legend.is_empty() {
        legend.push("<span class=\"key mirrored\">mirrored</span>".into());
    }
    let series: Vec<(f64, Vec<u64>)> = points
        .iter()
        .map(|p| (p.at, LAYERS.iter().map(|(_, _, count)| count(p)).collect()))
        .collect();
    let classes: Vec<&str> = LAYERS.iter().map(|(class, _, _)| *class).collect();
    let _ = write!(
        out,
        "<h3>Traffic</h3><p class=\"legend\">{}, requests per second (errors by SQLSTATE class \
         are the mirror's own)</p>{}",
        legend.join(" · "),
        svg::stacked(&series, &classes)
    );
}

/// `max_error_rate` -> `error rate`.
fn criterion_name(criterion: &str) -> String {
    match criterion {
        "max_error_rate" => "error rate".into(),
        "max_latency" => "p99 latency".into(),
        "max_drop_rate" => "drop rate".into(),
        "max_mismatch_rate" => "mismatch rate".into(),
        other => other.replace('_', " "),
    }
}

/// The top statements of `database` by mismatches, by the mirror's own errors and by
/// latency regression.
fn statements(out: &mut String, snapshot: &StatsSnapshot, database: &str, now: f64) {
    let all: Vec<&FingerprintStats> = snapshot
        .fingerprints
        .iter()
        .filter(|f| f.database.as_str() == database)
        .collect();
    let mut mismatches: Vec<_> = all.iter().filter(|f| f.mismatches > 0).copied().collect();
    mismatches.sort_by_key(|f| std::cmp::Reverse(f.mismatches));
    let mut errors: Vec<_> = all.iter().filter(|f| f.errors > 0).copied().collect();
    errors.sort_by_key(|f| std::cmp::Reverse(f.errors));
    let mut latency: Vec<_> = all
        .iter()
        .filter(|f| f.paired >= LATENCY_MIN_PAIRED)
        .copied()
        .collect();
    latency.sort_by(|a, b| b.ratio_p50.total_cmp(&a.ratio_p50));
    let mut busiest = all.clone();
    busiest.sort_by_key(|f| std::cmp::Reverse(f.requests));

    out.push_str("<h3>Statements</h3>");
    if all.is_empty() {
        out.push_str(
            "<p class=\"none\">No statement fingerprints yet (comparison off, or no traffic).</p>",
        );
        return;
    }
    out.push_str(
        "<table class=\"statements\"><thead><tr><th>ranked by</th><th>statement</th><th>requests</th>\
         <th>mismatches</th><th>errors</th><th>mirror p50</th><th>primary p50</th><th>ratio</th>\
         <th>since</th><th>example of a difference</th></tr></thead><tbody>",
    );
    for (ranking, list, since) in [
        ("mismatches", mismatches, FIRST_MISMATCH),
        ("errors", errors, FIRST_ERROR),
        ("latency", latency, FIRST_SEEN),
        ("requests", busiest, FIRST_SEEN),
    ] {
        for f in list.into_iter().take(TOP) {
            let (mirror, primary, ratio) = if f.paired > 0 {
                (
                    format!("{:.2} ms", f.mirror_p50_ms),
                    format!("{:.2} ms", f.primary_p50_ms),
                    format!("{:.2}×", f.ratio_p50),
                )
            } else {
                Default::default()
            };
            let since = f
                .first(since)
                .map(|us| since_text(us as f64 / 1e6, now))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{ranking}</td><td><code class=\"query\">{}</code></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{mirror}</td><td>{primary}</td><td>{ratio}</td><td class=\"since\">{since}</td>\
                 <td class=\"example\">{}</td></tr>",
                escape(&f.text),
                f.requests,
                f.mismatches,
                f.errors,
                escape(&f.example)
            );
        }
    }
    out.push_str("</tbody></table>");
}

/// `05:12:09 UTC (14 min ago)`: when something first happened, and how long before
/// `now`.
fn since_text(at: f64, now: f64) -> String {
    let ago = (now - at).max(0.0);
    let ago = match ago as u64 {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    };
    format!("{} ({ago} ago)", clock(at))
}

/// `05:12:09 UTC` from Unix seconds.
fn clock(unix_secs: f64) -> String {
    let s = unix_secs.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, (s % 3600) / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Reason;
    use pgdog_plugin_api::{write_confidences, CriterionConfidence};

    fn db(name: &str, ready: bool, confidence: f64, reasons: &[&str]) -> DatabaseReport {
        let mut d = DatabaseReport {
            database: name.into(),
            ready,
            confidence,
            window_secs: 125.0,
            total_requests: 300,
            reasons: reasons
                .iter()
                .map(|m| Reason::new("max_error_rate", 0.05, 0.05, m.to_string()))
                .collect(),
            ..Default::default()
        };
        write_confidences(
            &mut d.extensions,
            &[CriterionConfidence {
                criterion: "max_error_rate".into(),
                confidence,
                text: "error rate 5.00% (5 of 100 executed), maximum 5.00%".into(),
            }],
        );
        Coverage {
            requests: 300,
            seen_once: 3,
            fingerprints: 7,
            untracked: 0,
        }
        .write(&mut d.extensions);
        d
    }

    fn render_one(report: &ReadinessReport, snapshot: Option<&StatsSnapshot>) -> String {
        let history = History::default();
        history.record(report, &Default::default(), 1000.0);
        render(&Page {
            generated_at: 1000.0,
            refresh_secs: 5,
            min_confidence: 95.0,
            latency_bound_ms: 100.0,
            verdict: Ok(report),
            snapshot,
            history: &history,
        })
    }

    #[test]
    fn ready_database() {
        let d = db("primary", true, 99.5, &[]);
        let report = ReadinessReport {
            policy: "mirror-stats".into(),
            overall: d.clone(),
            databases: vec![d].into(),
            ..Default::default()
        };
        let html = render_one(&report, None);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<section class=\"db\" data-database=\"primary\"><h2>primary</h2>"));
        assert!(html.contains("<div class=\"verdict ready\"><p class=\"status\">READY</p>"));
        assert!(html.contains("confidence <b>99.5%</b>"));
        assert!(html.contains("0h 02m 05s"));
        assert!(html.contains("error rate 5.00% (5 of 100 executed), maximum 5.00%"));
        assert!(html.contains("an estimated 1.00% of traffic is statements not yet mirrored"));
        assert!(html.contains("class=\"chart sparkline\""));
        assert!(!html.contains("NOT READY"));
        assert!(!html.contains("class=\"reasons\""));
        // One database: no separate overall section.
        assert_eq!(html.matches("<section class=\"db\"").count(), 1);
        // Self-contained: nothing fetched from elsewhere.
        for outside in ["<script", "src=", "http://", "https://", "@import", "url("] {
            assert!(!html.contains(outside), "{outside}");
        }
    }

    #[test]
    fn not_ready_with_reasons_statements_and_escaping() {
        let a = db(
            "orders<b>",
            false,
            39.0,
            &["Error rate 5.00% is not shown within 5.00% <at 95%> & more"],
        );
        let b = db("users", true, 99.0, &[]);
        let report = ReadinessReport {
            policy: "mirror-stats".into(),
            overall: DatabaseReport {
                ready: false,
                confidence: 39.0,
                ..Default::default()
            },
            databases: vec![a, b].into(),
            ..Default::default()
        };
        let snapshot = StatsSnapshot {
            databases: vec![DatabaseStats {
                database: "orders<b>".into(),
                ..Default::default()
            }]
            .into(),
            fingerprints: vec![FingerprintStats {
                database: "orders<b>".into(),
                fingerprint: 7,
                text: "SELECT '<script>alert(1)</script>' FROM t WHERE a = ?".into(),
                requests: 9,
                mismatches: 2,
                compared: 9,
                example: "row 1: \"x\" vs 'y' & <z>".into(),
                ..Default::default()
            }]
            .into(),
            ..Default::default()
        };
        let html = render_one(&report, Some(&snapshot));
        assert!(html.contains("data-database=\"orders&lt;b&gt;\"><h2>orders&lt;b&gt;</h2>"));
        assert!(html.contains("<div class=\"verdict not-ready\"><p class=\"status\">NOT READY</p>"));
        assert!(html.contains("<div class=\"verdict ready\"><p class=\"status\">READY</p>"));
        assert!(html.contains(
            "<li>Error rate 5.00% is not shown within 5.00% &lt;at 95%&gt; &amp; more</li>"
        ));
        assert!(html
            .contains("SELECT &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; FROM t WHERE a = ?"));
        assert!(html.contains("row 1: &quot;x&quot; vs &#39;y&#39; &amp; &lt;z&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<b>\""));
        // The overall section and one per database; the statement under mismatches
        // and under requests; the latency chart says it has no samples.
        assert_eq!(html.matches("<section class=\"db\"").count(), 3);
        assert!(html.contains("<tr><td>mismatches</td>"));
        assert!(html.contains("<tr><td>requests</td>"));
        assert!(html.contains("no latency samples yet"));
        assert!(html.contains("class=\"short\">39.0%"));
    }

    /// A page at 100 pools, each with a full history ring, a latency distribution of 40
    /// buckets a side and 50 statements: its size (and, with `--nocapture`, the time it
    /// takes to render, the figure in docs/metrics.md).
    #[test]
    fn a_hundred_pools() {
        use pgdog_plugin_api::{LatencyBucket, LatencySummary};
        let dbs: Vec<DatabaseReport> = (0..100)
            .map(|i| db(&format!("pool{i}"), i % 2 == 0, 97.0, &["a reason"]))
            .collect();
        let report = ReadinessReport {
            policy: "mirror-stats".into(),
            overall: db("", false, 97.0, &[]),
            databases: dbs.clone().into(),
            ..Default::default()
        };
        let latency = LatencySummary {
            samples: 4000,
            p50_ms: 1.0,
            p99_ms: 20.0,
            buckets: (0..40)
                .map(|b| LatencyBucket {
                    le_us: 100 << (b / 4),
                    count: 100,
                })
                .collect(),
            ..Default::default()
        };
        let snapshot = StatsSnapshot {
            databases: dbs
                .iter()
                .map(|d| DatabaseStats {
                    database: d.database.clone(),
                    mirror_latency: latency.clone(),
                    primary_latency: latency.clone(),
                    ..Default::default()
                })
                .collect(),
            fingerprints: dbs
                .iter()
                .flat_map(|d| {
                    (0..50).map(|f| FingerprintStats {
                        database: d.database.clone(),
                        fingerprint: f,
                        text: format!("SELECT a, b, c FROM table_{f} WHERE id = ?").into(),
                        requests: 100 + f,
                        errors: f % 3,
                        mismatches: f % 5,
                        compared: 100,
                        paired: 50,
                        ratio_p50: 1.0 + f as f64 / 10.0,
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        };
        let history = History::default();
        for t in 0..super::super::history::FINE {
            history.record(&report, &Default::default(), t as f64 * 10.0);
        }
        let started = std::time::Instant::now();
        let html = render(&Page {
            generated_at: 3600.0,
            refresh_secs: 5,
            min_confidence: 95.0,
            latency_bound_ms: 100.0,
            verdict: Ok(&report),
            snapshot: Some(&snapshot),
            history: &history,
        });
        let took = started.elapsed();
        eprintln!("100 pools: {} bytes in {took:?}", html.len());
        assert_eq!(html.matches("<section class=\"db\"").count(), 101);
        assert!(html.len() < 2 << 20, "{} bytes", html.len());
        assert_eq!(thin(&[1, 2, 3, 4, 5], 2), vec![2, 5]);
        assert_eq!(thin(&[1, 2, 3, 4], 2), vec![2, 4]);
        assert_eq!(thin(&[1, 2], 5), vec![1, 2]);
    }

    /// The traffic chart stacks the mirror's errors per SQLSTATE class, the other errors,
    /// drops and skipped transactions, and names in its legend only what grew; each
    /// statement says since when it mismatches (or fails, or is seen).
    #[test]
    fn traffic_by_class_and_statements_since_when() {
        use pgdog_plugin_api::errors::{write_classes, ClassErrors, ErrorClass};
        use pgdog_plugin_api::ExtensionValue;
        let report_at = |mirrored: u64, drift: u64, errors: u64| {
            let mut d = db("primary", false, 50.0, &["schema drift"]);
            d.mirrored = mirrored;
            d.errors = errors;
            write_classes(
                &mut d.extensions,
                &[ClassErrors {
                    class: ErrorClass::SchemaDrift,
                    count: drift,
                    worst: None,
                    sqlstates: Vec::new(),
                }],
            );
            ReadinessReport {
                overall: d.clone(),
                databases: vec![d].into(),
                ..Default::default()
            }
        };
        let history = History::default();
        let skipped = |n: u64| std::collections::HashMap::from([("primary".to_string(), n)]);
        history.record(&report_at(0, 0, 0), &skipped(0), 1000.0);
        history.record(&report_at(100, 10, 12), &skipped(30), 1010.0);
        history.record(&report_at(200, 20, 24), &skipped(60), 1020.0);
        let last = report_at(200, 20, 24);
        let mut fp = FingerprintStats {
            database: "primary".into(),
            fingerprint: 1,
            text: "select * from t where id = ?".into(),
            requests: 10,
            mismatches: 2,
            compared: 10,
            ..Default::default()
        };
        fp.extensions
            .set(FIRST_MISMATCH, ExtensionValue::Count(1_000_000_000));
        let snapshot = StatsSnapshot {
            fingerprints: vec![fp].into(),
            ..Default::default()
        };
        let html = render(&Page {
            generated_at: 1020.0,
            refresh_secs: 5,
            min_confidence: 95.0,
            latency_bound_ms: 100.0,
            verdict: Ok(&last),
            snapshot: Some(&snapshot),
            history: &history,
        });
        let legend = html
            .split("<h3>Traffic</h3>")
            .nth(1)
            .and_then(|t| t.split("</p>").next())
            .expect("legend");
        for shown in [
            "mirrored",
            "schema drift",
            "timeouts, connection and shared errors",
            "skipped",
        ] {
            assert!(legend.contains(shown), "{shown}: {legend}");
        }
        for hidden in ["capacity", "dropped"] {
            assert!(!legend.contains(hidden), "{hidden}: {legend}");
        }
        assert!(html.contains("<g class=\"series class-schema_drift\">"));
        assert!(html.contains("<g class=\"series skipped\">"));
        // First mismatch at 1,000 s, the page at 1,020 s.
        assert!(
            html.contains("<td class=\"since\">00:16:40 UTC (20 s ago)</td>"),
            "{html}"
        );
    }

    #[test]
    fn since_text_reads_naturally() {
        assert_eq!(since_text(0.0, 59.0), "00:00:00 UTC (59 s ago)");
        assert_eq!(since_text(0.0, 600.0), "00:00:00 UTC (10 min ago)");
        assert_eq!(since_text(0.0, 3.0 * 3600.0), "00:00:00 UTC (3 h ago)");
        assert_eq!(since_text(0.0, 3.0 * 86_400.0), "00:00:00 UTC (3 days ago)");
    }

    #[test]
    fn no_verdict() {
        let history = History::default();
        let html = render(&Page {
            generated_at: 0.0,
            refresh_secs: 5,
            min_confidence: 95.0,
            latency_bound_ms: 100.0,
            verdict: Err("no readiness plugin <loaded>".into()),
            snapshot: None,
            history: &history,
        });
        assert!(html.contains(
            "<p class=\"status\">UNKNOWN</p><p>No verdict: no readiness plugin &lt;loaded&gt;</p>"
        ));
    }
}
