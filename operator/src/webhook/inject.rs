//! The injection decision, pure: a pod and the DatabaseProxies in view in, [`Decision`] out — skip
//! (with the reason) or inject (with the JSON patch that does it). No I/O, no clock; the admission
//! plumbing around it lives in `review`.
//!
//! Which DatabaseProxy a pod gets, in order:
//! 1. never one for a pod in the operator's namespace or one labelled as the operator itself;
//! 2. none again for a pod that already has the sidecar (idempotence: a re-submitted pod is
//!    unchanged);
//! 3. the annotation `pgroute.dev/inject: <name>` names it (`"false"` opts out), in the pod's
//!    namespace — a name that does not exist skips injection rather than failing the pod;
//! 4. else the first, by name, DatabaseProxy of the pod's namespace whose `spec.podSelector`
//!    selects the pod's labels (by name so that two overlapping selectors give the same answer on
//!    every replica of the operator and every retry).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;

use super::settings::InjectSettings;
use super::sidecar::{self, CONTAINER_NAME, INJECTED_ANNOTATION, INJECTED_SPEC_ANNOTATION};
use crate::crd::DatabaseProxy;

/// The annotation that picks a DatabaseProxy by name, or opts out with `"false"`.
pub const INJECT_ANNOTATION: &str = "pgroute.dev/inject";
/// The value of [`INJECT_ANNOTATION`] that opts a pod out even when a selector matches it.
pub const OPT_OUT: &str = "false";
/// The label, with [`OPERATOR_NAME`], that marks the operator's own pods.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The value of [`NAME_LABEL`] on the operator's own pods.
pub const OPERATOR_NAME: &str = "pgroute-operator";

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave the pod as it is.
    Skip { reason: SkipReason },
    /// Apply `patch` (RFC 6902) to the pod: the sidecar following the DatabaseProxy `proxy`.
    Inject { proxy: String, patch: Patch },
}

/// Why a pod gets no sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The object has no `spec` (not a pod anyone can run).
    NoSpec,
    /// Neither the pod nor the request says which namespace it is in.
    NoNamespace,
    /// The pod runs in the operator's namespace.
    OperatorNamespace,
    /// The pod is labelled as the operator's own.
    OperatorPod,
    /// The pod already has the sidecar or the annotation recording it.
    AlreadyInjected,
    /// A container of the pod is already called `pgroute`: adding ours would make the pod invalid.
    NameTaken,
    /// `pgroute.dev/inject: "false"`.
    OptedOut,
    /// `pgroute.dev/inject` names a DatabaseProxy that is not in the pod's namespace.
    UnknownProxy { name: String, namespace: String },
    /// No DatabaseProxy of the namespace selects the pod.
    NoMatchingProxy,
}

impl SkipReason {
    /// What the person creating the pod should hear (an admission warning, shown by kubectl), when
    /// the skip is probably not what they meant.
    pub fn warning(&self) -> Option<String> {
        match self {
            SkipReason::UnknownProxy { .. } | SkipReason::NameTaken => {
                Some(format!("pgroute sidecar not injected: {self}"))
            }
            _ => None,
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoSpec => f.write_str("the pod has no spec"),
            SkipReason::NoNamespace => f.write_str("the pod has no namespace"),
            SkipReason::OperatorNamespace => {
                f.write_str("the pod is in the operator's namespace")
            }
            SkipReason::OperatorPod => {
                write!(f, "the pod is labelled {NAME_LABEL}={OPERATOR_NAME}")
            }
            SkipReason::AlreadyInjected => f.write_str("the pod already has the pgroute sidecar"),
            SkipReason::NameTaken => {
                write!(f, "the pod already has a container named {CONTAINER_NAME}")
            }
            SkipReason::OptedOut => write!(f, "the pod is annotated {INJECT_ANNOTATION}: false"),
            SkipReason::UnknownProxy { name, namespace } => write!(
                f,
                "{INJECT_ANNOTATION} names DatabaseProxy {name}, which does not exist in namespace {namespace}"
            ),
            SkipReason::NoMatchingProxy => {
                f.write_str("no DatabaseProxy in the namespace selects the pod")
            }
        }
    }
}

