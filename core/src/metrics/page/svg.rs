//! Charts drawn on the server as inline SVG: no script, no library, no network, and
//! a few hundred bytes each. Pure functions of the data, so they are unit-tested.
//!
//! Every chart is an `<svg class="chart ...">` with `<g class="axis ...">` groups and
//! one `<g class="series ...">` per data series, which the tests count.

use std::fmt::Write;

use pgdog_plugin_api::LatencySummary;

const W: f64 = 520.0;
const H: f64 = 180.0;
/// Margins: left, right, top, bottom.
const ML: f64 = 44.0;
const MR: f64 = 12.0;
const MT: f64 = 10.0;
const MB: f64 = 30.0;

/// Mirror and primary latency distributions on one chart: the share of requests at or
/// below each latency (an empirical CDF) on a log-scale axis in ms, with each side's p50
/// and p99 and the readiness bound drawn as vertical lines.
pub fn latency(mirror: &LatencySummary, primary: &LatencySummary, bound_ms: f64) -> String {
    let series: Vec<(&str, &LatencySummary)> = [("mirror", mirror), ("primary", primary)]
        .into_iter()
        .filter(|(_, s)| s.buckets.iter().any(|b| b.count > 0))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart latency" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="latency distribution, mirror against primary">"#
    );
    if series.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="empty">no latency samples yet</text></svg>"#,
            W / 2.0 - 70.0,
            H / 2.0
        );
        return out;
    }
    // The x range: every non-empty bucket's bound and the lines drawn, in decades.
    let mut lo = f64::MAX;
    let mut hi = f64::MIN;
    let mut widen = |ms: f64| {
        if ms > 0.0 && ms.is_finite() {
            lo = lo.min(ms);
            hi = hi.max(ms);
        }
    };
    for (_, s) in &series {
        for b in s.buckets.iter().filter(|b| b.count > 0) {
            widen(b.le_us as f64 / 1000.0);
        }
        widen(s.p50_ms);
        widen(s.p99_ms);
    }
    widen(bound_ms);
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    let x = |ms: f64| {
        let ms = ms.clamp(lo, hi);
        ML + (ms.log10() - lo.log10()) / (hi.log10() - lo.log10()) * (W - ML - MR)
    };
    let y = |share: f64| MT + (1.0 - share) * (H - MT - MB);

    // Axes: decades on x, 0/50/100 % on y.
    out.push_str(r#"<g class="axis x">"#);
    let _ = write!(
        out,
        r#"<line x1="{ML}" y1="{0}" x2="{1}" y2="{0}"/>"#,
        y(0.0),
        W - MR
    );
    let mut tick = lo;
    while tick <= hi * 1.0001 {
        let _ = write!(
            out,
            r#"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4} ms</text>"#,
            x(tick),
            y(0.0),
            y(0.0) + 4.0,
            H - 8.0,
            trim(tick)
        );
        tick *= 10.0;
    }
    out.push_str("</g>");
    out.push_str(r#"<g class="axis y">"#);
    for share in [0.0, 0.5, 1.0] {
        let _ = write!(
            out,
            r#"<line x1="{ML}" y1="{0:.1}" x2="{1}" y2="{0:.1}" class="grid"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}%</text>"#,
            y(share),
            W - MR,
            ML - 4.0,
            y(share) + 4.0,
            share * 100.0
        );
    }
    out.push_str("</g>");

    for (name, s) in &series {
        cdf(&mut out, name, s, (lo, hi), &x, &y);
    }
    if bound_ms > 0.0 {
        let _ = write!(
            out,
            r#"<g class="bound"><line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}"/><text x="{3:.1}" y="{4}">bound {5} ms</text></g>"#,
            x(bound_ms),
            MT,
            y(0.0),
            x(bound_ms) - 4.0,
            MT + 12.0,
            trim(bound_ms)
        );
    }
    out.push_str("</svg>");
    out
}

/// One series of [`latency`]: its CDF as a step line, and its p50 and p99 marks.
fn cdf(
    out: &mut String,
    name: &str,
    s: &LatencySummary,
    (lo, hi): (f64, f64),
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let total: u64 = s.buckets.iter().map(|b| b.count).sum();
    let _ = write!(out, r#"<g class="series {name}"><polyline points=""#);
    let mut seen = 0u64;
    let mut prev = 0.0;
    let _ = write!(out, "{:.1},{:.1}", x(lo), y(0.0));
    for b in s.buckets.iter().filter(|b| b.count > 0) {
        seen += b.count;
        let share = seen as f64 / total as f64;
        let bx = x(b.le_us as f64 / 1000.0);
        let _ = write!(out, " {bx:.1},{:.1} {bx:.1},{:.1}", y(prev), y(share));
        prev = share;
    }
    let _ = write!(out, " {:.1},{:.1}\"/>", x(hi), y(prev));
    for (label, ms) in [("p50", s.p50_ms), ("p99", s.p99_ms)] {
        if ms > 0.0 {
            let _ = write!(
                out,
                r#"<line class="mark {label}" x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}"><title>{name} {label} {3:.2} ms</title></line>"#,
                x(ms),
                MT,
                y(0.0),
                ms
            );
        }
    }
    out.push_str("</g>");
}

/// A criterion's confidence over time (0 to 100 %), with the confidence READY needs
/// as a dashed line. `points` are (Unix seconds, confidence); NaN values are gaps.
pub fn sparkline(points: &[(f64, f32)], needed: f64) -> String {
    const SW: f64 = 160.0;
    const SH: f64 = 32.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart sparkline" viewBox="0 0 {SW} {SH}" width="{SW}" height="{SH}" role="img" aria-label="confidence over time">"#
    );
    let y = |c: f64| 2.0 + (1.0 - c.clamp(0.0, 100.0) / 100.0) * (SH - 4.0);
    if needed > 0.0 {
        let _ = write!(
            out,
            r#"<line class="needed" x1="0" y1="{0:.1}" x2="{SW}" y2="{0:.1}"/>"#,
            y(needed)
        );
    }
    let known: Vec<(f64, f64)> = points
        .iter()
        .filter(|(_, c)| c.is_finite())
        .map(|&(t, c)| (t, c as f64))
        .collect();
    if let (Some(first), Some(last)) = (known.first(), known.last()) {
        let span = (last.0 - first.0).max(1.0);
        let x = |t: f64| 2.0 + (t - first.0) / span * (SW - 4.0);
        out.push_str(r#"<g class="series confidence"><polyline points=""#);
        for (i, &(t, c)) in known.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(out, "{sep}{:.1},{:.1}", x(t), y(c));
        }
        let _ = write!(
            out,
            r#""/><circle r="2" cx="{:.1}" cy="{:.1}"/></g>"#,
            x(last.0),
            y(last.1)
        );
    }
    out.push_str("</svg>");
    out
}

/// Traffic over time as a stacked area: for each interval between `points` (Unix
/// seconds, then one cumulative counter per layer), each layer's increase per second,
/// stacked in the order of `layers`. A counter that goes down (statistics reset) starts
/// again from 0. A layer that never grows is not drawn (the page stays small with many
/// layers at many pools).
pub fn stacked(points: &[(f64, Vec<u64>)], layers: &[&str]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart traffic" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="mirrored traffic over time">"#
    );
    // Per interval: (end time, rate per layer).
    let rates: Vec<(f64, Vec<f64>)> = points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| {
            let dt = w[1].0 - w[0].0;
            let rate = w[1]
                .1
                .iter()
                .zip(&w[0].1)
                .map(|(&now, &before)| now.checked_sub(before).unwrap_or(now) as f64 / dt)
                .collect();
            (w[1].0, rate)
        })
        .collect();
    if rates.len() < 2 {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="empty">collecting: a point every 10 s while this page is open</text></svg>"#,
            ML,
            H / 2.0
        );
        return out;
    }
    let top = rates
        .iter()
        .map(|(_, r)| r.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0);
    let (t0, t1) = (rates[0].0, rates[rates.len() - 1].0);
    let x = |t: f64| ML + (t - t0) / (t1 - t0) * (W - ML - MR);
    let y = |v: f64| MT + (1.0 - v / top) * (H - MT - MB);
    let _ = write!(
        out,
        r#"<g class="axis x"><line x1="{ML}" y1="{0}" x2="{1}" y2="{0}"/><text x="{ML}" y="{2}">{3}</text><text x="{1}" y="{2}" text-anchor="end">{4}</text></g>"#,
        y(0.0),
        W - MR,
        H - 8.0,
        clock(t0),
        clock(t1)
    );
    let _ = write!(
        out,
        r#"<g class="axis y"><line x1="{ML}" y1="{0}" x2="{ML}" y2="{1}"/><text x="{2}" y="{3}" text-anchor="end">{4}/s</text><text x="{2}" y="{0}" text-anchor="end">0</text></g>"#,
        y(0.0),
        MT,
        ML - 4.0,
        MT + 8.0,
        trim((top * 10.0).round() / 10.0)
    );
    let mut below = vec![0.0; rates.len()];
    for (i, layer) in layers.iter().enumerate() {
        if rates
            .iter()
            .all(|(_, r)| r.get(i).is_none_or(|&v| v == 0.0))
        {
            continue;
        }
        let _ = write!(out, r#"<g class="series {layer}"><polygon points=""#);
        let above: Vec<f64> = rates
            .iter()
            .zip(&below)
            .map(|((_, r), b)| b + r.get(i).copied().unwrap_or(0.0))
            .collect();
        for ((t, _), v) in rates.iter().zip(&above) {
            let _ = write!(out, "{:.1},{:.1} ", x(*t), y(*v));
        }
        for ((t, _), v) in rates.iter().zip(&below).rev() {
            let _ = write!(out, "{:.1},{:.1} ", x(*t), y(*v));
        }
        out.pop();
        out.push_str("\"/></g>");
        below = above;
    }
    out.push_str("</svg>");
    out
}

