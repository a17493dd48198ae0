//! The client's direction: whole messages counted, copied to the mirror tap, rewritten for
//! the server connection in transaction mode, and passed on.

use super::io::Buffers;
use super::{pooling, End, Session};
use crate::config::PoolMode;
use crate::frontend::prepared::Rewriter;
use crate::frontend::tracker::Tracker;
use crate::mirror::Tap;
use crate::protocol::frame::{complete_len, Frames};
use crate::protocol::tag::client;
use bytes::{Buf, Bytes};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Session {
    /// Passes on the whole client messages buffered, after taking a server connection if
    /// the session holds none (transaction mode). `Some` when the session ends.
    pub(super) async fn pass_client_messages(&mut self, bufs: &mut Buffers) -> Option<End> {
        let len = match complete_len(&bufs.client_buf, self.max_message_size) {
            Ok(0) => return None,
            Ok(len) => len,
            Err(e) => return Some(End::ClientProtocol(e)),
        };
        if self.server.is_none() {
            if bufs.client_buf[0] == client::TERMINATE {
                return Some(End::ClientTerminated);
            }
            if self.mode == PoolMode::Transaction && bufs.to_client.is_empty() {
                let msgs = &bufs.client_buf[..len];
                if let Some(reply) = self.pooled.statements.answer_locally(msgs) {
                    self.take_client_messages(bufs, len);
                    // Counted, timed and recorded (for the mirror) as a server's answer.
                    self.answers(&reply, Instant::now());
                    bufs.to_client = reply.freeze();
                    return None;
                }
            }
            loop {
                match self.checkout().await {
                    Ok(true) => break,
                    Ok(false) if bufs.to_client.is_empty() && !self.pooled.mid_batch => {
                        // Cancelled while waiting: nothing of it reached a server, the
                        // mirror or the counts.
                        let msgs = &bufs.client_buf[..len];
                        if let Some(reply) = pooling::cancelled_before_running(msgs) {
                            bufs.client_buf.advance(len);
                            bufs.to_client = reply.freeze();
                            return None;
                        }
                    }
                    // Not at the end of a request, or an answer still to write: wait on.
                    Ok(false) => {}
                    Err((code, why)) => return Some(End::Checkout(code, why)),
                }
            }
        }
        let (chunk, terminated) = self.take_client_messages(bufs, len);
        bufs.to_server = match self.mode {
            PoolMode::Session => chunk,
            PoolMode::Transaction => self.rewrite(chunk),
        };
        terminated.then_some(End::ClientTerminated)
    }

    /// Takes `len` bytes of whole messages from the client's buffer: counts them, feeds the
    /// mirror tap. Returns the messages to pass on (up to a Terminate), and whether there
    /// was one.
    fn take_client_messages(&mut self, bufs: &mut Buffers, len: usize) -> (Bytes, bool) {
        let chunk = bufs.client_buf.split_to(len).freeze();
        let now = Instant::now();
        let requests_before = self.tracker.requests();
        self.warn_about_session_state(&chunk);
        let (forward, terminated) = match self.tap.as_mut() {
            None => count_requests(&chunk, &self.tracker, &mut self.pooled.mid_batch),
            Some(tap) => feed_tap(tap, &chunk, &self.tracker, &mut self.pooled.mid_batch, now),
        };
        // Metrics: two relaxed adds per forwarded chunk, not per message.
        let stats = self.pool.stats();
        let requests = self.tracker.requests() - requests_before;
        stats.queries.fetch_add(requests, Ordering::Relaxed);
        stats
            .bytes_received
            .fetch_add(len as u64, Ordering::Relaxed);
        self.pooled.timing.sent(requests, now);
        (chunk.slice(..forward), terminated)
    }

    /// The messages as the current server connection must get them (named statements
    /// under their global names).
    fn rewrite(&mut self, chunk: Bytes) -> Bytes {
        let server = self.server.as_mut().expect("checked out");
        let pooled = &mut self.pooled;
        let mut rewriter = Rewriter {
            client: &mut pooled.statements,
            server: &mut server.server().statements,
            plan: &mut pooled.plan,
            limit: pooled.limit,
        };
        match rewriter.rewrite(&chunk) {
            None => chunk,
            Some(rewritten) => rewritten.freeze(),
        }
    }
}

/// Counts requests, feeds the mirror tap, and finds Terminate in a run of whole client
/// messages. Returns how many bytes to forward and whether Terminate was seen.
#[inline]
fn feed_tap(
    tap: &mut Tap,
    shared: &Bytes,
    tracker: &Tracker,
    mid_batch: &mut bool,
    now: Instant,
) -> (usize, bool) {
    let mut at = 0;
    for (tag, msg) in Frames::new(shared) {
        if tag == client::TERMINATE {
            return (at, true);
        }
        let end = at + msg.len();
        // The tap sees the frame before it is counted: a request's first frame finds the
        // session as it was before the request.
        tap.frame(tag, shared, at, end, tracker, now);
        if let Some(seq) = tracker.client_message(tag) {
            tap.sent(seq, now);
        }
        *mid_batch = in_batch(tag, *mid_batch);
        at = end;
    }
    (shared.len(), false)
}

/// Counts requests and finds Terminate in a run of whole client messages.
#[inline]
fn count_requests(buf: &[u8], tracker: &Tracker, mid_batch: &mut bool) -> (usize, bool) {
    let mut at = 0;
    for (tag, msg) in Frames::new(buf) {
        if tag == client::TERMINATE {
            return (at, true);
        }
        tracker.client_message(tag);
        *mid_batch = in_batch(tag, *mid_batch);
        at += msg.len();
    }
    (buf.len(), false)
}

/// Whether an extended-protocol batch is open after a message with `tag`: from its first
/// message to its Sync, the server connection is not free to give back.
#[inline]
fn in_batch(tag: u8, open: bool) -> bool {
    match tag {
        client::PARSE
        | client::BIND
        | client::DESCRIBE
        | client::EXECUTE
        | client::CLOSE
        | client::FLUSH => true,
        client::SYNC => false,
        _ => open,
    }
}
