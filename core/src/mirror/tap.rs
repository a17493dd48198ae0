//! The client session's side of mirroring: it sees every frame the client sends, groups
//! them into requests and offers each to the mirror queue without ever waiting.

use super::prepared::Definitions;
use super::request::{Request, Slot};
use super::{DropReason, Event, EventSink, MirrorTarget};
use crate::frontend::state::SessionState;
use bytes::Bytes;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

/// A request bigger than this is not mirrored (counted as dropped): queues hold payloads
/// by reference, and a huge COPY must not pin unbounded memory behind a slow mirror.
pub const MAX_MIRRORED_REQUEST: usize = 16 * 1024 * 1024;

pub struct Tap {
    target: Arc<MirrorTarget>,
    tx: mpsc::UnboundedSender<Request>,
    /// The session's `mirror_queue` places (see [`Slot`]).
    places: Arc<Semaphore>,
    events: EventSink,
    /// The client's named statements, kept whether or not their requests are mirrored.
    definitions: Arc<Definitions>,
    /// The current transaction's exposure decision.
    mirroring: bool,
    /// A request of the current transaction was dropped: the rest of it is dropped too, so
    /// the mirror never runs the tail of a transaction without its head.
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
}

impl Tap {
    pub fn new(
        target: Arc<MirrorTarget>,
        tx: mpsc::UnboundedSender<Request>,
        events: EventSink,
        definitions: Arc<Definitions>,
        places: usize,
    ) -> Tap {
        Tap {
            places: Arc::new(Semaphore::new(places)),
            target,
            tx,
            events,
            definitions,
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
        }
    }

    /// Sees one client frame, `chunk[start..end]`, with tag `tag`. `seq` is the sequence
    /// number the frame gets if it is a request boundary (Query, Sync, FunctionCall).
    #[inline]
    pub fn frame(
        &mut self,
        tag: u8,
        chunk: &Bytes,
        start: usize,
        end: usize,
        state: &SessionState,
        now: Instant,
    ) {
        if !self.in_request {
            self.begin(state, now);
        }
        if self.mirroring {
            self.append(chunk, start, end);
        }
        let boundary = match tag {
            b'Q' => {
                self.seq = state.next_seq();
                self.readies += 1;
                self.executes = true;
                self.definitions.query(&chunk[start + 5..end]);
                if is_copy_from_stdin(&chunk[start + 5..end]) {
                    self.in_copy = true;
                    false
                } else {
                    true
                }
            }
            b'F' => {
                self.seq = state.next_seq();
                self.readies += 1;
                self.executes = true;
                true
            }
            b'E' => {
                self.executes = true;
                false
            }
            // Named statements are remembered even when this request is not mirrored: a
            // later mirrored Bind may need the definition (see `prepared`).
            b'P' => {
                self.definitions
                    .parsed(&chunk[start..end], state.next_seq());
                false
            }
            b'C' => {
                self.definitions.closed(&chunk[start + 5..end]);
                false
            }
            // The Sync after the data of an extended-protocol COPY FROM STDIN: it completes
            // the request that started the copy (the server ignored that one's Sync).
            b'S' if state.copy_sync_owed() => {
                self.continues = true;
                true
            }
            // A batch that only prepares (Parse/Describe/Sync, as drivers send before the
            // first execution of a statement) joins the batch that executes it: one query
            // of the application is one request.
            b'S' => {
                self.seq = state.next_seq();
                self.readies += 1;
                self.executes
            }
            b'c' | b'f' if self.in_copy => {
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
    fn begin(&mut self, state: &SessionState, now: Instant) {
        self.in_request = true;
        self.received = Some(now);
        if state.idle() {
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
                    }
                };
                let _ = self.tx.send(request);
            }
            return;
        }
        // Non-blocking: no free place means the mirror is `mirror_queue` requests behind.
        let permit = match self.places.clone().try_acquire_owned() {
            Ok(permit) if !too_big && !self.poisoned => permit,
            _ => {
                self.poisoned = true;
                self.dropped(DropReason::BufferFull);
                return;
            }
        };
        let request = Request {
            payload,
            seq: self.seq,
            readies,
            received: self.received.take().unwrap_or(now),
            slot: Some(Slot::new(permit, self.target.clone())),
            continues: false,
        };
        if self.tx.send(request).is_err() {
            self.dropped(DropReason::Shutdown);
        }
    }

    fn dropped(&self, reason: DropReason) {
        self.target.note_drop();
        self.events
            .send(Event::dropped(self.target.database.clone(), reason));
    }
}

/// `COPY ... FROM STDIN` in a simple Query body (the client will follow with CopyData).
fn is_copy_from_stdin(body: &[u8]) -> bool {
    let text = trim_leading(body);
    if text.len() < 4 || !text[..4].eq_ignore_ascii_case(b"copy") {
        return false;
    }
    let upper: Vec<u8> = text.iter().take(4096).map(u8::to_ascii_uppercase).collect();
    upper.windows(5).any(|w| w == b"STDIN") && upper.windows(4).any(|w| w == b"FROM")
}

/// `s` without the white space and comments it starts with.
pub(super) fn trim_leading(mut s: &[u8]) -> &[u8] {
    loop {
        while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = s {
            s = rest;
        }
        if s.starts_with(b"--") {
            s = s
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |i| &s[i..]);
        } else if s.starts_with(b"/*") {
            s = s
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(&[][..], |i| &s[i + 2..]);
        } else {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_detection() {
        assert!(is_copy_from_stdin(b"COPY t FROM STDIN\0"));
        assert!(is_copy_from_stdin(
            b"  -- x\n copy t (a) from stdin with csv\0"
        ));
        assert!(!is_copy_from_stdin(b"COPY t TO STDOUT\0"));
        assert!(!is_copy_from_stdin(b"select 'copy from stdin'\0"));
    }
}
