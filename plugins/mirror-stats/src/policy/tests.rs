use super::*;
use crate::testing::{error, ok};
use crate::Stats;
use pgdog_plugin_api::ErrorCategory;

/// The overall reasons' messages.
fn messages(report: &ReadinessReport) -> Vec<String> {
    report
        .overall
        .reasons
        .iter()
        .map(|r| r.message.to_string())
        .collect()
}

/// `ok_n` successes at 2 ms and `err_n` connection errors, on database "db".
fn snapshot(ok_n: u64, err_n: u64) -> StatsSnapshot {
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..ok_n).map(|_| ok(0, 2_000)).collect();
    events.extend((0..err_n).map(|_| error(0, ErrorCategory::CONNECTION)));
    stats.consume_events(&["db"], &events);
    stats.snapshot()
}

fn criteria() -> ReadinessCriteria {
    ReadinessCriteria::default() // 5 %, 1000 ms, 100 requests, no min runtime
}

#[test]
fn confidence_low_with_little_evidence() {
    let c = confidence(&snapshot(10, 0).overall, &criteria());
    assert!(c < 30.0, "{c}");
}

#[test]
fn confidence_high_with_much_evidence() {
    let c = confidence(&snapshot(10_000, 0).overall, &criteria());
    assert!(c > 99.0, "{c}");
}

/// The README's example: 5 errors in 100 against a 5 % limit was READY at 39 %
/// confidence; the rate is the limit, so nothing shows it within.
#[test]
fn five_errors_in_a_hundred_is_not_ready_and_says_why() {
    let report = assess("mirror-stats", &snapshot(95, 5), &criteria());
    let rows = report.to_text_rows();
    assert_eq!(rows[0], "Status: NOT READY");
    assert!(rows.contains(&"Error Rate: 5.00%".to_string()), "{rows:?}");
    assert!(rows.contains(&"Success Rate: 95.00%".to_string()));
    assert!(rows.contains(&"Total Requests: 100".to_string()));
    assert!(
        rows.contains(&"Confidence Score: 0.0%".to_string()),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with(
            "Reason: Error rate 5.00% (5 of 100 executed) is not shown to be within the maximum 5.00% (confidence 0.0% < 95.0% required"
        )),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with(
            "Criterion: error rate 5.00% (5 of 100 executed), maximum 5.00%: confidence 0.0%"
        )),
        "{rows:#?}"
    );
}

/// 0 errors in 300: the error rate is shown within 5 % at once, but 300 latency samples
/// cannot show a p99 (nor 300 offered requests a 1 % drop rate) with 95 % confidence:
/// that takes a few hundred more.
#[test]
fn zero_errors_in_300_then_enough_for_the_one_percent_criteria() {
    let report = assess("mirror-stats", &snapshot(300, 0), &criteria());
    let names: Vec<_> = report
        .overall
        .reasons
        .iter()
        .map(|r| r.criterion.as_str())
        .collect();
    assert_eq!(
        names,
        ["max_latency", "max_drop_rate"],
        "{:?}",
        report.overall.reasons
    );
    let error = pgdog_plugin_api::read_confidences(&report.overall.extensions)
        .into_iter()
        .find(|c| c.criterion == "max_error_rate")
        .unwrap();
    assert!(error.confidence > 99.99, "{error:?}");
    let n = pgdog_stats_math::anytime::trials_needed(0, 300, 0.01, 0.95).unwrap();
    assert!(
        assess("mirror-stats", &snapshot(n, 0), &criteria())
            .overall
            .ready
    );
    assert!(
        !assess("mirror-stats", &snapshot(n - 1, 0), &criteria())
            .overall
            .ready
    );
    // 1 % errors in 1,000 against 5 %: READY; 10 % and 20 %: not.
    assert!(
        assess("mirror-stats", &snapshot(990, 10), &criteria())
            .overall
            .ready
    );
    for errors in [100, 200] {
        let report = assess(
            "mirror-stats",
            &snapshot(1000 - errors, errors),
            &criteria(),
        );
        assert!(!report.overall.ready);
        assert!(report.overall.reasons[0].message.starts_with("Error rate"));
    }
}

/// A lower required confidence is READY on less evidence.
#[test]
fn min_confidence_is_honoured() {
    let lenient = criteria().with_confidence_and_coverage(0.8, 0.01);
    assert!(
        assess("mirror-stats", &snapshot(300, 0), &lenient)
            .overall
            .ready
    );
    assert!(
        !assess("mirror-stats", &snapshot(300, 0), &criteria())
            .overall
            .ready
    );
}

