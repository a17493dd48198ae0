//! A second look at a gated read whose answers differed ([`crate::mirror::sync::recheck`]
//! explains why): the mismatch's event is held while the primary answers the request
//! again, the gate waits for the mirror to apply what the primary had then, and this
//! session's mirror connection runs the request again. Equal the second time, the first
//! comparison is set aside as `rechecked`; otherwise the mismatch is reported as it was.
//!
//! ```text
//! reader: mismatch (gated autocommit read, budget left) -> Due
//! writer: Due, while requests sent with it are in flight -> wait for their answers
//! writer: Due --Step::Recheck(bytes)--> Primary --rechecked_on_primary--> Gating
//!         Gating --Step::AwaitSync--> synced --Step::Write(bytes)--> Sent
//! reader: Sent's answer compared with the primary's second -> the event, decided
//! ```
//!
//! The session sends nothing new meanwhile (requests already in flight behind the read,
//! as in a gated batch, are answered first): the second run happens while the mirror is
//! idle, where the first one ran. Several reads of one batch that differ are looked at
//! one after the other, up to [`HELD`] per session. Anything that stops the second look (the primary's
//! error or timeout, a mirror lagging past `mirror_max_lag_ms`, a write already on its
//! way, a broken connection) reports the mismatch as it was.

use super::inflight::InFlight;
use super::writer::Step;
use super::Pipeline;
use crate::compare::statements::Run;
use crate::compare::{judge, Fingerprint, Paired, ResultDigest};
use crate::mirror::ledger::Answer;
use crate::mirror::request::Request;
use crate::mirror::sync::recheck::{rerun, Rerun};
use crate::mirror::sync::{Gated, Rechecked};
use crate::mirror::Event;
use crate::protocol::TxStatus;
use crate::sql::Class;
use pgdog_plugin_api::{Exclusion, Verdict};
use std::sync::Arc;
use std::time::Instant;

/// Mismatches a session holds for a second look at most; more are reported as they were.
pub(super) const HELD: usize = 8;

/// A mismatch being looked at again.
pub(super) struct Recheck {
    /// The mismatch, reported once decided.
    event: Event,
    /// What the primary and the mirror run again.
    rerun: Rerun,
    /// The request's sequence number (its second run is the proxy's own: not reported).
    seq: u64,
    statement: Option<Arc<Fingerprint>>,
    stage: Stage,
}

enum Stage {
    /// To be asked of the primary.
    Due,
    /// Asked of the primary.
    Primary,
    /// The primary answered `digest` at `answered_at`; the mirror is to catch up.
    Gating {
        digest: ResultDigest,
        answered_at: Instant,
        gated: Option<Gated>,
    },
    /// Sent to the mirror again.
    Sent { digest: ResultDigest },
}

impl Pipeline {
    /// Whether `done`, whose comparison in `event` was a mismatch, gets a second look:
    /// gated and not lagging, one autocommit read that can run again on another
    /// connection, no second look under way in the session, and the target's budget not
    /// spent. Requests already in flight behind it (a gated batch) are answered first;
    /// nothing new is sent until the second look is decided. It waits behind the second
    /// looks the session holds already, up to [`HELD`].
    pub(super) fn recheck_mismatch(
        &mut self,
        done: &InFlight,
        event: Event,
        now: Instant,
    ) -> Option<Event> {
        if done.gated != Some(Gated::Synced) {
            return Some(event);
        }
        // A gated read that differs: why it cannot be asked again, if it cannot.
        let before_ended = done
            .first_seq
            .checked_sub(1)
            .is_none_or(|before| self.ledger.answer(before).ends_transaction());
        let refused = if done.readies != 1 || done.first_seq != done.seq {
            Some("a batch of several requests")
        } else if done.kind.as_ref().is_none_or(|k| k.class != Class::Read) {
            Some("not a read")
        } else if !self.conn.mirror_status.is_idle() || !before_ended {
            Some("inside a transaction")
        } else if self.ledger.answer(done.seq) != Answer::After(TxStatus::Idle) {
            Some("the primary's answer is no longer recorded")
        } else {
            None
        };
        let definitions = &self.definitions;
        let rerun = refused.is_none().then(|| {
            rerun(&done.payload, |name| {
                match definitions.get(name, done.first_seq, None)? {
                    Err((parse, _)) => Some(parse),
                    Ok(()) => None,
                }
            })
        });
        let refused = match rerun {
            Some(None) => Some("its statement cannot be run again alone"),
            _ => refused,
        };
        let Some(Some(rerun)) = rerun else {
            // Counted: a mismatch that stands without a second look is told apart from one
            // that differed twice.
            if let Some(gate) = &self.target.sync {
                gate.rechecked(Rechecked::Unavailable);
            }
            tracing::debug!(
                database = &*self.target.database,
                why = refused.unwrap_or("?"),
                "a gated read differs and gets no second look"
            );
            return Some(event);
        };
        match &self.target.sync {
            Some(gate) if self.conn.recheck.len() < HELD && gate.recheck_allowed(now) => {}
            Some(gate) => {
                gate.rechecked(Rechecked::Unavailable);
                return Some(event);
            }
            None => return Some(event),
        }
        self.conn.recheck.push_back(Recheck {
            event,
            rerun,
            seq: done.seq,
            statement: done.statement.clone(),
            stage: Stage::Due,
        });
        None
    }

