//! The rules of replaying one client session on a mirror connection, without I/O.
//!
//! [`Pipeline`] owns everything the replay decides with: the requests taken from the
//! queue and not sent yet ([`Backlog`]), the requests in flight, and what the mirror's
//! server has of the client's named statements. It is driven from outside
//! ([`super::driver`]) and never waits itself:
//! - the writer side asks [`Pipeline::next_step`] what to do, passing a non-blocking view
//!   of the queue: write these bytes, or wait for something (the primary's answers, the
//!   client's next request) and come back;
//! - the reader side hands it each message the mirror sends ([`Pipeline::on_message`]),
//!   and asks for the front request's [`Pipeline::deadline`];
//! - what happened to each request comes out as events ([`Pipeline::take_events`]).
//!
//! # Vocabulary
//! - **seq**: a request's sequence number among the session's requests; the primary's
//!   answers (in the session's [`Ledger`]) are found by it.
//! - **places**: a session's `mirror_queue` places; a client request holds one from the
//!   moment it is queued until the mirror answers it, so the places bound everything a
//!   session has outstanding on the mirror.
//! - **readies**: the ReadyForQuery messages a request produces. A batch that only
//!   prepares is joined to the batch that executes it, so a request can have several,
//!   with as many sequence numbers.
//! - **held**: taken from the queue, not sent yet. A transaction is held until the
//!   primary has finished it and then sent in one write, so the mirror never holds its
//!   locks while waiting for the client's next statement.
//! - **hold limit**: half the places. A transaction longer than that goes out as far as
//!   the primary has answered it.
//! - **linger**: after a finished transaction of a client whose transactions come less
//!   than 1 ms apart, the writer waits up to 2 ms for the next ones to join the write.
//! - **poisoned** (in the tap): a transaction with a dropped request; its rest is
//!   dropped too.
//! - **cut transaction**: one whose rest was dropped. A gap in the sequence numbers taken
//!   shows it (`cut_off`: its held head is dropped, and the proxy's own `ROLLBACK` ends
//!   it on the mirror if the mirror may be inside it); so does the primary finishing a
//!   transaction whose end never reached the queue (`cut_short`), checked without
//!   waiting for the client's next request.
//! - **dangling**: held requests past the last transaction end, or a mirror that may be
//!   inside a transaction with nothing on its way to end it.
//! - **continues**: the data of an extended-protocol COPY FROM STDIN, which completes the
//!   request before it rather than being one.
//! - **repair**: `Close` + `Parse` put in front of a request that binds a named statement
//!   the mirror lacks ([`super::prepared`]).
//! - **timeout**: a request running longer than `mirror_timeout_ms` is cancelled on the
//!   mirror; its answer still ends it, and it counts as a timeout.

mod backlog;
mod filter;
mod inflight;
mod reader;
mod recheck;
mod writer;

#[cfg(test)]
mod tests;

use self::backlog::Backlog;
use self::filter::Open;
use self::inflight::InFlight;
use super::classify::Classifier;
use super::ledger::Ledger;
use super::prepared::{Definitions, OnMirror};
use super::request::Request;
use super::sync::Gated;
use super::target::Pooling;
use super::{Event, MirrorError, MirrorTarget, Outcome, Report};
use crate::compare::statements::Statements;
use crate::compare::Digest;
use crate::config::MirrorStatements;
use crate::protocol::TxStatus;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use writer::{Step, LINGER};

/// After cancelling a timed-out request, how long to wait for its answer before the
/// connection is given up.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// One client session's replay on the mirror.
pub struct Pipeline {
    target: Arc<MirrorTarget>,
    ledger: Arc<Ledger>,
    /// The client's named statements, to define on the mirror when it lacks them.
    definitions: Arc<Definitions>,
    /// The client's statements by name, when results are compared (kept across
    /// connections, as the client's view of them does not depend on the mirror's).
    statements: Option<Statements>,
    /// The session's places, as they were when it started.
    places: usize,
    /// Events not yet taken by the driver.
    events: Vec<Event>,
    /// The client prepared a statement in SQL: in transaction mode the session keeps its
    /// mirror connection from then on (see [`Pipeline::may_release`]).
    pinned: bool,
    /// The state of the current mirror connection.
    conn: Connection,
    /// What each request executes, when `mirror_statements` is not `all`.
    classifier: Option<Classifier>,
    /// The transaction `mirror_statements` decided on before it was whole (see
    /// [`filter`]).
    open: Open,
}

