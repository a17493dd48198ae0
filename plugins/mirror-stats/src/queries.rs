//! Per-fingerprint aggregation for result comparison: counts, one example of a
//! difference, and small latency histograms (mirror, primary, and the paired
//! mirror/primary ratio), per database and normalised statement.
//!
//! The table is bounded: after [`MAX_FINGERPRINTS`] entries, new fingerprints are only
//! counted in `untracked` (their requests still count in the database totals).

use std::collections::HashMap;

use pgdog_plugin_api::stats::{FIRST_ERROR, FIRST_MISMATCH, FIRST_SEEN};
use pgdog_plugin_api::{
    abi_stable::std_types::ROption, Exclusion, ExtensionValue, Extensions, FingerprintStats,
    MirrorEvent, Outcome, Verdict,
};

use crate::loghist::LogHistogram;

/// Most (database, fingerprint) entries kept.
pub const MAX_FINGERPRINTS: usize = 2000;

struct Entry {
    text: String,
    requests: u64,
    errors: u64,
    shared_errors: u64,
    mismatches: u64,
    compared: u64,
    excluded: u64,
    excluded_reason: Exclusion,
    example: Option<String>,
    /// Microseconds.
    mirror: LogHistogram,
    primary: LogHistogram,
    /// Mirror latency / primary latency of the same request.
    ratio: LogHistogram,
    /// When the first request, mismatch and mirror-only error were recorded (the
    /// events' Unix µs; 0: not yet).
    first_seen_us: u64,
    first_mismatch_us: u64,
    first_error_us: u64,
}

impl Entry {
    fn new(text: String) -> Self {
        Self {
            text,
            requests: 0,
            errors: 0,
            shared_errors: 0,
            mismatches: 0,
            compared: 0,
            excluded: 0,
            excluded_reason: Exclusion::NONE,
            example: None,
            mirror: LogHistogram::new(1.0, 32),
            primary: LogHistogram::new(1.0, 32),
            ratio: LogHistogram::new(1.0 / 4096.0, 24),
            first_seen_us: 0,
            first_mismatch_us: 0,
            first_error_us: 0,
        }
    }
}

/// The entry's first request, mismatch and error, as [`FingerprintStats`] extensions.
fn first_instants(e: &Entry) -> Extensions {
    let mut ext = Extensions::default();
    for (name, us) in [
        (FIRST_SEEN, e.first_seen_us),
        (FIRST_MISMATCH, e.first_mismatch_us),
        (FIRST_ERROR, e.first_error_us),
    ] {
        if us > 0 {
            ext.set(name, ExtensionValue::Count(us));
        }
    }
    ext
}

#[derive(Default)]
pub struct Queries {
    entries: HashMap<(usize, u64), Entry>,
    /// Events whose fingerprint found no room in the table.
    pub untracked: u64,
}

impl Queries {
    /// Records `ev` of database slot `db`; `text` is the fingerprint's normalised text
    /// when the batch carries it.
    pub fn record<'t>(
        &mut self,
        db: usize,
        ev: &MirrorEvent,
        text: impl FnOnce(u64) -> Option<&'t str>,
    ) {
        let ROption::RSome(fp) = ev.fingerprint else {
            return;
        };
        if ev.is_dropped() {
            return;
        }
        let len = self.entries.len();
        let entry = match self.entries.get_mut(&(db, fp)) {
            Some(e) => e,
            None if len >= MAX_FINGERPRINTS => {
                self.untracked += 1;
                return;
            }
            None => self
                .entries
                .entry((db, fp))
                .or_insert_with(|| Entry::new(text(fp).unwrap_or("?").to_string())),
        };
        entry.requests += 1;
        let first = |at: &mut u64| {
            if *at == 0 {
                *at = ev.at_unix_us.max(1);
            }
        };
        first(&mut entry.first_seen_us);
        if ev.outcome == Outcome::ERROR {
            if ev.is_shared_error() {
                entry.shared_errors += 1;
            } else {
                entry.errors += 1;
                first(&mut entry.first_error_us);
            }
        }
        match ev.comparison.verdict {
            Verdict::MATCH => entry.compared += 1,
            Verdict::MISMATCH => {
                entry.compared += 1;
                if ev.is_mismatch() {
                    entry.mismatches += 1;
                    first(&mut entry.first_mismatch_us);
                }
                if entry.example.is_none() {
                    entry.example = Some(ev.comparison.describe());
                }
            }
            Verdict::EXCLUDED => {
                entry.excluded += 1;
                entry.excluded_reason = ev.comparison.excluded;
            }
            _ => {}
        }
        let succeeded = ev.outcome == Outcome::MIRRORED || ev.outcome == Outcome::MISMATCH;
        if let (true, ROption::RSome(m)) = (succeeded, ev.mirror_latency_us) {
            entry.mirror.record(m as f64);
            if let ROption::RSome(p) = ev.primary_latency_us {
                entry.primary.record(p as f64);
                entry.ratio.record(m.max(1) as f64 / p.max(1) as f64);
            }
        }
    }

    /// Every tracked fingerprint, `names[db]` naming the databases.
    pub fn snapshot(
        &self,
        names: &[(String, crate::aggregate::Aggregate)],
    ) -> Vec<FingerprintStats> {
        let ms = |us: f64| us / 1000.0;
        let mut out: Vec<FingerprintStats> = self
            .entries
            .iter()
            .map(|(&(db, fp), e)| FingerprintStats {
                database: names.get(db).map_or("?", |(n, _)| n.as_str()).into(),
                fingerprint: fp,
                text: e.text.as_str().into(),
                requests: e.requests,
                errors: e.errors,
                shared_errors: e.shared_errors,
                mismatches: e.mismatches,
                compared: e.compared,
                excluded: e.excluded,
                excluded_reason: if e.excluded > 0 {
                    e.excluded_reason.as_str().into()
                } else {
                    "".into()
                },
                example: e.example.as_deref().unwrap_or("").into(),
                mirror_p50_ms: ms(e.mirror.quantile(0.5)),
                mirror_p99_ms: ms(e.mirror.quantile(0.99)),
                primary_p50_ms: ms(e.primary.quantile(0.5)),
                primary_p99_ms: ms(e.primary.quantile(0.99)),
                paired: e.ratio.len(),
                ratio_p50: if e.ratio.is_empty() {
                    0.0
                } else {
                    e.ratio.quantile(0.5)
                },
                extensions: first_instants(e),
            })
            .collect();
        out.sort_by(|a, b| {
            (b.mismatches, b.errors, b.requests, a.fingerprint).cmp(&(
                a.mismatches,
                a.errors,
                a.requests,
                b.fingerprint,
            ))
        });
        out
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.untracked = 0;
    }
}
