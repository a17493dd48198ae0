//! Loads the real plugin libraries: the workspace's cdylibs (`cargo build --workspace`)
//! and the fixtures (`integration/plugin-fixtures/build.sh`). `cargo test` alone does
//! not build either; a missing library fails the test with the command to run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgdog::config::Config;
use pgdog::plugins::{
    criteria, ErrorCategory, LoadOptions, MirrorEvent, PluginError, PluginHost, PluginSpec,
    PluginStatus, ReadinessCriteria,
};

/// `<target>/debug` (or whichever profile built this test).
fn profile_dir() -> PathBuf {
    // <target>/<profile>/deps/plugins-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn workspace_lib(file: &str) -> PathBuf {
    let path = profile_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before these tests",
        path.display()
    );
    path
}

fn fixture(file: &str) -> PathBuf {
    let dir = std::env::var_os("PGDOG_PLUGIN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            profile_dir()
                .parent()
                .unwrap()
                .join("plugin-fixtures")
                .join("debug")
        });
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `integration/plugin-fixtures/build.sh` before these tests",
        path.display()
    );
    path
}

fn stats_lib() -> PathBuf {
    workspace_lib("libpgdog_mirror_stats.so")
}
fn strict_lib() -> PathBuf {
    workspace_lib("libpgdog_strict_readiness.so")
}
fn test_lib() -> PathBuf {
    fixture("libpgdog_fixture_test_plugin.so")
}

fn spec(name: &str, path: &Path, config: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path: path.to_path_buf(),
        config: if config.is_empty() {
            None
        } else {
            Some(toml::from_str(config).unwrap())
        },
    }
}

fn options(readiness: Option<&str>) -> LoadOptions {
    LoadOptions {
        plugin_dir: None,
        config_dir: None,
        binary_dir: Some(profile_dir()),
        readiness_plugins: readiness.into_iter().map(String::from).collect(),
        stats_window_secs: None,
    }
}

fn load_err(specs: &[PluginSpec]) -> PluginError {
    PluginHost::load(specs, &options(None)).unwrap_err()
}

/// `ok` successes at 2 ms, then `errors` connection errors, on database "primary".
async fn send(host: &PluginHost, ok: usize, errors: usize) {
    let sink = host.events();
    let db: Arc<str> = Arc::from("primary");
    for _ in 0..ok {
        sink.send(MirrorEvent::mirrored(db.clone(), Duration::from_millis(2)));
    }
    for _ in 0..errors {
        sink.send(MirrorEvent::error(
            db.clone(),
            ErrorCategory::Connection,
            None,
        ));
    }
    host.flush().await;
}

#[tokio::test]
async fn bundled_stats_plugin_loads_without_plugins_section() {
    let host = PluginHost::load(&[], &options(None)).unwrap();
    let plugins = host.plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].name, "mirror-stats");
    assert_eq!(plugins[0].roles, ["stats", "readiness"]);

    send(&host, 95, 5).await;
    let rows = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap()
        .to_text_rows();
    assert!(rows.contains(&"Error Rate: 5.00%".to_string()), "{rows:?}");
    assert!(
        rows.contains(&"Total Requests: 100".to_string()),
        "{rows:?}"
    );
    let points = host.metric_points().await;
    let mirrored = points
        .iter()
        .find(|p| p.labels.len() == 1 && p.label("type") == Some("mirrored"))
        .unwrap();
    assert_eq!(mirrored.value, 95.0);

    host.reset().await.unwrap();
    assert_eq!(host.snapshot().await.unwrap().overall.counts.total, 0);
    host.shutdown().await;
}

#[tokio::test]
async fn several_plugins_are_really_several() {
    let specs = [
        spec("stats", &stats_lib(), ""),
        spec("strict", &strict_lib(), ""),
        spec(
            "a",
            &test_lib(),
            "label = 'a'\ncapabilities = ['events', 'metrics']",
        ),
        spec("b", &test_lib(), "label = 'b'\ncapabilities = ['metrics']"),
    ];
    let host = PluginHost::load(&specs, &options(Some("strict"))).unwrap();
    let names: Vec<_> = host.plugins().into_iter().map(|p| p.plugin_name).collect();
    assert_eq!(
        names,
        [
            "mirror-stats",
            "strict-readiness",
            "fixture-test-plugin",
            "fixture-test-plugin"
        ]
    );
    send(&host, 10, 0).await;
    let points = host.metric_points().await;
    let fixture = |label: &str| {
        points
            .iter()
            .find(|p| p.name.as_str() == "fixture" && p.label("label") == Some(label))
            .map(|p| p.value)
    };
    // Same library, two instances, two configs: "a" consumes events, "b" does not.
    assert_eq!(fixture("a"), Some(10.0));
    assert_eq!(fixture("b"), Some(0.0));
    assert!(points.iter().any(|p| p.name.as_str() == "mirror"));
    assert_eq!(
        host.assess(&ReadinessCriteria::default())
            .await
            .unwrap()
            .policy
            .as_str(),
        "strict-readiness"
    );
}

