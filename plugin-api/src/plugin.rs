//! The plugin boundary: the root module every plugin library exports, the FFI-safe
//! plugin object the host holds, and the plain Rust [`Plugin`] trait authors implement.
//!
//! Plugin authors never touch the FFI types directly:
//!
//! ```ignore
//! struct MyPolicy { /* ... */ }
//! impl pgdog_plugin_api::Plugin for MyPolicy { /* capabilities(), assess(), ... */ }
//! fn new(config: &str) -> Result<MyPolicy, String> { /* parse TOML config */ }
//! pgdog_plugin_api::export_plugin!(name: "my-policy", constructor: new);
//! ```
//!
//! [`export_plugin!`] wraps every call in `catch_unwind`: abi_stable aborts the whole
//! process when a panic crosses the boundary, so a panic is turned into a
//! [`CallErrorKind::PANICKED`] error instead, and the host disables that plugin.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::{
    scrape::bounded, EventBatch, MetricPoint, ReadinessCriteria, ReadinessReport, ScrapeAnswer,
    ScrapeRequest, StatsSnapshot, Verdicts,
};

/// What a plugin provides. Queried once, right after construction.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Receives mirror events ([`Plugin::consume`]).
    pub const EVENTS: Self = Self(1);
    /// Produces statistics snapshots ([`Plugin::snapshot`]).
    pub const SNAPSHOT: Self = Self(1 << 1);
    /// Judges readiness ([`Plugin::assess`]).
    pub const READINESS: Self = Self(1 << 2);
    /// Contributes metric points ([`Plugin::metric_points`]).
    pub const METRICS: Self = Self(1 << 3);
    /// Since 3.2.0: receives each statement of a request that ran several different ones
    /// compared on its own ([`crate::Outcome::STATEMENT`] events). Without it, such a
    /// request comes as one event compared as a whole, under its first data statement.
    pub const STATEMENTS: Self = Self(1 << 4);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Role names, for `SHOW PLUGINS`.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::EVENTS, "events"),
            (Self::SNAPSHOT, "stats"),
            (Self::READINESS, "readiness"),
            (Self::METRICS, "metrics"),
            (Self::STATEMENTS, "statements"),
        ]
        .into_iter()
        .filter(|(c, _)| self.contains(*c))
        .map(|(_, n)| n)
        .collect()
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// Why a plugin call failed. An open set.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallErrorKind(pub u8);

impl CallErrorKind {
    /// The plugin returned an error.
    pub const FAILED: Self = Self(0);
    /// The plugin panicked; its state is suspect and the host stops calling it.
    pub const PANICKED: Self = Self(1);
    /// The plugin does not provide this operation.
    pub const UNSUPPORTED: Self = Self(2);
}

/// An error crossing the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct CallError {
    pub kind: CallErrorKind,
    pub message: RString,
}

impl CallError {
    pub fn failed(message: impl Into<RString>) -> Self {
        Self {
            kind: CallErrorKind::FAILED,
            message: message.into(),
        }
    }

    pub fn unsupported(operation: &str) -> Self {
        Self {
            kind: CallErrorKind::UNSUPPORTED,
            message: format!("plugin does not support {operation}").into(),
        }
    }

    fn panicked(operation: &str, payload: Box<dyn std::any::Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        Self {
            kind: CallErrorKind::PANICKED,
            message: format!("panicked in {operation}: {what}").into(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

macro_rules! ffi_plugin {
    ($($later_minors:tt)*) => {
        /// The FFI-safe plugin object. Hosts call it; authors implement [`Plugin`] instead.
        ///
        /// Its vtable is a prefix type: `#[sabi(last_prefix_field)]` stays on `reset` for
        /// all of 3.x (as it did in 2.x); methods added in later minor versions follow it,
        /// each with a default body. abi_stable's layout check accepts a plugin
        /// whose vtable has the host's methods and more (built against the same or a later
        /// minor version) and refuses one that lacks some (an earlier minor version).
        #[sabi_trait]
        pub trait FfiPlugin: Send {
            fn capabilities(&self) -> Capabilities;

            fn consume(&mut self, batch: &EventBatch<'_>) -> RResult<(), CallError>;

            fn snapshot(&mut self) -> RResult<StatsSnapshot, CallError>;

            fn assess(
                &mut self,
                snapshot: &StatsSnapshot,
                criteria: &ReadinessCriteria,
            ) -> RResult<ReadinessReport, CallError>;

            fn metric_points(&mut self) -> RResult<RVec<MetricPoint>, CallError>;

            #[sabi(last_prefix_field)]
            fn reset(&mut self) -> RResult<(), CallError>;

            $($later_minors)*
        }
    };
}

#[cfg(not(any(feature = "__fixture_older_minor", feature = "__fixture_newer_minor")))]
ffi_plugin! {
    /// Since 2.1.0: the statistics and verdicts a metrics scrape needs (see
    /// [`crate::scrape`]). A plugin without the statistics role (or, when asked for
    /// verdicts, the readiness role) answers [`CallErrorKind::UNSUPPORTED`].
    fn scrape(&mut self, _request: &ScrapeRequest) -> RResult<ScrapeAnswer, CallError> {
        RResult::RErr(CallError::unsupported("scrape"))
    }
}

// Test-only: the plugin object without `scrape`, as a plugin built against an earlier
// minor version, before a method was appended, has it.
#[cfg(feature = "__fixture_older_minor")]
ffi_plugin! {}

// Test-only: the plugin object with a method from a later minor version.
#[cfg(feature = "__fixture_newer_minor")]
ffi_plugin! {
    fn scrape(&mut self, _request: &ScrapeRequest) -> RResult<ScrapeAnswer, CallError> {
        RResult::RErr(CallError::unsupported("scrape"))
    }

    fn from_a_later_minor(&self) -> u32 {
        0
    }
}

/// An owned plugin object.
pub type PluginBox = FfiPlugin_TO<'static, RBox<()>>;

/// The root module each plugin library exports (via [`export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's own name, e.g. `mirror-stats`.
    pub name: RStr<'static>,
    /// The plugin crate's version.
    pub version: RStr<'static>,
    /// Builds a plugin from its configuration: the `[[plugins]] config` table as TOML
    /// text (empty when absent).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(config: RStr<'_>) -> RResult<PluginBox, CallError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pgdog_plugin";
    const NAME: &'static str = "pgdog_plugin";
    #[cfg(not(any(
        feature = "__fixture_bad_version",
        feature = "__fixture_claims_other_minor",
        feature = "__fixture_newer_minor"
    )))]
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
    /// An old, incompatible API version, for the refusal fixture.
    #[cfg(feature = "__fixture_bad_version")]
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.9.0");
    /// Another minor version of this major, claimed with this layout (a fixture).
    #[cfg(feature = "__fixture_claims_other_minor")]
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("3.7.0");
    /// The next minor version, for the fixture that plays a plugin built against it.
    #[cfg(feature = "__fixture_newer_minor")]
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("3.3.0");
}

