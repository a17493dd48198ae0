//! The metrics HTTP server (hyper, HTTP/1.1): `GET /metrics`, `GET /readiness` and the
//! readiness page at `GET /` (see [`super::page`]), all three
//! behind HTTP basic auth when `[general] metrics_password` is set (any user name; 401
//! with `WWW-Authenticate` otherwise).
//!
//! Hardened for an endpoint anyone on the network can reach: request headers must
//! arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`] (else the connection
//! is closed), at most [`MAX_CONNECTIONS`] connections are served at once (extra ones
//! are closed at once), and every connection runs in its own task, so a malformed
//! request or a client that never finishes its request affects nobody else. Scrapes
//! run one at a time (a second waits until the first has its exposition), so that a
//! burst of scrapes cannot multiply the plugin calls and the SDK's work.
//!
//! `/metrics`: read a [`Sample`](super::sample::Sample) (plugin calls off the runtime,
//! each with a time limit), then let the Prometheus exporter collect and encode it on
//! the blocking pool. A plugin that does not answer leaves out the families it feeds;
//! the rest is served all the same.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::page::{self, History};
use super::pipeline::{Metrics, Options, CONTENT_TYPE as EXPOSITION};
use super::read::{self, ProxyView};
use crate::net::{Accepted, Listener};
use crate::plugins::criteria_of;
use crate::proxy::Proxy;

/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper's smallest allowed buffer).
pub const MAX_HEADER_BYTES: usize = 8192;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// How long open connections get to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

struct State {
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    /// One scrape at a time.
    scrape: tokio::sync::Mutex<()>,
    /// The page's confidence history, fed by `/readiness` polls, page loads and (once
    /// the page has been opened) a background sample.
    history: Arc<History>,
    /// Whether the background sample has been started.
    sampling: AtomicBool,
    /// Background work of this server (the history sample), waited for at shutdown.
    tasks: TaskTracker,
}

type Body = Full<Bytes>;

/// Builds the proxy's metrics pipeline (the plugin families are discovered from one
/// round of the plugins' metric points), starts the OTLP push when `otlp_endpoint` is
/// set, and serves `/metrics` and `/readiness` on `listener` until the proxy shuts down.
pub async fn serve(proxy: Arc<Proxy>, listener: Listener) {
    let view = read::view(&proxy);
    let push = super::otlp::Settings::of(&view.config.general);
    let options = Options {
        plugin_families: view.plugins.metric_families().await,
        pools: view.pools.len(),
        otlp: push.is_some(),
    };
    let metrics = match Metrics::new(&options) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!("metrics: {e}; /metrics and /readiness are not served");
            return;
        }
    };
    let shutdown = view.shutdown.clone();
    let otlp = push.map(|settings| {
        tokio::spawn(super::otlp::push(
            proxy.clone(),
            metrics.clone(),
            settings,
            shutdown.clone(),
        ))
    });
    let state = Arc::new(State {
        proxy,
        metrics,
        scrape: tokio::sync::Mutex::new(()),
        history: Arc::new(History::default()),
        sampling: AtomicBool::new(false),
        tasks: TaskTracker::new(),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(Accepted::Open(stream, peer)) => (stream, peer),
                // Out of file descriptors: closed at once (the scraper retries).
                Ok(Accepted::Shed(..)) => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closing one from {peer}");
            continue;
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(DRAIN_TIMEOUT, conn).await.unwrap_or(Ok(()))
                }
            };
            if let Err(e) = result {
                tracing::debug!("metrics: connection from {peer}: {e}");
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await;
    state.tasks.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait()).await;
    if let Some(otlp) = otlp {
        let _ = otlp.await;
    }
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let config = state.proxy.config();
    if let Some(password) = &config.general.metrics_password {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !authorized(given, password) {
            let mut r = text(StatusCode::UNAUTHORIZED, "metrics_password required\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pgdog\", charset=\"UTF-8\""),
            );
            return r;
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics(state).await,
        (&Method::GET, "/readiness") => readiness(read::view(&state.proxy), &state.history).await,
        (&Method::GET, "/") => page(state).await,
        (_, "/" | "/metrics" | "/readiness") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try / (the readiness page), /metrics or /readiness\n",
        ),
    }
}

/// Whether an `Authorization` header is HTTP basic auth with `password` (any user name),
/// compared in constant time.
pub fn authorized(header: Option<&str>, password: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = header.and_then(|h| {
        h.split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, v)| v.trim())
    }) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let given = match decoded.iter().position(|&b| b == b':') {
        Some(i) => &decoded[i + 1..],
        None => return false,
    };
    crate::auth::md5::constant_time_eq(given, password.as_bytes())
}

async fn metrics(state: &Arc<State>) -> Response<Body> {
    let _one_at_a_time = state.scrape.lock().await;
    let sample = read::sample(read::view(&state.proxy)).await;
    let metrics = state.metrics.clone();
    // The SDK's collection and the encoding are CPU work; the previous sample (some
    // 30,000 strings at 1,000 pools) is freed there too, after the body is ready.
    let rendered = tokio::task::spawn_blocking(move || {
        let (body, previous) = metrics.render(sample);
        (body, previous)
    })
    .await;
    match rendered {
        Ok((body, previous)) => {
            tokio::task::spawn_blocking(move || drop(previous));
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
            r
        }
        Err(e) => {
            tracing::error!("metrics: scrape failed: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n")
        }
    }
}

/// `GET /readiness`: the readiness report as JSON (schema in `docs/metrics.md`);
/// 200 when the overall verdict of record is READY, 503 otherwise (also when no plugin
/// can judge or it does not answer in time). Shadow policies are listed beside it and
/// never change the status.
pub async fn readiness(view: ProxyView, history: &History) -> Response<Full<Bytes>> {
    view.plugins.flush().await;
    let criteria = criteria_of(&view.config.general);
    let assessed =
        crate::mirror::sync::readiness::assess(&view.plugins, &criteria, &view.replication).await;
    let (status, body) = match assessed {
        Ok(judgement) => {
            let now = pgdog_plugin_api::stats::now_unix_us() as f64 / 1e6;
            history.record(&judgement.record, &page::skipped_by_database(&view), now);
            let status = if judgement.record.overall.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, super::readiness_json::judgement(&judgement))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            super::readiness_json::unavailable(&e.to_string()),
        ),
    };
    let mut body = serde_json::to_vec_pretty(&body).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `GET /`: the readiness page (HTML, `Cache-Control: no-store`). The first load starts
/// the background sample of the confidence history.
async fn page(state: &Arc<State>) -> Response<Body> {
    if !state.sampling.swap(true, Ordering::Relaxed) {
        state
            .tasks
            .spawn(page::sample(state.proxy.clone(), state.history.clone()));
    }
    let body = page::render(&read::view(&state.proxy), state.history.clone()).await;
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn basic_auth_with_any_user_name() {
        // "u:pw", ":pw", "u:px", "pw".
        assert!(authorized(Some("Basic dTpwdw=="), "pw"));
        assert!(authorized(Some("basic  OnB3"), "pw"));
        assert!(!authorized(Some("Basic dTpweA=="), "pw"));
        assert!(!authorized(Some("Basic cHc="), "pw"));
        assert!(!authorized(Some("Bearer dTpwdw=="), "pw"));
        assert!(!authorized(Some("Basic !!"), "pw"));
        assert!(!authorized(None, "pw"));
    }
}
