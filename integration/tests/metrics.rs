//! The metrics endpoint end to end: real PostgreSQL clusters, the real pgdog binary, a real
//! Prometheus scraping it.
//!
//! Every wait polls with a deadline (no fixed sleeps): mirror events reach the stats plugin
//! asynchronously, and a scrape flushes them, so the expected value shows up quickly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pgdog_integration::{http_get, ConfigBuilder, HttpResponse, PgCluster, Pgdog, Prometheus};

const DEADLINE: Duration = Duration::from_secs(30);

/// A cluster with the primary's database (`pgdog`) and the mirror's (`mirrordb`).
async fn cluster() -> PgCluster {
    let cluster = PgCluster::start().await.unwrap();
    cluster.create_database("mirrordb").await.unwrap();
    cluster
}

/// pgdog with `sources` each mirrored to pool `mirror`, plus `extra` [general] lines.
async fn pgdog(cluster: &PgCluster, sources: &[&str], general: &[&str]) -> Pgdog {
    let mut b = ConfigBuilder::new().set("pool_size", 4);
    for line in general {
        b = b.general(line);
    }
    for source in sources {
        b = b
            .pool(source, cluster, "pgdog")
            .pool_set(source, "mirror_of", "mirror");
    }
    let mut pgdog = b.pool("mirror", cluster, "mirrordb").start().await.unwrap();
    let port = pgdog.metrics_port();
    pgdog
        .wait_for_port(port, Duration::from_secs(10))
        .await
        .unwrap();
    pgdog
}

async fn get(pgdog: &Pgdog, path: &str) -> HttpResponse {
    http_get(pgdog.host(), pgdog.metrics_port(), path)
        .await
        .unwrap()
}