/// What plugin authors implement. Every operation is optional except
/// [`Plugin::capabilities`]; the defaults answer "unsupported".
///
/// Calls are serialised by the host (hence `&mut self`), come from threads other than
/// the one that built the plugin (hence `Send`), and must be quick: `consume` runs on
/// the host's event thread, the others when an operator or a scrape asks.
pub trait Plugin: Send + 'static {
    /// What this plugin does.
    fn capabilities(&self) -> Capabilities;

    /// A batch of mirror events, in the order they happened.
    fn consume(&mut self, _batch: &EventBatch<'_>) -> Result<(), String> {
        Err("consume is not supported".into())
    }

    /// The current statistics.
    fn snapshot(&mut self) -> Result<StatsSnapshot, String> {
        Err("snapshot is not supported".into())
    }

    /// The verdict for `snapshot` (from the stats plugin) under `criteria`.
    fn assess(
        &mut self,
        _snapshot: &StatsSnapshot,
        _criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, String> {
        Err("assess is not supported".into())
    }

    /// Metric points for the metrics endpoint.
    fn metric_points(&mut self) -> Result<Vec<MetricPoint>, String> {
        Ok(Vec::new())
    }

    /// Forget everything observed so far (`RESET MIRROR STATS`).
    fn reset(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// What a metrics scrape needs (stats plugins only; see [`crate::scrape`]). The
    /// default takes a whole [`Plugin::snapshot`], cuts its distributions down to the
    /// bounds, and derives the verdicts from a whole [`Plugin::assess`]; override it
    /// when those are costly (the bundled plugin does).
    fn scrape(&mut self, request: &ScrapeRequest) -> Result<ScrapeAnswer, String> {
        let snapshot = self.snapshot()?;
        let verdicts = match &request.criteria {
            ROption::RSome(criteria) => {
                ROption::RSome(Verdicts::of(&self.assess(&snapshot, criteria)?))
            }
            ROption::RNone => ROption::RNone,
        };
        Ok(ScrapeAnswer {
            snapshot: bounded(snapshot, &request.latency_bounds_us),
            verdicts,
            recent: ROption::RNone,
            extensions: Default::default(),
        })
    }
}

/// Adapts a [`Plugin`] to [`FfiPlugin`], catching panics on the plugin's side.
struct Guarded<P> {
    inner: P,
    capabilities: Capabilities,
}

fn guard<T>(
    operation: &str,
    supported: bool,
    f: impl FnOnce() -> Result<T, String>,
) -> RResult<T, CallError> {
    if !supported {
        return RResult::RErr(CallError::unsupported(operation));
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(msg)) => RResult::RErr(CallError::failed(msg)),
        Err(payload) => RResult::RErr(CallError::panicked(operation, payload)),
    }
}

impl<P: Plugin> FfiPlugin for Guarded<P> {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn consume(&mut self, batch: &EventBatch<'_>) -> RResult<(), CallError> {
        let ok = self.capabilities.contains(Capabilities::EVENTS);
        guard("consume", ok, || self.inner.consume(batch))
    }

    fn snapshot(&mut self) -> RResult<StatsSnapshot, CallError> {
        let ok = self.capabilities.contains(Capabilities::SNAPSHOT);
        guard("snapshot", ok, || self.inner.snapshot())
    }

