//! Plugins: where mirror results are counted and readiness is judged.
//!
//! pgdog hard-codes neither; both live in shared libraries built against
//! `pgdog-plugin-api` (a stable ABI), loaded at start-up from `[[plugins]]` entries, or,
//! when there are none, the bundled `mirror-stats` plugin beside the `pgdog` binary.
//!
//! ```text
//! mirror worker / client session --EventSink::send (bounded, never waits)-->
//!     pgdog-plugin-events thread --EventBatch--> every plugin with the `events` capability
//! admin (SHOW MIRROR READINESS) --PluginHost::assess--> stats plugin snapshot
//!     --> readiness plugin assess --> ReadinessReport::to_text_rows
//! metrics (scrape, OTLP push) --PluginHost::scrape / metric_points--> plugins
//! ```
//!
//! Every async call (admin, metrics) runs the plugin on tokio's blocking pool and waits
//! at most [`CALL_TIME_LIMIT`]; a plugin that overruns answers "not answering" to every
//! later call until it returns (see `instance.rs`). The event thread's `consume` calls
//! are the only ones made elsewhere, on that thread.
//!
//! Roles (`roles.rs`): the **stats** plugin is the first loaded plugin that produces
//! snapshots (if the configured plugins include none, the bundled one is loaded as well);
//! the **readiness** plugins are `[general] readiness_plugins` (or `readiness_plugin`),
//! by default the stats plugin: the first gives the verdict of record, the others judge
//! the same snapshot as shadow policies.
//!
//! Failure policy: anything wrong at load time is a [`PluginError`] naming the plugin,
//! the path and the cause, and pgdog refuses to start. At run time a plugin that panics
//! is disabled (logged once) and pgdog keeps proxying; its calls then return
//! [`PluginError::Disabled`] until `RELOAD` re-creates it with fresh state
//! ([`PluginHost::revive_failed`]).

mod error;
pub mod event;
mod instance;
mod load;
mod roles;
pub mod sink;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use error::PluginError;
pub use event::{DropReason, ErrorCategory, MirrorEvent, Outcome, QueryRef, StatementComparison};
pub use load::{BUNDLED_STATS_FILE, BUNDLED_STATS_NAME};
pub use pgdog_plugin_api::{
    Capabilities, Counts, DatabaseReport, DatabaseStats, FingerprintStats, MetricKind, MetricPoint,
    ReadinessCriteria, ReadinessReport, ReadinessVerdict, Reason, RecentLatency, ScrapeAnswer,
    StatsSnapshot, Verdicts, API_VERSION,
};
pub use roles::{Judgement, Shadow};
pub use sink::EventSink;

use instance::LoadedPlugin;
use pgdog_plugin_api::abi_stable::std_types::{RString, Tuple2};
use sink::Command;
use tokio::sync::oneshot;

/// How long an async caller (admin console, metrics, OTLP push) waits for a plugin
/// call, or for the calls one request makes, before answering "not answering".
pub const CALL_TIME_LIMIT: Duration = Duration::from_secs(2);

/// How long a read waits for queued events to reach the plugins.
pub const FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// How long shutdown waits for the event thread to deliver what is queued.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn deadline() -> Instant {
    Instant::now() + CALL_TIME_LIMIT
}

/// One `[[plugins]]` entry, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub path: PathBuf,
    /// Handed to the plugin's constructor as TOML text.
    pub config: Option<toml::Table>,
}

impl From<&crate::config::PluginConfig> for PluginSpec {
    fn from(c: &crate::config::PluginConfig) -> Self {
        Self {
            name: c.name.clone(),
            path: c.path.clone(),
            config: c.config.clone(),
        }
    }
}

/// Where to look for plugins, and which one judges readiness.
///
/// A `[[plugins]]` path given relative is looked for in `plugin_dir`, the config file's
/// directory, beside the binary, then in `../lib/pgdog/` from the binary's directory; the
/// bundled stats plugin in the same places but the config file's directory.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `[general] plugin_dir`: looked in first.
    pub plugin_dir: Option<PathBuf>,
    /// Directory of `pgdog.toml`: relative plugin paths are tried here next.
    pub config_dir: Option<PathBuf>,
    /// Directory of the `pgdog` binary (relative paths second, and the bundled plugin).
    /// `None`: the directory of `std::env::current_exe()`.
    pub binary_dir: Option<PathBuf>,
    /// `[general] readiness_plugins` (or `readiness_plugin`): the verdict of record
    /// first, then shadow policies. Empty: the stats plugin.
    pub readiness_plugins: Vec<String>,
    /// `[general] mirror_stats_window_secs`, handed to the bundled stats plugin as its
    /// `window_secs`. `None`: the plugin's default. (A `[[plugins]]` entry is configured
    /// by its own table only.)
    pub stats_window_secs: Option<u64>,
}

