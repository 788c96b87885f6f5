//! What a DatabaseProxy's target names, read from the Kubernetes API: its instances ([`instances`])
//! and the login to probe them with ([`login`]).
//!
//! Three kinds of target:
//! - `endpoints`: fixed `host:port`s with declared roles; no API call.
//! - `selector`: Services (kind `service`, their EndpointSlices) or EndpointSlices chosen by label;
//!   every ready endpoint address is an instance, its role found by probing `pg_is_in_recovery()`.
//! - `cloudNativePG`: a CloudNativePG `Cluster`, read as a dynamic object (no CNPG types compiled
//!   in). Applications without pgroute use the Cluster's `-rw` and `-ro` Services, which hide the
//!   individual instances behind one address each; pgroute needs the instances themselves, because
//!   it measures each replica's lag and takes a lagging one out of the read pool (a `-ro` Service
//!   would keep sending it reads). So the instances are the Cluster's `status.instanceNames`, each at
//!   its Pod's IP on port 5432 (CloudNativePG's fixed PostgreSQL port), with `status.currentPrimary`
//!   declared the primary.
//!
//! Addresses are deduplicated and sorted, so the same cluster yields the same list (and the same
//! snapshot) every round.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use super::{host_port, Instance, Login};
use crate::crd::{
    Credentials, DatabaseTarget, Endpoint, EndpointRole, SelectorKind, SelectorTarget,
};

/// The PostgreSQL port when `selector.port` is not set, and CloudNativePG's (always 5432).
pub const DEFAULT_PORT: i32 = 5432;

/// The label EndpointSlices carry with the name of their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why the target or the login could not be read. The message is complete on its own and goes into
/// the `TopologyResolved` condition as is; a Kubernetes API error is also kept as the source, for logs.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The target is not exactly one kind, or is inconsistent (the CRD's rules normally prevent it).
    #[error("spec.target: {0}")]
    Target(String),
    /// The label selector cannot be turned into a query (unknown operator, `In` without values, ...).
    #[error("spec.target.selector.selector: {0}")]
    Selector(String),
    #[error("Secret `{name}` not found in namespace `{namespace}`")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret `{name}` has no key `{key}` (it has: {present})")]
    SecretKeyMissing {
        name: String,
        key: String,
        /// The keys the Secret does have (names only), to spot a typo.
        present: String,
    },
    #[error("Secret `{name}`: the value of `{key}` is not UTF-8 text")]
    SecretKeyNotText { name: String, key: String },
    #[error(
        "CloudNativePG Cluster `{name}` not found in namespace `{namespace}` \
         (is the name right, and CloudNativePG installed?)"
    )]
    ClusterNotFound { namespace: String, name: String },
    /// The target resolved, but to no instance the operator can probe.
    #[error("no database instances found: {0}")]
    NoInstances(String),
    #[error("{action}: {detail}")]
    Kube {
        /// What the operator was doing, e.g. "listing Services in namespace `shop`".
        action: String,
        /// The API server's message (for an API error) or the client's.
        detail: String,
        #[source]
        source: kube::Error,
    },
}

/// The instances `target` names, sorted by address.
pub async fn instances(
    client: &kube::Client,
    namespace: &str,
    target: &DatabaseTarget,
) -> Result<Vec<Instance>, ResolveError> {
    match (&target.endpoints, &target.selector, &target.cloud_native_pg) {
        (Some(endpoints), None, None) => fixed(endpoints),
        (None, Some(selector), None) => by_selector(client, namespace, selector).await,
        (None, None, Some(cluster)) => cloud_native_pg(client, namespace, &cluster.name).await,
        (None, None, None) => Err(ResolveError::Target(
            "none of endpoints, selector or cloudNativePG is set".into(),
        )),
        _ => Err(ResolveError::Target(
            "more than one of endpoints, selector and cloudNativePG is set".into(),
        )),
    }
}

