//! The I/O of one mirror connection's replay: a thin driver around [`Pipeline`], which
//! makes every decision.
//!
//! One loop owns the pipeline and waits, all at once, for whatever can happen next: an
//! answer from the mirror (handed to [`Pipeline::on_message`]), room to write the batch
//! in progress, the front request's deadline (a cancel), and what the last
//! [`Pipeline::next_step`] said to wait for (the session's [`Ledger`] or queue). So a
//! mirror answering slowly never stops requests going out, nor a large write stops
//! answers coming in, and nothing is shared between tasks. Every wait is cancel-safe: a
//! wait that loses the race is simply made again on the next turn.

use super::ledger::Ledger;
use super::pipeline::{Pipeline, Step, CANCEL_GRACE, LINGER};
use super::request::Request;
use super::sync::{Gate, Gated};
use super::{MirrorError, Report};
use crate::backend::server::MAX_SERVER_MESSAGE;
use crate::compare::ResultDigest;
use crate::protocol::frame::{whole_before_fault, Frames};
use crate::protocol::TxStatus;
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

/// A session's mirror queue (bounded by its places, see [`super::request::Slot`]).
pub type Queue = mpsc::UnboundedReceiver<Request>;

/// What the driver needs besides the connection.
pub struct Context<'a, C, E> {
    pub ledger: &'a Ledger,
    pub events: &'a E,
    /// Sends a CancelRequest for the request running on the mirror connection; run in a
    /// task of its own, bounded by [`CANCEL_GRACE`].
    pub cancel: C,
}

/// What the writer waits for before it asks the pipeline again.
enum Waiting {
    /// Nothing: ask now.
    Ask,
    /// The batch in progress to be written.
    Write,
    Primary {
        from: u64,
        until: u64,
    },
    Linger {
        until: u64,
        end: Instant,
    },
    Client {
        watch_from: Option<u64>,
    },
    /// The mirror to catch up with the primary's answer at `answered_at`.
    Sync {
        answered_at: Instant,
    },
    /// A second look at a differing read: the primary's answer (when asked), or the
    /// mirror's (then any answer read asks again).
    Recheck,
    Finished,
}

/// Why a run on a connection ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The queue is closed and everything was answered: the mirror's transaction status
    /// after the last answer.
    Finished(TxStatus),
    /// Transaction mode: the mirror finished a transaction and nothing is waiting; the
    /// connection goes back to the pool (see [`Pipeline::may_release`]).
    Released,
}

