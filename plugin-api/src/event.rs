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

    /// The label used in metrics and reports (`"other"` for unknown codes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::BUFFER_FULL => "buffer_full",
            Self::SHUTDOWN => "shutdown",
            _ => "other",
        }
    }
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
    /// Reserved for a normalised-query fingerprint (result comparison); `RNone` today.
    pub fingerprint: ROption<u64>,
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
    pub fn is_mirror_error(&self) -> bool {
        self.outcome == Outcome::ERROR && self.category != ErrorCategory::BUFFER_FULL
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
}
