//! The logged-in clients, for the admin console (`SHOW CLIENTS`, `SHOW SERVERS`, `KILL`).
//!
//! Login registers a client once its session exists and keeps the returned
//! [`Registered`] guard for the session's lifetime; dropping the guard removes the entry.
//! Nothing here is touched on the forwarding path: the live state is the session's own
//! [`Tracker`] (atomics), read only when the admin asks.

use super::tracker::Tracker;
use crate::net::Peer;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// One logged-in client.
#[derive(Clone)]
pub struct ClientInfo {
    /// Unique for the life of the process, in login order.
    pub id: u64,
    pub peer: Peer,
    pub user: String,
    /// The pool the client was routed to.
    pub pool: String,
    /// The client connection's TLS version, `None` for plain TCP.
    pub tls: Option<&'static str>,
    /// The server connection's TLS version, `None` for plain TCP.
    pub server_tls: Option<&'static str>,
    pub connected_at: SystemTime,
    pub tracker: Arc<Tracker>,
    /// Cancelled to end the session at its next idle point (`KILL`).
    pub stop: CancellationToken,
}

impl ClientInfo {
    /// `active` (request in flight), `idle in transaction` or `idle`.
    pub fn activity(&self) -> &'static str {
        if self.tracker.pending() > 0 {
            "active"
        } else if !self.tracker.status().is_idle() {
            "idle in transaction"
        } else {
            "idle"
        }
    }
}

#[derive(Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, ClientInfo>>,
}

impl ClientRegistry {
    /// Adds a client (its `id` is assigned here); it stays listed while the guard lives.
    pub fn register(self: &Arc<Self>, mut info: ClientInfo) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        info.id = id;
        self.clients.lock().unwrap().insert(id, info);
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Every client, in login order.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.clients.lock().unwrap().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.clients.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes its client from the registry when dropped.
pub struct Registered {
    registry: Arc<ClientRegistry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.clients.lock().unwrap().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ClientInfo {
        ClientInfo {
            id: 0,
            peer: Peer::Unix,
            user: "u".into(),
            pool: "p".into(),
            tls: None,
            server_tls: None,
            connected_at: SystemTime::now(),
            tracker: Arc::new(Tracker::new()),
            stop: CancellationToken::new(),
        }
    }

    #[test]
    fn guard_unregisters() {
        let registry = Arc::new(ClientRegistry::default());
        let a = registry.register(info());
        let b = registry.register(info());
        let ids: Vec<u64> = registry.list().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(registry.list()[0].activity(), "idle");
        drop(a);
        assert_eq!(registry.list()[0].id, 2);
        drop(b);
        assert!(registry.is_empty());
    }
}
