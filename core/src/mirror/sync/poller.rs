//! The I/O of a gate: one task per mirror target that reads the replication positions on
//! connections of its own (never a client's), in rounds [`Positions`] schedules.
//!
//! A round is, for a logical subscription, one query on the primary (its insert position
//! and the subscription slot's, in one statement) and, at the same time, one on the
//! subscriber (its replication origin's progress, the end of the last transaction it
//! committed: the slot's positions move only when the subscriber reports, which it does
//! when its apply worker has caught up with what it received, so under steady writes in
//! steps of a hundred milliseconds or more). Reading the origin needs a superuser or a
//! role granted `pg_replication_origin_progress`; refused, the slot's positions alone
//! are used. For a physical standby: one query on the primary and one on the standby. Rounds run every
//! `mirror_sync_interval_ms` while reads wait, and once a second otherwise (the
//! replication's status and lag for metrics and readiness).

use super::lsn::Lsn;
use super::positions::{Positions, Round};
use super::{Settings, Shared};
use crate::backend::{BackendError, Pool, Server};
use crate::config::MirrorSync;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest a round may take before its connections are given up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);

/// The primary's insert position, its WAL page size, and the subscription slot's state
/// and position: the furthest of what the subscriber confirmed flushed and what its
/// walsender last heard it applied.
const LOGICAL: &str = "\
SELECT pg_catalog.pg_current_wal_insert_lsn()::text, pg_catalog.current_setting('wal_block_size'), \
s.slot_type, s.active, s.wal_status, \
GREATEST(s.confirmed_flush_lsn, w.replay_lsn)::text \
FROM (SELECT 1) AS one \
LEFT JOIN pg_catalog.pg_replication_slots AS s ON s.slot_name = $1 \
LEFT JOIN pg_catalog.pg_stat_get_wal_senders() AS w ON w.pid = s.active_pid";

/// The subscriber's replication origin progress for the subscription on slot `$1`: the
/// primary's end position of the last transaction it committed (NULL before the first).
const ORIGIN: &str = "\
SELECT pg_catalog.pg_replication_origin_progress('pg_' || s.oid, false)::text \
FROM pg_catalog.pg_subscription AS s \
WHERE s.subslotname = $1 \
AND s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())";

/// The primary's insert position and WAL page size.
const PRIMARY: &str = "\
SELECT pg_catalog.pg_current_wal_insert_lsn()::text, pg_catalog.current_setting('wal_block_size')";

/// The standby's replay position, and whether it is a standby, replaying, and streaming.
const STANDBY: &str = "\
SELECT pg_catalog.pg_last_wal_replay_lsn()::text, pg_catalog.pg_is_in_recovery(), \
CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() END, \
(SELECT count(*) FROM pg_catalog.pg_stat_wal_receiver)";

/// The gate's connections.
pub struct Poller {
    settings: Settings,
    primary: Option<Server>,
    mirror: Option<Server>,
    /// Whether the subscriber's origin is read (logical): until it refuses.
    origin: bool,
}

