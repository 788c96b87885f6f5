//! Accepting client connections and handing each to its own session task, until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::Proxy;
use crate::session;

/// Accepts until `shutdown` flips to true, then closes the listening socket (new connections are
/// refused) and returns the sessions still running, so a graceful shutdown can wait for them and close
/// what is left at its deadline. Accept errors (e.g. out of file descriptors) are logged and retried
/// after a short pause rather than ending the proxy.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    sessions.spawn(session::serve(stream, proxy.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Finished sessions are reaped as they end, so the set holds only live ones.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            // Also when the `Running` that owns the sender was dropped.
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return sessions;
                }
            }
        }
    }
}
