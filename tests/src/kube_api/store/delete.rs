//! DELETE of one object (with preconditions, and finalizers that hold it back with a
//! `deletionTimestamp`) and of a collection by selector.

use serde_json::Value;

use super::{
    has_finalizers, metadata_mut, ApiError, Deleted, EventType, Inner, ObjectKey, Preconditions,
    ResourceKey, Selector, Store,
};

impl Store {
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
                    crate::kube_api::time::now_rfc3339().into(),
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
}
