//! OTLP push end to end: real PostgreSQL, the real pgdog binary with `otlp_endpoint`
//! set, and a receiver that decodes what it gets with the official OTLP protobuf
//! definitions (`opentelemetry-proto`): the pushed data points equal what `/metrics`
//! shows for the same traffic, and a receiver that is down at first is reached later,
//! with the failure logged once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
use pgdog_integration::{free_port, http_get, ConfigBuilder, PgCluster, Pgdog};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(30);

/// Every export request received, decoded.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

impl Received {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn last(&self) -> Option<ExportMetricsServiceRequest> {
        self.0.lock().unwrap().last().cloned()
    }
}

/// A minimal OTLP/HTTP receiver on `port`: HTTP/1.1 POSTs to `/v1/metrics` with a
/// protobuf body, answered `200` with an empty `ExportMetricsServiceResponse`.
async fn receiver(port: u16) -> Result<Received> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head_end) = find(&buf, b"\r\n\r\n") else {
                        if read_more(&mut stream, &mut buf).await == 0 {
                            return;
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    assert!(head.starts_with("post /v1/metrics "), "{head}");
                    assert!(
                        head.contains("content-type: application/x-protobuf"),
                        "{head}"
                    );
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .expect("content-length");
                    let start = head_end + 4;
                    while buf.len() < start + length {
                        if read_more(&mut stream, &mut buf).await == 0 {
                            return;
                        }
                    }
                    let body = &buf[start..start + length];
                    let request = ExportMetricsServiceRequest::decode(body).expect("OTLP protobuf");
                    store.0.lock().unwrap().push(request);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                  content-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.drain(..start + length);
                }
            });
        }
    });
    Ok(received)
}

async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    n
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The data points of `request` as Prometheus series text (`name{k="v",...}`, labels
/// sorted by name, values escaped) with their values.
fn series(request: &ExportMetricsServiceRequest) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let points = match &m.data {
                    Some(Data::Gauge(g)) => &g.data_points,
                    Some(Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                for p in points {
                    let mut labels: Vec<(String, String)> = p
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(AnyValue::StringValue(s)) => s.clone(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    labels.sort();
                    let labels: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| {
                            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                        })
                        .collect();
                    let name = if labels.is_empty() {
                        m.name.clone()
                    } else {
                        format!("{}{{{}}}", m.name, labels.join(","))
                    };
                    let value = match p.value {
                        Some(Value::AsDouble(v)) => v,
                        Some(Value::AsInt(v)) => v as f64,
                        None => f64::NAN,
                    };
                    out.insert(name, value);
                }
            }
        }
    }
    out
}

/// The series of a Prometheus exposition with their values.
fn exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn start(cluster: &PgCluster, endpoint: &str) -> Result<Pgdog> {
    let mut pgdog = ConfigBuilder::new()
        .set("pool_size", 4)
        .set("otlp_endpoint", endpoint)
        .set("otlp_interval_ms", 300)
        .general("otlp_headers = { x-test-key = \"secret\" }")
        .pool("app", cluster, "pgdog")
        .pool_set("app", "mirror_of", "mirror")
        .pool("mirror", cluster, "mirrordb")
        .start()
        .await?;
    let port = pgdog.metrics_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    Ok(pgdog)
}

async fn scrape(pgdog: &Pgdog) -> Result<String> {
    let r = http_get(pgdog.host(), pgdog.metrics_port(), "/metrics").await?;
    if r.status != 200 {
        bail!("/metrics answered {}: {}", r.status, r.body);
    }
    Ok(r.body)
}

#[tokio::test]
async fn pushed_points_equal_the_scraped_ones() -> Result<()> {
    let cluster = PgCluster::start().await?;
    cluster.create_database("mirrordb").await?;
    let port = free_port();
    let received = receiver(port).await?;
    let pgdog = start(&cluster, &format!("http://127.0.0.1:{port}")).await?;

    let client = pgdog.connect("pgdog", "pgdog", "app").await?;
    for i in 0..50 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    drop(client);

    // Compared: the families whose values only traffic changes (the traffic is over;
    // pool gauges and the recent-latency window move with time and connections).
    let stable = |name: &str| {
        (name.starts_with("mirror{") && !name.starts_with("mirror{stat="))
            || name.starts_with("pgdog_mirror_requests_total")
            || name.starts_with("pgdog_mirror_errors_total")
            || name.starts_with("pgdog_mirror_mismatches_total")
            || name.starts_with("pgdog_pool_queries_total")
            || name.starts_with("pgdog_plugin_events_dropped_total")
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let scraped = exposition(&scrape(&pgdog).await?);
        let before = received.len();
        // A push that starts after this scrape collects the same values.
        while received.len() < before + 2 {
            if Instant::now() > deadline {
                bail!("no OTLP push arrived; pgdog log:\n{}", pgdog.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pushed = series(&received.last().context("a push")?);
        let want: BTreeMap<_, _> = scraped.iter().filter(|(k, _)| stable(k)).collect();
        let got: BTreeMap<_, _> = pushed.iter().filter(|(k, _)| stable(k)).collect();
        let done = scraped.get("mirror{type=\"mirrored\"}") == Some(&50.0);
        if done && want == got {
            assert!(want.len() > 15, "{want:?}");
            // The spec's gauge: an instrument named `mirror`, with the label sets of
            // its Prometheus lines.
            let request = received.last().unwrap();
            let mirror = request.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == "mirror")
                .context("a `mirror` instrument")?;
            assert!(matches!(mirror.data, Some(Data::Gauge(_))), "{mirror:?}");
            let scraped_sets: Vec<_> = scraped
                .keys()
                .filter(|k| k.starts_with("mirror{"))
                .collect();
            let pushed_sets: Vec<_> = pushed.keys().filter(|k| k.starts_with("mirror{")).collect();
            assert_eq!(scraped_sets, pushed_sets);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "pushed points never equalled the scraped ones:\nscraped {want:?}\npushed {got:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_is_retried_and_logged_once() -> Result<()> {
    let cluster = PgCluster::start().await?;
    cluster.create_database("mirrordb").await?;
    let port = free_port();
    let pgdog = start(&cluster, &format!("http://127.0.0.1:{port}")).await?;

    // Down: the proxy serves as usual, however many pushes fail.
    let client = pgdog.connect("pgdog", "pgdog", "app").await?;
    let started = Instant::now();
    for i in 0..200 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let received = receiver(port).await?;
    let deadline = Instant::now() + DEADLINE;
    while received.len() == 0 {
        if Instant::now() > deadline {
            bail!("no push after the receiver came up; log:\n{}", pgdog.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = pgdog.log();
    let url = format!("OTLP push to http://127.0.0.1:{port}/v1/metrics");
    let failed = format!("{url} failed");
    assert_eq!(
        log.matches(&failed).count(),
        1,
        "failure logged once per episode:\n{log}"
    );
    let again = format!("{url} works again");
    assert_eq!(log.matches(&again).count(), 1, "{log}");
    Ok(())
}
