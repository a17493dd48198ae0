//! Requests in flight on a mirror connection, and the small pieces of the pipeline that
//! deal with them one at a time (writing a batch, recognising COPY data).

use super::prepared::Effects;
use super::request::{Request, Slot};

impl InFlight {
    /// A request of the client (not one of the proxy's own): it is reported.
    pub fn is_client(&self) -> bool {
        self._slot.is_some()
    }
}
use super::{ErrorCategory, Outcome};
use crate::compare::{Fingerprint, Paired};
use crate::protocol::frame::Frames;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};

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
    pub _slot: Option<Slot>,
    pub sent: Instant,
    /// The request carries its own COPY data (ends with CopyDone/CopyFail).
    pub has_copy_data: bool,
    /// First ErrorResponse's SQLSTATE seen for it.
    pub error: Option<Option<[u8; 5]>>,
    /// A cancel was sent for it after `mirror_timeout_ms`.
    pub timed_out: bool,
    /// The statement it runs, when results are compared.
    pub statement: Option<Arc<Fingerprint>>,
    /// Its answers compared with the primary's so far.
    pub paired: Paired,
    /// What it does to the mirror's named statements.
    pub effects: Effects,
}

impl InFlight {
    /// Back to a request, to be sent again on another connection.
    pub fn into_request(self) -> Request {
        Request {
            payload: self.payload,
            seq: self.seq,
            readies: self.readies,
            received: self.received,
            slot: self._slot,
            continues: false,
        }
    }
}

/// Writes the payloads of a batch: one write for the whole batch.
pub async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    payloads: &[SmallVec<[Bytes; 2]>],
) -> std::io::Result<()> {
    let mut parts = payloads.iter().flatten();
    if payloads.len() == 1 && payloads[0].len() == 1 {
        return wr.write_all(&payloads[0][0]).await;
    }
    // Gather small requests into one buffer: one syscall for the batch.
    let total: usize = parts.clone().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(total);
    for part in parts.by_ref() {
        out.extend_from_slice(part);
    }
    wr.write_all(&out).await
}

pub fn connection_error() -> Outcome {
    Outcome::Error {
        category: ErrorCategory::Connection,
        sqlstate: None,
    }
}

/// Whether the request carries its own COPY data: it ends with CopyDone or CopyFail, or
/// (extended protocol) with one of them and a Sync.
pub fn ends_with_copy_data(request: &Request) -> bool {
    let n = request.payload.len();
    let tags = request.payload[n.saturating_sub(2)..]
        .iter()
        .flat_map(|slice| Frames::new(slice).map(|(tag, _)| tag));
    let (before, last) = tags.fold((0, 0), |(_, last), tag| (last, tag));
    matches!(last, b'c' | b'f') || (last == b'S' && matches!(before, b'c' | b'f'))
}
