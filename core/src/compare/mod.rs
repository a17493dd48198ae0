//! Result comparison: what the mirror answered against what the primary answered, per
//! request, without buffering result sets.
//!
//! ```text
//! primary pump (server -> client)  --Digest per ReadyForQuery--> ledger ring
//!                                   (and per statement, for answers to several)
//! mirror worker (reader)           --Digest per ReadyForQuery--> compare() with the
//!      primary's digest of the same request --> Comparison on the mirror event
//!      (a request of several different statements: one per statement, [`split`])
//! mirror worker (writer)           --Statements--> Fingerprint(s) of each request
//! ```
//!
//! * [`digest`]: the streaming digest of one answer, and the comparison of two.
//! * [`fingerprint`]: normalised statement text, ORDER BY and non-determinism.
//! * [`statements`]: which statement a request runs (simple Query text, or the Parse
//!   behind a Bind), tracked per mirror session.
//! * [`split`]: a request of several different statements, compared statement by
//!   statement.

pub mod digest;
pub mod fingerprint;
pub mod split;
pub mod statements;

pub use digest::{compare, Digest, ResultDigest};
pub use fingerprint::{fingerprint, Fingerprint};

use pgdog_plugin_api::{Comparison, Differences, Exclusion, Verdict};

/// What one request's comparison has gathered, answer by answer (a request has one
/// answer per ReadyForQuery: two when a preparing batch was joined to the executing one).
#[derive(Debug, Default, Clone, Copy)]
pub struct Paired {
    pub differences: Differences,
    /// The primary's first error in the request.
    pub primary_sqlstate: [u8; 5],
    pub primary_rows: u64,
    pub mirror_rows: u64,
    /// Answers compared.
    pub answers: u32,
    /// An answer of the primary was no longer recorded.
    pub unpaired: bool,
}

impl Paired {
    /// Adds one answer of each side (`primary` is `None` when it was not recorded).
    pub fn add(&mut self, primary: Option<&ResultDigest>, mirror: &ResultDigest, ordered: bool) {
        let Some(p) = primary else {
            self.unpaired = true;
            return;
        };
        self.answers += 1;
        self.differences |= compare(p, mirror, ordered);
        if p.failed() && self.primary_sqlstate == [0; 5] {
            self.primary_sqlstate = p.sqlstate;
        }
        self.primary_rows += p.shown_rows();
        self.mirror_rows += mirror.shown_rows();
    }
}

/// The comparison verdict of a finished request. `mirror_error` is the mirror's first
/// SQLSTATE (`None` when it succeeded); `ignored` means the fingerprint is in
/// `mirror_compare_ignore`; `diverged` that the mirror pool dropped requests (its data may
/// lack writes the primary has). Errors are judged whatever the statement: the same
/// SQLSTATE on both sides is a match (a shared error), a mirror-only error a mismatch of
/// kind `error`. Successful answers are set aside, in this order of reasons, when the
/// statement is ignored, non-deterministic, or the mirror has diverged.
pub fn judge(
    paired: &Paired,
    mirror_error: Option<[u8; 5]>,
    statement: Option<&Fingerprint>,
    ignored: bool,
    diverged: bool,
) -> Comparison {
    let mut c = Comparison {
        primary_sqlstate: paired.primary_sqlstate,
        primary_rows: paired.primary_rows,
        mirror_rows: paired.mirror_rows,
        ..Comparison::not_compared()
    };
    if paired.unpaired {
        c.verdict = Verdict::EXCLUDED;
        c.excluded = Exclusion::UNPAIRED;
        return c;
    }
    if paired.answers == 0 {
        return c;
    }
    if let Some(code) = mirror_error {
        if code == paired.primary_sqlstate {
            c.verdict = Verdict::MATCH;
        } else {
            c.verdict = Verdict::MISMATCH;
            c.differences = Differences::ERROR;
        }
        return c;
    }
    let nondeterministic = statement.is_some_and(|s| s.nondeterministic.is_some());
    let excluded = if ignored {
        Some(Exclusion::IGNORED)
    } else if nondeterministic {
        Some(Exclusion::NONDETERMINISTIC)
    } else if diverged {
        Some(Exclusion::DIVERGED)
    } else {
        None
    };
    if let Some(why) = excluded {
        c.verdict = Verdict::EXCLUDED;
        c.excluded = why;
    } else if paired.differences.is_empty() {
        c.verdict = Verdict::MATCH;
    } else {
        c.verdict = Verdict::MISMATCH;
        c.differences = paired.differences;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: u64, sqlstate: [u8; 5]) -> ResultDigest {
        ResultDigest {
            rows,
            unordered: rows * 7,
            ordered: rows * 11,
            sqlstate,
            ..ResultDigest::default()
        }
    }

    #[test]
    fn verdicts() {
        let ok = [0; 5];
        let mut same = Paired::default();
        same.add(Some(&answer(2, ok)), &answer(2, ok), false);
        assert_eq!(
            judge(&same, None, None, false, false).verdict,
            Verdict::MATCH
        );

        let mut differ = Paired::default();
        differ.add(Some(&answer(2, ok)), &answer(3, ok), false);
        let c = judge(&differ, None, None, false, false);
        assert_eq!(c.verdict, Verdict::MISMATCH);
        assert!(c.differences.contains(Differences::ROW_COUNT));
        assert_eq!((c.primary_rows, c.mirror_rows), (2, 3));
        // Ignored, or non-deterministic: set aside.
        assert_eq!(
            judge(&differ, None, None, true, false).excluded,
            Exclusion::IGNORED
        );
        let now = fingerprint("select now()");
        assert_eq!(
            judge(&differ, None, Some(&now), false, false).excluded,
            Exclusion::NONDETERMINISTIC
        );
        // After drops: set aside (non-determinism is named first), but an error is
        // still an error.
        assert_eq!(
            judge(&differ, None, None, false, true).excluded,
            Exclusion::DIVERGED
        );
        assert_eq!(
            judge(&differ, None, Some(&now), false, true).excluded,
            Exclusion::NONDETERMINISTIC
        );
        assert_eq!(
            judge(&differ, Some(*b"42P01"), None, false, true).verdict,
            Verdict::MISMATCH
        );

        // The same error on both sides is a match; a mirror-only error is not.
        let mut both = Paired::default();
        both.add(Some(&answer(0, *b"42P01")), &answer(0, *b"42P01"), false);
        assert_eq!(
            judge(&both, Some(*b"42P01"), Some(&now), false, false).verdict,
            Verdict::MATCH
        );
        let mut mirror_only = Paired::default();
        mirror_only.add(Some(&answer(1, ok)), &answer(0, *b"42P01"), false);
        let c = judge(&mirror_only, Some(*b"42P01"), None, false, false);
        assert_eq!(
            (c.verdict, c.differences),
            (Verdict::MISMATCH, Differences::ERROR)
        );

        // Nothing recorded on the primary side: unpaired; comparison off: not compared.
        let mut lost = Paired::default();
        lost.add(None, &answer(1, ok), false);
        assert_eq!(
            judge(&lost, None, None, false, false).excluded,
            Exclusion::UNPAIRED
        );
        assert_eq!(
            judge(&Paired::default(), None, None, false, false).verdict,
            Verdict::NOT_COMPARED
        );
    }
}
