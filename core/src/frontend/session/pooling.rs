//! Transaction mode: the client takes a server connection at the first message of a
//! transaction and gives it back at the ReadyForQuery that leaves it idle. A connection it
//! takes is brought in line with the parameters it set (its startup parameters, and those
//! it changed since, as the server reported them), by `SET`ting only what differs.
//!
//! What cannot follow a client from connection to connection is documented rather than
//! emulated (`SET` outside a transaction, `LISTEN`, session advisory locks, `WITH HOLD`
//! cursors); the first `SET` or `LISTEN` outside a transaction logs a warning, once per
//! client.
//!
//! Also here, for both modes: the session's share of `SHOW STATS` (transaction and query
//! times).

use super::Session;
use crate::backend::pool::PoolStats;
use crate::backend::{PoolError, Server};
use crate::config::{General, PoolMode};
use crate::frontend::cancel::CancelTarget;
use crate::frontend::prepared::{ClientStatements, Plan};
use crate::protocol::frame::Frames;
use crate::protocol::messages::{self, Severity};
use crate::protocol::tag::client;
use crate::protocol::TxStatus;
use crate::sql;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Parameters a client keeps across checkouts when it changes them with `SET` (the server
/// reports these; PgBouncer's set).
const TRACKED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "IntervalStyle",
    "search_path",
];

/// What a client expects of the server connections it gets.
pub struct Pooled {
    /// The parameters the client set: its startup parameters, and what it changed since.
    params: Vec<(String, String)>,
    /// A key of `params` (never 0): a server connection last synced for the same key needs
    /// no comparison ([`Server::synced_for`]).
    params_key: u64,
    pub statements: ClientStatements,
    pub plan: Plan,
    /// An extended-protocol batch is open: sent in part, its Sync still to come.
    pub mid_batch: bool,
    /// `max_prepared_statements`.
    pub limit: usize,
    /// `server_reset_query` (session mode).
    pub reset_query: String,
    /// The warning about session state was logged.
    warned: bool,
    pub timing: Timing,
}

impl Pooled {
    /// `params`: the client's startup parameters to apply (already without `user`,
    /// `database` and the like, `options` unpacked).
    pub fn new(
        params: &[(String, String)],
        general: &General,
        statements: ClientStatements,
    ) -> Pooled {
        Pooled {
            params_key: params_key(params),
            params: params.to_vec(),
            plan: Plan::new(statements.registry()),
            statements,
            mid_batch: false,
            limit: general.max_prepared_statements,
            reset_query: general.server_reset_query.clone(),
            warned: false,
            timing: Timing::default(),
        }
    }

    /// The server reported a parameter's value during the client's transaction: the
    /// client changed it (`SET`, `RESET`), and keeps it.
    pub fn reported(&mut self, (name, value): &(String, String)) {
        let tracked = TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name));
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) if slot.1 == *value => return,
            Some(slot) => slot.1 = value.clone(),
            None if tracked => self.params.push((name.clone(), value.clone())),
            None => return,
        }
        self.params_key = params_key(&self.params);
    }

    /// Brings `server` in line with the client's parameters: `SET` what differs from the
    /// client's value, or, for a tracked parameter the client did not set, from the pool's
    /// default (what its first connection reported, asked of `pool` only when the
    /// connection is not already in step); `RESET` an unreported parameter the proxy set
    /// there for an earlier client and this one did not ask for.
    async fn sync(
        &self,
        server: &mut Server,
        pool: &crate::backend::Pool,
    ) -> Result<(), crate::backend::BackendError> {
        if server.synced_for == self.params_key {
            // The common case, on every checkout: no lock, no comparison.
            return Ok(());
        }
        let defaults = pool.server_params().unwrap_or_default();
        let defaults = &defaults[..];
        let mut sql = String::new();
        let mut set = Vec::new();
        let defaulted = TRACKED.iter().filter_map(|name| {
            let own = self
                .params
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name));
            let default = defaults.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
            default.filter(|_| !own)
        });
        for (name, value) in self.params.iter().chain(defaulted) {
            if server.param(name) != Some(value.as_str()) {
                sql.push_str(&format!(
                    "SET \"{name}\" TO '{}';",
                    value.replace('\'', "''")
                ));
                set.push((name, value));
            }
        }
        let stale: Vec<String> = server
            .set_by_proxy()
            .filter(|name| {
                !self
                    .params
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(str::to_string)
            .collect();
        for name in &stale {
            sql.push_str(&format!("RESET \"{name}\";"));
        }
        if sql.is_empty() {
            server.synced_for = self.params_key;
            return Ok(());
        }
        server.execute(&sql).await?;
        for (name, value) in set {
            if !server.reports(name) {
                server.proxy_set(name, Some(value));
            }
        }
        for name in &stale {
            server.proxy_set(name, None);
        }
        // The SETs' reports (ParameterStatus) were read by `execute`, after which the
        // connection is as this client wants it.
        server.synced_for = self.params_key;
        Ok(())
    }
}

