//! A request sent to the mirror and not yet answered, and the pieces of the pipeline
//! that deal with one request at a time (gathering a batch's bytes, recognising COPY data).

use crate::compare::split::Split;
use crate::compare::statements::Run;
use crate::compare::{Fingerprint, Paired};
use crate::mirror::classify::Kind;
use crate::mirror::prepared::Effects;
use crate::mirror::request::{Request, Slot};
use crate::mirror::sync::Gated;
use crate::protocol::frame::Frames;
use crate::protocol::tag::client;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;

/// A request sent to the mirror and not yet answered.
pub struct InFlight {
    pub seq: u64,
    /// The frames, kept (as shared references) until answered, so that a request sent on a
    /// pooled connection found dead can be sent again on a fresh one.
    pub payload: SmallVec<[Bytes; 2]>,
    pub received: Instant,
    /// ReadyForQuery messages still to come for it.
    pub readies: u32,
    /// Its queue place, given back when the answer arrives (`None`: the proxy's own).
    slot: Option<Arc<Slot>>,
    pub sent: Instant,
    /// The request carries its own COPY data (ends with CopyDone/CopyFail).
    pub has_copy_data: bool,
    /// Whether the mirror answered it with an error so far.
    pub answer: MirrorAnswer,
    /// A cancel was sent for it after `mirror_timeout_ms`.
    pub timed_out: bool,
    /// Sequence number of its first ReadyForQuery.
    pub first_seq: u64,
    /// The primary answered it with the client's cancel before it was sent: the mirror
    /// got a stand-in that fails the same way instead ([`Request::cancelled_stand_in`]).
    pub stood_in: bool,
    /// The client's cancel was passed on to the mirror while it ran this request.
    pub client_cancel_sent: bool,
    /// The statement it runs, when results are compared.
    pub statement: Option<Arc<Fingerprint>>,
    /// Its answers compared with the primary's so far.
    pub paired: Paired,
    /// When it runs several different statements: their answers, one by one.
    pub split: Option<Box<Split>>,
    /// What it does to the mirror's named statements.
    pub effects: Effects,
    /// What it executes (`mirror_statements` other than `all`).
    pub kind: Option<Kind>,
    /// How its wait at the gate (`mirror_sync`) ended, when it waited there. `Lagging`:
    /// it went to the mirror before the mirror had applied what the primary had when it
    /// answered (`mirror_max_lag_ms` passed), so its comparison is set aside.
    pub gated: Option<Gated>,
    /// A second run of a read whose answers differed ([`super::recheck`]): the proxy's
    /// own, its answer decides that read's comparison.
    pub recheck: bool,
}

/// Whether the mirror reported an error for a request, and its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorAnswer {
    #[default]
    Ok,
    /// The first ErrorResponse's SQLSTATE, `None` when it had none.
    Failed(Option<[u8; 5]>),
}

impl InFlight {
    /// `r` (with the statement effects and what it runs worked out), sent at `sent`.
    pub fn new(r: Request, sent: Instant, effects: Effects, run: Run) -> InFlight {
        InFlight {
            has_copy_data: ends_with_copy_data(&r.payload),
            first_seq: r.first_seq(),
            stood_in: false,
            client_cancel_sent: false,
            seq: r.seq,
            readies: r.readies.max(1),
            received: r.received,
            payload: r.payload,
            slot: r.slot,
            sent,
            answer: MirrorAnswer::Ok,
            timed_out: false,
            statement: run.statement,
            paired: Paired::default(),
            split: run.each.map(|each| Box::new(Split::new(each))),
            effects,
            kind: r.kind,
            gated: None,
            recheck: false,
        }
    }

    /// It went to the mirror past `mirror_max_lag_ms`: its comparison is set aside.
    pub fn lagging(&self) -> bool {
        self.gated == Some(Gated::Lagging)
    }

    /// A request of the client (not one of the proxy's own): it is reported.
    pub fn is_client(&self) -> bool {
        self.slot.is_some()
    }

    /// Sequence number of the answer the next ReadyForQuery ends (requests joined from a
    /// preparing batch have several).
    pub fn answering_seq(&self) -> u64 {
        self.seq + 1 - u64::from(self.readies.max(1))
    }

    /// Back to a request, to be sent again on another connection.
    pub fn into_request(self) -> Request {
        Request {
            payload: self.payload,
            seq: self.seq,
            readies: self.readies,
            received: self.received,
            slot: self.slot,
            continues: false,
            kind: self.kind,
            // It went through the filter already.
            follows_skipped: false,
        }
    }
}

/// The bytes of a batch of payloads, for one write: a single slice as it is, several
/// gathered into one buffer (one system call for the batch).
pub fn gather<'a>(payloads: impl Iterator<Item = &'a SmallVec<[Bytes; 2]>> + Clone) -> Bytes {
    let mut parts = payloads.flatten();
    let total: usize = parts.clone().map(Bytes::len).sum();
    let mut first = parts.clone();
    if let (Some(only), None) = (first.next(), first.next()) {
        return only.clone();
    }
    let mut out = BytesMut::with_capacity(total);
    for part in parts.by_ref() {
        out.extend_from_slice(part);
    }
    out.freeze()
}

/// Whether a request's frames carry their own COPY data: they end with CopyDone or
/// CopyFail, or (extended protocol) with one of them and a Sync.
pub fn ends_with_copy_data(payload: &[Bytes]) -> bool {
    let n = payload.len();
    let tags = payload[n.saturating_sub(2)..]
        .iter()
        .flat_map(|slice| Frames::new(slice).map(|(tag, _)| tag));
    let (before, last) = tags.fold((0, 0), |(_, last), tag| (last, tag));
    let copy_end = |t| matches!(t, client::COPY_DONE | client::COPY_FAIL);
    copy_end(last) || (last == client::SYNC && copy_end(before))
}
