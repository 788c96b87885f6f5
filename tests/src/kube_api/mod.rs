//! A fake Kubernetes API server for the operator's tests (no cluster here): plain HTTP/1.1 on a free
//! loopback port, speaking enough of the real API to the real `kube::Client`.
//!
//! Generic over resources: objects are JSON values keyed by (group/version/resource, namespace,
//! name), so `DatabaseProxy`, `Lease`, `Event` and `Pod` go through the same code, under
//! `/api/v1/...` and `/apis/{group}/{version}/...`. Supported: get, list (label and field selectors
//! by equality, `limit` + `continue`), create (assigns uid, resourceVersion, creationTimestamp,
//! generation), replace (409 on a stale resourceVersion; generation bumps only when something
//! outside metadata and status changed), delete with finalizers and deletionTimestamp, merge patch,
//! JSON patch (a failed `test` is 422), server-side apply, the `/status` subresource, watch with
//! resource versions and bookmarks, and errors as `metav1.Status`.
//!
//! Approximations, on purpose: server-side apply is a merge patch of the applied object (no
//! managedFields, no conflicts between field managers, fields a manager stops applying stay); every
//! resource behaves as a CRD with the status subresource (create and main-resource writes ignore
//! `status`, `/status` writes change only `status`); list pages come from the live map, not a
//! snapshot; history is never compacted (no 410 for old resource versions); a CRD installed with
//! [`FakeApiServer::install_crd`] is validated structurally (types, required, bounds, patterns) but
//! its CEL rules are not evaluated and unknown fields are not pruned; no discovery, admission,
//! defaulting, authentication or strategic merge patch (415).

mod error;
mod http;
mod patch;
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

pub use selector::Selector;
pub use store::{
    ApiError, Change, EventType, ObjectKey, PatchKind, ResourceKey, Store, Subresource,
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
    store: Arc<Store>,
    task: JoinHandle<()>,
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
        let store = Arc::new(Store::default());
        let shared = store.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let store = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| http::handle(store.clone(), opts, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeApiServer { addr, store, task })
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves a CustomResourceDefinition (as JSON, e.g. `serde_json::to_value(DatabaseProxy::crd())`):
    /// creates and updates of its resource are validated against each version's `openAPIV3Schema`
    /// (structure, types, bounds, patterns; not CEL rules) and rejected with 422 Invalid.
    pub fn install_crd(&self, crd: &serde_json::Value) -> anyhow::Result<()> {
        let field = |p: &str| {
            crd.pointer(p)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let group = field("/spec/group").context("CRD without spec.group")?;
        let plural = field("/spec/names/plural").context("CRD without spec.names.plural")?;
        let versions = crd
            .pointer("/spec/versions")
            .and_then(serde_json::Value::as_array);
        for version in versions.into_iter().flatten() {
            let name = version
                .get("name")
                .and_then(serde_json::Value::as_str)
                .context("CRD version without a name")?;
            if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
                let resource = ResourceKey {
                    group: group.clone(),
                    version: name.to_owned(),
                    plural: plural.clone(),
                };
                self.store.install_schema(resource, schema.clone());
            }
        }
        Ok(())
    }

    /// The objects, for a test to seed or inspect without going through HTTP.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every connection (and its watches).
        self.task.abort();
    }
}