#[test]
fn too_few_requests_is_not_ready_with_numbers() {
    let report = assess("mirror-stats", &snapshot(5, 0), &criteria());
    assert!(!report.overall.ready);
    let rows = report.to_text_rows();
    assert_eq!(rows[0], "Status: NOT READY");
    assert!(
        rows.contains(&"Reason: Total requests 5 < minimum 100".to_string()),
        "{rows:?}"
    );
}

#[test]
fn every_failing_criterion_is_a_reason() {
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..150).map(|_| ok(0, 2_000_000)).collect(); // 2 s each
    events.extend((0..50).map(|_| error(0, ErrorCategory::QUERY)));
    stats.consume_events(&["db"], &events);
    let criteria = ReadinessCriteria {
        min_runtime_secs: 3600.0,
        ..criteria()
    };
    let report = assess("mirror-stats", &stats.snapshot(), &criteria);
    let names: Vec<_> = report
        .overall
        .reasons
        .iter()
        .map(|r| r.criterion.as_str())
        .collect();
    assert!(names.contains(&"min_runtime"), "{names:?}");
    assert!(names.contains(&"max_error_rate"));
    assert!(names.contains(&"max_latency"));
    let msgs = messages(&report);
    assert!(
        msgs.iter().any(
            |m| m.starts_with("Error rate 25.00% > maximum 5.00% (confidence 0.0%")
                && m.ends_with("; mirror errors: other 50")
        ),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("p99 latency 2")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("Database db: Error rate")),
        "{msgs:?}"
    );
    assert_eq!(report.databases.len(), 1);
    assert!(!report.databases[0].ready);
}

#[test]
fn shared_errors_are_not_the_mirrors_and_mismatches_block() {
    use crate::testing::{compared, shared_error};
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..1000).map(|_| compared(0, 1, 500, 500, false)).collect();
    events.extend((0..20).map(|_| shared_error(0, 2)));
    stats.consume_with_texts(&["db"], &events, |fp| {
        Some(if fp == 1 {
            "select a from t where id = ?"
        } else {
            "select * from gone"
        })
    });
    let snap = stats.snapshot();
    let c = snap.overall.counts;
    assert_eq!(
        (c.errors, c.shared_errors, c.mismatched, c.compared),
        (20, 20, 0, 1020)
    );
    let report = assess("mirror-stats", &snap, &criteria());
    // 20 errors of 1,020, all shared: an error rate of 0, READY.
    assert_eq!(report.overall.error_rate, 0.0);
    assert!(report.overall.ready, "{:?}", report.overall.reasons);
    let rows = report.to_text_rows();
    assert!(
        rows.contains(&"Errors: 0 mirror only, 20 on both sides (not counted)".to_string()),
        "{rows:?}"
    );

    // Two rows that differ: NOT READY, the reason names the fingerprint.
    stats.consume_with_texts(
        &["db"],
        &[
            compared(0, 3, 500, 500, true),
            compared(0, 3, 500, 500, true),
        ],
        |_| Some("select b from u"),
    );
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(!report.overall.ready);
    let reason = report
        .overall
        .reasons
        .iter()
        .find(|r| r.criterion.as_str() == "max_mismatch_rate")
        .expect("a mismatch reason");
    assert!(
        reason
            .message
            .contains("Result mismatches 2 of 1022 compared"),
        "{}",
        reason.message
    );
    assert!(
        reason
            .message
            .contains("\"select b from u\" (2 of 2: same 3 rows, different contents)"),
        "{}",
        reason.message
    );
    assert_eq!(report.overall.confidence, 0.0);
    // A tolerated rate: READY again, with the mismatch factor in the confidence.
    let lenient = ReadinessCriteria {
        max_mismatch_rate: 0.05,
        ..criteria()
    };
    let report = assess("mirror-stats", &stats.snapshot(), &lenient);
    assert!(report.overall.ready, "{:?}", report.overall.reasons);
    assert!(
        report.overall.confidence > 90.0,
        "{}",
        report.overall.confidence
    );
}

