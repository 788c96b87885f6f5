//! The writes that keep an object: create (POST), replace (PUT) and patch (PATCH, server-side
//! apply included), with the resource-version check, the generation bump and the schema and CEL
//! validation of installed CRDs they share.

use serde_json::Value;

use super::{
    has_finalizers, metadata_mut, qualified, ApiError, EventType, Inner, ObjectKey, PatchKind,
    ResourceKey, Store, Subresource,
};

impl Store {
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
            crate::kube_api::time::now_rfc3339().into(),
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
                let mut object = crate::kube_api::patch::parse_apply(patch)?;
                if object.pointer("/metadata/name").is_none() {
                    metadata_mut(&mut object)?.insert("name".into(), key.name.clone().into());
                }
                return self.create(&key.resource, &key.namespace, object);
            }
            return Err(ApiError::not_found(key));
        };
        let new = crate::kube_api::patch::apply(&old, kind, patch)?;
        let mut inner = self.lock();
        // Another writer may have come in between: the patch is applied again to what is there now.
        match inner.objects.get(key).cloned() {
            Some(now) if now == old => inner.update(key, &old, new, sub),
            Some(now) => {
                let new = crate::kube_api::patch::apply(&now, kind, patch)?;
                inner.update(key, &now, new, sub)
            }
            None => Err(ApiError::not_found(key)),
        }
    }
}

impl Inner {
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
    /// the rules that use `oldSelf` and for ratcheting (see [`crate::kube_api::cel`]).
    fn validate(
        &self,
        key: &ObjectKey,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(schema) = self.schemas.get(&key.resource) else {
            return Ok(());
        };
        let mut causes = crate::kube_api::schema::validate(&schema.structure, object);
        if causes.is_empty() {
            causes = schema.rules.check(object, old);
        }
        if causes.is_empty() {
            return Ok(());
        }
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        Err(ApiError::invalid_object(kind, key, causes))
    }
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}
