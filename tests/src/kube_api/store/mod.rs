//! The fake API server's state: objects as JSON values keyed by resource, namespace and name, one
//! resource-version counter for everything (as etcd's revision is), and the history of changes that
//! watches replay from and then follow. Synchronous behind one mutex, never held across `.await`;
//! the HTTP layer ([`super::http`]) only translates. Reads, watches and the commit every write ends
//! in are here; the writes are in [`mod@write`], deletions in [`mod@delete`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::cel::Rules;
use super::error::qualified;
pub use super::error::{ApiError, Cause};
use super::selector::Selector;

mod delete;
mod write;

/// A resource type as its URL names it: `("", "v1", "pods")`, `("pgroute.dev", "v1alpha1", "databaseproxies")`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub group: String,
    pub version: String,
    pub plural: String,
}

/// One object's place: its resource, its namespace (`""` for cluster-scoped) and its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: ResourceKey,
    pub namespace: String,
    pub name: String,
}

/// What a watch event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write, with the object as it was written (or last seen, for a deletion).
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub event: EventType,
    pub key: ObjectKey,
    pub object: Value,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// Everything but `status` (as for a CRD with the status subresource).
    Main,
    /// Only `status`.
    Status,
}

/// The patch formats the fake understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386, `application/merge-patch+json`.
    Merge,
    /// RFC 6902, `application/json-patch+json`; a failed `test` op is 422.
    Json,
    /// Server-side apply, `application/apply-patch+yaml`, approximated as a merge patch of the
    /// applied object: no managed fields, no conflicts between managers, and fields a manager stops
    /// applying are left in place rather than removed.
    Apply,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

/// What a DELETE did.
#[derive(Clone, Debug)]
pub enum Deleted {
    /// Finalizers remain: the object stays, with `deletionTimestamp` set.
    Pending(Value),
    /// The object is gone; this is it as it was last.
    Gone(Value),
}

/// DELETE preconditions (`DeleteOptions.preconditions`).
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A watch's starting point: changes to replay, then a receiver for the live ones.
pub struct WatchStart {
    pub replay: Vec<Change>,
    pub live: broadcast::Receiver<Change>,
    pub resource_version: u64,
}

/// The objects and their history.
pub struct Store {
    inner: Mutex<Inner>,
}

struct Inner {
    rv: u64,
    uids: u64,
    objects: BTreeMap<ObjectKey, Value>,
    /// `(apiVersion, kind)` of each resource, learned from the objects written to it.
    kinds: HashMap<ResourceKey, (String, String)>,
    history: Vec<Change>,
    changes: broadcast::Sender<Change>,
    /// The schemas of the resources whose CRD was installed; their writes are validated.
    schemas: HashMap<ResourceKey, Schema>,
}

/// A CRD version's `openAPIV3Schema` and its compiled CEL rules.
struct Schema {
    structure: Value,
    rules: Rules,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                uids: 0,
                objects: BTreeMap::new(),
                kinds: HashMap::new(),
                history: Vec::new(),
                changes: broadcast::channel(4096).0,
                schemas: HashMap::new(),
            }),
        }
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (writes are whole values), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates every later write of `resource` against `schema` (a CRD version's
    /// `openAPIV3Schema`) and `rules` (its CEL rules, compiled); a violation is 422 Invalid.
    pub fn install_schema(&self, resource: ResourceKey, schema: Value, rules: Rules) {
        self.lock().schemas.insert(
            resource,
            Schema {
                structure: schema,
                rules,
            },
        );
    }

    /// `(apiVersion, kind)` of a resource, once an object of it has been written.
    pub fn kind_of(&self, resource: &ResourceKey) -> Option<(String, String)> {
        self.lock().kinds.get(resource).cloned()
    }

    pub fn get(&self, key: &ObjectKey) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(key))
    }

    /// Objects of `resource` (in `namespace`, or all of them) matching `selector`, in key order,
    /// `limit` at a time. The continue token is the key after which the next page starts; pages are
    /// read from the live map, not from a snapshot at the first page's resource version.
    pub fn list(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        selector: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let after = continue_token
            .map(|t| {
                t.split_once('/')
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))
            })
            .transpose()?;
        let inner = self.lock();
        let mut matching = inner
            .objects
            .iter()
            .filter(|(k, v)| {
                &k.resource == resource
                    && namespace.is_none_or(|ns| k.namespace == ns)
                    && after.is_none_or(|(ns, name)| {
                        (k.namespace.as_str(), k.name.as_str()) > (ns, name)
                    })
                    && selector.matches(v)
            })
            .map(|(k, v)| (k, v.clone()));
        let items: Vec<(&ObjectKey, Value)> = match limit.filter(|l| *l > 0) {
            Some(l) => matching.by_ref().take(l).collect(),
            None => matching.by_ref().collect(),
        };
        let remaining = matching.count();
        let continue_token = match items.last() {
            Some((k, _)) if remaining > 0 => Some(format!("{}/{}", k.namespace, k.name)),
            _ => None,
        };
        Ok(ListPage {
            items: items.into_iter().map(|(_, v)| v).collect(),
            resource_version: inner.rv,
            continue_token,
            remaining,
        })
    }

    /// Where a watch of `resource` starts: with `from`, the changes after that resource version;
    /// without, an ADDED for each object there now (`resourceVersion` unset or `0`).
    pub fn watch(&self, resource: &ResourceKey, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let inner = self.lock();
        let replay = match from {
            Some(rv) if rv > inner.rv => {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {}", inner.rv),
                ))
            }
            Some(rv) => inner
                .history
                .iter()
                .filter(|c| c.rv > rv && &c.key.resource == resource)
                .cloned()
                .collect(),
            None => inner
                .objects
                .iter()
                .filter(|(k, _)| &k.resource == resource)
                .map(|(k, v)| Change {
                    rv: resource_version(v),
                    event: EventType::Added,
                    key: k.clone(),
                    object: v.clone(),
                })
                .collect(),
        };
        Ok(WatchStart {
            replay,
            // Subscribed under the lock: nothing committed after the replay is missed.
            live: inner.changes.subscribe(),
            resource_version: inner.rv,
        })
    }

    /// The current resource version (of the whole store).
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }
}

impl Inner {
    /// Stamps the next resource version on `object`, stores (or removes) it and tells the watches.
    fn commit(&mut self, key: ObjectKey, event: EventType, mut object: Value) -> Value {
        self.rv += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), self.rv.to_string().into());
        }
        if let (Some(api_version), Some(kind)) = (
            object.get("apiVersion").and_then(Value::as_str),
            object.get("kind").and_then(Value::as_str),
        ) {
            self.kinds.insert(
                key.resource.clone(),
                (api_version.to_owned(), kind.to_owned()),
            );
        }
        match event {
            EventType::Deleted => self.objects.remove(&key),
            _ => self.objects.insert(key.clone(), object.clone()),
        };
        let change = Change {
            rv: self.rv,
            event,
            key,
            object: object.clone(),
        };
        self.history.push(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
        object
    }
}

fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// `metadata.resourceVersion` as a number (0 when missing).
pub fn resource_version(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}
