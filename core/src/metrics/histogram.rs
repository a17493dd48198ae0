//! `pgdog_mirror_latency_seconds{database}`: the lifetime mirror latency histogram.
//!
//! Not an OpenTelemetry instrument: OpenTelemetry has no asynchronous histogram, and the
//! distribution already lives in the stats plugin (an HDR histogram per database, in the
//! snapshot as `(le_us, count)` buckets). Recording every event a second time into an
//! SDK histogram would put work on the event path and disagree with the plugin after a
//! `RESET MIRROR STATS`. So this collector, registered in the same Prometheus registry,
//! re-buckets the snapshot's distribution into fixed bounds at scrape time:
//! O(databases × recorded buckets), independent of the requests served.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::scrape::Scrape;
use crate::plugins::StatsSnapshot;

pub const NAME: &str = "pgdog_mirror_latency_seconds";
const HELP: &str = "Latency of requests the mirror answered, since start or RESET MIRROR STATS";

/// Upper bounds in seconds, 0.5 ms to 10 s.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct LatencyHistogram {
    current: Arc<Mutex<Scrape>>,
    desc: Vec<Desc>,
}

impl LatencyHistogram {
    pub fn new(current: Arc<Mutex<Scrape>>) -> Self {
        let desc = Desc::new(
            NAME.into(),
            HELP.into(),
            vec!["database".into()],
            Default::default(),
        )
        .expect("valid metric description");
        Self {
            current,
            desc: vec![desc],
        }
    }
}

impl Collector for LatencyHistogram {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let scrape = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match scrape.snapshot.as_ref().filter(|_| scrape.mirror_enabled) {
            Some(snapshot) => vec![family(snapshot)],
            None => Vec::new(),
        }
    }
}

/// The family for every database of `snapshot`.
pub fn family(snapshot: &StatsSnapshot) -> MetricFamily {
    let metrics = snapshot
        .databases
        .iter()
        .map(|db| {
            let l = &db.mirror_latency;
            let mut counts = [0u64; BOUNDS.len()];
            for b in l.buckets.iter() {
                let secs = b.le_us as f64 / 1e6;
                if let Some(i) = BOUNDS.iter().position(|&bound| secs <= bound) {
                    counts[i] += b.count;
                }
            }
            let mut cumulative = 0;
            let buckets = BOUNDS
                .iter()
                .zip(counts)
                .map(|(&bound, n)| {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            let mut h = proto::Histogram::default();
            h.set_sample_count(l.samples);
            h.set_sample_sum(l.avg_ms * l.samples as f64 / 1000.0);
            h.set_bucket(buckets);
            let mut label = proto::LabelPair::default();
            label.set_name("database".into());
            label.set_value(db.database.to_string());
            let mut m = proto::Metric::default();
            m.set_label(vec![label]);
            m.set_histogram(h);
            m
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(NAME.into());
    family.set_help(HELP.into());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(metrics);
    family
}