#[test]
fn latency_regressions_are_named_per_fingerprint() {
    use crate::testing::compared;
    let mut stats = Stats::new(3);
    // Fingerprint 7 is 40x slower on the mirror (8 ms against 0.2 ms); 8 is as fast.
    let mut events: Vec<_> = (0..30).map(|_| compared(0, 7, 8_000, 200, false)).collect();
    events.extend((0..300).map(|_| compared(0, 8, 210, 200, false)));
    // Slower by a ratio but by less than a millisecond: noise, not blamed.
    events.extend((0..30).map(|_| compared(0, 9, 600, 100, false)));
    stats.consume_with_texts(&["db"], &events, |fp| {
        Some(match fp {
            7 => "select pad from big where k = ?",
            8 => "select 1",
            _ => "select 2",
        })
    });
    let slow = |criteria: &ReadinessCriteria| -> Vec<String> {
        assess("mirror-stats", &stats.snapshot(), criteria)
            .overall
            .reasons
            .iter()
            .filter(|r| r.criterion.as_str() == "max_latency_ratio")
            .map(|r| r.message.to_string())
            .collect()
    };
    // The one fingerprint; the overall p99s differ by 7.8 ms, under the floor of
    // 10 % of the 1000 ms latency budget.
    let reasons = slow(&criteria());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("\"select pad from big where k = ?\" is 39.7x slower on the mirror (median of 30 paired ratios"),
        "{reasons:?}"
    );
    // With a 50 ms budget (floor 5 ms) the overall p99 counts too.
    let tight = ReadinessCriteria {
        max_latency_ms: 50.0,
        ..criteria()
    };
    let reasons = slow(&tight);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("Mirror p99 8.0ms is 40.0x"),
        "{reasons:?}"
    );
    // Too few samples: not judged yet.
    let mut few = Stats::new(3);
    few.consume_events(
        &["db"],
        &(0..10)
            .map(|_| compared(0, 7, 8_000, 200, false))
            .collect::<Vec<_>>(),
    );
    let report = assess("mirror-stats", &few.snapshot(), &criteria());
    assert!(report
        .overall
        .reasons
        .iter()
        .all(|r| r.criterion.as_str() != "max_latency_ratio"));
}

#[test]
fn too_many_drops_is_not_ready() {
    use crate::testing::dropped;
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..990).map(|_| ok(0, 2_000)).collect();
    events.extend((0..10).map(|_| dropped(0)));
    stats.consume_events(&["db"], &events);
    // 1 % dropped: at the limit, not shown within it.
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(!report.overall.ready);
    assert!(
        messages(&report)[0].starts_with(
            "Dropped 10 of 1000 requests (1.00%), not shown to be within the maximum 1.00%"
        ),
        "{:?}",
        messages(&report)
    );
    stats.consume_events(&["db"], &(0..20).map(|_| dropped(0)).collect::<Vec<_>>());
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(!report.overall.ready);
    let msgs = messages(&report);
    assert!(
        msgs.contains(
            &"Dropped 30 of 1020 requests (2.94%) > maximum 1.00% (confidence 0.0%): the mirror fell behind (mirror_queue full)"
                .to_string()
        ),
        "{msgs:?}"
    );
}

/// A drop is explained by what caused it: the queue, or the proxy's mirror pool.
#[test]
fn drops_name_their_cause() {
    use crate::testing::dropped;
    let mut stats = Stats::new(3);
    let exhausted = |_| pgdog_plugin_api::MirrorEvent {
        drop_reason: pgdog_plugin_api::DropReason::POOL_EXHAUSTED,
        ..dropped(0)
    };
    let mut events: Vec<_> = (0..100).map(|_| ok(0, 2_000)).collect();
    events.extend((0..30).map(exhausted));
    stats.consume_events(&["db"], &events);
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    let msgs = messages(&report);
    assert!(
        msgs.iter().any(|m| m.starts_with("Dropped 30 of 130 requests")
            && m.ends_with("not for a full mirror_queue: the mirror pool had no free connection (its pool_size), or pgdog was shutting down")),
        "{msgs:?}"
    );
    stats.consume_events(&["db"], &(0..10).map(|_| dropped(0)).collect::<Vec<_>>());
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    let msgs = messages(&report);
    assert!(
        msgs.iter().any(|m| m.ends_with("10 as the mirror fell behind (mirror_queue full), 30 as the mirror pool had no free connection (its pool_size) or pgdog was shutting down")),
        "{msgs:?}"
    );
}

/// The verdicts are the report's ready and confidence, whichever criteria fail.
#[test]
fn verdicts_agree_with_the_report() {
    use crate::testing::{compared, dropped, shared_error};
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..600).map(|_| ok(0, 2_000)).collect();
    events.extend((0..30).map(|_| error(1, ErrorCategory::QUERY)));
    events.extend((0..120).map(|_| ok(1, 2_000_000)));
    events.extend((0..40).map(|_| compared(2, 7, 8_000, 200, false)));
    events.extend((0..200).map(|_| compared(2, 8, 500, 500, false)));
    events.push(compared(3, 9, 500, 500, true));
    events.extend((0..150).map(|_| compared(3, 9, 500, 500, false)));
    events.extend((0..5).map(|_| shared_error(3, 10)));
    events.extend((0..50).map(|_| dropped(4)));
    events.extend((0..5).map(|_| ok(5, 900)));
    stats.consume_with_texts(&["a", "b", "c", "d", "e", "f"], &events, |_| {
        Some("select ?")
    });
    let snap = stats.snapshot();
    let mut some_ready = false;
    for criteria in [
        criteria(),
        ReadinessCriteria {
            max_mismatch_rate: 0.05,
            max_error_rate: 0.5,
            max_drop_rate: 1.0,
            max_latency_ms: 5_000.0,
            ..criteria()
        },
        ReadinessCriteria {
            min_runtime_secs: 3600.0,
            max_latency_ratio: 0.0,
            ..criteria()
        },
        ReadinessCriteria {
            min_requests: 1,
            max_error_rate: 1.0,
            max_mismatch_rate: 1.0,
            max_drop_rate: 1.0,
            max_latency_ms: 10_000.0,
            max_latency_ratio: 100.0,
            ..criteria()
        },
    ] {
        let report = assess("mirror-stats", &snap, &criteria);
        some_ready |= report.databases.iter().any(|d| d.ready);
        assert_eq!(
            verdicts(&snap, &criteria),
            Verdicts::of(&report),
            "{criteria:?}"
        );
    }
    assert!(some_ready);
}

