//! Coverage (3.1.0): has the mirror seen the workload?
//!
//! A mirror can be flawless on the statements it has run and never have run the ones that
//! matter. The Good-Turing estimate of the chance that the next request is a statement
//! never seen before is the share of requests whose fingerprint was seen exactly once:
//! `N₁ / N`. A stats plugin that tracks fingerprints puts its counts on
//! [`crate::DatabaseStats::extensions`] (and a policy may copy them to its report):
//!
//! * `coverage.requests` (`Count`): requests the mirror executed with a fingerprint (`N`);
//! * `coverage.seen_once` (`Count`): fingerprints seen exactly once (`N₁`);
//! * `coverage.fingerprints` (`Count`): distinct fingerprints;
//! * `coverage.untracked` (`Count`): requests whose fingerprint the plugin could not
//!   track (its table was full); counted as seen once, so the estimate errs on the side
//!   of "not yet covered".
//!
//! Absent when the plugin does not track fingerprints (result comparison off, or a
//! plugin built before 3.1): coverage is then not measured.

use crate::{ExtensionValue, Extensions};

pub const REQUESTS: &str = "coverage.requests";
pub const SEEN_ONCE: &str = "coverage.seen_once";
pub const FINGERPRINTS: &str = "coverage.fingerprints";
pub const UNTRACKED: &str = "coverage.untracked";

/// Fingerprint counts of one database (or of all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub requests: u64,
    pub seen_once: u64,
    pub fingerprints: u64,
    pub untracked: u64,
}

impl Coverage {
    /// The Good-Turing estimate of the share of traffic that is statements not yet seen:
    /// `(seen_once + untracked) / requests`, 0 before any request.
    pub fn unseen_share(&self) -> f64 {
        match self.requests {
            0 => 0.0,
            n => ((self.seen_once + self.untracked) as f64 / n as f64).min(1.0),
        }
    }

    /// Adds `other` (databases into a total: fingerprints of different databases are
    /// different statements).
    pub fn add(&mut self, other: &Coverage) {
        self.requests += other.requests;
        self.seen_once += other.seen_once;
        self.fingerprints += other.fingerprints;
        self.untracked += other.untracked;
    }

    /// The counts in `ext`, when it has them.
    pub fn read(ext: &Extensions) -> Option<Self> {
        Some(Self {
            requests: ext.count(REQUESTS)?,
            seen_once: ext.count(SEEN_ONCE).unwrap_or(0),
            fingerprints: ext.count(FINGERPRINTS).unwrap_or(0),
            untracked: ext.count(UNTRACKED).unwrap_or(0),
        })
    }

    pub fn write(&self, ext: &mut Extensions) {
        ext.set(REQUESTS, ExtensionValue::Count(self.requests));
        ext.set(SEEN_ONCE, ExtensionValue::Count(self.seen_once));
        ext.set(FINGERPRINTS, ExtensionValue::Count(self.fingerprints));
        ext.set(UNTRACKED, ExtensionValue::Count(self.untracked));
    }

    /// `an estimated 3.10% of traffic is statements not yet mirrored (210 seen once)`.
    pub fn describe(&self) -> String {
        let untracked = if self.untracked > 0 {
            format!(", {} requests untracked", self.untracked)
        } else {
            String::new()
        };
        format!(
            "an estimated {:.2}% of traffic is statements not yet mirrored ({} seen once in {} requests{untracked})",
            self.unseen_share() * 100.0,
            self.seen_once,
            self.requests
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_turing_share_and_round_trip() {
        let c = Coverage {
            requests: 6774,
            seen_once: 210,
            fingerprints: 400,
            untracked: 0,
        };
        assert!((c.unseen_share() - 0.0310).abs() < 1e-4);
        let mut ext = Extensions::default();
        c.write(&mut ext);
        assert_eq!(Coverage::read(&ext), Some(c));
        assert_eq!(Coverage::read(&Extensions::default()), None);
        assert_eq!(
            c.describe(),
            "an estimated 3.10% of traffic is statements not yet mirrored (210 seen once in 6774 requests)"
        );
        assert_eq!(Coverage::default().unseen_share(), 0.0);
    }
}
