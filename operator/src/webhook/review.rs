//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out: the translation between the API
//! server's webhook call and [`mutate`], nothing more.
//!
//! The webhook never blocks a pod: every review it can read is answered `allowed: true`, with the
//! JSON patch when a sidecar goes in and a warning (shown by kubectl) when something the pod's author
//! probably wants to know kept it out. Only a body that is not an AdmissionReview at all is an error
//! ([`ReviewError`], answered 400 by the server), which the API server handles by the webhook's
//! failure policy.

use std::sync::Arc;

use base64::prelude::{Engine as _, BASE64_STANDARD};

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;

use super::inject::{mutate, Decision};
use super::settings::InjectSettings;
use crate::crd::DatabaseProxy;

/// Where the webhook gets the DatabaseProxies of a namespace from, at each review.
///
/// Any `Fn(&str) -> Vec<Arc<DatabaseProxy>>` is one; the operator feeds it from its reflector:
/// `move |ns: &str| store.state().into_iter().filter(|p| p.namespace().as_deref() == Some(ns)).collect()`
/// (handing back every namespace's proxies is also correct, [`mutate`] keeps the pod's only).
pub trait ProxySource: Send + Sync + 'static {
    /// The DatabaseProxies of `namespace`, in any order.
    fn proxies_in(&self, namespace: &str) -> Vec<Arc<DatabaseProxy>>;
}

impl<F> ProxySource for F
where
    F: Fn(&str) -> Vec<Arc<DatabaseProxy>> + Send + Sync + 'static,
{
    fn proxies_in(&self, namespace: &str) -> Vec<Arc<DatabaseProxy>> {
        self(namespace)
    }
}

/// The body could not be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[error("the body is not an AdmissionReview: {0}")]
    Malformed(#[source] serde_json::Error),
    /// An AdmissionReview without a request (a response sent back, perhaps).
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// The answer could not be encoded (not expected to happen: it is plain data).
    #[error("cannot encode the AdmissionReview answer: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Answers one AdmissionReview body with the AdmissionReview to send back, as JSON.
pub fn review(
    body: &[u8],
    proxies: &dyn ProxySource,
    settings: &InjectSettings,
) -> Result<serde_json::Value, ReviewError> {
    // A `DynamicObject` first: whatever the object is, the request's uid can be answered.
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let answer = respond(&request, proxies, settings).into_review();
    let patch = answer.response.as_ref().and_then(|r| r.patch.clone());
    let mut json = serde_json::to_value(answer).map_err(ReviewError::Encode)?;
    // kube-core serializes the patch (`Vec<u8>`) as an array of numbers (kube-rs/kube#1781); the API
    // documents a base64 string, which is what Go's `[]byte` expects.
    if let (Some(patch), Some(response)) = (patch, json.get_mut("response")) {
        response["patch"] = BASE64_STANDARD.encode(patch).into();
    }
    Ok(json)
}

fn respond(
    request: &AdmissionRequest<DynamicObject>,
    proxies: &dyn ProxySource,
    settings: &InjectSettings,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let kind = &request.kind;
    if !kind.group.is_empty() || kind.kind != "Pod" {
        tracing::warn!(uid = %request.uid, kind = %kind.kind, group = %kind.group, "admission review for something other than a Pod: check the MutatingWebhookConfiguration's rules");
        return warn(
            allowed,
            format!(
                "pgroute webhook ignores {}: only Pods get a sidecar",
                kind.kind
            ),
        );
    }
    if request.operation != Operation::Create {
        // A running pod's containers cannot change; only creation is ever injected.
        return allowed;
    }
    let pod = match read_pod(request) {
        Ok(pod) => pod,
        Err(why) => {
            tracing::warn!(uid = %request.uid, error = %why, "cannot read the pod of an admission review: not injected");
            return warn(
                allowed,
                format!("pgroute sidecar not injected: cannot read the pod: {why}"),
            );
        }
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod_name(&pod);
    let in_view = match namespace.as_str() {
        "" => Vec::new(),
        ns => proxies.proxies_in(ns),
    };
    match mutate(&pod, &in_view, settings) {
        Decision::Skip { reason } => match reason.warning() {
            Some(warning) => {
                tracing::info!(%namespace, pod = %pod_name, %reason, "sidecar not injected");
                warn(allowed, warning)
            }
            None => {
                tracing::debug!(%namespace, pod = %pod_name, %reason, "sidecar not injected");
                allowed
            }
        },
        Decision::Inject { proxy, patch } => {
            match AdmissionResponse::from(request).with_patch(patch) {
                Ok(response) => {
                    tracing::info!(%namespace, pod = %pod_name, %proxy, dry_run = request.dry_run, "injecting the pgroute sidecar");
                    response
                }
                Err(e) => {
                    tracing::warn!(%namespace, pod = %pod_name, error = %e, "cannot encode the JSON patch: not injected");
                    warn(allowed, format!("pgroute sidecar not injected: {e}"))
                }
            }
        }
    }
}

/// The request's object as a Pod, its namespace taken from the request when the object has none
/// (pods created with `generateName`, or without a namespace in the manifest).
fn read_pod(request: &AdmissionRequest<DynamicObject>) -> Result<Pod, String> {
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| "the review carries no object".to_owned())?;
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        pod.metadata.namespace = request.namespace.clone();
    }
    Ok(pod)
}

/// The pod's name for logs: `generateName` pods have none yet at admission.
fn pod_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => String::new(),
    }
}

fn warn(mut response: AdmissionResponse, warning: String) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).push(warning);
    response
}
