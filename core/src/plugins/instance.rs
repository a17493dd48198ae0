//! One loaded plugin: its identity, its object, and whether it is still trusted.
//!
//! Two ways in:
//! * [`LoadedPlugin::call`], blocking, for the event thread (`consume`) and for the
//!   calls below once they run on a blocking thread;
//! * [`LoadedPlugin::call_off_runtime`], for everything async (admin console, metrics,
//!   OTLP push): the call runs on tokio's blocking pool, never on a runtime worker, and
//!   the caller gives up at a deadline. One such call runs at a time per plugin; a call
//!   that overran its deadline keeps its slot until the plugin returns, and meanwhile
//!   every other call fails at once with [`PluginError::NotAnswering`], so a stalled
//!   plugin costs one blocked thread, never one per request.
//!
//! Calls are serialised by a mutex (the plugin API promises `&mut self`). A panic
//! reported by the plugin's side of the boundary disables the plugin (its state may be
//! half-updated), logged once, until [`LoadedPlugin::revive`] builds a fresh instance
//! (`RELOAD`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pgdog_plugin_api::{
    abi_stable::std_types::{RResult, RStr},
    CallError, CallErrorKind, Capabilities, PluginBox, PluginModRef,
};
use tokio::sync::Semaphore;

use super::PluginError;

pub(crate) struct LoadedPlugin {
    /// The `[[plugins]] name` (or `mirror-stats` for the bundled one).
    pub name: String,
    pub path: PathBuf,
    /// The name the plugin gives itself.
    pub plugin_name: String,
    /// The plugin crate's version.
    pub version: String,
    pub capabilities: Capabilities,
    /// The library's root module and the config text: what [`LoadedPlugin::revive`]
    /// builds a fresh instance from.
    module: PluginModRef,
    config: String,
    instance: Mutex<PluginBox>,
    /// Set when the plugin panics; cleared by a revive.
    failure: Mutex<Option<String>>,
    /// One off-runtime call at a time.
    slot: Arc<Semaphore>,
    /// The off-runtime call in flight, if any, and whether it overran its deadline.
    calls: Arc<Mutex<Calls>>,
    /// Non-panic `consume` errors: logged once, then only counted.
    consume_errors: AtomicU64,
    consume_error_logged: AtomicBool,
}

impl LoadedPlugin {
    pub fn new(
        name: String,
        path: PathBuf,
        module: PluginModRef,
        config: String,
        instance: PluginBox,
    ) -> Self {
        let capabilities = instance.capabilities();
        Self {
            name,
            path,
            plugin_name: module.name().to_string(),
            version: module.version().to_string(),
            capabilities,
            module,
            config,
            instance: Mutex::new(instance),
            failure: Mutex::new(None),
            slot: Arc::new(Semaphore::new(1)),
            calls: Arc::default(),
            consume_errors: AtomicU64::new(0),
            consume_error_logged: AtomicBool::new(false),
        }
    }

    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// `Some((for how long, in which operation))` while an off-runtime call overruns.
    pub fn stalled(&self) -> Option<(Duration, &'static str)> {
        lock(&self.calls)
            .overrun
            .map(|(since, op)| (since.elapsed(), op))
    }

    pub fn consume_errors(&self) -> u64 {
        self.consume_errors.load(Ordering::Relaxed)
    }

