//! Finding and loading plugin libraries, and explaining why one was refused.
//!
//! Each library is loaded with `lib_header_from_path(..)` + `init_root_module`, never
//! with `RootModule::load_from_file`, which caches one module per root-module type for
//! the whole process and would hand back the first plugin for every later path.

use std::path::{Path, PathBuf};

use pgdog_plugin_api::{
    abi_stable::{
        library::{lib_header_from_path, LibraryError},
        std_types::RStr,
    },
    PluginModRef, API_VERSION,
};

use super::instance::LoadedPlugin;
use super::PluginError;

/// File name of the bundled stats plugin, shipped beside the `pgdog` binary.
pub const BUNDLED_STATS_FILE: &str = "libpgdog_mirror_stats.so";
/// Name the bundled stats plugin is registered under.
pub const BUNDLED_STATS_NAME: &str = crate::config::BUNDLED_STATS_PLUGIN;

/// The directories plugins given by file name are looked for in, in order: `plugin_dir`,
/// the directory of the `pgdog` binary, and `../lib/pgdog/` from there (where a package
/// puts them: `/usr/bin/pgdog` finds `/usr/lib/pgdog/`).
pub(crate) fn search_dirs(plugin_dir: Option<&Path>, binary_dir: Option<&Path>) -> Vec<PathBuf> {
    let lib = binary_dir
        .and_then(Path::parent)
        .map(|prefix| prefix.join("lib").join("pgdog"));
    plugin_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(binary_dir.map(Path::to_path_buf))
        .chain(lib)
        .collect()
}

