//! One HTTP/1.1 request on a connection of its own (hyper's connection API): what pgdog's
//! two outgoing HTTP clients share, the fleet command's Prometheus queries
//! (`crate::fleet::prometheus`) and the OTLP push (`crate::metrics`). The caller opens the
//! stream (plain TCP, or TLS over it) and bounds the time.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

pub type Http1Error = Box<dyn std::error::Error + Send + Sync>;

/// Sends `request` on `stream` and reads the whole answer, refusing a body over `max_body`
/// bytes. The request names its path, and carries its `Host` header.
pub async fn exchange<S, B>(
    stream: S,
    request: Request<B>,
    max_body: usize,
) -> Result<Response<Bytes>, Http1Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Http1Error>,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Driven beside the request; the answer comes before the connection closes.
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_body).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
    .await;
    driver.abort();
    answer
}