#[test]
fn missing_file_is_refused() {
    let err = load_err(&[spec("ghost", Path::new("/nonexistent/libghost.so"), "")]);
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"ghost\"") && msg.contains("/nonexistent/libghost.so"),
        "{msg}"
    );
}

#[test]
fn the_bundled_plugin_is_found_in_plugin_dir_or_lib_pgdog_and_else_says_where_it_looked() {
    let stats = stats_lib();
    let prefix = tempfile::tempdir().unwrap();
    let bin = prefix.path().join("bin");
    let lib = prefix.path().join("lib").join("pgdog");
    std::fs::create_dir_all(&bin).unwrap();
    let bare = LoadOptions {
        binary_dir: Some(bin.clone()),
        ..options(None)
    };
    // Nowhere: the error names each place and what to do.
    let err = PluginHost::load(&[], &bare).unwrap_err();
    assert!(matches!(err, PluginError::BundledNotFound { .. }), "{err}");
    let message = err.to_string();
    for place in [
        bin.join("libpgdog_mirror_stats.so"),
        lib.join("libpgdog_mirror_stats.so"),
    ] {
        assert!(message.contains(&place.display().to_string()), "{message}");
    }
    assert!(message.contains("plugin_dir"), "{message}");
    // A package's layout: <prefix>/bin/pgdog and <prefix>/lib/pgdog/.
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(&stats, lib.join("libpgdog_mirror_stats.so")).unwrap();
    let host = PluginHost::load(&[], &bare).unwrap();
    assert_eq!(host.plugins()[0].path, lib.join("libpgdog_mirror_stats.so"));
    // plugin_dir comes first.
    let with_dir = LoadOptions {
        plugin_dir: Some(stats.parent().unwrap().to_path_buf()),
        ..bare
    };
    let host = PluginHost::load(&[], &with_dir).unwrap();
    assert_eq!(host.plugins()[0].path, stats);
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let path = fixture("libpgdog_fixture_not_a_plugin.so");
    let err = load_err(&[spec("plain", &path, "")]);
    assert!(matches!(err, PluginError::NotAPlugin { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, "not an ELF file").unwrap();
    let err = load_err(&[spec("junk", &junk, "")]);
    assert!(matches!(err, PluginError::Open { .. }), "{err}");
    assert!(err.to_string().contains("\"junk\""), "{err}");
}

#[test]
fn incompatible_api_version_is_refused_naming_both_versions() {
    let path = fixture("libpgdog_fixture_old_api.so");
    let err = load_err(&[spec("old", &path, "")]);
    let msg = err.to_string();
    assert!(
        matches!(err, PluginError::IncompatibleVersion { .. }),
        "{msg}"
    );
    assert!(msg.contains("0.9.0"), "{msg}");
    assert!(msg.contains(pgdog::plugins::API_VERSION), "{msg}");
    assert!(
        msg.contains("\"old\"") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
}

#[test]
fn incompatible_layout_is_refused_with_a_short_message() {
    let path = fixture("libpgdog_fixture_bad_layout.so");
    let err = load_err(&[spec("skewed", &path, "")]);
    let msg = err.to_string();
    assert!(
        matches!(err, PluginError::IncompatibleLayout { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("\"skewed\"") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    assert!(
        msg.lines().count() == 1 && msg.len() < 1000,
        "not summarised:\n{msg}"
    );
}

#[test]
fn constructor_errors_are_refused() {
    let err = load_err(&[spec(
        "picky",
        &test_lib(),
        "fail_new = 'unknown mode \"x\"'",
    )]);
    assert!(matches!(err, PluginError::Constructor { .. }), "{err}");
    assert!(err.to_string().contains("unknown mode \"x\""), "{err}");

    let err = load_err(&[spec("boom", &test_lib(), "panic_in = 'new'")]);
    assert!(matches!(err, PluginError::Constructor { .. }), "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");

    // The real plugins check their configs too.
    let err = load_err(&[spec("stats", &stats_lib(), "significant_digits = 42")]);
    assert!(err.to_string().contains("significant_digits"), "{err}");
}

#[test]
fn readiness_plugin_must_exist_and_judge() {
    let specs = [spec("stats", &stats_lib(), "")];
    let err = PluginHost::load(&specs, &options(Some("nope"))).unwrap_err();
    assert!(
        err.to_string().contains("readiness_plugin = \"nope\""),
        "{err}"
    );

    let specs = [
        spec("stats", &stats_lib(), ""),
        spec("counter", &test_lib(), "capabilities = ['events']"),
    ];
    let err = PluginHost::load(&specs, &options(Some("counter"))).unwrap_err();
    assert!(
        err.to_string().contains("does not judge readiness"),
        "{err}"
    );
}

#[tokio::test]
async fn a_panicking_plugin_is_disabled_and_the_rest_keeps_going() {
    let specs = [
        spec("stats", &stats_lib(), ""),
        spec(
            "panicky",
            &test_lib(),
            "panic_in = 'consume'\ncapabilities = ['events']",
        ),
    ];
    let host = PluginHost::load(&specs, &options(None)).unwrap();
    send(&host, 250, 0).await;
    send(&host, 250, 0).await;
    let infos = host.plugins();
    let panicky = infos.iter().find(|p| p.name == "panicky").unwrap();
    assert!(
        matches!(&panicky.status, PluginStatus::Failed(m) if m.contains("fixture panic in consume")),
        "{:?}",
        panicky.status
    );
    assert_eq!(infos[0].status, PluginStatus::Ok);
    // The stats plugin saw every event.
    assert_eq!(host.snapshot().await.unwrap().overall.counts.mirrored, 500);
    assert!(
        host.assess(&ReadinessCriteria::default())
            .await
            .unwrap()
            .overall
            .ready
    );
}

#[tokio::test]
async fn a_panicking_readiness_plugin_fails_its_call_then_stays_disabled() {
    let specs = [
        spec("stats", &stats_lib(), ""),
        spec(
            "judge",
            &test_lib(),
            "panic_in = 'assess'\ncapabilities = ['readiness']",
        ),
    ];
    let host = PluginHost::load(&specs, &options(Some("judge"))).unwrap();
    send(&host, 5, 0).await;
    let err = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Panicked { .. }), "{err}");
    let err = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Disabled { .. }), "{err}");
    // Statistics and metrics are unaffected.
    assert_eq!(host.snapshot().await.unwrap().overall.counts.total, 5);
    assert!(!host.metric_points().await.is_empty());
}

/// The same events, two configs that differ only in the policy: two verdicts.
#[tokio::test]
async fn swapping_the_policy_by_config_changes_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        strict_lib(),
        dir.path().join("libpgdog_strict_readiness.so"),
    )
    .unwrap();
    let base = r#"
        [general]
        mirror_min_runtime_hours = 0.0
        [[pools]]
        name = "primary"
        database = "primary"
    "#;
    let strict = format!(
        "{base}\n[[plugins]]\nname = \"strict\"\npath = \"libpgdog_strict_readiness.so\"\n\
         config = {{ window = 500 }}\n"
    );
    let strict = strict.replacen("[general]", "[general]\nreadiness_plugin = \"strict\"", 1);

    let mut verdicts = Vec::new();
    for text in [base.to_string(), strict] {
        let file = dir.path().join("pgdog.toml");
        let config = Config::parse(&text, &file).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let options = LoadOptions {
            readiness_plugins: config.general.readiness_policies(),
            binary_dir: Some(profile_dir()),
            ..LoadOptions::new(dir.path())
        };
        let specs: Vec<PluginSpec> = config.plugins.iter().map(PluginSpec::from).collect();
        let host = PluginHost::load(&specs, &options).unwrap();
        // Enough clean traffic for the default policy to vouch for a p99 and a 1 % drop
        // rate (about 380 requests), and one error, which the strict policy never accepts.
        send(&host, 600, 1).await;
        let report = host
            .assess(&pgdog::plugins::criteria_of(&config.general))
            .await
            .unwrap();
        verdicts.push((report.policy.to_string(), report.to_text_rows()[0].clone()));
    }
    assert_eq!(
        verdicts,
        [
            ("mirror-stats".to_string(), "Status: READY".to_string()),
            (
                "strict-readiness".to_string(),
                "Status: NOT READY".to_string()
            ),
        ]
    );
}