    /// Calls into the plugin on this thread, turning its errors into [`PluginError`]s.
    pub fn call<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut PluginBox) -> RResult<T, CallError>,
    ) -> Result<T, PluginError> {
        if let Some(reason) = self.failure() {
            return Err(PluginError::Disabled {
                name: self.name.clone(),
                reason,
            });
        }
        // Host code never panics while holding the lock and plugin panics are caught on
        // the plugin's side, so poisoning cannot carry meaning here.
        let mut instance = lock(&self.instance);
        match f(&mut instance) {
            RResult::ROk(v) => Ok(v),
            RResult::RErr(e) if e.kind == CallErrorKind::PANICKED => {
                let message = e.message.to_string();
                let mut failure = lock(&self.failure);
                if failure.is_none() {
                    *failure = Some(message.clone());
                    tracing::error!(
                        plugin = %self.name,
                        path = %self.path.display(),
                        "plugin panicked in {operation}; disabled until RELOAD or restart: {message}"
                    );
                }
                Err(PluginError::Panicked {
                    name: self.name.clone(),
                    operation,
                    message,
                })
            }
            RResult::RErr(e) if e.kind == CallErrorKind::UNSUPPORTED => {
                Err(PluginError::Unsupported {
                    name: self.name.clone(),
                    operation,
                    message: e.message.to_string(),
                })
            }
            RResult::RErr(e) => Err(PluginError::Call {
                name: self.name.clone(),
                operation,
                message: e.message.to_string(),
            }),
        }
    }

    /// [`LoadedPlugin::call`] on the blocking pool, given up at `deadline`.
    pub async fn call_off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        operation: &'static str,
        deadline: Instant,
        f: impl FnOnce(&mut PluginBox) -> RResult<T, CallError> + Send + 'static,
    ) -> Result<T, PluginError> {
        if let Some(e) = self.not_answering(operation) {
            return Err(e);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let permit = match tokio::time::timeout(wait, self.slot.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(self
                    .not_answering(operation)
                    .unwrap_or(self.late(operation)))
            }
        };
        lock(&self.calls).in_flight = true;
        let plugin = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = plugin.call(operation, f);
            // Back in time or not, the plugin answers again.
            *lock(&plugin.calls) = Calls::default();
            drop(permit);
            result
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(PluginError::Call {
                name: self.name.clone(),
                operation,
                message: join.to_string(),
            }),
            Err(_) => {
                let mut calls = lock(&self.calls);
                if calls.in_flight && calls.overrun.is_none() {
                    calls.overrun = Some((Instant::now(), operation));
                    tracing::warn!(
                        plugin = %self.name,
                        "plugin is not answering {operation}; its calls fail until it returns"
                    );
                }
                Err(self.late(operation))
            }
        }
    }

    /// The error for a call made while another one overruns, if one does.
    fn not_answering(&self, operation: &'static str) -> Option<PluginError> {
        self.stalled()
            .map(|(running, busy_in)| PluginError::NotAnswering {
                name: self.name.clone(),
                operation,
                detail: format!(
                    "its {busy_in} call has been running for {:.1} s",
                    running.as_secs_f64()
                ),
            })
    }

    fn late(&self, operation: &'static str) -> PluginError {
        PluginError::NotAnswering {
            name: self.name.clone(),
            operation,
            detail: "no answer within the time limit".into(),
        }
    }

    /// Replaces a failed instance by a fresh one built from the same library and config
    /// (`RELOAD`). Returns `Ok(false)` when the plugin had not failed. The failed
    /// instance is leaked rather than dropped: its destructor runs plugin code whose
    /// state is suspect, and a panic there would abort the process.
    pub fn revive(&self) -> Result<bool, PluginError> {
        if self.failure().is_none() {
            return Ok(false);
        }
        let fresh = (self.module.new())(RStr::from_str(&self.config))
            .into_result()
            .map_err(|e| PluginError::Constructor {
                name: self.name.clone(),
                path: self.path.clone(),
                message: e.message.to_string(),
            })?;
        let old = std::mem::replace(&mut *lock(&self.instance), fresh);
        std::mem::forget(old);
        *lock(&self.failure) = None;
        tracing::info!(plugin = %self.name, "failed plugin re-created with fresh state");
        Ok(true)
    }

    /// Records a failed `consume` (not a panic): logged the first time only, since it
    /// would otherwise repeat for every batch.
    pub fn note_consume_error(&self, err: &PluginError) {
        self.consume_errors.fetch_add(1, Ordering::Relaxed);
        if !self.consume_error_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(plugin = %self.name, "{err} (further consume errors are only counted)");
        }
    }
}

/// The off-runtime call of a plugin.
#[derive(Default)]
struct Calls {
    in_flight: bool,
    /// Since when, and in which operation, the call in flight has overrun its deadline.
    overrun: Option<(Instant, &'static str)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
