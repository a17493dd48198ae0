//! The HTTP client OTLP pushes go through: HTTP/1.1, one connection per push
//! ([`crate::net::http1`], which the fleet command's Prometheus client uses too).
//!
//! `opentelemetry-otlp`'s own hyper client (`hyper-client`) turns on HTTP/2 in
//! `hyper-util`, which links the `h2` crate into the executable for nothing: OTLP/HTTP
//! needs one POST every `otlp_interval_ms`. That code is resident in every pgdog
//! (`docs/benchmarks.md`, idle memory), so pgdog brings this small client instead. Like
//! the one it replaces, it speaks `http://` only.

use crate::net::http1;
use bytes::Bytes;
use http::{header, Request, Response, Uri};
use http_body_util::Full;
use opentelemetry_http::{HttpClient, HttpError};
use std::time::Duration;

/// A collector's answer is small (an `ExportMetricsServiceResponse`); more is refused.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Http1Client {
    /// For the whole exchange: connect, send, and read the answer.
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for Http1Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        match tokio::time::timeout(self.timeout, exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
        }
    }
}

/// Where `uri` points: host and port of an `http://` URL.
fn authority(uri: &Uri) -> Result<(String, u16), HttpError> {
    match uri.scheme_str() {
        Some("http") => {}
        other => {
            return Err(format!(
                "OTLP endpoint {uri}: only http:// is supported, not {}",
                other.unwrap_or("a URL without a scheme")
            )
            .into())
        }
    }
    let host = uri.host().ok_or_else(|| format!("{uri} has no host"))?;
    // An IPv6 literal comes bracketed, as a URL writes it.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), uri.port_u16().unwrap_or(80)))
}

async fn exchange(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (host, port) = authority(request.uri())?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut parts, body) = request.into_parts();
    // On a connection of its own, a request names its path and the `Host` it is for.
    let host_header = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or("no authority")?;
    parts.headers.insert(header::HOST, host_header.parse()?);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = path.parse()?;
    let request = Request::from_parts(parts, Full::new(body));
    http1::exchange(stream, request, MAX_ANSWER).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        let at = |s: &str| authority(&s.parse::<Uri>().unwrap());
        assert_eq!(
            at("http://collector:4318/v1/metrics").unwrap(),
            ("collector".to_string(), 4318)
        );
        assert_eq!(
            at("http://[::1]/v1/metrics").unwrap(),
            ("::1".to_string(), 80)
        );
        let refused = at("https://collector/v1/metrics").unwrap_err().to_string();
        assert!(refused.contains("only http://"), "{refused}");
    }
}