/// Two policies side by side (`readiness_plugins`): the first gives the verdict of
/// record, the other is a shadow judged on the same snapshot; they disagree here.
#[tokio::test]
async fn shadow_policies_judge_the_same_snapshot_beside_the_verdict_of_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        strict_lib(),
        dir.path().join("libpgdog_strict_readiness.so"),
    )
    .unwrap();
    let text = "[general]\nmirror_min_runtime_hours = 0.0\n\
                readiness_plugins = [\"mirror-stats\", \"strict\"]\n\
                [[pools]]\nname = \"primary\"\n\
                [[plugins]]\nname = \"strict\"\npath = \"libpgdog_strict_readiness.so\"\n";
    let file = dir.path().join("pgdog.toml");
    let config = Config::parse(text, &file).unwrap_or_else(|e| panic!("{e}"));
    let options = LoadOptions {
        readiness_plugins: config.general.readiness_policies(),
        binary_dir: Some(profile_dir()),
        ..LoadOptions::new(dir.path())
    };
    let specs: Vec<PluginSpec> = config.plugins.iter().map(PluginSpec::from).collect();
    let host = PluginHost::load(&specs, &options).unwrap();
    let roles: Vec<(String, Vec<&str>)> = host
        .plugins()
        .into_iter()
        .map(|p| (p.name, p.roles))
        .collect();
    assert_eq!(
        roles,
        [
            ("strict".to_string(), vec!["shadow readiness"]),
            ("mirror-stats".to_string(), vec!["stats", "readiness"]),
        ]
    );
    send(&host, 600, 1).await;
    let judgement = host
        .assess_all(&pgdog::plugins::criteria_of(&config.general))
        .await
        .unwrap();
    assert_eq!(judgement.record.policy.as_str(), "mirror-stats");
    assert!(
        judgement.record.overall.ready,
        "{:?}",
        judgement.record.overall.reasons
    );
    assert_eq!(judgement.shadows.len(), 1);
    let shadow = judgement.shadows[0].report.as_ref().unwrap();
    assert_eq!(shadow.policy.as_str(), "strict-readiness");
    assert!(!shadow.overall.ready);
    assert!(judgement.disagreement());
    // The verdict of record is what `assess` answers, as before.
    assert_eq!(
        host.assess(&pgdog::plugins::criteria_of(&config.general))
            .await
            .unwrap()
            .policy
            .as_str(),
        "mirror-stats"
    );
}

