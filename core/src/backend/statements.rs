//! The prepared statements one server connection has, in transaction mode: the clients'
//! named statements are prepared under names derived from their text
//! ([`global_name`]), so that clients running the same statement share one server-side
//! statement, and a client that lands on another connection finds it there or has it
//! prepared again. The cache is bounded (`max_prepared_statements`): past it, the least
//! recently used statement is closed.

use std::collections::HashMap;
use std::sync::Mutex;
use xxhash_rust::xxh3::xxh3_64;

/// Length of a [`global_name`]: `pgdog_` and 16 hex digits.
pub const GLOBAL_NAME_LEN: usize = 22;

/// The server-side name of a statement with `definition` (a Parse message's body after
/// the name: query text and parameter types). Equal definitions get equal names.
pub fn global_name(definition: &[u8]) -> [u8; GLOBAL_NAME_LEN] {
    let mut name = [0u8; GLOBAL_NAME_LEN];
    name[..6].copy_from_slice(b"pgdog_");
    let hex = format!("{:016x}", xxh3_64(definition));
    name[6..].copy_from_slice(hex.as_bytes());
    name
}

/// Whether a statement name is one of [`global_name`]'s.
pub fn is_global_name(name: &[u8]) -> bool {
    name.len() == GLOBAL_NAME_LEN && name.starts_with(b"pgdog_")
}

/// A server connection's statements, least recently used first out.
#[derive(Debug, Default)]
pub struct ServerStatements {
    /// Global name -> when it was last used (a counter).
    prepared: HashMap<[u8; GLOBAL_NAME_LEN], u64>,
    clock: u64,
    /// SQL-level `PREPARE`d names (client names, as the server knows them) -> a hash of
    /// the `PREPARE` statement that defined them.
    sql: HashMap<Box<[u8]>, u64>,
}

impl ServerStatements {
    /// Whether the server has `name`; marks it used.
    pub fn touch(&mut self, name: &[u8; GLOBAL_NAME_LEN]) -> bool {
        self.clock += 1;
        match self.prepared.get_mut(name) {
            Some(used) => {
                *used = self.clock;
                true
            }
            None => false,
        }
    }

    /// `name` is being prepared on the server. Returns the least recently used statement
    /// to close first, when the cache is already at `limit`.
    pub fn insert(
        &mut self,
        name: [u8; GLOBAL_NAME_LEN],
        limit: usize,
    ) -> Option<[u8; GLOBAL_NAME_LEN]> {
        self.clock += 1;
        let evicted = if self.prepared.len() >= limit.max(1) && !self.prepared.contains_key(&name) {
            let oldest = self
                .prepared
                .iter()
                .min_by_key(|(_, used)| **used)
                .map(|(n, _)| *n)?;
            self.prepared.remove(&oldest);
            Some(oldest)
        } else {
            None
        };
        self.prepared.insert(name, self.clock);
        evicted
    }

    /// `name` is not on the server after all (its Parse failed).
    pub fn remove(&mut self, name: &[u8; GLOBAL_NAME_LEN]) {
        self.prepared.remove(name);
    }

    /// The hash of the SQL `PREPARE` behind SQL-level statement `name`, if the server has it.
    pub fn sql(&self, name: &[u8]) -> Option<u64> {
        self.sql.get(name).copied()
    }

    pub fn set_sql(&mut self, name: &[u8], definition: Option<u64>) {
        match definition {
            Some(hash) => {
                self.sql.insert(name.into(), hash);
            }
            None => {
                self.sql.remove(name);
            }
        }
    }

    /// `DISCARD ALL` or `DEALLOCATE ALL` ran: the server has no statement left.
    pub fn clear(&mut self) {
        self.prepared.clear();
        self.sql.clear();
    }

    pub fn len(&self) -> usize {
        self.prepared.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prepared.is_empty()
    }

    /// The global names the server has (`SHOW PREPARED_STATEMENTS`).
    pub fn names(&self) -> impl Iterator<Item = &[u8; GLOBAL_NAME_LEN]> {
        self.prepared.keys()
    }
}

/// The statements transaction mode prepares under global names, process-wide, for `SHOW
/// PREPARED_STATEMENTS`: how many client statements stand for each, and how often one was
/// prepared on a server connection (a connection lacking it, or its cache full).
#[derive(Debug, Default)]
pub struct StatementRegistry {
    inner: Mutex<HashMap<[u8; GLOBAL_NAME_LEN], Registered>>,
}

