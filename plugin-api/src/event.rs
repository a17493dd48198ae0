//! Mirror events: what the proxy reports to plugins, one per mirrored request.
//!
//! Events travel in an [`EventBatch`]: the database names are interned once per batch
//! and each [`MirrorEvent`] refers to its database by index, so a batch of thousands of
//! events costs no per-event string allocation on either side of the boundary.

use abi_stable::{
    std_types::{ROption, RSlice, RStr},
    StableAbi,
};

/// What happened to one mirrored request. An open set: treat unknown codes as "other".
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Outcome(pub u8);

impl Outcome {
    /// The mirror executed the request successfully.
    pub const MIRRORED: Self = Self(0);
    /// The mirror failed: see [`MirrorEvent::category`] and [`MirrorEvent::sqlstate`].
    pub const ERROR: Self = Self(1);
    /// The request never reached the mirror: see [`MirrorEvent::drop_reason`].
    pub const DROPPED: Self = Self(2);
    /// The mirror executed the request, but its answer differs from the primary's: see
    /// [`MirrorEvent::comparison`]. It counts as mirrored (the mirror did run it).
    pub const MISMATCH: Self = Self(3);
    /// Since 3.2.0, only to plugins with [`crate::Capabilities::STATEMENTS`]: not a
    /// request but one more statement of the request event just before it, which ran
    /// several different statements. It carries that statement's `fingerprint` and
    /// `comparison`; its other fields repeat the request's, no latency. It counts in
    /// comparisons (compared, mismatched, set aside) and in nothing else: not in `total`.
    pub const STATEMENT: Self = Self(4);
}

/// Why a mirrored request failed. An open set: treat unknown codes as "other".
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCategory(pub u8);

impl ErrorCategory {
    /// Not an error (the event's outcome is not [`Outcome::ERROR`]).
    pub const NONE: Self = Self(0);
    /// Could not connect to / lost the connection to the mirror.
    pub const CONNECTION: Self = Self(1);
    /// The mirror answered with an ErrorResponse (SQLSTATE in the event).
    pub const QUERY: Self = Self(2);
    /// The mirror did not answer in time.
    pub const TIMEOUT: Self = Self(3);
    /// The mirror queue was full. Counted as a dropped request too, never as a mirror
    /// failure: hosts send it as [`Outcome::DROPPED`] with [`DropReason::BUFFER_FULL`].
    pub const BUFFER_FULL: Self = Self(4);
    /// The mirror's reply broke the wire protocol.
    pub const PROTOCOL: Self = Self(5);

    /// The label used in metrics and reports (`"other"` for unknown codes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::CONNECTION => "connection",
            Self::QUERY => "query",
            Self::TIMEOUT => "timeout",
            Self::BUFFER_FULL => "buffer_full",
            Self::PROTOCOL => "protocol",
            _ => "other",
        }
    }
}

/// Why a request was not mirrored. An open set: treat unknown codes as "other".
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DropReason(pub u8);

impl DropReason {
    /// Not dropped.
    pub const NONE: Self = Self(0);
    /// The bounded mirror queue was full (`mirror{error_type="buffer_full"}`).
    pub const BUFFER_FULL: Self = Self(1);
    /// The proxy was shutting down.
    pub const SHUTDOWN: Self = Self(2);
    /// The session's queue was full while it waited for a connection of the mirror pool,
    /// all of which were in use (the proxy's `pool_size`, not the new server). Counted in
    /// `dropped`, not in `by_category.buffer_full`.
    pub const POOL_EXHAUSTED: Self = Self(3);

    /// The label used in metrics and reports (`"other"` for unknown codes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::BUFFER_FULL => "buffer_full",
            Self::SHUTDOWN => "shutdown",
            Self::POOL_EXHAUSTED => "pool_exhausted",
            _ => "other",
        }
    }
}

/// The verdict of comparing the mirror's answer with the primary's. An open set.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Verdict(pub u8);

impl Verdict {
    /// Comparison is off, or the request never got an answer from both sides.
    pub const NOT_COMPARED: Self = Self(0);
    /// Same command tags, column types, row count and rows; or the same SQLSTATE on both.
    pub const MATCH: Self = Self(1);
    /// Something differed: see [`Comparison::differences`].
    pub const MISMATCH: Self = Self(2);
    /// Both answered but the comparison does not count: see [`Comparison::excluded`].
    pub const EXCLUDED: Self = Self(3);
}

/// What differed between the two answers: a bit set.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Differences(pub u8);

