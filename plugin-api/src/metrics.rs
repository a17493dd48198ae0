//! Metric points a plugin contributes to the metrics endpoint. The host turns them
//! into Prometheus series when scraped; plugins never touch the exporter (a cdylib has
//! its own copy of every global, so it could not reach the host's meter anyway).

use abi_stable::{
    std_types::{RString, RVec, Tuple2},
    StableAbi,
};

/// How a point should be exposed. An open set: hosts expose unknown kinds as gauges.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct MetricKind(pub u8);

impl MetricKind {
    pub const GAUGE: Self = Self(0);
    pub const COUNTER: Self = Self(1);
}

/// One series value, e.g. `mirror{type="mirrored"} 95`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: RString,
    pub help: RString,
    pub kind: MetricKind,
    /// `(label, value)` pairs.
    pub labels: RVec<Tuple2<RString, RString>>,
    pub value: f64,
}

impl MetricPoint {
    /// A gauge with the given labels.
    pub fn gauge(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::GAUGE,
            labels: labels
                .iter()
                .map(|(k, v)| Tuple2(RString::from(*k), RString::from(*v)))
                .collect(),
            value,
        }
    }

    /// The label value for `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|t| t.0.as_str() == key)
            .map(|t| t.1.as_str())
    }
}
