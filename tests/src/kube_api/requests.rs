//! The request log: every request the fake answered, in the terms Kubernetes authorizes it in (verb,
//! group, version, resource, subresource, namespace, name), so a test can check that what the
//! operator does is covered by the RBAC rules its chart grants, and that it does nothing more.

use std::sync::{Mutex, MutexGuard};

use hyper::Method;

/// One request, as RBAC sees it.
///
/// `verb` is an authorization verb: `get`, `list`, `watch` (a list with `watch=true`), `create`,
/// `update` (PUT), `patch` (PATCH, server-side apply included), `delete`, `deletecollection`
/// (DELETE on a collection). A discovery request (`/api`, `/apis/...`, `/version`) or one to a
/// path that is no resource is recorded too, with its verb and an empty `resource`: RBAC covers
/// those as non-resource URLs, which the default `system:discovery` role grants to everyone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Request {
    /// A request for no resource (discovery, `/version`, an unknown path); discovery of a group
    /// (`/apis/{group}[/{version}]`, `/api/{version}`) keeps the group and version it asked about.
    pub fn non_resource(verb: &str, path: &str) -> Request {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version) = match segments.as_slice() {
            ["api", version] => ("", *version),
            ["apis", group] => (*group, ""),
            ["apis", group, version] => (*group, *version),
            _ => ("", ""),
        };
        Request {
            verb: verb.to_owned(),
            group: group.to_owned(),
            version: version.to_owned(),
            resource: String::new(),
            subresource: None,
            namespace: None,
            name: None,
        }
    }

    /// Whether this named a resource (rather than discovery or another non-resource path).
    pub fn is_resource(&self) -> bool {
        !self.resource.is_empty()
    }
}

/// `get` pgroute.dev/v1alpha1 databaseproxies/status shop/orders
impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gv = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        write!(f, "{} {gv} {}", self.verb, self.resource)?;
        if let Some(sub) = &self.subresource {
            write!(f, "/{sub}")?;
        }
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => write!(f, " {ns}/{name}"),
            (Some(ns), None) => write!(f, " {ns}/*"),
            (None, Some(name)) => write!(f, " {name}"),
            (None, None) => Ok(()),
        }
    }
}

/// The authorization verb of an HTTP request: what it does to one object (`named`) or to a
/// collection.
pub fn verb(method: &Method, named: bool, watch: bool) -> String {
    match (method, named) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (other, _) => return other.as_str().to_lowercase(),
    }
    .to_owned()
}

/// The requests so far, in the order they arrived.
#[derive(Default)]
pub struct RequestLog {
    requests: Mutex<Vec<Request>>,
}

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, Vec<Request>> {
        // Pushes are whole values: a poisoned log is still a consistent log.
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, request: Request) {
        self.lock().push(request);
    }

    pub fn snapshot(&self) -> Vec<Request> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use hyper::Method;

    use super::verb;

    #[test]
    fn maps_methods_to_authorization_verbs() {
        let cases = [
            (Method::GET, true, false, "get"),
            (Method::GET, false, false, "list"),
            (Method::GET, false, true, "watch"),
            (Method::POST, false, false, "create"),
            (Method::PUT, true, false, "update"),
            (Method::PATCH, true, false, "patch"),
            (Method::DELETE, true, false, "delete"),
            (Method::DELETE, false, false, "deletecollection"),
        ];
        for (method, named, watch, expected) in cases {
            assert_eq!(verb(&method, named, watch), expected, "{method} {named}");
        }
    }
}
