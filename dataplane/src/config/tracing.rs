//! `[tracing]`: OpenTelemetry traces over OTLP/gRPC (`trace::Tracing`). Restart to change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. Default: none (tracing off, no cost).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Default `pgroute`.
    pub service_name: String,
    /// Share of transactions traced when the client sent no `traceparent` (a sampled `traceparent`
    /// is always followed, an unsampled one never). Default 0: only what the application traces.
    pub sample_ratio: f64,
    /// How often buffered spans are sent. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Longest an export may take. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: "pgroute".into(),
            sample_ratio: 0.0,
            export_interval: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
        }
    }
}
