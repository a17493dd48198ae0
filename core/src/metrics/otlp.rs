//! OTLP push: with `[general] otlp_endpoint` set, the same instruments `/metrics`
//! exports are collected every `otlp_interval_ms` and sent to an OpenTelemetry collector
//! with `opentelemetry-otlp` (OTLP/HTTP, protobuf, through [`Http1Client`]).
//!
//! One task, named `pgdog-otlp-push` in the logs, cancelled with the proxy. Each round
//! reads a sample (plugin calls off the runtime, with their time limit), lets the SDK
//! collect it on the blocking pool, and sends it with a time limit of its own. Nothing
//! here is on the query path, and a push never waits on a scrape's HTTP transfer (they
//! share only the short collection step). An endpoint that fails is retried with a
//! doubling delay (from the interval up to [`MAX_BACKOFF`]); the failure is logged once
//! per episode, and its end once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use tokio_util::sync::CancellationToken;

use super::otlp_client::Http1Client;
use super::pipeline::Metrics;
use super::read;
use crate::config::General;
use crate::proxy::Proxy;

/// Longest wait between two attempts while the endpoint fails (unless the interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Time a push may take (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The push configuration of `[general]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full URL, `/v1/metrics` included.
    pub url: String,
    pub interval: Duration,
    pub headers: HashMap<String, String>,
}

impl Settings {
    /// `None` when `otlp_endpoint` is not set.
    pub fn of(general: &General) -> Option<Self> {
        let endpoint = general.otlp_endpoint.as_deref()?;
        Some(Settings {
            url: metrics_url(endpoint),
            interval: Duration::from_millis(general.otlp_interval_ms),
            headers: general
                .otlp_headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// `endpoint` with the OTLP/HTTP metrics path when it has no path of its own.
fn metrics_url(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.split_once('/') {
        Some((_, path)) if !path.is_empty() => endpoint.to_string(),
        _ => format!("{}/v1/metrics", endpoint.trim_end_matches('/')),
    }
}

/// Pushes until `shutdown`, then once more (what was counted since the last push).
pub async fn push(
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let exporter = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.url.clone())
        .with_headers(settings.headers.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Http1Client {
            timeout: EXPORT_TIMEOUT,
        })
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(
                "OTLP push to {}: cannot build the exporter: {e}",
                settings.url
            );
            return;
        }
    };
    tracing::info!(
        "pushing metrics to {} every {:?} (OTLP/HTTP)",
        settings.url,
        settings.interval
    );
    let mut episode = Episode::default();
    let mut wait = settings.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
        let result = once(&proxy, &metrics, &exporter).await;
        wait = episode.after(result, &settings);
    }
    if let Err(e) = once(&proxy, &metrics, &exporter).await {
        tracing::debug!("OTLP push at shutdown failed: {e}");
    }
    let _ = exporter.shutdown();
}

/// One push: read, collect, send.
async fn once(
    proxy: &Proxy,
    metrics: &Arc<Metrics>,
    exporter: &MetricExporter,
) -> Result<(), String> {
    let sample = read::sample(read::view(proxy)).await;
    let m = metrics.clone();
    let collected = tokio::task::spawn_blocking(move || m.collect_otlp(sample))
        .await
        .map_err(|e| e.to_string())?;
    let Some((rm, previous)) = collected else {
        return Err("no collection".into());
    };
    tokio::task::spawn_blocking(move || drop(previous));
    match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(&rm)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
    }
}

/// A run of failed pushes: logged when it starts and when it ends, not in between.
#[derive(Debug, Default)]
struct Episode {
    /// Failed attempts in a row.
    failures: u32,
}

impl Episode {
    /// Logs what `result` starts or ends, and returns the wait before the next attempt.
    fn after(&mut self, result: Result<(), String>, settings: &Settings) -> Duration {
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(
                        "OTLP push to {} works again (after {} failed attempts)",
                        settings.url,
                        self.failures
                    );
                }
                self.failures = 0;
                settings.interval
            }
            Err(e) => {
                if self.failures == 0 {
                    tracing::warn!(
                        "OTLP push to {} failed: {e}; retrying with backoff (logged again when it works)",
                        settings.url
                    );
                }
                self.failures = self.failures.saturating_add(1);
                backoff(settings.interval, self.failures)
            }
        }
    }
}

/// The wait after `failures` failed attempts in a row: the interval, doubled each time,
/// at most [`MAX_BACKOFF`] (or the interval, if that is longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let factor = 1u32 << failures.min(16);
    interval.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_metrics_path_when_they_have_none() {
        assert_eq!(metrics_url("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(
            metrics_url("http://c:4318/otlp/v1/metrics"),
            "http://c:4318/otlp/v1/metrics"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), 1), s(20));
        assert_eq!(backoff(s(10), 2), s(40));
        assert_eq!(backoff(s(10), 3), s(60));
        assert_eq!(backoff(s(10), 40), s(60));
        assert_eq!(backoff(s(120), 5), s(120));
        assert_eq!(
            backoff(Duration::from_millis(200), 1),
            Duration::from_millis(400)
        );
    }
}
