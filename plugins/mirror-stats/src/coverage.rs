//! How many times each (database, fingerprint) was seen, for the Good-Turing estimate of
//! the share of traffic that is statements the mirror has not run yet
//! (`pgdog_plugin_api::coverage`).
//!
//! The table is bounded ([`MAX_FINGERPRINTS`] entries, about 16 bytes each): once full, a
//! request of a fingerprint not in it counts as `untracked`, and the estimate takes it
//! as seen once, erring towards "not covered yet". Counts are kept per database slot,
//! updated as requests come, so reading them is O(databases).

use std::collections::HashMap;

use pgdog_plugin_api::{abi_stable::std_types::ROption, Coverage, MirrorEvent};

/// Most (database, fingerprint) pairs counted.
pub const MAX_FINGERPRINTS: usize = 200_000;

#[derive(Default)]
pub struct Fingerprints {
    seen: HashMap<(usize, u64), u32>,
    /// Per database slot.
    coverage: Vec<Coverage>,
}

impl Fingerprints {
    /// Counts `ev` of database `slot` when it was executed and has a fingerprint.
    pub fn record(&mut self, slot: usize, ev: &MirrorEvent) {
        let ROption::RSome(fingerprint) = ev.fingerprint else {
            return;
        };
        if ev.is_dropped() {
            return;
        }
        if self.coverage.len() <= slot {
            self.coverage.resize(slot + 1, Coverage::default());
        }
        let room = self.seen.len() < MAX_FINGERPRINTS;
        let c = &mut self.coverage[slot];
        c.requests += 1;
        match self.seen.get_mut(&(slot, fingerprint)) {
            Some(n) => {
                if *n == 1 {
                    c.seen_once -= 1;
                }
                *n = n.saturating_add(1);
            }
            None if room => {
                self.seen.insert((slot, fingerprint), 1);
                c.seen_once += 1;
                c.fingerprints += 1;
            }
            None => c.untracked += 1,
        }
    }

    /// The counts of database `slot`, `None` when it has had no fingerprint.
    pub fn of(&self, slot: usize) -> Option<Coverage> {
        self.coverage.get(slot).copied().filter(|c| c.requests > 0)
    }

    /// All databases together, `None` when none has had a fingerprint.
    pub fn overall(&self) -> Option<Coverage> {
        let mut total = Coverage::default();
        for c in &self.coverage {
            total.add(c);
        }
        (total.requests > 0).then_some(total)
    }

    pub fn clear(&mut self) {
        self.seen.clear();
        self.coverage.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{compared, dropped};

    #[test]
    fn singletons_come_and_go() {
        let mut f = Fingerprints::default();
        assert_eq!(f.overall(), None);
        for fp in 0..10 {
            f.record(0, &compared(0, fp, 100, 100, false));
        }
        f.record(1, &compared(1, 3, 100, 100, false));
        let c = f.of(0).unwrap();
        assert_eq!((c.requests, c.seen_once, c.fingerprints), (10, 10, 10));
        for fp in 0..5 {
            f.record(0, &compared(0, fp, 100, 100, false));
        }
        let c = f.of(0).unwrap();
        assert_eq!((c.requests, c.seen_once, c.fingerprints), (15, 5, 10));
        // Drops and requests without a fingerprint do not count.
        let mut d = dropped(0);
        d.fingerprint = ROption::RSome(99);
        f.record(0, &d);
        f.record(0, &crate::testing::ok(0, 100));
        assert_eq!(f.of(0).unwrap().requests, 15);
        // The same fingerprint in another database is another statement.
        assert_eq!(f.of(1).unwrap().seen_once, 1);
        assert_eq!(f.overall().unwrap().seen_once, 6);
        assert_eq!(f.of(2), None);
        f.clear();
        assert_eq!(f.overall(), None);
    }
}