    fn assess(
        &mut self,
        snapshot: &StatsSnapshot,
        criteria: &ReadinessCriteria,
    ) -> RResult<ReadinessReport, CallError> {
        let ok = self.capabilities.contains(Capabilities::READINESS);
        guard("assess", ok, || self.inner.assess(snapshot, criteria))
    }

    fn metric_points(&mut self) -> RResult<RVec<MetricPoint>, CallError> {
        let ok = self.capabilities.contains(Capabilities::METRICS);
        guard("metric_points", ok, || {
            self.inner.metric_points().map(RVec::from)
        })
    }

    fn reset(&mut self) -> RResult<(), CallError> {
        guard("reset", true, || self.inner.reset())
    }

    #[cfg(not(feature = "__fixture_older_minor"))]
    fn scrape(&mut self, request: &ScrapeRequest) -> RResult<ScrapeAnswer, CallError> {
        let judge = request.criteria.is_some();
        let ok = self.capabilities.contains(Capabilities::SNAPSHOT)
            && (!judge || self.capabilities.contains(Capabilities::READINESS));
        guard("scrape", ok, || self.inner.scrape(request))
    }
}

/// Runs a plugin constructor behind `catch_unwind` and boxes the result.
/// Used by [`export_plugin!`]; not for direct use.
#[doc(hidden)]
pub fn construct<P: Plugin>(
    config: RStr<'_>,
    constructor: fn(&str) -> Result<P, String>,
) -> RResult<PluginBox, CallError> {
    guard("constructor", true, || {
        let inner = constructor(config.as_str())?;
        let capabilities = inner.capabilities();
        Ok(FfiPlugin_TO::from_value(
            Guarded {
                inner,
                capabilities,
            },
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

/// Exports a plugin's root module. The crate must be a `cdylib` and depend on
/// `abi_stable` directly (the export attribute refers to `::abi_stable`).
///
/// ```ignore
/// pgdog_plugin_api::export_plugin!(name: "my-policy", constructor: MyPolicy::new);
/// ```
/// where `MyPolicy::new: fn(&str) -> Result<MyPolicy, String>` receives the plugin's
/// `config` table as TOML text.
///
/// A plugin built with `panic = "abort"` does not compile: the API turns a panic into an
/// error with `catch_unwind`, which needs unwinding, and with `abort` the first panic
/// would end the whole proxy with nothing logged.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, constructor: $ctor:path $(,)?) => {
        #[cfg(panic = "abort")]
        compile_error!(
            "pgdog plugins must be built with panic = \"unwind\" (the default): pgdog turns a \
             plugin's panic into an error with catch_unwind; with panic = \"abort\" the first \
             panic would end the whole proxy. Remove `panic = \"abort\"` from the profile."
        );

        /// The root module pgdog loads (generated by `export_plugin!`).
        #[::abi_stable::export_root_module]
        pub fn pgdog_plugin_root_module() -> $crate::PluginModRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PluginMod {
                name: ::abi_stable::std_types::RStr::from_str($name),
                version: ::abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_VERSION")),
                new: __pgdog_plugin_new,
            }
            .leak_into_prefix()
        }

        extern "C" fn __pgdog_plugin_new(
            config: ::abi_stable::std_types::RStr<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::PluginBox, $crate::CallError> {
            $crate::plugin::construct(config, $ctor)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Boom;
    impl Plugin for Boom {
        fn capabilities(&self) -> Capabilities {
            Capabilities::EVENTS | Capabilities::SNAPSHOT
        }
        fn snapshot(&mut self) -> Result<StatsSnapshot, String> {
            panic!("kaboom")
        }
    }

    #[test]
    fn panics_become_errors_and_unsupported_is_reported() {
        let mut plugin = construct(RStr::from_str(""), |_| Ok(Boom)).unwrap();
        let err = plugin.snapshot().unwrap_err();
        assert_eq!(err.kind, CallErrorKind::PANICKED);
        assert!(err.message.contains("kaboom"), "{}", err.message);
        let err = plugin
            .assess(&StatsSnapshot::default(), &ReadinessCriteria::default())
            .unwrap_err();
        assert_eq!(err.kind, CallErrorKind::UNSUPPORTED);
        // consume's default answers an error, reported as such.
        let batch = EventBatch {
            databases: Default::default(),
            events: Default::default(),
            queries: Default::default(),
        };
        assert_eq!(
            plugin.consume(&batch).unwrap_err().kind,
            CallErrorKind::FAILED
        );
    }

    #[test]
    fn constructor_errors_and_panics_are_caught() {
        let err = construct::<Boom>(RStr::from_str("x"), |c| Err(format!("bad config {c}")))
            .err()
            .unwrap();
        assert_eq!(err.kind, CallErrorKind::FAILED);
        assert_eq!(err.message.as_str(), "bad config x");
        let err = construct::<Boom>(RStr::from_str(""), |_| panic!("ctor"))
            .err()
            .unwrap();
        assert_eq!(err.kind, CallErrorKind::PANICKED);
    }
}
