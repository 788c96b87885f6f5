//! The mutating admission webhook that injects the pgroute sidecar into application pods.
//!
//! - [`inject`]: the decision, pure — which DatabaseProxy a pod gets, if any, and the JSON patch;
//! - [`sidecar`]: the container it injects (a native sidecar) and the annotations recording it;
//! - [`review()`]: AdmissionReview in and out around the decision;
//! - [`serve`]: HTTPS on hyper and rustls, with the certificate reloaded from its files.
//!
//! A pod opts in by matching a DatabaseProxy's `spec.podSelector` or with the annotation
//! `pgroute.dev/inject: <name>`, and out with `pgroute.dev/inject: "false"`. The webhook never
//! refuses a pod; whether pods are created while it is unreachable is the failure policy of the
//! chart's `MutatingWebhookConfiguration` (default `Ignore`; see `docs/webhook.md`).

mod cert;
pub mod inject;
mod review;
mod server;
mod settings;
pub mod sidecar;

#[cfg(test)]
mod tests;

pub use cert::CertError;
pub use inject::{mutate, Decision, SkipReason};
pub use review::{review, ProxySource, ReviewError};
pub use server::{serve, ServeError, HEALTH_PATH, MUTATE_PATH};
pub use settings::{InjectSettings, WebhookOptions, OPERATOR_VERSION};
