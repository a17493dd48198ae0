//! Accepts client connections until shutdown; each runs as a tracked task.

use super::login;
use crate::proxy::Proxy;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = proxy.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let proxy = proxy.clone();
                proxy.sessions.clone().spawn(async move {
                    login::run(stream, peer, proxy).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("proxy listener closed");
}
