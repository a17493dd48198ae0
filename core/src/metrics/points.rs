//! The plugins' families (the spec's `mirror` among them), written from their metric
//! points with the conventions the OpenTelemetry exporter applied to them before (see
//! `docs/metrics.md`), so plugin output keeps its exact lines:
//!
//! * a family name must be a valid OpenTelemetry instrument name (an ASCII letter,
//!   then up to 254 ASCII letters, digits, `_`, `.`, `-`, `/`); `.`, `-`, `/` become `_`;
//! * label names: anything but ASCII letters, digits and `:` becomes `_`; a repeated
//!   name keeps its first value; names equal after that are one label whose values
//!   are joined with `;` (in the order of the original names); labels sorted by name;
//! * points whose value is NaN or infinite are left out; of two points with the same
//!   labels, the last one counts;
//! * series sorted by number of labels, then by label values (as the registry did).

use std::borrow::Cow;

use smallvec::SmallVec;

use super::scrape::SpecRows;
use super::text::{Kind, Writer};
use crate::plugins::{MetricKind, MetricPoint};

/// The spec's family: written from [`SpecRows`] when the stats plugin's `scrape` answer
/// carried them, instead of from that plugin's points.
pub const SPEC_FAMILY: &str = "mirror";

/// A family plugins contribute, as declared by the first point seen at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFamily {
    /// The name the plugins' points carry.
    pub source: String,
    /// The exposition name.
    pub name: String,
    pub help: String,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("plugin metric family {0:?} is not a valid instrument name; its points are not exported")]
pub struct InvalidName(pub String);

impl PluginFamily {
    pub fn new(source: &str, help: &str, kind: MetricKind) -> Result<Self, InvalidName> {
        let valid = source.len() <= 255
            && source.starts_with(|c: char| c.is_ascii_alphabetic())
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
        if !valid {
            return Err(InvalidName(source.to_string()));
        }
        let name = source.replace(['.', '-', '/'], "_");
        Ok(Self {
            source: source.to_string(),
            name,
            help: help.to_string(),
            kind: if kind == MetricKind::COUNTER {
                Kind::Counter
            } else {
                Kind::Gauge
            },
        })
    }

    /// Writes the samples of this family found in `points` (and in `spec`, for the
    /// spec's family).
    pub fn samples(&self, w: &mut Writer, points: &[MetricPoint], spec: Option<&SpecRows<'_>>) {
        let mut labels = Labels::with_capacity(2 * points.len());
        let mut series: Vec<Series> = points
            .iter()
            .filter(|p| p.name.as_str() == self.source && p.value.is_finite())
            .map(|p| {
                let pairs: SmallVec<[(&str, &str); 4]> = p
                    .labels
                    .iter()
                    .map(|t| (t.0.as_str(), t.1.as_str()))
                    .collect();
                Series::new(&pairs, p.value, &mut labels)
            })
            .collect();
        if let Some(spec) = spec.filter(|_| self.source == SPEC_FAMILY) {
            labels.reserve(2 * 4 * spec.databases_len());
            for (pairs, n, value) in spec.series() {
                if value.is_finite() {
                    series.push(Series::new(&pairs[..n], value, &mut labels));
                }
            }
        }
        let order = sorted(&series, &labels);
        for (k, &i) in order.iter().enumerate() {
            let s = &series[i];
            if order
                .get(k + 1)
                .is_some_and(|&next| same_labels(s, &series[next], &labels))
            {
                continue; // superseded by a later point with the same labels
            }
            let pairs: SmallVec<[(&str, &str); 4]> = s
                .labels(&labels)
                .iter()
                .map(|(k, v)| (&**k, &**v))
                .collect();
            w.sample(&self.name, &pairs, s.value);
        }
    }
}

/// Label pairs of every series of a family, one after the other.
type Labels<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// One point: its labels (a range of the family's [`Labels`], in exposition form) and value.
struct Series {
    start: usize,
    end: usize,
    value: f64,
}

