//! Mirror-only query errors by SQLSTATE class, per database (or overall): a count per
//! class and per SQLSTATE, and the fingerprint with the most errors of each class.
//!
//! Errors the primary had too (the same SQLSTATE) are not the mirror's and are not
//! classed; connection, timeout and protocol failures have no SQLSTATE and stay in their
//! categories. Memory is bounded: at most [`MAX_PAIRS`] (class, fingerprint) pairs and
//! [`MAX_SQLSTATES`] codes are kept; errors beyond still count in their class.

use std::collections::{BTreeMap, HashMap};

use pgdog_plugin_api::{
    abi_stable::std_types::ROption, ClassErrors, ErrorCategory, ErrorClass, MirrorEvent, Outcome,
    WorstFingerprint,
};

/// (class, fingerprint) pairs counted per aggregate.
pub const MAX_PAIRS: usize = 256;
/// Distinct SQLSTATEs counted per aggregate.
pub const MAX_SQLSTATES: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Worst {
    fingerprint: u64,
    count: u64,
    sqlstate: [u8; 5],
}

#[derive(Clone, Default, Debug)]
pub struct Classes {
    counts: [u64; ErrorClass::ALL.len()],
    sqlstates: BTreeMap<[u8; 5], u64>,
    pairs: HashMap<(ErrorClass, u64), u64>,
    worst: [Option<Worst>; ErrorClass::ALL.len()],
    /// Normalised texts of the fingerprints that were ever the worst of a class.
    texts: HashMap<u64, String>,
}

fn index(class: ErrorClass) -> usize {
    ErrorClass::ALL
        .iter()
        .position(|&c| c == class)
        .expect("every class is in ALL")
}

impl Classes {
    /// Counts `ev` when it is a query error of the mirror's own; `text` gives a
    /// fingerprint's normalised text.
    pub fn record<'t>(&mut self, ev: &MirrorEvent, text: impl FnOnce(u64) -> Option<&'t str>) {
        if ev.outcome != Outcome::ERROR
            || ev.category != ErrorCategory::QUERY
            || ev.is_shared_error()
        {
            return;
        }
        let class = ErrorClass::of_sqlstate(ev.sqlstate_str().unwrap_or(""));
        let i = index(class);
        self.counts[i] += 1;
        if ev.sqlstate != [0; 5] {
            let room = self.sqlstates.len() < MAX_SQLSTATES;
            match self.sqlstates.get_mut(&ev.sqlstate) {
                Some(n) => *n += 1,
                None if room => {
                    self.sqlstates.insert(ev.sqlstate, 1);
                }
                None => {}
            }
        }
        let ROption::RSome(fingerprint) = ev.fingerprint else {
            return;
        };
        let room = self.pairs.len() < MAX_PAIRS;
        let count = match self.pairs.get_mut(&(class, fingerprint)) {
            Some(n) => {
                *n += 1;
                *n
            }
            None if room => {
                self.pairs.insert((class, fingerprint), 1);
                1
            }
            None => return,
        };
        if self.worst[i].is_none_or(|w| count > w.count || w.fingerprint == fingerprint) {
            self.worst[i] = Some(Worst {
                fingerprint,
                count,
                sqlstate: ev.sqlstate,
            });
            self.texts
                .entry(fingerprint)
                .or_insert_with(|| text(fingerprint).unwrap_or("").to_string());
        }
    }

    /// The classes with at least one error, with their SQLSTATEs and worst fingerprint.
    pub fn read(&self) -> Vec<ClassErrors> {
        ErrorClass::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.counts[*i] > 0)
            .map(|(i, &class)| {
                let mut sqlstates: Vec<(String, u64)> = self
                    .sqlstates
                    .iter()
                    .filter_map(|(code, &n)| {
                        let code = std::str::from_utf8(code).ok()?;
                        (ErrorClass::of_sqlstate(code) == class).then(|| (code.to_string(), n))
                    })
                    .collect();
                sqlstates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ClassErrors {
                    class,
                    count: self.counts[i],
                    worst: self.worst[i].map(|w| WorstFingerprint {
                        fingerprint: w.fingerprint,
                        count: w.count,
                        text: self.texts.get(&w.fingerprint).cloned().unwrap_or_default(),
                        sqlstate: String::from_utf8_lossy(&w.sqlstate).into_owned(),
                    }),
                    sqlstates,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{error, shared_error};

    fn query_error(fp: u64, sqlstate: &[u8; 5]) -> MirrorEvent {
        MirrorEvent {
            sqlstate: *sqlstate,
            fingerprint: ROption::RSome(fp),
            ..error(0, ErrorCategory::QUERY)
        }
    }

    #[test]
    fn classes_count_the_mirrors_own_query_errors() {
        let mut c = Classes::default();
        let texts = |fp: u64| match fp {
            1 => Some("select * from gone"),
            2 => Some("select nope from t"),
            _ => None,
        };
        for _ in 0..3 {
            c.record(&query_error(1, b"42P01"), texts);
        }
        c.record(&query_error(2, b"42703"), texts);
        c.record(&query_error(3, b"22012"), texts);
        // Not classed: shared with the primary, a connection error.
        c.record(&shared_error(0, 4), texts);
        c.record(&error(0, ErrorCategory::CONNECTION), texts);
        let classes = c.read();
        assert_eq!(classes.len(), 2, "{classes:?}");
        let drift = &classes[0];
        assert_eq!((drift.class, drift.count), (ErrorClass::SchemaDrift, 4));
        assert_eq!(
            drift.sqlstates,
            [("42P01".to_string(), 3), ("42703".to_string(), 1)]
        );
        let worst = drift.worst.as_ref().unwrap();
        assert_eq!(
            (
                worst.fingerprint,
                worst.count,
                worst.text.as_str(),
                worst.sqlstate.as_str()
            ),
            (1, 3, "select * from gone", "42P01")
        );
        assert_eq!(classes[1].class, ErrorClass::Data);
        assert_eq!(classes[1].worst.as_ref().unwrap().text, "");
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = Classes::default();
        for fp in 0..(MAX_PAIRS as u64 * 4) {
            c.record(&query_error(fp, b"42P01"), |_| Some("x"));
        }
        for i in 0..200u8 {
            c.record(
                &query_error(1, &[b'2', b'2', b'0', i / 10 + b'0', i % 10 + b'0']),
                |_| None,
            );
        }
        assert!(c.pairs.len() <= MAX_PAIRS);
        assert!(c.sqlstates.len() <= MAX_SQLSTATES);
        assert!(c.texts.len() <= MAX_PAIRS);
        assert_eq!(c.read()[0].count, MAX_PAIRS as u64 * 4);
    }
}