impl LoadOptions {
    pub fn new(config_dir: &Path) -> Self {
        Self {
            config_dir: Some(config_dir.to_path_buf()),
            ..Self::default()
        }
    }
}

/// Health of a plugin, for `SHOW PLUGINS`.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginStatus {
    Ok,
    /// Disabled after a panic (until `RELOAD` re-creates it).
    Failed(String),
    /// A call has overrun its time limit and not returned yet.
    NotAnswering(String),
}

/// A row of `SHOW PLUGINS`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// Name in `pgdog.toml` (`mirror-stats` for the bundled plugin).
    pub name: String,
    pub path: PathBuf,
    /// Name the plugin gives itself.
    pub plugin_name: String,
    pub version: String,
    /// What it can do: `events`, `stats`, `readiness`, `metrics`.
    pub capabilities: Vec<&'static str>,
    /// What this host uses it for: `stats`, `readiness` (may be empty).
    pub roles: Vec<&'static str>,
    pub status: PluginStatus,
    /// Event batches the plugin rejected with an error (not panics).
    pub consume_errors: u64,
}

/// The loaded plugins and the event thread feeding them.
pub struct PluginHost {
    plugins: Vec<Arc<LoadedPlugin>>,
    stats: Option<usize>,
    /// The readiness policies: the verdict of record first, then shadows.
    readiness: Vec<usize>,
    sink: EventSink,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field(
                "plugins",
                &self.plugins.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Loads the `[[plugins]]` (or the bundled stats plugin when there are none) and
    /// starts the event thread. Needs no async runtime.
    pub fn load(specs: &[PluginSpec], options: &LoadOptions) -> Result<Self, PluginError> {
        let binary_dir = options.binary_dir.clone().or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
        });
        let bundled_dirs = load::search_dirs(options.plugin_dir.as_deref(), binary_dir.as_deref());
        let mut dirs = bundled_dirs.clone();
        if let Some(config_dir) = &options.config_dir {
            let at = usize::from(options.plugin_dir.is_some());
            dirs.insert(at, config_dir.clone());
        }

        let mut plugins = Vec::with_capacity(specs.len() + 1);
        for spec in specs {
            let path = load::resolve(&spec.name, &spec.path, &dirs)?;
            let config = match &spec.config {
                Some(table) => toml::to_string(table).map_err(|e| PluginError::Constructor {
                    name: spec.name.clone(),
                    path: path.clone(),
                    message: format!("cannot serialise config table: {e}"),
                })?,
                None => String::new(),
            };
            let plugin = load::load(&spec.name, &path, &config)?;
            tracing::info!(
                plugin = %spec.name,
                path = %path.display(),
                "loaded plugin {} {} ({})",
                plugin.plugin_name,
                plugin.version,
                plugin.capabilities.names().join(", ")
            );
            plugins.push(Arc::new(plugin));
        }

        let provides_stats =
            |p: &Arc<LoadedPlugin>| p.capabilities.contains(Capabilities::SNAPSHOT);
        if !plugins.iter().any(provides_stats) {
            // No [[plugins]] at all (the spec's configs), or only policies: the bundled
            // stats plugin does the counting.
            let path = load::resolve(
                BUNDLED_STATS_NAME,
                Path::new(BUNDLED_STATS_FILE),
                &bundled_dirs,
            )
            .map_err(|e| match e {
                PluginError::NotFound { tried, .. } => PluginError::BundledNotFound { tried },
                other => other,
            })?;
            let config = options
                .stats_window_secs
                .map(|secs| format!("window_secs = {secs}\n"))
                .unwrap_or_default();
            plugins.push(Arc::new(load::load(BUNDLED_STATS_NAME, &path, &config)?));
        }
        let stats = plugins.iter().position(provides_stats);

        let readiness = roles::readiness(&plugins, stats, &options.readiness_plugins)?;