async fn scrape(pgdog: &Pgdog) -> String {
    let r = get(pgdog, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn run_queries(pgdog: &Pgdog, db: &str, n: usize) {
    let client = pgdog.connect("pgdog", "pgdog", db).await.unwrap();
    for i in 0..n {
        client.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
}

/// The value on the line that starts with `series ` (exactly that series), as text.
fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

/// Scrapes until every `(series, value)` line is there; returns the last exposition.
async fn wait_for(pgdog: &Pgdog, want: &[(&str, &str)]) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = scrape(pgdog).await;
        let missing: Vec<_> = want
            .iter()
            .filter(|(series, v)| value(&text, series) != Some(v))
            .collect();
        if missing.is_empty() {
            return text;
        }
        if Instant::now() > deadline {
            panic!("still missing {missing:?} after {DEADLINE:?}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spec_lines_after_known_traffic() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &[]).await;

    let r = get(&pgdog, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for path in ["/metricsx", "/metrics/x", "/favicon.ico", "/index.html"] {
        assert_eq!(get(&pgdog, path).await.status, 404, "{path}");
    }
    // `/` is the readiness page (issue 22).
    let page = get(&pgdog, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    run_queries(&pgdog, "primary", 100).await;
    let text = wait_for(
        &pgdog,
        &[
            ("mirror{type=\"mirrored\"}", "100"),
            ("mirror{type=\"total\"}", "100"),
            ("mirror{type=\"dropped\"}", "0"),
            ("mirror{error_type=\"connection\"}", "0"),
            ("mirror{error_type=\"query\"}", "0"),
            ("mirror{error_type=\"timeout\"}", "0"),
            ("mirror{error_type=\"buffer_full\"}", "0"),
            ("mirror{error_type=\"protocol\"}", "0"),
            ("mirror{database=\"primary\",metric=\"mirrored\"}", "100"),
            ("mirror{database=\"primary\",metric=\"dropped\"}", "0"),
            ("mirror{database=\"primary\",metric=\"errors\"}", "0"),
            ("mirror{database=\"primary\",metric=\"total\"}", "100"),
            (
                "pgdog_mirror_requests_total{database=\"primary\",outcome=\"mirrored\"}",
                "100",
            ),
            (
                "pgdog_mirror_latency_seconds_count{database=\"primary\"}",
                "100",
            ),
            ("pgdog_mirror_queue_depth{database=\"primary\"}", "0"),
        ],
    )
    .await;

    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("# HELP mirror ")),
        "{text}"
    );
    assert!(lines.contains(&"# TYPE mirror gauge"), "{text}");
    // Exactly the spec's label sets, nothing else on those lines; counts are integers.
    for line in lines.iter().filter(|l| l.starts_with("mirror{")) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        let labels = &series["mirror{".len()..series.len() - 1];
        let keys: Vec<&str> = labels
            .split(',')
            .map(|kv| kv.split_once('=').unwrap().0)
            .collect();
        assert!(
            matches!(
                keys.as_slice(),
                ["type"] | ["error_type"] | ["stat"] | ["database", "metric"]
            ),
            "unexpected labels: {line}"
        );
        if keys != ["stat"] {
            assert!(v.parse::<u64>().is_ok(), "not an integer: {line}");
        }
    }
    for stat in ["avg_latency_ms", "max_latency_ms"] {
        let v = value(&text, &format!("mirror{{stat=\"{stat}\"}}")).unwrap();
        let ms: f64 = v.parse().unwrap();
        assert!(ms > 0.0 && ms < 5_000.0, "{stat} = {v}");
    }
    // The spec's shell test: `grep 'error_type="connection"' | awk '{print $2}'` must give one
    // number, and `grep 'mirror{type="mirrored"}'` one line.
    assert_eq!(
        text.matches("error_type=\"connection\"").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("mirror{type=\"mirrored\"}").count(), 1);
    assert!(!text.contains("otel_scope") && !text.contains("target_info"));

    // The proxy's own families.
    let queries: u64 = value(&text, "pgdog_pool_queries_total{database=\"primary\"}")
        .unwrap()
        .parse()
        .unwrap();
    assert!(queries >= 100, "{queries}");
    let _held = pgdog.connect("pgdog", "pgdog", "primary").await.unwrap();
    wait_for(&pgdog, &[("pgdog_pool_clients{database=\"primary\"}", "1")]).await;
    for family in [
        "pgdog_pool_bytes_total{database=\"primary\",direction=\"received\"}",
        "pgdog_pool_bytes_total{database=\"primary\",direction=\"sent\"}",
        "pgdog_pool_server_connections{database=\"primary\",state=\"active\"}",
        "pgdog_mirror_ready{database=\"primary\"}",
        "pgdog_mirror_readiness_confidence{database=\"primary\"}",
        "pgdog_mirror_errors_total{category=\"connection\",database=\"primary\"}",
    ] {
        assert!(value(&text, family).is_some(), "no {family} in\n{text}");
    }
}

#[tokio::test]
async fn databases_are_counted_apart() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary", "secondary"], &[]).await;
    tokio::join!(
        run_queries(&pgdog, "primary", 50),
        run_queries(&pgdog, "secondary", 30)
    );
    wait_for(
        &pgdog,
        &[
            ("mirror{database=\"primary\",metric=\"mirrored\"}", "50"),
            ("mirror{database=\"secondary\",metric=\"mirrored\"}", "30"),
            ("mirror{database=\"primary\",metric=\"total\"}", "50"),
            ("mirror{database=\"secondary\",metric=\"total\"}", "30"),
            ("mirror{type=\"mirrored\"}", "80"),
            (
                "pgdog_mirror_requests_total{database=\"secondary\",outcome=\"mirrored\"}",
                "30",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn mirror_families_can_be_switched_off() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &["mirror_metrics_enabled = false"]).await;
    run_queries(&pgdog, "primary", 10).await;
    // The pool counters move, so the proxy did see the traffic.
    let text = wait_for(
        &pgdog,
        &[("pgdog_pool_queries_total{database=\"primary\"}", "10")],
    )
    .await;
    assert!(!text.contains("mirror{"), "{text}");
    assert!(!text.contains("pgdog_mirror_"), "{text}");
    assert!(text.contains("pgdog_pool_clients{database=\"mirror\"}"));
}

/// Writes `bytes` on a fresh connection and returns what the server answers before closing
/// (or before `wait` passes).
fn exchange(pgdog: &Pgdog, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect((pgdog.host(), pgdog.metrics_port())).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `metrics_password` protects `/metrics` and `/readiness` with HTTP basic auth (any user
/// name): no header or a wrong password is 401 with a challenge, the right one is served.
#[tokio::test]
async fn metrics_password_asks_for_basic_auth() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &["metrics_password = \"m3trics\""]).await;
    let ask = |path: &str, auth: Option<&str>| {
        let header = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: pgdog\r\n{header}Connection: close\r\n\r\n");
        exchange(&pgdog, request.as_bytes(), Duration::from_secs(5))
    };
    // "prometheus:m3trics", "prometheus:wrong", "m3trics" (no colon).
    let (right, wrong, bare) = (
        "cHJvbWV0aGV1czptM3RyaWNz",
        "cHJvbWV0aGV1czp3cm9uZw==",
        "bTN0cmljcw==",
    );
    for path in ["/", "/metrics", "/readiness"] {
        for auth in [None, Some(wrong), Some(bare)] {
            let r = ask(path, auth);
            assert!(r.starts_with("HTTP/1.1 401"), "{path} {auth:?}: {r}");
            assert!(
                r.to_ascii_lowercase()
                    .contains("www-authenticate: basic realm=\"pgdog\""),
                "{r}"
            );
            assert!(!r.contains("m3trics"), "{r}");
        }
    }
    let r = ask("/metrics", Some(right));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("pgdog_pool_clients{database=\"primary\"}"),
        "{r}"
    );
    let r = ask("/readiness", Some(right));
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("\"status\":"), "{r}");
    let r = ask("/", Some(right));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("<h1>pgdog: migration readiness</h1>"), "{r}");
    // The page is read-only.
    let post = format!(
        "POST / HTTP/1.1\r\nHost: pgdog\r\nAuthorization: Basic {right}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let r = exchange(&pgdog, post.as_bytes(), Duration::from_secs(5));
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}

#[tokio::test]
async fn bad_and_slow_clients_do_not_disturb_the_endpoint() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &[]).await;

    // A client that starts a request and never finishes it...
    let mut slow = TcpStream::connect((pgdog.host(), pgdog.metrics_port())).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // ...and another that only connects.
    let _silent = TcpStream::connect((pgdog.host(), pgdog.metrics_port())).unwrap();

    // Malformed requests get an error status (or a closed connection), not a crash.
    let garbage = exchange(
        &pgdog,
        b"\x16\x03\x01 hello\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = exchange(&pgdog, huge.as_bytes(), Duration::from_secs(5));
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Meanwhile scrapes are served promptly.
    for _ in 0..5 {
        let started = Instant::now();
        let r = get(&pgdog, "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    // The unfinished request is cut off by the header timeout (5 s).
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "slow client still connected after {:?}",
        started.elapsed()
    );
    assert_eq!(get(&pgdog, "/metrics").await.status, 200);
    assert!(
        pgdog.log().matches("panicked").count() == 0,
        "{}",
        pgdog.log()
    );
}

#[tokio::test]
async fn readiness_endpoint() {
    let cluster = cluster().await;
    let pgdog = pgdog(
        &cluster,
        &["primary"],
        &[
            "mirror_min_requests = 20",
            "mirror_min_runtime_hours = 0.0",
            // The session's first mirror login is slow in a debug build: room for the
            // requests sent meanwhile, so that none is dropped.
            "mirror_queue = 1000",
        ],
    )
    .await;

    let r = get(&pgdog, "/readiness").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.contains("\"status\": \"NOT READY\""), "{}", r.body);
    assert!(
        r.body.contains("\"criterion\": \"min_requests\""),
        "{}",
        r.body
    );

    // READY needs each rate criterion shown within its limit with 95 % confidence: about
    // 380 clean requests for the p99 and the 1 % drop rate.
    run_queries(&pgdog, "primary", 450).await;
    let deadline = Instant::now() + DEADLINE;
    let r = loop {
        let r = get(&pgdog, "/readiness").await;
        // The mirror is asynchronous: READY may come before the last requests are
        // answered by the mirror.
        let settled = r.body.contains("\"total_requests\": 450");
        if (r.status == 200 && settled) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.status, 200, "{}", r.body);
    for want in [
        "\"status\": \"READY\"",
        "\"ready\": true",
        "\"policy\": \"mirror-stats\"",
        "\"database\": \"primary\"",
        "\"total_requests\": 450",
        "\"mirrored\": 450",
        "\"reasons\": []",
        "\"criterion\": \"max_latency\"",
        "\"shadows\": []",
        "\"policies_disagree\": false",
    ] {
        assert!(r.body.contains(want), "no {want} in {}", r.body);
    }
    let text = scrape(&pgdog).await;
    assert_eq!(
        value(&text, "pgdog_mirror_ready{database=\"primary\"}"),
        Some("1"),
        "{text}"
    );
}

#[tokio::test]
async fn real_prometheus_scrapes_the_spec_lines() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &[]).await;
    run_queries(&pgdog, "primary", 100).await;
    let text = wait_for(&pgdog, &[("mirror{type=\"mirrored\"}", "100")]).await;
    let served = value(&text, "mirror{type=\"mirrored\"}")
        .unwrap()
        .to_string();

    // The recording rules shipped for operators (`integration/grafana/pgdog-rules.yml`).
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/pgdog-rules.yml");
    let target = format!("{}:{}", pgdog.host(), pgdog.metrics_port());
    let prometheus = Prometheus::start(&[target], Some(&rules)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = prometheus.query("mirror{type=\"mirrored\"}").await.unwrap();
        if seen.as_deref() == Some(served.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(served.as_str()),
        "Prometheus never saw mirror{{type=\"mirrored\"}} {served}\n{}",
        prometheus.log()
    );
    // The idiomatic families arrive too, with their types (rate() over a counter, a
    // histogram quantile), and the scrape itself is healthy.
    for (promql, want) in [
        (
            "pgdog_mirror_requests_total{database=\"primary\",outcome=\"mirrored\"}",
            Some("100"),
        ),
        ("up{job=\"pgdog\"}", Some("1")),
        (
            "histogram_quantile(0.5, pgdog_mirror_latency_seconds_bucket{database=\"primary\"}) > 0",
            None,
        ),
        ("mirror{database=\"primary\",metric=\"mirrored\"}", Some("100")),
    ] {
        let got = prometheus.query(promql).await.unwrap();
        match want {
            Some(v) => assert_eq!(got.as_deref(), Some(v), "{promql}"),
            None => assert!(got.is_some(), "{promql}: no result"),
        }
    }
    // The recording rules evaluate against these families.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = None;
    while ready.is_none() && Instant::now() < deadline {
        ready = prometheus
            .query("database:pgdog_mirror_ready:min{database=\"primary\"}")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        ready.is_some(),
        "recording rule never produced a value\n{}",
        prometheus.log()
    );
    for promql in [
        "database:pgdog_mirror_readiness_confidence:min{database=\"primary\"}",
        "fleet:pgdog_mirror_ready:min",
    ] {
        assert!(
            prometheus.query(promql).await.unwrap().is_some(),
            "{promql}"
        );
    }
}

