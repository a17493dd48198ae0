//! Micro-benchmark of the plugin event path: `EventSink::send` on the caller's side,
//! and end to end (channel -> batching thread -> ABI conversion -> mirror-stats plugin).
//!
//! ```sh
//! cargo build --release -p pgdog-mirror-stats
//! cargo bench -p pgdog --bench plugin_events            # full run
//! cargo bench -p pgdog --bench plugin_events -- --smoke  # quick check for CI
//! # (`cargo test --benches` runs the smoke mode too)
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog::plugins::{ErrorCategory, LoadOptions, MirrorEvent, PluginHost, QueryRef};

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) run small.
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke") || !args.iter().any(|a| a == "--bench");
    let events: usize = if smoke { 20_000 } else { 2_000_000 };
    let rounds = if smoke { 1 } else { 5 };

    // <target>/<profile>/deps/plugin_events-<hash> -> <target>/<profile>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir: PathBuf = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let options = LoadOptions {
        binary_dir: Some(profile_dir),
        ..LoadOptions::default()
    };
    let host = PluginHost::load(&[], &options).unwrap_or_else(|e| {
        panic!("{e}\n(build the plugin first: cargo build --release -p pgdog-mirror-stats)")
    });
    let sink = host.events();
    let databases: Vec<Arc<str>> = ["primary", "orders", "users", "audit"]
        .into_iter()
        .map(Arc::from)
        .collect();

    // `--compare`: events as result comparison produces them (a fingerprint out of 50, and
    // a verdict), to measure what comparison adds to the event path.
    let compare = std::env::args().any(|a| a == "--compare");
    let queries: Vec<QueryRef> = (0..50u64)
        .map(|i| QueryRef {
            fingerprint: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            text: Arc::from(format!("select * from t{i} where id = ?")),
        })
        .collect();
    let compared = pgdog_plugin_api::Comparison {
        verdict: pgdog_plugin_api::Verdict::MATCH,
        ..Default::default()
    };

    println!(
        "plugin event path{}, {events} events per round, {rounds} rounds (best shown)",
        if compare { " with comparison" } else { "" }
    );
    let mut best_send = f64::MAX;
    let mut best_total = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..events {
            let db = databases[i % databases.len()].clone();
            let mut ev = if i % 50 == 0 {
                MirrorEvent::error(db, ErrorCategory::Query, Some(*b"42P01"))
            } else {
                MirrorEvent::mirrored(db, Duration::from_micros(200 + (i % 5000) as u64))
                    .with_primary_latency(Duration::from_micros(150))
            };
            if compare {
                ev.query = Some(queries[i % queries.len()].clone());
                ev.comparison = compared;
            }
            sink.send(ev);
            // The channel to the plugins is bounded (flat out, this loop outruns the
            // plugin thread): wait for it now and then, well before it fills.
            if i % (pgdog::plugins::sink::EVENT_QUEUE / 2) == 0 {
                sink.flush_blocking();
            }
        }
        let sent = start.elapsed();
        sink.flush_blocking();
        let total = start.elapsed();
        best_send = best_send.min(sent.as_nanos() as f64 / events as f64);
        best_total = best_total.min(total.as_nanos() as f64 / events as f64);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let snap = rt.block_on(host.snapshot()).expect("snapshot");
    assert_eq!(host.dropped_events(), 0);
    assert_eq!(snap.overall.counts.total as usize, events * rounds);
    println!("send (caller side):   {best_send:8.1} ns/event");
    println!(
        "end to end (flushed): {best_total:8.1} ns/event = {:.2} M events/s",
        1e3 / best_total
    );

    // Reading the results (what the admin port and the metrics endpoint do).
    let start = Instant::now();
    let n = if smoke { 10 } else { 200 };
    for _ in 0..n {
        let _ = rt
            .block_on(host.assess(&Default::default()))
            .expect("assess");
    }
    println!(
        "assess (snapshot + verdict, {} databases): {:.1} us",
        databases.len(),
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let start = Instant::now();
    for _ in 0..n {
        let _ = rt.block_on(host.metric_points());
    }
    println!(
        "metric_points: {:.1} us",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
