//! The gates' measures as readiness sees them: named fields of the plugin API's
//! extension lists, so that a policy built against 3.0 reads them by name and an older
//! one simply does not.
//!
//! On each database's [`DatabaseStats`] (added by pgdog to the stats plugin's snapshot
//! before the readiness plugin judges it) and [`DatabaseReport`] (added to the verdict,
//! for `SHOW MIRROR READINESS` to show whatever the policy):
//! * `replication.mode` (text): `logical` or `physical`;
//! * `replication.status` (text): `streaming`, `stopped`, `unreadable` or `starting`;
//! * `replication.problem` (text): why replication is not running, when it is not;
//! * `replication.lag_ms.p50`, `.p99`, `.max` (numbers): the lag over the stats window,
//!   and `replication.lag_ms.current`: the age of the oldest primary position not yet
//!   applied (it grows while replication is stopped);
//! * `replication.lag_bytes.p50`, `.p99`, `.max` (numbers);
//! * `replication.delay_ms.p50`, `.p99` (numbers): what gating added to mirrored reads;
//! * `replication.reads.synced`, `replication.reads.lagging` (counts).
//!
//! And on [`ReadinessCriteria`]: `max_replication_lag_ms` (number, absent or 0: no limit).

use super::{Gate, Health, Report};
use crate::plugins::{Judgement, PluginError, PluginHost};
use pgdog_plugin_api::{
    DatabaseReport, DatabaseStats, ExtensionValue, Extensions, ReadinessCriteria, ReadinessReport,
    StatsSnapshot,
};

/// The criteria extension holding `[general] mirror_max_replication_lag_ms`.
pub const MAX_LAG_CRITERION: &str = "max_replication_lag_ms";

/// One gate's measures, taken at one instant.
#[derive(Debug, Clone)]
pub struct Measured {
    pub database: String,
    pub mode: &'static str,
    pub report: Report,
}

/// The measures of `gates` (source pool name, gate), now.
pub fn measured<'a>(gates: impl Iterator<Item = (&'a str, &'a Gate)>) -> Vec<Measured> {
    gates
        .map(|(database, gate)| Measured {
            database: database.to_string(),
            mode: gate.settings().mode.as_str(),
            report: gate.report(),
        })
        .collect()
}

/// The `replication.*` fields of one gate.
pub fn extensions(m: &Measured) -> Extensions {
    let r = &m.report;
    let mut e = Extensions::default();
    let text = |s: &str| ExtensionValue::Text(s.into());
    e.set("replication.mode", text(m.mode));
    let status = match &r.health {
        Health::Unknown => "starting",
        Health::Streaming => "streaming",
        Health::Stopped(_) => "stopped",
        Health::Unreadable(_) => "unreadable",
    };
    e.set("replication.status", text(status));
    if let Some(problem) = r.health.problem() {
        e.set("replication.problem", text(&problem));
    }
    let n = ExtensionValue::Number;
    for (name, v) in [
        ("replication.lag_ms.p50", r.lag_ms.p50),
        ("replication.lag_ms.p99", r.lag_ms.p99),
        ("replication.lag_ms.max", r.lag_ms.max.max(r.current_lag_ms)),
        ("replication.lag_ms.current", r.current_lag_ms),
        ("replication.lag_bytes.p50", r.lag_bytes.p50),
        ("replication.lag_bytes.p99", r.lag_bytes.p99),
        ("replication.lag_bytes.max", r.lag_bytes.max),
        ("replication.delay_ms.p50", r.delay_ms.p50),
        ("replication.delay_ms.p99", r.delay_ms.p99),
    ] {
        e.set(name, n(v));
    }
    e.set("replication.reads.synced", ExtensionValue::Count(r.synced));
    e.set(
        "replication.reads.lagging",
        ExtensionValue::Count(r.lagging),
    );
    e
}

fn merge(into: &mut Extensions, from: Extensions) {
    for field in from.fields {
        into.set(field.name.as_str(), field.value);
    }
}

/// Adds each gate's fields to its database in `snapshot`, adding the database when the
/// snapshot has none yet (no mirrored request so far): a stopped replication is a reason
/// even before the first read.
pub fn annotate_snapshot(snapshot: &mut StatsSnapshot, measured: &[Measured]) {
    for m in measured {
        let at = snapshot
            .databases
            .iter()
            .position(|d| d.database.as_str() == m.database);
        let at = at.unwrap_or_else(|| {
            let i = snapshot
                .databases
                .iter()
                .position(|d| d.database.as_str() > m.database.as_str())
                .unwrap_or(snapshot.databases.len());
            snapshot.databases.insert(
                i,
                DatabaseStats {
                    database: m.database.as_str().into(),
                    ..DatabaseStats::default()
                },
            );
            i
        });
        merge(&mut snapshot.databases[at].extensions, extensions(m));
    }
}

/// Adds each gate's fields to its database's verdict.
pub fn annotate_report(report: &mut ReadinessReport, measured: &[Measured]) {
    for m in measured {
        let found = report
            .databases
            .iter_mut()
            .find(|d: &&mut DatabaseReport| d.database.as_str() == m.database);
        if let Some(db) = found {
            merge(&mut db.extensions, extensions(m));
        }
    }
}

/// Every readiness policy's verdict (of record and shadows) on the stats plugin's
/// snapshot with the gates' fields added, and each verdict with them too.
pub async fn assess(
    plugins: &PluginHost,
    criteria: &ReadinessCriteria,
    measured: &[Measured],
) -> Result<Judgement, PluginError> {
    let mut judgement = plugins
        .assess_all_annotated(criteria, |snapshot| annotate_snapshot(snapshot, measured))
        .await?;
    annotate_report(&mut judgement.record, measured);
    for shadow in &mut judgement.shadows {
        if let Ok(report) = &mut shadow.report {
            annotate_report(report, measured);
        }
    }
    Ok(judgement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_without_requests_yet_gets_its_fields_in_order() {
        let mut snapshot = StatsSnapshot::default();
        for name in ["a", "c"] {
            snapshot.databases.push(DatabaseStats {
                database: name.into(),
                ..DatabaseStats::default()
            });
        }
        let measured = Measured {
            database: "b".into(),
            mode: "logical",
            report: Report {
                health: Health::Stopped("slot \"s\" is not active".into()),
                lag_ms: Default::default(),
                lag_bytes: Default::default(),
                current_lag_ms: 2500.0,
                delay_ms: Default::default(),
                synced: 0,
                lagging: 3,
                rounds: 1,
                queries: [1, 0],
                rechecks: [0; 3],
            },
        };
        annotate_snapshot(&mut snapshot, &[measured]);
        let names: Vec<&str> = snapshot
            .databases
            .iter()
            .map(|d| d.database.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let e = &snapshot.databases[1].extensions;
        assert_eq!(e.text("replication.status"), Some("stopped"));
        assert!(e
            .text("replication.problem")
            .unwrap()
            .contains("not active"));
        assert_eq!(e.number("replication.lag_ms.max"), Some(2500.0));
        assert_eq!(e.count("replication.reads.lagging"), Some(3));
    }
}
