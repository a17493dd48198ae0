//! A request on its way to the mirror: the client's frames as shared byte slices, never
//! copied, plus what is needed to pair it with the primary's answer.

use bytes::Bytes;
use smallvec::SmallVec;
use std::time::Instant;

pub struct Request {
    /// The frames, in order; usually one slice of one read.
    pub payload: SmallVec<[Bytes; 2]>,
    /// Sequence number of the request among the session's requests (pairs with the
    /// primary's timing).
    pub seq: u64,
    /// When the client's request reached the proxy.
    pub received: Instant,
}

impl Request {
    pub fn len(&self) -> usize {
        self.payload.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