        let (sink, thread) = sink::start(plugins.clone()).map_err(|e| PluginError::Open {
            name: "(event thread)".into(),
            path: PathBuf::new(),
            cause: e.to_string(),
        })?;
        Ok(Self {
            plugins,
            stats,
            readiness,
            sink,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A handle for the mirror worker and client sessions to report events.
    pub fn events(&self) -> EventSink {
        self.sink.clone()
    }

    /// Events dropped because the plugins did not keep up (`pgdog_plugin_events_dropped_total`).
    pub fn dropped_events(&self) -> u64 {
        self.sink.dropped()
    }

    /// Waits until every event sent before this call has reached the plugins, for at most
    /// [`FLUSH_TIMEOUT`], and not at all while an event-consuming plugin is not answering
    /// (the event thread would be waiting on it). Call it before reading snapshots,
    /// readiness or metrics.
    pub async fn flush(&self) {
        let consumers = self
            .plugins
            .iter()
            .filter(|p| p.capabilities.contains(Capabilities::EVENTS));
        if let Some(p) = consumers.clone().find(|p| p.stalled().is_some()) {
            tracing::debug!(plugin = %p.name, "not waiting for events: the plugin is not answering");
            return;
        }
        if tokio::time::timeout(FLUSH_TIMEOUT, self.sink.flush())
            .await
            .is_err()
        {
            tracing::debug!("plugin event flush took over {FLUSH_TIMEOUT:?}; reading anyway");
        }
    }

    /// The stats plugin's snapshot.
    pub async fn snapshot(&self) -> Result<StatsSnapshot, PluginError> {
        self.snapshot_by(deadline()).await
    }

    async fn snapshot_by(&self, deadline: Instant) -> Result<StatsSnapshot, PluginError> {
        let stats = self
            .stats
            .ok_or(PluginError::NoProvider { what: "statistics" })?;
        self.plugins[stats]
            .call_off_runtime("snapshot", deadline, |p| p.snapshot())
            .await
    }

    /// The index of the plugin whose verdict is of record.
    fn record(&self) -> Option<usize> {
        self.readiness.first().copied()
    }

    /// The readiness plugin's verdict on the stats plugin's snapshot.
    pub async fn assess(
        &self,
        criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, PluginError> {
        let deadline = deadline();
        self.record()
            .ok_or(PluginError::NoProvider { what: "readiness" })?;
        let snapshot = Arc::new(self.snapshot_by(deadline).await?);
        self.assess_by(snapshot, criteria, deadline).await
    }

    /// The verdict of record and every shadow policy's verdict, on one snapshot. A shadow
    /// that fails or does not answer is reported as such; it never fails the answer.
    pub async fn assess_all(&self, criteria: &ReadinessCriteria) -> Result<Judgement, PluginError> {
        self.assess_all_annotated(criteria, |_| {}).await
    }

    /// As [`PluginHost::assess_all`], with `annotate` adding what pgdog measured itself
    /// (the replication gates' fields) to the stats plugin's snapshot before any policy
    /// reads it.
    pub async fn assess_all_annotated(
        &self,
        criteria: &ReadinessCriteria,
        annotate: impl FnOnce(&mut StatsSnapshot),
    ) -> Result<Judgement, PluginError> {
        let deadline = deadline();
        let judge = self
            .record()
            .ok_or(PluginError::NoProvider { what: "readiness" })?;
        let mut snapshot = self.snapshot_by(deadline).await?;
        annotate(&mut snapshot);
        let snapshot = Arc::new(snapshot);
        let record = self
            .assess_with(judge, snapshot.clone(), criteria, deadline)
            .await?;
        let mut shadows = Vec::with_capacity(self.readiness.len().saturating_sub(1));
        for &i in &self.readiness[1..] {
            shadows.push(Shadow {
                name: self.plugins[i].name.clone(),
                report: self
                    .assess_with(i, snapshot.clone(), criteria, deadline)
                    .await,
            });
        }
        Ok(Judgement { record, shadows })
    }

    /// The readiness plugin's verdict on a snapshot already taken.
    pub async fn assess_snapshot(
        &self,
        snapshot: Arc<StatsSnapshot>,
        criteria: &ReadinessCriteria,
    ) -> Result<ReadinessReport, PluginError> {
        self.assess_by(snapshot, criteria, deadline()).await
    }

    async fn assess_by(
        &self,
        snapshot: Arc<StatsSnapshot>,
        criteria: &ReadinessCriteria,
        deadline: Instant,
    ) -> Result<ReadinessReport, PluginError> {
        let judge = self
            .record()
            .ok_or(PluginError::NoProvider { what: "readiness" })?;
        self.assess_with(judge, snapshot, criteria, deadline).await
    }

    async fn assess_with(
        &self,
        judge: usize,
        snapshot: Arc<StatsSnapshot>,
        criteria: &ReadinessCriteria,
        deadline: Instant,
    ) -> Result<ReadinessReport, PluginError> {
        let criteria = criteria.clone();
        self.plugins[judge]
            .call_off_runtime("assess", deadline, move |p| p.assess(&snapshot, &criteria))
            .await
    }

    /// What a metrics collection needs from the stats plugin, in one call (plugin API
    /// 2.1): the snapshot with latency distributions at `bounds_us` only, and, when the
    /// stats plugin is also the readiness plugin, its verdicts under `criteria` without
    /// the report's texts. `Ok(None)` when that cannot be had this way: a separate
    /// readiness plugin judges a whole snapshot, or the stats plugin answers the call as
    /// unsupported; then use [`PluginHost::snapshot`] and [`PluginHost::assess_snapshot`].
    pub async fn scrape(
        &self,
        bounds_us: &[u64],
        criteria: &ReadinessCriteria,
    ) -> Result<Option<ScrapeAnswer>, PluginError> {
        let stats = self
            .stats
            .ok_or(PluginError::NoProvider { what: "statistics" })?;
        if self.record().is_some_and(|judge| judge != stats) {
            return Ok(None);
        }
        let request = pgdog_plugin_api::ScrapeRequest {
            latency_bounds_us: bounds_us.to_vec().into(),
            criteria: self.record().map(|_| criteria.clone()).into(),
            extensions: Default::default(),
        };
        let call =
            self.plugins[stats].call_off_runtime("scrape", deadline(), move |p| p.scrape(&request));
        match call.await {
            Ok(answer) => Ok(Some(answer)),
            Err(PluginError::Unsupported { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Metric points of every plugin that contributes some. A failing plugin's points
    /// are left out (and its error logged), so one bad plugin cannot blank the endpoint.
    pub async fn metric_points(&self) -> Vec<MetricPoint> {
        let deadline = deadline();
        let mut points = Vec::new();
        for p in &self.plugins {
            let contributes = p.capabilities.contains(Capabilities::METRICS);
            if !contributes || p.failure().is_some() {
                continue;
            }
            match p
                .call_off_runtime("metric_points", deadline, |i| i.metric_points())
                .await
            {
                Ok(v) => points.extend(v),
                Err(PluginError::Panicked { .. }) => {} // logged once by `call`
                Err(e) => tracing::warn!("{e}"),
            }
        }
        points
    }

    /// The metric families the plugins declare: `(name, help, kind)` of the first point
    /// of each name, from one round of `metric_points` (a family a plugin only starts
    /// producing later is not exported: plugins emit their families from the start).
    pub async fn metric_families(&self) -> Vec<(String, String, MetricKind)> {
        let mut families: Vec<(String, String, MetricKind)> = Vec::new();
        for p in self.metric_points().await {
            if !families.iter().any(|(name, _, _)| name == p.name.as_str()) {
                families.push((p.name.to_string(), p.help.to_string(), p.kind));
            }
        }
        families
    }

    /// Forgets everything observed so far (`RESET MIRROR STATS`): events sent before
    /// the call are delivered first, then every plugin resets. Returns the errors of
    /// plugins that could not reset.
    pub async fn reset(&self) -> Result<(), Vec<PluginError>> {
        let (ack, done) = oneshot::channel();
        let sent = tokio::time::timeout(CALL_TIME_LIMIT, self.sink.command(Command::Reset(ack)));
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(vec![e]),
            Err(_) => return Err(vec![self.event_thread_busy("reset")]),
        }
        match tokio::time::timeout(CALL_TIME_LIMIT, done).await {
            Ok(Ok(errors)) if errors.is_empty() => Ok(()),
            Ok(Ok(errors)) => Err(errors),
            Ok(Err(_)) => Err(vec![PluginError::EventThreadStopped]),
            Err(_) => Err(vec![self.event_thread_busy("reset")]),
        }
    }

    fn event_thread_busy(&self, operation: &'static str) -> PluginError {
        PluginError::NotAnswering {
            name: "(event thread)".into(),
            operation,
            detail: "a plugin is holding up event delivery".into(),
        }
    }

    /// [`PluginHost::revive_failed`] on the blocking pool, for `RELOAD`: the constructors
    /// are plugin code, which never runs on a runtime worker. Returns the names of the
    /// failed plugins being re-created; the outcome is logged (and `SHOW PLUGINS` shows it).
    pub fn revive_failed_in_background(&self) -> Vec<String> {
        let failed: Vec<Arc<LoadedPlugin>> = self
            .plugins
            .iter()
            .filter(|p| p.failure().is_some())
            .cloned()
            .collect();
        let names = failed.iter().map(|p| p.name.clone()).collect();
        for plugin in failed {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = plugin.revive() {
                    tracing::error!("{e}");
                }
            });
        }
        names
    }

    /// Re-creates every plugin disabled by a panic, with fresh state, from the same
    /// library and config. Blocking (plugin constructors run here). Returns the names of
    /// the plugins re-created, and the errors of those whose constructor refused.
    pub fn revive_failed(&self) -> (Vec<String>, Vec<PluginError>) {
        let (mut revived, mut errors) = (Vec::new(), Vec::new());
        for p in &self.plugins {
            match p.revive() {
                Ok(true) => revived.push(p.name.clone()),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        (revived, errors)
    }

    /// `SHOW PLUGINS`.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.plugins
            .iter()
            .enumerate()
            .map(|(i, p)| PluginInfo {
                name: p.name.clone(),
                path: p.path.clone(),
                plugin_name: p.plugin_name.clone(),
                version: p.version.clone(),
                capabilities: p.capabilities.names(),
                roles: [
                    (self.stats == Some(i), "stats"),
                    (self.record() == Some(i), "readiness"),
                    (
                        self.readiness.iter().skip(1).any(|&r| r == i),
                        "shadow readiness",
                    ),
                ]
                .into_iter()
                .filter(|(has, _)| *has)
                .map(|(_, role)| role)
                .collect(),
                status: match (p.failure(), p.stalled()) {
                    (Some(reason), _) => PluginStatus::Failed(reason),
                    (None, Some((running, operation))) => PluginStatus::NotAnswering(format!(
                        "{operation} running for {:.1} s",
                        running.as_secs_f64()
                    )),
                    (None, None) => PluginStatus::Ok,
                },
                consume_errors: p.consume_errors(),
            })
            .collect()
    }

    /// Delivers pending events and stops the event thread (SIGTERM drain). Later
    /// `send`s are discarded.
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        let close = async {
            if self.sink.command(Command::Close(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, close).await.is_err() {
            tracing::warn!("plugin events not delivered within {SHUTDOWN_TIMEOUT:?} of shutdown");
            return;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // The thread has acknowledged and is returning: joining is immediate.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        // Stop the thread once queued events are delivered; do not wait for it here.
        let (ack, _) = oneshot::channel();
        let _ = self.sink.try_command(Command::Close(ack));
    }
}

impl PluginHost {
    /// [`PluginHost::load`] with the `[[plugins]]` entries and `readiness_plugin(s)` of a
    /// parsed config; `config_dir` is the directory of `pgdog.toml`.
    pub fn load_from_config(
        config: &crate::config::Config,
        config_dir: &Path,
    ) -> Result<Self, PluginError> {
        let specs: Vec<PluginSpec> = config.plugins.iter().map(PluginSpec::from).collect();
        let options = LoadOptions {
            plugin_dir: config.general.plugin_dir.clone(),
            readiness_plugins: config.general.readiness_policies(),
            stats_window_secs: Some(config.general.mirror_stats_window_secs),
            ..LoadOptions::new(config_dir)
        };
        Self::load(&specs, &options)
    }
}

/// The readiness criteria of `[general]` (`mirror_min_confidence` and
/// `mirror_max_unseen` travel as the criteria's 3.1 extensions).
pub fn criteria_of(general: &crate::config::General) -> ReadinessCriteria {
    let mut criteria = ReadinessCriteria {
        max_mismatch_rate: general.mirror_max_mismatch_rate,
        max_drop_rate: general.mirror_max_drop_rate,
        max_latency_ratio: general.mirror_max_latency_ratio,
        ..criteria(
            general.mirror_max_error_rate,
            general.mirror_max_latency_ms,
            general.mirror_min_requests,
            general.mirror_min_runtime_hours,
        )
    };
    // Judged only for databases whose snapshot carries replication fields (mirror_sync).
    criteria.extensions.set(
        "max_replication_lag_ms",
        pgdog_plugin_api::ExtensionValue::Number(general.mirror_max_replication_lag_ms as f64),
    );
    criteria.with_confidence_and_coverage(general.mirror_min_confidence, general.mirror_max_unseen)
}

/// Builds criteria from the `[general]` readiness settings.
pub fn criteria(
    max_error_rate: f64,
    max_latency_ms: u64,
    min_requests: u64,
    min_runtime_hours: f64,
) -> ReadinessCriteria {
    ReadinessCriteria {
        max_error_rate,
        max_latency_ms: max_latency_ms as f64,
        min_requests,
        min_runtime_secs: min_runtime_hours * 3600.0,
        ..ReadinessCriteria::default()
    }
}

/// Adds a free-form option to criteria (for policies that read more than the basics).
pub fn with_option(mut criteria: ReadinessCriteria, key: &str, value: &str) -> ReadinessCriteria {
    criteria
        .options
        .push(Tuple2(RString::from(key), RString::from(value)));
    criteria
}
