//! The event path: [`EventSink::send`] (query path) -> bounded channel -> the
//! `pgdog-plugin-events` thread -> batches -> every plugin that consumes events.
//!
//! `send` never blocks: the channel holds [`EVENT_QUEUE`] events, and an event that finds
//! it full is dropped and counted ([`EventSink::dropped`], exported as
//! `pgdog_plugin_events_dropped_total`). It fills only when a plugin stops keeping up
//! (say one that stalls while holding its lock), and then memory stays where it is. The
//! consumer is a dedicated OS thread rather than a tokio task so that foreign plugin code,
//! however slow, never occupies a runtime worker; it drains whatever is queued (up to
//! [`MAX_BATCH`]) into one batch, so under load the per-call cost across the boundary is
//! spread over many events.
//!
//! Control messages travel in the same channel as events, which gives them a place in
//! the order: a flush is acknowledged once every event sent before it was delivered,
//! and a reset forgets exactly the events sent before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgdog_plugin_api::{
    abi_stable::std_types::{RSlice, RStr},
    Capabilities, EventBatch, QueryText,
};
use tokio::sync::{mpsc, oneshot};

use super::event::MirrorEvent;
use super::instance::LoadedPlugin;
use super::PluginError;

/// Most events handed to plugins in one call.
pub const MAX_BATCH: usize = 4096;

/// Events (and control messages) the channel to the event thread holds: at 30,000
/// mirrored requests a second, about a second of traffic, some 4 MB.
pub const EVENT_QUEUE: usize = 32_768;

/// How long the event thread sleeps between drains while traffic flows (a flush wakes it
/// at once).
const POLL_TICK: std::time::Duration = std::time::Duration::from_millis(2);

pub(crate) enum Command {
    Event(MirrorEvent),
    /// Acknowledged after everything sent before it is delivered.
    Flush(oneshot::Sender<()>),
    /// Deliver what came before, then reset every plugin.
    Reset(oneshot::Sender<Vec<PluginError>>),
    /// Deliver what came before, acknowledge, and stop the thread.
    Close(oneshot::Sender<()>),
}

/// A cheap, cloneable handle for reporting mirror events.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Command>,
    /// Events dropped because the channel was full.
    dropped: Arc<AtomicU64>,
    /// The event thread, unparked by a flush so that it need not wait out its tick.
    thread: std::thread::Thread,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// Queues an event for the plugins. Never blocks, never waits on a plugin: when the
    /// channel is full the event is dropped and counted. After shutdown the event is
    /// discarded (there is nobody left to count it).
    #[inline]
    pub fn send(&self, event: MirrorEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Command::Event(event)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped so far because the plugins did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event sent (by any clone) before this call reached the plugins.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            self.thread.unpark();
            let _ = done.await;
        }
    }

    /// [`EventSink::flush`] for threads outside the async runtime.
    pub fn flush_blocking(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.blocking_send(Command::Flush(ack)).is_ok() {
            self.thread.unpark();
            let _ = done.blocking_recv();
        }
    }

    /// Queues a control message, waiting for room if the channel is full.
    pub(crate) async fn command(&self, cmd: Command) -> Result<(), PluginError> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| PluginError::EventThreadStopped)
    }

    /// Queues a control message if there is room now.
    pub(crate) fn try_command(&self, cmd: Command) -> Result<(), PluginError> {
        self.tx
            .try_send(cmd)
            .map_err(|_| PluginError::EventThreadStopped)
    }
}

/// Starts the `pgdog-plugin-events` thread.
pub(crate) fn start(
    plugins: Vec<Arc<LoadedPlugin>>,
) -> std::io::Result<(EventSink, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let consumers: Vec<_> = plugins
        .iter()
        .filter(|p| p.capabilities.contains(Capabilities::EVENTS))
        .cloned()
        .collect();
    let handle = std::thread::Builder::new()
        .name("pgdog-plugin-events".into())
        .spawn(move || run(rx, consumers, plugins))?;
    let thread = handle.thread().clone();
    let dropped = Arc::default();
    Ok((
        EventSink {
            tx,
            dropped,
            thread,
        },
        handle,
    ))
}

