//! The reader's rules: each message the mirror sends belongs to the oldest request in
//! flight, and its ReadyForQuery ends it. PostgreSQL executes pipelined requests one after
//! another exactly as if they had been sent one at a time, so the answers come in the
//! order the requests went out.
//!
//! A request's mirror latency is its service time: from when the mirror could start on
//! it (sent, and the request before it answered) to its ReadyForQuery. One that runs
//! longer than `mirror_timeout_ms` is cancelled ([`Pipeline::deadline_passed`]); its
//! answer still ends it, as a timeout. The server applies a cancel to whatever runs when
//! it arrives, so under load the request right after the cancelled one can fail with
//! `57014` too: within [`CANCEL_GRACE`] of a cancelled request's answer, such a failure
//! is the proxy's doing and counts as a timeout as well.

use super::inflight::{InFlight, MirrorAnswer};
use super::{Pipeline, CANCEL_GRACE};
use crate::compare::{judge, Fingerprint, Paired};
use crate::config::MirrorStatements;
use crate::mirror::{ErrorCategory, Event, MirrorError, Outcome, SkipReason};
use crate::plugins::{QueryRef, StatementComparison};
use crate::protocol::backend::{ready_status, sqlstate, QUERY_CANCELED};
use crate::protocol::tag::server;
use pgdog_plugin_api::{Comparison, Exclusion, Verdict};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SQLSTATE of a write in a read-only transaction.
const READ_ONLY_TRANSACTION: [u8; 5] = *b"25006";

impl Pipeline {
    /// When the front request's answer is due: its timeout, or, once cancelled, the end
    /// of the grace its answer gets. `None` when nothing is in flight.
    pub fn deadline(&self) -> Option<Instant> {
        let front = self.conn.in_flight.front()?;
        let timeout = self.started(front) + self.target.timeout;
        Some(match self.conn.cancel_deadline {
            Some(grace) if front.timed_out => grace,
            _ => timeout,
        })
    }