impl Series {
    fn new<'a>(pairs: &[(&'a str, &'a str)], value: f64, labels: &mut Labels<'a>) -> Self {
        let start = labels.len();
        // Usual case: names already valid, distinct and in order.
        if pairs.iter().all(|t| valid_label(t.0)) && pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            labels.extend(
                pairs
                    .iter()
                    .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v))),
            );
        } else {
            normalise(pairs, labels);
        }
        Series {
            start,
            end: labels.len(),
            value,
        }
    }

    fn labels<'l, 'a>(&self, labels: &'l Labels<'a>) -> &'l [(Cow<'a, str>, Cow<'a, str>)] {
        &labels[self.start..self.end]
    }
}

/// Appends the labels `pairs` sanitised, de-duplicated, merged and sorted by name.
fn normalise<'a>(pairs: &[(&'a str, &'a str)], labels: &mut Labels<'a>) {
    let mut original: SmallVec<[(&'a str, &'a str); 4]> = pairs.iter().copied().collect();
    original.sort_by(|a, b| a.0.cmp(b.0));
    original.dedup_by(|later, first| later.0 == first.0);
    let mut sanitised: SmallVec<[(Cow<'a, str>, &str); 4]> = original
        .into_iter()
        .map(|(k, v)| (sanitize_label(k), v))
        .collect();
    sanitised.sort_by(|a, b| a.0.cmp(&b.0));
    let start = labels.len();
    for (k, v) in sanitised {
        match labels[start..].last_mut() {
            Some((last, values)) if *last == k => *values = Cow::Owned(format!("{values};{v}")),
            _ => labels.push((k, Cow::Borrowed(v))),
        }
    }
}

fn same_labels(a: &Series, b: &Series, labels: &Labels<'_>) -> bool {
    a.labels(labels) == b.labels(labels)
}

/// Positions of `series` in exposition order.
///
/// The registry's order: by number of labels, then by label values; label names break
/// the remaining ties (so equal label sets end up side by side); stable otherwise. In two
/// passes, since plugins list their series by database already: by count and first
/// value (a nearly sorted input, which the stable sort merges in about linear time),
/// then within each run of equal first values. Sorting positions, not series, moves
/// 8 bytes per element.
fn sorted(series: &[Series], labels: &Labels<'_>) -> Vec<usize> {
    let first = |s: &Series| (s.end - s.start, s.labels(labels).first().map(|l| &l.1));
    let rest = |a: &Series, b: &Series| {
        let (x, y) = (a.labels(labels), b.labels(labels));
        let values = x.iter().map(|l| &l.1).cmp(y.iter().map(|l| &l.1));
        values.then_with(|| x.iter().map(|l| &l.0).cmp(y.iter().map(|l| &l.0)))
    };
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by(|&a, &b| first(&series[a]).cmp(&first(&series[b])));
    let mut start = 0;
    while start < order.len() {
        let key = first(&series[order[start]]);
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| first(&series[i]) == key)
                .count();
        if end - start > 1 {
            order[start..end].sort_by(|&a, &b| rest(&series[a], &series[b]));
        }
        start = end;
    }
    order
}

/// Whether `s` is left as it is by [`sanitize_label`].
fn valid_label(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_')
}

/// `s` with every character but ASCII letters, digits and `:` replaced by `_`.
fn sanitize_label(s: &str) -> Cow<'_, str> {
    if valid_label(s) {
        return Cow::Borrowed(s);
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == ':';
    Cow::Owned(s.chars().map(|c| if ok(c) { c } else { '_' }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let f = PluginFamily::new("a.b-c/d_e", "h", MetricKind::COUNTER).unwrap();
        assert_eq!((f.name.as_str(), f.kind), ("a_b_c_d_e", Kind::Counter));
        let f = PluginFamily::new("mirror", "h", MetricKind(7)).unwrap();
        assert_eq!((f.name.as_str(), f.kind), ("mirror", Kind::Gauge));
        for bad in ["", "1abc", "_abc", "a b", "é", &"a".repeat(256)] {
            assert!(
                PluginFamily::new(bad, "", MetricKind::GAUGE).is_err(),
                "{bad}"
            );
        }
        assert_eq!(sanitize_label("a:b_C9"), "a:b_C9");
        assert_eq!(sanitize_label("a.b-é"), "a_b__");
    }
}