/// The login in the Secret `credentials` names (user and password as UTF-8 text; database
/// `postgres`).
pub async fn login(
    client: &kube::Client,
    namespace: &str,
    credentials: &Credentials,
) -> Result<Login, ResolveError> {
    let name = &credentials.secret_name;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            kube_error(
                format!("reading Secret `{name}` in namespace `{namespace}`"),
                e,
            )
        })?
        .ok_or_else(|| ResolveError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.clone(),
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &String| -> Result<String, ResolveError> {
        let bytes = data
            .get(key)
            .ok_or_else(|| ResolveError::SecretKeyMissing {
                name: name.clone(),
                key: key.clone(),
                present: present_keys(&data),
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| ResolveError::SecretKeyNotText {
            name: name.clone(),
            key: key.clone(),
        })
    };
    Ok(Login {
        user: text(&credentials.username_key)?,
        password: text(&credentials.password_key)?,
        dbname: "postgres".into(),
    })
}

fn present_keys<V>(data: &BTreeMap<String, V>) -> String {
    if data.is_empty() {
        "no keys".into()
    } else {
        data.keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fixed endpoints, in the order listed.
fn fixed(endpoints: &[Endpoint]) -> Result<Vec<Instance>, ResolveError> {
    if endpoints.is_empty() {
        return Err(ResolveError::NoInstances(
            "spec.target.endpoints is empty".into(),
        ));
    }
    let mut out: Vec<Instance> = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        let address = host_port(&e.host, e.port);
        if out.iter().any(|i| i.address == address) {
            return Err(ResolveError::Target(format!(
                "endpoints: {address} is listed twice"
            )));
        }
        out.push(Instance {
            address,
            declared: Some(e.role),
        });
    }
    Ok(out)
}

async fn by_selector(
    client: &kube::Client,
    namespace: &str,
    target: &SelectorTarget,
) -> Result<Vec<Instance>, ResolveError> {
    let labels = selector_string(&target.selector)?;
    let params = ListParams::default().labels(&labels);
    let slices_api = Api::<EndpointSlice>::namespaced(client.clone(), namespace);
    let slices: Vec<EndpointSlice> = match target.kind {
        SelectorKind::Service => {
            let services = Api::<Service>::namespaced(client.clone(), namespace)
                .list(&params)
                .await
                .map_err(|e| {
                    kube_error(
                        format!("listing Services matching `{labels}` in namespace `{namespace}`"),
                        e,
                    )
                })?;
            if services.items.is_empty() {
                return Err(ResolveError::NoInstances(format!(
                    "no Service in namespace `{namespace}` matches `{labels}`"
                )));
            }
            let mut slices = Vec::new();
            for name in services
                .items
                .iter()
                .filter_map(|s| s.metadata.name.as_deref())
            {
                let of_service = format!("{SERVICE_NAME_LABEL}={name}");
                let list = slices_api
                    .list(&ListParams::default().labels(&of_service))
                    .await
                    .map_err(|e| {
                        kube_error(
                            format!("listing the EndpointSlices of Service `{name}` in namespace `{namespace}`"),
                            e,
                        )
                    })?;
                slices.extend(list.items);
            }
            slices
        }
        SelectorKind::EndpointSlice => {
            let list = slices_api.list(&params).await.map_err(|e| {
                kube_error(
                    format!(
                        "listing EndpointSlices matching `{labels}` in namespace `{namespace}`"
                    ),
                    e,
                )
            })?;
            if list.items.is_empty() {
                return Err(ResolveError::NoInstances(format!(
                    "no EndpointSlice in namespace `{namespace}` matches `{labels}`"
                )));
            }
            list.items
        }
    };
    let instances = ready_addresses(&slices, target.port.as_ref());
    if instances.is_empty() {
        let port = match &target.port {
            Some(IntOrString::String(name)) => format!("a port named `{name}`"),
            Some(IntOrString::Int(n)) => format!("port {n}"),
            None => format!("port {DEFAULT_PORT}"),
        };
        return Err(ResolveError::NoInstances(format!(
            "{} EndpointSlice(s) for `{labels}` in namespace `{namespace}` have no ready endpoint with {port}",
            slices.len()
        )));
    }
    Ok(instances)
}

/// Every ready endpoint address of `slices` at the port `port` names, deduplicated and sorted. A
/// port name is looked up among each slice's ports (a slice without it contributes nothing); a number
/// is used as is. An endpoint whose `ready` condition is unset counts as ready, as the API asks.
fn ready_addresses(slices: &[EndpointSlice], port: Option<&IntOrString>) -> Vec<Instance> {
    let mut addresses = std::collections::BTreeSet::new();
    for slice in slices {
        let number = match port {
            None => DEFAULT_PORT,
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(name)) => {
                let found = slice
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .and_then(|p| p.port);
                match found {
                    Some(n) => n,
                    None => continue,
                }
            }
        };
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
        for endpoint in ready {
            for address in &endpoint.addresses {
                addresses.insert(host_port(address, number));
            }
        }
    }
    addresses
        .into_iter()
        .map(|address| Instance {
            address,
            declared: None,
        })
        .collect()
}

/// The `Cluster` resource of CloudNativePG (`postgresql.cnpg.io/v1`).
fn cnpg_cluster() -> ApiResource {
    ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: "Cluster".into(),
        plural: "clusters".into(),
    }
}

