//! An OTLP/gRPC trace collector for tests: pgroute exports to it like to a real OpenTelemetry
//! Collector (the same protobuf service), and tests read back the spans it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

/// A running collector; dropping it stops the server.
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct Service {
    /// `None`: count only (benchmarks send hundreds of thousands).
    spans: Option<Arc<Mutex<Vec<Span>>>>,
    received: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                self.received
                    .fetch_add(scope.spans.len() as u64, Ordering::Relaxed);
                if let Some(spans) = &self.spans {
                    spans
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(scope.spans);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Listens on a free loopback port and keeps every span.
    pub async fn start() -> anyhow::Result<Collector> {
        Collector::listen(true).await
    }

    /// Listens on a free loopback port and only counts spans.
    pub async fn start_counting() -> anyhow::Result<Collector> {
        Collector::listen(false).await
    }

    async fn listen(keep: bool) -> anyhow::Result<Collector> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the OTLP collector")?;
        let addr = listener.local_addr()?;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicU64::new(0));
        let service = TraceServiceServer::new(Service {
            spans: keep.then(|| spans.clone()),
            received: received.clone(),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Collector {
            addr,
            spans,
            received,
            task,
        })
    }

    /// What pgroute's `tracing.otlp_endpoint` should be.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans arrived so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Every span received so far (none when counting only).
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
