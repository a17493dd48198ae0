//! Errors of the plugin layer. Load errors name the plugin, the path and the cause, and
//! say what to do; they stop pgdog at start-up.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin \"{name}\": file not found: {path} (looked in: {tried})")]
    NotFound {
        name: String,
        path: PathBuf,
        tried: String,
    },

    #[error(
        "the mirror statistics plugin {file} is not installed (looked in: {tried}); put it beside \
         the pgdog binary or in ../lib/pgdog/ from the binary's directory (`cargo build --release \
         -p pgdog-mirror-stats` builds it into target/release/), or set [general] plugin_dir \
         to its directory",
        file = super::BUNDLED_STATS_FILE
    )]
    BundledNotFound { tried: String },

    #[error("plugin \"{name}\": cannot load {path}: {cause}")]
    Open {
        name: String,
        path: PathBuf,
        cause: String,
    },

    #[error(
        "plugin \"{name}\": {path} is not a pgdog plugin (no pgdog plugin root module: {cause}); \
         a plugin crate must call pgdog_plugin_api::export_plugin!"
    )]
    NotAPlugin {
        name: String,
        path: PathBuf,
        cause: String,
    },

    #[error(
        "plugin \"{name}\": {path} was built against pgdog-plugin-api {plugin_api}, but this pgdog \
         uses pgdog-plugin-api {host_api}; rebuild the plugin against pgdog-plugin-api {host_api}"
    )]
    IncompatibleVersion {
        name: String,
        path: PathBuf,
        plugin_api: String,
        host_api: String,
    },

    #[error(
        "plugin \"{name}\": {path} has an incompatible plugin API layout (this pgdog uses \
         pgdog-plugin-api {host_api}; rebuild the plugin against it): {summary}"
    )]
    IncompatibleLayout {
        name: String,
        path: PathBuf,
        host_api: String,
        summary: String,
    },

    #[error("plugin \"{name}\" ({path}) refused its configuration: {message}")]
    Constructor {
        name: String,
        path: PathBuf,
        message: String,
    },

    #[error("readiness_plugin = \"{name}\": {problem}")]
    Readiness { name: String, problem: String },

    #[error("plugin \"{name}\" panicked in {operation} and was disabled: {message}")]
    Panicked {
        name: String,
        operation: &'static str,
        message: String,
    },

    #[error("plugin \"{name}\" is disabled since an earlier failure: {reason}")]
    Disabled { name: String, reason: String },

    #[error("plugin \"{name}\" failed in {operation}: {message}")]
    Call {
        name: String,
        operation: &'static str,
        message: String,
    },

    /// The plugin lacks the operation (e.g. one added to the API after it was built).
    #[error("plugin \"{name}\" failed in {operation}: {message}")]
    Unsupported {
        name: String,
        operation: &'static str,
        message: String,
    },

    /// An off-runtime call did not answer within its time limit, or another call to the
    /// same plugin is still overrunning.
    #[error("plugin \"{name}\" not answering {operation}: {detail}")]
    NotAnswering {
        name: String,
        operation: &'static str,
        detail: String,
    },

    #[error("no loaded plugin provides {what}")]
    NoProvider { what: &'static str },

    #[error("the plugin event thread has stopped")]
    EventThreadStopped,
}
