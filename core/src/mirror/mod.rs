//! Query mirroring: copy a pool's traffic to another pool, asynchronously.
//!
//! ```text
//! client session --frames--> tap --Request (shared bytes)--> bounded queue --> worker
//!       |                                                                       |
//!       +--answers (Recorder)--> ledger <--waits, pairs answers-- pipeline <-- driver <--> mirror server
//!                                                                  |
//!                                                                  +--Event--> plugins
//! ```
//!
//! The client session's [`tap`] groups the frames it forwards into requests, decides per
//! transaction whether to mirror (`mirror_exposure`), and offers each request, as shared
//! bytes, to a bounded queue with a non-blocking send: a full queue drops the request and
//! reports it, so the mirror never slows or breaks the primary. The session records the
//! primary's answers in its [`ledger`]. The session's [`worker`] replays the queue in
//! order on its own mirror server connection: the rules are the [`pipeline`]'s, the I/O
//! the [`driver`]'s. Every request the tap offered ends as exactly one event: mirrored
//! (with latency), an error by category, or dropped.

mod classify;
mod driver;
mod episode;
mod error;
pub mod ledger;
mod pipeline;
pub mod prepared;
pub mod request;
pub mod sync;
pub mod tap;
pub mod target;
mod worker;

#[cfg(test)]
mod testing;

pub use crate::plugins::{DropReason, ErrorCategory, EventSink, MirrorEvent as Event, Outcome};
pub use error::MirrorError;
pub use ledger::{Canceller, Recorder};
pub use tap::Tap;
pub use target::{
    ignore_entry, targets, CompareSettings, MirrorMap, MirrorTarget, SkipReason, Skips,
};

use ledger::Ledger;
use prepared::Definitions;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use worker::Worker;

/// What the replication gates of `mirrors` measured, now, by source pool name.
pub fn replication(mirrors: &MirrorMap) -> Vec<sync::readiness::Measured> {
    let mut gates: Vec<(&str, &sync::Gate)> = mirrors
        .iter()
        .filter_map(|(name, t)| Some((name.as_str(), &**t.sync.as_ref()?)))
        .collect();
    gates.sort_by_key(|(name, _)| *name);
    sync::readiness::measured(gates.into_iter())
}

/// Starts the mirror sessions of clients, and lets them drain at shutdown.
#[derive(Clone)]
pub struct Workers {
    events: EventSink,
    tasks: TaskTracker,
}

impl Workers {
    pub fn new(events: EventSink) -> Workers {
        Workers {
            events,
            tasks: TaskTracker::new(),
        }
    }

    /// Starts the mirror session of a new client of a pool mirrored to `target`: its
    /// bounded queue, and its worker as a tracked task. Dropping the returned tap ends it
    /// (the worker drains the queue first).
    pub fn start(&self, target: Arc<MirrorTarget>) -> Tap {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let definitions = Arc::new(Definitions::default());
        let ledger = Arc::new(Ledger::new(target.compare.enabled));
        let awaiting_pool = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(
            target.clone(),
            self.events.clone(),
            ledger.clone(),
            definitions.clone(),
            awaiting_pool.clone(),
        );
        self.tasks.spawn(worker.run(rx));
        let events = self.events.clone();
        Tap::new(target, tx, events, definitions, ledger, awaiting_pool)
    }

    /// After the client sessions ended: waits up to `timeout` for the workers to drain
    /// their queues. Returns `false` when some did not.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Where the events of mirrored requests go: the plugins' [`EventSink`] (tests collect
/// them instead).
pub trait Report {
    /// Takes one event; never blocks.
    fn report(&self, event: Event);
}

impl Report for EventSink {
    #[inline]
    fn report(&self, event: Event) {
        self.send(event);
    }
}

/// The outcome of a request the mirror connection failed.
fn connection_error() -> Outcome {
    Outcome::Error {
        category: ErrorCategory::Connection,
        sqlstate: None,
    }
}

/// The outcome of the request the mirror server answered with a protocol fault.
fn protocol_error() -> Outcome {
    Outcome::Error {
        category: ErrorCategory::Protocol,
        sqlstate: None,
    }
}

/// The outcome of a request cancelled after `mirror_timeout_ms`.
fn timeout() -> Outcome {
    Outcome::Error {
        category: ErrorCategory::Timeout,
        sqlstate: None,
    }
}
