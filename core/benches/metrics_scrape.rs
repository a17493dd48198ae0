//! Scrape latency of `GET /metrics` with many pools, and whether it grows with the
//! requests served.
//!
//! A real [`Proxy`] with `--pools` source pools (default 1,000), each mirrored to one
//! mirror pool, the bundled `mirror-stats` plugin, and the real metrics server on a
//! local port. "Traffic on all pools" is generated at the two places the query path
//! touches metrics: the pool counters (`PoolStats`) and the mirror events sent to the
//! plugin host (the same `EventSink::send` the mirror worker calls). Then scrapes are
//! timed over HTTP, once after a little traffic and again after a million more events.
//!
//! ```sh
//! cargo build --release -p pgdog-mirror-stats
//! cargo bench -p pgdog --bench metrics_scrape               # 1,000 pools
//! cargo bench -p pgdog --bench metrics_scrape -- --smoke    # quick check
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog::config::Config;
use pgdog::plugins::{ErrorCategory, LoadOptions, MirrorEvent, PluginHost};
use pgdog::proxy::Proxy;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke") || !args.iter().any(|a| a == "--bench");
    let pools: usize = args
        .iter()
        .position(|a| a == "--pools")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if smoke { 50 } else { 1000 });
    let scrapes = if smoke { 20 } else { 200 };
    let more_events = if smoke { 20_000 } else { 1_000_000 };

    let mut text = String::from("[general]\nport = 1\nadmin_port = 2\nmetrics_port = 3\n");
    for i in 0..pools {
        text.push_str(&format!(
            "\n[[pools]]\nname = \"db{i:04}\"\ndatabase = \"pgdog\"\nmirror_of = \"mirror\"\n"
        ));
    }
    text.push_str("\n[[pools]]\nname = \"mirror\"\ndatabase = \"mirrordb\"\n");
    let dir = std::env::temp_dir();
    let config = Config::parse(&text, &dir.join("pgdog.toml")).expect("config");

    // <target>/<profile>/deps/metrics_scrape-<hash> -> <target>/<profile>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir: PathBuf = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let options = LoadOptions {
        binary_dir: Some(profile_dir),
        ..LoadOptions::default()
    };
    let host = PluginHost::load(&[], &options).unwrap_or_else(|e| {
        panic!("{e}\n(build the plugin first: cargo build --release -p pgdog-mirror-stats)")
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let proxy = Proxy::new(config, dir.join("pgdog.toml"), Arc::new(host));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(pgdog::metrics::serve(proxy.clone(), listener));
        let names: Vec<Arc<str>> = (0..pools).map(|i| Arc::from(format!("db{i:04}"))).collect();

        traffic(&proxy, &names, 10 * pools);
        proxy.plugins.flush().await;
        let (median1, p99_1, bytes, lines) = measure(port, scrapes).await;
        println!(
            "{pools} pools, {} events so far: scrape median {median1:.2} ms, p99 {p99_1:.2} ms \
             ({bytes} bytes, {lines} series lines)",
            10 * pools
        );
        traffic(&proxy, &names, more_events);
        proxy.plugins.flush().await;
        let (median2, p99_2, _, _) = measure(port, scrapes).await;
        println!(
            "after {more_events} more events:        scrape median {median2:.2} ms, p99 {p99_2:.2} ms"
        );
        println!(
            "growth: {:+.1}% (median)",
            (median2 / median1 - 1.0) * 100.0
        );
        breakdown(&proxy);
        proxy.shutdown.cancel();
    });
}

/// `events` requests spread over every pool: pool counters and one mirror event each
/// (2 % errors, latencies 0.2-5 ms).
fn traffic(proxy: &Proxy, names: &[Arc<str>], events: usize) {
    for i in 0..events {
        let db = &names[i % names.len()];
        if let Some(pool) = proxy.pools.get(db) {
            let s = pool.stats();
            s.queries.fetch_add(1, Ordering::Relaxed);
            s.bytes_received.fetch_add(40, Ordering::Relaxed);
            s.bytes_sent.fetch_add(120, Ordering::Relaxed);
        }
        let ev = if i % 50 == 0 {
            MirrorEvent::error(db.clone(), ErrorCategory::Query, Some(*b"42P01"))
        } else {
            MirrorEvent::mirrored(db.clone(), Duration::from_micros(200 + (i % 4800) as u64))
        };
        proxy.events.send(ev);
    }
}

/// Where a scrape's time goes (median of 20 runs of each step, ms).
fn breakdown(proxy: &Arc<Proxy>) {
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..20)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[10]
    };
    let snapshot = proxy.plugins.snapshot().unwrap();
    let criteria = pgdog::plugins::criteria_of(&proxy.config().general);
    let metrics = pgdog::metrics::Metrics::for_proxy(proxy).unwrap();
    println!(
        "breakdown (ms): plugin snapshot {:.2}, plugin metric_points {:.2}, assess {:.2}, \
         whole collect {:.2}, collect + render {:.2}",
        time(&|| drop(proxy.plugins.snapshot())),
        time(&|| drop(proxy.plugins.metric_points())),
        time(&|| drop(proxy.plugins.assess_snapshot(&snapshot, &criteria))),
        time(&|| drop(pgdog::metrics::Scrape::collect(proxy))),
        time(&|| drop(metrics.render(pgdog::metrics::Scrape::collect(proxy)))),
    );
}

/// Median and p99 of `n` scrapes (ms), and the size of the last one.
async fn measure(port: u16, n: usize) -> (f64, f64, usize, usize) {
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::with_capacity(n);
        let mut body = String::new();
        for _ in 0..n {
            let start = Instant::now();
            body = get(port);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        assert!(
            body.starts_with("HTTP/1.1 200"),
            "{}",
            &body[..body.len().min(300)]
        );
        times.sort_by(f64::total_cmp);
        let lines = body.lines().filter(|l| !l.starts_with('#')).count();
        (times[n / 2], times[n * 99 / 100], body.len(), lines)
    })
    .await
    .unwrap()
}

fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