#[test]
fn criteria_helper_converts_hours() {
    let c = criteria(0.01, 250, 10, 1.5);
    assert_eq!(c.min_runtime_secs, 5400.0);
    assert_eq!(c.max_latency_ms, 250.0);
}

/// The scrape call (plugin API 2.1) of the bundled plugin answers what its snapshot and
/// assess say, cut down to the bounds; with a separate readiness plugin the host does not
/// use it (that plugin judges a whole snapshot).
#[tokio::test]
async fn the_scrape_call_agrees_with_snapshot_and_assess() {
    use pgdog::plugins::StatsSnapshot;
    use pgdog_plugin_api::{scrape::bounded, Verdicts};
    let host = PluginHost::load(&[], &options(None)).unwrap();
    send(&host, 950, 50).await;
    let criteria = criteria(0.05, 1000, 100, 0.0);
    let bounds = [500u64, 1_000, 5_000, 1_000_000];
    let answer = host
        .scrape(&bounds, &criteria)
        .await
        .unwrap()
        .expect("a 2.1 plugin");
    let whole = host.snapshot().await.unwrap();
    let report = host
        .assess_snapshot(Arc::new(whole.clone()), &criteria)
        .await
        .unwrap();
    assert_eq!(answer.verdicts.into_option(), Some(Verdicts::of(&report)));
    let expected = StatsSnapshot {
        taken_at_unix_us: answer.snapshot.taken_at_unix_us,
        ..bounded(whole, &bounds)
    };
    assert_eq!(answer.snapshot, expected);

    let specs = [spec("strict", &strict_lib(), "")];
    let host = PluginHost::load(&specs, &options(Some("strict"))).unwrap();
    assert!(host.scrape(&bounds, &criteria).await.unwrap().is_none());
}

