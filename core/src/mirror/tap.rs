//! The client session's side of mirroring: it sees every frame the client sends, groups
//! them into requests and offers each to the mirror queue without ever waiting.
//!
//! A request is one simple Query, one extended-protocol batch up to its Sync (a batch
//! that only prepares joins the one that executes it), one FunctionCall, or one COPY to
//! its end. Exposure is decided per transaction, at the first request after the session
//! was idle; a transaction with a dropped request is poisoned, so the mirror never runs
//! the tail of a transaction without its head.

use super::ledger::{Ledger, Recorder};
use super::prepared::Definitions;
use super::request::{Request, Slot};
use super::{DropReason, Event, EventSink, MirrorTarget};
use crate::protocol::tag::client;
use crate::sql;
use bytes::Bytes;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

/// A request bigger than this is not mirrored (counted as dropped): queues hold payloads
/// by reference, and a huge COPY must not pin unbounded memory behind a slow mirror.
pub const MAX_MIRRORED_REQUEST: usize = 16 * 1024 * 1024;

/// Most bytes of requests one queue place holds: a pipelined burst shares the place of
/// its first request up to this much (see [`Slot`]). With [`MAX_MIRRORED_REQUEST`] the
/// same, a session's queue holds at most `mirror_queue` x 16 MiB, as before bursts shared
/// places.
pub const MAX_PLACE_BYTES: usize = MAX_MIRRORED_REQUEST;

/// What the tap needs to know of the client's session (its own request count and
/// transaction status, kept by the session).
pub trait ClientSession {
    /// Sequence number the next request will get.
    fn next_seq(&self) -> u64;
    /// No request in flight and no transaction open: a transaction boundary.
    fn idle(&self) -> bool;
    /// The next Sync completes an extended-protocol COPY rather than starting a request.
    fn copy_sync_owed(&self) -> bool;
}

pub struct Tap {
    target: Arc<MirrorTarget>,
    tx: mpsc::UnboundedSender<Request>,
    /// The session's `mirror_queue` places (see [`Slot`]).
    places: Arc<Semaphore>,
    events: EventSink,
    /// The client's named statements, kept whether or not their requests are mirrored.
    definitions: Arc<Definitions>,
    /// The primary's answers, for the worker to pair with the mirror's.
    ledger: Arc<Ledger>,
    /// The worker waits for a connection of an exhausted mirror pool.
    awaiting_pool: Arc<AtomicBool>,
    /// The current transaction's exposure decision.
    mirroring: bool,
    /// A request of the current transaction was dropped: the rest of it is dropped too.
    poisoned: bool,
    /// Frames of the request being assembled.
    current: SmallVec<[Bytes; 2]>,
    current_len: usize,
    /// Inside `COPY ... FROM STDIN`: the request runs to CopyDone/CopyFail.
    in_copy: bool,
    /// A request is being assembled (its exposure decided).
    in_request: bool,
    /// ReadyForQuery messages the request will produce (one per Query, Sync, FunctionCall).
    readies: u32,
    /// The request executes something (a batch with only Parse/Describe/Close does not).
    executes: bool,
    seq: u64,
    received: Option<Instant>,
    /// The request being assembled is the data of an extended-protocol COPY FROM STDIN
    /// (see [`Request::continues`]).
    continues: bool,
    /// The place of the pipelined burst being queued: the last request queued in it, and
    /// the bytes its requests hold (see [`Slot`]).
    burst: Option<Burst>,
}

/// A queue place shared by requests the client sent before the primary answered.
struct Burst {
    /// Weak: an idle session holds no place.
    slot: Weak<Slot>,
    last_seq: u64,
    bytes: usize,
}

impl Tap {
    pub(super) fn new(
        target: Arc<MirrorTarget>,
        tx: mpsc::UnboundedSender<Request>,
        events: EventSink,
        definitions: Arc<Definitions>,
        ledger: Arc<Ledger>,
        awaiting_pool: Arc<AtomicBool>,
    ) -> Tap {
        Tap {
            awaiting_pool,
            places: Arc::new(Semaphore::new(target.queue)),
            target,
            tx,
            events,
            definitions,
            ledger,
            mirroring: false,
            poisoned: false,
            current: SmallVec::new(),
            current_len: 0,
            in_copy: false,
            in_request: false,
            readies: 0,
            executes: false,
            seq: 0,
            received: None,
            continues: false,
            burst: None,
        }
    }

