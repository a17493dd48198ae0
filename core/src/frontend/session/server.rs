//! The server's direction: whole messages looked at (answers counted and recorded for the
//! mirror, parameters followed), rewritten for the client when the proxy stands in for
//! some answers (transaction mode), and passed on.

use super::io::Buffers;
use super::{End, Session};
use crate::backend::server::MAX_SERVER_MESSAGE;
use crate::protocol::backend::{parameter_status, ready_status, sqlstate, QUERY_CANCELED};
use crate::protocol::frame::{complete_len, Frames};
use crate::protocol::tag::server;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Session {
    /// Passes on the whole server messages buffered. `Some` when the session ends.
    pub(super) fn pass_server_messages(&mut self, bufs: &mut Buffers) -> Option<End> {
        let len = match complete_len(&bufs.server_buf, MAX_SERVER_MESSAGE) {
            Ok(0) => return None,
            Ok(len) => len,
            Err(e) => return Some(End::ServerGone(e.to_string())),
        };
        let chunk = bufs.server_buf.split_to(len);
        let now = Instant::now();
        let (errors, readies) = self.answers(&chunk, now);
        let stats = self.pool.stats();
        stats.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
        if errors > 0 {
            stats.errors.fetch_add(errors, Ordering::Relaxed);
        }
        bufs.to_client = if self.pooled.plan.is_plain() {
            // Nothing to stand in for: the answers pass as they are.
            self.pooled.plan.plain_answered(readies);
            chunk.freeze()
        } else {
            let statements = &mut self.server.as_mut().expect("answering").server().statements;
            let mut out = BytesMut::with_capacity(chunk.len());
            for (_, msg) in Frames::new(&chunk) {
                self.pooled.plan.answer(msg, &mut out, statements);
            }
            out.freeze()
        };
        None
    }

    /// Looks at a run of whole server messages: counts answers (recording them for the
    /// mirror, and their time), COPY starts and parameter changes; returns how many were
    /// errors and how many ReadyForQuery.
    pub(super) fn answers(&mut self, buf: &[u8], now: Instant) -> (u64, u32) {
        let (mut errors, mut readies) = (0, 0);
        let mut digest = self.digest.take();
        for (tag, msg) in Frames::new(buf) {
            // Whether this answer is digested is decided at its first message: the
            // request it answers was offered to the tap by then.
            let digesting = digest.is_some()
                && *self.digesting.get_or_insert_with(|| {
                    let next = self.tracker.answered();
                    self.tap.as_ref().is_none_or(|tap| tap.digests(next))
                });
            match tag {
                server::READY_FOR_QUERY => {
                    let status = ready_status(msg);
                    let seq = self.tracker.ready(status);
                    readies += 1;
                    self.pooled.timing.answered(status, now, self.pool.stats());
                    if let Some(recorder) = &self.recorder {
                        if std::mem::take(&mut self.canceled) {
                            recorder.primary_canceled(seq);
                        }
                        let answer = digest.as_mut().filter(|_| digesting).map(|d| {
                            recorder.answered_parts(seq, d.parts());
                            d.take()
                        });
                        recorder.answered(seq, status, now, answer.as_ref());
                    }
                    self.digesting = None;
                    continue;
                }
                server::ERROR_RESPONSE => {
                    errors += 1;
                    if let Some(recorder) = &self.recorder {
                        let state = sqlstate(msg);
                        recorder.failed(state);
                        if state == Some(QUERY_CANCELED) {
                            self.canceled = true;
                        }
                    }
                }
                server::COPY_IN_RESPONSE => self.tracker.copy_in_started(),
                server::PARAMETER_STATUS => {
                    if let Ok(param) = parameter_status(msg) {
                        self.pooled.reported(&param);
                        if let Some(conn) = self.server.as_mut() {
                            conn.server().set_param(param);
                        }
                    }
                }
                _ => {}
            }
            if let Some(digest) = digest.as_mut().filter(|_| digesting) {
                digest.feed(tag, msg);
            }
        }
        self.digest = digest;
        (errors, readies)
    }
}