async fn cloud_native_pg(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Instance>, ResolveError> {
    let cluster = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &cnpg_cluster())
        .get_opt(name)
        .await
        .map_err(|e| {
            kube_error(
                format!("reading CloudNativePG Cluster `{name}` in namespace `{namespace}`"),
                e,
            )
        })?
        .ok_or_else(|| ResolveError::ClusterNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    let status = cluster.data.get("status");
    let primary = status
        .and_then(|s| s.get("currentPrimary"))
        .and_then(serde_json::Value::as_str)
        .filter(|p| !p.is_empty());
    let mut names: Vec<&str> = status
        .and_then(|s| s.get("instanceNames"))
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    // A primary not (yet) listed among the instances is still an instance.
    if let Some(p) = primary.filter(|p| !names.contains(p)) {
        names.push(p);
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut out: Vec<Instance> = Vec::with_capacity(names.len());
    for pod_name in &names {
        let pod = pods.get_opt(pod_name).await.map_err(|e| {
            kube_error(
                format!("reading Pod `{pod_name}` of CloudNativePG Cluster `{name}` in namespace `{namespace}`"),
                e,
            )
        })?;
        let ip = pod
            .and_then(|p| p.status)
            .and_then(|s| s.pod_ip)
            .filter(|ip| !ip.is_empty());
        // Not scheduled or not started yet: nothing to probe this round.
        let Some(ip) = ip else { continue };
        let address = host_port(&ip, DEFAULT_PORT);
        if out.iter().any(|i| i.address == address) {
            continue;
        }
        out.push(Instance {
            address,
            // Without a currentPrimary (still bootstrapping) only probing can tell.
            declared: primary.map(|p| {
                if p == *pod_name {
                    EndpointRole::Primary
                } else {
                    EndpointRole::Replica
                }
            }),
        });
    }
    if out.is_empty() {
        let what = if names.is_empty() {
            "lists no instances in its status yet"
        } else {
            "has no instance Pod with an IP address yet"
        };
        return Err(ResolveError::NoInstances(format!(
            "CloudNativePG Cluster `{name}` in namespace `{namespace}` {what}"
        )));
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// The `labelSelector` query string for `selector`: `matchLabels` as `k=v`, `matchExpressions` as
/// `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. An empty selector is refused: it would select every
/// Service (or EndpointSlice) in the namespace, and probe each as a database.
pub fn selector_string(selector: &LabelSelector) -> Result<String, ResolveError> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in selector.match_expressions.iter().flatten() {
        let values = || -> Result<String, ResolveError> {
            match r.values.as_deref() {
                Some(v) if !v.is_empty() => Ok(v.join(",")),
                _ => Err(ResolveError::Selector(format!(
                    "`{}` with operator {} needs values",
                    r.key, r.operator
                ))),
            }
        };
        let term = match r.operator.as_str() {
            "In" => format!("{} in ({})", r.key, values()?),
            "NotIn" => format!("{} notin ({})", r.key, values()?),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            other => {
                return Err(ResolveError::Selector(format!(
                "unknown operator `{other}` for `{}` (expected In, NotIn, Exists or DoesNotExist)",
                r.key
            )))
            }
        };
        terms.push(term);
    }
    if terms.is_empty() {
        return Err(ResolveError::Selector(
            "empty: it would select everything in the namespace".into(),
        ));
    }
    Ok(terms.join(","))
}

fn kube_error(action: String, source: kube::Error) -> ResolveError {
    let detail = match &source {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    };
    ResolveError::Kube {
        action,
        detail,
        source,
    }
}

#[cfg(test)]
mod tests;