/// A batch waiting for the mirror to catch up (`mirror_sync`).
struct Gating {
    batch: Vec<Request>,
    /// When the primary answered its last request.
    answered_at: Instant,
    /// How the wait ended, once it did.
    gated: Option<Gated>,
}

/// What one mirror connection's replay has: reset for each new connection.
#[derive(Default)]
struct Connection {
    backlog: Backlog,
    /// The batch the writer was about to send when it found it could not.
    unsent: Vec<Request>,
    in_flight: VecDeque<InFlight>,
    /// The named statements this connection's server has.
    on_mirror: OnMirror,
    /// The session's queue is closed: no request will come.
    queue_closed: bool,
    /// Everything was sent and the queue is closed.
    finished: bool,
    /// The last wait for the primary found what it waited for, and nothing was sent or
    /// taken since: waiting again would return at once.
    idle_seen: bool,
    /// A wait for the primary just ended with an answer: consider lingering.
    linger_due: bool,
    /// A wait for the primary ended with the session: wait for the queue alone once.
    session_closed: bool,
    /// ReadyForQuery messages received on this connection.
    answered: u64,
    /// Transaction status of the mirror's last ReadyForQuery.
    mirror_status: TxStatus,
    /// The digest of the answer being received, when results are compared.
    digest: Digest,
    /// When the last answer arrived (a request's service time starts at its send or
    /// there, whichever is later).
    last_done: Option<Instant>,
    /// After a cancel for the front request: when its answer is given up.
    cancel_deadline: Option<Instant>,
    /// When the last cancelled request was answered (see [`reader`]).
    last_cancelled: Option<Instant>,
    /// The batch the writer waits to send until the mirror has caught up.
    gating: Option<Gating>,
    /// The mirror refused a statement as a write (`25006`) inside a transaction: the rest
    /// of that transaction fails on the mirror and is skipped too.
    refusing: bool,
    /// When the last request the client's cancel was passed on for was answered.
    last_client_cancel: Option<Instant>,
    /// Gated reads whose answers differed, looked at again one after the other (the
    /// front one first).
    recheck: std::collections::VecDeque<recheck::Recheck>,
}

/// What became of the requests of a connection that broke.
pub enum Broken {
    /// Nothing was answered on it, it was a pooled connection, and nothing timed out:
    /// these client requests can be sent again on a fresh connection.
    Retry(Vec<Request>),
    /// Everything unanswered was reported.
    Reported,
    /// It closed while the mirror was idle, outside a transaction, with nothing of the
    /// client's on it (a backend terminated, or a server restarted, between requests):
    /// nothing was lost and nothing is reported; the next request takes a fresh
    /// connection, as the primary's next client would.
    Quiet,
}

impl Pipeline {
    pub fn new(
        target: Arc<MirrorTarget>,
        ledger: Arc<Ledger>,
        definitions: Arc<Definitions>,
    ) -> Pipeline {
        let statements = ledger.compares().then(Statements::default);
        let classifier = (target.statements != MirrorStatements::All)
            .then(|| Classifier::new(target.statements == MirrorStatements::Reads));
        Pipeline {
            classifier,
            open: Open::None,
            places: target.queue,
            target,
            ledger,
            definitions,
            statements,
            events: Vec::new(),
            pinned: false,
            conn: Connection::default(),
        }
    }

    /// A new mirror connection: nothing is held, in flight or known on it.
    #[cfg(test)]
    pub fn new_connection(&mut self) {
        self.attach(None);
    }

    /// A connection of the mirror pool comes to the session: nothing is held or in flight
    /// on it, and it has `statements` (what other sessions left on it, in transaction
    /// mode; `None` for a connection that has none).
    pub fn attach(&mut self, statements: Option<OnMirror>) {
        self.conn = Connection::default();
        self.conn.on_mirror = match (self.target.pooling, statements) {
            (Pooling::Session, _) => OnMirror::default(),
            (Pooling::Transaction { .. }, Some(s)) => s.handed_over(),
            (Pooling::Transaction { statements }, None) => OnMirror::pooled(statements),
        };
    }

    /// The session gives its connection back: what the connection's server has of the
    /// statements, to go with it.
    pub fn detach(&mut self) -> OnMirror {
        std::mem::take(&mut self.conn.on_mirror)
    }

    /// The gate reads wait at (`mirror_sync`).
    pub fn gate(&self) -> Option<Arc<super::sync::Gate>> {
        self.target.sync.clone()
    }

