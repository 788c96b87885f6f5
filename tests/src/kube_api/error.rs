//! Failed requests and the `metav1.Status` bodies that answer them, with the codes and reasons
//! the real API server uses (404 NotFound, 409 AlreadyExists / Conflict, 422 Invalid, 415, ...).
//! An invalid object names each offending field in `details.causes`, as the real server does, so
//! a test (or the operator) can tell which rule failed without parsing the message.

use serde_json::{json, Value};

use super::store::{ObjectKey, ResourceKey};

/// A failed request, answered as a `metav1.Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.causes`: one per invalid field (422 Invalid), empty otherwise.
    pub causes: Vec<Cause>,
}

/// One invalid field of a rejected object, as `metav1.StatusCause` carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, ... (Kubernetes' `field.ErrorType`).
    pub reason: &'static str,
    /// The field's path from the object's root: `spec.target`, `spec.target.endpoints[0].port`.
    pub field: String,
    /// What is wrong, without the path: `Required value`, `Invalid value: "object": ...`.
    pub message: String,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }
    pub fn not_found(key: &ObjectKey) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", qualified(&key.resource), key.name),
        )
    }
    pub fn conflict(key: &ObjectKey, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                qualified(&key.resource),
                key.name
            ),
        )
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 422 for an object that failed validation, worded as the real server words it:
    /// `DatabaseProxy.pgroute.dev "orders" is invalid: spec.target: Invalid value: ...`, with the
    /// fields in brackets when there are several.
    pub fn invalid_object(kind: &str, key: &ObjectKey, causes: Vec<Cause>) -> ApiError {
        let listed: Vec<String> = causes.iter().map(Cause::to_string).collect();
        let fields = match listed.as_slice() {
            [one] => one.clone(),
            _ => format!("[{}]", listed.join(", ")),
        };
        let kind = if key.resource.group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{}", key.resource.group)
        };
        ApiError {
            causes,
            ..ApiError::invalid(format!("{kind} \"{}\" is invalid: {fields}", key.name))
        }
    }

    /// The `metav1.Status` body, with details naming the object when there is one.
    pub fn to_status(&self, key: Option<&ObjectKey>) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(key) = key {
            status["details"] =
                json!({"name": key.name, "group": key.resource.group, "kind": key.resource.plural});
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "field": c.field, "message": c.message}))
                .collect();
            status["details"]["causes"] = causes.into();
        }
        status
    }
}

/// `databaseproxies.pgroute.dev`, `pods`: how the real API names a resource in messages.
pub(super) fn qualified(r: &ResourceKey) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}
