//! API discovery: `/api` (APIVersions), `/api/v1` and `/apis/{group}/{version}` (APIResourceList),
//! `/apis` (APIGroupList) and `/apis/{group}` (APIGroup), for the built-in resources pgroute's
//! operator and chart use and for every CRD installed with [`super::FakeApiServer::install_crd`].
//! kube's `Discovery` and `pinned_kind` read these to turn a kind into a URL and to learn whether a
//! CRD is served. Only the unaggregated form is served:
//! a request for aggregated discovery (`run_aggregated`) gets the legacy documents and fails to
//! parse, as against a server older than 1.26.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use super::error::ApiError;
use super::store::ResourceKey;

/// One resource as discovery describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    /// Subresources served next to it: `status`.
    pub subresources: Vec<String>,
}

/// Every verb the fake serves on a resource's collection and objects.
pub const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `(group, version, plural, kind, namespaced, short names, subresources)` of the built-ins.
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

/// What the operator and its chart touch.
#[rustfmt::skip]
const BUILT_IN: &[BuiltIn] = &[
    ("", "v1", "configmaps", "ConfigMap", true, &["cm"], &[]),
    ("", "v1", "endpoints", "Endpoints", true, &["ep"], &[]),
    ("", "v1", "events", "Event", true, &["ev"], &[]),
    ("", "v1", "namespaces", "Namespace", false, &["ns"], &["status"]),
    ("", "v1", "pods", "Pod", true, &["po"], &["status"]),
    ("", "v1", "secrets", "Secret", true, &[], &[]),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], &[]),
    ("", "v1", "services", "Service", true, &["svc"], &["status"]),
    ("apps", "v1", "deployments", "Deployment", true, &["deploy"], &["status"]),
    ("events.k8s.io", "v1", "events", "Event", true, &["ev"], &[]),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, &[], &[]),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], &[]),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], &[]),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false, &[], &[]),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"], &["status"]),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, &["crd", "crds"], &["status"]),
];

impl ApiResource {
    fn built_in(entry: &BuiltIn) -> ApiResource {
        let (group, version, plural, kind, namespaced, short_names, subresources) = *entry;
        let verbs = ALL_VERBS
            .iter()
            // Namespaces go one at a time (their deletion is the namespace controller's work).
            .filter(|v| plural != "namespaces" || **v != "deletecollection")
            .map(|v| (*v).to_owned())
            .collect();
        ApiResource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: short_names.iter().map(|s| (*s).to_owned()).collect(),
            verbs,
            subresources: subresources.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.group.clone(),
            version: self.version.clone(),
            plural: self.plural.clone(),
        }
    }

    fn group_version(&self) -> String {
        group_version(&self.group, &self.version)
    }

    /// Its `APIResource` entries: itself, then one per subresource (`databaseproxies/status`).
    fn entries(&self) -> Vec<Value> {
        let mut entries = vec![json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": self.verbs, "shortNames": self.short_names,
        })];
        entries.extend(self.subresources.iter().map(|sub| {
            json!({
                "name": format!("{}/{sub}", self.plural), "singularName": "",
                "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"],
            })
        }));
        entries
    }
}

/// The resources discovery reports: the built-ins and the installed CRDs' versions.
pub struct Discovery {
    server_address: String,
    installed: Mutex<BTreeMap<ResourceKey, ApiResource>>,
}

impl Discovery {
    /// `server_address` (`127.0.0.1:PORT`) is what `/api` says clients reach the server at.
    pub fn new(server_address: String) -> Discovery {
        Discovery {
            server_address,
            installed: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ResourceKey, ApiResource>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.installed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves an installed CRD's version (replacing what was there for the same resource).
    pub fn install(&self, resource: ApiResource) {
        self.lock().insert(resource.key(), resource);
    }

    /// Everything served, built-ins first (a CRD replaces a built-in of the same resource).
    pub fn resources(&self) -> Vec<ApiResource> {
        let installed = self.lock();
        let built_in = BUILT_IN
            .iter()
            .map(ApiResource::built_in)
            .filter(|r| !installed.contains_key(&r.key()));
        built_in.chain(installed.values().cloned()).collect()
    }

    /// `(apiVersion, kind)` of a served resource.
    pub fn kind_of(&self, resource: &ResourceKey) -> Option<(String, String)> {
        self.resources()
            .into_iter()
            .find(|r| &r.key() == resource)
            .map(|r| (r.group_version(), r.kind))
    }

    /// The discovery document at `path`, or `None` when `path` is not a discovery path.
    pub fn answer(&self, path: &str) -> Option<Result<Value, ApiError>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["api"] => Ok(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}],
            })),
            ["api", version] => self.resource_list("", version),
            ["apis"] => Ok(json!({
                "kind": "APIGroupList", "apiVersion": "v1",
                "groups": self.groups().into_iter().map(|(_, g)| g).collect::<Vec<_>>(),
            })),
            ["apis", group] => self
                .groups()
                .into_iter()
                .find(|(name, _)| name == group)
                .map(|(_, mut g)| {
                    g["kind"] = "APIGroup".into();
                    g["apiVersion"] = "v1".into();
                    g
                })
                .ok_or_else(|| not_found(path)),
            ["apis", group, version] => self.resource_list(group, version),
            _ => return None,
        })
    }

    fn resource_list(&self, group: &str, version: &str) -> Result<Value, ApiError> {
        let resources: Vec<Value> = self
            .resources()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .flat_map(ApiResource::entries)
            .collect();
        if resources.is_empty() {
            return Err(not_found(&group_version(group, version)));
        }
        Ok(json!({
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version(group, version), "resources": resources,
        }))
    }

    /// Each named group (not the core group) as an `APIGroup`, in the order first served.
    fn groups(&self) -> Vec<(String, Value)> {
        let mut versions: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.resources().into_iter().filter(|r| !r.group.is_empty()) {
            match versions.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version),
                Some(_) => {}
                None => versions.push((r.group, vec![r.version])),
            }
        }
        versions
            .into_iter()
            .map(|(group, mut vs)| {
                vs.sort_by_key(|v| std::cmp::Reverse(priority(v)));
                let for_discovery: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": group_version(&group, v), "version": v}))
                    .collect();
                let value = json!({
                    "name": group, "versions": for_discovery, "preferredVersion": for_discovery[0],
                });
                (group, value)
            })
            .collect()
    }
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({what})"),
    )
}

/// Kubernetes' version order: GA before beta before alpha, then by major and minor number
/// (`v2` > `v1` > `v1beta2` > `v1beta1` > `v1alpha1`); anything else last.
fn priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u32>() else {
        return (0, 0, 0);
    };
    let (stability, minor) = match &rest[digits..] {
        "" => (3, 0),
        tail => match tail
            .strip_prefix("beta")
            .map(|m| (2, m))
            .or_else(|| tail.strip_prefix("alpha").map(|m| (1, m)))
        {
            Some((stability, minor)) => match minor.parse::<u32>() {
                Ok(minor) => (stability, minor),
                Err(_) => return (0, 0, 0),
            },
            None => return (0, 0, 0),
        },
    };
    (stability, major, minor)
}

#[cfg(test)]
mod tests {
    use super::priority;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut versions = vec!["v1alpha1", "v1beta1", "v2", "v1", "v1beta2", "foo", "v10"];
        versions.sort_by_key(|v| std::cmp::Reverse(priority(v)));
        assert_eq!(
            versions,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}