/// abi_stable 0.11 checks a plugin in two steps. The version check compares the major
/// version only: a plugin that claims another minor version with this one's layout
/// loads. The layout check then compares the plugin object's vtable: a plugin whose
/// vtable lacks a method the host has (built against an earlier minor version, before
/// the method was appended; here, without `scrape`) is refused, and one built against a
/// later minor (one more method) loads.
#[test]
fn minor_versions_the_version_check_and_the_layout_check() {
    let claims = fixture("libpgdog_fixture_claims_other_minor.so");
    let host = PluginHost::load(&[spec("claims", &claims, "")], &options(Some("claims")));
    let host = host.unwrap_or_else(|e| panic!("same layout, other minor refused: {e}"));
    assert_eq!(host.plugins()[0].plugin_name, "fixture-claims-other-minor");

    let older = fixture("libpgdog_fixture_older_minor.so");
    let err = load_err(&[spec("older", &older, "")]);
    let msg = err.to_string();
    assert!(
        matches!(err, PluginError::IncompatibleLayout { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("\"older\"") && msg.contains(pgdog::plugins::API_VERSION),
        "{msg}"
    );

    let newer = fixture("libpgdog_fixture_newer_minor.so");
    let host = PluginHost::load(&[spec("newer", &newer, "")], &options(Some("newer")));
    let host = host.unwrap_or_else(|e| panic!("a later minor refused: {e}"));
    assert_eq!(host.plugins()[0].plugin_name, "fixture-newer-minor");
}

/// A plugin that stalls in a statistics call: the caller gets "not answering" at the
/// time limit, later calls get it at once, and the events it cannot take are dropped
/// and counted instead of queued without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_plugin_is_not_waited_for_and_its_events_are_counted_as_dropped() {
    use pgdog::plugins::{sink::EVENT_QUEUE, CALL_TIME_LIMIT};
    use std::time::Instant;
    let slow = fixture("libpgdog_fixture_stalled_stats.so");
    let host = PluginHost::load(&[spec("slow", &slow, "stall_ms = 4000")], &options(None)).unwrap();

    let start = Instant::now();
    let err = host.snapshot().await.unwrap_err();
    assert!(matches!(err, PluginError::NotAnswering { .. }), "{err}");
    assert!(start.elapsed() < CALL_TIME_LIMIT + Duration::from_millis(500));

    let start = Instant::now();
    let err = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not answering"), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    let status = &host.plugins()[0].status;
    assert!(
        matches!(status, PluginStatus::NotAnswering(_)),
        "{status:?}"
    );

    // The plugin holds its lock: the event thread waits, the channel fills, and `send`
    // drops and counts instead of waiting or queueing without bound.
    let sink = host.events();
    let db: Arc<str> = Arc::from("primary");
    let start = Instant::now();
    for _ in 0..EVENT_QUEUE + 10_000 {
        sink.send(MirrorEvent::mirrored(db.clone(), Duration::from_millis(1)));
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(host.dropped_events() >= 10_000 - pgdog::plugins::sink::MAX_BATCH as u64);
    let start = Instant::now();
    host.flush().await;
    assert!(start.elapsed() < Duration::from_millis(200));
}

/// After a panic the plugin is disabled; `RELOAD` re-creates it from its library and
/// config, with fresh state, and calls reach the new instance.
#[tokio::test]
async fn reload_re_creates_a_plugin_disabled_by_a_panic() {
    let specs = [
        spec("stats", &stats_lib(), ""),
        spec(
            "judge",
            &test_lib(),
            "panic_in = 'assess'\ncapabilities = ['readiness']",
        ),
    ];
    let host = PluginHost::load(&specs, &options(Some("judge"))).unwrap();
    let err = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Panicked { .. }), "{err}");
    let judge = |host: &PluginHost| {
        host.plugins()
            .into_iter()
            .find(|p| p.name == "judge")
            .unwrap()
    };
    assert!(matches!(judge(&host).status, PluginStatus::Failed(_)));

    let (revived, errors) = host.revive_failed();
    assert_eq!(revived, ["judge"]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(judge(&host).status, PluginStatus::Ok);
    // The fresh instance is called (and, configured to, panics again), not refused.
    let err = host
        .assess(&ReadinessCriteria::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Panicked { .. }), "{err}");
    // Nothing else had failed: a second revive re-creates nothing but the judge.
    assert_eq!(host.revive_failed().0, ["judge"]);
    assert_eq!(host.revive_failed().0, Vec::<String>::new());
}
