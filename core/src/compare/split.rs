//! The answers of a request that runs several different statements, compared statement
//! by statement: each part of an answer (one per CommandComplete, EmptyQueryResponse,
//! PortalSuspended or ErrorResponse, see [`super::Digest::parts`]) is paired with the
//! primary's part at the same place and counted under the fingerprint of the statement
//! that produced it. Transaction control is skipped: its answer says nothing of the data.
//!
//! No I/O: the mirror reader feeds it both sides' parts answer by answer, then asks for
//! the comparisons. When the parts cannot be paired one to one (an error ended one side
//! early, a part was no longer kept on the primary's side, a statement was not followed)
//! the request is compared as a whole instead, as any other.

use super::digest::ResultDigest;
use super::fingerprint::Fingerprint;
use super::Paired;
use std::sync::Arc;

/// One statement a request executes.
#[derive(Clone)]
pub struct Executed {
    pub fp: Arc<Fingerprint>,
    /// Transaction control (`BEGIN`, `SAVEPOINT`, ...).
    pub control: bool,
}

/// A request's statements and their answers so far.
pub struct Split {
    each: Box<[Executed]>,
    /// Parts paired so far.
    at: usize,
    /// Each distinct data statement, in the order first executed, and its answers.
    statements: Vec<(Arc<Fingerprint>, Paired)>,
    /// The statement the mirror's first error ended (its index in `each`).
    failed_at: Option<usize>,
    /// The parts could not be paired one to one.
    broken: bool,
}

impl Split {
    pub fn new(each: Box<[Executed]>) -> Split {
        Split {
            each,
            at: 0,
            statements: Vec::new(),
            failed_at: None,
            broken: false,
        }
    }

    /// One answer's parts: the primary's (`None` when not kept) and the mirror's. An
    /// answer of fewer than two statements has no parts on either side.
    pub fn add(&mut self, primary: Option<&[ResultDigest]>, mirror: &[ResultDigest]) {
        if self.failed_at.is_none() {
            if let Some(i) = mirror.iter().position(ResultDigest::failed) {
                self.failed_at = Some(self.at + i);
            }
        }
        if mirror.is_empty() && primary.is_none_or(<[_]>::is_empty) {
            return;
        }
        let fits = self.at + mirror.len() <= self.each.len();
        let Some(primary) = primary.filter(|p| p.len() == mirror.len() && fits) else {
            self.broken = true;
            return;
        };
        for (i, (p, m)) in primary.iter().zip(mirror).enumerate() {
            let Executed { fp, control } = &self.each[self.at + i];
            if *control {
                continue;
            }
            let paired = match self.statements.iter().position(|(s, _)| s.id == fp.id) {
                Some(j) => &mut self.statements[j].1,
                None => {
                    self.statements.push((fp.clone(), Paired::default()));
                    &mut self.statements.last_mut().expect("pushed").1
                }
            };
            paired.add(Some(p), m, fp.ordered);
        }
        self.at += mirror.len();
    }

    /// Each data statement and its answers paired, when every statement's answer was
    /// paired with the primary's; `None`: compare the request as a whole.
    pub fn statements(&self) -> Option<&[(Arc<Fingerprint>, Paired)]> {
        let whole = !self.broken && self.at == self.each.len() && self.statements.len() > 1;
        whole.then_some(self.statements.as_slice())
    }

    /// The data statement the mirror's first error ended, when it failed in one.
    pub fn failed(&self) -> Option<&Arc<Fingerprint>> {
        let e = self.each.get(self.failed_at?)?;
        (!e.control).then_some(&e.fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fingerprint;
    use pgdog_plugin_api::Differences;

    fn executed(sql: &str, control: bool) -> Executed {
        Executed {
            fp: Arc::new(fingerprint(sql)),
            control,
        }
    }

    fn part(rows: u64) -> ResultDigest {
        ResultDigest {
            rows,
            unordered: rows * 7,
            ordered: rows * 11,
            ..ResultDigest::default()
        }
    }

    fn failed(code: &[u8; 5]) -> ResultDigest {
        ResultDigest {
            sqlstate: *code,
            ..ResultDigest::default()
        }
    }

    fn split() -> Split {
        Split::new(
            [
                executed("begin", true),
                executed("select a from t", false),
                executed("select b from u", false),
                executed("select a from t", false),
            ]
            .into(),
        )
    }

    #[test]
    fn each_statement_gets_its_own_answers() {
        let mut s = split();
        let primary = [part(0), part(1), part(2), part(1)];
        let mirror = [part(0), part(1), part(3), part(1)];
        s.add(Some(&primary), &mirror);
        let statements = s.statements().expect("paired one to one");
        assert_eq!(statements.len(), 2, "begin is not a statement of its own");
        assert_eq!(&*statements[0].0.text, "select a from t");
        assert_eq!(statements[0].1.answers, 2);
        assert!(statements[0].1.differences.is_empty());
        assert_eq!(&*statements[1].0.text, "select b from u");
        assert!(statements[1].1.differences.contains(Differences::ROW_COUNT));
        assert!(s.failed().is_none());
    }

    #[test]
    fn answers_that_do_not_pair_are_compared_whole() {
        // The primary's parts were no longer kept.
        let mut s = split();
        s.add(None, &[part(0), part(1), part(2), part(1)]);
        assert!(s.statements().is_none());
        // The mirror stopped at an error: whole, and the error is the statement's.
        let mut s = split();
        let primary = [part(0), part(1), part(2), part(1)];
        s.add(Some(&primary), &[part(0), part(1), failed(b"42P01")]);
        assert!(s.statements().is_none());
        assert_eq!(&*s.failed().unwrap().text, "select b from u");
        // Answers without parts (a preparing batch's) pair nothing; a short run is whole.
        let mut s = split();
        s.add(None, &[]);
        s.add(Some(&[part(0), part(1)]), &[part(0), part(1)]);
        assert!(s.statements().is_none(), "two of four statements answered");
        // An error in transaction control names no statement.
        let mut s = split();
        s.add(Some(&[part(0)]), &[failed(b"25P02"), part(1)]);
        assert!(s.failed().is_none());
    }
}