/// `05:12:09` from Unix seconds (UTC).
fn clock(unix_secs: f64) -> String {
    let s = unix_secs.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// `0.1`, `1`, `250`: a tick or bound label without trailing zeros.
fn trim(ms: f64) -> String {
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdog_plugin_api::LatencyBucket;

    fn summary(buckets: &[(u64, u64)], p50: f64, p99: f64) -> LatencySummary {
        LatencySummary {
            samples: buckets.iter().map(|b| b.1).sum(),
            p50_ms: p50,
            p99_ms: p99,
            buckets: buckets
                .iter()
                .map(|&(le_us, count)| LatencyBucket { le_us, count })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn latency_has_axes_two_series_marks_and_the_bound() {
        let mirror = summary(&[(500, 10), (2_000, 80), (40_000, 10)], 1.9, 38.0);
        let primary = summary(&[(400, 50), (1_000, 50)], 0.5, 0.99);
        let svg = latency(&mirror, &primary, 100.0);
        assert!(svg.starts_with("<svg class=\"chart latency\""), "{svg}");
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<g class=\"series ").count(), 2, "{svg}");
        assert!(svg.contains("<g class=\"series mirror\">"));
        assert!(svg.contains("<g class=\"series primary\">"));
        assert_eq!(svg.matches("<g class=\"axis ").count(), 2);
        assert_eq!(svg.matches("class=\"mark p50\"").count(), 2);
        assert_eq!(svg.matches("class=\"mark p99\"").count(), 2);
        assert!(svg.contains("bound 100 ms"), "{svg}");
        // Decades from 0.1 ms (below the 0.4 ms bucket) to 100 ms (the bound).
        assert!(
            svg.contains(">0.1 ms<") && svg.contains(">100 ms<"),
            "{svg}"
        );
        assert!(!svg.contains(">1000 ms<"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn latency_without_samples_says_so() {
        let empty = LatencySummary::default();
        let svg = latency(&empty, &empty, 100.0);
        assert!(svg.contains("no latency samples yet"));
        assert_eq!(svg.matches("<g class=\"series ").count(), 0);
        // Only the mirror has samples: one series.
        let mirror = summary(&[(1_000, 3)], 1.0, 1.0);
        assert_eq!(
            latency(&mirror, &empty, 0.0)
                .matches("<g class=\"series ")
                .count(),
            1
        );
    }

    #[test]
    fn stacked_layers_are_rates_stacked_in_order() {
        let points: Vec<(f64, Vec<u64>)> = vec![
            (0.0, vec![0, 0, 0]),
            (10.0, vec![100, 10, 0]),
            (20.0, vec![300, 10, 20]),
            // A reset: counters start again.
            (30.0, vec![50, 0, 0]),
        ];
        let svg = stacked(&points, &["mirrored", "errors", "dropped", "skipped"]);
        // `skipped` never grew: not drawn.
        assert_eq!(svg.matches("<g class=\"series ").count(), 3, "{svg}");
        assert_eq!(svg.matches("<g class=\"axis ").count(), 2);
        // The busiest interval: 20 + 0 + 2 per second is the top of the y axis.
        assert!(svg.contains(">22/s<"), "{svg}");
        assert!(
            svg.contains(">00:00:10<") && svg.contains(">00:00:30<"),
            "{svg}"
        );
        assert!(!svg.contains("NaN"), "{svg}");
        // Too few points: a note instead of a chart.
        let svg = stacked(&points[..2], &["mirrored"]);
        assert!(svg.contains("collecting"), "{svg}");
    }

    #[test]
    fn sparkline_scales_and_skips_gaps() {
        let svg = sparkline(&[(0.0, 0.0), (10.0, f32::NAN), (20.0, 100.0)], 95.0);
        assert!(svg.contains("points=\"2.0,30.0 158.0,2.0\""), "{svg}");
        assert!(svg.contains("class=\"needed\""));
        assert_eq!(svg.matches("<g class=\"series ").count(), 1);
        let empty = sparkline(&[], 95.0);
        assert_eq!(empty.matches("<g class=\"series ").count(), 0);
    }
}
