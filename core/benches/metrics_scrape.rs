//! Scrape latency of `GET /metrics` with many pools, and whether it grows with the
//! requests served.
//!
//! A real [`Proxy`] with `--pools` source pools (default 1,000), each mirrored to one
//! mirror pool, the bundled `mirror-stats` plugin, and the real metrics server on a
//! local port. "Traffic on all pools" is generated at the two places the query path
//! touches metrics: the pool counters (`PoolStats`) and the mirror events sent to the
//! plugin host (the same `EventSink::send` the mirror worker calls). Then scrapes are
//! timed over HTTP, once after a little traffic and again after a million more events.
//! Before every timed scrape each pool serves one more request (and the event thread
//! has consumed it), so no scrape finds a database unchanged since the previous one.
//!
//! ```sh
//! cargo build --release -p pgdog-mirror-stats
//! cargo bench -p pgdog --bench metrics_scrape               # 1,000 pools
//! cargo bench -p pgdog --bench metrics_scrape -- --pools 100  # other sizes
//! cargo bench -p pgdog --bench metrics_scrape -- --wide       # realistic latency spread
//! cargo bench -p pgdog --bench metrics_scrape -- --smoke      # quick check
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog::config::Config;
use pgdog::metrics::read;
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
    let wide = args.iter().any(|a| a == "--wide");

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
        let proxy = Proxy::new(config, dir.join("pgdog.toml"), Arc::new(host)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = pgdog::net::Listener::from_tcp("metrics", listener);
        tokio::spawn(pgdog::metrics::serve(proxy.clone(), listener));
        let mut traffic = Traffic {
            names: (0..pools).map(|i| Arc::from(format!("db{i:04}"))).collect(),
            sent: 0,
            wide,
            seed: 0x9e37_79b9_7f4a_7c15,
        };

        traffic.send(&proxy, 10 * pools);
        proxy.plugins.flush().await;
        let (median1, p99_1, cpu1, bytes, lines) = measure(&proxy, &mut traffic, port, scrapes).await;
        println!(
            "{pools} pools, {} events so far: scrape median {median1:.2} ms, p99 {p99_1:.2} ms, \
             CPU {cpu1:.2} ms ({bytes} bytes, {lines} series lines)",
            10 * pools
        );
        traffic.send(&proxy, more_events);
        proxy.plugins.flush().await;
        let (median2, p99_2, cpu2, _, _) = measure(&proxy, &mut traffic, port, scrapes).await;
        println!(
            "after {more_events} more events:        scrape median {median2:.2} ms, p99 {p99_2:.2} ms, \
             CPU {cpu2:.2} ms"
        );
        println!(
            "growth: {:+.1}% (median)",
            (median2 / median1 - 1.0) * 100.0
        );
        breakdown(&proxy).await;
        proxy.shutdown.cancel();
    });
}

/// Requests spread over every pool, at the two places the query path touches metrics:
/// pool counters and one mirror event each (2 % errors). Latencies: by default
/// `200 + n % 4800` µs for the n-th request (so each of 1,000 pools sees only some two
/// dozen distinct values); with `--wide`, drawn log-uniformly between 0.2 and 50 ms, so
/// each pool's histogram fills up as real traffic's would.
struct Traffic {
    names: Vec<Arc<str>>,
    sent: usize,
    wide: bool,
    seed: u64,
}

impl Traffic {
    fn send(&mut self, proxy: &Proxy, events: usize) {
        for _ in 0..events {
            let i = self.sent;
            self.sent += 1;
            let db = &self.names[i % self.names.len()];
            if let Some(pool) = proxy.runtime().pools.get(db) {
                let s = pool.stats();
                s.queries.fetch_add(1, Ordering::Relaxed);
                s.bytes_received.fetch_add(40, Ordering::Relaxed);
                s.bytes_sent.fetch_add(120, Ordering::Relaxed);
            }
            // One in 50 fails.
            let ev = match i % 50 {
                0 => MirrorEvent::error(db.clone(), ErrorCategory::Query, Some(*b"42P01")),
                _ => MirrorEvent::mirrored(db.clone(), Duration::from_micros(self.latency_us(i))),
            };
            proxy.plugins.events().send(ev);
        }
    }

