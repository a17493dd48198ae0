//! The stable-ABI interface between `pgdog` and its plugins.
//!
//! `pgdog` does not hard-code how mirror results are counted or how migration
//! readiness is judged: that logic lives in plugins, shared libraries built
//! against this crate with [`abi_stable`], so a team can swap the readiness
//! policy by configuration alone, without rebuilding the proxy.
//!
//! The data flow is one way:
//!
//! ```text
//! mirror worker --MirrorEvent--> host batching thread --EventBatch--> plugin.consume()
//! admin / metrics endpoint --> plugin.snapshot() --> readiness plugin.assess() --> ReadinessReport
//! ```
//!
//! * [`event`]: what the proxy tells plugins (one [`MirrorEvent`] per mirrored request).
//! * [`stats`]: the statistics snapshot a stats plugin produces.
//! * [`readiness`]: criteria in, report out.
//! * [`metrics`]: metric points for the Prometheus endpoint.
//! * [`scrape`]: what the metrics endpoint asks of the stats plugin per scrape (2.1).
//! * [`extension`]: the named fields a struct gains in a minor version (3.0).
//! * [`errors`] and [`coverage`]: error classes and workload coverage, named fields of
//!   the statistics and reports (3.1).
//! * [`Outcome::STATEMENT`] events and [`Capabilities::STATEMENTS`]: a request of several
//!   different statements compared statement by statement (3.2).
//! * [`plugin`]: the root module every plugin exports, the FFI-safe plugin object, and
//!   the plain Rust [`Plugin`] trait plugin authors implement (see [`export_plugin!`]).
//!
//! # Growing the ABI
//!
//! abi_stable checks a plugin at load time in two steps: the version (the major only)
//! and the layout of every type that crosses the boundary. The root module
//! ([`PluginMod`]) and the plugin object's vtable are prefix types: a later minor version
//! appends methods after `last_prefix_field`, each with a default. A plugin built against
//! a later minor version loads; one whose vtable lacks a method the host has is refused
//! by the layout check. Snapshots, criteria, reports and verdicts end with an
//! [`Extensions`] list, where a minor version adds fields by name ([`extension`]). Codes
//! such as [`Outcome`] and [`ErrorCategory`] are open sets (a `u8` newtype with named
//! constants): a plugin must treat a code it does not know as "other". Any other change
//! of layout needs a major version, and abi_stable then refuses old plugins at load time,
//! naming both versions.

// `#[sabi_trait]` expands to impls that trip this lint (see dependencies guide).
#![allow(non_local_definitions)]

pub mod coverage;
pub mod errors;
pub mod event;
pub mod extension;
pub mod metrics;
pub mod plugin;
pub mod readiness;
pub mod scrape;
pub mod stats;

pub use coverage::Coverage;
pub use errors::{ClassErrors, ErrorClass, WorstFingerprint};
pub use event::{
    Comparison, Differences, DropReason, ErrorCategory, EventBatch, Exclusion, MirrorEvent,
    Outcome, QueryText, Verdict,
};
pub use extension::{Extension, ExtensionValue, Extensions};
pub use metrics::{MetricKind, MetricPoint};
pub use plugin::{
    CallError, CallErrorKind, Capabilities, FfiPlugin, FfiPlugin_TO, Plugin, PluginBox, PluginMod,
    PluginModRef,
};
pub use readiness::{
    read_confidences, write_confidences, CriterionConfidence, DatabaseReport, ReadinessCriteria,
    ReadinessReport, Reason,
};
pub use scrape::{ReadinessVerdict, RecentLatency, ScrapeAnswer, ScrapeRequest, Verdicts};
pub use stats::{
    Counts, DatabaseStats, ErrorCounts, FingerprintStats, LatencyBucket, LatencySummary,
    StatsSnapshot,
};

/// Re-exported so plugin crates and the host use the exact same `abi_stable`.
pub use abi_stable;

/// The version of this interface crate, as checked by abi_stable when a plugin loads.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