/// One global statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The query text (its first [`Registered::TEXT`] bytes).
    pub text: String,
    /// Client statements (of all clients) defined as it.
    pub clients: usize,
    /// Times the proxy prepared it on a server connection.
    pub prepares: u64,
    /// The last time a server was asked, it accepted the statement (ParseComplete).
    pub accepted: bool,
}

impl Registered {
    pub const TEXT: usize = 1000;
}

impl StatementRegistry {
    /// A client statement `global` was defined (`definition`: the Parse body after the
    /// name).
    pub fn add(&self, global: &[u8; GLOBAL_NAME_LEN], definition: &[u8]) {
        let mut map = self.inner.lock().unwrap();
        let entry = map.entry(*global).or_insert_with(|| {
            let text = definition.split(|&b| b == 0).next().unwrap_or_default();
            let text = &text[..text.len().min(Registered::TEXT)];
            Registered {
                text: String::from_utf8_lossy(text).into_owned(),
                clients: 0,
                prepares: 0,
                accepted: false,
            }
        });
        entry.clients += 1;
    }

    /// A client statement defined as `global` was closed, or its client left. The entry
    /// goes with the last one.
    pub fn remove(&self, global: &[u8; GLOBAL_NAME_LEN]) {
        let mut map = self.inner.lock().unwrap();
        if let Some(entry) = map.get_mut(global) {
            entry.clients = entry.clients.saturating_sub(1);
            if entry.clients == 0 {
                map.remove(global);
            }
        }
    }

    /// `global` is being prepared on a server connection.
    pub fn prepared(&self, global: &[u8; GLOBAL_NAME_LEN]) {
        if let Some(entry) = self.inner.lock().unwrap().get_mut(global) {
            entry.prepares += 1;
        }
    }

    /// A server answered a Parse of `global`: accepted (ParseComplete) or refused.
    pub fn accepted(&self, global: &[u8; GLOBAL_NAME_LEN], accepted: bool) {
        if let Some(entry) = self.inner.lock().unwrap().get_mut(global) {
            entry.accepted = accepted;
        }
    }

    /// Whether a server accepted `global` the last time it was prepared.
    pub fn is_accepted(&self, global: &[u8; GLOBAL_NAME_LEN]) -> bool {
        self.inner
            .lock()
            .unwrap()
            .get(global)
            .is_some_and(|e| e.accepted)
    }

    /// Every statement by its global name, in name order.
    pub fn list(&self) -> Vec<(String, Registered)> {
        let map = self.inner.lock().unwrap();
        let mut out: Vec<_> = map
            .iter()
            .map(|(name, r)| (String::from_utf8_lossy(name).into_owned(), r.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_definitions_share_a_name() {
        let a = global_name(b"select $1\0\0\0");
        assert_eq!(a, global_name(b"select $1\0\0\0"));
        assert_ne!(a, global_name(b"select $2\0\0\0"));
        assert!(is_global_name(&a) && !is_global_name(b"s1"));
    }

    #[test]
    fn the_least_recently_used_statement_goes_first() {
        let mut s = ServerStatements::default();
        let (a, b, c) = (global_name(b"a"), global_name(b"b"), global_name(b"c"));
        assert_eq!(s.insert(a, 2), None);
        assert_eq!(s.insert(b, 2), None);
        assert!(s.touch(&a), "a used again: b is now the oldest");
        assert_eq!(s.insert(c, 2), Some(b));
        assert!(s.touch(&a) && s.touch(&c) && !s.touch(&b));
        assert_eq!(s.len(), 2);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn the_registry_counts_client_statements_and_prepares() {
        let r = StatementRegistry::default();
        let g = global_name(b"select 1\0\0\0");
        r.add(&g, b"select 1\0\0\0");
        r.add(&g, b"select 1\0\0\0");
        r.prepared(&g);
        let list = r.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].1.text, "select 1");
        assert_eq!((list[0].1.clients, list[0].1.prepares), (2, 1));
        r.remove(&g);
        assert_eq!(r.list()[0].1.clients, 1);
        r.remove(&g);
        assert!(r.list().is_empty());
    }
}