fn run(
    mut rx: mpsc::Receiver<Command>,
    consumers: Vec<Arc<LoadedPlugin>>,
    all: Vec<Arc<LoadedPlugin>>,
) {
    let mut batch = Batcher::default();
    // While events keep coming, the thread polls on a short tick instead of waiting on the
    // channel: a waiting receiver makes every `send` on the query path pay a wake-up
    // system call. It only blocks (and needs waking) after a quiet tick. A flush unparks
    // it, so that a scrape does not wait out the tick.
    let mut busy = false;
    loop {
        let first = if busy {
            std::thread::park_timeout(POLL_TICK);
            match rx.try_recv() {
                Ok(cmd) => cmd,
                Err(mpsc::error::TryRecvError::Empty) => {
                    busy = false;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(cmd) => cmd,
                None => break,
            }
        };
        busy = true;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Event(ev) => {
                    batch.push(ev);
                    if batch.len() >= MAX_BATCH {
                        batch.deliver(&consumers);
                    }
                }
                Command::Flush(ack) => {
                    batch.deliver(&consumers);
                    let _ = ack.send(());
                }
                Command::Reset(ack) => {
                    batch.deliver(&consumers);
                    let errors = all
                        .iter()
                        .filter_map(|p| p.call("reset", |i| i.reset()).err())
                        .collect();
                    let _ = ack.send(errors);
                }
                Command::Close(ack) => {
                    batch.deliver(&consumers);
                    let _ = ack.send(());
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        batch.deliver(&consumers);
    }
    // Every sender is gone: deliver what is left and stop.
    batch.deliver(&consumers);
}

/// Accumulates events and the table of database names they refer to.
#[derive(Default)]
struct Batcher {
    events: Vec<MirrorEvent>,
    /// Interned names; keyed by the `Arc`'s address, so the lookup hashes a pointer,
    /// not the name. Two `Arc`s with the same text get two slots, which plugins
    /// aggregate by name anyway.
    databases: Vec<Arc<str>>,
    slots: HashMap<usize, u32>,
    indices: Vec<u32>,
    abi: Vec<pgdog_plugin_api::MirrorEvent>,
    /// The same events for plugins that take statements one by one
    /// ([`Capabilities::STATEMENTS`]), when some event has them.
    abi_statements: Vec<pgdog_plugin_api::MirrorEvent>,
    /// Some event has per-statement comparisons.
    has_statements: bool,
    /// Fingerprints the batch's events refer to, each once, with their texts.
    queries: HashMap<u64, Arc<str>>,
}

impl Batcher {
    fn len(&self) -> usize {
        self.events.len()
    }

    fn push(&mut self, ev: MirrorEvent) {
        let key = Arc::as_ptr(&ev.database) as *const u8 as usize;
        let next = self.databases.len() as u32;
        let slot = *self.slots.entry(key).or_insert(next);
        if slot == next {
            self.databases.push(ev.database.clone());
        }
        self.indices.push(slot);
        let each = ev.statements.iter().flatten().map(|s| &s.query);
        for q in ev.query.iter().chain(each) {
            self.queries
                .entry(q.fingerprint)
                .or_insert_with(|| q.text.clone());
        }
        self.has_statements |= ev.statements.is_some();
        self.events.push(ev);
    }

    fn deliver(&mut self, consumers: &[Arc<LoadedPlugin>]) {
        if self.events.is_empty() {
            return;
        }
        self.abi.clear();
        self.abi.extend(
            self.events
                .iter()
                .zip(&self.indices)
                .map(|(ev, &db)| ev.to_abi(db)),
        );
        let names: Vec<RStr<'_>> = self.databases.iter().map(|d| RStr::from_str(d)).collect();
        let queries: Vec<QueryText<'_>> = self
            .queries
            .iter()
            .map(|(&fingerprint, text)| QueryText {
                fingerprint,
                text: RStr::from_str(text),
            })
            .collect();
        self.abi_statements.clear();
        if self.has_statements {
            for (ev, &db) in self.events.iter().zip(&self.indices) {
                ev.to_abi_statements(db, &mut self.abi_statements);
            }
        }
        let whole = EventBatch {
            databases: RSlice::from_slice(&names),
            events: RSlice::from_slice(&self.abi),
            queries: RSlice::from_slice(&queries),
        };
        let split = EventBatch {
            events: RSlice::from_slice(&self.abi_statements),
            ..whole
        };
        for plugin in consumers {
            if plugin.failure().is_some() {
                continue;
            }
            let batch =
                if self.has_statements && plugin.capabilities.contains(Capabilities::STATEMENTS) {
                    &split
                } else {
                    &whole
                };
            match plugin.call("consume", |p| p.consume(batch)) {
                Ok(()) | Err(PluginError::Panicked { .. }) => {} // panics are logged by `call`
                Err(e) => plugin.note_consume_error(&e),
            }
        }
        drop(names);
        drop(queries);
        self.queries.clear();
        self.has_statements = false;
        self.events.clear();
        self.indices.clear();
        self.databases.clear();
        self.slots.clear();
    }
}