#[tokio::test]
async fn stat_gauges_describe_the_recent_window() {
    let cluster = cluster().await;
    let pgdog = pgdog(&cluster, &["primary"], &["mirror_stats_window_secs = 2"]).await;
    run_queries(&pgdog, "primary", 100).await;
    wait_for(&pgdog, &[("mirror{type=\"mirrored\"}", "100")]).await;
    // Once the fast requests are older than the window, the stat gauges forget them...
    wait_for(&pgdog, &[("mirror{stat=\"avg_latency_ms\"}", "0")]).await;
    // ...and ten slow ones show as they are (the spec's Ruby suite: avg > 100 ms).
    let client = pgdog.connect("pgdog", "pgdog", "primary").await.unwrap();
    for _ in 0..10 {
        client.simple_query("SELECT pg_sleep(0.1)").await.unwrap();
    }
    let text = wait_for(&pgdog, &[("mirror{type=\"mirrored\"}", "110")]).await;
    let avg: f64 = value(&text, "mirror{stat=\"avg_latency_ms\"}")
        .unwrap()
        .parse()
        .unwrap();
    let max: f64 = value(&text, "mirror{stat=\"max_latency_ms\"}")
        .unwrap()
        .parse()
        .unwrap();
    assert!(avg > 100.0 && avg < 1000.0, "avg {avg}\n{text}");
    assert!(max >= avg, "max {max} avg {avg}");
    // The lifetime histogram still holds all 110.
    assert_eq!(
        value(
            &text,
            "pgdog_mirror_latency_seconds_count{database=\"primary\"}"
        ),
        Some("110")
    );
}
