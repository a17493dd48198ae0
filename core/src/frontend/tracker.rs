//! Where a client session stands: requests sent to the server and answered, and the
//! transaction status of the last answer.
//!
//! The client-to-server pump counts requests, the server-to-client pump counts answers,
//! and the admin console reads both (`SHOW CLIENTS`). Each counter is an atomic written by
//! one pump only, so nothing is locked on the forwarding path.

use crate::mirror::tap::ClientSession;
use crate::protocol::tag::client;
use crate::protocol::TxStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering::Relaxed};

#[derive(Default)]
pub struct Tracker {
    /// Requests (Query, Sync, FunctionCall) sent to the server.
    sent: AtomicU64,
    /// ReadyForQuery messages received from the server.
    done: AtomicU64,
    /// Transaction status of the last ReadyForQuery ([`TxStatus::as_byte`]).
    status: AtomicU8,
    /// The last request sent ended with a Sync (extended protocol).
    last_sync: AtomicBool,
    /// The server started COPY FROM STDIN for a request that ended with a Sync: it ignores
    /// Syncs during the copy, and answers the one the client sends after CopyDone/CopyFail,
    /// which completes that request rather than starting one.
    copy_sync_owed: AtomicBool,
    /// Process id of the server connection the session holds, 0 when it holds none.
    server_pid: AtomicI32,
}

impl Tracker {
    pub fn new() -> Tracker {
        let t = Tracker::default();
        t.status.store(TxStatus::Idle.as_byte(), Relaxed);
        t
    }

    /// The client sent a message with `tag`: when it ends a request (Query, FunctionCall,
    /// or a Sync other than the one completing an extended-protocol COPY), returns the
    /// request's sequence number.
    #[inline]
    pub fn client_message(&self, tag: u8) -> Option<u64> {
        match tag {
            client::SYNC if self.copy_sync_owed.load(Relaxed) => {
                self.copy_sync_owed.store(false, Relaxed);
                None
            }
            client::QUERY | client::SYNC | client::FUNCTION_CALL => {
                self.last_sync.store(tag == client::SYNC, Relaxed);
                Some(self.sent.fetch_add(1, Relaxed))
            }
            _ => None,
        }
    }

    /// The server answered CopyInResponse. The client sends nothing more before it gets it,
    /// so the last request sent is the one that started the copy.
    #[inline]
    pub fn copy_in_started(&self) {
        if self.last_sync.load(Relaxed) {
            self.copy_sync_owed.store(true, Relaxed);
        }
    }

    /// A ReadyForQuery arrived with `status`; returns the sequence number of the request
    /// it answers.
    #[inline]
    pub fn ready(&self, status: TxStatus) -> u64 {
        self.status.store(status.as_byte(), Relaxed);
        self.done.fetch_add(1, Relaxed)
    }

    /// The session now holds the server connection of process `pid`, or none.
    pub fn set_server(&self, pid: Option<i32>) {
        self.server_pid.store(pid.unwrap_or(0), Relaxed);
    }

    /// Process id of the server connection the session holds.
    pub fn server_pid(&self) -> Option<i32> {
        Some(self.server_pid.load(Relaxed)).filter(|&p| p != 0)
    }

    /// Requests sent so far (written by the client-to-server pump only).
    #[inline]
    pub fn requests(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// Answers received so far: the sequence number of the request the next
    /// ReadyForQuery answers.
    #[inline]
    pub fn answered(&self) -> u64 {
        self.done.load(Relaxed)
    }

    /// Requests sent and not yet answered.
    #[inline]
    pub fn pending(&self) -> u64 {
        self.sent
            .load(Relaxed)
            .saturating_sub(self.done.load(Relaxed))
    }

    #[inline]
    pub fn status(&self) -> TxStatus {
        TxStatus::from_byte(self.status.load(Relaxed))
    }

    /// No request in flight and no transaction open: a safe point to reuse or close.
    #[inline]
    pub fn idle(&self) -> bool {
        self.pending() == 0 && self.status().is_idle()
    }
}

impl ClientSession for Tracker {
    #[inline]
    fn next_seq(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    #[inline]
    fn idle(&self) -> bool {
        Tracker::idle(self)
    }

    #[inline]
    fn in_flight(&self) -> bool {
        self.pending() > 0
    }

    #[inline]
    fn copy_sync_owed(&self) -> bool {
        self.copy_sync_owed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tag::client::{BIND, COPY_DONE, EXECUTE, QUERY, SYNC};

    #[test]
    fn counts_requests_and_answers() {
        let t = Tracker::new();
        assert_eq!(t.client_message(QUERY), Some(0));
        assert_eq!(t.client_message(BIND), None);
        assert_eq!(t.client_message(EXECUTE), None);
        assert_eq!(t.client_message(SYNC), Some(1));
        assert_eq!(t.pending(), 2);
        assert_eq!(t.ready(TxStatus::InTransaction), 0);
        assert!(!t.idle());
        assert_eq!(t.ready(TxStatus::Idle), 1);
        assert!(t.idle());
    }

    #[test]
    fn the_sync_completing_an_extended_copy_is_not_a_request() {
        let t = Tracker::new();
        assert_eq!(t.client_message(SYNC), Some(0));
        t.copy_in_started();
        assert!(ClientSession::copy_sync_owed(&t));
        assert_eq!(t.client_message(COPY_DONE), None);
        assert_eq!(t.client_message(SYNC), None);
        assert_eq!(t.client_message(SYNC), Some(1));
        // A simple-protocol COPY owes no Sync.
        assert_eq!(t.client_message(QUERY), Some(2));
        t.copy_in_started();
        assert!(!ClientSession::copy_sync_owed(&t));
    }
}
