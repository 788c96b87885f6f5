//! The HTTPS endpoint the API server calls: `POST /mutate` (an AdmissionReview, answered by
//! [`review`]) and `GET /healthz`, over hyper's HTTP/1.1 server and rustls (ring), with the
//! certificate reloaded by [`cert::watch`].
//!
//! One task per connection (the API server keeps a few alive and reuses them). On shutdown the
//! listener stops, open connections finish the request in flight and close, and whatever is still
//! open after `shutdown_grace` is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::cert::{self, CertError, CertFiles, ReloadingCert};
use super::review::{review, ProxySource, ReviewError};
use super::settings::{InjectSettings, WebhookOptions};

/// The path the MutatingWebhookConfiguration's `clientConfig.service.path` points at.
pub const MUTATE_PATH: &str = "/mutate";
/// A liveness path for the operator's own probes.
pub const HEALTH_PATH: &str = "/healthz";

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// The webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot load the webhook certificate: {0}")]
    Certificate(#[from] CertError),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

struct State<S> {
    proxies: S,
    inject: InjectSettings,
    max_body_bytes: usize,
}

/// Serves the webhook on `listener` until `shutdown` completes.
///
/// Fails at once when the certificate files do not make a valid pair: the chart mounts them before
/// the operator starts, so a missing pair is a deployment error better seen as a crash than as a
/// webhook that refuses every handshake.
pub async fn serve<S: ProxySource>(
    listener: TcpListener,
    options: WebhookOptions,
    proxies: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let files = CertFiles {
        cert_file: options.cert_file.clone(),
        key_file: options.key_file.clone(),
    };
    let pem = files.read()?;
    let resolver = Arc::new(ReloadingCert::new(files.parse(&pem, &provider)?));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));

    let reloader = tokio::spawn(cert::watch(
        files,
        pem,
        resolver,
        provider,
        options.reload_interval,
    ));
    let _stop_reloader = AbortOnDrop(reloader);

    let state = Arc::new(State {
        proxies,
        inject: options.inject.clone(),
        max_body_bytes: options.max_body_bytes,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admission webhook listening");
    }
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "webhook: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            acceptor.clone(),
            options.handshake_timeout,
            state.clone(),
            stopped.clone(),
        ));
    }

    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "webhook: dropping connections still open after the shutdown grace period"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn connection<S: ProxySource>(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    handshake_timeout: std::time::Duration,
    state: Arc<State<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "webhook: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("webhook: TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, &state).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let stop_requested = async move {
        // The guard `wait_for` returns must not live across the next await (it is not `Send`).
        let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
    };
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop_requested => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "webhook: connection ended with an error");
    }
}

async fn handle<S: ProxySource>(req: Request<Incoming>, state: &State<S>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, MUTATE_PATH) => mutate(req, state).await,
        (&Method::GET, HEALTH_PATH) => reply(StatusCode::OK, TEXT, "ok\n"),
        (_, MUTATE_PATH) => reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "POST only\n"),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "try POST /mutate\n"),
    }
}

async fn mutate<S: ProxySource>(req: Request<Incoming>, state: &State<S>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), state.max_body_bytes)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                TEXT,
                format!("the body is over {} bytes\n", state.max_body_bytes),
            );
        }
        Err(e) => {
            tracing::debug!(error = %e, "webhook: cannot read a request body");
            return reply(StatusCode::BAD_REQUEST, TEXT, "cannot read the body\n");
        }
    };
    match review(&body, &state.proxies, &state.inject) {
        Ok(answer) => reply(StatusCode::OK, JSON, answer.to_string()),
        Err(e @ ReviewError::Encode(_)) => {
            tracing::warn!(error = %e, "webhook: cannot answer");
            reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook: bad request");
            reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n"))
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Stops the certificate reloader when `serve` returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
