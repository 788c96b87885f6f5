//! Accepting client connections and handing each to its own session task, until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Proxy;
use crate::session;

/// Accepts until `shutdown` flips to true. Accept errors (e.g. out of file descriptors) are logged and
/// retried after a short pause rather than ending the proxy.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(session::serve(stream, proxy.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