/// Runs rounds for `shared` until `stop` is cancelled.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut poller = Poller::new(shared.settings.clone());
    loop {
        let waiting = shared.waiting.load(Ordering::Acquire) > 0;
        let due = lock(&shared).next_due(waiting);
        let sleep = async {
            if let Some(due) = due {
                tokio::time::sleep_until(due.into()).await;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            // A read started waiting: a round may be due sooner.
            _ = shared.wake.notified() => continue,
            _ = sleep => {}
        }
        let waiting = shared.waiting.load(Ordering::Acquire) > 0;
        let sent = Instant::now();
        lock(&shared).round_sent(sent, waiting, poller.queries());
        let round = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(ROUND_TIMEOUT, poller.round(sent)) => r,
        };
        match round {
            Ok(Ok(round)) => lock(&shared).round_done(round),
            Ok(Err(why)) => {
                poller.disconnect();
                lock(&shared).round_failed(why);
            }
            Err(_) => {
                poller.disconnect();
                lock(&shared)
                    .round_failed(format!("no answer within {} s", ROUND_TIMEOUT.as_secs()));
            }
        }
        shared.progress.send_modify(|n| *n += 1);
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Positions> {
    shared.positions.lock().unwrap_or_else(|e| e.into_inner())
}

impl Poller {
    pub fn new(settings: Settings) -> Poller {
        Poller {
            settings,
            primary: None,
            mirror: None,
            origin: true,
        }
    }

    /// Rounds that read the slot alone, not the subscriber's origin (the start-up probe:
    /// it checks that the slot can be read, and leaves the origin to the running gate,
    /// which says once if it cannot be read).
    pub fn slot_only(mut self) -> Poller {
        self.origin = false;
        self
    }

    /// Queries a round sends to the primary and to the mirror.
    fn queries(&self) -> [u64; 2] {
        match self.settings.mode {
            MirrorSync::Physical => [1, 1],
            _ => [1, u64::from(self.origin)],
        }
    }

    fn disconnect(&mut self) {
        self.primary = None;
        self.mirror = None;
    }

    /// One round, sent at `sent`: the positions, or why they could not be read.
    pub async fn round(&mut self, sent: Instant) -> Result<Round, String> {
        match self.settings.mode {
            MirrorSync::Physical => self.physical(sent).await,
            _ => self.logical(sent).await,
        }
    }

    async fn logical(&mut self, sent: Instant) -> Result<Round, String> {
        let slot = self.settings.slot.clone().unwrap_or_default();
        let (row, origin) = tokio::join!(
            async {
                let primary =
                    connection(&mut self.primary, &self.settings.primary, "primary").await?;
                query(primary, LOGICAL, &[&slot], "primary").await
            },
            async {
                if !self.origin {
                    return None;
                }
                let read = async {
                    let mirror =
                        connection(&mut self.mirror, &self.settings.mirror, "mirror").await?;
                    query(mirror, ORIGIN, &[&slot], "mirror").await
                };
                match read.await {
                    Ok(row) => row
                        .first()
                        .cloned()
                        .flatten()
                        .as_deref()
                        .and_then(Lsn::parse),
                    Err(why) if why.contains("42501") || why.contains("permission denied") => {
                        tracing::info!(
                            slot = &*slot,
                            "the subscriber's replication origin cannot be read ({why}): the slot's positions alone tell how far it applied"
                        );
                        self.origin = false;
                        None
                    }
                    // No subscription on the slot there, or no connection: this round
                    // goes by the slot's positions.
                    Err(_) => {
                        self.mirror = None;
                        None
                    }
                }
            }
        );
        let row = row?;
        let (lsn, page_size) = primary_position(&row)?;
        let (stopped, applied) = match row.get(2).cloned().flatten() {
            None => (
                Some(format!(
                    "replication slot \"{slot}\" does not exist on the primary"
                )),
                None,
            ),
            Some(kind) if kind != "logical" => (
                Some(format!(
                    "replication slot \"{slot}\" is a {kind} slot, not a subscription's"
                )),
                None,
            ),
            Some(_) => {
                let applied = row
                    .get(5)
                    .cloned()
                    .flatten()
                    .as_deref()
                    .and_then(Lsn::parse)
                    .max(origin);
                let stopped = if row.get(4).cloned().flatten().as_deref() == Some("lost") {
                    Some(format!(
                        "replication slot \"{slot}\" lost WAL its subscriber needs (wal_status lost): re-create the subscription"
                    ))
                } else if row.get(3).cloned().flatten().as_deref() != Some("t") {
                    Some(format!(
                        "replication slot \"{slot}\" is not active: no subscriber streams from it (subscription disabled, or its apply worker stopped)"
                    ))
                } else {
                    None
                };
                (stopped, applied)
            }
        };
        Ok(Round {
            sent,
            received: Instant::now(),
            primary: lsn,
            page_size,
            applied,
            stopped,
        })
    }

    async fn physical(&mut self, sent: Instant) -> Result<Round, String> {
        let settings = &self.settings;
        let (primary, mirror) = tokio::join!(
            connection(&mut self.primary, &settings.primary, "primary"),
            connection(&mut self.mirror, &settings.mirror, "mirror"),
        );
        let (primary, mirror) = (primary?, mirror?);
        let (p, m) = tokio::join!(
            query(primary, PRIMARY, &[], "primary"),
            query(mirror, STANDBY, &[], "mirror"),
        );
        let (p, m) = (p?, m?);
        let (lsn, page_size) = primary_position(&p)?;
        let field = |i: usize| m.get(i).cloned().flatten();
        let replay = field(0).as_deref().and_then(Lsn::parse);
        let stopped = if field(1).as_deref() != Some("t") {
            Some(
                "the mirror is not a standby: pg_is_in_recovery() is false (promoted?)".to_string(),
            )
        } else if field(2).as_deref() == Some("t") {
            Some("WAL replay is paused on the mirror (SELECT pg_wal_replay_resume())".to_string())
        } else if field(3).as_deref() == Some("0") {
            Some("the mirror has no WAL receiver: it is not streaming from the primary".to_string())
        } else {
            None
        };
        let applied = if field(1).as_deref() == Some("t") {
            replay
        } else {
            None
        };
        Ok(Round {
            sent,
            received: Instant::now(),
            primary: lsn,
            page_size,
            applied,
            stopped,
        })
    }
}

/// The connection in `slot`, opened on `pool` if there is none.
async fn connection<'a>(
    slot: &'a mut Option<Server>,
    pool: &Pool,
    which: &str,
) -> Result<&'a mut Server, String> {
    if slot.is_none() {
        let server = pool
            .connect_dedicated()
            .await
            .map_err(|e| format!("cannot connect to the {which}: {e}"))?;
        *slot = Some(server);
    }
    Ok(slot.as_mut().expect("connected"))
}

/// The one row of `sql` on `server`.
async fn query(
    server: &mut Server,
    sql: &str,
    params: &[&str],
    which: &str,
) -> Result<Vec<Option<String>>, String> {
    match server.query_row(sql, params).await {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(format!("no row from the {which}")),
        Err(BackendError::Server(e)) => Err(format!("the {which} answered: {e}")),
        Err(e) => Err(format!("the {which}: {e}")),
    }
}

/// The insert position and page size of a row that starts with them.
fn primary_position(row: &[Option<String>]) -> Result<(Lsn, u64), String> {
    let lsn = row
        .first()
        .cloned()
        .flatten()
        .as_deref()
        .and_then(Lsn::parse)
        .ok_or("the primary's WAL position is not readable (in recovery?)")?;
    let page_size = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8192);
    Ok((lsn, page_size))
}
