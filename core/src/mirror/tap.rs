//! The client session's side of mirroring: it sees every frame the client sends, groups
//! them into requests and offers each to the mirror queue without ever waiting.
//!
//! A request is one simple Query, one extended-protocol batch up to its Sync (a batch
//! that only prepares joins the one that executes it), one FunctionCall, or one COPY to
//! its end. Exposure is decided per transaction, at the first request after the session
//! was idle; a transaction with a dropped request is poisoned, so the mirror never runs
//! the tail of a transaction without its head.
//!
//! Under `mirror_statements = "reads"` the tap keeps the plainest writes out of the queue
//! (see [`Skipping`]): a transaction that writes in a simple Query before anything of it
//! was queued is skipped here, request by request, and costs the mirror's worker nothing.
//! Everything else is decided by the worker ([`super::pipeline`]'s filter), which sees
//! whole transactions.

use super::ledger::{Ledger, Recorder};
use super::prepared::Definitions;
use super::request::{Request, Slot};
use super::{DropReason, Event, EventSink, MirrorTarget, SkipReason};
use crate::config::MirrorStatements;
use crate::protocol::frame::split_cstr;
use crate::protocol::tag::client;
use crate::sql::{self, Class};
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
    /// A request was sent and not answered yet (the client pipelines).
    fn in_flight(&self) -> bool;
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
    /// `mirror_statements = "reads"`: what the tap decides itself.
    skipping: Skipping,
    /// Which of the last 64 requests offered (bit `seq % 64`) the mirror will never see:
    /// their answers need no digest ([`Tap::digests`]).
    unmirrored: u64,
    /// One past the last request offered.
    offered: u64,
}