    fn latency_us(&mut self, i: usize) -> u64 {
        if !self.wide {
            return 200 + (i % 4800) as u64;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let u = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        (200.0 * 250f64.powf(u)) as u64
    }
}

/// Where a scrape's time goes, median of 20 runs of each step: the plugin calls (wall
/// ms, they run on the blocking pool), then the pipeline's steps in CPU time of the
/// thread running them (ms), so that other work on the machine does not blur them:
/// the SDK's collection alone (through a manual reader, as the OTLP push collects),
/// `Registry::gather` (the SDK's collection, the exporter's conversion to Prometheus
/// families, the registry's merge and sort, and the latency histogram), and the text
/// encoding.
async fn breakdown(proxy: &Arc<Proxy>) {
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let snapshot = proxy.plugins.snapshot().await.unwrap();
    let buckets: usize = snapshot
        .databases
        .iter()
        .map(|d| d.mirror_latency.buckets.len())
        .sum();
    println!(
        "snapshot: {} databases, {buckets} latency buckets in all",
        snapshot.databases.len()
    );
    let criteria = pgdog::plugins::criteria_of(&proxy.config().general);
    let mut wall = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..20 {
        let start = Instant::now();
        drop(
            proxy
                .plugins
                .scrape(&pgdog::metrics::LATENCY_BOUNDS_US, &criteria)
                .await,
        );
        wall[0].push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        drop(proxy.plugins.metric_points().await);
        wall[1].push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        drop(read::sample(read::view(proxy)).await);
        wall[2].push(start.elapsed().as_secs_f64() * 1e3);
    }
    let [scrape_call, points, sample] = wall.map(median);
    println!(
        "plugin calls (wall ms): scrape call (snapshot at bounds + verdicts) {scrape_call:.2}, \
         metric_points {points:.2}; whole sample (flush + calls + pool counters) {sample:.2}"
    );
    let view = read::view(proxy);
    let options = pgdog::metrics::Options {
        plugin_families: view.plugins.metric_families().await,
        pools: view.pools.len(),
        otlp: true,
    };
    let metrics = pgdog::metrics::Metrics::new(&options).unwrap();
    let mut samples = Vec::new();
    for _ in 0..60 {
        samples.push(read::sample(read::view(proxy)).await);
    }
    let (collect, gather, encode, series) = tokio::task::spawn_blocking(move || {
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        let mut series = 0;
        for _ in 0..20 {
            let start = thread_cpu_ms();
            let collected = metrics.collect_otlp(samples.pop().unwrap());
            t[0].push(thread_cpu_ms() - start);
            series = collected.as_ref().map_or(0, |(rm, _)| count_points(rm));
            let (gather, encode) = metrics.render_steps(samples.pop().unwrap());
            t[1].push(gather);
            t[2].push(encode);
        }
        let [a, b, c] = t;
        (a, b, c, series)
    })
    .await
    .unwrap();
    let (collect, gather, encode) = (median(collect), median(gather), median(encode));
    println!(
        "pipeline (CPU ms): SDK collect {collect:.2} ({series} data points, {:.2} us each); \
         gather (SDK collect + exporter conversion + registry) {gather:.2}, so conversion \
         {:.2}; text encoding {encode:.2}",
        collect * 1e3 / series.max(1) as f64,
        gather - collect,
    );
}

fn count_points(rm: &opentelemetry_sdk::metrics::data::ResourceMetrics) -> usize {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    let mut n = 0;
    for scope in rm.scope_metrics() {
        for m in scope.metrics() {
            n += match m.data() {
                AggregatedMetrics::F64(MetricData::Gauge(g)) => g.data_points().count(),
                AggregatedMetrics::F64(MetricData::Sum(s)) => s.data_points().count(),
                _ => 0,
            };
        }
    }
    n
}

/// Median and p99 of `n` scrapes (ms), the median CPU time the process spent during a
/// scrape (ms: server and client together, all threads; what a scrape costs whatever
/// else runs on the machine), and the size of the last one. Before each scrape, one
/// request per pool, consumed by the plugins (not timed).
async fn measure(
    proxy: &Arc<Proxy>,
    traffic: &mut Traffic,
    port: u16,
    n: usize,
) -> (f64, f64, f64, usize, usize) {
    let mut times = Vec::with_capacity(n);
    let mut cpu = Vec::with_capacity(n);
    let mut body = String::new();
    for _ in 0..n {
        traffic.send(proxy, traffic.names.len());
        proxy.plugins.flush().await;
        let (t, c, b) = tokio::task::spawn_blocking(move || {
            let (start, cpu_start) = (Instant::now(), cpu_ms());
            let body = get(port);
            let t = start.elapsed().as_secs_f64() * 1e3;
            (t, cpu_ms() - cpu_start, body)
        })
        .await
        .unwrap();
        times.push(t);
        cpu.push(c);
        body = b;
    }
    assert!(
        body.starts_with("HTTP/1.1 200"),
        "{}",
        &body[..body.len().min(300)]
    );
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let exposition = exposition(&body);
    let lines = exposition.lines().filter(|l| !l.starts_with('#')).count();
    (
        times[n / 2],
        times[n * 99 / 100],
        cpu[n / 2],
        exposition.len(),
        lines,
    )
}

/// The body of an HTTP/1.1 response, de-chunked.
fn exposition(response: &str) -> String {
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let (mut rest, mut whole) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return whole;
        }
        whole.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// CPU time of the calling thread so far, ms.
fn thread_cpu_ms() -> f64 {
    // SAFETY: clock_gettime only writes the struct it is given.
    let t = unsafe {
        let mut t = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// User + system CPU time of the whole process so far, ms.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
