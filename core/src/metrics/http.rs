//! The metrics HTTP server (hyper, HTTP/1.1): `GET /metrics` and `GET /readiness`.
//!
//! Hardened for an endpoint anyone on the network can reach: request headers must
//! arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`] (else the connection
//! is closed), at most [`MAX_CONNECTIONS`] connections are served at once (extra ones
//! are closed at once), and every connection runs in its own task, so a malformed
//! request or a client that never finishes its request affects nobody else. Scrapes
//! run one at a time (a second waits until the first has written its exposition), so
//! that a burst of scrapes cannot multiply the plugin calls and rendering.
//!
//! `/metrics` streams its body (chunked) as [`Metrics::scrape`] writes it, most of it
//! while the plugins are still working. The status line goes out first, so a scrape
//! that fails half-way cannot answer 500: the connection is closed before the end of
//! the body instead, which HTTP clients (and Prometheus) report as a failed request.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::task::TaskTracker;

use super::{Metrics, Scrape};
use crate::proxy::Proxy;

/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted (hyper's smallest allowed buffer).
pub const MAX_HEADER_BYTES: usize = 8192;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// How long a scrape waits for queued mirror events to reach the plugins.
const FLUSH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long open connections get to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

struct State {
    proxy: Arc<Proxy>,
    metrics: Metrics,
    /// One scrape at a time.
    scrape: Arc<tokio::sync::Mutex<()>>,
}

/// A response body: a whole one, or the exposition as it is written.
type Body = Either<Full<Bytes>, Exposition>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the scrape stopped before the end of the exposition")]
    ScrapeAborted,
}

/// Serves `/metrics` and `/readiness` on `listener` until `proxy.shutdown` is cancelled.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let metrics = Metrics::for_proxy(&proxy);
    let state = Arc::new(State {
        proxy: proxy.clone(),
        metrics,
        scrape: Arc::new(tokio::sync::Mutex::new(())),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let shutdown = proxy.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
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
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let whole = |r: Response<Full<Bytes>>| r.map(Either::Left);
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics(state).await,
        (&Method::GET, "/readiness") => whole(readiness(state.proxy.clone()).await),
        (_, "/metrics" | "/readiness") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
            whole(r)
        }
        _ => whole(text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /readiness\n",
        )),
    }
}

async fn metrics(state: &Arc<State>) -> Response<Body> {
    let one_at_a_time = state.scrape.clone().lock_owned().await;
    flush(&state.proxy).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let state2 = state.clone();
    // Plugin calls and writing are blocking work.
    let scrape = tokio::task::spawn_blocking(move || {
        let parts = tx.clone();
        let data = state2.metrics.scrape(&state2.proxy, move |part| {
            let _ = parts.send(Message::Part(Bytes::from(part)));
        });
        drop(one_at_a_time);
        // Gone if the client left; then the data is freed here.
        let _ = tx.send(Message::End(Box::new(data)));
    });
    tokio::spawn(async move {
        if let Err(e) = scrape.await {
            tracing::error!("metrics: scrape failed: {e}");
        }
    });
    let mut r = Response::new(Either::Right(Exposition::new(rx)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(super::CONTENT_TYPE));
    r
}

pub(super) enum Message {
    Part(Bytes),
    /// The exposition is complete; here is the data it was written from.
    End(Box<Scrape>),
}

/// The `/metrics` body: the parts of the exposition as the scrape hands them over. It
/// ends with an error (hyper then closes the connection before the end of the chunked
/// body) if the scrape stops before its end. It keeps the scrape's data until the body
/// is done with and frees it then, on the blocking pool: with 1,000 pools that is some
/// 30,000 strings, half a millisecond that should neither delay the exposition nor
/// compete with its transfer, nor hold an async worker.
pub(super) struct Exposition {
    rx: mpsc::UnboundedReceiver<Message>,
    data: Option<Box<Scrape>>,
}

impl Exposition {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<Message>) -> Self {
        Self { rx, data: None }
    }
}

impl hyper::body::Body for Exposition {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        if this.data.is_some() {
            return Poll::Ready(None);
        }
        this.rx.poll_recv(cx).map(|message| match message {
            Some(Message::Part(part)) => Some(Ok(Frame::data(part))),
            Some(Message::End(data)) => {
                this.data = Some(data);
                None
            }
            None => Some(Err(HttpError::ScrapeAborted)),
        })
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(data))),
            Err(_) => drop(data),
        }
    }
}

/// Waits (briefly) until mirror events sent so far have reached the plugins, so a
/// scrape right after traffic counts it.
async fn flush(proxy: &Proxy) {
    if tokio::time::timeout(FLUSH_TIMEOUT, proxy.plugins.flush())
        .await
        .is_err()
    {
        tracing::debug!("metrics: plugin event flush took over {FLUSH_TIMEOUT:?}; scraping anyway");
    }
}

/// `GET /readiness`: the readiness report as JSON (schema in `docs/metrics.md`);
/// 200 when the overall verdict is READY, 503 otherwise (also when no plugin can judge).
pub async fn readiness(proxy: Arc<Proxy>) -> Response<Full<Bytes>> {
    flush(&proxy).await;
    let criteria = crate::plugins::criteria_of(&proxy.config().general);
    let proxy2 = proxy.clone();
    let report = tokio::task::spawn_blocking(move || proxy2.plugins.assess(&criteria)).await;
    let (status, body) = match report {
        Ok(Ok(report)) => {
            let status = if report.overall.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, super::readiness_json::report(&report))
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            super::readiness_json::unavailable(&e.to_string()),
        ),
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

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