    /// A second look is due: the writer should be asked (unless it is writing).
    pub fn recheck_due(&self) -> bool {
        matches!(
            self.conn.recheck.front(),
            Some(Recheck {
                stage: Stage::Due,
                ..
            })
        )
    }

    /// The writer's step in a second look under way, `None` when there is none:
    /// [`Step::Recheck`] to ask the primary, [`Step::AwaitSync`], [`Step::Write`] to run it
    /// on the mirror, or [`Step::AwaitRecheck`] while the driver or the mirror's answer is
    /// awaited.
    pub(super) fn recheck_next(&mut self, now: Instant) -> Option<Step> {
        let mut r = self.conn.recheck.pop_front()?;
        let idle = self.conn.in_flight.is_empty() && self.conn.mirror_status.is_idle();
        let next = match r.stage {
            // Requests sent with it (a gated batch) are answered first.
            Stage::Due if !self.conn.in_flight.is_empty() => Step::AwaitRecheck,
            // One of them left a transaction open: the mirror is not where the first run
            // was.
            Stage::Due if !idle => {
                self.recheck_unavailable(r.event);
                return self.recheck_next(now);
            }
            Stage::Due => {
                r.stage = Stage::Primary;
                Step::Recheck(r.rerun.primary.clone())
            }
            Stage::Primary => Step::AwaitRecheck,
            Stage::Gating {
                answered_at,
                gated: None,
                ..
            } => Step::AwaitSync { answered_at },
            Stage::Gating {
                gated: Some(Gated::Lagging),
                ..
            } => {
                self.recheck_unavailable(r.event);
                return self.recheck_next(now);
            }
            Stage::Gating { digest, .. } => {
                if self.target.pool.is_disabled() || !idle {
                    self.recheck_unavailable(r.event);
                    return self.recheck_next(now);
                }
                let request = Request {
                    payload: smallvec::smallvec![r.rerun.mirror.clone()],
                    seq: r.seq,
                    readies: 1,
                    received: now,
                    slot: None,
                    continues: false,
                    kind: None,
                    follows_skipped: false,
                };
                let run = Run {
                    statement: r.statement.clone(),
                    each: None,
                };
                let mut f = InFlight::new(request, now, Default::default(), run);
                f.recheck = true;
                self.conn.in_flight.push_back(f);
                r.stage = Stage::Sent { digest };
                self.conn.idle_seen = false;
                Step::Write(r.rerun.mirror.clone())
            }
            Stage::Sent { .. } => Step::AwaitRecheck,
        };
        self.conn.recheck.push_front(r);
        Some(next)
    }

    /// The primary's second answer (its digest, and when it arrived), or why there is
    /// none: then the mismatch stands.
    pub fn rechecked_on_primary(&mut self, answer: Result<(ResultDigest, Instant), String>) {
        let Some(mut r) = self.conn.recheck.pop_front() else {
            return;
        };
        match answer {
            Ok((digest, answered_at)) if matches!(r.stage, Stage::Primary) => {
                r.stage = Stage::Gating {
                    digest,
                    answered_at,
                    gated: None,
                };
                self.conn.recheck.push_front(r);
            }
            Ok(_) => self.conn.recheck.push_front(r),
            Err(why) => {
                tracing::debug!(
                    database = &*self.target.database,
                    "no second look at a differing read: {why}"
                );
                self.recheck_unavailable(r.event);
            }
        }
    }

    /// The gate's wait for a second look ended; `false` when none was waiting for it.
    pub(super) fn recheck_synced(&mut self, gated: Gated) -> bool {
        match self.conn.recheck.front_mut() {
            Some(Recheck {
                stage: Stage::Gating {
                    gated: g @ None, ..
                },
                ..
            }) => {
                *g = Some(gated);
                true
            }
            _ => false,
        }
    }

    /// The mirror answered the second run: `answer` and its first error, if any.
    pub(super) fn recheck_answered(
        &mut self,
        answer: &ResultDigest,
        mirror_error: Option<[u8; 5]>,
        ordered: bool,
    ) {
        let Some(r) = self.conn.recheck.pop_front() else {
            return;
        };
        let Stage::Sent { digest } = r.stage else {
            self.recheck_unavailable(r.event);
            return;
        };
        let mut paired = Paired::default();
        paired.add(Some(&digest), answer, ordered);
        let second = judge(&paired, mirror_error, r.statement.as_deref(), false, false);
        let mut event = r.event;
        let found = if second.verdict == Verdict::MATCH {
            Rechecked::Equal
        } else {
            Rechecked::Differed
        };
        if let Some(gate) = &self.target.sync {
            gate.rechecked(found);
        }
        if found == Rechecked::Equal {
            event.outcome = crate::mirror::Outcome::Mirrored;
            event.comparison.verdict = Verdict::EXCLUDED;
            event.comparison.excluded = Exclusion::RECHECKED;
            event.comparison.differences = Default::default();
        }
        self.events.push(event);
    }

    /// A held mismatch goes out as it was, no second look being possible.
    fn recheck_unavailable(&mut self, event: Event) {
        if let Some(gate) = &self.target.sync {
            gate.rechecked(Rechecked::Unavailable);
        }
        self.events.push(event);
    }

    /// The held mismatches go out as they were (the connection broke, the session ends).
    pub(super) fn recheck_abandoned(&mut self) {
        while let Some(r) = self.conn.recheck.pop_front() {
            self.recheck_unavailable(r.event);
        }
    }
}