/// A key of a client's parameters, never 0.
fn params_key(params: &[(String, String)]) -> u64 {
    let mut bytes = Vec::new();
    for (name, value) in params {
        bytes.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(&bytes).max(1)
}

impl Session {
    /// Takes a server connection for the client's next transaction: `Ok(false)` when the
    /// client cancelled while it waited for one (`Session::cancelled`).
    pub(super) async fn checkout(&mut self) -> Result<bool, (&'static str, String)> {
        let started = Instant::now();
        let got = match &self.cancelled {
            Some(cancelled) => self.pool.get_unless(cancelled).await,
            None => self.pool.get().await.map(Some),
        };
        let Some(mut conn) = got.map_err(|e| (pool_error_code(&e), e.to_string()))? else {
            return Ok(false);
        };
        let stats = self.pool.stats();
        stats
            .wait_us
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        stats.checkouts.fetch_add(1, Relaxed);
        if let Err(e) = self.pooled.sync(conn.server(), &self.pool).await {
            return Err((
                "08006",
                format!(
                    "bringing a server connection in line with the client's parameters failed: {e}"
                ),
            ));
        }
        let key = conn.server().key;
        let addr = self.pool.addr();
        let target = CancelTarget {
            host: addr.host.clone(),
            port: addr.port,
            key,
        };
        self.frontend.cancel.retarget(self.key, Some(target));
        self.tracker.set_server(Some(key.pid));
        self.server = Some(conn);
        Ok(true)
    }

    /// Gives the server connection back (transaction mode, the client idle).
    pub(super) async fn release(&mut self) {
        let Some(mut conn) = self.server.take() else {
            return;
        };
        self.frontend.cancel.retarget(self.key, None);
        self.tracker.set_server(None);
        conn.server().status = TxStatus::Idle;
        // Between transactions there is nothing to reset: back at once, with no await
        // (a boxed one otherwise, so that the session's future stays small).
        if let Some(conn) = conn.release_now(None) {
            Box::pin(conn.release(None)).await;
        }
    }

    /// Transaction mode: warns, once per client, of a `SET` or `LISTEN` outside a
    /// transaction, which the next connection the client gets will not have.
    pub(super) fn warn_about_session_state(&mut self, chunk: &[u8]) {
        if self.mode != PoolMode::Transaction || self.pooled.warned || !self.tracker.idle() {
            return;
        }
        for (tag, msg) in Frames::new(chunk) {
            if tag != client::QUERY {
                continue;
            }
            if let Some(what) = session_state(&msg[5..]) {
                self.pooled.warned = true;
                tracing::warn!(
                    pool = self.pool.name(),
                    user = %self.pool.addr().user,
                    "{what} outside a transaction in transaction mode: it stays on this server connection, and the client's next transaction may run on another one (only application_name, client_encoding, DateStyle, IntervalStyle, TimeZone and standard_conforming_strings follow the client; logged once per client)"
                );
                return;
            }
        }
    }
}

/// The answer to whole requests that a client cancelled while it waited for a server
/// connection, as PostgreSQL answers a statement cancelled before it ran: an error and
/// ReadyForQuery per simple Query; per extended-protocol batch, an error at its first
/// message and ReadyForQuery at its Sync (the rest skipped, as after any error). `None`
/// when `msgs` do not end where a request ends (a batch without its Sync yet, COPY data, a
/// function call): the client then waits on.
pub(super) fn cancelled_before_running(msgs: &[u8]) -> Option<BytesMut> {
    fn cancelled(out: &mut BytesMut) {
        let why = "canceling statement due to user request";
        messages::error_response(out, Severity::Error, "57014", why);
    }
    let mut out = BytesMut::new();
    // In a batch, and whether its error was written.
    let (mut batch, mut failed) = (false, false);
    for (tag, _) in Frames::new(msgs) {
        match tag {
            client::QUERY if !batch => {
                cancelled(&mut out);
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            client::PARSE
            | client::BIND
            | client::DESCRIBE
            | client::EXECUTE
            | client::CLOSE
            | client::FLUSH => {
                if !failed {
                    cancelled(&mut out);
                }
                (batch, failed) = (true, true);
            }
            client::SYNC => {
                messages::ready_for_query(&mut out, TxStatus::Idle);
                (batch, failed) = (false, false);
            }
            _ => return None,
        }
    }
    (!batch && !out.is_empty()).then_some(out)
}

/// The SQLSTATE a client is told when no connection could be had.
fn pool_error_code(e: &PoolError) -> &'static str {
    match e {
        PoolError::Exhausted { .. } => "53300",
        PoolError::Disabled(_) => "57P03",
        PoolError::Backend { .. } => "08006",
    }
}

/// A statement that changes session state transaction pooling cannot carry: `SET`
/// (other than `SET LOCAL` and `SET TRANSACTION`) or `LISTEN`.
fn session_state(query: &[u8]) -> Option<&'static str> {
    let mut tokens = sql::significant(sql::query_text(query));
    let first = tokens.next()?;
    if first.is_keyword("listen") {
        return Some("LISTEN");
    }
    if first.is_keyword("set") {
        let local = tokens
            .next()
            .is_some_and(|t| t.is_keyword("local") || t.is_keyword("transaction"));
        return (!local).then_some("SET");
    }
    None
}