    /// The [`Pipeline::deadline`] passed: the front request is marked timed out, for the
    /// driver to cancel it and then call [`Pipeline::cancel_sent`]. When it had been
    /// cancelled already, the connection is given up.
    pub fn deadline_passed(&mut self) -> Result<(), MirrorError> {
        match self.conn.in_flight.front_mut() {
            Some(f) if f.timed_out => Err(MirrorError::NoAnswerAfterCancel),
            Some(f) => {
                f.timed_out = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The cancel for the front request went out at `now`: its answer gets
    /// [`CANCEL_GRACE`] from here.
    pub fn cancel_sent(&mut self, now: Instant) {
        self.conn.cancel_deadline = Some(now + CANCEL_GRACE);
    }

    /// One whole message from the mirror, received at `now`.
    pub fn on_message(&mut self, msg: &[u8], now: Instant) -> Result<(), MirrorError> {
        let tag = msg[0];
        if self.statements.is_some() && tag != server::READY_FOR_QUERY {
            self.conn.digest.feed(tag, msg);
        }
        match tag {
            server::ERROR_RESPONSE => {
                if let Some(f) = self.conn.in_flight.front_mut() {
                    if f.answer == MirrorAnswer::Ok {
                        f.answer = MirrorAnswer::Failed(sqlstate(msg));
                    }
                }
            }
            server::COPY_IN_RESPONSE => {
                let has_data = self.conn.in_flight.front().is_some_and(|f| f.has_copy_data);
                if !has_data {
                    // The client's COPY data went another way (COPY through the extended
                    // protocol): end the mirror's COPY rather than hang.
                    return Err(MirrorError::CopyWithoutData);
                }
            }
            server::COPY_BOTH_RESPONSE => return Err(MirrorError::CopyBoth),
            server::READY_FOR_QUERY => self.ready(msg, now)?,
            _ => {}
        }
        Ok(())
    }

    /// A ReadyForQuery: one answer of the front request, and its end unless it has more.
    fn ready(&mut self, msg: &[u8], now: Instant) -> Result<(), MirrorError> {
        let Some(front) = self.conn.in_flight.front_mut() else {
            return Err(MirrorError::UnexpectedReady);
        };
        if self.statements.is_none() && front.is_client() {
            // Without comparison, the primary's SQLSTATE alone: enough to tell an error
            // both sides share from the mirror's own.
            let code = self.ledger.primary_sqlstate(front.answering_seq());
            if let (Some(code), [0, 0, 0, 0, 0]) = (code, front.paired.primary_sqlstate) {
                front.paired.primary_sqlstate = code;
            }
        }
        let mut recheck_answer = None;
        if self.statements.is_some() {
            let seq = front.answering_seq();
            if let Some(split) = front.split.as_mut() {
                let primary = self.ledger.primary_parts(seq);
                split.add(primary.as_deref(), self.conn.digest.parts());
            }
            let answer = self.conn.digest.take();
            if front.recheck {
                recheck_answer = Some(answer);
            }
            // The proxy's own requests are not compared: their answer must not count
            // towards the next request's either.
            if front.is_client() {
                let seq = front.answering_seq();
                let ordered = front.statement.as_ref().is_some_and(|s| s.ordered);
                let primary = self.ledger.primary_digest(seq);
                front.paired.add(primary.as_ref(), &answer, ordered);
            }
        }
        self.conn.answered += 1;
        self.conn.mirror_status = ready_status(msg);
        if front.readies > 1 {
            // A joined preparing batch: its request is not over yet.
            front.readies -= 1;
            return Ok(());
        }
        let mut done = self.conn.in_flight.pop_front().expect("front");
        if done.recheck {
            self.conn
                .on_mirror
                .answered(std::mem::take(&mut done.effects), false);
            self.conn.last_done = Some(now);
            self.conn.cancel_deadline = None;
            let mirror_error = match done.answer {
                MirrorAnswer::Ok => None,
                MirrorAnswer::Failed(code) => Some(code.unwrap_or(*b"?????")),
            };
            match recheck_answer {
                Some(answer) if !done.timed_out => {
                    let ordered = done.statement.as_ref().is_some_and(|s| s.ordered);
                    self.recheck_answered(&answer, mirror_error, ordered);
                }
                _ => self.recheck_abandoned(),
            }
            return Ok(());
        }
        if self.refused_as_write(&done) {
            self.conn
                .on_mirror
                .answered(std::mem::take(&mut done.effects), false);
            self.conn.last_done = Some(now);
            self.conn.cancel_deadline = None;
            return Ok(());
        }
        let ok = done.answer == MirrorAnswer::Ok && !done.timed_out;
        self.conn
            .on_mirror
            .answered(std::mem::take(&mut done.effects), ok);
        let latency = now - self.started(&done);
        self.conn.last_done = Some(now);
        self.conn.cancel_deadline = None;
        if done.is_client() && self.client_cancelled(&done, now) {
            self.report_cancelled(&done);
            return Ok(());
        }
        // The proxy's own late cancel is a timeout, not the mirror's error.
        let hit_by_stray = !done.timed_out
            && done.answer == MirrorAnswer::Failed(Some(QUERY_CANCELED))
            && self
                .conn
                .last_cancelled
                .is_some_and(|at| now - at < CANCEL_GRACE);
        if done.timed_out {
            self.conn.last_cancelled = Some(now);
        }
        done.timed_out |= hit_by_stray;
        let outcome = match done.answer {
            _ if done.timed_out => crate::mirror::timeout(),
            MirrorAnswer::Ok => Outcome::Mirrored,
            MirrorAnswer::Failed(code) => Outcome::Error {
                category: ErrorCategory::Query,
                sqlstate: code,
            },
        };
        if done.is_client() {
            let latency = (!done.timed_out).then_some(latency);
            self.report_answered(&done, outcome, latency, now);
        }
        Ok(())
    }

    /// `mirror_statements = "reads"`: the mirror refused `done` as a write (`25006`: the
    /// classifier took it for a read, such as `SELECT f()` where `f` writes), or `done`
    /// came after such a refusal in the same transaction (which then fails with `25P02`
    /// and ends in a ROLLBACK). Not the new server's error: counted as skipped, not
    /// reported, and the refused statements' fingerprints are remembered so that later
    /// transactions with them are skipped before they reach the mirror.
    fn refused_as_write(&mut self, done: &InFlight) -> bool {
        if self.target.statements != MirrorStatements::Reads {
            return false;
        }
        let refused = done.answer == MirrorAnswer::Failed(Some(READ_ONLY_TRANSACTION));
        if !refused && !self.conn.refusing {
            return false;
        }
        if refused {
            if let Some(kind) = &done.kind {
                kind.fingerprints()
                    .for_each(|fp| self.target.skips.remember_writer(fp));
            }
        }
        self.conn.refusing = !self.conn.mirror_status.is_idle();
        if done.is_client() {
            self.target.skips.count(SkipReason::WriteDetected, 1);
        }
        true
    }

    /// Whether `done` is set aside for the client's cancel: the primary answered it with
    /// the cancel (the mirror ran a stand-in, or was cancelled too, or finished first), or
    /// the cancel the proxy passed on to the mirror stopped it, or stopped the request
    /// after it, when the primary had finished it (the mirror then lacks what it did:
    /// counted as a drop would be, its comparisons set aside from now on).
    fn client_cancelled(&mut self, done: &InFlight, now: Instant) -> bool {
        if done.stood_in || self.cancelled_on_primary(done.first_seq, done.seq) {
            if done.client_cancel_sent {
                self.conn.last_client_cancel = Some(now);
            }
            return true;
        }
        let canceled = done.answer == MirrorAnswer::Failed(Some(QUERY_CANCELED));
        let stray = canceled
            && (done.client_cancel_sent
                || self
                    .conn
                    .last_client_cancel
                    .is_some_and(|at| now - at < CANCEL_GRACE));
        if stray {
            self.target.note_drop();
        }
        stray
    }

    /// The client's cancel reached the mirror's running request: whether to pass it on
    /// now. The front request is the client's, and the client cancelled while the primary
    /// had not answered it yet, or the primary answered it with a cancel of the client's
    /// (one it applied late included); once per request.
    pub fn client_cancel_due(&mut self) -> bool {
        let ledger = &self.ledger;
        let Some(front) = self.conn.in_flight.front_mut() else {
            return false;
        };
        let due = front.is_client()
            && !front.stood_in
            && !front.client_cancel_sent
            && (front.first_seq..=front.seq).any(|seq| {
                (ledger.client_cancelled(seq) && !ledger.answer(seq).is_answered())
                    || ledger.cancelled_on_primary(seq)
            });
        front.client_cancel_sent |= due;
        due
    }

    /// Reports a request set aside for the client's cancel: neither an error nor a
    /// mismatch of the mirror, and no latency (it says nothing of the new server's speed).
    fn report_cancelled(&mut self, done: &InFlight) {
        let mut event = Event::new(self.target.database.clone(), Outcome::Mirrored);
        if let Some(statement) = &done.statement {
            event.query = Some(query_ref(statement));
        }
        if self.statements.is_some() {
            event.comparison = Comparison {
                verdict: Verdict::EXCLUDED,
                excluded: Exclusion::CANCELLED,
                primary_sqlstate: QUERY_CANCELED,
                ..Comparison::not_compared()
            };
        }
        self.events.push(event);
    }

    /// The comparison of `paired` (the answers of `done`, or of one of its statements,
    /// `statement`), set aside when the statement is ignored, non-deterministic, after
    /// drops, or when `done` went to the mirror lagging.
    fn judged(
        &self,
        done: &InFlight,
        paired: &Paired,
        mirror_error: Option<[u8; 5]>,
        statement: Option<&Arc<Fingerprint>>,
    ) -> Comparison {
        let ignored = statement.is_some_and(|s| self.target.compare.ignore.contains(&s.id));
        let mut c = judge(
            paired,
            mirror_error,
            statement.map(|s| &**s),
            ignored,
            self.target.has_diverged(),
        );
        let judged = matches!(c.verdict, Verdict::MATCH | Verdict::MISMATCH);
        if done.lagging() && judged {
            // The mirror may not have had the data the primary answered from.
            c.verdict = Verdict::EXCLUDED;
            c.excluded = Exclusion::LAGGING;
            c.differences = Default::default();
        }
        c
    }

    /// When the mirror could start on `f`: its send, or the previous answer if later.
    fn started(&self, f: &InFlight) -> Instant {
        self.conn.last_done.map_or(f.sent, |done| f.sent.max(done))
    }

    /// Reports an answered request, with its comparison when results are compared.
    fn report_answered(
        &mut self,
        done: &InFlight,
        outcome: Outcome,
        mirror_latency: Option<Duration>,
        now: Instant,
    ) {
        let mut event = Event::new(self.target.database.clone(), outcome);
        event.mirror_latency = mirror_latency;
        event.primary_latency = self.ledger.primary_latency(done.seq);
        // A mirror error in a request of several statements is the failing statement's.
        let failed = matches!(outcome, Outcome::Error { .. })
            .then(|| done.split.as_ref()?.failed())
            .flatten();
        if let Some(statement) = failed.or(done.statement.as_ref()) {
            event.query = Some(query_ref(statement));
        }
        if self.statements.is_some() && !done.timed_out {
            let mirror_error = match outcome {
                // An error without a SQLSTATE never equals the primary's.
                Outcome::Error { sqlstate, .. } => Some(sqlstate.unwrap_or(*b"?????")),
                _ => None,
            };
            event.comparison =
                self.judged(done, &done.paired, mirror_error, done.statement.as_ref());
            let each = done.split.as_ref().and_then(|s| s.statements());
            let statements = each.filter(|_| mirror_error.is_none()).map(|each| {
                each.iter()
                    .map(|(fp, paired)| StatementComparison {
                        query: query_ref(fp),
                        comparison: self.judged(done, paired, None, Some(fp)),
                    })
                    .collect()
            });
            if event.outcome == Outcome::Mirrored && event.comparison.verdict == Verdict::MISMATCH {
                event.outcome = Outcome::Mismatch;
                // A gated read may differ only because rows changed in between: it gets
                // a second look before it is reported ([`super::recheck`]).
                // Held for that look, it is judged as a whole.
                if let Some(mut event) = self.recheck_mismatch(done, event, now) {
                    event.statements = statements;
                    self.events.push(event);
                }
                return;
            }
            event.statements = statements;
        } else if let Outcome::Error {
            category: ErrorCategory::Query,
            sqlstate: Some(code),
        } = outcome
        {
            // Comparison off: only errors are judged, as they are with it on (the same
            // SQLSTATE on both sides is a shared error, not held against the mirror).
            if !done.timed_out && code == done.paired.primary_sqlstate {
                event.comparison = Comparison {
                    verdict: Verdict::MATCH,
                    primary_sqlstate: code,
                    ..Comparison::not_compared()
                };
            }
        }
        self.events.push(event);
    }
}

fn query_ref(statement: &Fingerprint) -> QueryRef {
    QueryRef {
        fingerprint: statement.id,
        text: statement.text.clone(),
    }
}