    /// The handle the session records the primary's answers with.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.ledger.clone())
    }

    /// The session sent request `seq` to the primary at `now` (after its last frame went
    /// through [`Tap::frame`]).
    #[inline]
    pub fn sent(&self, seq: u64, now: Instant) {
        self.ledger.request_sent(seq, now);
    }

    /// Sees one client frame, `chunk[start..end]`, with tag `tag`, before the session
    /// counts it.
    #[inline]
    pub fn frame(
        &mut self,
        tag: u8,
        chunk: &Bytes,
        start: usize,
        end: usize,
        session: &impl ClientSession,
        now: Instant,
    ) {
        if !self.in_request {
            self.begin(session, now);
        }
        if self.mirroring {
            self.append(chunk, start, end);
        }
        let boundary = match tag {
            client::QUERY => {
                self.seq = session.next_seq();
                self.readies += 1;
                self.executes = true;
                self.definitions.query(&chunk[start + 5..end]);
                if sql::copy_from_stdin(&chunk[start + 5..end]) {
                    self.in_copy = true;
                    false
                } else {
                    true
                }
            }
            client::FUNCTION_CALL => {
                self.seq = session.next_seq();
                self.readies += 1;
                self.executes = true;
                true
            }
            client::EXECUTE => {
                self.executes = true;
                false
            }
            // Named statements are remembered even when this request is not mirrored: a
            // later mirrored Bind may need the definition (see `prepared`).
            client::PARSE => {
                self.definitions
                    .parsed(&chunk[start..end], session.next_seq());
                false
            }
            client::CLOSE => {
                self.definitions.closed(&chunk[start + 5..end]);
                false
            }
            // The Sync after the data of an extended-protocol COPY FROM STDIN: it completes
            // the request that started the copy (the server ignored that one's Sync).
            client::SYNC if session.copy_sync_owed() => {
                self.continues = true;
                true
            }
            // A batch that only prepares (Parse/Describe/Sync, as drivers send before the
            // first execution of a statement) joins the batch that executes it: one query
            // of the application is one request.
            client::SYNC => {
                self.seq = session.next_seq();
                self.readies += 1;
                self.executes
            }
            client::COPY_DONE | client::COPY_FAIL if self.in_copy => {
                self.in_copy = false;
                true
            }
            _ => false,
        };
        if boundary {
            self.offer(now);
        }
    }

    /// A request starts: decide exposure when no transaction is open and nothing is in
    /// flight (a transaction boundary), else keep the transaction's decision.
    fn begin(&mut self, session: &impl ClientSession, now: Instant) {
        self.in_request = true;
        self.received = Some(now);
        if session.idle() {
            self.poisoned = false;
            let exposure = self.target.exposure();
            self.mirroring =
                exposure >= 1.0 || (exposure > 0.0 && rand::random::<f64>() < exposure);
        }
    }

    fn append(&mut self, chunk: &Bytes, start: usize, end: usize) {
        self.current_len += end - start;
        if self.current_len > MAX_MIRRORED_REQUEST {
            // Keep counting but stop holding bytes; `offer` reports it as a drop.
            self.current.clear();
            return;
        }
        // Frames of one read are contiguous: extend the last slice instead of adding one.
        if let Some(last) = self.current.last_mut() {
            let base = chunk.as_ptr() as usize;
            let (last_start, last_end) =
                (last.as_ptr() as usize, last.as_ptr() as usize + last.len());
            // Only when `last` is a slice of this same chunk (consecutive chunks can be
            // adjacent in memory, but one slice cannot span two of them).
            if last_start >= base && last_end == base + start {
                *last = chunk.slice(last_start - base..end);
                return;
            }
        }
        self.current.push(chunk.slice(start..end));
    }

    fn offer(&mut self, now: Instant) {
        let payload = std::mem::take(&mut self.current);
        let payload_len = self.current_len;
        let too_big = self.current_len > MAX_MIRRORED_REQUEST;
        let readies = std::mem::take(&mut self.readies);
        self.current_len = 0;
        self.in_request = false;
        self.executes = false;
        if !self.mirroring {
            self.continues = false;
            return;
        }
        if std::mem::take(&mut self.continues) {
            // Not a request of its own: no place, nothing to report. Its request was
            // dropped if the transaction is poisoned; then the data goes too.
            if !self.poisoned {
                let request = if too_big {
                    Request::copy_fail(self.seq)
                } else {
                    Request {
                        payload,
                        seq: self.seq,
                        readies: 0,
                        received: now,
                        slot: None,
                        continues: true,
                        kind: None,
                    }
                };
                let _ = self.tx.send(request);
            }
            return;
        }
        let slot = if too_big || self.poisoned {
            None
        } else {
            self.place(payload_len)
        };
        let slot = match slot {
            Some(slot) => slot,
            None => {
                self.poisoned = true;
                // A queue full because its worker waits for a mirror connection is the
                // proxy's pool limit, told apart from a mirror that does not keep up.
                let reason = if !too_big && self.awaiting_pool.load(Ordering::Relaxed) {
                    self.target.note_pool_exhausted();
                    DropReason::PoolExhausted
                } else {
                    DropReason::BufferFull
                };
                self.dropped(reason);
                return;
            }
        };
        let request = Request {
            payload,
            seq: self.seq,
            readies,
            received: self.received.take().unwrap_or(now),
            slot: Some(slot),
            continues: false,
            kind: None,
        };
        if self.tx.send(request).is_err() {
            self.dropped(DropReason::Shutdown);
        }
    }

    /// The queue place for the request being offered, of `len` bytes: the place of the
    /// burst it continues when the primary has not answered the burst's last request yet
    /// and the place has room for it, else a free place (non-blocking: none means the
    /// mirror is `mirror_queue` of the client's round trips behind).
    fn place(&mut self, len: usize) -> Option<Arc<Slot>> {
        if let Some(burst) = &mut self.burst {
            let pending = !self.ledger.answer(burst.last_seq).is_answered();
            let shared = burst.slot.upgrade();
            if let Some(slot) = shared.filter(|_| pending && burst.bytes + len <= MAX_PLACE_BYTES) {
                burst.last_seq = self.seq;
                burst.bytes += len;
                return Some(slot);
            }
        }
        self.burst = None;
        let permit = self.places.clone().try_acquire_owned().ok()?;
        let slot = Arc::new(Slot::new(permit, self.target.clone()));
        self.burst = Some(Burst {
            slot: Arc::downgrade(&slot),
            last_seq: self.seq,
            bytes: len,
        });
        Some(slot)
    }

    fn dropped(&self, reason: DropReason) {
        self.target.note_drop();
        self.events
            .send(Event::dropped(self.target.database.clone(), reason));
    }
}

impl Drop for Tap {
    /// The session is over: its queue closes (the worker drains it and stops), and a
    /// worker waiting for the primary's answers stops waiting.
    fn drop(&mut self) {
        self.ledger.close();
    }
}
