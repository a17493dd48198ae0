//! The host-side mirror event: cheap to build on the query path (an `Arc<str>` clone and
//! a clock read), converted to the ABI form off the query path, in batches.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgdog_plugin_api::{self as api, abi_stable::std_types::ROption};

/// What happened to one mirrored request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The mirror executed it.
    Mirrored,
    /// The mirror failed.
    Error {
        category: ErrorCategory,
        /// For query errors: the mirror's SQLSTATE.
        sqlstate: Option<[u8; 5]>,
    },
    /// It never reached the mirror.
    Dropped { reason: DropReason },
    /// The mirror executed it but answered differently from the primary (see the
    /// event's `comparison`).
    Mismatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCategory {
    Connection,
    Query,
    Timeout,
    /// Prefer `Outcome::Dropped { reason: DropReason::BufferFull }`; both count the same.
    BufferFull,
    Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The bounded mirror queue was full (`mirror{error_type="buffer_full"}` and
    /// `mirror{type="dropped"}`).
    BufferFull,
    Shutdown,
    /// The session's queue was full while it waited for a connection of the mirror pool,
    /// every one of which was in use: the proxy's `pool_size`, not the new server.
    PoolExhausted,
}

/// One mirrored (or dropped) request.
#[derive(Debug, Clone)]
pub struct MirrorEvent {
    /// The pool name.
    pub database: Arc<str>,
    pub outcome: Outcome,
    /// How long the mirror took, when it answered.
    pub mirror_latency: Option<Duration>,
    /// How long the primary took for the same request, when known.
    pub primary_latency: Option<Duration>,
    pub at: SystemTime,
    /// The statement's fingerprint and normalised text, when comparison is on.
    pub query: Option<QueryRef>,
    /// Primary against mirror, when comparison is on: the request as a whole.
    pub comparison: api::Comparison,
    /// When the request ran several different statements and each one's answer was
    /// compared on its own: those comparisons, the first data statement's first (the
    /// request's `query`). Plugins with [`api::Capabilities::STATEMENTS`] get them in
    /// place of `comparison` (see [`MirrorEvent::to_abi_statements`]).
    pub statements: Option<Box<[StatementComparison]>>,
}

/// One statement of a request, compared on its own.
#[derive(Debug, Clone)]
pub struct StatementComparison {
    pub query: QueryRef,
    pub comparison: api::Comparison,
}

/// A fingerprint and its normalised text (shared: one allocation per statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRef {
    pub fingerprint: u64,
    pub text: Arc<str>,
}

impl MirrorEvent {
    pub fn new(database: Arc<str>, outcome: Outcome) -> Self {
        Self {
            database,
            outcome,
            mirror_latency: None,
            primary_latency: None,
            at: SystemTime::now(),
            query: None,
            comparison: api::Comparison::not_compared(),
            statements: None,
        }
    }

    pub fn mirrored(database: Arc<str>, mirror_latency: Duration) -> Self {
        Self::new(database, Outcome::Mirrored).with_mirror_latency(mirror_latency)
    }

    pub fn error(database: Arc<str>, category: ErrorCategory, sqlstate: Option<[u8; 5]>) -> Self {
        Self::new(database, Outcome::Error { category, sqlstate })
    }

    pub fn dropped(database: Arc<str>, reason: DropReason) -> Self {
        Self::new(database, Outcome::Dropped { reason })
    }

    pub fn with_mirror_latency(mut self, latency: Duration) -> Self {
        self.mirror_latency = Some(latency);
        self
    }

    pub fn with_primary_latency(mut self, latency: Duration) -> Self {
        self.primary_latency = Some(latency);
        self
    }

    /// The ABI form, with `database` as an index into the batch's database table.
    pub(crate) fn to_abi(&self, database: u32) -> api::MirrorEvent {
        let (outcome, category, drop_reason, sqlstate) = match self.outcome {
            Outcome::Mirrored => (
                api::Outcome::MIRRORED,
                api::ErrorCategory::NONE,
                api::DropReason::NONE,
                [0; 5],
            ),
            Outcome::Error { category, sqlstate } => (
                api::Outcome::ERROR,
                category.to_abi(),
                api::DropReason::NONE,
                sqlstate.unwrap_or([0; 5]),
            ),
            Outcome::Mismatch => (
                api::Outcome::MISMATCH,
                api::ErrorCategory::NONE,
                api::DropReason::NONE,
                [0; 5],
            ),
            Outcome::Dropped { reason } => (
                api::Outcome::DROPPED,
                api::ErrorCategory::NONE,
                match reason {
                    DropReason::BufferFull => api::DropReason::BUFFER_FULL,
                    DropReason::Shutdown => api::DropReason::SHUTDOWN,
                    DropReason::PoolExhausted => api::DropReason::POOL_EXHAUSTED,
                },
                [0; 5],
            ),
        };
        api::MirrorEvent {
            database,
            outcome,
            category,
            drop_reason,
            sqlstate,
            mirror_latency_us: micros(self.mirror_latency),
            primary_latency_us: micros(self.primary_latency),
            at_unix_us: self
                .at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            fingerprint: self.query.as_ref().map(|q| q.fingerprint).into(),
            comparison: self.comparison,
        }
    }

