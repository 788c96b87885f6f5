//! A fake Kubernetes API server for the operator's tests (no cluster here): plain HTTP/1.1 on a free
//! loopback port, speaking enough of the real API to the real `kube::Client`.
//!
//! Generic over resources: objects are JSON values keyed by (group/version/resource, namespace,
//! name), so `DatabaseProxy`, `Lease`, `Event` and `Pod` go through the same code, under
//! `/api/v1/...` and `/apis/{group}/{version}/...`. Supported: get, list (label and field selectors
//! by equality, `limit` + `continue`), create (assigns uid, resourceVersion, creationTimestamp,
//! generation), replace (409 on a stale resourceVersion; generation bumps only when something
//! outside metadata and status changed), delete with finalizers and deletionTimestamp, delete of a
//! collection (by selector), merge patch, JSON patch (a failed `test` is 422), server-side apply, the
//! `/status` subresource, watch with resource versions and bookmarks, and errors as `metav1.Status`
//! (a 422 names each invalid field in `details.causes`). A CRD installed with
//! [`FakeApiServer::install_crd`] is served by discovery and its writes are validated against its
//! schema: structure (types, required, bounds, patterns) and CEL rules (`x-kubernetes-validations`
//! at any level, `message` / `messageExpression`, `oldSelf` rules on updates only), through
//! kube-cel. Discovery (`/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]`) lists the
//! built-in resources the operator and its chart use and the installed CRDs. Every request is
//! logged as RBAC authorizes it ([`FakeApiServer::requests`], [`Request`]); discovery and other
//! non-resource requests are logged too, with an empty `resource`.
//!
//! Approximations, on purpose: server-side apply is a merge patch of the applied object (no
//! managedFields, no conflicts between field managers, fields a manager stops applying stay); every
//! resource behaves as a CRD with the status subresource (create and main-resource writes ignore
//! `status`, `/status` writes change only `status`); list pages come from the live map, not a
//! snapshot; history is never compacted (no 410 for old resource versions); unknown fields are not
//! pruned; CEL rules see the object with its schema's defaults filled in, but the object stored is
//! not defaulted; on an update a failed CEL rule whose field the write did not change is forgiven
//! (validation ratcheting; structural errors are not ratcheted), and CEL rules are not evaluated
//! while the structure is invalid; CEL cost limits are not enforced; discovery is the unaggregated
//! kind only (`Discovery::run`, not `run_aggregated`) and any resource can be written, served by
//! discovery or not; no admission, authentication, authorization or strategic merge patch (415).

mod cel;
mod crd;
mod discovery;
mod error;
mod http;
mod patch;
mod requests;
mod schema;
mod selector;
mod store;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use cel::{CompileError, Rules};
pub use crd::MissingField;
pub use requests::Request;
pub use selector::Selector;
pub use store::{
    ApiError, Cause, Change, EventType, ObjectKey, PatchKind, ResourceKey, Store, Subresource,
};

/// Knobs of the fake.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK. Default 1 s.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// A running fake API server; it stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What every connection's handler reads: the objects, what discovery serves, the request log.
struct Shared {
    store: Arc<Store>,
    discovery: discovery::Discovery,
    requests: requests::RequestLog,
    opts: Options,
}

impl FakeApiServer {
    pub async fn start() -> anyhow::Result<FakeApiServer> {
        FakeApiServer::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> anyhow::Result<FakeApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake API server")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Arc::new(Store::default()),
            discovery: discovery::Discovery::new(addr.to_string()),
            requests: requests::RequestLog::default(),
            opts,
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| http::handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeApiServer { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves a CustomResourceDefinition (as JSON, e.g. `serde_json::to_value(DatabaseProxy::crd())`):
    /// each served version appears in discovery, and creates and updates of its resource are
    /// validated against the version's `openAPIV3Schema` (structure, types, bounds, patterns, CEL
    /// rules) and rejected with 422 Invalid. A CRD whose CEL rules do not compile is refused.
    pub fn install_crd(&self, crd: &serde_json::Value) -> anyhow::Result<()> {
        let versions = crd::served_versions(crd)?;
        // All schemas first: a CRD refused for one version leaves nothing half installed.
        let compiled = versions
            .iter()
            .map(|v| v.schema.as_ref().map(cel::Rules::compile).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        for (version, rules) in versions.into_iter().zip(compiled) {
            if let (Some(schema), Some(rules)) = (version.schema, rules) {
                let key = ResourceKey {
                    group: version.resource.group.clone(),
                    version: version.resource.version.clone(),
                    plural: version.resource.plural.clone(),
                };
                self.shared.store.install_schema(key, schema, rules);
            }
            self.shared.discovery.install(version.resource);
        }
        Ok(())
    }

    /// Every request so far, in arrival order, as RBAC sees it (see [`Request`]).
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.snapshot()
    }

    /// Forgets the requests so far, e.g. after a test's setup.
    pub fn clear_requests(&self) {
        self.shared.requests.clear();
    }

    /// The objects, for a test to seed or inspect without going through HTTP.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every connection (and its watches).
        self.task.abort();
    }
}