/// Replays the session on one connection until the queue is closed and everything was
/// answered, the connection can go back to the pool, or the connection fails.
pub async fn run<R, W, C, F, E>(
    rd: &mut R,
    wr: &mut W,
    p: &mut Pipeline,
    queue: &mut Queue,
    cx: Context<'_, C, E>,
) -> Result<Stop, MirrorError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    C: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
    E: Report,
{
    let mut buf = BytesMut::with_capacity(8192);
    let mut waiting = Waiting::Ask;
    let gate = p.gate();
    // The primary's second answer to a differing read, asked in a task of its own.
    let mut recheck: Option<Rechecking> = None;
    // The part of the batch in progress not written yet.
    let mut out = Bytes::new();
    loop {
        if let Waiting::Ask = waiting {
            let step = p.next_step(queue, Instant::now());
            p.flush_events(cx.events);
            waiting = match step? {
                Step::Write(bytes) => {
                    out = bytes;
                    Waiting::Write
                }
                Step::AwaitPrimary { from, until } => Waiting::Primary { from, until },
                Step::Linger { until } => Waiting::Linger {
                    until,
                    end: Instant::now() + LINGER,
                },
                Step::AwaitClient { watch_from } => Waiting::Client { watch_from },
                Step::AwaitSync { answered_at } => Waiting::Sync { answered_at },
                Step::Recheck(bytes) => {
                    recheck = Some(ask_again(gate.clone(), bytes));
                    Waiting::Recheck
                }
                Step::AwaitRecheck => Waiting::Recheck,
                Step::Finished => Waiting::Finished,
                Step::Release => return Ok(Stop::Released),
            };
        }
        if matches!(waiting, Waiting::Finished) && p.is_done() {
            return Ok(Stop::Finished(p.mirror_status()));
        }
        let deadline = p.deadline();
        tokio::select! {
            read = rd.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(MirrorError::Closed);
                }
                answers(p, &mut buf, cx.events)?;
                if p.client_cancel_due() {
                    tokio::spawn(tokio::time::timeout(CANCEL_GRACE, (cx.cancel)()));
                }
                if matches!(waiting, Waiting::Client { watch_from: None }) && p.may_release() {
                    // The last answer of a transaction: the connection can go back.
                    waiting = Waiting::Ask;
                }
                // A differing read to look at again, or the answer of its second run.
                if (p.recheck_due() && !matches!(waiting, Waiting::Write))
                    || (matches!(waiting, Waiting::Recheck) && recheck.is_none())
                {
                    waiting = Waiting::Ask;
                }
            }
            written = wr.write(&out), if matches!(waiting, Waiting::Write) => {
                match written? {
                    0 => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                    n => out.advance(n),
                }
                if out.is_empty() {
                    waiting = Waiting::Ask;
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                // Too slow: cancel what runs now; its answer still ends it. Within the
                // grace: a mirror host that stopped answering must not hold anything up
                // for the system's connect timeout.
                p.deadline_passed()?;
                tokio::spawn(tokio::time::timeout(CANCEL_GRACE, (cx.cancel)()));
                p.cancel_sent(Instant::now());
            }
            // The client cancelled: if the mirror runs that request, it is cancelled too.
            _ = cx.ledger.client_cancelled_any() => {
                if p.client_cancel_due() {
                    tokio::spawn(tokio::time::timeout(CANCEL_GRACE, (cx.cancel)()));
                }
            }
            next = wait(cx.ledger, queue, gate.as_deref(), &waiting, &mut recheck) => {
                match next {
                    Woken::Rechecked(answer) => {
                        recheck = None;
                        p.rechecked_on_primary(answer);
                    }
                    Woken::Primary(seen) => p.primary_waited(seen),
                    Woken::Synced(gated) => p.synced(gated),
                    Woken::Request(Some(r)) => p.offer(r),
                    Woken::Request(None) => p.queue_closed(),
                    Woken::Other => {}
                }
                waiting = Waiting::Ask;
            }
        }
    }
}

/// Hands every whole message in `buf` to the pipeline. A malformed message ends the run,
/// after the answers that came whole before it in the same read are counted as theirs.
fn answers(p: &mut Pipeline, buf: &mut BytesMut, events: &impl Report) -> Result<(), MirrorError> {
    let (len, fault) = whole_before_fault(buf, MAX_SERVER_MESSAGE);
    let now = Instant::now();
    for (_, msg) in Frames::new(&buf[..len]) {
        p.on_message(msg, now)?;
    }
    buf.advance(len);
    p.flush_events(events);
    if let Some(fault) = fault {
        return Err(fault.into());
    }
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    Ok(())
}

/// What ended the writer's wait.
enum Woken {
    Primary(bool),
    Synced(Gated),
    Rechecked(Result<(ResultDigest, Instant), String>),
    Request(Option<Request>),
    Other,
}

/// The primary's second answer to a differing read, on its way.
type Rechecking = oneshot::Receiver<Result<(ResultDigest, Instant), String>>;

/// Asks the primary `request` again at `gate`, in a task of its own (so that the driver's
/// wait for it is cancel-safe).
fn ask_again(gate: Option<std::sync::Arc<Gate>>, request: Bytes) -> Rechecking {
    let (tx, rx) = oneshot::channel();
    match gate {
        Some(gate) => {
            tokio::spawn(async move {
                let _ = tx.send(gate.recheck(request).await);
            });
        }
        None => {
            let _ = tx.send(Err("no gate".to_string()));
        }
    }
    rx
}

