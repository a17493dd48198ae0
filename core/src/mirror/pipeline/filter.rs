//! `mirror_statements`: which transactions go to the mirror, decided per transaction.
//!
//! The tap cannot decide when a transaction starts: its first statement says nothing of
//! the next ones. The writer can: the [`super::Backlog`] holds a transaction until the
//! primary has finished it, so when it goes out it is whole, and its every statement is
//! known ([`crate::mirror::classify`] classified each request as it was taken). So the
//! rule runs on what the backlog releases, transaction by transaction:
//! - `reads`: a transaction goes to the mirror only if none of its statements may write
//!   (`Write`, or `Unknown`: a statement not known to read) and none has the fingerprint
//!   of a statement the mirror refused as a write before;
//! - `writes`: only if one of its statements may write, or changes the session (a `SET`
//!   outside a transaction must reach the mirror for the writes after it).
//!
//! The rest is skipped: counted by reason, never offered to the mirror, so it is no event
//! and `total = mirrored + dropped + errors` stays whole.
//!
//! Under `reads` the session's tap has already kept out the transactions that write in a
//! simple Query before anything of them was queued ([`crate::mirror::tap`]); what it
//! queued behind such a transaction while the client pipelined is marked
//! ([`Request::follows_skipped`]), and skipped here for as long as the primary says that
//! transaction lasted.
//!
//! A transaction longer than the hold limit goes out in parts, before it is whole. Its
//! head decides: a head that goes out takes the rest with it, except that in `reads` a
//! write further on stops it there (the rest is skipped, and the proxy's `ROLLBACK`
//! ends what the mirror started, once the primary finishes the transaction); a skipped
//! head skips the rest. In `writes` a head without a write yet goes out (its reads are
//! harmless, and holding it would use up the session's places).

use super::Pipeline;
use crate::config::MirrorStatements;
use crate::mirror::request::Request;
use crate::mirror::SkipReason;

/// The transaction the writer is in the middle of, when it went out in parts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// None: the next request starts a transaction.
    #[default]
    None,
    /// Its head went to the mirror.
    Mirroring,
    /// Its head was skipped, for `reason`. `rollback`: a head went out before a write
    /// came, so the mirror is inside the transaction and must roll it back at its end.
    Skipping { reason: SkipReason, rollback: bool },
}

impl Pipeline {
    /// The requests of `batch` (as the backlog released it) that go to the mirror, in
    /// order; the others are counted as skipped and let go.
    pub(super) fn filter(&mut self, batch: Vec<Request>) -> Vec<Request> {
        if self.target.statements == MirrorStatements::All {
            return batch;
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut transaction = Vec::new();
        for r in batch {
            if !r.is_client() {
                // The proxy's own ROLLBACK ends whatever the mirror had open.
                if !transaction.is_empty() {
                    self.decide(std::mem::take(&mut transaction), false, &mut out);
                }
                self.open = Open::None;
                out.push(r);
                continue;
            }
            if r.follows_skipped && transaction.is_empty() && self.open == Open::None {
                self.continues_skipped(&r);
            }
            let ends = self.ledger.answer(r.seq).ends_transaction();
            transaction.push(r);
            if ends {
                self.decide(std::mem::take(&mut transaction), true, &mut out);
            }
        }
        if !transaction.is_empty() {
            self.decide(transaction, false, &mut out);
        }
        out
    }

    /// `r` came after requests the tap skipped for writing, sent before the primary had
    /// answered them: when the primary was still inside their transaction after them, `r`
    /// is its rest, skipped like them. (The backlog releases `r` once the primary has
    /// answered it, so the answer before it is known; an answer no longer recorded counts
    /// as a transaction end, as in the backlog.)
    fn continues_skipped(&mut self, r: &Request) {
        let before = r.first_seq().checked_sub(1);
        if before.is_some_and(|before| !self.ledger.answer(before).ends_transaction()) {
            self.open = Open::Skipping {
                reason: SkipReason::Write,
                rollback: false,
            };
        }
    }

    /// Sends `part` of a transaction (all of it when `whole`) to `out`, or skips it.
    fn decide(&mut self, mut part: Vec<Request>, whole: bool, out: &mut Vec<Request>) {
        let last = part.last().map_or(0, |r| r.seq);
        let mut rollback = false;
        match self.open {
            Open::None => match self.rejects(&part, whole) {
                None => {
                    out.extend(part);
                    self.open = Open::Mirroring;
                }
                Some(reason) => {
                    self.skip(part, reason);
                    self.open = Open::Skipping {
                        reason,
                        rollback: false,
                    };
                }
            },
            Open::Mirroring => match self.first_write(&part) {
                Some((at, reason)) => {
                    let rest = part.split_off(at);
                    out.extend(part);
                    self.skip(rest, reason);
                    self.open = Open::Skipping {
                        reason,
                        rollback: true,
                    };
                }
                None => out.extend(part),
            },
            Open::Skipping { reason, .. } => self.skip(part, reason),
        }
        if whole {
            if let Open::Skipping { rollback: true, .. } = self.open {
                rollback = true;
            }
            self.open = Open::None;
        }
        if rollback {
            out.push(Request::rollback(last));
        }
    }

    /// Why the transaction that starts with `part` (all of it when `whole`) is not
    /// mirrored, if it is not.
    fn rejects(&self, part: &[Request], whole: bool) -> Option<SkipReason> {
        let class = |r: &Request| r.kind.as_ref().map(|k| k.class);
        match self.target.statements {
            MirrorStatements::All => None,
            MirrorStatements::Reads => self.first_write(part).map(|(_, reason)| reason),
            MirrorStatements::Writes => {
                let writes = part.iter().any(|r| class(r).is_some_and(|c| c.may_write()));
                let session = part
                    .iter()
                    .any(|r| class(r) == Some(crate::sql::Class::Session));
                (whole && !writes && !session).then_some(SkipReason::Read)
            }
        }
    }

    /// `reads`: the first request of `part` that may write, and why (its class, or its
    /// fingerprint refused as a write before). `None` in other modes.
    fn first_write(&self, part: &[Request]) -> Option<(usize, SkipReason)> {
        if self.target.statements != MirrorStatements::Reads {
            return None;
        }
        part.iter().enumerate().find_map(|(i, r)| {
            let kind = r.kind.as_ref()?;
            if kind.class.may_write() {
                return Some((i, SkipReason::Write));
            }
            let refused = self.target.skips.any_writer(|| kind.fingerprints());
            refused.then_some((i, SkipReason::WriteDetected))
        })
    }

    /// Lets `requests` go without mirroring them, counted as skipped for `reason`.
    fn skip(&mut self, requests: Vec<Request>, reason: SkipReason) {
        let n = requests.iter().filter(|r| r.is_client()).count();
        self.target.skips.count(reason, n as u64);
    }
}