impl Differences {
    /// CommandComplete tags (command or affected-row count).
    pub const TAG: Self = Self(1);
    /// Number of DataRows.
    pub const ROW_COUNT: Self = Self(1 << 1);
    /// Column type OIDs of a RowDescription.
    pub const COLUMNS: Self = Self(1 << 2);
    /// Same number of rows, different contents (or order, for an ordered query).
    pub const ROWS: Self = Self(1 << 3);
    /// One side failed and the other did not, or they failed with different SQLSTATEs.
    pub const ERROR: Self = Self(1 << 4);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Names of the bits set, most significant difference first.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::ERROR, "error"),
            (Self::COLUMNS, "columns"),
            (Self::TAG, "tag"),
            (Self::ROW_COUNT, "row count"),
            (Self::ROWS, "rows"),
        ]
        .into_iter()
        .filter(|(d, _)| self.contains(*d))
        .map(|(_, n)| n)
        .collect()
    }
}

impl std::ops::BitOr for Differences {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Differences {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// Why a compared request does not count for or against the mirror. An open set.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Exclusion(pub u8);

impl Exclusion {
    pub const NONE: Self = Self(0);
    /// The statement is non-deterministic as written (`now()`, `random()`, `nextval`,
    /// a `LIMIT` without `ORDER BY`, ...): different answers are expected.
    pub const NONDETERMINISTIC: Self = Self(1);
    /// The fingerprint is in the operator's `mirror_compare_ignore` list.
    pub const IGNORED: Self = Self(2);
    /// The primary's answer was no longer recorded when the mirror's arrived (a pipeline
    /// deeper than the proxy keeps), so there was nothing to compare with.
    pub const UNPAIRED: Self = Self(3);
    /// Requests were dropped before (the mirror queue was full): writes the mirror never
    /// ran leave its data behind the primary's, so differing answers prove nothing about
    /// the new server. Cleared by `RESET MIRROR STATS` (after re-syncing the mirror).
    pub const DIVERGED: Self = Self(4);
    /// The mirror is kept in sync by replication and had not applied what the primary
    /// had committed when it answered, within `mirror_max_lag_ms`: the read ran anyway,
    /// on data that may be older than the primary's.
    pub const LAGGING: Self = Self(5);
    /// The client cancelled the request and the primary answered with the cancel
    /// (`57014`): what the mirror did with it says nothing about the new server (the
    /// proxy passed the cancel on, or did not run the request there at all).
    pub const CANCELLED: Self = Self(6);
    /// The mirror is kept in sync by replication and its answer to a read differed, but
    /// asked again (the primary anew, the mirror once it had applied what the primary had
    /// then) the two were equal: the first answers were taken at different points of the
    /// replication stream (rows written meanwhile), which says nothing about the new
    /// server.
    pub const RECHECKED: Self = Self(7);

    /// The label used in reports (`"other"` for unknown codes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::NONDETERMINISTIC => "non-deterministic",
            Self::IGNORED => "ignored",
            Self::UNPAIRED => "unpaired",
            Self::DIVERGED => "after drops",
            Self::LAGGING => "lagging",
            Self::CANCELLED => "cancelled on primary",
            Self::RECHECKED => "rechecked",
            _ => "other",
        }
    }
}

/// The comparison of one request's answers, primary against mirror.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub verdict: Verdict,
    /// Set when `verdict == MISMATCH`.
    pub differences: Differences,
    /// Set when `verdict == EXCLUDED`.
    pub excluded: Exclusion,
    /// The primary's SQLSTATE when it failed, all zero bytes otherwise. A query error
    /// with the same SQLSTATE on both sides is a shared error, not the mirror's fault.
    pub primary_sqlstate: [u8; 5],
    /// DataRows (or, for commands without rows, the CommandComplete row count) on each
    /// side, to show what differed.
    pub primary_rows: u64,
    pub mirror_rows: u64,
}

impl Comparison {
    pub const fn not_compared() -> Self {
        Self {
            verdict: Verdict::NOT_COMPARED,
            differences: Differences(0),
            excluded: Exclusion::NONE,
            primary_sqlstate: [0; 5],
            primary_rows: 0,
            mirror_rows: 0,
        }
    }

    /// One line saying what differed, e.g. `rows: primary 3, mirror 2`.
    pub fn describe(&self) -> String {
        let d = self.differences;
        if d.contains(Differences::ERROR) {
            let primary = std::str::from_utf8(&self.primary_sqlstate)
                .ok()
                .filter(|_| self.primary_sqlstate != [0; 5])
                .unwrap_or("ok");
            return format!("error: primary {primary}, mirror differs");
        }
        if d.contains(Differences::COLUMNS) {
            return "column types differ".to_string();
        }
        if d.contains(Differences::ROW_COUNT) || d.contains(Differences::TAG) {
            return format!(
                "{}: primary {} rows, mirror {} rows",
                if d.contains(Differences::ROW_COUNT) {
                    "row count"
                } else {
                    "command tag"
                },
                self.primary_rows,
                self.mirror_rows
            );
        }
        if d.contains(Differences::ROWS) {
            return format!("same {} rows, different contents", self.primary_rows);
        }
        "no difference".to_string()
    }
}

