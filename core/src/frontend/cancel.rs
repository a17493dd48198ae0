//! Cancel keys. Each client gets a BackendKeyData of our own; while it holds a server
//! connection the key maps to that server's address and key, so a CancelRequest that arrives
//! on a new connection can be passed to the right backend.
//!
//! A client that waits for a server connection (transaction mode, the pool busy) has no
//! query running anywhere: its cancel ends the wait instead ([`CancelMap::attach_waiter`]),
//! and the client is answered `57014` as PostgreSQL answers a cancelled statement.
//! (PgBouncer drops such a cancel, and the client waits on until a connection frees or
//! `query_wait_timeout` fires.)
//!
//! A mirrored client's cancel reaches its mirror session too ([`Canceller`]): the requests
//! the primary has not answered are marked first, then the cancel goes to the primary. The
//! one the primary answers with `57014` is then not run on the mirror (or, if the mirror
//! runs it already, cancelled there), and its comparison is set aside.

use crate::backend::Server;
use crate::mirror::Canceller;
use crate::protocol::BackendKey;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub key: BackendKey,
}

#[derive(Default)]
struct Entry {
    /// `None`: the client holds no server connection now (transaction mode).
    target: Option<CancelTarget>,
    /// The client's mirror session, when its pool is mirrored.
    mirror: Option<Canceller>,
    /// Woken by a cancel while `target` is `None` (transaction mode).
    waiter: Option<Arc<Notify>>,
}

#[derive(Default)]
pub struct CancelMap {
    targets: Mutex<HashMap<BackendKey, Entry>>,
}

impl CancelMap {
    /// A fresh, unused key mapped to `target`.
    pub fn register(&self, target: Option<CancelTarget>) -> BackendKey {
        let mut rng = rand::thread_rng();
        let mut targets = self.targets.lock().unwrap();
        loop {
            let key = BackendKey {
                pid: rng.gen_range(1..i32::MAX),
                secret: rng.gen(),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = targets.entry(key) {
                slot.insert(Entry {
                    target,
                    mirror: None,
                    waiter: None,
                });
                return key;
            }
        }
    }

    /// Points `key` at another server connection (transaction mode: the client's current
    /// one), or at none: a cancel then finds nothing to cancel, as nothing runs.
    pub fn retarget(&self, key: BackendKey, target: Option<CancelTarget>) {
        let mut targets = self.targets.lock().unwrap();
        if let Some(slot) = targets.get_mut(&key) {
            slot.target = target;
        }
    }

    /// The client of `key` is mirrored: its cancels reach `mirror` as well.
    pub fn attach_mirror(&self, key: BackendKey, mirror: Canceller) {
        if let Some(slot) = self.targets.lock().unwrap().get_mut(&key) {
            slot.mirror = Some(mirror);
        }
    }

    /// The client of `key` may wait for a server connection: a cancel that finds it
    /// holding none notifies `waiter`, which ends a wait under way ([`Pool::get_unless`]).
    ///
    /// [`Pool::get_unless`]: crate::backend::Pool::get_unless
    pub fn attach_waiter(&self, key: BackendKey, waiter: Arc<Notify>) {
        if let Some(slot) = self.targets.lock().unwrap().get_mut(&key) {
            slot.waiter = Some(waiter);
        }
    }

    pub fn unregister(&self, key: BackendKey) {
        self.targets.lock().unwrap().remove(&key);
    }

    pub fn len(&self) -> usize {
        self.targets.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forwards a client's CancelRequest; unknown keys are ignored, as PostgreSQL does.
    pub async fn cancel(&self, key: BackendKey) {
        let (target, mirror, waiter) = match self.targets.lock().unwrap().get(&key) {
            Some(e) => (e.target.clone(), e.mirror.clone(), e.waiter.clone()),
            None => (None, None, None),
        };
        // Marked before the primary can answer with the cancel (see the module docs).
        if let (Some(mirror), Some(_)) = (&mirror, &target) {
            mirror.client_cancel();
        }
        match target {
            Some(t) => {
                if let Err(e) = Server::cancel(&t.host, t.port, t.key).await {
                    tracing::warn!(
                        "forwarding cancel request to {}:{} failed: {e}",
                        t.host,
                        t.port
                    );
                }
            }
            // Nothing runs: a wait for a connection, if there is one, ends. A notification
            // with no wait under way is lost, as a cancel that arrives after its query
            // finished.
            None => match waiter {
                Some(waiter) => {
                    tracing::debug!("cancel request for a client holding no server connection: a wait for one ends");
                    waiter.notify_waiters();
                }
                None => tracing::debug!("cancel request with an unknown key, ignored"),
            },
        }
    }
}