/// A table missing on the mirror: one statement in a thousand fails with 42P01 on the
/// mirror only. The error rate is fine; the schema drift blocks, naming the statement.
#[test]
fn schema_drift_blocks_on_its_own_even_when_rare() {
    use crate::testing::{compared, mirror_only_error};
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..1998)
        .map(|i| compared(0, i % 5, 500, 500, false))
        .collect();
    events.push(mirror_only_error(0, 77, b"42P01"));
    events.push(mirror_only_error(0, 77, b"42P01"));
    stats.consume_with_texts(&["db"], &events, |fp| {
        Some(if fp == 77 {
            "select * from only_on_primary where id = ?"
        } else {
            "select ?"
        })
    });
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(!report.overall.ready);
    let reasons: Vec<_> = report
        .overall
        .reasons
        .iter()
        .map(|r| (r.criterion.as_str(), r.message.as_str()))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert_eq!(reasons[0].0, "schema_drift");
    assert!(
        reasons[0].1.starts_with(
            "Schema drift on the mirror: schema drift 2 (42P01 undefined table 2; worst 000000000000004d \"select * from only_on_primary where id = ?\" (2))"
        ),
        "{reasons:#?}"
    );
    let rows = report.to_text_rows();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("Mirror Errors by Class: schema drift 2")),
        "{rows:#?}"
    );
    // The database's own section says it too; the overall does not repeat it.
    assert_eq!(
        report.databases[0].reasons[0].criterion.as_str(),
        "schema_drift"
    );
    assert_eq!(
        verdicts(&stats.snapshot(), &criteria()),
        Verdicts::of(&report)
    );

    // Data errors at the same rate do not block by themselves.
    let mut stats = Stats::new(3);
    let mut events: Vec<_> = (0..1998)
        .map(|i| compared(0, i % 5, 500, 500, false))
        .collect();
    events.push(mirror_only_error(0, 78, b"22012"));
    events.push(mirror_only_error(0, 78, b"22012"));
    stats.consume_events(&["db"], &events);
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(report.overall.ready, "{:?}", report.overall.reasons);
}

/// A long tail of one-off statements: not covered; once the tail repeats, covered.
#[test]
fn a_long_tail_is_not_covered_until_it_repeats() {
    use crate::testing::compared;
    let mut stats = Stats::new(3);
    // 1,000 requests of 5 statements, and 50 statements seen once: ~4.8 % unseen.
    let mut events: Vec<_> = (0..1000)
        .map(|i| compared(0, i % 5, 500, 500, false))
        .collect();
    events.extend((100..150).map(|fp| compared(0, fp, 500, 500, false)));
    stats.consume_events(&["db"], &events);
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(!report.overall.ready);
    let coverage = report
        .overall
        .reasons
        .iter()
        .find(|r| r.criterion.as_str() == "max_unseen")
        .expect("a coverage reason");
    assert_eq!(
        coverage.message.as_str(),
        "Coverage: an estimated 4.76% of traffic is statements not yet mirrored (50 seen once in 1050 requests) > maximum 1.00%"
    );
    // The tail comes again: nothing is seen once any more.
    let again: Vec<_> = (100..150)
        .map(|fp| compared(0, fp, 500, 500, false))
        .collect();
    stats.consume_events(&["db"], &again);
    let report = assess("mirror-stats", &stats.snapshot(), &criteria());
    assert!(report.overall.ready, "{:?}", report.overall.reasons);
    let rows = report.to_text_rows();
    assert!(
        rows.contains(&"Coverage: an estimated 0.00% of traffic is statements not yet mirrored (0 seen once in 1100 requests)".to_string()),
        "{rows:#?}"
    );
}