impl Default for Comparison {
    fn default() -> Self {
        Self::not_compared()
    }
}

/// A query fingerprint and its normalised text, sent once per batch for the fingerprints
/// the batch's events refer to.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct QueryText<'a> {
    pub fingerprint: u64,
    /// Normalised, literals replaced by `?`, possibly shortened (at most 200 bytes).
    pub text: RStr<'a>,
}

/// One mirrored request, as seen by plugins.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq)]
pub struct MirrorEvent {
    /// Index into [`EventBatch::databases`].
    #[cfg(not(feature = "__fixture_bad_layout"))]
    pub database: u32,
    /// Deliberately different layout for the incompatible fixture plugin.
    #[cfg(feature = "__fixture_bad_layout")]
    pub database: u64,
    pub outcome: Outcome,
    /// Meaningful when `outcome == ERROR`, else [`ErrorCategory::NONE`].
    pub category: ErrorCategory,
    /// Meaningful when `outcome == DROPPED`, else [`DropReason::NONE`].
    pub drop_reason: DropReason,
    /// SQLSTATE of a query error (`category == QUERY`), all zero bytes when unknown.
    pub sqlstate: [u8; 5],
    /// How long the mirror took to answer, in microseconds, when it answered.
    pub mirror_latency_us: ROption<u64>,
    /// How long the primary took for the same request, when known.
    pub primary_latency_us: ROption<u64>,
    /// When the request was mirrored (or dropped), microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// The normalised statement's fingerprint, when comparison is on (its text is in
    /// [`EventBatch::queries`]).
    pub fingerprint: ROption<u64>,
    /// Primary against mirror, when comparison is on.
    pub comparison: Comparison,
}

impl MirrorEvent {
    /// The SQLSTATE as text, when present.
    pub fn sqlstate_str(&self) -> Option<&str> {
        if self.sqlstate == [0; 5] {
            None
        } else {
            std::str::from_utf8(&self.sqlstate).ok()
        }
    }

    /// True when the mirror failed on its own account (buffer-full drops excluded).
    /// Shared errors (the primary failed the same way) are included: see
    /// [`MirrorEvent::is_shared_error`].
    pub fn is_mirror_error(&self) -> bool {
        self.outcome == Outcome::ERROR && self.category != ErrorCategory::BUFFER_FULL
    }

    /// A query error with the same SQLSTATE on the primary: counted as a query error
    /// (the spec's `mirror{error_type="query"}`) but not held against the mirror.
    pub fn is_shared_error(&self) -> bool {
        self.outcome == Outcome::ERROR
            && self.category == ErrorCategory::QUERY
            && self.comparison.verdict == Verdict::MATCH
    }

    /// The mirror ran the request and answered differently from the primary (or, for a
    /// [`Outcome::STATEMENT`] event, that statement's answer differs).
    pub fn is_mismatch(&self) -> bool {
        self.outcome == Outcome::MISMATCH
            || (self.outcome == Outcome::STATEMENT && self.comparison.verdict == Verdict::MISMATCH)
    }

    /// One more statement of the request before it, not a request (see
    /// [`Outcome::STATEMENT`]).
    pub fn is_statement(&self) -> bool {
        self.outcome == Outcome::STATEMENT
    }

    /// True when the request never reached the mirror (an `ERROR` with category
    /// `BUFFER_FULL` is normalised to a drop).
    pub fn is_dropped(&self) -> bool {
        self.outcome == Outcome::DROPPED
            || (self.outcome == Outcome::ERROR && self.category == ErrorCategory::BUFFER_FULL)
    }
}

/// A batch of events handed to [`crate::Plugin::consume`].
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct EventBatch<'a> {
    /// Database (pool) names, referred to by [`MirrorEvent::database`].
    pub databases: RSlice<'a, RStr<'a>>,
    pub events: RSlice<'a, MirrorEvent>,
    /// Normalised texts of the fingerprints `events` refer to.
    pub queries: RSlice<'a, QueryText<'a>>,
}

impl<'a> EventBatch<'a> {
    /// The database name of `event` (`"?"` if the index is out of range).
    pub fn database_of(&self, event: &MirrorEvent) -> &'a str {
        self.databases
            .as_slice()
            .get(event.database as usize)
            .map(|s| s.as_str())
            .unwrap_or("?")
    }

    /// The normalised text of `fingerprint`, if the batch carries it.
    pub fn query_text(&self, fingerprint: u64) -> Option<&'a str> {
        self.queries
            .as_slice()
            .iter()
            .find(|q| q.fingerprint == fingerprint)
            .map(|q| q.text.as_str())
    }
}