    /// The ABI form for plugins with [`api::Capabilities::STATEMENTS`], appended to `out`:
    /// the request with its first statement's comparison (a mismatch only if that
    /// statement's answer differs), then one [`api::Outcome::STATEMENT`] event per other
    /// statement. Without per-statement comparisons, [`MirrorEvent::to_abi`].
    pub(crate) fn to_abi_statements(&self, database: u32, out: &mut Vec<api::MirrorEvent>) {
        let mut request = self.to_abi(database);
        let Some((first, rest)) = self.statements.as_deref().and_then(<[_]>::split_first) else {
            out.push(request);
            return;
        };
        request.fingerprint = ROption::RSome(first.query.fingerprint);
        request.comparison = first.comparison;
        if request.outcome == api::Outcome::MISMATCH || request.outcome == api::Outcome::MIRRORED {
            request.outcome = if first.comparison.verdict == api::Verdict::MISMATCH {
                api::Outcome::MISMATCH
            } else {
                api::Outcome::MIRRORED
            };
        }
        out.push(request);
        for s in rest {
            out.push(api::MirrorEvent {
                outcome: api::Outcome::STATEMENT,
                category: api::ErrorCategory::NONE,
                drop_reason: api::DropReason::NONE,
                sqlstate: [0; 5],
                mirror_latency_us: ROption::RNone,
                primary_latency_us: ROption::RNone,
                fingerprint: ROption::RSome(s.query.fingerprint),
                comparison: s.comparison,
                ..request
            });
        }
    }
}

impl ErrorCategory {
    fn to_abi(self) -> api::ErrorCategory {
        match self {
            Self::Connection => api::ErrorCategory::CONNECTION,
            Self::Query => api::ErrorCategory::QUERY,
            Self::Timeout => api::ErrorCategory::TIMEOUT,
            Self::BufferFull => api::ErrorCategory::BUFFER_FULL,
            Self::Protocol => api::ErrorCategory::PROTOCOL,
        }
    }
}

fn micros(d: Option<Duration>) -> ROption<u64> {
    d.map(|d| d.as_micros().min(u64::MAX as u128) as u64).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_abi() {
        let db: Arc<str> = Arc::from("primary");
        let ev = MirrorEvent::error(db.clone(), ErrorCategory::Query, Some(*b"42P01"))
            .with_mirror_latency(Duration::from_micros(1500))
            .to_abi(3);
        assert_eq!(ev.database, 3);
        assert_eq!(ev.outcome, api::Outcome::ERROR);
        assert_eq!(ev.category, api::ErrorCategory::QUERY);
        assert_eq!(ev.sqlstate_str(), Some("42P01"));
        assert_eq!(ev.mirror_latency_us, ROption::RSome(1500));
        assert!(ev.is_mirror_error());

        let ev = MirrorEvent::dropped(db, DropReason::BufferFull).to_abi(0);
        assert!(ev.is_dropped() && !ev.is_mirror_error());
        assert_eq!(ev.drop_reason, api::DropReason::BUFFER_FULL);
        assert!(ev.at_unix_us > 0);
    }

    /// A request compared statement by statement: as a whole for plugins that take
    /// requests only; for the others, the request with its first statement's comparison
    /// and one STATEMENT event per other statement, which counts in comparisons only.
    #[test]
    fn statements_go_to_plugins_that_take_them() {
        let verdict = |verdict| api::Comparison {
            verdict,
            ..api::Comparison::not_compared()
        };
        let each = |fingerprint, v| StatementComparison {
            query: QueryRef {
                fingerprint,
                text: Arc::from("q"),
            },
            comparison: verdict(v),
        };
        let mut ev = MirrorEvent::new(Arc::from("primary"), Outcome::Mismatch)
            .with_mirror_latency(Duration::from_micros(900));
        ev.query = Some(each(1, api::Verdict::MATCH).query);
        ev.comparison = verdict(api::Verdict::MISMATCH);
        ev.statements = Some(Box::new([
            each(1, api::Verdict::MATCH),
            each(2, api::Verdict::MISMATCH),
        ]));
        assert_eq!(ev.to_abi(0).outcome, api::Outcome::MISMATCH);
        let mut out = Vec::new();
        ev.to_abi_statements(0, &mut out);
        let seen: Vec<_> = out
            .iter()
            .map(|e| (e.outcome, e.fingerprint, e.comparison.verdict))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    api::Outcome::MIRRORED,
                    ROption::RSome(1),
                    api::Verdict::MATCH
                ),
                (
                    api::Outcome::STATEMENT,
                    ROption::RSome(2),
                    api::Verdict::MISMATCH
                ),
            ]
        );
        assert_eq!(out[0].mirror_latency_us, ROption::RSome(900));
        assert_eq!(out[1].mirror_latency_us, ROption::RNone);
        let mut counts = api::Counts::default();
        out.iter().for_each(|e| counts.record(e));
        assert_eq!(
            (
                counts.total,
                counts.mirrored,
                counts.compared,
                counts.mismatched
            ),
            (1, 1, 2, 1)
        );
        // Without statements: the request alone, as `to_abi` has it.
        ev.statements = None;
        out.clear();
        ev.to_abi_statements(0, &mut out);
        assert_eq!(out, [ev.to_abi(0)]);
    }
}
