//! A request on its way to the mirror: the client's frames as shared byte slices, never
//! copied, plus what is needed to pair it with the primary's answer.

use super::MirrorTarget;
use bytes::Bytes;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

pub struct Request {
    /// The frames, in order; usually one slice of one read.
    pub payload: SmallVec<[Bytes; 2]>,
    /// Sequence number of the request among the session's requests (pairs with the
    /// primary's timing).
    pub seq: u64,
    /// ReadyForQuery messages the mirror sends for it (more than one when a preparing
    /// batch was joined to the executing one).
    pub readies: u32,
    /// When the client's request reached the proxy.
    pub received: Instant,
    /// The request's place in its session's bounded queue, held until the mirror answers.
    /// Shared by the requests of one pipelined burst (see [`Slot`]). `None` for the
    /// proxy's own requests (see [`Request::rollback`]), which take no place and are not
    /// reported.
    pub slot: Option<Arc<Slot>>,
    /// The data of an extended-protocol COPY FROM STDIN, to its CopyDone/CopyFail and the
    /// Sync after it: it completes the request before it (same `seq`, no place, not
    /// reported), which was queued at its first Sync, before the copy began.
    pub continues: bool,
    /// What it executes, once the mirror worker classified it (`mirror_statements`
    /// other than `all`; see [`super::classify`]).
    pub kind: Option<super::classify::Kind>,
    /// The client's requests just before this one were skipped by the tap, for writing
    /// (`mirror_statements = "reads"`), and the session was not idle after them (the
    /// client pipelines): this one may be the rest of their transaction, which the
    /// worker's filter skips too ([`super::pipeline`]).
    pub follows_skipped: bool,
}

impl Request {
    /// The proxy's own `ROLLBACK`, sent to the mirror when requests were dropped after the
    /// mirror had started a transaction: the rest of that transaction will never come, and
    /// left open it would hold its locks and stall every other mirror session.
    pub fn rollback(seq: u64) -> Request {
        let mut msg = bytes::BytesMut::with_capacity(15);
        crate::protocol::messages::query(&mut msg, "ROLLBACK");
        Request {
            payload: SmallVec::from_iter([msg.freeze()]),
            seq,
            readies: 1,
            received: Instant::now(),
            slot: None,
            continues: false,
            kind: None,
            follows_skipped: false,
        }
    }

    /// A continuation (see `continues`) that ends the mirror's COPY with CopyFail: its data
    /// was too big to hold.
    pub fn copy_fail(seq: u64) -> Request {
        let mut msg = bytes::BytesMut::with_capacity(48);
        crate::protocol::messages::copy_fail(&mut msg, "COPY data too big to mirror");
        crate::protocol::messages::sync(&mut msg);
        Request {
            payload: SmallVec::from_iter([msg.freeze()]),
            seq,
            readies: 0,
            received: Instant::now(),
            slot: None,
            continues: true,
            kind: None,
            follows_skipped: false,
        }
    }

    /// What the mirror runs instead of a request the primary answered with the client's
    /// cancel (`57014`): nothing of it runs, but the mirror's transaction fails as the
    /// primary's did. One ReadyForQuery per one of the request's (`readies`: empty
    /// queries first); `begin` when the primary went from idle into a failed transaction
    /// (the request began it, as pgjdbc's `BEGIN` in the same batch does).
    pub fn cancelled_stand_in(readies: u32, begin: bool) -> SmallVec<[Bytes; 2]> {
        const FAIL: &str = "DO $pgdog$BEGIN RAISE EXCEPTION USING ERRCODE = 'query_canceled', \
            MESSAGE = 'pgdog: cancelled on the primary, not run on the mirror'; END$pgdog$";
        let mut msg = bytes::BytesMut::with_capacity(200);
        for _ in 1..readies.max(1) {
            crate::protocol::messages::query(&mut msg, "");
        }
        if begin {
            crate::protocol::messages::query(&mut msg, &format!("BEGIN; {FAIL}"));
        } else {
            crate::protocol::messages::query(&mut msg, FAIL);
        }
        SmallVec::from_iter([msg.freeze()])
    }

    /// A request of the client (not one of the proxy's own): it is reported.
    pub fn is_client(&self) -> bool {
        self.slot.is_some()
    }

    /// Sequence number of its first ReadyForQuery.
    pub fn first_seq(&self) -> u64 {
        self.seq + 1 - u64::from(self.readies.max(1))
    }
}

/// One of a session's `mirror_queue` places: taken when a request is queued, given back
/// when the mirror has answered it (or it failed). Queued and in-flight requests both hold
/// one, so `mirror_queue` bounds everything a session has outstanding on the mirror.
///
/// A request that arrives while the primary has not answered the one before it (a client
/// pipelining: pgjdbc's `executeBatch` in `preferQueryMode=simple` writes up to 256
/// queries before it reads) shares the place of that one, up to
/// [`super::tap::MAX_PLACE_BYTES`] of requests: the place is given back when the mirror
/// has answered all of them. So a burst the primary has not answered yet counts once, and
/// `mirror_queue` counts how many of the client's round trips the mirror is behind.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    target: Arc<MirrorTarget>,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, target: Arc<MirrorTarget>) -> Slot {
        target.queued(true);
        Slot {
            _permit: permit,
            target,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.target.queued(false);
    }
}
