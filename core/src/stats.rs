//! The names the user's spec imports (`pgdog::stats::mirror::{MirrorStats, MirrorErrorType}`,
//! `pgdog::stats::mirror_readiness::ReadinessCriteria`), mapped onto the plugin API's types:
//! the statistics live in the stats plugin, and these are the shapes it reports in.

pub mod mirror {
    /// Error categories of mirrored requests (`connection`, `query`, `timeout`, ...).
    pub use crate::plugins::ErrorCategory as MirrorErrorType;
    /// Mirror statistics, per database and overall, as the stats plugin reports them.
    pub use pgdog_plugin_api::StatsSnapshot as MirrorStats;
}

pub mod mirror_readiness {
    /// Criteria a readiness policy judges against (from `[general] mirror_*`).
    pub use pgdog_plugin_api::ReadinessCriteria;
    pub use pgdog_plugin_api::ReadinessReport;
}
