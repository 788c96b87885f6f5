//! What the webhook is configured with: [`InjectSettings`] (what goes into a pod) and
//! [`WebhookOptions`] (how it is served). Each field's doc states its default and unit; none of them
//! hot-reloads except the certificate files' *contents*, which the server polls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The operator's own version: the default sidecar image's tag and part of what
/// `pgroute.dev/injected-spec` records.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the webhook puts into a pod when a DatabaseProxy does not say otherwise, and which pods it
/// leaves alone.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectSettings {
    /// Sidecar image when the DatabaseProxy's `spec.sidecar.image` is unset. Default
    /// `ghcr.io/pgroute/pgroute:<operator version>`, so a sidecar speaks the control-plane API of
    /// the operator that injected it.
    pub default_image: String,
    /// The control plane's URL as the sidecars reach it (`--control-plane`), e.g.
    /// `http://pgroute-operator.pgroute-system.svc:6500`. Default that URL: the chart's Service in
    /// the chart's default namespace.
    pub control_plane_url: String,
    /// Sidecar requests and limits when `spec.sidecar.resources` is unset. Default requests
    /// `cpu: 10m, memory: 32Mi` and limit `memory: 128Mi`; no CPU limit, because CFS throttling of a
    /// proxy shows up as query latency of the application behind it.
    pub default_resources: ResourceRequirements,
    /// The operator's namespace: pods there are never injected (the operator must not depend on its
    /// own sidecar to start). Default `pgroute-system`.
    pub operator_namespace: String,
}

impl Default for InjectSettings {
    fn default() -> Self {
        InjectSettings {
            default_image: format!("ghcr.io/pgroute/pgroute:{OPERATOR_VERSION}"),
            control_plane_url: "http://pgroute-operator.pgroute-system.svc:6500".to_owned(),
            default_resources: default_resources(),
            operator_namespace: "pgroute-system".to_owned(),
        }
    }
}

fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "10m"), ("memory", "32Mi")])),
        limits: Some(quantities(&[("memory", "128Mi")])),
        ..ResourceRequirements::default()
    }
}

/// How the webhook is served.
///
/// The failure policy is not here: it belongs to the `MutatingWebhookConfiguration` the chart
/// installs (`webhook.failurePolicy`, default `Ignore`, so pods are still created, without a
/// sidecar, while the operator is down; `Fail` makes injection mandatory at the price of blocking
/// every matching pod creation during an operator outage). See `docs/webhook.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOptions {
    /// PEM certificate chain, leaf first. Default `/etc/pgroute/webhook/tls.crt` (where the chart
    /// mounts the cert-manager or Helm-generated Secret).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1). Default `/etc/pgroute/webhook/tls.key`.
    pub key_file: PathBuf,
    /// How often both files are read again; a changed, valid pair replaces the served certificate for
    /// new handshakes (established connections keep theirs). Default 10s, well inside the ~1 minute
    /// the kubelet takes to update a mounted Secret.
    pub reload_interval: Duration,
    /// A client that has not finished the TLS handshake, or sent a whole request head, this long
    /// after starting is dropped. Default 10s (the API server's default webhook timeout).
    pub handshake_timeout: Duration,
    /// Largest AdmissionReview body accepted, in bytes. Default 4 MiB (a Pod is at most ~1.5 MiB in
    /// etcd; the review carries it once on CREATE).
    pub max_body_bytes: usize,
    /// On shutdown, connections still open after this long are dropped. Default 5s.
    pub shutdown_grace: Duration,
    /// What to inject.
    pub inject: InjectSettings,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            cert_file: PathBuf::from("/etc/pgroute/webhook/tls.crt"),
            key_file: PathBuf::from("/etc/pgroute/webhook/tls.key"),
            reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(5),
            inject: InjectSettings::default(),
        }
    }
}
