//! Metrics: the Prometheus text exposition on `[general] metrics_host:metrics_port`.
//!
//! ```text
//! GET /metrics --http--> flush plugin events --> Metrics::scrape:
//!     scrape thread:  metric points -> snapshot -> readiness report   (plugin calls)
//!     writer thread:  pool counters, queue depths; then each family as soon as its
//!                     data is there --> in name order --> the response body (chunked)
//! ```
//!
//! The plugin calls are serial (they share the plugins' locks) and take most of a
//! scrape. Writing the families beside them, and sending each as soon as the ones
//! before it in name order are out, leaves only the last few (the readiness families
//! and those after them) to write and send once the calls are done.
//!
//! Nothing here runs on the query path: sessions bump relaxed atomics in
//! [`crate::backend::pool::PoolStats`] and the mirror reports events to the plugin host;
//! everything is read when Prometheus scrapes, and a scrape costs O(pools + databases
//! + recorded latency buckets), whatever the number of requests served.
//!
//! Why text and not OpenTelemetry instruments behind `opentelemetry-prometheus`, as
//! the first version did: every family is per database, and that pipeline cost about
//! 2 µs per series (SDK aggregation ~1.2 µs, conversion to protobuf families and
//! `Registry::gather` ~0.5 µs, text encoding ~0.3 µs), 70 ms for the ~42,000 series
//! of 1,000 pools against a 5 ms budget (figures in `docs/benchmarks.md`). The output
//! is the same, byte for byte (`tests.rs` holds the old pipeline's output).
//!
//! Families: see `docs/metrics.md`.

mod assembly;
mod family;
mod histogram;
pub mod http;
mod mirror;
mod points;
mod pools;
mod readiness_json;
mod scrape;
mod text;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::proxy::Proxy;
use assembly::Assembly;
use family::Entry;
pub use histogram::BOUNDS_US as LATENCY_BOUNDS_US;
pub use http::serve;
use points::PluginFamily;
pub use scrape::Scrape;
use scrape::Source;

/// Content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The families one proxy exports, in exposition order (by name).
pub struct Metrics {
    entries: Vec<Entry>,
    /// Size of each family in the last exposition, to allocate the next one at once.
    last_sizes: Vec<AtomicUsize>,
}

impl Metrics {
    /// pgdog's families and the plugins' `(name, help, kind)` families. A plugin family
    /// with an invalid name, or whose name another family already has, is left out
    /// (and logged).
    pub fn new(plugin_families: &[(String, String, crate::plugins::MetricKind)]) -> Self {
        let mut entries: Vec<Entry> = pools::FAMILIES
            .iter()
            .chain(&mirror::FAMILIES)
            .chain([&histogram::FAMILY])
            .map(Entry::Own)
            .collect();
        for (name, help, kind) in plugin_families {
            match PluginFamily::new(name, help, *kind) {
                Ok(f) if entries.iter().any(|e| e.name() == f.name) => {
                    tracing::warn!("plugin metric family {name:?} is exported already; left out")
                }
                Ok(f) => entries.push(Entry::Plugin(f)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        Self {
            last_sizes: entries.iter().map(|_| AtomicUsize::new(4096)).collect(),
            entries,
        }
    }

    /// Sets up metrics for `proxy`: the plugin families are discovered from one call
    /// to the plugins' `metric_points` (a family a plugin only starts producing later
    /// is not exported; plugins are expected to emit their families from the start).
    pub fn for_proxy(proxy: &Proxy) -> Self {
        let mut families: Vec<(String, String, crate::plugins::MetricKind)> = Vec::new();
        for p in proxy.plugins.metric_points() {
            if !families.iter().any(|(name, _, _)| name == p.name.as_str()) {
                families.push((p.name.to_string(), p.help.to_string(), p.kind));
            }
        }
        Self::new(&families)
    }

    /// Reads `proxy` and writes its exposition, handing it to `emit` in parts, in
    /// order, as they are ready: this thread makes the plugin calls, while a second one
    /// reads the proxy's counters and writes each family as soon as its data is there
    /// (see the module docs). Blocking: call it off the async workers, after flushing
    /// plugin events. Returns the data, for the caller to free when convenient (freeing
    /// it here, some 30,000 strings with 1,000 pools, would delay the end of the
    /// exposition; freeing it while the plugins allocate would slow both down).
    pub fn scrape(&self, proxy: &Proxy, emit: impl FnMut(Vec<u8>) + Send) -> Scrape {
        let mirror = proxy.config().general.mirror_metrics_enabled;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let writer = s.spawn(move || {
                let mut scrape = Scrape::own(proxy, mirror);
                let mut out = Assembly::new(self, emit);
                out.write(&scrape, Source::Proxy);
                for part in rx {
                    let source = scrape.add(part);
                    out.write(&scrape, source);
                }
                out.finish();
                scrape
            });
            if mirror {
                scrape::read_plugins(proxy, |part| {
                    let _ = tx.send(part);
                });
            }
            drop(tx);
            writer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The exposition of `scrape` (the same families as [`Metrics::scrape`], written
    /// one source after the other), in one piece.
    pub fn render(&self, scrape: &Scrape) -> Vec<u8> {
        let total = self
            .last_sizes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .sum();
        let mut out = Vec::with_capacity(total);
        let mut assembly = Assembly::new(self, |part: Vec<u8>| out.extend_from_slice(&part));
        for source in Source::ALL {
            assembly.write(scrape, source);
        }
        assembly.finish();
        out
    }
}

#[cfg(test)]
mod tests;
