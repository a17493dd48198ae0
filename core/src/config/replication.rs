//! What a pool mirrors and how a mirror kept in sync by replication is read: the
//! `mirror_statements` and `mirror_sync*` keys of `[[pools]]`, and their checks.

use super::PoolConfig;
use serde::{Deserialize, Serialize};

/// Which transactions a pool mirrors (`mirror_statements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorStatements {
    /// Every transaction: the mirror is a detached copy that pgdog keeps in step.
    #[default]
    All,
    /// Only transactions whose every statement reads: the mirror is kept in sync by
    /// replication, and a write replayed on it would be applied twice.
    Reads,
    /// Only transactions with a write: a detached copy kept in step without read load.
    Writes,
}

impl MirrorStatements {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorStatements::All => "all",
            MirrorStatements::Reads => "reads",
            MirrorStatements::Writes => "writes",
        }
    }
}

/// Where the position the mirror has applied is read (`mirror_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorSync {
    /// Reads go to the mirror at once.
    #[default]
    None,
    /// A logical replication subscription: its slot on the primary (`mirror_sync_slot`).
    Logical,
    /// A physical standby: its replay position (`pg_last_wal_replay_lsn()`).
    Physical,
}

impl MirrorSync {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorSync::None => "none",
            MirrorSync::Logical => "logical",
            MirrorSync::Physical => "physical",
        }
    }
}

/// Shortest and longest `mirror_sync_interval_ms`.
pub const SYNC_INTERVAL_MS: std::ops::RangeInclusive<u64> = 1..=1000;

/// Checks a pool's `mirror_statements` and `mirror_sync*` keys; `problem(key, message)`.
pub fn check_pool(pool: &PoolConfig, problem: &mut impl FnMut(&str, String)) {
    let sync = pool.mirror_sync.unwrap_or_default();
    let statements = pool.mirror_statements.unwrap_or_default();
    if pool.mirror_of.is_none() {
        for (key, set) in [
            ("mirror_statements", pool.mirror_statements.is_some()),
            ("mirror_sync", pool.mirror_sync.is_some()),
            ("mirror_sync_slot", pool.mirror_sync_slot.is_some()),
            ("mirror_max_lag_ms", pool.mirror_max_lag_ms.is_some()),
            (
                "mirror_sync_interval_ms",
                pool.mirror_sync_interval_ms.is_some(),
            ),
        ] {
            if set {
                problem(
                    key,
                    format!(
                        "only applies to a pool with mirror_of; pool \"{}\" has none",
                        pool.name
                    ),
                );
            }
        }
        return;
    }
    if sync != MirrorSync::None && statements != MirrorStatements::Reads {
        problem(
            "mirror_statements",
            format!(
                "mirror_sync = \"{}\" means replication keeps the mirror in sync: set mirror_statements = \"reads\" \
                 (mirroring writes too would apply them twice)",
                sync.as_str()
            ),
        );
    }
    match (sync, pool.mirror_sync_slot.as_deref()) {
        (MirrorSync::Logical, None) => problem(
            "mirror_sync_slot",
            "mirror_sync = \"logical\" needs the subscription's replication slot on the primary \
             (SELECT slot_name FROM pg_replication_slots)"
                .into(),
        ),
        (MirrorSync::Logical, Some("")) => {
            problem("mirror_sync_slot", "expected a slot name, got \"\"".into())
        }
        (MirrorSync::Logical, Some(_)) | (_, None) => {}
        (other, Some(_)) => problem(
            "mirror_sync_slot",
            format!(
                "only used with mirror_sync = \"logical\" (mirror_sync is \"{}\")",
                other.as_str()
            ),
        ),
    }
    if pool.mirror_max_lag_ms == Some(0) {
        problem(
            "mirror_max_lag_ms",
            "expected a positive number, got 0".into(),
        );
    }
    if let Some(ms) = pool.mirror_sync_interval_ms {
        if !SYNC_INTERVAL_MS.contains(&ms) {
            problem(
                "mirror_sync_interval_ms",
                format!(
                    "expected {} to {} (milliseconds), got {ms}",
                    SYNC_INTERVAL_MS.start(),
                    SYNC_INTERVAL_MS.end()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("pgdog.toml"))
    }

    /// `(key, line)` of each problem.
    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        parse(text)
            .unwrap_err()
            .problems()
            .iter()
            .map(|p| (p.key.clone(), p.line, p.message.clone()))
            .collect()
    }

    #[test]
    fn defaults_mirror_everything_without_sync() {
        let c =
            parse("[[pools]]\nname = \"a\"\nmirror_of = \"b\"\n[[pools]]\nname = \"b\"\n").unwrap();
        let a = &c.pools[0];
        assert_eq!(
            a.mirror_statements.unwrap_or_default(),
            MirrorStatements::All
        );
        assert_eq!(a.mirror_sync.unwrap_or_default(), MirrorSync::None);
        assert_eq!(c.general.mirror_max_replication_lag_ms, 1000);
    }

    #[test]
    fn a_logical_reads_mirror_parses() {
        let c = parse(
            r#"
[[pools]]
name = "app"
mirror_of = "new"
mirror_statements = "reads"
mirror_sync = "logical"
mirror_sync_slot = "app_sub"
mirror_max_lag_ms = 500
mirror_sync_interval_ms = 5
[[pools]]
name = "new"
"#,
        )
        .unwrap();
        let a = &c.pools[0];
        assert_eq!(a.mirror_statements, Some(MirrorStatements::Reads));
        assert_eq!(a.mirror_sync, Some(MirrorSync::Logical));
        assert_eq!(a.mirror_sync_slot.as_deref(), Some("app_sub"));
        assert_eq!(
            (a.mirror_max_lag_ms, a.mirror_sync_interval_ms),
            (Some(500), Some(5))
        );
    }

    #[test]
    fn sync_needs_reads_a_slot_for_logical_and_sane_numbers() {
        let p = problems(
            r#"
[[pools]]
name = "app"
mirror_of = "new"
mirror_sync = "logical"
mirror_max_lag_ms = 0
mirror_sync_interval_ms = 5000
[[pools]]
name = "new"
mirror_sync = "physical"
[[pools]]
name = "phys"
mirror_of = "new"
mirror_statements = "reads"
mirror_sync = "physical"
mirror_sync_slot = "s"
"#,
        );
        let keys: Vec<(&str, Option<usize>)> = p.iter().map(|(k, l, _)| (k.as_str(), *l)).collect();
        assert!(
            keys.contains(&("pools[0].mirror_statements", Some(2))),
            "{p:?}"
        );
        assert!(
            keys.contains(&("pools[0].mirror_sync_slot", Some(2))),
            "{p:?}"
        );
        assert!(
            keys.contains(&("pools[0].mirror_max_lag_ms", Some(6))),
            "{p:?}"
        );
        assert!(
            keys.contains(&("pools[0].mirror_sync_interval_ms", Some(7))),
            "{p:?}"
        );
        assert!(keys.contains(&("pools[1].mirror_sync", Some(10))), "{p:?}");
        assert!(
            keys.contains(&("pools[2].mirror_sync_slot", Some(16))),
            "{p:?}"
        );
        let twice = &p
            .iter()
            .find(|(k, _, _)| k == "pools[0].mirror_statements")
            .unwrap()
            .2;
        assert!(twice.contains("apply them twice"), "{twice}");
    }

    #[test]
    fn unknown_values_name_the_key() {
        let err = parse("[[pools]]\nname = \"a\"\nmirror_statements = \"some\"\n").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(
            (p.key.as_str(), p.line),
            ("pools[0].mirror_statements", Some(3))
        );
    }
}
