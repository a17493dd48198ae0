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
//! * [`plugin`]: the root module every plugin exports, the FFI-safe plugin object, and
//!   the plain Rust [`Plugin`] trait plugin authors implement (see [`export_plugin!`]).
//!
//! # Growing the ABI
//!
//! The root module ([`PluginMod`]) and the plugin object's vtable are prefix types: later
//! versions append fields/methods after the current `last_prefix_field`, and a plugin
//! built against an older 2.x still loads (2.1.0 added [`FfiPlugin::scrape`]; a 2.0
//! plugin answers it "unsupported" and the host falls back on `snapshot` and `assess`). Codes such as [`Outcome`] and
//! [`ErrorCategory`] are open sets (a `u8` newtype with named constants): a plugin must
//! treat a code it does not know as "other", which lets the host add outcomes (e.g. a
//! result mismatch) without breaking old plugins. A change of layout elsewhere needs a
//! major version bump, and abi_stable then refuses old plugins at load time, naming both
//! versions.

// `#[sabi_trait]` expands to impls that trip this lint (see dependencies guide).
#![allow(non_local_definitions)]

pub mod event;
pub mod metrics;
pub mod plugin;
pub mod readiness;
pub mod scrape;
pub mod stats;

pub use event::{
    Comparison, Differences, DropReason, ErrorCategory, EventBatch, Exclusion, MirrorEvent,
    Outcome, QueryText, Verdict,
};
pub use metrics::{MetricKind, MetricPoint};
pub use plugin::{
    CallError, CallErrorKind, Capabilities, FfiPlugin, FfiPlugin_TO, Plugin, PluginBox, PluginMod,
    PluginModRef,
};
pub use readiness::{DatabaseReport, ReadinessCriteria, ReadinessReport, Reason};
pub use scrape::{ReadinessVerdict, RecentLatency, ScrapeAnswer, ScrapeRequest, Verdicts};
pub use stats::{
    Counts, DatabaseStats, ErrorCounts, FingerprintStats, LatencyBucket, LatencySummary,
    StatsSnapshot,
};

/// Re-exported so plugin crates and the host use the exact same `abi_stable`.
pub use abi_stable;

/// The version of this interface crate, as checked by abi_stable when a plugin loads.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