    /// The client prepared statements in SQL (see [`Pipeline::may_release`]).
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Transaction mode: the connection can go back to the pool now, as the primary's
    /// would. Everything taken was sent and answered, the mirror is outside a transaction,
    /// and the session did not prepare statements in SQL (they live on one connection,
    /// which the session then keeps, as a session-mode client would).
    pub fn may_release(&self) -> bool {
        let conn = &self.conn;
        matches!(self.target.pooling, Pooling::Transaction { .. })
            && !self.pinned
            && conn.in_flight.is_empty()
            && conn.backlog.is_empty()
            && conn.unsent.is_empty()
            && conn.recheck.is_empty()
            && conn.mirror_status.is_idle()
    }

    /// Events produced since the last call (one per client request that ended).
    #[cfg(test)]
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Hands the events produced so far to `sink`.
    pub fn flush_events(&mut self, sink: &impl Report) {
        for event in self.events.drain(..) {
            sink.report(event);
        }
    }

    /// Transaction status of the mirror's last answer on this connection.
    pub fn mirror_status(&self) -> TxStatus {
        self.conn.mirror_status
    }

    /// Everything was sent and answered, and the queue is closed.
    pub fn is_done(&self) -> bool {
        self.conn.finished && self.conn.in_flight.is_empty() && self.conn.recheck.is_empty()
    }

    /// Most requests of one open transaction held back before they are sent anyway (a
    /// long transaction must not use up the session's places).
    pub fn hold_limit(&self) -> usize {
        (self.places / 2).max(1)
    }

    /// Reports `outcome` for client request `seq`, without a comparison.
    pub fn report(&mut self, seq: u64, outcome: Outcome) {
        let mut event = Event::new(self.target.database.clone(), outcome);
        event.primary_latency = self.ledger.primary_latency(seq);
        self.events.push(event);
    }

    /// A request of the client never reached the mirror (the queue was full when it was
    /// needed again): reported as dropped, and the mirror's data may now lack writes.
    fn dropped(events: &mut Vec<Event>, target: &MirrorTarget, r: Request) {
        if r.is_client() {
            target.note_drop();
            events.push(Event::dropped(
                target.database.clone(),
                super::DropReason::BufferFull,
            ));
        }
    }

    /// The connection broke with `why`. When nothing of the client's was on it and the
    /// mirror was outside a transaction, that is no failure ([`Broken::Quiet`]). When
    /// `may_retry` (a pooled connection, on its
    /// first use here), nothing was answered or timed out and the server did not break
    /// the protocol, the client's requests come back to be sent on a fresh connection;
    /// otherwise every unanswered request is reported: as a timeout when it had timed
    /// out, as `protocol` for the first one when the server broke the protocol (the
    /// answer it was sending), else as a connection error.
    pub fn connection_broken(&mut self, why: &MirrorError, may_retry: bool) -> Broken {
        self.recheck_abandoned();
        let mut conn = std::mem::take(&mut self.conn);
        // The transaction the mirror was in is gone with the connection.
        self.open = Open::None;
        let timed_out = conn.in_flight.iter().any(|f| f.timed_out);
        let mut held = conn.backlog.take_all();
        if let Some(gating) = conn.gating.take() {
            held.splice(0..0, gating.batch);
        }
        let unanswered = conn
            .in_flight
            .into_iter()
            .map(|f| (f.timed_out, f.into_request()))
            .chain(conn.unsent.into_iter().map(|r| (false, r)))
            .chain(held.into_iter().map(|r| (false, r)))
            .filter(|(_, r)| r.is_client());
        let fault = why.is_protocol_fault();
        let mut unanswered = unanswered.peekable();
        if unanswered.peek().is_none() && conn.mirror_status == TxStatus::Idle {
            tracing::debug!(
                database = &*self.target.database,
                "mirror connection closed between requests: {why}"
            );
            return Broken::Quiet;
        }
        if may_retry && !fault && conn.answered == 0 && !timed_out {
            return Broken::Retry(unanswered.map(|(_, r)| r).collect());
        }
        tracing::debug!(
            database = &*self.target.database,
            "mirror connection broke: {why}"
        );
        for (i, (timed_out, r)) in unanswered.enumerate() {
            let outcome = if timed_out {
                super::timeout()
            } else if fault && i == 0 {
                super::protocol_error()
            } else {
                super::connection_error()
            };
            self.report(r.seq, outcome);
        }
        Broken::Reported
    }
}