/// The writer's wait, as the last step said. Pending forever when it waits for nothing
/// here (a write in progress, or finished).
async fn wait(
    ledger: &Ledger,
    queue: &mut Queue,
    gate: Option<&Gate>,
    waiting: &Waiting,
    recheck: &mut Option<Rechecking>,
) -> Woken {
    match *waiting {
        Waiting::Recheck => match recheck {
            Some(rx) => Woken::Rechecked(
                rx.await
                    .unwrap_or_else(|_| Err("the second look was abandoned".to_string())),
            ),
            // The mirror's answer ends it (the reader side).
            None => std::future::pending().await,
        },
        Waiting::Sync { answered_at } => match gate {
            Some(gate) => Woken::Synced(gate.wait(answered_at).await),
            None => Woken::Synced(Gated::Synced),
        },
        Waiting::Primary { from, until } => Woken::Primary(ledger.wait_idle(from, until).await),
        Waiting::Linger { until, end } => {
            let _ = tokio::time::timeout_at(end.into(), ledger.wait_idle(u64::MAX, until)).await;
            Woken::Other
        }
        Waiting::Client { watch_from } => {
            let watch = ledger.wait_idle(watch_from.unwrap_or(u64::MAX), u64::MAX);
            tokio::select! {
                next = queue.recv() => Woken::Request(next),
                // The next step then ends the cut transaction.
                _ = watch, if watch_from.is_some() => Woken::Other,
            }
        }
        Waiting::Ask | Waiting::Write | Waiting::Finished => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The driver over an in-memory connection, with a scripted mirror server at the
    //! other end.

    use super::*;
    use crate::mirror::prepared::Definitions;
    use crate::mirror::testing::{self, Places};
    use crate::mirror::{Event, Outcome};
    use crate::protocol::frame::Frames;
    use crate::protocol::messages::{self, Severity};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[derive(Default)]
    struct Collected(Mutex<Vec<Event>>);

    impl Report for Collected {
        fn report(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    /// A mirror server that answers each simple query with CommandComplete and
    /// ReadyForQuery, except `select pg_sleep(...)`, which it answers with a cancel
    /// error once `cancels` signals. Returns the number of queries in each read.
    async fn mirror_server(
        mut io: tokio::io::DuplexStream,
        mut cancels: mpsc::UnboundedReceiver<()>,
    ) -> Vec<usize> {
        let mut reads = Vec::new();
        let mut buf = BytesMut::new();
        loop {
            buf.clear();
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return reads,
                Ok(_) => {}
            }
            let mut out = BytesMut::new();
            let mut queries = 0;
            for (_, msg) in Frames::new(&buf) {
                queries += 1;
                if msg.windows(8).any(|w| w == b"pg_sleep") {
                    cancels.recv().await;
                    messages::error_response(&mut out, Severity::Error, "57014", "canceling");
                } else {
                    messages::command_complete(&mut out, "SELECT 1");
                }
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            reads.push(queries);
            if io.write_all(&out).await.is_err() {
                return reads;
            }
        }
    }

    /// Runs `sqls` (each answered idle by the primary) through the driver; returns the
    /// events, the mirror's reads and the run's end.
    async fn replay(
        sqls: &[&str],
        timeout: Duration,
    ) -> (Vec<Event>, Vec<usize>, Result<Stop, MirrorError>) {
        let target = testing::target(128, timeout, false);
        let places = Places::new(target.clone());
        let ledger = Arc::new(Ledger::new(false));
        let mut pipeline = Pipeline::new(target, ledger.clone(), Arc::new(Definitions::default()));
        let (tx, mut queue) = mpsc::unbounded_channel();
        let t = Instant::now() - Duration::from_secs(1);
        for (seq, sql) in sqls.iter().enumerate() {
            let seq = seq as u64;
            ledger.request_sent(seq, t);
            ledger.answered(seq, TxStatus::Idle, t, None);
            let mut msg = BytesMut::new();
            messages::query(&mut msg, sql);
            tx.send(places.request_with(seq, &msg)).unwrap();
        }
        drop(tx);
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(mirror_server(theirs, cancel_rx));
        let (mut rd, mut wr) = tokio::io::split(ours);
        let events = Collected::default();
        let cx = Context {
            ledger: &ledger,
            events: &events,
            cancel: || {
                let _ = cancel_tx.send(());
                std::future::ready(())
            },
        };
        let end = run(&mut rd, &mut wr, &mut pipeline, &mut queue, cx).await;
        drop((rd, wr));
        let reads = server.await.unwrap();
        (events.0.into_inner().unwrap(), reads, end)
    }

    #[tokio::test]
    async fn queued_requests_reach_the_mirror_in_one_write_and_each_is_reported() {
        let (events, reads, end) = replay(
            &["select 1", "select 2", "select 3"],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(end.unwrap(), Stop::Finished(TxStatus::Idle));
        assert_eq!(reads, [3], "one write for the three finished requests");
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e.outcome == Outcome::Mirrored));
    }

    /// Replays `good + 1` queries against a server that answers the first `good` and then
    /// sends a malformed frame, all in one write. The outcomes reported.
    async fn answers_then_a_bad_frame(good: usize) -> Vec<Outcome> {
        let target = testing::target(128, Duration::from_secs(5), false);
        let places = Places::new(target.clone());
        let ledger = Arc::new(Ledger::new(false));
        let mut pipeline = Pipeline::new(target, ledger.clone(), Arc::new(Definitions::default()));
        let (tx, mut queue) = mpsc::unbounded_channel();
        let t = Instant::now() - Duration::from_secs(1);
        for seq in 0..=good as u64 {
            ledger.request_sent(seq, t);
            ledger.answered(seq, TxStatus::Idle, t, None);
            let mut msg = BytesMut::new();
            messages::query(&mut msg, &format!("select {seq}"));
            tx.send(places.request_with(seq, &msg)).unwrap();
        }
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let _ = theirs.read_buf(&mut buf).await;
            let mut out = BytesMut::new();
            for _ in 0..good {
                messages::command_complete(&mut out, "SELECT 1");
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            // A CommandComplete whose length field is negative.
            out.extend_from_slice(&[b'C', 0xff, 0xff, 0xff, 0xf0]);
            theirs.write_all(&out).await.unwrap();
            theirs
        });
        let (mut rd, mut wr) = tokio::io::split(ours);
        let events = Collected::default();
        let cx = Context {
            ledger: &ledger,
            events: &events,
            cancel: || std::future::ready(()),
        };
        let end = run(&mut rd, &mut wr, &mut pipeline, &mut queue, cx).await;
        let error = end.expect_err("a bad frame ends the run");
        assert!(error.is_protocol_fault(), "{error}");
        let _server = server.await.unwrap();
        pipeline.connection_broken(&error, true);
        pipeline.flush_events(&events);
        let outcomes = events.0.into_inner().unwrap();
        outcomes.iter().map(|e| e.outcome).collect()
    }

    const PROTOCOL: Outcome = Outcome::Error {
        category: crate::mirror::ErrorCategory::Protocol,
        sqlstate: None,
    };

    #[tokio::test]
    async fn a_malformed_frame_from_the_mirror_ends_the_run_as_a_protocol_error() {
        assert_eq!(answers_then_a_bad_frame(0).await, [PROTOCOL]);
    }

    /// The answer that came whole before the bad frame, in the same read, is the mirror's
    /// success, not a casualty of the broken connection.
    #[tokio::test]
    async fn answers_read_whole_before_a_malformed_frame_count_as_mirrored() {
        assert_eq!(
            answers_then_a_bad_frame(2).await,
            [Outcome::Mirrored, Outcome::Mirrored, PROTOCOL]
        );
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_is_cancelled_on_the_mirror() {
        let (events, _, end) = replay(
            &["select pg_sleep(10)", "select 1"],
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(end.unwrap(), Stop::Finished(TxStatus::Idle));
        let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, [crate::mirror::timeout(), Outcome::Mirrored]);
    }
}