/// `mirror_statements = "reads"`, decided in the session for the plainest case: a
/// transaction whose first statement that is not transaction control writes, in a simple
/// Query, before anything of the transaction was queued (an autocommit `UPDATE`, or
/// TPC-B's `BEGIN; UPDATE ...`). Such a transaction is skipped whole, as the worker's
/// filter would skip it, but none of it crosses the queue, takes a place, or wakes the
/// worker. The tap counts each of its requests as skipped (reason `write`).
///
/// A request that only controls the transaction (`BEGIN`) and starts it is held back
/// until the next request shows whether the transaction writes: skipped with it if it
/// does, queued before it if not, and queued at the next transaction boundary (or when
/// the session ends) if nothing came. So a write transaction never has a head on the
/// queue. Once something of a transaction was queued, the rest of it goes to the worker,
/// which sees the transaction whole and decides (a write after a read skips it there).
#[derive(Default)]
struct Skipping {
    /// `mirror_statements = "reads"` (otherwise the tap decides nothing).
    reads: bool,
    /// The current transaction wrote before anything of it was queued: none of it is.
    now: bool,
    /// Something of the current transaction was queued.
    queued: bool,
    /// The request that began the current transaction, held back (see above).
    held: Option<Request>,
    /// Skipped requests were followed by one sent while the session was not idle (a
    /// pipelining client): the tap cannot tell whether that one ends the skipped
    /// transaction, so it stops skipping, and the next request queued carries
    /// [`Request::follows_skipped`] for the worker to find out from the primary's answers.
    follows: bool,
    /// The class of the request being assembled, when it is a simple Query.
    class: Option<Class>,
    /// The request being assembled has a frame other than a simple Query (and its COPY
    /// data): the tap does not classify it.
    extended: bool,
    /// The request being assembled deallocates statements: the worker follows it.
    deallocates: bool,
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
        let target_reads = target.statements == MirrorStatements::Reads;
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
            skipping: Skipping {
                reads: target_reads,
                ..Skipping::default()
            },
            unmirrored: 0,
            offered: 0,
        }
    }

    /// The handle the session records the primary's answers with.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.ledger.clone())
    }

    /// Whether the primary's answer to request `seq` is to be digested: not when the
    /// mirror will never run the request (its transaction is not exposed, or skipped
    /// here). A request not offered yet, or offered more than 64 requests ago, is.
    #[inline]
    pub fn digests(&self, seq: u64) -> bool {
        let known = seq < self.offered && seq + 64 >= self.offered;
        !known || self.unmirrored & (1 << (seq % 64)) == 0
    }

    /// Records whether the request offered, answered by `readies` ReadyForQuery up to
    /// sequence number `self.seq`, goes to the mirror (see [`Tap::digests`]).
    fn mark(&mut self, readies: u32, mirrored: bool) {
        for back in 0..u64::from(readies).min(64) {
            let Some(seq) = self.seq.checked_sub(back) else {
                break;
            };
            let bit = 1 << (seq % 64);
            if mirrored {
                self.unmirrored &= !bit;
            } else {
                self.unmirrored |= bit;
            }
        }
        if readies > 0 {
            self.offered = self.offered.max(self.seq + 1);
        }
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
            // Only a simple Query (and its COPY data) is classified here.
            self.skipping.extended |= tag != client::QUERY && !self.in_copy;
        }
        let boundary = match tag {
            client::QUERY => {
                self.seq = session.next_seq();
                self.readies += 1;
                self.executes = true;
                let deallocates = self.definitions.query(&chunk[start + 5..end]);
                // The class matters only while nothing of the transaction went out.
                let s = &self.skipping;
                if s.reads && self.mirroring && !s.now && !s.queued {
                    // A Query ends its request (COPY data aside): one class per request.
                    self.skipping.deallocates = deallocates;
                    self.skipping.class =
                        split_cstr(&chunk[start + 5..end]).map(|(text, _)| sql::classify(text));
                }
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
        if !session.idle() {
            // Inside the transaction with nothing in flight, it goes on; behind a request
            // in flight, it may have ended.
            if session.in_flight() && std::mem::take(&mut self.skipping.now) {
                self.skipping.follows = true;
            }
        } else {
            // A held-back request that began the transaction just ended goes now.
            self.release_held();
            self.skipping.now = false;
            self.skipping.follows = false;
            self.skipping.queued = false;
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
        let class = self.classified();
        if !self.mirroring {
            self.continues = false;
            self.mark(readies, false);
            return;
        }
        if std::mem::take(&mut self.continues) {
            // Not a request of its own: no place, nothing to report. Its request was
            // dropped if the transaction is poisoned, or skipped; then the data goes too.
            if !self.poisoned && !self.skipping.now {
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
                        follows_skipped: false,
                    }
                };
                let _ = self.tx.send(request);
            }
            return;
        }
        if self.skips(class) {
            self.mark(readies, false);
            return;
        }
        self.mark(readies, true);
        self.release_held();
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
            follows_skipped: self.skipping.follows,
        };
        if self.skipping.reads && !self.skipping.queued && class == Some(Class::Transaction) {
            // `BEGIN`: whether the transaction writes shows with the next request.
            self.skipping.held = Some(request);
            return;
        }
        self.queue(request);
    }

    /// Sends `request` to the worker.
    fn queue(&mut self, request: Request) {
        self.skipping.queued = true;
        self.skipping.follows = false;
        if self.tx.send(request).is_err() {
            self.dropped(DropReason::Shutdown);
        }
    }

    /// The class the tap gave the request just assembled: `Some` under `reads`, for a
    /// simple Query that deallocates nothing (the worker follows the
    /// client's named statements through a `DEALLOCATE`).
    fn classified(&mut self) -> Option<Class> {
        let s = &mut self.skipping;
        let class = s.class.take();
        let plain = !std::mem::take(&mut s.extended) && !std::mem::take(&mut s.deallocates);
        class.filter(|_| plain)
    }

    /// Whether the request offered, of `class`, is skipped here (see [`Skipping`]); counts
    /// it, and the request held back before it, when it is.
    fn skips(&mut self, class: Option<Class>) -> bool {
        let s = &mut self.skipping;
        if !s.now && !s.queued && !self.poisoned && class.is_some_and(Class::may_write) {
            s.now = true;
        }
        if !s.now {
            return false;
        }
        let n = 1 + u64::from(s.held.take().is_some());
        self.target.skips.count(SkipReason::Write, n);
        true
    }

    /// Queues the request held back, if any: the transaction it began did not write first.
    fn release_held(&mut self) {
        if let Some(held) = self.skipping.held.take() {
            self.queue(held);
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
        self.release_held();
        self.ledger.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MirrorStatements::{self, All, Reads};
    use crate::mirror::testing;
    use crate::plugins::{LoadOptions, PluginHost};
    use bytes::BytesMut;
    use std::cell::Cell;

    /// The client's side as the tap sees it: requests sent, answered, and the transaction
    /// status of the last answer.
    #[derive(Default)]
    struct Client {
        sent: Cell<u64>,
        answered: Cell<u64>,
        in_transaction: Cell<bool>,
    }

    impl ClientSession for Client {
        fn next_seq(&self) -> u64 {
            self.sent.get()
        }
        fn idle(&self) -> bool {
            !self.in_flight() && !self.in_transaction.get()
        }
        fn in_flight(&self) -> bool {
            self.answered.get() < self.sent.get()
        }
        fn copy_sync_owed(&self) -> bool {
            false
        }
    }

    struct Fixture {
        tap: Tap,
        rx: mpsc::UnboundedReceiver<Request>,
        client: Client,
        target: Arc<MirrorTarget>,
        _host: PluginHost,
    }

    impl Fixture {
        fn new(statements: MirrorStatements) -> Fixture {
            let target = testing::target_statements(16, statements, false);
            let host = PluginHost::load(&[], &LoadOptions::new(std::path::Path::new(".")))
                .expect("no plugins");
            let (tx, rx) = mpsc::unbounded_channel();
            let tap = Tap::new(
                target.clone(),
                tx,
                host.events(),
                Arc::new(Definitions::default()),
                Arc::new(Ledger::new(true)),
                Arc::new(AtomicBool::new(false)),
            );
            Fixture {
                tap,
                rx,
                client: Client::default(),
                target,
                _host: host,
            }
        }

        /// The client sends `sql` (without waiting for the answer).
        fn send(&mut self, sql: &str) {
            let mut buf = BytesMut::new();
            crate::protocol::messages::query(&mut buf, sql);
            let chunk = buf.freeze();
            let now = Instant::now();
            self.tap
                .frame(client::QUERY, &chunk, 0, chunk.len(), &self.client, now);
            self.client.sent.set(self.client.sent.get() + 1);
        }

        /// The primary answers everything sent, leaving a transaction open or not.
        fn answer(&mut self, open: bool) {
            self.client.answered.set(self.client.sent.get());
            self.client.in_transaction.set(open);
        }

        /// `sql`, answered: inside a transaction after it when `open`.
        fn run(&mut self, sql: &str, open: bool) {
            self.send(sql);
            self.answer(open);
        }

        /// The texts queued for the worker so far, and whether each follows skipped ones.
        fn queued(&mut self) -> Vec<(String, bool)> {
            std::iter::from_fn(|| self.rx.try_recv().ok())
                .map(|r| {
                    let bytes: Vec<u8> = r.payload.iter().flat_map(|b| b.to_vec()).collect();
                    let text = String::from_utf8_lossy(&bytes[5..bytes.len() - 1]).into_owned();
                    (text, r.follows_skipped)
                })
                .collect()
        }

        fn skipped(&self) -> u64 {
            self.target.skips.skipped(SkipReason::Write)
        }
    }

    fn texts(queued: &[(String, bool)]) -> Vec<&str> {
        queued.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[test]
    fn a_transaction_that_writes_first_never_reaches_the_queue() {
        let mut f = Fixture::new(Reads);
        // TPC-B's transaction: BEGIN, then writes and a read, then END.
        for (sql, open) in [
            ("BEGIN", true),
            ("UPDATE a SET v = v + 1 WHERE id = 1", true),
            ("SELECT v FROM a WHERE id = 1", true),
            ("INSERT INTO h VALUES (1)", true),
            ("END", false),
        ] {
            f.run(sql, open);
        }
        assert!(f.queued().is_empty());
        assert_eq!(f.skipped(), 5);
        // An autocommit write alone, then a read transaction: the read goes out.
        f.run("DELETE FROM a WHERE id = 2", false);
        f.run("BEGIN", true);
        assert!(f.queued().is_empty(), "BEGIN waits for the next request");
        f.run("SELECT 1", true);
        f.run("COMMIT", false);
        assert_eq!(texts(&f.queued()), ["BEGIN", "SELECT 1", "COMMIT"]);
        assert_eq!(f.skipped(), 6);
    }

    #[test]
    fn answers_the_mirror_will_not_see_are_not_digested() {
        let mut f = Fixture::new(Reads);
        f.run("BEGIN", true);
        f.run("UPDATE a SET v = 1", true);
        f.run("COMMIT", false);
        f.run("SELECT 1", false);
        let digested: Vec<bool> = (0..6).map(|seq| f.tap.digests(seq)).collect();
        // BEGIN, held back, might have gone out (it is answered before the tap knows);
        // the write and the rest of its transaction do not; the read does; requests not
        // offered yet are digested.
        assert_eq!(digested, [true, false, false, true, true, true]);
        // Past 64 requests the tap no longer knows: digested, to be safe.
        for _ in 0..64 {
            f.run("UPDATE a SET v = 2", false);
        }
        assert!(f.tap.digests(0));
        assert!(!f.tap.digests(67));
    }

    #[test]
    fn a_write_after_a_read_is_left_to_the_worker() {
        let mut f = Fixture::new(Reads);
        f.run("BEGIN", true);
        f.run("SELECT 1", true);
        f.run("UPDATE a SET v = 1", true);
        f.run("COMMIT", false);
        // The worker sees the transaction whole and skips it there.
        assert_eq!(
            texts(&f.queued()),
            ["BEGIN", "SELECT 1", "UPDATE a SET v = 1", "COMMIT"]
        );
        assert_eq!(f.skipped(), 0);
    }

    #[test]
    fn a_begin_alone_goes_out_at_the_next_boundary_or_at_the_end() {
        let mut f = Fixture::new(Reads);
        f.run("BEGIN; COMMIT", false);
        assert!(f.queued().is_empty());
        f.send("SELECT 2");
        assert_eq!(texts(&f.queued()), ["BEGIN; COMMIT", "SELECT 2"]);
        f.answer(false);
        f.run("BEGIN", true);
        let Fixture { tap, mut rx, .. } = f;
        drop(tap);
        assert!(
            rx.try_recv().is_ok_and(|r| r.seq == 2),
            "held BEGIN queued at the end"
        );
    }

    #[test]
    fn behind_a_request_in_flight_the_worker_decides() {
        let mut f = Fixture::new(Reads);
        // A pipelining client: the tap cannot see where the skipped transaction ends.
        f.send("BEGIN");
        f.send("UPDATE a SET v = 1");
        f.send("SELECT 1");
        f.send("COMMIT");
        f.send("SELECT 2");
        let queued = f.queued();
        assert_eq!(
            queued,
            [
                ("SELECT 1".to_string(), true),
                ("COMMIT".to_string(), false),
                ("SELECT 2".to_string(), false),
            ]
        );
        assert_eq!(f.skipped(), 2);
    }

    #[test]
    fn extended_batches_and_deallocations_are_left_to_the_worker() {
        let mut f = Fixture::new(Reads);
        // The worker follows the client's named statements through a DEALLOCATE.
        f.run("DEALLOCATE s1; UPDATE a SET v = 1", false);
        let mut buf = BytesMut::new();
        crate::protocol::messages::parse(&mut buf, "", "UPDATE a SET v = 2");
        crate::protocol::messages::bind_text(&mut buf, &[]);
        crate::protocol::messages::execute(&mut buf);
        crate::protocol::messages::sync(&mut buf);
        let chunk = buf.freeze();
        let now = Instant::now();
        for (tag, msg) in crate::protocol::frame::Frames::new(&chunk.clone()) {
            let start = msg.as_ptr() as usize - chunk.as_ptr() as usize;
            f.tap
                .frame(tag, &chunk, start, start + msg.len(), &f.client, now);
        }
        let seqs: Vec<u64> = std::iter::from_fn(|| f.rx.try_recv().ok())
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [0, 1]);
        assert_eq!(f.skipped(), 0);
    }

    #[test]
    fn other_modes_queue_everything() {
        let mut f = Fixture::new(All);
        f.run("BEGIN", true);
        f.run("UPDATE a SET v = 1", true);
        f.run("COMMIT", false);
        assert_eq!(f.queued().len(), 3);
        assert_eq!(f.skipped(), 0);
    }
}