/// Decides whether and how to inject the sidecar into `pod`.
///
/// `proxies` may hold DatabaseProxies of any namespace (only the pod's count) in any order. The pod's
/// namespace is `metadata.namespace`: on CREATE it can be empty in the object, so the caller fills it
/// in from the admission request first.
pub fn mutate<P: Borrow<DatabaseProxy>>(
    pod: &Pod,
    proxies: &[P],
    settings: &InjectSettings,
) -> Decision {
    match choose(pod, proxies, settings) {
        Ok(proxy) => {
            let container = sidecar::container(proxy, settings);
            let name = proxy.name_any();
            let annotations = [
                (INJECTED_ANNOTATION, name.clone()),
                (INJECTED_SPEC_ANNOTATION, sidecar::injected_spec(&container)),
            ];
            Decision::Inject {
                proxy: name,
                patch: patch(pod, container, annotations),
            }
        }
        Err(reason) => Decision::Skip { reason },
    }
}

/// The DatabaseProxy `pod` gets, following the order in the module documentation.
fn choose<'p, P: Borrow<DatabaseProxy>>(
    pod: &Pod,
    proxies: &'p [P],
    settings: &InjectSettings,
) -> Result<&'p DatabaseProxy, SkipReason> {
    let spec = pod.spec.as_ref().ok_or(SkipReason::NoSpec)?;
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .ok_or(SkipReason::NoNamespace)?;
    if namespace == settings.operator_namespace {
        return Err(SkipReason::OperatorNamespace);
    }
    let labels = pod.labels();
    if labels.get(NAME_LABEL).map(String::as_str) == Some(OPERATOR_NAME) {
        return Err(SkipReason::OperatorPod);
    }
    let named_ours = |c: &Container| c.name == CONTAINER_NAME;
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    if init_containers.iter().any(named_ours) || pod.annotations().contains_key(INJECTED_ANNOTATION)
    {
        return Err(SkipReason::AlreadyInjected);
    }
    if spec.containers.iter().any(named_ours) {
        return Err(SkipReason::NameTaken);
    }

    // Proxies being deleted no longer get new pods: their sidecars would never get a topology.
    let mut candidates: Vec<&DatabaseProxy> = proxies
        .iter()
        .map(Borrow::borrow)
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    match pod.annotations().get(INJECT_ANNOTATION).map(String::as_str) {
        Some(OPT_OUT) => Err(SkipReason::OptedOut),
        Some(name) => candidates
            .into_iter()
            .find(|p| p.name_any() == name)
            .ok_or_else(|| SkipReason::UnknownProxy {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            }),
        None => {
            candidates.sort_by_key(|p| p.name_any());
            candidates
                .into_iter()
                .find(|p| selects(p, labels))
                .ok_or(SkipReason::NoMatchingProxy)
        }
    }
}

/// Label-selector semantics as Kubernetes has them: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; an empty selector selects every pod. A selector that is
/// not valid (an unknown operator, `In` without values) selects nothing — the API server's schema
/// should have refused it already.
fn selects(proxy: &DatabaseProxy, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(proxy.spec.pod_selector.clone()) {
        Ok(selector) => selector.matches(labels),
        Err(e) => {
            tracing::debug!(proxy = %proxy.name_any(), error = %e, "podSelector is invalid: it selects no pod");
            false
        }
    }
}

/// The JSON patch that puts `container` first among the init containers and adds `annotations`.
///
/// First, because init containers start one after the other in order: an init container that runs
/// migrations or waits for the database through `127.0.0.1` needs the proxy already up, and a
/// native sidecar placed first is started (and its startup probe awaited) before all of them.
///
/// An absent array or map must be added whole: JSON patch cannot add a member under a path that
/// does not exist. Keys are escaped by [`Token`] (`pgroute.dev/injected` becomes
/// `pgroute.dev~1injected`).
fn patch(pod: &Pod, container: Container, annotations: [(&str, String); 2]) -> Patch {
    // Plain data with string keys: serializing it cannot fail.
    let container = serde_json::to_value(container).unwrap_or_default();
    let mut ops = Vec::with_capacity(3);
    let has_init_containers = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| !c.is_empty());
    if has_init_containers {
        ops.push(add(&["spec", "initContainers", "0"], container));
    } else {
        ops.push(add(
            &["spec", "initContainers"],
            serde_json::Value::Array(vec![container]),
        ));
    }
    if pod.metadata.annotations.is_some() {
        for (key, value) in annotations {
            ops.push(add(&["metadata", "annotations", key], value.into()));
        }
    } else {
        let map = annotations
            .into_iter()
            .map(|(key, value)| (key.to_owned(), serde_json::Value::String(value)))
            .collect();
        ops.push(add(
            &["metadata", "annotations"],
            serde_json::Value::Object(map),
        ));
    }
    Patch(ops)
}

fn add(tokens: &[&str], value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().map(|t| Token::new(*t))),
        value,
    })
}
