//! One loaded plugin: its identity, its object, and whether it is still trusted.
//!
//! Every call goes through [`LoadedPlugin::call`]: calls are serialised by a mutex (the
//! plugin API promises `&mut self`), and a panic reported by the plugin's side of the
//! boundary disables the plugin for good (its state may be half-updated), logged once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use pgdog_plugin_api::{
    abi_stable::std_types::RResult, CallError, CallErrorKind, Capabilities, PluginBox,
};

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
    instance: Mutex<PluginBox>,
    /// Set once, when the plugin panics.
    failure: OnceLock<String>,
    /// Non-panic `consume` errors: logged once, then only counted.
    consume_errors: AtomicU64,
    consume_error_logged: AtomicBool,
}

impl LoadedPlugin {
    pub fn new(
        name: String,
        path: PathBuf,
        plugin_name: String,
        version: String,
        instance: PluginBox,
    ) -> Self {
        let capabilities = instance.capabilities();
        Self {
            name,
            path,
            plugin_name,
            version,
            capabilities,
            instance: Mutex::new(instance),
            failure: OnceLock::new(),
            consume_errors: AtomicU64::new(0),
            consume_error_logged: AtomicBool::new(false),
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    pub fn consume_errors(&self) -> u64 {
        self.consume_errors.load(Ordering::Relaxed)
    }

    /// Calls into the plugin, turning its errors into [`PluginError`]s.
    pub fn call<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut PluginBox) -> RResult<T, CallError>,
    ) -> Result<T, PluginError> {
        if let Some(reason) = self.failure.get() {
            return Err(PluginError::Disabled {
                name: self.name.clone(),
                reason: reason.clone(),
            });
        }
        // Host code never panics while holding the lock and plugin panics are caught on
        // the plugin's side, so poisoning cannot carry meaning here.
        let mut instance = self.instance.lock().unwrap_or_else(PoisonError::into_inner);
        match f(&mut instance) {
            RResult::ROk(v) => Ok(v),
            RResult::RErr(e) if e.kind == CallErrorKind::PANICKED => {
                let message = e.message.to_string();
                if self.failure.set(message.clone()).is_ok() {
                    tracing::error!(
                        plugin = %self.name,
                        path = %self.path.display(),
                        "plugin panicked in {operation}; disabled until restart: {message}"
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

    /// Records a failed `consume` (not a panic): logged the first time only, since it
    /// would otherwise repeat for every batch.
    pub fn note_consume_error(&self, err: &PluginError) {
        self.consume_errors.fetch_add(1, Ordering::Relaxed);
        if !self.consume_error_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(plugin = %self.name, "{err} (further consume errors are only counted)");
        }
    }
}