/// Request and transaction times, for `SHOW STATS`.
#[derive(Default)]
pub struct Timing {
    /// When each request still unanswered was sent.
    sent: VecDeque<Instant>,
    /// When the open transaction's first request was sent.
    transaction: Option<Instant>,
}

impl Timing {
    pub fn sent(&mut self, requests: u64, now: Instant) {
        if requests > 0 && self.transaction.is_none() {
            self.transaction = Some(now);
        }
        self.sent
            .extend(std::iter::repeat_n(now, requests as usize));
    }

    pub fn answered(&mut self, status: TxStatus, now: Instant, stats: &PoolStats) {
        if let Some(sent) = self.sent.pop_front() {
            stats
                .query_us
                .fetch_add(now.duration_since(sent).as_micros() as u64, Relaxed);
        }
        if status.is_idle() {
            if let Some(started) = self.transaction.take() {
                stats.xacts.fetch_add(1, Relaxed);
                stats
                    .xact_us
                    .fetch_add(now.duration_since(started).as_micros() as u64, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_state_outside_transactions_is_recognised() {
        assert_eq!(session_state(b"SET search_path = x\0"), Some("SET"));
        assert_eq!(session_state(b"  listen chan;\0"), Some("LISTEN"));
        assert_eq!(session_state(b"set local work_mem = 1\0"), None);
        assert_eq!(
            session_state(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE\0"),
            None
        );
        assert_eq!(session_state(b"select 1\0"), None);
        assert_eq!(
            session_state(b"/* x */ set timezone = 'UTC'\0"),
            Some("SET")
        );
        assert_eq!(session_state(b"select 'set x'\0"), None);
    }

    /// The tags of an answer, and the SQLSTATE of each error in it.
    fn answered(out: &[u8]) -> (String, Vec<String>) {
        let mut tags = String::new();
        let mut codes = Vec::new();
        for (tag, msg) in Frames::new(out) {
            tags.push(tag as char);
            if tag != b'E' {
                continue;
            }
            // Fields: a type byte and a C string each, up to a zero byte.
            let mut fields = &msg[5..];
            while let Some((&kind, rest)) = fields.split_first().filter(|(k, _)| **k != 0) {
                let end = rest.iter().position(|b| *b == 0).unwrap();
                if kind == b'C' {
                    codes.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                }
                fields = &rest[end + 1..];
            }
        }
        (tags, codes)
    }

    #[test]
    fn a_cancel_before_running_answers_each_request_as_postgres_would() {
        let mut simple = BytesMut::new();
        messages::query(&mut simple, "select 1");
        messages::query(&mut simple, "select 2");
        let (tags, codes) = answered(&cancelled_before_running(&simple).unwrap());
        assert_eq!(tags, "EZEZ");
        assert_eq!(codes, ["57014", "57014"]);

        // Two batches: one error each, at its first message, and ReadyForQuery at its Sync.
        let mut extended = BytesMut::new();
        for _ in 0..2 {
            messages::parse(&mut extended, "", "select $1");
            messages::bind_text(&mut extended, &["1"]);
            messages::execute(&mut extended);
            messages::sync(&mut extended);
        }
        let (tags, codes) = answered(&cancelled_before_running(&extended).unwrap());
        assert_eq!(tags, "EZEZ");
        assert_eq!(codes.len(), 2);

        let mut sync_alone = BytesMut::new();
        messages::sync(&mut sync_alone);
        assert_eq!(
            answered(&cancelled_before_running(&sync_alone).unwrap()).0,
            "Z"
        );
    }

    #[test]
    fn a_cancel_mid_request_is_not_answered() {
        // A batch whose Sync has not come: the client waits on.
        let mut open = BytesMut::new();
        messages::parse(&mut open, "", "select 1");
        messages::bind_text(&mut open, &[]);
        messages::execute(&mut open);
        assert!(cancelled_before_running(&open).is_none());
        // COPY data, and a simple Query inside an open batch.
        let mut copy = BytesMut::new();
        messages::put(&mut copy, client::COPY_DATA, |b| {
            b.extend_from_slice(b"1\n")
        });
        assert!(cancelled_before_running(&copy).is_none());
        messages::query(&mut open, "select 2");
        assert!(cancelled_before_running(&open).is_none());
    }

    #[test]
    fn the_client_keeps_the_parameters_it_changed() {
        let general = General::default();
        let mut p = Pooled::new(
            &[("application_name".into(), "app".into())],
            &general,
            ClientStatements::default(),
        );
        p.reported(&("TimeZone".into(), "UTC".into()));
        p.reported(&("application_name".into(), "other".into()));
        p.reported(&("server_version".into(), "15".into()));
        assert_eq!(
            p.params,
            [
                ("application_name".to_string(), "other".to_string()),
                ("TimeZone".to_string(), "UTC".to_string())
            ]
        );
    }
}
