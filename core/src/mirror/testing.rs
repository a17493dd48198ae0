//! Fixtures for the mirror's unit tests: a target on a pool nobody connects to, and
//! requests that hold a place of a session's queue.

use super::request::{Request, Slot};
use super::target::Pooling;
use super::MirrorTarget;
use crate::backend::pool::PoolSettings;
use crate::backend::{Pool, ServerAddr};
use bytes::Bytes;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A mirror target named `db` on a pool whose server is never reached, replaying with
/// `timeout`, comparing answers when `compare` is set.
pub fn target(queue: usize, timeout: Duration, compare: bool) -> Arc<MirrorTarget> {
    target_pooled(queue, timeout, compare, Pooling::Session)
}

/// [`target`], its sessions holding mirror connections as `pooling` says.
pub fn target_pooled(
    queue: usize,
    timeout: Duration,
    compare: bool,
    pooling: Pooling,
) -> Arc<MirrorTarget> {
    let addr = ServerAddr {
        host: "127.0.0.1".into(),
        port: 1,
        database: "m".into(),
        user: "m".into(),
    };
    let settings = PoolSettings {
        size: 1,
        connect_timeout: Duration::from_secs(1),
        checkout_timeout: Duration::from_secs(1),
        tls: Arc::new(crate::tls::Connector::disabled()),
    };
    let compare = super::CompareSettings {
        enabled: compare,
        ..Default::default()
    };
    let target = MirrorTarget::new(
        "db",
        Pool::new("m", addr, settings, crate::backend::UserAuth::None),
        1.0,
        queue,
        timeout,
        compare,
    );
    Arc::new(target.with_pooling(pooling))
}

/// The places of one session's queue, and the requests that take them.
pub struct Places {
    pub target: Arc<MirrorTarget>,
    places: Arc<Semaphore>,
}

impl Places {
    pub fn new(target: Arc<MirrorTarget>) -> Places {
        Places {
            places: Arc::new(Semaphore::new(target.queue)),
            target,
        }
    }

    /// A client request numbered `seq`, with one ReadyForQuery, carrying `payload`.
    pub fn request_with(&self, seq: u64, payload: &[u8]) -> Request {
        Request {
            payload: SmallVec::from_iter([Bytes::copy_from_slice(payload)]),
            seq,
            readies: 1,
            received: Instant::now(),
            slot: Some(std::sync::Arc::new(Slot::new(
                self.places
                    .clone()
                    .try_acquire_owned()
                    .expect("a free place"),
                self.target.clone(),
            ))),
            continues: false,
            kind: None,
            follows_skipped: false,
        }
    }

    /// A client request numbered `seq`, without payload.
    pub fn request(&self, seq: u64) -> Request {
        let mut r = self.request_with(seq, b"");
        r.payload.clear();
        r
    }
}

/// A target named `db` mirroring what `statements` says, comparing answers, with a gate
/// (never started: its wait is not used by the pipeline's own tests) when `gated`.
pub fn target_statements(
    queue: usize,
    statements: crate::config::MirrorStatements,
    gated: bool,
) -> Arc<MirrorTarget> {
    let base = target(queue, Duration::from_secs(1), true);
    let pool = base.pool.clone();
    let gate = gated.then(|| {
        Arc::new(super::sync::Gate::new(super::sync::Settings {
            mode: crate::config::MirrorSync::Physical,
            slot: None,
            max_lag: Duration::from_secs(1),
            interval: Duration::from_millis(10),
            window: Duration::from_secs(5),
            primary: pool.clone(),
            mirror: pool.clone(),
        }))
    });
    let compare = super::CompareSettings {
        enabled: true,
        ..Default::default()
    };
    let target = MirrorTarget::new("db", pool, 1.0, queue, Duration::from_secs(1), compare)
        .with_statements(statements)
        .with_sync(gate);
    Arc::new(target)
}
