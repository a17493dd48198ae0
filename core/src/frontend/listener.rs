//! Accepts client connections until shutdown; each runs as a tracked task.

use super::{login, Frontend};
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(frontend: Arc<Frontend>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = frontend.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let frontend = frontend.clone();
                frontend.sessions.clone().spawn(async move {
                    login::run(stream, peer, frontend).await;
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
