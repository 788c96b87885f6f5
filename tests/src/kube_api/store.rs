//! The fake API server's state: objects as JSON values keyed by resource, namespace and name, one
//! resource-version counter for everything (as etcd's revision is), and the history of changes that
//! watches replay from and then follow. Synchronous behind one mutex, never held across `.await`;
//! the HTTP layer ([`super::http`]) only translates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::cel::Rules;
use super::error::qualified;
pub use super::error::{ApiError, Cause};
use super::selector::Selector;

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

    /// POST: a new object, with the metadata the API server assigns. `status` is dropped.
    pub fn create(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let meta = metadata_mut(&mut object)?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if ns != namespace => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
                )))
            }
            _ => {}
        }
        let name = match (
            meta.get("name").and_then(Value::as_str),
            meta.get("generateName").and_then(Value::as_str),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{:05x}", inner.uids + 1),
            _ => {
                return Err(ApiError::invalid(
                    "metadata.name: Required value: name or generateName is required",
                ))
            }
        };
        let key = ObjectKey {
            resource: resource.clone(),
            namespace: namespace.to_owned(),
            name: name.clone(),
        };
        if inner.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(resource)),
            ));
        }
        inner.uids += 1;
        meta.insert("name".into(), name.into());
        if !namespace.is_empty() {
            meta.insert("namespace".into(), namespace.into());
        }
        meta.insert(
            "uid".into(),
            format!("00000000-0000-4000-8000-{:012x}", inner.uids).into(),
        );
        meta.insert(
            "creationTimestamp".into(),
            super::time::now_rfc3339().into(),
        );
        meta.insert("generation".into(), 1.into());
        for system in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(system);
        }
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        inner.validate(&key, &object, None)?;
        Ok(inner.commit(key, EventType::Added, object))
    }

    /// PUT: replaces what `sub` covers, checking `metadata.resourceVersion` when the body has one.
    pub fn replace(
        &self,
        key: &ObjectKey,
        object: Value,
        sub: Subresource,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = inner
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(key))?;
        inner.update(key, &old, object, sub)
    }

    /// PATCH: applies `patch` to the current object and writes the result as [`Store::replace`]
    /// would. Apply to a missing object creates it.
    pub fn patch(
        &self,
        key: &ObjectKey,
        kind: PatchKind,
        patch: &[u8],
        sub: Subresource,
    ) -> Result<Value, ApiError> {
        let current = self.lock().objects.get(key).cloned();
        let Some(old) = current else {
            if kind == PatchKind::Apply && sub == Subresource::Main {
                let mut object = super::patch::parse_apply(patch)?;
                if object.pointer("/metadata/name").is_none() {
                    metadata_mut(&mut object)?.insert("name".into(), key.name.clone().into());
                }
                return self.create(&key.resource, &key.namespace, object);
            }
            return Err(ApiError::not_found(key));
        };
        let new = super::patch::apply(&old, kind, patch)?;
        let mut inner = self.lock();
        // Another writer may have come in between: the patch is applied again to what is there now.
        match inner.objects.get(key).cloned() {
            Some(now) if now == old => inner.update(key, &old, new, sub),
            Some(now) => {
                let new = super::patch::apply(&now, kind, patch)?;
                inner.update(key, &now, new, sub)
            }
            None => Err(ApiError::not_found(key)),
        }
    }

    /// DELETE: marks the object for deletion while it has finalizers, removes it otherwise.
    pub fn delete(&self, key: &ObjectKey, pre: &Preconditions) -> Result<Deleted, ApiError> {
        self.lock().delete(key, pre)
    }

    /// DELETE on a collection: deletes (or marks, when they have finalizers) every object of
    /// `resource` in `namespace` (or everywhere) that `selector` matches, as one step. Returns
    /// them as they were last.
    pub fn delete_collection(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<Vec<Value>, ApiError> {
        let mut inner = self.lock();
        let keys: Vec<ObjectKey> = inner
            .objects
            .iter()
            .filter(|(k, v)| {
                &k.resource == resource
                    && namespace.is_none_or(|ns| k.namespace == ns)
                    && selector.matches(v)
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .map(|key| match inner.delete(key, &Preconditions::default())? {
                Deleted::Pending(object) | Deleted::Gone(object) => Ok(object),
            })
            .collect()
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
    /// [`Store::delete`], under the lock.
    fn delete(&mut self, key: &ObjectKey, pre: &Preconditions) -> Result<Deleted, ApiError> {
        let mut object = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(key))?;
        let field = |p: &str| object.pointer(p).and_then(Value::as_str).map(str::to_owned);
        if pre
            .uid
            .as_ref()
            .is_some_and(|uid| Some(uid) != field("/metadata/uid").as_ref())
        {
            return Err(ApiError::conflict(
                key,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
        if pre
            .resource_version
            .as_ref()
            .is_some_and(|rv| Some(rv) != field("/metadata/resourceVersion").as_ref())
        {
            return Err(ApiError::conflict(
                key,
                "Precondition failed: ResourceVersion in precondition does not match the object",
            ));
        }
        if has_finalizers(&object) {
            if object.pointer("/metadata/deletionTimestamp").is_none() {
                let meta = metadata_mut(&mut object)?;
                meta.insert(
                    "deletionTimestamp".into(),
                    super::time::now_rfc3339().into(),
                );
                meta.insert("deletionGracePeriodSeconds".into(), 0.into());
                object = self.commit(key.clone(), EventType::Modified, object);
            }
            return Ok(Deleted::Pending(object));
        }
        Ok(Deleted::Gone(self.commit(
            key.clone(),
            EventType::Deleted,
            object,
        )))
    }

    /// The shared part of PUT and PATCH: keeps what the client may not change, checks the resource
    /// version, bumps `generation` when anything outside `metadata` and `status` changed, and
    /// finishes a deletion whose last finalizer went. A write that changes nothing is not a write.
    fn update(
        &mut self,
        key: &ObjectKey,
        old: &Value,
        mut new: Value,
        sub: Subresource,
    ) -> Result<Value, ApiError> {
        let old_rv = old
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        match new.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() && Some(rv) != old_rv.as_str() => {
                return Err(ApiError::conflict(
                    key,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ))
            }
            _ => {}
        }
        if new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != key.name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut new = match sub {
            Subresource::Main => {
                let map = new
                    .as_object_mut()
                    .ok_or_else(|| ApiError::bad_request("the body is not an object"))?;
                match old.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
                new
            }
            Subresource::Status => {
                let mut merged = old.clone();
                if let Some(map) = merged.as_object_mut() {
                    match new.get("status") {
                        Some(status) => map.insert("status".into(), status.clone()),
                        None => map.remove("status"),
                    };
                }
                merged
            }
        };
        let meta = metadata_mut(&mut new)?;
        for system in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old.pointer(&format!("/metadata/{system}")) {
                Some(v) => meta.insert(system.into(), v.clone()),
                None => meta.remove(system),
            };
        }
        meta.insert("resourceVersion".into(), old_rv);
        if &new == old {
            return Ok(new);
        }
        if without_meta_and_status(&new) != without_meta_and_status(old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new)?.insert("generation".into(), (generation + 1).into());
        }
        self.validate(key, &new, Some(old))?;
        let event = if new.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&new)
        {
            EventType::Deleted
        } else {
            EventType::Modified
        };
        Ok(self.commit(key.clone(), event, new))
    }

    /// Checks a write against the installed schema: its structure first, then (when the structure
    /// holds, so that rules see the types they were written for) its CEL rules, with `old` for
    /// the rules that use `oldSelf` and for ratcheting (see [`super::cel`]).
    fn validate(
        &self,
        key: &ObjectKey,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(schema) = self.schemas.get(&key.resource) else {
            return Ok(());
        };
        let mut causes = super::schema::validate(&schema.structure, object);
        if causes.is_empty() {
            causes = schema.rules.check(object, old);
        }
        if causes.is_empty() {
            return Ok(());
        }
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        Err(ApiError::invalid_object(kind, key, causes))
    }

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

fn without_meta_and_status(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

/// `metadata.resourceVersion` as a number (0 when missing).
pub fn resource_version(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}