/// Where plugin `name`'s `path` is: itself when absolute, else the first of `dirs` that
/// has it. The error lists every place looked in.
pub(crate) fn resolve(name: &str, path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, PluginError> {
    let candidates: Vec<PathBuf> = if path.is_absolute() {
        vec![path.to_path_buf()]
    } else {
        dirs.iter().map(|dir| dir.join(path)).collect()
    };
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    Err(PluginError::NotFound {
        name: name.to_string(),
        path: path.to_path_buf(),
        tried: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Loads the library at `path` and builds the plugin with `config` (TOML text).
pub(crate) fn load(name: &str, path: &Path, config: &str) -> Result<LoadedPlugin, PluginError> {
    let explain = |e: LibraryError| explain(name, path, e);
    let module = lib_header_from_path(path)
        .map_err(explain)?
        .init_root_module::<PluginModRef>()
        .map_err(explain)?;
    let instance = (module.new())(RStr::from_str(config))
        .into_result()
        .map_err(|e| PluginError::Constructor {
            name: name.to_string(),
            path: path.to_path_buf(),
            message: e.message.to_string(),
        })?;
    Ok(LoadedPlugin::new(
        name.to_string(),
        path.to_path_buf(),
        module,
        config.to_string(),
        instance,
    ))
}

/// Turns abi_stable's error into one that names the plugin, the path and the cause.
fn explain(name: &str, path: &Path, err: LibraryError) -> PluginError {
    let name = name.to_string();
    let path = path.to_path_buf();
    match err {
        LibraryError::OpenError { err, .. } => PluginError::Open {
            name,
            path,
            cause: err.to_string(),
        },
        LibraryError::GetSymbolError { err, .. } => PluginError::NotAPlugin {
            name,
            path,
            cause: err.to_string(),
        },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            PluginError::IncompatibleVersion {
                name,
                path,
                plugin_api: actual_version.to_string(),
                host_api: API_VERSION.to_string(),
            }
        }
        LibraryError::AbiInstability(e) => {
            let full = e.to_string();
            tracing::debug!(plugin = %name, "full layout error:\n{full}");
            PluginError::IncompatibleLayout {
                name,
                path,
                host_api: API_VERSION.to_string(),
                summary: summarize_layout_error(&full),
            }
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => explain(&name, &path, first),
            None => PluginError::Open {
                name,
                path,
                cause: "unknown loading error".into(),
            },
        },
        other => PluginError::Open {
            name,
            path,
            cause: first_line(&other.to_string(), 300),
        },
    }
}

/// abi_stable's layout errors run to hundreds of lines (both type layouts, in full, at
/// every level). Keep what differs and where: the last `N error(s)inside:` block holds
/// the path of fields down to the mismatch, and the closing `Error:` block says what
/// was expected and what was found.
pub(crate) fn summarize_layout_error(full: &str) -> String {
    let lines: Vec<&str> = full.lines().map(str::trim).collect();
    let omitted = lines.iter().filter(|l| !l.is_empty()).count();

    let error = lines
        .iter()
        .rposition(|l| l.starts_with("Error:"))
        .map(|i| {
            let what = lines[i].trim_start_matches("Error:").trim();
            let value_after = |label: &str| {
                lines[i..]
                    .iter()
                    .position(|l| *l == label)
                    .and_then(|j| lines[i + j + 1..].iter().find(|l| !l.is_empty()))
                    .copied()
            };
            match (value_after("Expected:"), value_after("Found:")) {
                (Some(e), Some(f)) => format!("{what}: expected {e}, found {f}"),
                _ => what.to_string(),
            }
        });

    let header = lines
        .iter()
        .rposition(|l| l.ends_with("error(s)inside:") && !l.starts_with("0 "));
    let path = header.map(|h| {
        let mut fields = Vec::new();
        let mut field = None;
        for l in &lines[h + 1..] {
            if l.starts_with("Layout of expected type") {
                break;
            }
            if let Some(name) = l.strip_prefix("field_name:") {
                field = Some(name);
            } else if let (Some(ty), Some(name)) = (l.strip_prefix("type:"), field.take()) {
                fields.push(format!("{name}: {ty}"));
            }
        }
        fields.join(" > ")
    });

    let detail = match (error, path) {
        (Some(e), Some(p)) if !p.is_empty() => format!("{e} at {p}"),
        (Some(e), _) => e,
        (None, _) => first_line(full, 200),
    };
    format!(
        "{detail} ({omitted} lines of layout detail omitted; \
         run with RUST_LOG=pgdog::plugins=debug for all of it)"
    )
}

fn first_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_try_each_directory_in_order() {
        let cfg = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let dirs = [cfg.path().to_path_buf(), bin.path().to_path_buf()];
        std::fs::write(bin.path().join("p.so"), b"x").unwrap();
        let found = resolve("p", Path::new("p.so"), &dirs).unwrap();
        assert_eq!(found, bin.path().join("p.so"));
        std::fs::write(cfg.path().join("p.so"), b"x").unwrap();
        let found = resolve("p", Path::new("p.so"), &dirs).unwrap();
        assert_eq!(found, cfg.path().join("p.so"));

        let err = resolve("q", Path::new("q.so"), &dirs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugin \"q\""), "{err}");
        assert!(
            err.contains(&cfg.path().join("q.so").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(&bin.path().join("q.so").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_search_path_is_plugin_dir_then_beside_the_binary_then_lib_pgdog() {
        let dirs = search_dirs(Some(Path::new("/opt/plugins")), Some(Path::new("/usr/bin")));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/opt/plugins"),
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/lib/pgdog")
            ]
        );
        assert_eq!(
            search_dirs(None, Some(Path::new("/usr/local/bin"))),
            [
                PathBuf::from("/usr/local/bin"),
                PathBuf::from("/usr/local/lib/pgdog")
            ]
        );
    }

    #[test]
    fn layout_summary_is_short() {
        let mut full = String::from("Compared <this>:\n0 error(s)inside:\n    field_name:0\n");
        for i in 0..500 {
            full.push_str(&format!("  field_{i}: SomeType {{ ... }}\n"));
        }
        full.push_str(
            "1 error(s)inside:\n    <other>\n\n    field_name:0\n    type:PluginMod\n\n\
             field_name:database\n    type:u32\nLayout of expected type:\n    type:u32\n\n\
             Error:mismatched type\nExpected:\n    u32\nFound:\n    u64\n",
        );
        let s = summarize_layout_error(&full);
        assert!(s.len() < 400, "{s}");
        assert!(
            s.starts_with(
                "mismatched type: expected u32, found u64 at 0: PluginMod > database: u32"
            ),
            "{s}"
        );
        assert!(s.contains("lines of layout detail omitted"), "{s}");
    }
}
