//! OpenTelemetry traces: one span per transaction pgroute routes (per batch: a simple query, or an
//! extended-protocol batch up to Sync; a whole transaction in transaction mode), exported over OTLP/gRPC
//! when `tracing.otlp_endpoint` is set. The span says where the batch went and why, how long it waited
//! for a backend connection and how long the backend took. A W3C `traceparent` in a SQL comment makes
//! it a child of the application's span.
//!
//! Off (no endpoint) it costs one `Option` check per transaction: nothing is parsed or allocated.
//! The provider is held by the proxy, not installed globally, so tests run many proxies in a process.

mod traceparent;

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

pub use traceparent::{in_sql as traceparent_in_sql, TraceParent};

use crate::config::TracingConfig;

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter for {endpoint}")]
pub struct TraceError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The exporter and tracer; `None` in the proxy when tracing is off.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Share of transactions without a `traceparent` that are traced.
    sample_ratio: f64,
}

/// What one routed batch did, for its span.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpan<'a> {
    pub parent: Option<TraceParent>,
    pub started: SystemTime,
    pub pool_wait: Duration,
    pub backend_time: Duration,
    pub route: &'static str,
    pub reason: &'static str,
    pub backend: &'a str,
    pub user: &'a str,
    pub database: &'a str,
    /// The SQLSTATE the client was sent, when the batch failed in pgroute.
    pub error: Option<&'a str>,
}

impl Tracing {
    /// Starts the exporter (inside the tokio runtime: the gRPC client needs it); `None` without an
    /// endpoint.
    pub fn start(config: &TracingConfig) -> Result<Option<Tracing>, TraceError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|source| TraceError {
                endpoint: endpoint.clone(),
                source,
            })?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(config.export_interval)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            // Sampling is decided before a span is built (`should_trace`): what reaches the SDK is
            // traced.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("pgroute");
        Ok(Some(Tracing {
            provider,
            tracer,
            sample_ratio: config.sample_ratio,
        }))
    }

    /// Whether a transaction is traced: its parent's sampled flag when it has one, else
    /// `sample_ratio`. Decided first, so an untraced transaction builds nothing.
    pub fn should_trace(&self, parent: Option<TraceParent>) -> bool {
        match parent {
            Some(p) => p.sampled,
            None => self.sample_ratio >= 1.0 || rand::random::<f64>() < self.sample_ratio,
        }
    }

    /// Records the span of one batch (its timing is known by then, so it is built whole).
    pub fn record(&self, batch: &BatchSpan<'_>) {
        let parent = match batch.parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                if p.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.user", batch.user.to_owned()),
            KeyValue::new("db.name", batch.database.to_owned()),
            KeyValue::new("server.address", batch.backend.to_owned()),
            KeyValue::new("pgroute.route", batch.route),
            KeyValue::new("pgroute.reason", batch.reason),
            KeyValue::new("pgroute.pool_wait_us", micros(batch.pool_wait)),
            KeyValue::new("pgroute.backend_time_us", micros(batch.backend_time)),
        ];
        if let Some(code) = batch.error {
            attributes.push(KeyValue::new("db.response.status_code", code.to_owned()));
        }
        let builder = SpanBuilder::from_name("pgroute.transaction")
            .with_kind(SpanKind::Client)
            .with_start_time(batch.started)
            .with_attributes(attributes);
        let mut span = self.tracer.build_with_context(builder, &parent);
        if let Some(code) = batch.error {
            span.set_status(Status::error(format!("SQLSTATE {code}")));
        }
        span.end_with_timestamp(batch.started + batch.pool_wait + batch.backend_time);
    }

    /// Sends what is buffered (shutdown, tests).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing(ratio: f64) -> Tracing {
        let config = TracingConfig {
            // Never contacted: the gRPC channel connects lazily and nothing is exported here.
            otlp_endpoint: Some("http://127.0.0.1:9".into()),
            sample_ratio: ratio,
            ..TracingConfig::default()
        };
        Tracing::start(&config)
            .expect("starts")
            .expect("an endpoint is set")
    }

    #[tokio::test]
    async fn the_parent_decides_and_the_ratio_decides_without_one() {
        let parent = |sampled| TraceParent {
            trace_id: [1; 16],
            span_id: [2; 8],
            sampled,
        };
        let none = tracing(0.0);
        assert!(none.should_trace(Some(parent(true))));
        assert!(!none.should_trace(Some(parent(false))));
        assert!((0..1000).all(|_| !none.should_trace(None)));
        let all = tracing(1.0);
        assert!(!all.should_trace(Some(parent(false))));
        assert!((0..1000).all(|_| all.should_trace(None)));
        let some = tracing(0.5);
        let traced = (0..10_000).filter(|_| some.should_trace(None)).count();
        assert!((4_000..6_000).contains(&traced), "{traced}");
    }
}
