//! A small client for Prometheus' HTTP API (`GET /api/v1/query`), enough for the fleet
//! readiness command: instant queries whose results are label sets and values. Speaks
//! `http://` and `https://` (rustls, the system's trust anchors), with basic auth from the
//! URL (`https://user:password@host/prefix`) and a path prefix (Thanos, Mimir's
//! `/prometheus`), one connection per query, each within [`QUERY_TIMEOUT`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::net::http1;

/// How long one query may take, connection included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer accepted (a fleet's sums are small; this is a guard, not a budget).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("invalid Prometheus URL {url:?}: {problem} (expected http://host:port or https://host[/prefix])")]
    Url { url: String, problem: &'static str },
    #[error("cannot reach Prometheus at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Prometheus at {url} did not answer within {QUERY_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("HTTP error talking to Prometheus at {url}: {message}")]
    Http { url: String, message: String },
    #[error("Prometheus answered {status} to {query:?}: {body}")]
    Status {
        status: u16,
        query: String,
        body: String,
    },
    #[error("unexpected answer from Prometheus to {query:?}: {problem}")]
    Answer { query: String, problem: String },
}

/// A Prometheus server's address, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    /// Path prefix without a trailing slash (empty for none).
    prefix: String,
    /// `Basic ...` from the URL's user info.
    authorization: Option<String>,
    /// The URL as given, without the user info (for messages).
    shown: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, PrometheusError> {
        let bad = |problem| PrometheusError::Url {
            url: url.to_string(),
            problem,
        };
        let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(bad("no http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if path.contains('?') || path.contains('#') {
            return Err(bad("a query string or fragment"));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                let port = p.parse().map_err(|_| bad("the port is not a number"))?;
                (h, port)
            }
            _ => (hostport, if https { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let authorization = userinfo.map(|u| {
            use base64::Engine;
            let decoded = percent_decode(u);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(decoded)
            )
        });
        let prefix = path.trim_end_matches('/').to_string();
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            https,
            host: host.to_string(),
            port,
            shown: format!("{scheme}://{hostport}{prefix}"),
            prefix,
            authorization,
        })
    }

    /// The URL without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// An instant query's result: one `(labels, value)` per series.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PrometheusError> {
        let path = format!("{}/api/v1/query?query={}", self.prefix, url_encode(promql));
        let body = tokio::time::timeout(QUERY_TIMEOUT, self.get(&path))
            .await
            .map_err(|_| PrometheusError::Timeout {
                url: self.shown.clone(),
            })??;
        let (status, body) = body;
        if status != 200 {
            return Err(PrometheusError::Status {
                status,
                query: promql.to_string(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        parse_vector(promql, &body)
    }

    async fn get(&self, path: &str) -> Result<(u16, Bytes), PrometheusError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| PrometheusError::Connect {
                url: self.shown.clone(),
                source,
            })?;
        if !self.https {
            return self.exchange(stream, path).await;
        }
        let server_name =
            rustls_pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                PrometheusError::Url {
                    url: self.shown.clone(),
                    problem: "the host is not a valid TLS server name",
                }
            })?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(server_name, stream)
            .await
            .map_err(|source| PrometheusError::Connect {
                url: self.shown.clone(),
                source,
            })?;
        self.exchange(tls, path).await
    }

    async fn exchange<S>(&self, stream: S, path: &str) -> Result<(u16, Bytes), PrometheusError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |e: &dyn std::fmt::Display| PrometheusError::Http {
            url: self.shown.clone(),
            message: e.to_string(),
        };
        let mut request = Request::get(path).header(HOST, format!("{}:{}", self.host, self.port));
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| http(&e))?;
        let response = http1::exchange(stream, request, MAX_BODY)
            .await
            .map_err(|e| http(&e))?;
        Ok((response.status().as_u16(), response.into_body()))
    }
}

/// The `ring` provider with the system's trust anchors (Debian's `ca-certificates`).
#[allow(deprecated)] // ring: see `crate::tls`'s note on the provider
fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// `{"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]}]}}`.
fn parse_vector(query: &str, body: &[u8]) -> Result<Vec<Sample>, PrometheusError> {
    let problem = |problem: String| PrometheusError::Answer {
        query: query.to_string(),
        problem,
    };
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| problem(format!("not JSON: {e}")))?;
    if json["status"] != "success" {
        return Err(problem(format!(
            "status {}: {}",
            json["status"], json["error"]
        )));
    }
    if json["data"]["resultType"] != "vector" {
        return Err(problem(format!(
            "result type {}, expected vector",
            json["data"]["resultType"]
        )));
    }
    let Some(result) = json["data"]["result"].as_array() else {
        return Err(problem("no result list".into()));
    };
    result
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| problem(format!("a series without a number: {series}")))?;
            Ok(Sample { labels, value })
        })
        .collect()
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A PromQL string literal for `value` (double-quoted, escaped).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_with_prefix_port_and_credentials() {
        let e = Endpoint::parse("http://127.0.0.1:9091").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.prefix.as_str()),
            (false, "127.0.0.1", 9091, "")
        );
        let e = Endpoint::parse("https://me:p%40ss@mimir.example/prometheus/").unwrap();
        assert_eq!(
            (e.https, e.port, e.prefix.as_str()),
            (true, 443, "/prometheus")
        );
        assert_eq!(e.shown(), "https://mimir.example/prometheus");
        // "me:p@ss" in base64.
        assert_eq!(e.authorization.as_deref(), Some("Basic bWU6cEBzcw=="));
        let e = Endpoint::parse("http://[::1]:9090").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9090));
        for bad in ["prom:9090", "http://", "http://h:port", "http://h/x?y=1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vectors_are_read() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"database":"a","outcome":"mirrored"},"value":[1.5,"300"]},
            {"metric":{},"value":[1.5,"NaN"]}]}}"#;
        let v = parse_vector("q", body).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].label("database"), v[0].value), ("a", 300.0));
        assert!(v[1].value.is_nan());
        assert!(parse_vector("q", br#"{"status":"error","error":"bad"}"#).is_err());
        assert!(parse_vector("q", b"<html>").is_err());
    }

    #[test]
    fn promql_strings_are_quoted() {
        assert_eq!(quote(r#"we"ird\db"#), r#""we\"ird\\db""#);
        assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }
}
